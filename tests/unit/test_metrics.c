/* test_metrics.c: metrics.h against hand-computed examples and against
 * scikit-learn values stored in tests/fixtures/metrics/sklearn.txt
 * (made once by tests/fixtures/metrics/make_fixture.py; CI does not need sklearn). */
#include "check.h"
#include "metrics.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * (1 + fabs(b)); }

static char *capture(void (*fn)(FILE *, const Confusion *, char *const *), const Confusion *c, char *const *cls)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	fn(fp, c, cls);
	fclose(fp);
	return buf;
}

static void hand_example(void)
{
	/* classes A B C D E; C is never predicted, D is never true, E is in neither.
	 *   true\pred A B C D
	 *   A         2 1 0 0
	 *   B         0 2 0 1
	 *   C         1 1 0 0 */
	static const int pairs[][2] = { {0,0}, {0,0}, {0,1}, {1,1}, {1,3}, {2,0}, {2,1}, {1,1} };
	char *cls[] = { "A", "B", "C", "D", "E" };
	Confusion c;
	confusion_init(&c, 5);
	for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) confusion_add(&c, pairs[i][0], pairs[i][1]);
	confusion_add(&c, -1, 2); /* unlabelled: ignored */
	CHECK("metrics-1.1 total", confusion_total(&c) == 8);
	CHECK("metrics-1.2 accuracy", near(metric_accuracy(&c), 4.0 / 8));
	/* recall A 2/3, B 2/3, C 0; D and E have no true rows */
	CHECK("metrics-1.3 balanced accuracy", near(metric_balanced_accuracy(&c), 4.0 / 9));
	/* F1 = 2tp/(2tp+fp+fn): A 4/6, B 4/7, C 0, D 0; E is in neither truth nor predictions */
	CHECK("metrics-1.4 macro-F1", near(metric_macro_f1(&c), (2.0 / 3 + 4.0 / 7) / 4));
	CHECK("metrics-1.5 precision", near(metric_precision(&c, 0), 2.0 / 3) && near(metric_precision(&c, 1), 0.5)
	      && metric_precision(&c, 2) == 0 && metric_precision(&c, 3) == 0);
	CHECK("metrics-1.6 recall", near(metric_recall(&c, 0), 2.0 / 3) && near(metric_recall(&c, 1), 2.0 / 3)
	      && metric_recall(&c, 2) == 0 && metric_recall(&c, 3) == 0);
	CHECK("metrics-1.7 f1 per class", near(metric_f1(&c, 0), 2.0 / 3) && near(metric_f1(&c, 1), 4.0 / 7)
	      && metric_f1(&c, 2) == 0 && metric_f1(&c, 3) == 0 && metric_f1(&c, 4) == 0);
	CHECK("metrics-1.8 support", metric_support(&c, 0) == 3 && metric_support(&c, 1) == 3
	      && metric_support(&c, 2) == 2 && metric_support(&c, 3) == 0 && metric_predicted(&c, 1) == 4);

	char *txt = capture(metrics_print_text, &c, cls);
	CHECK("metrics-1.9 text summary", strstr(txt, "rows 8  accuracy 0.5000  balanced accuracy 0.4444  macro-F1 0.3095\n") != NULL);
	CHECK("metrics-1.10 text per class", strstr(txt, "B         0.5000  0.6667  0.5714        3\n") != NULL);
	CHECK("metrics-1.11 text matrix", strstr(txt, "true\\pred  A  B  C  D  E\nA          2  1  0  0  0\n") != NULL
	      && strstr(txt, "C          1  1  0  0  0\n") != NULL);
	free(txt);

	char *js = capture(metrics_write_json, &c, cls);
	CHECK("metrics-1.12 json summary", strstr(js, "{\"rows\": 8, \"accuracy\": 0.5, \"balanced_accuracy\": 0.44444444444444442, ") == js);
	CHECK("metrics-1.13 json class", strstr(js, "{\"class\": \"B\", \"precision\": 0.5, \"recall\": 0.66666666666666663, \"f1\": 0.5714285714285714, \"support\": 3, \"predicted\": 4}") != NULL);
	CHECK("metrics-1.14 json confusion", strstr(js, "\"confusion\": [\n  [2, 1, 0, 0, 0],\n  [0, 2, 0, 1, 0],\n  [1, 1, 0, 0, 0],") != NULL);
	free(js);

	Confusion d;
	confusion_init(&d, 5);
	confusion_add(&d, 4, 4);
	confusion_merge(&d, &c);
	CHECK("metrics-1.15 merge", confusion_total(&d) == 9 && near(metric_accuracy(&d), 5.0 / 9)
	      && near(metric_macro_f1(&d), (2.0 / 3 + 4.0 / 7 + 1) / 5));
	confusion_free(&d);
	confusion_free(&c);
}

static void edge_cases(void)
{
	char *cls[] = { "x\"y", "long class name" };
	Confusion c;
	confusion_init(&c, 2);
	CHECK("metrics-2.1 empty is undefined", isnan(metric_accuracy(&c)) && isnan(metric_balanced_accuracy(&c))
	      && isnan(metric_macro_f1(&c)));
	char *js = capture(metrics_write_json, &c, cls);
	CHECK("metrics-2.2 json null and escapes", strstr(js, "\"accuracy\": null") != NULL && strstr(js, "\"x\\\"y\"") != NULL);
	free(js);
	char *txt = capture(metrics_print_text, &c, cls);
	CHECK("metrics-2.3 text n/a", strstr(txt, "accuracy n/a") != NULL);
	free(txt);
	for (int i = 0; i < 12; i++) confusion_add(&c, 1, 1);
	txt = capture(metrics_print_text, &c, cls);
	/* columns as wide as the class name; the count right-aligned under it */
	CHECK("metrics-2.4 text aligned", strstr(txt, "true\\pred        x\"y  long class name\n") != NULL
	      && strstr(txt, "long class name    0               12\n") != NULL);
	free(txt);
	CHECK("metrics-2.5 perfect", metric_accuracy(&c) == 1 && metric_balanced_accuracy(&c) == 1 && metric_macro_f1(&c) == 1);
	confusion_free(&c);
}

static void sklearn_fixture(void)
{
	/* path relative to this source file, as compiled from the repository root */
	char *dir = xstrdup(__FILE__);
	char *slash = strrchr(dir, '/');
	if (slash) *slash = 0; else strcpy(dir, ".");
	char *path = xasprintf("%s/../fixtures/metrics/sklearn.txt", dir);
	FILE *fp = fopen(path, "r");
	if (!fp) {
		printf("FAIL metrics-3 sklearn fixture: cannot open %s\n", path);
		check_failures++;
		free(path); free(dir);
		return;
	}
	int ncase = 0, bad = 0, before = check_failures;
	double worst = 0;
	int k, n;
	while (fscanf(fp, " case %d %d", &k, &n) == 2) {
		int *t = xmallocarray((size_t)n, sizeof *t), *p = xmallocarray((size_t)n, sizeof *p);
		for (int i = 0; i < n; i++) if (fscanf(fp, "%d", &t[i]) != 1) bad++;
		for (int i = 0; i < n; i++) if (fscanf(fp, "%d", &p[i]) != 1) bad++;
		Confusion c;
		confusion_init(&c, k);
		for (int i = 0; i < n; i++) confusion_add(&c, t[i], p[i]);
		double want[3], got[3] = { metric_accuracy(&c), metric_balanced_accuracy(&c), metric_macro_f1(&c) };
		if (fscanf(fp, " summary %lf %lf %lf", &want[0], &want[1], &want[2]) != 3) bad++;
		for (int j = 0; j < 3; j++) {
			double e = fabs(got[j] - want[j]);
			if (e > worst) worst = e;
			if (e > 1e-12) {
				printf("FAIL metrics-3.%d summary %d: %.17g vs sklearn %.17g\n", ncase + 1, j, got[j], want[j]);
				check_failures++;
			}
		}
		for (int i = 0; i < k; i++) {
			int ci;
			long sup;
			double pr, rc, f1;
			if (fscanf(fp, " class %d %lf %lf %lf %ld", &ci, &pr, &rc, &f1, &sup) != 5 || ci != i) { bad++; break; }
			double e = fmax(fabs(pr - metric_precision(&c, i)), fmax(fabs(rc - metric_recall(&c, i)), fabs(f1 - metric_f1(&c, i))));
			if (e > worst) worst = e;
			if (e > 1e-12 || sup != metric_support(&c, i)) {
				printf("FAIL metrics-3.%d class %d: differs from sklearn (maxdiff %.3g)\n", ncase + 1, i, e);
				check_failures++;
			}
		}
		confusion_free(&c);
		free(t); free(p);
		ncase++;
	}
	fclose(fp);
	CHECK("metrics-3.0 fixture parsed", bad == 0 && ncase >= 8);
	if (check_failures == before)
		printf("PASS metrics-3 sklearn cross-check: %d cases (maxdiff %.3g)\n", ncase, worst);
	free(path); free(dir);
}

int main(void)
{
	util_init("test_metrics");
	hand_example();
	edge_cases();
	sklearn_fixture();
	return check_status();
}
