/* test_prep.c: every transform against a hand-computed example, gene keys,
 * statistics merged from chunks equal one fit on the whole, save/load round trip. */
#include "check.h"
#include "prep.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_keys(void)
{
	char *a = gene_key("ENSG00000141510.16", 0), *b = gene_key("ENSG00000141510", 0);
	CHECK("ensembl version stripped", strcmp(a, b) == 0);
	free(a); free(b);
	a = gene_key("ENSMUSG00000000001.4", 0);
	CHECK("ensembl mouse version stripped", strcmp(a, "ENSMUSG00000000001") == 0);
	free(a);
	a = gene_key("HLA-A.1x", 0);
	CHECK("symbol with a dot kept", strcmp(a, "HLA-A.1x") == 0);
	free(a);
	a = gene_key("Tp53", 1);
	b = gene_key("TP53", 1);
	CHECK("ignore case", strcmp(a, b) == 0);
	free(a); free(b);
	a = gene_key("Tp53", 0);
	CHECK("case kept by default", strcmp(a, "Tp53") == 0);
	free(a);
	StrMap m;
	sm_init(&m, 1);
	char buf[32];
	for (int i = 0; i < 5000; i++) { snprintf(buf, sizeof buf, "g%d", i); sm_put(&m, buf, i); }
	int ok = 1;
	for (int i = 0; i < 5000; i++) { snprintf(buf, sizeof buf, "g%d", i); ok &= sm_get(&m, buf) == i; }
	CHECK("strmap grows and finds", ok && sm_get(&m, "nope") == -1 && sm_put(&m, "g7", 99) == 7);
	sm_free(&m);
}

static void test_transforms(void)
{
	float x[4] = { 1, 3, 0, 4 };
	double lib = cpm_row(x, 4);
	float want[4] = { 125000, 375000, 0, 500000 };
	CHECK("cpm library size", lib == 8);
	check_close("cpm", x, want, 4, 0, 1e-6);
	float l[4] = { 0, 1, 3, 7 };
	float lw[4] = { 0, 1, 2, 3 };
	CHECK("log2p1 ok", log2p1(l, 4) == -1);
	check_close("log2p1", l, lw, 4, 1e-7, 0);
	float bad[2] = { 1, -1 };
	CHECK("log2p1 rejects -1", log2p1(bad, 2) == 1);

	/* the classic quantile example: samples (columns) A B C over genes; rows here are samples */
	float q[4 * 3] = { 5, 2, 3,   4, 1, 6,   3, 4, 9,   4, 2, 2 };
	double ref[3] = { 0, 0, 0 };
	void *scr = xmalloc(quantile_scratch(3));
	for (int i = 0; i < 4; i++) quantile_ref_add(ref, q + 3 * i, 3, scr);
	for (int k = 0; k < 3; k++) ref[k] /= 4;
	CHECK("quantile reference = mean sorted", ref[0] == 2 && ref[1] == 3.25 && ref[2] == 6);
	for (int i = 0; i < 4; i++) quantile_row(q + 3 * i, 3, ref, scr);
	/* ties (2,2) get the mean of reference values of ranks 0 and 1 */
	float qw[12] = { 6, 2, 3.25,   3.25, 2, 6,   2, 3.25, 6,   6, 2.625, 2.625 };
	check_close("quantile with ties", q, qw, 12, 1e-6, 0);
	/* a row with a missing gene: ranks interpolated over the reference */
	float qm[3] = { 10, NAN, 1 };
	quantile_row(qm, 3, ref, scr);
	CHECK("quantile with a missing gene", qm[0] == 6 && isnan(qm[1]) && qm[2] == 2);
	free(scr);

	double v[5] = { 1, 5, 3, 5, 0 };
	int sel[3];
	top_n(v, 5, 2, sel);
	CHECK("top_n ties to lower index, ascending", sel[0] == 1 && sel[1] == 3);
	top_n(v, 5, 3, sel);
	CHECK("top_n three", sel[0] == 1 && sel[1] == 2 && sel[2] == 3);
}

static char *names[] = { "G1", "G2", "G3", "G4" };

/* z-score and drop-zero fit on a hand example */
static void test_fit(void)
{
	PrepOpts o = { 0 };
	o.zscore = 1; o.drop_zero = 1;
	float x[3 * 4] = { 1, 0, 2, 5,   3, 0, 2, 7,   5, 0, 2, 9 };
	Stats s;
	stats_init(&s, &o, names, 4);
	stats_fit(&s, x, 3, NULL, NULL);
	CHECK("drop-zero removed G2", s.ngenes == 3 && strcmp(s.genes[1], "G3") == 0);
	double sd = sqrt(8.0 / 3.0);
	CHECK("zscore mean", s.mean[0] == 3 && s.mean[1] == 2 && s.mean[2] == 7);
	CHECK("zscore population sd", fabs(s.sd[0] - sd) < 1e-12 && s.sd[1] == 0 && fabs(s.sd[2] - sd) < 1e-12);
	stats_free(&s);
}

static void fill_random(float *x, int n, int w, unsigned seed)
{
	for (int i = 0; i < n * w; i++) {
		seed = seed * 1103515245u + 12345u;
		x[i] = (float)((seed >> 8) % 1000) / 100.0f;
	}
	for (int i = 0; i < n; i++) x[i * w + 3] = 0;   /* G4 zero everywhere */
}

static void test_merge(void)
{
	int n = 30, w = 4;
	float *x = xmalloc(sizeof(float) * (size_t)(n * w)), *c = xmalloc(sizeof(float) * (size_t)(n * w));
	fill_random(x, n, w, 7);
	PrepOpts o = { 0 };
	o.zscore = 1; o.top_variable = 2; o.drop_zero = 1; o.quantile = 0;
	Stats whole, a, b, m;
	memcpy(c, x, sizeof(float) * (size_t)(n * w));
	stats_init(&whole, &o, names, 4);
	stats_fit(&whole, c, n, NULL, NULL);
	memcpy(c, x, sizeof(float) * (size_t)(n * w));
	stats_init(&a, &o, names, 4);
	stats_fit(&a, c, 13, NULL, NULL);
	memcpy(c, x + 13 * w, sizeof(float) * (size_t)((n - 13) * w));
	stats_init(&b, &o, names, 4);
	stats_fit(&b, c, n - 13, NULL, NULL);
	Stats *parts[2] = { &a, &b };
	char *pn[2] = { "a", "b" };
	stats_merge(&m, parts, pn, 2);
	CHECK("merge: same genes and selection", m.ngenes == whole.ngenes && m.nsel == whole.nsel &&
	      m.sel[0] == whole.sel[0] && m.sel[1] == whole.sel[1] && m.n == n);
	int ok = 1;
	for (int j = 0; j < m.nsel; j++)
		ok &= fabs(m.mean[j] - whole.mean[j]) < 1e-9 && fabs(m.sd[j] - whole.sd[j]) < 1e-9;
	CHECK("merge: mean and sd equal the whole fit", ok);

	/* quantile reference: count-weighted mean of chunk references equals the whole */
	PrepOpts oq = { 0 };
	oq.quantile = 1;
	Stats qw, qa, qb, qm;
	memcpy(c, x, sizeof(float) * (size_t)(n * w));
	stats_init(&qw, &oq, names, 4);
	stats_fit(&qw, c, n, NULL, NULL);
	memcpy(c, x, sizeof(float) * (size_t)(n * w));
	stats_init(&qa, &oq, names, 4);
	stats_fit(&qa, c, 11, NULL, NULL);
	memcpy(c, x + 11 * w, sizeof(float) * (size_t)((n - 11) * w));
	stats_init(&qb, &oq, names, 4);
	stats_fit(&qb, c, n - 11, NULL, NULL);
	Stats *qp[2] = { &qa, &qb };
	stats_merge(&qm, qp, pn, 2);
	ok = 1;
	for (int g = 0; g < 4; g++) ok &= fabs(qm.qref[g] - qw.qref[g]) < 1e-9;
	CHECK("merge: quantile reference equals the whole fit", ok);

	/* save and load round trip */
	char path[] = "/tmp/dapipe-prep-XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	stats_save(&m, path);
	Stats l;
	stats_load(&l, path, NULL);
	ok = l.ngenes == m.ngenes && l.nsel == m.nsel && l.fitted && l.o.zscore && l.o.drop_zero && l.o.top_variable == 2;
	for (int j = 0; ok && j < l.nsel; j++) ok &= l.sel[j] == m.sel[j] && l.mean[j] == m.mean[j] && l.sd[j] == m.sd[j];
	for (int g = 0; ok && g < l.ngenes; g++) ok &= strcmp(l.genes[g], m.genes[g]) == 0 && l.sumsq[g] == m.sumsq[g];
	CHECK("stats save/load round trip", ok);
	unlink(path);
	stats_free(&l); stats_free(&whole); stats_free(&a); stats_free(&b); stats_free(&m);
	stats_free(&qw); stats_free(&qa); stats_free(&qb); stats_free(&qm);
	free(x); free(c);
}

int main(void)
{
	util_init("test_prep");
	test_keys();
	test_transforms();
	test_fit();
	test_merge();
	return check_status();
}
