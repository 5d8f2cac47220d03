/* test_table.c: number parsing, CSV/TSV/GCT edge cases, gzip input. */
#include "check.h"
#include "table.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char dir[] = "/tmp/dapipe-table.XXXXXX";

static char *put(const char *name, const char *text, size_t n)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	fwrite(text, 1, n, f);
	fclose(f);
	return p;
}

static char *putgz(const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	gzFile g = gzopen(p, "wb");
	gzwrite(g, text, (unsigned)strlen(text));
	gzclose(g);
	return p;
}

static void test_numbers(void)
{
	double v = 0;
	CHECK("num int", parse_cell("42", 2, &v) == 0 && v == 42);
	CHECK("num neg frac", parse_cell("-1.25", 5, &v) == 0 && v == -1.25);
	CHECK("num exp", parse_cell("1e-3", 4, &v) == 0 && v == 1e-3);
	CHECK("num EXP+", parse_cell("2.5E+2", 6, &v) == 0 && v == 250);
	CHECK("num leading dot", parse_cell(".5", 2, &v) == 0 && v == 0.5);
	CHECK("num spaces", parse_cell(" 7 ", 3, &v) == 0 && v == 7);
	CHECK("num long digits via strtod", parse_cell("0.12345678901234567890123", 25, &v) == 0 && fabs(v - 0.12345678901234567890123) < 1e-15);
	CHECK("num big exp via strtod", parse_cell("1e300", 5, &v) == 0 && v == 1e300);
	CHECK("num exact 0.1", parse_cell("0.1", 3, &v) == 0 && v == 0.1);
	CHECK("missing empty", parse_cell("", 0, &v) == 1);
	CHECK("missing NA", parse_cell("NA", 2, &v) == 1);
	CHECK("missing NaN", parse_cell("NaN", 3, &v) == 1);
	CHECK("inf", parse_cell("inf", 3, &v) == 2);
	CHECK("-Infinity", parse_cell("-Infinity", 9, &v) == 2);
	CHECK("not a number x1", parse_cell("x1", 2, &v) == -1);
	CHECK("not a number 1x", parse_cell("1x", 2, &v) == -1);
	CHECK("not a number 1e", parse_cell("1e", 2, &v) == -1);
	CHECK("not a number -", parse_cell("-", 1, &v) == -1);
	/* fast path agrees with strtod on many values */
	int bad = 0;
	char buf[64];
	for (int i = 0; i < 20000; i++) {
		double x = (i * 7919 % 100003) / 97.0 - 300;
		int n = snprintf(buf, sizeof buf, i % 2 ? "%.6g" : "%.17g", x);
		double a;
		if (parse_cell(buf, (size_t)n, &a) != 0 || a != strtod(buf, NULL)) bad++;
	}
	CHECK("fast path equals strtod", bad == 0);
}

/* random decimal strings of every shape: the parser must give strtod's double, bit
 * for bit, whether the fast path or the strtod fallback answers */
static void test_numbers_random(void)
{
	uint64_t st = 0x9E3779B97F4A7C15ULL;
	long bad = 0, fast = 0, total = 200000;
	char buf[96], first_bad[96] = "";
	for (long i = 0; i < total; i++) {
		int k = 0;
		st ^= st << 13; st ^= st >> 7; st ^= st << 17;
		uint64_t r = st;
		if (r & 1) buf[k++] = (r & 2) ? '-' : '+';
		int nd = 1 + (int)((r >> 2) % 22);       /* 1..22 digits */
		int dot = (int)((r >> 8) % (uint64_t)(nd + 2)) - 1;  /* -1: no point */
		for (int d = 0; d < nd; d++) {
			if (d == dot) buf[k++] = '.';
			st ^= st << 13; st ^= st >> 7; st ^= st << 17;
			buf[k++] = (char)('0' + st % 10);
		}
		if (dot == nd) buf[k++] = '.';
		if ((r >> 16) % 3 == 0)
			k += snprintf(buf + k, sizeof buf - (size_t)k, "%c%d", (r >> 20) & 1 ? 'e' : 'E', (int)((r >> 24) % 81) - 40);
		buf[k] = 0;
		double a = 0, want = strtod(buf, NULL), f;
		if (parse_num_fast(buf, buf + k, &f) == buf + k) {
			fast++;
			if (memcmp(&f, &want, sizeof f) != 0) bad++;
		}
		if (parse_cell(buf, (size_t)k, &a) != 0 || memcmp(&a, &want, sizeof a) != 0) {
			if (!bad) snprintf(first_bad, sizeof first_bad, "%s", buf);
			bad++;
		}
	}
	printf("%s random decimals: %ld of %ld on the fast path, %ld differ from strtod%s%s\n",
	       bad ? "FAIL" : "PASS", fast, total, bad, bad ? ", first: " : "", first_bad);
	if (bad) check_failures++;
	CHECK("random decimals: the fast path is taken for most", fast > total / 3);
	/* typical expression values: counts, TPM with 2-6 decimals */
	bad = 0;
	for (long i = 0; i < 100000; i++) {
		st ^= st << 13; st ^= st >> 7; st ^= st << 17;
		double x = (double)(st % 100000000) / 1000.0;
		int n = snprintf(buf, sizeof buf, "%.*f", (int)(st >> 40) % 7, x);
		double a;
		if (parse_cell(buf, (size_t)n, &a) != 0 || a != strtod(buf, NULL)) bad++;
	}
	CHECK("TPM-like decimals equal strtod", bad == 0);
}

/* the in-place row parser and the split-and-parse path agree, metadata columns skipped */
static void test_fast_rows(void)
{
	const char *text = "id,series,A,B,lab,batch,C\n"
		"S1,GSE1,1,2.5,x,b1,3\n"
		"S2,GSE2, 4 ,5e1,y,b2,6,\n"          /* spaces, exponent, trailing delimiter */
		"\"S3\",\"GSE,3\",7,8,z,b1,9\n"     /* quoted: the libcsv path */
		"S4,GSE4,12345678901234567,0.1,,b2,-0\n";  /* >15 digits: the general path */
	char *p = put("m.csv", text, strlen(text));
	TableOpts o = { 0 };
	char *ign[] = { "series" };
	o.ignore_columns = ign;
	o.nignore = 1;
	o.label_column = "lab";
	o.batch_column = "batch";
	Table t;
	table_open(&t, p, &o);
	CHECK("meta: genes are A B C", t.ngenes == 3 && !strcmp(t.genes[0], "A") && !strcmp(t.genes[2], "C"));
	int n = table_read(&t);
	CHECK("meta: 4 rows", n == 4);
	float want[12] = { 1, 2.5f, 3, 4, 50, 6, 7, 8, 9, (float)12345678901234567.0, 0.1f, -0.0f };
	CHECK("meta: values", memcmp(t.x, want, sizeof want) == 0);
	CHECK("meta: ids", !strcmp(t.ids[0], "S1") && !strcmp(t.ids[1], "S2") && !strcmp(t.ids[2], "S3") && !strcmp(t.ids[3], "S4"));
	CHECK("meta: labels", !strcmp(t.labels[0], "x") && !strcmp(t.labels[2], "z") && t.labels[3] == NULL);
	CHECK("meta: batches", !strcmp(t.batches[0], "b1") && !strcmp(t.batches[1], "b2") && !strcmp(t.batches[2], "b1"));
	CHECK("meta: lines", t.lines[0] == 2 && t.lines[3] == 5 && t.first_line == 2);
	table_close(&t);
	free(p);
}

static void test_csv(void)
{
	/* BOM, CRLF, quotes with delimiter and newline inside, blank lines, trailing delimiter */
	const char *text = "\xEF\xBB\xBFid,\"G,1\",G2,\r\n\r\nS1,1,2,\r\n\"S\"\"2\",\"3\",4e0,\r\n\n\"S\n3\",5,6\n";
	char *p = put("a.csv", text, strlen(text));
	TableOpts o = { 0 };
	o.block_rows = 2;
	Table t;
	table_open(&t, p, &o);
	CHECK("csv delimiter detected", t.csv.delim == ',');
	CHECK("csv genes", t.ngenes == 2 && strcmp(t.genes[0], "G,1") == 0 && strcmp(t.genes[1], "G2") == 0);
	int n = table_read(&t);
	CHECK("csv first block", n == 2);
	CHECK("csv ids", strcmp(t.ids[0], "S1") == 0 && strcmp(t.ids[1], "S\"2") == 0);
	CHECK("csv values", t.x[0] == 1 && t.x[1] == 2 && t.x[2] == 3 && t.x[3] == 4);
	CHECK("csv line numbers", t.lines[0] == 3 && t.lines[1] == 4);
	n = table_read(&t);
	CHECK("csv quoted newline id", n == 1 && strcmp(t.ids[0], "S\n3") == 0 && t.x[0] == 5 && t.x[1] == 6);
	CHECK("csv end", table_read(&t) == 0);
	table_close(&t);
	free(p);

	const char *tsv = "id\tA\tB\tlab\nS1\t1.5\t-2\tx\nS2\t0\t1e-3\t\n";
	p = put("b.tsv", tsv, strlen(tsv));
	o.label_column = "lab";
	o.block_rows = 10;
	table_open(&t, p, &o);
	CHECK("tsv delimiter", t.csv.delim == '\t');
	CHECK("tsv label column excluded", t.ngenes == 2);
	n = table_read(&t);
	CHECK("tsv rows", n == 2 && t.x[0] == 1.5f && t.x[1] == -2 && t.x[3] == 1e-3f);
	CHECK("tsv labels", t.labels[0] && strcmp(t.labels[0], "x") == 0 && t.labels[1] == NULL);
	table_close(&t);
	free(p);
	o.label_column = NULL;

	/* gzip: the same table compressed, in two members */
	char *g = putgz("c.csv.gz", "id,A\nS1,1\nS2,2\n");
	table_open(&t, g, &o);
	n = table_read(&t);
	CHECK("gzip read", n == 2 && t.x[0] == 1 && t.x[1] == 2 && t.csv.in.gz);
	table_close(&t);
	free(g);

	/* genes as rows and GCT are transposed */
	const char *gr = "gene,S1,S2,S3\nG1,1,2,3\nG2,4,5,6\n";
	p = put("d.csv", gr, strlen(gr));
	o.genes_as_rows = 1;
	table_open(&t, p, &o);
	n = table_read(&t);
	CHECK("genes as rows transposed", n == 3 && t.ngenes == 2 && strcmp(t.ids[2], "S3") == 0 && t.x[0] == 1 && t.x[1] == 4 && t.x[5] == 6);
	table_close(&t);
	free(p);
	o.genes_as_rows = 0;
	const char *gct = "#1.2\n2\t2\nName\tDescription\tS1\tS2\nENSG1.3\tTP53\t1\t2\nENSG2.1\tEGFR\t3\t4\n";
	p = put("e.gct", gct, strlen(gct));
	o.gene_id_desc = 1;
	table_open(&t, p, &o);
	n = table_read(&t);
	CHECK("gct detected and read", t.format == TF_GCT && n == 2 && strcmp(t.genes[1], "EGFR") == 0 && t.x[0] == 1 && t.x[1] == 3 && t.x[3] == 4);
	table_close(&t);
	free(p);

	/* a long line (bigger than the read buffer) */
	size_t cols = 700000;
	char *big = xmalloc(cols * 2 + 64);
	size_t k = (size_t)sprintf(big, "id");
	for (size_t i = 0; i < cols; i++) k += (size_t)sprintf(big + k, ",%c", 'a' + (int)(i % 26)) ;
	k += (size_t)sprintf(big + k, "\n");
	p = put("f.csv", big, k);
	free(big);
	int lines = 0;
	CsvIn c;
	csv_in_open(&c, p, 0);
	while (csv_in_next(&c)) lines += c.nf == (int)cols + 1;
	csv_in_close(&c);
	free(p);
	CHECK("line longer than the buffer", lines == 1);
}

int main(void)
{
	util_init("test_table");
	if (!mkdtemp(dir)) return 1;
	test_numbers();
	test_numbers_random();
	test_fast_rows();
	test_csv();
	char *cmd = xasprintf("rm -rf %s", dir);
	int rc = system(cmd);
	free(cmd);
	if (rc != 0) return 1;
	return check_status();
}
