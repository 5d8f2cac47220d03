/* metrics.c: see metrics.h and docs/METRICS.md. */
#include "metrics.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void confusion_init(Confusion *c, int k)
{
	ASSERT(k >= 0);
	c->k = k;
	c->confusion = xcalloc((size_t)k * (size_t)k, sizeof(long));
}

void confusion_add(Confusion *c, int truth, int pred)
{
	if (truth < 0) return; /* unlabelled rows are not scored */
	ASSERT(truth < c->k && pred >= 0 && pred < c->k);
	c->confusion[(size_t)truth * c->k + pred]++;
}

void confusion_free(Confusion *c)
{
	free(c->confusion);
	c->confusion = NULL;
	c->k = 0;
}

void confusion_merge(Confusion *dst, const Confusion *src)
{
	ASSERT(dst->k == src->k);
	for (long i = 0; i < (long)dst->k * dst->k; i++) dst->confusion[i] += src->confusion[i];
}

long confusion_total(const Confusion *c)
{
	long n = 0;
	for (long i = 0; i < (long)c->k * c->k; i++) n += c->confusion[i];
	return n;
}

static long cell(const Confusion *c, int t, int p) { return c->confusion[(size_t)t * c->k + p]; }

long metric_support(const Confusion *c, int cls)
{
	long n = 0;
	for (int p = 0; p < c->k; p++) n += cell(c, cls, p);
	return n;
}

long metric_predicted(const Confusion *c, int cls)
{
	long n = 0;
	for (int t = 0; t < c->k; t++) n += cell(c, t, cls);
	return n;
}

double metric_precision(const Confusion *c, int cls)
{
	long np = metric_predicted(c, cls);
	return np ? (double)cell(c, cls, cls) / (double)np : 0.0;
}

double metric_recall(const Confusion *c, int cls)
{
	long ns = metric_support(c, cls);
	return ns ? (double)cell(c, cls, cls) / (double)ns : 0.0;
}

double metric_f1(const Confusion *c, int cls)
{
	/* 2PR/(P+R) written as 2tp/(2tp+fp+fn): the same where defined, 0 otherwise */
	long tp = cell(c, cls, cls);
	long fp = metric_predicted(c, cls) - tp;
	long fn = metric_support(c, cls) - tp;
	long den = 2 * tp + fp + fn;
	return den ? 2.0 * (double)tp / (double)den : 0.0;
}

double metric_accuracy(const Confusion *c)
{
	long n = confusion_total(c), right = 0;
	for (int i = 0; i < c->k; i++) right += cell(c, i, i);
	return n ? (double)right / (double)n : NAN;
}

double metric_balanced_accuracy(const Confusion *c)
{
	double sum = 0;
	int m = 0;
	for (int i = 0; i < c->k; i++)
		if (metric_support(c, i) > 0) {
			sum += metric_recall(c, i);
			m++;
		}
	return m ? sum / m : NAN;
}

double metric_macro_f1(const Confusion *c)
{
	double sum = 0;
	int m = 0;
	for (int i = 0; i < c->k; i++)
		if (metric_support(c, i) > 0 || metric_predicted(c, i) > 0) {
			sum += metric_f1(c, i);
			m++;
		}
	return m ? sum / m : NAN;
}

/* ---- reports ---- */

static void print_num(FILE *fp, double v)
{
	if (isnan(v)) fprintf(fp, "n/a");
	else fprintf(fp, "%.4f", v);
}

static int digits(long v)
{
	int d = 1;
	while (v >= 10) { v /= 10; d++; }
	return d;
}

void metrics_print_text(FILE *fp, const Confusion *c, char *const *classes)
{
	int k = c->k;
	fprintf(fp, "rows %ld  accuracy ", confusion_total(c));
	print_num(fp, metric_accuracy(c));
	fprintf(fp, "  balanced accuracy ");
	print_num(fp, metric_balanced_accuracy(c));
	fprintf(fp, "  macro-F1 ");
	print_num(fp, metric_macro_f1(c));
	fputc('\n', fp);

	/* per-class table */
	int w = 5; /* "class" */
	for (int i = 0; i < k; i++) {
		int l = (int)strlen(classes[i]);
		if (l > w) w = l;
	}
	fprintf(fp, "%-*s  precision  recall      f1  support\n", w, "class");
	for (int i = 0; i < k; i++)
		fprintf(fp, "%-*s  %9.4f  %6.4f  %6.4f  %7ld\n", w, classes[i], metric_precision(c, i),
		        metric_recall(c, i), metric_f1(c, i), metric_support(c, i));

	/* confusion matrix: a column as wide as its class name or its largest count */
	const char *corner = "true\\pred";
	int rw = w > (int)strlen(corner) ? w : (int)strlen(corner);
	fprintf(fp, "confusion matrix (rows = true class, columns = predicted class)\n");
	fprintf(fp, "%-*s", rw, corner);
	int *cw = xmallocarray(k ? (size_t)k : 1, sizeof *cw);
	for (int j = 0; j < k; j++) {
		long colmax = 0;
		for (int i = 0; i < k; i++)
			if (cell(c, i, j) > colmax) colmax = cell(c, i, j);
		int l = (int)strlen(classes[j]), d = digits(colmax);
		cw[j] = l > d ? l : d;
		fprintf(fp, "  %*s", cw[j], classes[j]);
	}
	fputc('\n', fp);
	for (int i = 0; i < k; i++) {
		fprintf(fp, "%-*s", rw, classes[i]);
		for (int j = 0; j < k; j++) fprintf(fp, "  %*ld", cw[j], cell(c, i, j));
		fputc('\n', fp);
	}
	free(cw);
}

static void json_str(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", fp); break;
		case '\\': fputs("\\\\", fp); break;
		case '\n': fputs("\\n", fp); break;
		case '\r': fputs("\\r", fp); break;
		case '\t': fputs("\\t", fp); break;
		default:
			if (*p < 0x20) fprintf(fp, "\\u%04x", *p);
			else fputc(*p, fp);
		}
	}
	fputc('"', fp);
}

static void json_num(FILE *fp, double v)
{
	if (!isfinite(v)) fputs("null", fp);
	else fprintf(fp, "%.17g", v);
}

void metrics_write_json(FILE *fp, const Confusion *c, char *const *classes)
{
	int k = c->k;
	fprintf(fp, "{\"rows\": %ld, \"accuracy\": ", confusion_total(c));
	json_num(fp, metric_accuracy(c));
	fputs(", \"balanced_accuracy\": ", fp);
	json_num(fp, metric_balanced_accuracy(c));
	fputs(", \"macro_f1\": ", fp);
	json_num(fp, metric_macro_f1(c));
	fputs(",\n \"classes\": [", fp);
	for (int i = 0; i < k; i++) {
		if (i) fputs(", ", fp);
		json_str(fp, classes[i]);
	}
	fputs("],\n \"per_class\": [", fp);
	for (int i = 0; i < k; i++) {
		fputs(i ? ",\n  {\"class\": " : "\n  {\"class\": ", fp);
		json_str(fp, classes[i]);
		fputs(", \"precision\": ", fp);
		json_num(fp, metric_precision(c, i));
		fputs(", \"recall\": ", fp);
		json_num(fp, metric_recall(c, i));
		fputs(", \"f1\": ", fp);
		json_num(fp, metric_f1(c, i));
		fprintf(fp, ", \"support\": %ld, \"predicted\": %ld}", metric_support(c, i), metric_predicted(c, i));
	}
	fputs("],\n \"confusion\": [", fp);
	for (int i = 0; i < k; i++) {
		fputs(i ? ",\n  [" : "\n  [", fp);
		for (int j = 0; j < k; j++) fprintf(fp, j ? ", %ld" : "%ld", cell(c, i, j));
		fputc(']', fp);
	}
	fputs("]}\n", fp);
}
