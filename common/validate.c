/* validate.c: unsupervised validators (see validate.h and docs/VALIDATION.md). */
#include "validate.h"
#include "blas.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *val_names[VAL_COUNT] = { "source-val", "entropy", "im", "snd", "dev", "reverse" };

int val_find(const char *name)
{
	for (int i = 0; i < VAL_COUNT; i++)
		if (strcmp(name, val_names[i]) == 0) return i;
	return -1;
}

double val_score(int v, double raw)
{
	return v == VAL_ENTROPY || v == VAL_DEV ? -raw : raw;
}

void val_softmax(float *p, int n, int K)
{
	for (int i = 0; i < n; i++) {
		float *r = p + (size_t)i * K, mx = r[0];
		for (int k = 1; k < K; k++) if (r[k] > mx) mx = r[k];
		double s = 0;
		for (int k = 0; k < K; k++) { r[k] = expf(r[k] - mx); s += r[k]; }
		for (int k = 0; k < K; k++) r[k] = (float)(r[k] / s);
	}
}

static double row_entropy(const float *r, int K)
{
	double h = 0;
	for (int k = 0; k < K; k++)
		if (r[k] > 0) h -= (double)r[k] * log((double)r[k]);
	return h;
}

double val_entropy(const float *p, int n, int K)
{
	if (n < 1) return NAN;
	double h = 0;
	for (int i = 0; i < n; i++) h += row_entropy(p + (size_t)i * K, K);
	return h / n;
}

double val_im(const float *p, int n, int K)
{
	if (n < 1) return NAN;
	double *m = xcalloc((size_t)K, sizeof(double)), hm = 0;
	for (int i = 0; i < n; i++)
		for (int k = 0; k < K; k++) m[k] += p[(size_t)i * K + k];
	for (int k = 0; k < K; k++) {
		double q = m[k] / n;
		if (q > 0) hm -= q * log(q);
	}
	free(m);
	return hm - val_entropy(p, n, K);
}

double val_snd(const float *p, int n, int K, double tau)
{
	if (n < 2) return NAN;
	float *u = xmallocarray((size_t)n * K, sizeof(float));
	for (int i = 0; i < n; i++) {
		double s = 0;
		for (int k = 0; k < K; k++) s += (double)p[(size_t)i * K + k] * p[(size_t)i * K + k];
		float inv = s > 0 ? (float)(1 / sqrt(s)) : 0;
		for (int k = 0; k < K; k++) u[(size_t)i * K + k] = p[(size_t)i * K + k] * inv;
	}
	/* S (n,n) = u u^T, cosine similarities */
	float *S = xmallocarray((size_t)n * n, sizeof(float));
	gemm(0, 1, n, n, K, 1.0f, u, K, u, K, 0.0f, S, n);
	double total = 0;
	for (int i = 0; i < n; i++) {
		float *r = S + (size_t)i * n;
		double mx = -INFINITY, z = 0, h = 0;
		for (int j = 0; j < n; j++) if (j != i && r[j] / tau > mx) mx = r[j] / tau;
		for (int j = 0; j < n; j++) if (j != i) z += exp(r[j] / tau - mx);
		for (int j = 0; j < n; j++) {
			if (j == i) continue;
			double q = exp(r[j] / tau - mx) / z;
			if (q > 0) h -= q * log(q);
		}
		total += h;
	}
	free(S);
	free(u);
	return total / n;
}

/* ---- small regularised linear models, fitted by gradient descent ---- */

/* column means and standard deviations of X (n,H) */
static void col_stats(const float *X, int n, int H, float *mu, float *sd)
{
	for (int j = 0; j < H; j++) {
		double s = 0, q = 0;
		for (int i = 0; i < n; i++) s += X[(size_t)i * H + j];
		double m = s / n;
		for (int i = 0; i < n; i++) { double d = X[(size_t)i * H + j] - m; q += d * d; }
		double v = sqrt(q / n);
		mu[j] = (float)m;
		sd[j] = v > 1e-6 ? (float)v : 1.0f;
	}
}

static float *standardise(const float *X, int n, int H, const float *mu, const float *sd)
{
	float *Y = xmallocarray((size_t)n * H + 1, sizeof(float));
	for (int i = 0; i < n; i++)
		for (int j = 0; j < H; j++) Y[(size_t)i * H + j] = (X[(size_t)i * H + j] - mu[j]) / sd[j];
	return Y;
}

/* largest eigenvalue of X^T X / n by power iteration (the step size of GD) */
static double gram_norm(const float *X, int n, int H)
{
	float *v = xmallocarray((size_t)H, sizeof(float)), *t = xmallocarray((size_t)n, sizeof(float));
	float *w = xmallocarray((size_t)H, sizeof(float));
	for (int j = 0; j < H; j++) v[j] = 1.0f / sqrtf((float)H);
	double lam = 1;
	for (int it = 0; it < 30; it++) {
		gemm(0, 0, n, 1, H, 1.0f, X, H, v, 1, 0.0f, t, 1);
		gemm(1, 0, H, 1, n, 1.0f / n, X, H, t, 1, 0.0f, w, 1);
		double s = 0;
		for (int j = 0; j < H; j++) s += (double)w[j] * w[j];
		s = sqrt(s);
		if (!(s > 0)) { lam = 1e-6; break; }
		lam = s;
		for (int j = 0; j < H; j++) v[j] = (float)(w[j] / s);
	}
	free(v); free(t); free(w);
	return lam;
}

/* multinomial logistic regression with L2 penalty l2/2 |W|^2: X (n,H) standardised,
 * y (n) in 0..K-1, sample weights sw (n) or NULL; W (K,H), b (K). K = 1 means binary
 * logistic regression with y in {0,1} (one logit). */
static void fit_linear(float *W, float *b, const float *X, const int32_t *y, const float *sw, int n, int H, int K,
                       double l2, int iters)
{
	int C = K == 1 ? 1 : K;
	double L = (K == 1 ? 0.25 : 0.5) * gram_norm(X, n, H) + l2;
	float step = (float)(1.0 / L);
	float *G = xmallocarray((size_t)n * C, sizeof(float)), *dW = xmallocarray((size_t)C * H, sizeof(float));
	memset(W, 0, sizeof(float) * (size_t)C * H);
	memset(b, 0, sizeof(float) * (size_t)C);
	double wsum = 0;
	for (int i = 0; i < n; i++) wsum += sw ? sw[i] : 1;
	for (int it = 0; it < iters; it++) {
		/* logits G (n,C) = X W^T + b */
		gemm(0, 1, n, C, H, 1.0f, X, H, W, H, 0.0f, G, C);
		for (int i = 0; i < n; i++) {
			float *g = G + (size_t)i * C, wi = (float)((sw ? sw[i] : 1) / wsum);
			for (int k = 0; k < C; k++) g[k] += b[k];
			if (K == 1) {
				g[0] = (1.0f / (1.0f + expf(-g[0])) - (float)y[i]) * wi;
			} else {
				val_softmax(g, 1, C);
				g[y[i]] -= 1;
				for (int k = 0; k < C; k++) g[k] *= wi;
			}
		}
		/* dW (C,H) = G^T X */
		gemm(1, 0, C, H, n, 1.0f, G, C, X, H, 0.0f, dW, H);
		for (size_t k = 0; k < (size_t)C * H; k++) W[k] -= step * (dW[k] + (float)l2 * W[k]);
		for (int k = 0; k < C; k++) {
			double db = 0;
			for (int i = 0; i < n; i++) db += G[(size_t)i * C + k];
			b[k] -= step * (float)db;
		}
	}
	free(G);
	free(dW);
}

double val_dev(const float *zs, const float *loss, int ns, const float *zt, int nt, int H, uint64_t seed)
{
	if (ns < 4 || nt < 4) return NAN;
	int n = ns + nt;
	float *X = xmallocarray((size_t)n * H, sizeof(float)), *mu = xmallocarray((size_t)H, sizeof(float));
	float *sd = xmallocarray((size_t)H, sizeof(float));
	memcpy(X, zs, sizeof(float) * (size_t)ns * H);
	memcpy(X + (size_t)ns * H, zt, sizeof(float) * (size_t)nt * H);
	col_stats(X, n, H, mu, sd);
	float *Z = standardise(X, n, H, mu, sd);
	free(X);
	/* two folds, assigned at random within each domain */
	int32_t *fold = xmallocarray((size_t)n, sizeof(int32_t)), *d = xmallocarray((size_t)n, sizeof(int32_t));
	Rng rng;
	rng_seed(&rng, seed);
	for (int i = 0; i < n; i++) d[i] = i >= ns;
	for (int dom = 0; dom < 2; dom++) {
		int a = dom ? ns : 0, m = dom ? nt : ns;
		int *perm = xmallocarray((size_t)m, sizeof(int));
		for (int i = 0; i < m; i++) perm[i] = i;
		for (int i = m - 1; i > 0; i--) {
			int j = (int)rng_below(&rng, (uint64_t)i + 1), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		for (int i = 0; i < m; i++) fold[a + perm[i]] = i % 2;
		free(perm);
	}
	double *w = xmallocarray((size_t)ns, sizeof(double));
	float *Xf = xmallocarray((size_t)n * H, sizeof(float)), *W = xmallocarray((size_t)H, sizeof(float)), b;
	int32_t *yf = xmallocarray((size_t)n, sizeof(int32_t));
	for (int f = 0; f < 2; f++) {
		int m = 0, ms = 0, mt = 0;
		for (int i = 0; i < n; i++)
			if (fold[i] != f) {
				memcpy(Xf + (size_t)m * H, Z + (size_t)i * H, sizeof(float) * H);
				yf[m++] = d[i];
				if (d[i]) mt++; else ms++;
			}
		fit_linear(W, &b, Xf, yf, NULL, m, H, 1, 1.0, 200);
		for (int i = 0; i < ns; i++) {
			if (fold[i] != f) continue;
			double s = b;
			for (int j = 0; j < H; j++) s += (double)W[j] * Z[(size_t)i * H + j];
			double pt = 1 / (1 + exp(-s));
			if (pt < 1e-3) pt = 1e-3;
			if (pt > 1 - 1e-3) pt = 1 - 1e-3;
			w[i] = (double)ms / (mt > 0 ? mt : 1) * pt / (1 - pt);
		}
	}
	/* control variate: mean(wl) + eta mean(w) - eta, eta = -Cov(wl, w) / Var(w) */
	double mwl = 0, mw = 0;
	for (int i = 0; i < ns; i++) { mwl += w[i] * loss[i]; mw += w[i]; }
	mwl /= ns;
	mw /= ns;
	double cov = 0, var = 0;
	for (int i = 0; i < ns; i++) {
		cov += (w[i] * loss[i] - mwl) * (w[i] - mw);
		var += (w[i] - mw) * (w[i] - mw);
	}
	double eta = var > 0 ? -cov / var : 0;
	double r = mwl + eta * mw - eta;
	/* E_source[w] = 1 when the ratios are right; a mean far below 1 means the domain
	 * classifier separates the domains: no source row stands for the target, the
	 * target risk cannot be estimated, and the model ranks last */
	if (mw < 0.1) r = INFINITY;
	free(w); free(Xf); free(W); free(yf); free(fold); free(d); free(Z); free(mu); free(sd);
	return r;
}

double val_reverse(const float *zt, const int32_t *pl, int nt, const float *zs, const int32_t *ys, int ns,
                   int H, int K)
{
	if (ns < 1 || nt < 2 || K < 2) return NAN;
	float *mu = xmallocarray((size_t)H, sizeof(float)), *sd = xmallocarray((size_t)H, sizeof(float));
	col_stats(zt, nt, H, mu, sd);
	float *T = standardise(zt, nt, H, mu, sd), *S = standardise(zs, ns, H, mu, sd);
	float *W = xmallocarray((size_t)K * H, sizeof(float)), *b = xmallocarray((size_t)K, sizeof(float));
	fit_linear(W, b, T, pl, NULL, nt, H, K, 1.0, 100);
	float *G = xmallocarray((size_t)ns * K, sizeof(float));
	gemm(0, 1, ns, K, H, 1.0f, S, H, W, H, 0.0f, G, K);
	int correct = 0;
	for (int i = 0; i < ns; i++) {
		int best = 0;
		for (int k = 1; k < K; k++)
			if (G[(size_t)i * K + k] + b[k] > G[(size_t)i * K + best] + b[best]) best = k;
		correct += best == ys[i];
	}
	free(mu); free(sd); free(T); free(S); free(W); free(b); free(G);
	return (double)correct / ns;
}
