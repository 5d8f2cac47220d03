/* test_nn.c: forward values of the layers, losses and the MLP against naive
 * references computed here in double (the only naive matmul of the project lives in
 * this file), the BatchNorm running statistics and inference path, the MLP's
 * parameter layout, optimiser steps against hand-computed values, and the schedules. */
#include "check.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Rng R;

static float *randv(long n, float scale)
{
	float *v = xmallocarray((size_t)(n ? n : 1), sizeof(float));
	for (long i = 0; i < n; i++) v[i] = (float)(scale * rng_normal(&R));
	return v;
}

/* the naive reference: out (B,OC) = inp (B,C) @ w (OC,C)^T + b */
static void naive_linear(double *out, const float *inp, const float *w, const float *b, int B, int C, int OC)
{
	for (int i = 0; i < B; i++)
		for (int o = 0; o < OC; o++) {
			double s = b ? b[o] : 0.0;
			for (int c = 0; c < C; c++) s += (double)inp[i * C + c] * w[o * C + c];
			out[i * OC + o] = s;
		}
}

static int close_d(const char *name, const float *a, const double *ref, long n, double atol, double rtol)
{
	float *r = xmallocarray((size_t)(n ? n : 1), sizeof(float));
	for (long i = 0; i < n; i++) r[i] = (float)ref[i];
	int ok = check_close(name, a, r, n, atol, rtol);
	free(r);
	return ok;
}

static void test_linear(void)
{
	int shapes[][3] = { { 1, 1, 1 }, { 3, 5, 2 }, { 33, 70, 17 }, { 64, 300, 129 } };
	for (int k = 0; k < 4; k++) {
		int B = shapes[k][0], C = shapes[k][1], OC = shapes[k][2];
		float *x = randv((long)B * C, 1), *w = randv((long)OC * C, 0.3f), *b = randv(OC, 1);
		float *y = randv((long)B * OC, 0);
		double *ref = xmallocarray((size_t)B * OC, sizeof(double));
		char name[64];
		naive_linear(ref, x, w, b, B, C, OC);
		linear_forward(y, x, w, b, B, C, OC);
		snprintf(name, sizeof name, "linear forward %dx%dx%d", B, C, OC);
		close_d(name, y, ref, (long)B * OC, 1e-5, 1e-4);
		naive_linear(ref, x, w, NULL, B, C, OC);
		linear_forward(y, x, w, NULL, B, C, OC);
		snprintf(name, sizeof name, "linear forward no bias %dx%dx%d", B, C, OC);
		close_d(name, y, ref, (long)B * OC, 1e-5, 1e-4);
		free(x); free(w); free(b); free(y); free(ref);
	}
}

static void test_activations(void)
{
	float x[7] = { -3, -0.5f, 0, 1e-3f, 0.5f, 2, -1e-3f }, y[7], dy[7], g[7];
	double r[7];
	relu_forward(y, x, 7);
	for (int i = 0; i < 7; i++) r[i] = x[i] > 0 ? x[i] : 0;
	close_d("relu forward", y, r, 7, 0, 0);
	leaky_relu_forward(y, x, 0.2f, 7);
	for (int i = 0; i < 7; i++) r[i] = x[i] > 0 ? x[i] : 0.2 * x[i];
	close_d("leaky_relu forward", y, r, 7, 1e-8, 1e-6);
	tanh_forward(y, x, 7);
	for (int i = 0; i < 7; i++) r[i] = tanh(x[i]);
	close_d("tanh forward", y, r, 7, 1e-7, 1e-6);
	/* relu derivative at exactly 0 is 0 (PyTorch) */
	for (int i = 0; i < 7; i++) { dy[i] = 1; g[i] = 0; }
	relu_backward(g, dy, x, 7);
	CHECK("relu backward is 0 at 0", g[2] == 0.0f && g[3] == 1.0f && g[0] == 0.0f);
	/* a NaN stays NaN (PyTorch), so a diverging run shows */
	float nanx[1] = { NAN }, nany[1];
	relu_forward(nany, nanx, 1);
	int nan_ok = isnan(nany[0]);
	leaky_relu_forward(nany, nanx, 0.2f, 1);
	CHECK("relu and leaky_relu propagate NaN", nan_ok && isnan(nany[0]));
	/* grl: -lambda, added */
	for (int i = 0; i < 7; i++) g[i] = 1;
	grl_backward(g, x, 0.5f, 7);
	CHECK("grl backward adds -lambda * dout", g[0] == 2.5f && g[5] == 0.0f);
}

static void test_batchnorm(void)
{
	int B = 6, C = 4;
	float *x = randv(B * C, 2), *gamma = randv(C, 1), *beta = randv(C, 1), *y = randv(B * C, 0);
	for (int c = 0; c < C; c++) for (int i = 0; i < B; i++) x[i * C + c] += (float)c;  /* non-zero means */
	float mean[4], rstd[4], rm[4] = { 0, 0, 0, 0 }, rv[4] = { 1, 1, 1, 1 };
	double ref[24], rmr[4], rvr[4];
	batchnorm_forward(y, mean, rstd, x, gamma, beta, rm, rv, 0.1f, 1e-5f, 1, B, C);
	for (int c = 0; c < C; c++) {
		double m = 0, v = 0;
		for (int i = 0; i < B; i++) m += x[i * C + c];
		m /= B;
		for (int i = 0; i < B; i++) v += (x[i * C + c] - m) * (x[i * C + c] - m);
		for (int i = 0; i < B; i++) ref[i * C + c] = gamma[c] * (x[i * C + c] - m) / sqrt(v / B + 1e-5) + beta[c];
		rmr[c] = 0.9 * 0 + 0.1 * m;
		rvr[c] = 0.9 * 1 + 0.1 * v / (B - 1);  /* unbiased for the running update */
	}
	close_d("batchnorm train forward", y, ref, B * C, 1e-5, 1e-4);
	close_d("batchnorm running_mean (momentum 0.1)", rm, rmr, C, 1e-6, 1e-5);
	close_d("batchnorm running_var (unbiased)", rv, rvr, C, 1e-6, 1e-5);
	/* inference: running statistics, batch statistics ignored, buffers unchanged */
	float rm0[4], rv0[4];
	memcpy(rm0, rm, sizeof rm);
	memcpy(rv0, rv, sizeof rv);
	batchnorm_forward(y, mean, rstd, x, gamma, beta, rm, rv, 0.1f, 1e-5f, 0, 1, C);  /* B = 1 is fine */
	for (int c = 0; c < C; c++) ref[c] = gamma[c] * (x[c] - rm[c]) / sqrt(rv[c] + 1e-5) + beta[c];
	close_d("batchnorm inference uses running statistics", y, ref, C, 1e-5, 1e-4);
	CHECK("batchnorm inference leaves running statistics", !memcmp(rm0, rm, sizeof rm) && !memcmp(rv0, rv, sizeof rv));
	/* layernorm */
	float lm[6], lr[6];
	float *g2 = randv(C, 1), *b2 = randv(C, 1);
	layernorm_forward(y, lm, lr, x, g2, b2, 1e-5f, B, C);
	for (int i = 0; i < B; i++) {
		double m = 0, v = 0;
		for (int c = 0; c < C; c++) m += x[i * C + c];
		m /= C;
		for (int c = 0; c < C; c++) v += (x[i * C + c] - m) * (x[i * C + c] - m);
		for (int c = 0; c < C; c++) ref[i * C + c] = g2[c] * (x[i * C + c] - m) / sqrt(v / C + 1e-5) + b2[c];
	}
	close_d("layernorm forward", y, ref, B * C, 1e-5, 1e-4);
	free(x); free(gamma); free(beta); free(y); free(g2); free(b2);
}

static void test_losses(void)
{
	int B = 7, K = 4;
	float *l = randv(B * K, 3);
	int32_t y[7] = { 0, 3, -1, 2, 1, 1, -5 };
	float cw[4] = { 0.5f, 1.5f, 2.0f, 1.0f }, probs[28];
	for (int v = 0; v < 4; v++) {
		const float *w = (v & 1) ? cw : NULL;
		float s = (v & 2) ? 0.2f : 0.0f;
		int nc = -1;
		float got = softmax_xent(NULL, probs, &nc, l, y, w, s, B, K);
		double num = 0, den = 0;
		int correct = 0;
		for (int i = 0; i < B; i++) {
			const float *r = l + i * K;
			double mx = r[0], se = 0;
			int arg = 0;
			for (int k = 1; k < K; k++) if (r[k] > mx) { mx = r[k]; arg = k; }
			for (int k = 0; k < K; k++) se += exp(r[k] - mx);
			double lse = mx + log(se);
			if (y[i] < 0) continue;
			double wy = w ? w[y[i]] : 1;
			double sm = 0;
			for (int k = 0; k < K; k++) sm += (w ? w[k] : 1) * -(r[k] - lse);
			num += (1 - s) * wy * -(r[y[i]] - lse) + s / K * sm;
			den += wy;
			correct += arg == y[i];
		}
		char name[80];
		snprintf(name, sizeof name, "softmax_xent value%s%s", w ? " weighted" : "", s > 0 ? " smoothed" : "");
		double ref = num / den;
		close_d(name, &got, &ref, 1, 1e-6, 1e-5);
		snprintf(name, sizeof name, "softmax_xent ncorrect v%d", v);
		CHECK(name, nc == correct);
	}
	double rowsum = 0;
	for (int k = 0; k < K; k++) rowsum += probs[2 * K + k];
	CHECK("softmax_xent probs sum to 1 (also for ignored rows)", fabs(rowsum - 1) < 1e-6);
	float t[7] = { 0, 1, 1, 0, 0.3f, 1, 0 };
	float got = bce_logits(NULL, l, t, B);
	double ref = 0;
	for (int i = 0; i < B; i++) {
		double p = 1 / (1 + exp(-(double)l[i]));
		ref += -(t[i] * log(p) + (1 - t[i]) * log(1 - p));
	}
	ref /= B;
	close_d("bce_logits value", &got, &ref, 1, 1e-6, 1e-5);
	got = mean_softplus(NULL, l, -1.0f, B);
	ref = 0;
	for (int i = 0; i < B; i++) ref += log1p(exp(-(double)l[i]));
	ref /= B;
	close_d("mean_softplus value (sign -1)", &got, &ref, 1, 1e-6, 1e-5);
	free(l);
}

static void test_mlp(void)
{
	MlpSpec s;
	mlp_spec_init(&s);
	s.in = 5;
	s.nlayers = 3;
	s.widths[0] = 7; s.widths[1] = 6; s.widths[2] = 3;
	s.norm = NORM_BATCH;
	s.head = 1;
	Mlp *m = mlp_new(&s, 11);
	/* layout: parameters then buffers, one allocation, names as documented */
	const char *want[] = { "l0.w", "l0.b", "l0.bn.gamma", "l0.bn.beta", "l1.w", "l1.b", "l1.bn.gamma", "l1.bn.beta",
	                       "l2.w", "l2.b", "l0.bn.running_mean", "l0.bn.running_var", "l1.bn.running_mean", "l1.bn.running_var" };
	int ok = mlp_ntensors(m) == 14;
	size_t total = 0;
	float *base = mlp_params(m);
	for (int i = 0; ok && i < 14; i++) {
		int nd;
		int64_t sh[2];
		float *d;
		const char *n = mlp_tensor(m, i, &nd, sh, &d);
		if (strcmp(n, want[i]) != 0) ok = 0;
		if (i < 10) {
			if (d != base + total) ok = 0;  /* carved in order from one block */
			total += (size_t)sh[0] * (nd > 1 ? sh[1] : 1);
			if (mlp_tensor_grad(m, i) != mlp_grads(m) + (d - base)) ok = 0;
		} else if (mlp_tensor_grad(m, i) != NULL) ok = 0;
	}
	CHECK("mlp tensor names and one-allocation layout", ok && total == mlp_nparams(m));
	CHECK("mlp nparams", mlp_nparams(m) == (size_t)(7 * 5 + 7 + 14 + 6 * 7 + 6 + 12 + 3 * 6 + 3));
	CHECK("mlp_find_tensor", mlp_find_tensor(m, "l1.bn.beta") == 7 && mlp_find_tensor(m, "nope") == -1);
	/* PyTorch default init bounds; BN gamma 1 beta 0; running var 1 */
	int bounded = 1;
	for (int i = 0; i < 7 * 5; i++) if (fabsf(base[i]) > 1.0f / sqrtf(5.0f)) bounded = 0;
	float *gm;
	mlp_tensor(m, 2, NULL, NULL, &gm);
	float *rv;
	mlp_tensor(m, 11, NULL, NULL, &rv);
	CHECK("mlp init U(-1/sqrt(in), 1/sqrt(in)), gamma 1, running_var 1", bounded && gm[0] == 1.0f && rv[6] == 1.0f);
	/* forward = the composition of the layers, in naive double, in inference mode */
	int B = 4;
	float *x = randv(B * 5, 1);
	for (int t = 0; t < 2; t++) mlp_forward(m, x, B, 1);  /* move the running statistics */
	const float *y = mlp_forward(m, x, B, 0);
	double h0[4 * 7], h1[4 * 6], out[4 * 3];
	float hf[4 * 7];
	float *w, *b, *g, *be, *rm, *rvv;
	int widths[3] = { 7, 6, 3 }, ins[3] = { 5, 7, 6 };
	const float *inp = x;
	double *hs[2] = { h0, h1 };
	for (int l = 0; l < 2; l++) {
		mlp_tensor(m, 4 * l, NULL, NULL, &w);
		mlp_tensor(m, 4 * l + 1, NULL, NULL, &b);
		mlp_tensor(m, 4 * l + 2, NULL, NULL, &g);
		mlp_tensor(m, 4 * l + 3, NULL, NULL, &be);
		mlp_tensor(m, 10 + 2 * l, NULL, NULL, &rm);
		mlp_tensor(m, 11 + 2 * l, NULL, NULL, &rvv);
		naive_linear(hs[l], inp, w, b, B, ins[l], widths[l]);
		for (int i = 0; i < B; i++)
			for (int c = 0; c < widths[l]; c++) {
				double v = hs[l][i * widths[l] + c];
				v = v > 0 ? v : 0;
				v = g[c] * (v - rm[c]) / sqrt(rvv[c] + 1e-5) + be[c];
				hs[l][i * widths[l] + c] = v;
				hf[i * widths[l] + c] = (float)v;
			}
		inp = hf;
	}
	mlp_tensor(m, 8, NULL, NULL, &w);
	mlp_tensor(m, 9, NULL, NULL, &b);
	naive_linear(out, hf, w, b, B, 6, 3);
	close_d("mlp forward (inference) = naive composition", y, out, B * 3, 1e-5, 1e-4);
	/* same seed, same model; the batch size may grow between calls */
	Mlp *m2 = mlp_new(&s, 11);
	CHECK("mlp same seed same init", !memcmp(mlp_params(m2), base, mlp_nparams(m) * sizeof(float)));
	float *xb = randv(100 * 5, 1);
	const float *yb = mlp_forward(m2, xb, 100, 1);
	int finite = 1;
	for (int i = 0; i < 300; i++) if (!isfinite(yb[i])) finite = 0;
	mlp_zero_grad(m2);
	float *dout = randv(300, 1), *dx = randv(500, 0);
	mlp_backward(m2, dout, dx);
	CHECK("mlp batch grows 4 -> 100", finite && isfinite(dx[499]));
	free(dout); free(dx);
	mlp_free(m2);
	/* dropout: off in inference; in training seeded and reproducible */
	s.dropout = 0.5f;
	s.norm = NORM_NONE;
	Mlp *d1 = mlp_new(&s, 3), *d2 = mlp_new(&s, 3);
	float a[300], c[300];
	memcpy(a, mlp_forward(d1, xb, 100, 1), sizeof a);
	memcpy(c, mlp_forward(d2, xb, 100, 1), sizeof c);
	CHECK("mlp dropout reproducible with the seed", !memcmp(a, c, sizeof a));
	memcpy(c, mlp_forward(d2, xb, 100, 1), sizeof c);
	CHECK("mlp dropout mask changes between calls", memcmp(a, c, sizeof a) != 0);
	memcpy(a, mlp_forward(d1, xb, 100, 0), sizeof a);
	memcpy(c, mlp_forward(d1, xb, 100, 0), sizeof c);
	CHECK("mlp dropout off in inference", !memcmp(a, c, sizeof a));
	mlp_free(d1); mlp_free(d2);
	free(xb); free(x);
	mlp_free(m);
}

static void test_optim(void)
{
	float p[2], g[2] = { 0.5f, -2.0f };
	Optim o;
	/* Adam, first steps by hand: m = (1-b1) g, v = (1-b2) g^2, mhat = g, vhat = g^2,
	 * so p -= lr * g / (|g| + eps): a step of lr against the sign of g */
	optim_init(&o, OPT_ADAM, 2);
	p[0] = 1; p[1] = 1;
	optim_step(&o, p, g, 0.1f);
	double r[2] = { 1 - 0.1 * 0.5 / (0.5 + 1e-8), 1 + 0.1 * 2 / (2 + 1e-8) };
	close_d("adam step 1", p, r, 2, 1e-7, 1e-6);
	/* step 2 with g2: m = 0.9*0.05+0.1*g2, v = 0.999*0.00025+0.001*g2^2 (first coordinate) */
	float g2[2] = { 1.0f, -2.0f };
	optim_step(&o, p, g2, 0.1f);
	double m1 = 0.9 * 0.05 + 0.1 * 1.0, v1 = 0.999 * 0.00025 + 0.001 * 1.0;
	double mh = m1 / (1 - 0.81), vh = v1 / (1 - 0.999 * 0.999);
	r[0] = r[0] - 0.1 * mh / (sqrt(vh) + 1e-8);
	r[1] = r[1] + 0.1;  /* constant gradient: mhat = g, vhat = g^2 */
	close_d("adam step 2", p, r, 2, 1e-6, 1e-5);
	optim_free(&o);
	/* Adam weight decay is L2 on the gradient: g' = g + wd p */
	optim_init(&o, OPT_ADAM, 1);
	o.weight_decay = 0.5f;
	p[0] = 2;
	float gz[1] = { -1.0f };  /* g' = -1 + 1 = 0: no move */
	optim_step(&o, p, gz, 0.1f);
	CHECK("adam weight decay is L2 in the gradient", p[0] == 2.0f);
	optim_free(&o);
	/* AdamW: p *= 1 - lr wd, then the Adam step */
	optim_init(&o, OPT_ADAMW, 1);
	o.weight_decay = 0.1f;
	p[0] = 1;
	float g1[1] = { 0.5f };
	optim_step(&o, p, g1, 0.1f);
	r[0] = 1 * (1 - 0.1 * 0.1) - 0.1 * 0.5 / (0.5 + 1e-8);
	close_d("adamw decoupled decay", p, r, 1, 1e-7, 1e-6);
	optim_free(&o);
	/* SGD momentum 0.9, lr 0.1, constant g 0.5: buf 0.5, 0.95, 1.355 */
	optim_init(&o, OPT_SGD, 1);
	o.momentum = 0.9f;
	p[0] = 1;
	double want[3] = { 0.95, 0.855, 0.7195 };
	int ok = 1;
	for (int t = 0; t < 3; t++) {
		optim_step(&o, p, g1, 0.1f);
		if (fabs(p[0] - want[t]) > 1e-6) ok = 0;
	}
	CHECK("sgd momentum steps", ok);
	optim_free(&o);
	/* SGD with weight decay, no momentum: p -= lr (g + wd p) */
	optim_init(&o, OPT_SGD, 1);
	o.weight_decay = 0.1f;
	p[0] = 2;
	optim_step(&o, p, g1, 0.1f);
	CHECK("sgd weight decay", fabsf(p[0] - (2 - 0.1f * (0.5f + 0.2f))) < 1e-6f);
	optim_free(&o);
	CHECK("optimiser names", !strcmp(opt_names[OPT_ADAM], "adam") && !strcmp(opt_names[OPT_ADAMW], "adamw") && !strcmp(opt_names[OPT_SGD], "sgd"));
}

static void test_schedules(void)
{
	CHECK("ganin lr at p=0", sched_lr_ganin(0.01f, 0) == 0.01f);
	CHECK("ganin lr at p=1", fabsf(sched_lr_ganin(0.01f, 1) - (float)(0.01 / pow(11, 0.75))) < 1e-9f);
	CHECK("ganin lr at p=0.5", fabsf(sched_lr_ganin(1e-4f, 0.5f) - (float)(1e-4 / pow(6, 0.75))) < 1e-11f);
	CHECK("ganin lambda at p=0", sched_lambda_ganin(0) == 0.0f);
	CHECK("ganin lambda at p=0.3", fabsf(sched_lambda_ganin(0.3f) - (float)(2 / (1 + exp(-3.0)) - 1)) < 1e-6f);
	CHECK("ganin lambda at p=1", fabsf(sched_lambda_ganin(1) - (float)(2 / (1 + exp(-10.0)) - 1)) < 1e-6f);
}

/* end to end: encoder (Linear, ReLU, BatchNorm, Dropout) + classifier head trained
 * with Adam on three Gaussian blobs in 20 dimensions learns them */
static void test_learns(void)
{
	enum { N = 300, F = 20, K = 3, Bt = 32 };
	float *x = randv(N * F, 1), ctr[K][F];
	int32_t y[N];
	for (int k = 0; k < K; k++) for (int j = 0; j < F; j++) ctr[k][j] = (float)(1.5 * rng_normal(&R));
	for (int i = 0; i < N; i++) {
		y[i] = i % K;
		for (int j = 0; j < F; j++) x[i * F + j] += ctr[y[i]][j];
	}
	MlpSpec se, sc;
	mlp_spec_init(&se);
	se.in = F; se.nlayers = 2; se.widths[0] = se.widths[1] = 32; se.norm = NORM_BATCH; se.dropout = 0.2f;
	mlp_spec_init(&sc);
	sc.in = 32; sc.nlayers = 2; sc.widths[0] = 16; sc.widths[1] = K; sc.head = 1;
	Mlp *enc = mlp_new(&se, 5), *cls = mlp_new(&sc, 6);
	Optim oe, oc;
	optim_init(&oe, OPT_ADAM, mlp_nparams(enc));
	optim_init(&oc, OPT_ADAM, mlp_nparams(cls));
	oe.weight_decay = oc.weight_decay = 1e-4f;
	float dl[Bt * K], dz[Bt * 32];
	float first = 0, last = 0;
	for (int step = 0; step < 150; step++) {
		int off = (step * Bt) % (N - Bt);
		mlp_zero_grad(enc);
		mlp_zero_grad(cls);
		const float *lg = mlp_forward(cls, mlp_forward(enc, x + off * F, Bt, 1), Bt, 1);
		float l = softmax_xent(dl, NULL, NULL, lg, y + off, NULL, 0, Bt, K);
		if (step == 0) first = l;
		last = l;
		mlp_backward(cls, dl, dz);
		mlp_backward(enc, dz, NULL);
		optim_step(&oe, mlp_params(enc), mlp_grads(enc), 1e-2f);
		optim_step(&oc, mlp_params(cls), mlp_grads(cls), 1e-2f);
	}
	int nc = 0;
	softmax_xent(NULL, NULL, &nc, mlp_forward(cls, mlp_forward(enc, x, N, 0), N, 0), y, NULL, 0, N, K);
	char name[96];
	snprintf(name, sizeof name, "mlp learns three blobs (loss %.3f -> %.3f, accuracy %.3f)", first, last, (double)nc / N);
	CHECK(name, last < first && nc > 0.95 * N);
	optim_free(&oe); optim_free(&oc);
	mlp_free(enc); mlp_free(cls);
	free(x);
}

int main(void)
{
	util_init("test_nn");
	rng_seed(&R, 77);
	test_linear();
	test_activations();
	test_batchnorm();
	test_losses();
	test_mlp();
	test_optim();
	test_schedules();
	test_learns();
	return check_status();
}
