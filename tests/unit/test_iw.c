/* test_iw.c: importance-weighted alignment (train-step --align weighted).
 *
 * 1. The weighted domain losses of nn.h, bce_logits_w and mean_softplus_w: central
 *    differences against the analytic gradient on random shapes and weights (some
 *    weights 0), the value against a naive double-precision sum, and w = NULL or all
 *    ones equal to the unweighted losses.
 * 2. prior_shift_em: a known Bayes classifier (three 1-D Gaussian classes, posteriors
 *    computed exactly under the source priors p) applied to target rows drawn with
 *    other priors q; EM must recover q (and leave p when target = source). */
#include "check.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Rng R;

typedef struct { int bce, B; float *x, *t, *w, sign; } Ctx;

static double f(const Ctx *c)
{
	return c->bce ? bce_logits_w(NULL, c->x, c->t, c->w, c->B) : mean_softplus_w(NULL, c->x, c->w, c->sign, c->B);
}

static double naive(const Ctx *c)
{
	double s = 0;
	for (int i = 0; i < c->B; i++) {
		double x = c->x[i], sp = c->bce ? log1p(exp(x)) - x * c->t[i] : log1p(exp(c->sign * x));
		s += c->w[i] * sp;
	}
	return s / c->B;
}

static void test_weighted_losses(void)
{
	for (int v = 0; v < 6; v++) {
		Ctx c = { v < 2, 3 + (int)rng_below(&R, 12), NULL, NULL, NULL, v % 2 ? -1.0f : 1.0f };
		c.x = xmallocarray((size_t)c.B, sizeof(float));
		c.t = xmallocarray((size_t)c.B, sizeof(float));
		c.w = xmallocarray((size_t)c.B, sizeof(float));
		for (int i = 0; i < c.B; i++) {
			c.x[i] = (float)(3 * rng_normal(&R));
			c.t[i] = (float)(i % 2);
			c.w[i] = i == 1 ? 0.0f : (float)(3 * rng_uniform(&R));
		}
		float *d = xcalloc((size_t)c.B, sizeof(float));
		double l = c.bce ? bce_logits_w(d, c.x, c.t, c.w, c.B) : mean_softplus_w(d, c.x, c.w, c.sign, c.B);
		char name[96];
		snprintf(name, sizeof name, "%s value v%d", c.bce ? "bce_logits_w" : "mean_softplus_w", v);
		CHECK(name, fabs(l - naive(&c)) < 1e-5 * (1 + fabs(l)));
		double maxdiff = 0;
		int ok = 1;
		for (int i = 0; i < c.B; i++) {
			float save = c.x[i], e = 1e-2f;
			c.x[i] = save + e;
			double fp = f(&c);
			c.x[i] = save - e;
			double fm = f(&c);
			c.x[i] = save;
			double num = (fp - fm) / (2.0 * e), diff = fabs(num - d[i]);
			if (diff > maxdiff) maxdiff = diff;
			if (!(diff <= 1e-4 + 1e-2 * fmax(fabs(num), fabs(d[i])))) {
				printf("FAIL grad %s v%d: index %d: analytic %.7g vs numeric %.7g\n", c.bce ? "bce_logits_w" : "mean_softplus_w", v, i, d[i], num);
				check_failures++;
				ok = 0;
				break;
			}
		}
		if (ok) printf("PASS grad %s v%d (n %d, maxdiff %.3g)\n", c.bce ? "bce_logits_w" : "mean_softplus_w", v, c.B, maxdiff);
		snprintf(name, sizeof name, "%s zero weight, zero gradient v%d", c.bce ? "bce_logits_w" : "mean_softplus_w", v);
		CHECK(name, d[1] == 0.0f);
		/* all ones and NULL: the unweighted loss and gradient */
		float *d1 = xcalloc((size_t)c.B, sizeof(float)), *d0 = xcalloc((size_t)c.B, sizeof(float));
		for (int i = 0; i < c.B; i++) c.w[i] = 1.0f;
		double a = c.bce ? bce_logits_w(d1, c.x, c.t, c.w, c.B) : mean_softplus_w(d1, c.x, c.w, c.sign, c.B);
		double b = c.bce ? bce_logits(d0, c.x, c.t, c.B) : mean_softplus(d0, c.x, c.sign, c.B);
		double n = c.bce ? bce_logits_w(NULL, c.x, c.t, NULL, c.B) : mean_softplus_w(NULL, c.x, NULL, c.sign, c.B);
		snprintf(name, sizeof name, "%s unit weights = unweighted v%d", c.bce ? "bce_logits_w" : "mean_softplus_w", v);
		CHECK(name, fabs(a - b) < 1e-6 * (1 + fabs(b)) && n == b);
		snprintf(name, sizeof name, "%s unit weights gradient v%d", c.bce ? "bce_logits_w" : "mean_softplus_w", v);
		check_close(name, d1, d0, c.B, 1e-7, 1e-6);
		free(c.x); free(c.t); free(c.w); free(d); free(d1); free(d0);
	}
}

/* posteriors of a 3-class 1-D Gaussian model (means -2, 0, 2, sd 1) under priors p */
static void posterior(float *P, double x, const double *p)
{
	double l[3], z = 0;
	for (int c = 0; c < 3; c++) {
		double m = -2.0 + 2.0 * c;
		l[c] = p[c] * exp(-0.5 * (x - m) * (x - m));
		z += l[c];
	}
	for (int c = 0; c < 3; c++) P[c] = (float)(l[c] / z);
}

static void em_case(const char *name, const double *p, const double *qtrue, int n)
{
	float *P = xmallocarray((size_t)n * 3, sizeof(float));
	for (int j = 0; j < n; j++) {
		double u = rng_uniform(&R);
		int c = u < qtrue[0] ? 0 : u < qtrue[0] + qtrue[1] ? 1 : 2;
		posterior(P + (size_t)j * 3, -2.0 + 2.0 * c + rng_normal(&R), p);
	}
	double q[3];
	int it = prior_shift_em(q, P, n, 3, p, 1000, 1e-8);
	double err = 0, sum = 0;
	for (int c = 0; c < 3; c++) { err = fmax(err, fabs(q[c] - qtrue[c])); sum += q[c]; }
	printf("%s %s: q = %.3f %.3f %.3f (true %.2f %.2f %.2f), %d rounds\n", err < 0.03 ? "PASS" : "FAIL", name,
	       q[0], q[1], q[2], qtrue[0], qtrue[1], qtrue[2], it);
	if (!(err < 0.03)) check_failures++;
	CHECK("prior_shift_em sums to 1", fabs(sum - 1) < 1e-9);
	free(P);
}

static void test_em(void)
{
	double p[3] = { 1.0 / 3, 1.0 / 3, 1.0 / 3 }, q1[3] = { 0.6, 0.3, 0.1 }, p2[3] = { 0.2, 0.5, 0.3 };
	em_case("prior_shift_em recovers shifted priors", p, q1, 20000);
	em_case("prior_shift_em leaves unshifted priors", p2, p2, 20000);
	/* naive mean of the posteriors is pulled towards p: EM must beat it */
	int n = 20000;
	float *P = xmallocarray((size_t)n * 3, sizeof(float));
	for (int j = 0; j < n; j++) {
		double u = rng_uniform(&R);
		int c = u < q1[0] ? 0 : u < q1[0] + q1[1] ? 1 : 2;
		posterior(P + (size_t)j * 3, -2.0 + 2.0 * c + rng_normal(&R), p);
	}
	double q[3], mean0 = 0;
	prior_shift_em(q, P, n, 3, p, 1000, 1e-8);
	for (int j = 0; j < n; j++) mean0 += P[(size_t)j * 3] / n;
	CHECK("prior_shift_em closer than the mean posterior", fabs(q[0] - q1[0]) < fabs(mean0 - q1[0]));
	/* a class the source lacks gets 0; no rows: q = p, 0 rounds */
	double pz[3] = { 0.5, 0.5, 0 };
	prior_shift_em(q, P, n, 3, pz, 1000, 1e-8);
	CHECK("prior_shift_em class absent from the source", q[2] == 0 && fabs(q[0] + q[1] - 1) < 1e-9);
	int it = prior_shift_em(q, P, 0, 3, p2, 1000, 1e-8);
	CHECK("prior_shift_em no rows", it == 0 && q[0] == p2[0] && q[1] == p2[1] && q[2] == p2[2]);
	free(P);
}

int main(void)
{
	rng_seed(&R, 7);
	test_weighted_losses();
	test_em();
	return check_status();
}
