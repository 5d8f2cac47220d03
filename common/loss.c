/* loss.c: the losses of nn.h: softmax cross-entropy (class weights, label smoothing,
 * ignored rows; PyTorch semantics), binary cross-entropy with logits, and the mean
 * softplus used by the WGAN-GP critic and encoder losses, the last two also with row
 * weights (importance-weighted alignment). All use the stable forms
 * (log-sum-exp with the row maximum subtracted; softplus(z) = max(z,0) + log1p(exp(-|z|))).
 * Each returns the loss and WRITES its gradient (the start of backward). */
#include "nn.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float softmax_xent(float *dlogits, float *probs, int *ncorrect, const float *logits, const int32_t *y,
                   const float *class_w, float smoothing, int B, int K)
{
	/* logits (B,K), y (B) with y < 0 ignored, class_w (K) or NULL.
	 * PyTorch's CrossEntropyLoss(weight=w, label_smoothing=s, reduction='mean'):
	 *   loss = sum_i [ (1-s) w_yi (-logp_i,yi) + (s/K) sum_k w_k (-logp_ik) ] / sum_i w_yi
	 * over labelled rows i. With the target distribution q_ik = (1-s) w_yi [k=yi] + (s/K) w_k
	 * the row loss is -sum_k q_ik logp_ik, whose gradient is (sum_k q_ik) p_ik - q_ik. */
	double num = 0.0, wsum = 0.0;
	int correct = 0;
	double sumw = 0.0;  /* sum_k w_k, for the smoothing term */
	if (class_w) for (int k = 0; k < K; k++) sumw += class_w[k];
	else sumw = K;
	for (int i = 0; i < B; i++) {
		const float *l = logits + (size_t)i * K;
		float *p = probs ? probs + (size_t)i * K : (dlogits ? dlogits + (size_t)i * K : NULL);
		float maxv = l[0];
		int arg = 0;
		for (int k = 1; k < K; k++) if (l[k] > maxv) { maxv = l[k]; arg = k; }
		float sum = 0.0f;
		for (int k = 0; k < K; k++) sum += expf(l[k] - maxv);
		float lse = maxv + logf(sum);
		if (p) {
			float inv = 1.0f / sum;
			for (int k = 0; k < K; k++) p[k] = expf(l[k] - maxv) * inv;
		}
		int yi = y[i];
		if (yi < 0) {
			if (dlogits) memset(dlogits + (size_t)i * K, 0, (size_t)K * sizeof(float));
			continue;
		}
		ASSERT(yi < K);
		if (arg == yi) correct++;
		float wy = class_w ? class_w[yi] : 1.0f;
		wsum += wy;
		double nll = -(double)wy * (l[yi] - lse);
		double smooth = 0.0;
		if (smoothing > 0.0f) {
			for (int k = 0; k < K; k++)
				smooth -= (double)(class_w ? class_w[k] : 1.0f) * (l[k] - lse);
		}
		num += (1.0 - smoothing) * nll + (smoothing / K) * smooth;
		if (dlogits) {
			float *d = dlogits + (size_t)i * K;
			float sk = smoothing / (float)K;
			float Q = (1.0f - smoothing) * wy + sk * (float)sumw;
			if (d != p) memcpy(d, p, (size_t)K * sizeof(float));
			for (int k = 0; k < K; k++) d[k] = Q * d[k] - sk * (class_w ? class_w[k] : 1.0f);
			d[yi] -= (1.0f - smoothing) * wy;
		}
	}
	if (ncorrect) *ncorrect = correct;
	if (wsum == 0.0) {
		if (dlogits) memset(dlogits, 0, (size_t)B * K * sizeof(float));
		return 0.0f;
	}
	if (dlogits) {
		float inv = (float)(1.0 / wsum);
		for (size_t j = 0; j < (size_t)B * K; j++) dlogits[j] *= inv;
	}
	return (float)(num / wsum);
}

static inline float softplusf(float z)
{
	/* log(1 + e^z) without overflow */
	return fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z)));
}

static inline float sigmoidf(float z)
{
	if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
	float e = expf(z);
	return e / (1.0f + e);
}

float bce_logits(float *dlogit, const float *logit, const float *t, int B)
{
	/* loss = mean_i [ max(x,0) - x t + log(1 + e^-|x|) ] = mean_i [ softplus(x) - x t ]
	 * dloss/dx_i = (sigmoid(x_i) - t_i) / B */
	double sum = 0.0;
	for (int i = 0; i < B; i++) {
		float x = logit[i];
		sum += softplusf(x) - x * t[i];
		if (dlogit) dlogit[i] = (sigmoidf(x) - t[i]) / (float)B;
	}
	return B > 0 ? (float)(sum / B) : 0.0f;
}

float mean_softplus(float *ds, const float *s, float sign, int B)
{
	/* loss = mean_i softplus(sign * s_i); dloss/ds_i = sign * sigmoid(sign * s_i) / B */
	double sum = 0.0;
	for (int i = 0; i < B; i++) {
		float z = sign * s[i];
		sum += softplusf(z);
		if (ds) ds[i] = sign * sigmoidf(z) / (float)B;
	}
	return B > 0 ? (float)(sum / B) : 0.0f;
}

float bce_logits_w(float *dlogit, const float *logit, const float *t, const float *w, int B)
{
	/* loss = (1/B) sum_i w_i [ softplus(x_i) - x_i t_i ]
	 * dloss/dx_i = w_i (sigmoid(x_i) - t_i) / B */
	if (!w) return bce_logits(dlogit, logit, t, B);
	double sum = 0.0;
	for (int i = 0; i < B; i++) {
		float x = logit[i];
		sum += (double)w[i] * (softplusf(x) - x * t[i]);
		if (dlogit) dlogit[i] = w[i] * (sigmoidf(x) - t[i]) / (float)B;
	}
	return B > 0 ? (float)(sum / B) : 0.0f;
}

float mean_softplus_w(float *ds, const float *s, const float *w, float sign, int B)
{
	/* loss = (1/B) sum_i w_i softplus(sign * s_i); dloss/ds_i = w_i sign sigmoid(sign s_i) / B */
	if (!w) return mean_softplus(ds, s, sign, B);
	double sum = 0.0;
	for (int i = 0; i < B; i++) {
		float z = sign * s[i];
		sum += (double)w[i] * softplusf(z);
		if (ds) ds[i] = w[i] * sign * sigmoidf(z) / (float)B;
	}
	return B > 0 ? (float)(sum / B) : 0.0f;
}

int prior_shift_em(double *q, const float *P, int n, int K, const double *p, int max_iter, double tol)
{
	double *nq = xcalloc((size_t)K + 1, sizeof(double)), *r = xcalloc((size_t)K + 1, sizeof(double));
	for (int c = 0; c < K; c++) q[c] = p[c];
	int it = 0;
	while (it < max_iter && n > 0) {
		it++;
		memset(nq, 0, sizeof(double) * K);
		for (int j = 0; j < n; j++) {
			const float *pj = P + (size_t)j * K;
			double z = 0;
			for (int c = 0; c < K; c++) {
				r[c] = p[c] > 0 ? pj[c] * q[c] / p[c] : 0;
				z += r[c];
			}
			if (z > 0) for (int c = 0; c < K; c++) nq[c] += r[c] / z;
		}
		double sum = 0, d = 0;
		for (int c = 0; c < K; c++) sum += nq[c];
		if (!(sum > 0)) break;
		for (int c = 0; c < K; c++) {
			double v = nq[c] / sum;
			d += fabs(v - q[c]);
			q[c] = v;
		}
		if (d < tol) break;
	}
	free(nq);
	free(r);
	return it;
}
