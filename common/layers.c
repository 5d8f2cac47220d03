/* layers.c: forward/backward pairs of the layers declared in nn.h (Linear, ReLU,
 * LeakyReLU, Tanh, BatchNorm1d, LayerNorm, Dropout, gradient reversal).
 * llm.c's shape: outputs, caches, inputs, weights, sizes. Backward ADDS into gradients.
 * Dense math goes through gemm() (blas.h); the rest are plain loops over contiguous
 * rows that the compiler vectorises. */
#include "nn.h"
#include "blas.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- large buffers ---- */

#define HUGE_PAGE ((size_t)2 << 20)

void *nn_alloc(size_t n, size_t size, int zero)
{
	if (n == 0) n = 1;
	if (n > SIZE_MAX / size) die("out of memory (%zu x %zu bytes)", n, size);
	size_t bytes = n * size;
	if (bytes < 2 * HUGE_PAGE) return zero ? xcalloc(n, size) : xmalloc(bytes);
	size_t len = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	void *p = NULL;
	if (posix_memalign(&p, HUGE_PAGE, len) != 0) die("out of memory (%zu bytes)", len);
#ifdef MADV_HUGEPAGE
	madvise(p, len, MADV_HUGEPAGE);  /* a hint: without it, ordinary pages */
#endif
	if (zero) memset(p, 0, bytes);
	return p;
}

/* ---- Linear ---- */

void linear_forward(float *out, const float *inp, const float *w, const float *b, int B, int C, int OC)
{
	/* inp is (B,C), w is (OC,C), b is (OC) or NULL, out is (B,OC):
	 * out = inp @ w^T + b */
	if (b) {
		for (int i = 0; i < B; i++)
			memcpy(out + (size_t)i * OC, b, (size_t)OC * sizeof(float));
	}
	gemm(0, 1, B, OC, C, 1.0f, inp, C, w, C, b ? 1.0f : 0.0f, out, OC);
}

void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int B, int C, int OC)
{
	/* dout is (B,OC), inp is (B,C), w is (OC,C).
	 * in the forward pass this was: out[b,o] = sum_c inp[b,c] * w[o,c] + b[o] */
	/* dinp (B,C) += dout (B,OC) @ w (OC,C) */
	if (dinp) gemm(0, 0, B, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
	/* dw (OC,C) += dout^T (OC,B) @ inp (B,C) */
	if (dw) gemm(1, 0, OC, C, B, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
	/* db (OC) += sum over rows of dout */
	if (db) {
		for (int i = 0; i < B; i++) {
			const float *d = dout + (size_t)i * OC;
			for (int o = 0; o < OC; o++) db[o] += d[o];
		}
	}
}

/* ---- activations ---- */

void relu_forward(float *out, const float *inp, long n)
{
	/* written so that a NaN input stays NaN (as PyTorch's), so divergence shows */
	for (long i = 0; i < n; i++) out[i] = inp[i] < 0.0f ? 0.0f : inp[i];
}

void relu_backward(float *dinp, const float *dout, const float *inp, long n)
{
	/* in the forward pass this was: out = inp > 0 ? inp : 0 (derivative 0 at 0, like PyTorch).
	 * Both sides computed, then selected: a loop the compiler vectorises (a branch on
	 * the sign of random values mispredicts half the time) */
	for (long i = 0; i < n; i++) {
		float d = dout[i];
		dinp[i] += inp[i] > 0.0f ? d : 0.0f;
	}
}

/* c ? a : b through the bits, so that both sides are computed and the loop has no
 * branch (the compiler keeps a multiplication behind a branch, which it cannot
 * vectorise, and a branch on the sign of random values mispredicts half the time) */
static inline float select_bits(int c, float a, float b)
{
	uint32_t ua, ub, m = 0u - (uint32_t)(c != 0);
	memcpy(&ua, &a, sizeof ua);
	memcpy(&ub, &b, sizeof ub);
	ua = (ua & m) | (ub & ~m);
	memcpy(&a, &ua, sizeof a);
	return a;
}

void leaky_relu_forward(float *out, const float *inp, float slope, long n)
{
	for (long i = 0; i < n; i++) out[i] = select_bits(inp[i] < 0.0f, slope * inp[i], inp[i]);
}

void leaky_relu_backward(float *dinp, const float *dout, const float *inp, float slope, long n)
{
	/* in the forward pass this was: out = inp > 0 ? inp : slope * inp */
	for (long i = 0; i < n; i++) dinp[i] += select_bits(inp[i] > 0.0f, dout[i], slope * dout[i]);
}

void tanh_forward(float *out, const float *inp, long n)
{
	for (long i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

void tanh_backward(float *dinp, const float *dout, const float *out, long n)
{
	/* in the forward pass this was: out = tanh(inp); d tanh = 1 - out^2 */
	for (long i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

/* ---- BatchNorm1d ---- */

void batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma, const float *beta,
                       float *running_mean, float *running_var, float momentum, float eps, int train, int B, int C)
{
	/* inp is (B,C), gamma/beta (C), mean/rstd (C) cache, running_mean/var (C), out (B,C).
	 * Rows are walked outermost so the inner loops run over contiguous channels. */
	if (!train) {
		/* out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta */
		for (int c = 0; c < C; c++) {
			float rs = 1.0f / sqrtf(running_var[c] + eps);
			if (rstd) rstd[c] = rs;
			if (mean) mean[c] = running_mean[c];
		}
		for (int i = 0; i < B; i++) {
			const float *x = inp + (size_t)i * C;
			float *o = out + (size_t)i * C;
			for (int c = 0; c < C; c++) {
				float rs = 1.0f / sqrtf(running_var[c] + eps);
				o[c] = gamma[c] * (x[c] - running_mean[c]) * rs + beta[c];
			}
		}
		return;
	}
	ASSERT(B > 1);
	ASSERT(mean && rstd);
	/* mean[c] = sum_b x[b,c] / B */
	for (int c = 0; c < C; c++) mean[c] = 0.0f;
	for (int i = 0; i < B; i++) {
		const float *x = inp + (size_t)i * C;
		for (int c = 0; c < C; c++) mean[c] += x[c];
	}
	for (int c = 0; c < C; c++) mean[c] /= (float)B;
	/* var[c] = sum_b (x[b,c] - mean[c])^2 / B (biased, kept in rstd until inverted) */
	for (int c = 0; c < C; c++) rstd[c] = 0.0f;
	for (int i = 0; i < B; i++) {
		const float *x = inp + (size_t)i * C;
		for (int c = 0; c < C; c++) {
			float d = x[c] - mean[c];
			rstd[c] += d * d;
		}
	}
	float unbias = (float)B / (float)(B - 1);
	for (int c = 0; c < C; c++) {
		float var = rstd[c] / (float)B;
		if (running_mean) {
			/* PyTorch: running = (1 - momentum) * running + momentum * batch, unbiased var */
			running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean[c];
			running_var[c] = (1.0f - momentum) * running_var[c] + momentum * var * unbias;
		}
		rstd[c] = 1.0f / sqrtf(var + eps);
	}
	for (int i = 0; i < B; i++) {
		const float *x = inp + (size_t)i * C;
		float *o = out + (size_t)i * C;
		for (int c = 0; c < C; c++) o[c] = gamma[c] * ((x[c] - mean[c]) * rstd[c]) + beta[c];
	}
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int B, int C)
{
	/* in the forward pass this was:
	 *   xhat = (x - mean) * rstd;  out = gamma * xhat + beta
	 * with mean and rstd functions of the whole column, which gives
	 *   dx = rstd * (dxhat - mean_b(dxhat) - xhat * mean_b(dxhat * xhat)),  dxhat = gamma * dout */
	float *s = xmallocarray((size_t)2 * C, sizeof(float));
	float *sum_d = s, *sum_dx = s + C;  /* sum_b dout, sum_b dout * xhat */
	for (int c = 0; c < 2 * C; c++) s[c] = 0.0f;
	for (int i = 0; i < B; i++) {
		const float *x = inp + (size_t)i * C;
		const float *d = dout + (size_t)i * C;
		for (int c = 0; c < C; c++) {
			sum_d[c] += d[c];
			sum_dx[c] += d[c] * ((x[c] - mean[c]) * rstd[c]);
		}
	}
	if (dgamma) for (int c = 0; c < C; c++) dgamma[c] += sum_dx[c];
	if (dbeta) for (int c = 0; c < C; c++) dbeta[c] += sum_d[c];
	if (dinp) {
		float invB = 1.0f / (float)B;
		for (int i = 0; i < B; i++) {
			const float *x = inp + (size_t)i * C;
			const float *d = dout + (size_t)i * C;
			float *dx = dinp + (size_t)i * C;
			for (int c = 0; c < C; c++) {
				float xhat = (x[c] - mean[c]) * rstd[c];
				dx[c] += gamma[c] * rstd[c] * (d[c] - invB * sum_d[c] - xhat * invB * sum_dx[c]);
			}
		}
	}
	free(s);
}

/* ---- LayerNorm ---- */

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma, const float *beta, float eps, int B, int C)
{
	/* inp is (B,C), normalised over C; mean/rstd (B) cache; gamma/beta (C) */
	for (int i = 0; i < B; i++) {
		const float *x = inp + (size_t)i * C;
		float *o = out + (size_t)i * C;
		float m = 0.0f;
		for (int c = 0; c < C; c++) m += x[c];
		m /= (float)C;
		float v = 0.0f;
		for (int c = 0; c < C; c++) {
			float d = x[c] - m;
			v += d * d;
		}
		v /= (float)C;  /* biased, like PyTorch */
		float rs = 1.0f / sqrtf(v + eps);
		for (int c = 0; c < C; c++) o[c] = gamma[c] * ((x[c] - m) * rs) + beta[c];
		if (mean) mean[i] = m;
		if (rstd) rstd[i] = rs;
	}
}

void layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int B, int C)
{
	/* in the forward pass this was:
	 *   xhat = (x - mean) * rstd;  out = gamma * xhat + beta   (statistics over the row)
	 * so dx = rstd * (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat * xhat)) */
	for (int i = 0; i < B; i++) {
		const float *x = inp + (size_t)i * C;
		const float *d = dout + (size_t)i * C;
		float m = mean[i], rs = rstd[i];
		float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
		for (int c = 0; c < C; c++) {
			float xhat = (x[c] - m) * rs;
			float dnorm = gamma[c] * d[c];
			dnorm_mean += dnorm;
			dnorm_norm_mean += dnorm * xhat;
		}
		dnorm_mean /= (float)C;
		dnorm_norm_mean /= (float)C;
		for (int c = 0; c < C; c++) {
			float xhat = (x[c] - m) * rs;
			float dnorm = gamma[c] * d[c];
			if (dbeta) dbeta[c] += d[c];
			if (dgamma) dgamma[c] += xhat * d[c];
			if (dinp) dinp[(size_t)i * C + c] += rs * (dnorm - dnorm_mean - xhat * dnorm_norm_mean);
		}
	}
}

/* ---- Dropout (inverted) ---- */

void dropout_forward(float *out, float *mask, const float *inp, float p, Rng *rng, long n)
{
	/* mask[i] = 0 with probability p, else 1/(1-p); out = inp * mask.
	 * p = 0 draws nothing from rng (so a model without dropout keeps its rng state). */
	if (p <= 0.0f) {
		for (long i = 0; i < n; i++) mask[i] = 1.0f;
	} else if (p >= 1.0f) {
		for (long i = 0; i < n; i++) mask[i] = 0.0f;
	} else {
		float scale = 1.0f / (1.0f - p);
		for (long i = 0; i < n; i++) mask[i] = rng_uniform(rng) < (double)p ? 0.0f : scale;
	}
	for (long i = 0; i < n; i++) out[i] = inp[i] * mask[i];
}

void dropout_backward(float *dinp, const float *dout, const float *mask, long n)
{
	/* in the forward pass this was: out = inp * mask */
	for (long i = 0; i < n; i++) dinp[i] += dout[i] * mask[i];
}

/* ---- gradient reversal layer ---- */

void grl_backward(float *dinp, const float *dout, float lambda, long n)
{
	/* in the forward pass this was: out = inp (identity); backward reverses and scales */
	for (long i = 0; i < n; i++) dinp[i] += -lambda * dout[i];
}
