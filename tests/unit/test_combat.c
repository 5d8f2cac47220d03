/* test_combat.c: ComBat against sva::ComBat 3.46 (fixtures made once by
 * tests/combat_ref.R in tests/fixtures/combat/: parametric and mean-only, with and
 * without a covariate, a batch of one sample, a gene constant inside a batch), then
 * the fit/apply split: chunked fits merged equal one fit, save/load round trip,
 * one sample applied alone, an unknown covariate level, the batch effect removed
 * on fresh data, and the errors (confounded covariate, unseen batch, NaN). */
#include "check.h"
#include "combat.h"
#include "rng.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *fixture_dir;

/* a genes x samples text matrix, returned transposed as samples x genes */
static float *load_matrix(const char *name, int G, int n)
{
	char *path = xasprintf("%s/%s", fixture_dir, name);
	FILE *fp = fopen(path, "r");
	if (!fp) { printf("FAIL load %s: cannot open\n", path); exit(1); }
	float *x = xmallocarray((size_t)G * (size_t)n, sizeof(float));
	for (int g = 0; g < G; g++)
		for (int j = 0; j < n; j++) {
			double v;
			if (fscanf(fp, "%lf", &v) != 1) { printf("FAIL load %s: short at gene %d sample %d\n", path, g, j); exit(1); }
			x[(size_t)j * G + g] = (float)v;
		}
	double extra;
	if (fscanf(fp, "%lf", &extra) == 1) { printf("FAIL load %s: more values than %d x %d\n", path, G, n); exit(1); }
	fclose(fp);
	free(path);
	return x;
}

static int32_t *load_ints(const char *name, int n)
{
	char *path = xasprintf("%s/%s", fixture_dir, name);
	FILE *fp = fopen(path, "r");
	if (!fp) { printf("FAIL load %s: cannot open\n", path); exit(1); }
	int32_t *v = xmallocarray((size_t)n, sizeof *v);
	for (int i = 0; i < n; i++)
		if (fscanf(fp, "%d", &v[i]) != 1) { printf("FAIL load %s: short\n", path); exit(1); }
	fclose(fp);
	free(path);
	return v;
}

enum { G = 50, N = 30 };

static void against_sva(void)
{
	float *data = load_matrix("data.txt", G, N);
	int32_t *batch = load_ints("batch.txt", N), *cov = load_ints("cov.txt", N);
	struct { const char *name, *file; int cov, mean_only; } cases[] = {
		{ "combat-1.1 parametric vs sva", "par.txt", 0, 0 },
		{ "combat-1.2 parametric with covariate vs sva", "par_cov.txt", 1, 0 },
		{ "combat-1.3 mean-only vs sva", "mean.txt", 0, 1 },
		{ "combat-1.4 mean-only with covariate vs sva", "mean_cov.txt", 1, 1 },
	};
	float *x = xmallocarray((size_t)G * N, sizeof(float));
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		float *want = load_matrix(cases[k].file, G, N);
		memcpy(x, data, sizeof(float) * G * N);
		int un = combat_matrix(x, N, G, batch, 3, cases[k].cov ? cov : NULL, 3, cases[k].mean_only);
		check_close(cases[k].name, x, want, (long)G * N, 1e-6, 1e-4);
		char *nm = xasprintf("combat-1.%zu one gene left unadjusted", 5 + 2 * k);
		CHECK(nm, un == 1);
		free(nm);
		/* the constant gene (the last) is returned as it came */
		int same = 1;
		for (int j = 0; j < N; j++) same &= x[(size_t)j * G + G - 1] == data[(size_t)j * G + G - 1];
		nm = xasprintf("combat-1.%zu unadjusted gene unchanged", 6 + 2 * k);
		CHECK(nm, same);
		free(nm);
		free(want);
	}
	/* a batch of one sample switches to mean-only, as in sva */
	{
		enum { N1 = 19 };
		float *want = load_matrix("single.txt", G, N1);
		int32_t b1[N1];
		for (int j = 0; j < N1; j++) b1[j] = j < 18 ? batch[j] : 2;
		memcpy(x, data, sizeof(float) * G * N1);
		Combat c;
		combat_init(&c, G, 3, 1, 0, NULL, NULL, NULL);
		combat_add(&c, x, N1, b1, NULL);
		combat_finalize(&c);
		CHECK("combat-1.13 batch of one forces mean-only", c.mean_only_used == 1);
		combat_apply(&c, x, N1, b1, NULL);
		check_close("combat-1.14 batch of one vs sva", x, want, (long)G * N1, 1e-6, 1e-4);
		combat_free(&c);
		free(want);
	}
	free(x);
	free(data);
	free(batch);
	free(cov);
}

static void fit_apply(void)
{
	float *data = load_matrix("data.txt", G, N);
	int32_t *batch = load_ints("batch.txt", N), *cov = load_ints("cov.txt", N);
	for (int mo = 0; mo < 2; mo++) {
		/* whole */
		Combat whole;
		combat_init(&whole, G, 3, 3, mo, NULL, NULL, NULL);
		combat_add(&whole, data, N, batch, cov);
		combat_finalize(&whole);
		float *a = xmallocarray((size_t)G * N, sizeof(float));
		memcpy(a, data, sizeof(float) * G * N);
		combat_apply(&whole, a, N, batch, cov);
		/* three uneven chunks, merged */
		Combat part[3];
		int cut[4] = { 0, 7, 19, N };
		for (int k = 0; k < 3; k++) {
			combat_init(&part[k], G, 3, 3, mo, NULL, NULL, NULL);
			combat_add(&part[k], data + (size_t)cut[k] * G, cut[k + 1] - cut[k], batch + cut[k], cov + cut[k]);
		}
		combat_merge(&part[0], &part[1]);
		combat_merge(&part[0], &part[2]);
		combat_finalize(&part[0]);
		float *b = xmallocarray((size_t)G * N, sizeof(float));
		memcpy(b, data, sizeof(float) * G * N);
		combat_apply(&part[0], b, N, batch, cov);
		check_close(mo ? "combat-2.2 mean-only: chunks merged equal one fit" : "combat-2.1 chunks merged equal one fit",
		            b, a, (long)G * N, 1e-5, 1e-5);
		for (int k = 0; k < 3; k++) combat_free(&part[k]);
		/* save, load, apply: identical */
		char path[] = "/tmp/dapipe-combat-XXXXXX";
		int fd = mkstemp(path);
		close(fd);
		char *names[G];
		for (int g = 0; g < G; g++) names[g] = xasprintf("g%d", g + 1);
		char *bn[3] = { "b0", "b1", "b2" }, *ln[3] = { "A", "B", "C" };
		Combat named;
		combat_init(&named, G, 3, 3, mo, names, bn, ln);
		combat_add(&named, data, N, batch, cov);
		combat_finalize(&named);
		combat_save(&named, path);
		Combat loaded;
		combat_load(&loaded, path);
		unlink(path);
		CHECK("combat-2.3 load keeps names", loaded.ngenes == G && strcmp(loaded.genes[4], "g5") == 0 &&
		      strcmp(loaded.batches[2], "b2") == 0 && strcmp(loaded.levels[1], "B") == 0 && loaded.fitted);
		memcpy(b, data, sizeof(float) * G * N);
		combat_apply(&loaded, b, N, batch, cov);
		CHECK("combat-2.4 save/load/apply is bit-identical", memcmp(a, b, sizeof(float) * G * N) == 0);
		/* a loaded fit's accumulators finalize again to the same fit */
		combat_finalize(&loaded);
		memcpy(b, data, sizeof(float) * G * N);
		combat_apply(&loaded, b, N, batch, cov);
		check_close("combat-2.5 loaded accumulators refit", b, a, (long)G * N, 0, 1e-12);
		combat_free(&loaded);
		combat_free(&named);
		for (int g = 0; g < G; g++) free(names[g]);
		/* one new sample at a time gives its row of the whole */
		float row[G];
		int ok = 1;
		for (int j = 0; j < N; j++) {
			memcpy(row, data + (size_t)j * G, sizeof row);
			combat_apply(&whole, row, 1, batch + j, cov + j);
			ok &= memcmp(row, a + (size_t)j * G, sizeof row) == 0;
		}
		CHECK(mo ? "combat-2.7 mean-only: rows applied alone" : "combat-2.6 rows applied alone", ok);
		/* unknown level: exact for mean-only (the covariate term cancels) */
		if (mo) {
			int32_t unk[N];
			for (int j = 0; j < N; j++) unk[j] = -1;
			memcpy(b, data, sizeof(float) * G * N);
			combat_apply(&whole, b, N, batch, unk);
			check_close("combat-2.8 mean-only: unknown level equals known", b, a, (long)G * N, 1e-5, 1e-5);
		}
		combat_free(&whole);
		free(a);
		free(b);
	}
	free(data);
	free(batch);
	free(cov);
}

/* fresh data with a strong batch effect: after ComBat the per-gene batch means
 * agree, the class effect survives when the class is the covariate */
static void removes_batch_effect(void)
{
	enum { GG = 200, NN = 120, B = 3 };
	Rng r;
	rng_seed(&r, 7);
	float *x = xmallocarray((size_t)GG * NN, sizeof(float));
	int32_t batch[NN], cls[NN];
	double shift[B][GG], scale[B][GG], ceff[GG];
	for (int g = 0; g < GG; g++) {
		ceff[g] = g < 20 ? 2.0 : 0.0;
		for (int b = 0; b < B; b++) {
			shift[b][g] = 3 * rng_normal(&r);
			scale[b][g] = 0.5 + 2 * rng_uniform(&r);
		}
	}
	for (int j = 0; j < NN; j++) {
		batch[j] = j % B;
		cls[j] = (j / 7) % 2;
		for (int g = 0; g < GG; g++)
			x[(size_t)j * GG + g] = (float)(5 + shift[batch[j]][g] + cls[j] * ceff[g] + scale[batch[j]][g] * rng_normal(&r));
	}
	double before = 0, after = 0, csig = 0;
	for (int pass = 0; pass < 2; pass++) {
		double spread = 0, cdiff = 0;
		for (int g = 0; g < GG; g++) {
			double m[B] = { 0 }, k[B] = { 0 }, cm[2] = { 0 }, ck[2] = { 0 };
			for (int j = 0; j < NN; j++) {
				m[batch[j]] += x[(size_t)j * GG + g]; k[batch[j]]++;
				cm[cls[j]] += x[(size_t)j * GG + g]; ck[cls[j]]++;
			}
			double lo = 1e30, hi = -1e30;
			for (int b = 0; b < B; b++) { m[b] /= k[b]; if (m[b] < lo) lo = m[b]; if (m[b] > hi) hi = m[b]; }
			spread += hi - lo;
			if (g < 20) cdiff += cm[1] / ck[1] - cm[0] / ck[0];
		}
		if (pass == 0) { before = spread / GG; combat_matrix(x, NN, GG, batch, B, cls, 2, 0); }
		else { after = spread / GG; csig = cdiff / 20; }
	}
	printf("# batch-mean spread %.3f -> %.3f, class effect %.3f\n", before, after, csig);
	CHECK("combat-3.1 batch means agree after correction", after < before / 10);
	CHECK("combat-3.2 class effect kept with the covariate", csig > 1.5 && csig < 2.5);
	free(x);
}

/* run fn in a child; expect exit 1 and stderr containing msg */
static void expect_death(const char *name, void (*fn)(void), const char *msg)
{
	char path[] = "/tmp/dapipe-combat-err-XXXXXX";
	int fd = mkstemp(path);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd, 2);
		fn();
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	char buf[512] = { 0 };
	lseek(fd, 0, SEEK_SET);
	ssize_t got = read(fd, buf, sizeof buf - 1);
	(void)got;
	close(fd);
	unlink(path);
	int ok = WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(buf, msg) != NULL;
	if (ok) printf("PASS %s\n", name);
	else { printf("FAIL %s: status %d, stderr '%s', expected '%s'\n", name, st, buf, msg); check_failures++; }
}

static void confounded(void)
{
	/* the covariate equals the batch */
	float x[6 * 3];
	int32_t b[6] = { 0, 0, 0, 1, 1, 1 }, l[6] = { 0, 0, 0, 1, 1, 1 };
	for (int i = 0; i < 18; i++) x[i] = (float)(i * 7 % 5);
	combat_matrix(x, 6, 3, b, 2, l, 2, 0);
}

static void unseen_batch(void)
{
	float x[4 * 3];
	int32_t b[4] = { 0, 0, 1, 1 };
	for (int i = 0; i < 12; i++) x[i] = (float)(i * 7 % 5);
	Combat c;
	char *bn[3] = { "lab1", "lab2", "lab3" };
	combat_init(&c, 3, 3, 1, 0, NULL, bn, NULL);
	combat_add(&c, x, 4, b, NULL);
	combat_finalize(&c);
	int32_t nb[1] = { 2 };
	combat_apply(&c, x, 1, nb, NULL);
}

static void nan_input(void)
{
	float x[4 * 2] = { 1, 2, 3, 4, 5, NAN, 7, 8 };
	int32_t b[4] = { 0, 0, 1, 1 };
	char *gn[2] = { "TP53", "EGFR" };
	Combat c;
	combat_init(&c, 2, 2, 1, 0, gn, NULL, NULL);
	combat_add(&c, x, 4, b, NULL);
}

int main(int argc, char **argv)
{
	util_init("test_combat");
	const char *env = getenv("COMBAT_FIXTURES");
	if (env) fixture_dir = xstrdup(env);
	else if (access("tests/fixtures/combat/data.txt", R_OK) == 0) fixture_dir = xstrdup("tests/fixtures/combat");
	else {
		char *dir = xstrdup(__FILE__);
		char *slash = strrchr(dir, '/');
		if (slash) *slash = 0; else strcpy(dir, ".");
		fixture_dir = xasprintf("%s/../fixtures/combat", dir);
		free(dir);
	}
	against_sva();
	fit_apply();
	removes_batch_effect();
	expect_death("combat-4.1 confounded covariate", confounded, "combat: the covariate is confounded with batch");
	expect_death("combat-4.2 batch unseen in the fit", unseen_batch, "batch lab3 had no samples in the fit");
	expect_death("combat-4.3 NaN named", nan_input, "combat: sample 2, gene EGFR: value nan");
	free(fixture_dir);
	return check_status();
}
