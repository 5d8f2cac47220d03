/* cond.c: the multilinear map of conditional adversarial alignment (cond.h) */
#include "cond.h"

#include <math.h>
#include <stddef.h>

void cond_map(float *T, const float *P, const float *Z, int B, int K, int H)
{
	for (int i = 0; i < B; i++) {
		const float *z = Z + (size_t)i * H, *p = P + (size_t)i * K;
		float *t = T + (size_t)i * K * H;
		for (int k = 0; k < K; k++) {
			float pk = p[k];
			float *tk = t + (size_t)k * H;
			for (int h = 0; h < H; h++) tk[h] = pk * z[h];
		}
	}
}

void cond_map_backward(float *dZ, const float *P, const float *dT, float scale, int B, int K, int H)
{
	for (int i = 0; i < B; i++) {
		float *dz = dZ + (size_t)i * H;
		const float *p = P + (size_t)i * K, *dt = dT + (size_t)i * K * H;
		for (int k = 0; k < K; k++) {
			float pk = p[k];
			const float *dtk = dt + (size_t)k * H;
			for (int h = 0; h < H; h++) dz[h] += pk * (scale * dtk[h]);
		}
	}
}

void cond_entropy_weights(float *w, const float *P, int B, int ns, int K)
{
	double sum[2] = { 0, 0 };
	for (int i = 0; i < B; i++) {
		const float *p = P + (size_t)i * K;
		double ent = 0;
		for (int k = 0; k < K; k++)
			if (p[k] > 0) ent -= (double)p[k] * log((double)p[k]);
		double e = 1.0 + exp(-ent);
		w[i] = (float)e;
		sum[i >= ns] += e;
	}
	for (int i = 0; i < B; i++) {
		double s = sum[i >= ns];
		w[i] = s > 0 ? (float)(0.5 * B * w[i] / s) : 0.0f;
	}
}
