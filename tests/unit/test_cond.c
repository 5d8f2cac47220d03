/* test_cond.c: conditional adversarial alignment (train-step --align conditional;
 * common/cond.h).
 *
 * 1. cond_map against a naive (B,K,H) outer product in double, on random shapes.
 * 2. cond_map_backward: the gradient of a linear domain head with the weighted BCE
 *    of nn.h on T = p (x) z, with respect to z (p constant), against central
 *    differences of the loss; its "+=" contract and its scale.
 * 3. cond_entropy_weights: against 1 + exp(-H(p)) computed in double, each domain's
 *    weights summing to B/2, a one-hot row weighted 2 / a uniform row 1 + 1/K before
 *    the normalisation. */
#include "check.h"
#include "cond.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Rng R;

static void rand_probs(float *P, int B, int K)
{
	for (int i = 0; i < B; i++) {
		double s = 0;
		for (int k = 0; k < K; k++) s += P[(size_t)i * K + k] = (float)exp(2.0 * rng_normal(&R));
		for (int k = 0; k < K; k++) P[(size_t)i * K + k] = (float)(P[(size_t)i * K + k] / s);
	}
}

static void test_map(void)
{
	int shapes[3][3] = { { 1, 1, 1 }, { 5, 3, 7 }, { 17, 16, 32 } };
	int ok = 1;
	for (int c = 0; c < 3; c++) {
		int B = shapes[c][0], K = shapes[c][1], H = shapes[c][2];
		float *P = xmallocarray((size_t)B * K, sizeof(float)), *Z = xmallocarray((size_t)B * H, sizeof(float));
		float *T = xmallocarray((size_t)B * K * H, sizeof(float));
		rand_probs(P, B, K);
		for (int j = 0; j < B * H; j++) Z[j] = (float)rng_normal(&R);
		cond_map(T, P, Z, B, K, H);
		for (int i = 0; i < B; i++)
			for (int k = 0; k < K; k++)
				for (int h = 0; h < H; h++) {
					double want = (double)P[i * K + k] * Z[i * H + h];
					if (fabs(T[((size_t)i * K + k) * H + h] - want) > 1e-6 * (1 + fabs(want))) ok = 0;
				}
		free(P); free(Z); free(T);
	}
	CHECK("cond.map-naive", ok);
}

/* the loss of a linear head a (K*H) with the weighted BCE on T = p (x) z */
typedef struct { int B, K, H; float *P, *Z, *a, *t, *w; } Ctx;

static double loss_at(const Ctx *c, float *dZ)
{
	int B = c->B, KH = c->K * c->H;
	float *T = xmallocarray((size_t)B * KH, sizeof(float)), *lg = xmallocarray((size_t)B, sizeof(float));
	float *dl = xmallocarray((size_t)B, sizeof(float));
	cond_map(T, c->P, c->Z, B, c->K, c->H);
	for (int i = 0; i < B; i++) {
		double s = 0;
		for (int j = 0; j < KH; j++) s += (double)c->a[j] * T[(size_t)i * KH + j];
		lg[i] = (float)s;
	}
	float loss = bce_logits_w(dZ ? dl : NULL, lg, c->t, c->w, B);
	if (dZ) {
		float *dT = xmallocarray((size_t)B * KH, sizeof(float));
		for (int i = 0; i < B; i++)
			for (int j = 0; j < KH; j++) dT[(size_t)i * KH + j] = dl[i] * c->a[j];
		cond_map_backward(dZ, c->P, dT, 1.0f, B, c->K, c->H);
		free(dT);
	}
	free(T); free(lg); free(dl);
	return loss;
}

static void test_backward(void)
{
	Ctx c = { .B = 6, .K = 4, .H = 5 };
	int B = c.B, K = c.K, H = c.H, ns = 2;
	c.P = xmallocarray((size_t)B * K, sizeof(float));
	c.Z = xmallocarray((size_t)B * H, sizeof(float));
	c.a = xmallocarray((size_t)K * H, sizeof(float));
	c.t = xmallocarray((size_t)B, sizeof(float));
	c.w = xmallocarray((size_t)B, sizeof(float));
	rand_probs(c.P, B, K);
	for (int j = 0; j < B * H; j++) c.Z[j] = (float)rng_normal(&R);
	for (int j = 0; j < K * H; j++) c.a[j] = (float)(0.5 * rng_normal(&R));
	for (int i = 0; i < B; i++) c.t[i] = i >= ns;
	cond_entropy_weights(c.w, c.P, B, ns, K);
	float *g = xcalloc((size_t)B * H, sizeof(float)), *fd = xmallocarray((size_t)B * H, sizeof(float));
	loss_at(&c, g);
	for (int j = 0; j < B * H; j++) {
		float z0 = c.Z[j], eps = 1e-2f;
		c.Z[j] = z0 + eps;
		double lp = loss_at(&c, NULL);
		c.Z[j] = z0 - eps;
		double lm = loss_at(&c, NULL);
		c.Z[j] = z0;
		fd[j] = (float)((lp - lm) / (2 * eps));
	}
	check_close("cond.backward-finite-differences", g, fd, (long)B * H, 2e-4, 2e-2);
	/* dZ += : a second call on the same buffer doubles it */
	float *g2 = xmallocarray((size_t)B * H, sizeof(float)), *twice = xmallocarray((size_t)B * H, sizeof(float));
	memcpy(g2, g, sizeof(float) * (size_t)B * H);
	loss_at(&c, g2);
	for (int j = 0; j < B * H; j++) twice[j] = 2 * g[j];
	check_close("cond.backward-accumulates", g2, twice, (long)B * H, 1e-6, 1e-5);
	/* scale: the gradient of scale * dT */
	{
		int KH = K * H;
		float *dT = xmallocarray((size_t)B * KH, sizeof(float)), *a = xcalloc((size_t)B * H, sizeof(float));
		float *b = xcalloc((size_t)B * H, sizeof(float));
		for (int j = 0; j < B * KH; j++) dT[j] = (float)rng_normal(&R);
		cond_map_backward(a, c.P, dT, 1.0f, B, K, H);
		cond_map_backward(b, c.P, dT, -0.5f, B, K, H);
		for (int j = 0; j < B * H; j++) a[j] *= -0.5f;
		check_close("cond.backward-scale", b, a, (long)B * H, 1e-6, 1e-5);
		free(dT); free(a); free(b);
	}
	free(c.P); free(c.Z); free(c.a); free(c.t); free(c.w); free(g); free(fd); free(g2); free(twice);
}

static void test_entropy_weights(void)
{
	int B = 9, K = 5, ns = 4;
	float P[9 * 5], w[9];
	rand_probs(P, B, K);
	/* row 0 one-hot, row 5 uniform */
	for (int k = 0; k < K; k++) { P[k] = k == 2; P[5 * K + k] = 1.0f / K; }
	cond_entropy_weights(w, P, B, ns, K);
	double e[9], s[2] = { 0, 0 };
	for (int i = 0; i < B; i++) {
		double h = 0;
		for (int k = 0; k < K; k++) { double p = P[i * K + k]; if (p > 0) h -= p * log(p); }
		e[i] = 1 + exp(-h);
		s[i >= ns] += e[i];
	}
	float want[9];
	for (int i = 0; i < B; i++) want[i] = (float)(B / 2.0 * e[i] / s[i >= ns]);
	check_close("cond.entropy-weights", w, want, B, 1e-6, 1e-5);
	double ws = 0, wt = 0;
	for (int i = 0; i < B; i++) { if (i < ns) ws += w[i]; else wt += w[i]; }
	CHECK("cond.entropy-weights-half-per-domain", fabs(ws - B / 2.0) < 1e-4 && fabs(wt - B / 2.0) < 1e-4);
	CHECK("cond.entropy-one-hot-is-2", fabs(e[0] - 2) < 1e-9 && fabs(w[0] - B / 2.0 * 2 / s[0]) < 1e-5);
	CHECK("cond.entropy-uniform-is-1+1/K", fabs(e[5] - (1 + 1.0 / K)) < 1e-6);
	/* more confident rows weigh more: within the source, the one-hot row the most */
	int top = 0;
	for (int i = 1; i < ns; i++) if (w[i] > w[top]) top = i;
	CHECK("cond.entropy-confident-weighs-most", top == 0);
}

int main(void)
{
	rng_seed(&R, 11);
	test_map();
	test_backward();
	test_entropy_weights();
	return check_status();
}
