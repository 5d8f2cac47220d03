/* align.c: see align.h. */
#include "align.h"
#include "blas.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PAD_ITERS 300
#define PAD_LR 0.05f
#define PAD_WD 1e-3f

static int *shuffled(int n, Rng *r)
{
	int *p = xmallocarray((size_t)n + 1, sizeof(int));
	for (int i = 0; i < n; i++) p[i] = i;
	rng_shuffle_int(r, p, n);
	return p;
}

void align_pad(const float *zs, int ns, const float *zt, int nt, int H, uint64_t seed, PadResult *res)
{
	ASSERT(ns >= 2 && nt >= 2 && H >= 1);
	Rng r;
	rng_seed2(&r, seed, 101);
	int *ps = shuffled(ns, &r), *pt = shuffled(nt, &r);
	int hs = (ns + 1) / 2, ht = (nt + 1) / 2;   /* training rows per domain */
	int ntr = hs + ht, nte = (ns - hs) + (nt - ht);
	float *xtr = xmallocarray((size_t)ntr * H, sizeof(float)), *xte = xmallocarray((size_t)nte * H, sizeof(float));
	float *t = xmallocarray((size_t)ntr, sizeof(float)), *w = xmallocarray((size_t)ntr, sizeof(float));
	int32_t *dte = xmallocarray((size_t)nte, sizeof(int32_t));
	int a = 0, b = 0;
	for (int i = 0; i < ns; i++) {
		const float *src = zs + (size_t)ps[i] * H;
		if (i < hs) { memcpy(xtr + (size_t)a * H, src, sizeof(float) * H); t[a] = 0; w[a] = 0.5f / hs; a++; }
		else { memcpy(xte + (size_t)b * H, src, sizeof(float) * H); dte[b++] = 0; }
	}
	for (int i = 0; i < nt; i++) {
		const float *src = zt + (size_t)pt[i] * H;
		if (i < ht) { memcpy(xtr + (size_t)a * H, src, sizeof(float) * H); t[a] = 1; w[a] = 0.5f / ht; a++; }
		else { memcpy(xte + (size_t)b * H, src, sizeof(float) * H); dte[b++] = 1; }
	}
	/* standardise with the training half's statistics */
	for (int j = 0; j < H; j++) {
		double s = 0, ss = 0;
		for (int i = 0; i < ntr; i++) s += xtr[(size_t)i * H + j];
		double mu = s / ntr;
		for (int i = 0; i < ntr; i++) { double d = xtr[(size_t)i * H + j] - mu; ss += d * d; }
		double sd = sqrt(ss / ntr);
		float inv = sd > 1e-12 ? (float)(1 / sd) : 0.0f;
		for (int i = 0; i < ntr; i++) xtr[(size_t)i * H + j] = (float)(xtr[(size_t)i * H + j] - mu) * inv;
		for (int i = 0; i < nte; i++) xte[(size_t)i * H + j] = (float)(xte[(size_t)i * H + j] - mu) * inv;
	}
	/* logistic regression: one Linear layer, class-balanced BCE, Adam, full batch */
	MlpSpec sp;
	mlp_spec_init(&sp);
	sp.in = H;
	sp.nlayers = 1;
	sp.widths[0] = 1;
	sp.head = 1;
	Mlp *m = mlp_new(&sp, seed);
	Optim opt;
	optim_init(&opt, OPT_ADAM, mlp_nparams(m));
	opt.weight_decay = PAD_WD;
	float *dl = xmallocarray((size_t)ntr, sizeof(float));
	for (int it = 0; it < PAD_ITERS; it++) {
		const float *lg = mlp_forward(m, xtr, ntr, 1);
		bce_logits(dl, lg, t, ntr);
		/* bce_logits gives (sigmoid - t) / B: reweight to sum_i w_i (sigmoid - t) */
		for (int i = 0; i < ntr; i++) dl[i] *= (float)ntr * w[i];
		mlp_zero_grad(m);
		mlp_backward(m, dl, NULL);
		optim_step(&opt, mlp_params(m), mlp_grads(m), PAD_LR);
	}
	long wrong[2] = { 0, 0 }, cnt[2] = { 0, 0 };
	if (nte) {
		const float *lg = mlp_forward(m, xte, nte, 0);
		for (int i = 0; i < nte; i++) {
			cnt[dte[i]]++;
			wrong[dte[i]] += (lg[i] > 0) != (dte[i] == 1);
		}
	}
	res->err_source = cnt[0] ? (double)wrong[0] / cnt[0] : 0.5;
	res->err_target = cnt[1] ? (double)wrong[1] / cnt[1] : 0.5;
	res->err = (res->err_source + res->err_target) / 2;
	res->pad = 2 * (1 - 2 * res->err);
	res->n_train = ntr;
	res->n_test = nte;
	optim_free(&opt);
	mlp_free(m);
	free(dl);
	free(ps); free(pt);
	free(xtr); free(xte); free(t); free(w); free(dte);
}

/* k-th smallest of v[0..n) (v is reordered) */
static double select_kth(double *v, long n, long k)
{
	long lo = 0, hi = n - 1;
	while (lo < hi) {
		double piv = v[lo + (hi - lo) / 2];
		long i = lo, j = hi;
		while (i <= j) {
			while (v[i] < piv) i++;
			while (v[j] > piv) j--;
			if (i <= j) { double tmp = v[i]; v[i] = v[j]; v[j] = tmp; i++; j--; }
		}
		if (k <= j) hi = j;
		else if (k >= i) lo = i;
		else return v[k];
	}
	return v[k];
}

void align_mmd(const float *zs, int ns, const float *zt, int nt, int H, uint64_t seed, int max_rows, MmdResult *res)
{
	ASSERT(ns >= 2 && nt >= 2 && H >= 1 && max_rows >= 2);
	Rng r;
	rng_seed2(&r, seed, 202);
	int *ps = shuffled(ns, &r), *pt = shuffled(nt, &r);
	int m = ns < max_rows ? ns : max_rows, n = nt < max_rows ? nt : max_rows, N = m + n;
	/* the pooled subsample: m source rows, then n target rows */
	float *Z = xmallocarray((size_t)N * H, sizeof(float));
	for (int i = 0; i < m; i++) memcpy(Z + (size_t)i * H, zs + (size_t)ps[i] * H, sizeof(float) * H);
	for (int i = 0; i < n; i++) memcpy(Z + (size_t)(m + i) * H, zt + (size_t)pt[i] * H, sizeof(float) * H);
	/* squared distances |a|^2 + |b|^2 - 2 a.b, the Gram matrix through BLAS */
	float *G = xmallocarray((size_t)N * N, sizeof(float));
	gemm(0, 1, N, N, H, 1.0f, Z, H, Z, H, 0.0f, G, N);
	double *nrm = xmallocarray((size_t)N, sizeof(double));
	for (int i = 0; i < N; i++) {
		double s = 0;
		for (int j = 0; j < H; j++) s += (double)Z[(size_t)i * H + j] * Z[(size_t)i * H + j];
		nrm[i] = s;
	}
	long np = (long)N * (N - 1) / 2, k = 0;
	double *pd = xmallocarray((size_t)np, sizeof(double));
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++) {
			double d = nrm[i] + nrm[j] - 2.0 * G[(size_t)i * N + j];
			pd[k++] = d > 0 ? d : 0;
		}
	double med = select_kth(pd, np, np / 2);
	double s2 = med > 0 ? med : 1.0;
	double kss = 0, ktt = 0, kst = 0;
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++) {
			double d = nrm[i] + nrm[j] - 2.0 * G[(size_t)i * N + j];
			double kv = exp(-(d > 0 ? d : 0) / (2 * s2));
			if (i < m && j < m) kss += kv;
			else if (i >= m && j >= m) ktt += kv;
			else kst += kv;
		}
	/* the pair sums above hold each unordered pair once */
	res->mmd2 = 2 * kss / ((double)m * (m - 1)) + 2 * ktt / ((double)n * (n - 1)) - 2 * kst / ((double)m * n);
	res->mmd = res->mmd2 > 0 ? sqrt(res->mmd2) : 0;
	res->sigma2 = s2;
	res->ns = m;
	res->nt = n;
	free(pd);
	free(nrm);
	free(G);
	free(Z);
	free(ps);
	free(pt);
}
