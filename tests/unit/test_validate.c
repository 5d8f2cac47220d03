/* test_validate: the unsupervised validators of validate.h on constructed cases whose
 * answer is known: values against closed forms, and each validator's choice between two
 * candidate models where one is right by construction. */
#include "check.h"
#include "rng.h"
#include "validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define K 4

/* n rows of probabilities: row i puts conf on class i % K, the rest spread evenly */
static void confident(float *p, int n, double conf)
{
	for (int i = 0; i < n; i++)
		for (int k = 0; k < K; k++) p[i * K + k] = (float)(k == i % K ? conf : (1 - conf) / (K - 1));
}

/* two Gaussian clusters per class in H dims, class c centred at mu*e_c (+shift) */
static void blobs(Rng *r, float *z, int32_t *y, int n, int H, double mu, double shift, double noise)
{
	for (int i = 0; i < n; i++) {
		int c = i % K;
		y[i] = c;
		for (int j = 0; j < H; j++)
			z[i * H + j] = (float)((j == c ? mu : 0) + (j == H - 1 ? shift : 0) + noise * rng_normal(r));
	}
}

int main(void)
{
	enum { N = 64, H = 8 };
	static float p[N * K], q[N * K];
	char name[128];

	/* names */
	CHECK("validate.names", val_find("snd") == VAL_SND && val_find("source-val") == VAL_SOURCE_ACC && val_find("x") == -1);

	/* entropy: uniform rows have log K, one-hot rows 0 */
	for (int i = 0; i < N * K; i++) p[i] = 1.0f / K;
	CHECK("validate.entropy-uniform", fabs(val_entropy(p, N, K) - log(K)) < 1e-6);
	CHECK("validate.im-uniform-is-0", fabs(val_im(p, N, K)) < 1e-6);
	confident(q, N, 1.0);
	CHECK("validate.entropy-onehot", fabs(val_entropy(q, N, K)) < 1e-9);
	/* one-hot and balanced over the K classes: IM = log K, its maximum */
	CHECK("validate.im-onehot-balanced", fabs(val_im(q, N, K) - log(K)) < 1e-6);
	/* one-hot but every row the same class: confident and collapsed, IM = 0 */
	memset(q, 0, sizeof q);
	for (int i = 0; i < N; i++) q[i * K] = 1;
	CHECK("validate.im-collapsed-is-0", fabs(val_im(q, N, K)) < 1e-9);

	/* choice by entropy and IM: the confident balanced model over a hesitant one */
	confident(p, N, 0.4);
	confident(q, N, 0.9);
	CHECK("validate.entropy-prefers-confident", val_score(VAL_ENTROPY, val_entropy(q, N, K)) > val_score(VAL_ENTROPY, val_entropy(p, N, K)));
	CHECK("validate.im-prefers-confident", val_im(q, N, K) > val_im(p, N, K));

	/* softmax */
	float l[2 * K] = { 0, 0, 0, 0, 1000, 0, 0, 0 };
	val_softmax(l, 2, K);
	CHECK("validate.softmax", fabsf(l[0] - 0.25f) < 1e-6f && fabsf(l[4] - 1) < 1e-6f && l[5] == 0);

	/* SND: a closed form. Rows in K tight groups of m identical one-hot rows: each row's
	 * neighbours are its m-1 twins (cosine 1) and (K-1)m others (cosine 0); with
	 * a = exp(1/tau), P = a/(a(m-1) + (K-1)m) on twins, 1/(...) on the others. */
	{
		int m = N / K;
		double tau = 0.05, a = exp(1 / tau), zz = a * (m - 1) + (double)(K - 1) * m;
		double pt = a / zz, po = 1 / zz;
		double h = -(m - 1) * pt * log(pt) - (double)(K - 1) * m * po * log(po);
		confident(q, N, 1.0);
		double snd = val_snd(q, N, K, tau);
		snprintf(name, sizeof name, "validate.snd-closed-form (%.6f vs %.6f)", snd, h);
		CHECK(name, fabs(snd - h) < 1e-4);
		/* the choice: a model whose target predictions form tight class clusters has a
		 * denser soft neighbourhood than one whose predictions are spread at random
		 * (each row a random point on the simplex) */
		Rng r;
		rng_seed(&r, 7);
		for (int i = 0; i < N; i++) {
			double s = 0;
			for (int k = 0; k < K; k++) { p[i * K + k] = (float)(-log(1 - rng_uniform(&r))); s += p[i * K + k]; }
			for (int k = 0; k < K; k++) p[i * K + k] /= (float)s;
		}
		confident(q, N, 0.85);
		CHECK("validate.snd-prefers-clustered", val_snd(q, N, K, tau) > val_snd(p, N, K, tau));
		CHECK("validate.snd-needs-2-rows", isnan(val_snd(q, 1, K, tau)));
	}

	/* DEV: with source and target from the same distribution the weights are about 1
	 * and DEV is about the plain mean loss; and it picks the model whose source loss is
	 * low where the target lives. */
	{
		enum { NS = 200, NT = 200 };
		static float zs[NS * H], zt[NT * H], loss[NS];
		static int32_t ys[NS], yt[NT];
		Rng r;
		rng_seed(&r, 3);
		blobs(&r, zs, ys, NS, H, 2, 0, 1);
		blobs(&r, zt, yt, NT, H, 2, 0, 1);
		double mean = 0;
		for (int i = 0; i < NS; i++) { loss[i] = (float)(0.5 + rng_uniform(&r)); mean += loss[i]; }
		mean /= NS;
		double dev = val_dev(zs, loss, NS, zt, NT, H, 1);
		snprintf(name, sizeof name, "validate.dev-no-shift-is-mean-loss (%.4f vs %.4f)", dev, mean);
		CHECK(name, fabs(dev - mean) < 0.1);
		/* shifted target (last coordinate +2): source rows near the target get large
		 * weights. Model A errs on the source rows near the target (high last
		 * coordinate), model B on the rows far from it; both have the same mean source
		 * loss, B is the better model for the target. */
		blobs(&r, zt, yt, NT, H, 2, 2, 1);
		static float la[NS], lb[NS];
		double ma = 0, mb = 0;
		for (int i = 0; i < NS; i++) {
			int near = zs[i * H + H - 1] > 0;
			la[i] = near ? 2.0f : 0.1f;
			lb[i] = near ? 0.1f : 2.0f;
			ma += la[i];
			mb += lb[i];
		}
		double da = val_dev(zs, la, NS, zt, NT, H, 1), db = val_dev(zs, lb, NS, zt, NT, H, 1);
		snprintf(name, sizeof name, "validate.dev-prefers-low-loss-near-target (A %.3f, B %.3f; plain means %.3f %.3f)",
		         da, db, ma / NS, mb / NS);
		CHECK(name, val_score(VAL_DEV, db) > val_score(VAL_DEV, da));
		CHECK("validate.dev-deterministic", val_dev(zs, la, NS, zt, NT, H, 1) == da);
		CHECK("validate.dev-needs-rows", isnan(val_dev(zs, la, 3, zt, NT, H, 1)));

		/* reverse validation: pseudo-labels that are the true target classes transfer
		 * back to the source (accuracy near 1); shuffled pseudo-labels do not */
		blobs(&r, zt, yt, NT, H, 3, 0, 0.5);
		blobs(&r, zs, ys, NS, H, 3, 0, 0.5);
		double good = val_reverse(zt, yt, NT, zs, ys, NS, H, K);
		static int32_t bad[NT];
		for (int i = 0; i < NT; i++) bad[i] = (yt[i] + 1 + (int)rng_below(&r, K - 1)) % K;
		double poor = val_reverse(zt, bad, NT, zs, ys, NS, H, K);
		snprintf(name, sizeof name, "validate.reverse-true-pseudo-labels (%.3f)", good);
		CHECK(name, good > 0.95);
		snprintf(name, sizeof name, "validate.reverse-prefers-right-labels (%.3f > %.3f)", good, poor);
		CHECK(name, good > poor + 0.5);
	}
	return check_status();
}
