/* test_grad.c: finite-difference gradient checks for every layer, loss, the MLP
 * and the WGAN-GP gradient penalty of nn.h.
 *
 * For an op y = op(x) we take f = sum(w * y) with a random w, get the analytic
 * gradient by calling backward with dout = w, and compare it with central
 * differences (f(x + e) - f(x - e)) / 2e computed by perturbing the float inputs
 * (f itself is summed in double). Losses are scalars: f = the loss. Each op has an
 * absolute and a relative tolerance; a failure prints op, index and both values.
 * Shapes are small and random, from a seeded rng. */
#include "check.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Rng R;

static int rint_in(int lo, int hi) { return lo + (int)rng_below(&R, (uint64_t)(hi - lo + 1)); }

static float *randv(long n, float scale)
{
	float *v = xmallocarray((size_t)(n ? n : 1), sizeof(float));
	for (long i = 0; i < n; i++) v[i] = (float)(scale * rng_normal(&R));
	return v;
}

/* keep values away from a kink at 0 (ReLU, LeakyReLU) by at least gap */
static void away_from_zero(float *v, long n, float gap)
{
	for (long i = 0; i < n; i++)
		if (fabsf(v[i]) < gap) v[i] = v[i] < 0 ? v[i] - 2 * gap : v[i] + 2 * gap;
}

static double dot(const float *w, const float *y, long n)
{
	double s = 0;
	for (long i = 0; i < n; i++) s += (double)w[i] * y[i];
	return s;
}

typedef double (*Fn)(void *ctx);

/* compare analytic grad of f w.r.t. v (n) with central differences */
static int fd_check(const char *op, const char *what, float *v, long n, Fn f, void *ctx,
                    const float *grad, float eps, double atol, double rtol)
{
	char name[160];
	snprintf(name, sizeof name, "grad %s %s", op, what);
	double maxdiff = 0;
	for (long j = 0; j < n; j++) {
		float save = v[j];
		float hi = save + eps, lo = save - eps;
		v[j] = hi;
		double fp = f(ctx);
		v[j] = lo;
		double fm = f(ctx);
		v[j] = save;
		double num = (fp - fm) / ((double)hi - (double)lo);
		double ana = grad[j];
		double d = fabs(num - ana);
		double tol = atol + rtol * fmax(fabs(num), fabs(ana));
		if (d > maxdiff || d != d) maxdiff = d;
		if (!(d <= tol)) {
			printf("FAIL %s: index %ld: analytic %.7g vs numeric %.7g (tol %.2g)\n", name, j, ana, num, tol);
			check_failures++;
			return 0;
		}
	}
	printf("PASS %s (n %ld, maxdiff %.3g)\n", name, n, maxdiff);
	return 1;
}

/* ---- linear ---- */
typedef struct { int B, C, OC; float *x, *w, *b, *wt, *y; } LinCtx;
static double lin_f(void *p)
{
	LinCtx *c = p;
	linear_forward(c->y, c->x, c->w, c->b, c->B, c->C, c->OC);
	return dot(c->wt, c->y, (long)c->B * c->OC);
}
static void test_linear(void)
{
	LinCtx c = { rint_in(2, 6), rint_in(2, 7), rint_in(1, 5), 0, 0, 0, 0, 0 };
	c.x = randv((long)c.B * c.C, 1);
	c.w = randv((long)c.OC * c.C, 0.5f);
	c.b = randv(c.OC, 0.5f);
	c.wt = randv((long)c.B * c.OC, 1);
	c.y = randv((long)c.B * c.OC, 0);
	float *dx = xcalloc((size_t)c.B * c.C, sizeof(float));
	float *dw = xcalloc((size_t)c.OC * c.C, sizeof(float));
	float *db = xcalloc(c.OC, sizeof(float));
	linear_backward(dx, dw, db, c.wt, c.x, c.w, c.B, c.C, c.OC);
	fd_check("linear", "dinp", c.x, (long)c.B * c.C, lin_f, &c, dx, 1e-2f, 1e-3, 1e-3);
	fd_check("linear", "dw", c.w, (long)c.OC * c.C, lin_f, &c, dw, 1e-2f, 1e-3, 1e-3);
	fd_check("linear", "db", c.b, c.OC, lin_f, &c, db, 1e-2f, 1e-3, 1e-3);
	/* backward accumulates: a second call doubles the gradients */
	float *dw2 = xmallocarray((size_t)c.OC * c.C, sizeof(float));
	memcpy(dw2, dw, (size_t)c.OC * c.C * sizeof(float));
	linear_backward(NULL, dw, NULL, c.wt, c.x, c.w, c.B, c.C, c.OC);
	for (long i = 0; i < (long)c.OC * c.C; i++) dw2[i] *= 2;
	check_close("grad linear accumulates", dw, dw2, (long)c.OC * c.C, 1e-6, 1e-5);
	free(c.x); free(c.w); free(c.b); free(c.wt); free(c.y); free(dx); free(dw); free(db); free(dw2);
}

/* ---- elementwise activations, dropout, grl ---- */
typedef struct { int kind; long n; float *x, *wt, *y, *mask; float p; Rng rng; float lambda; } ElCtx;
enum { EL_RELU, EL_LEAKY, EL_TANH, EL_DROPOUT, EL_GRL };
static double el_f(void *p)
{
	ElCtx *c = p;
	switch (c->kind) {
	case EL_RELU: relu_forward(c->y, c->x, c->n); break;
	case EL_LEAKY: leaky_relu_forward(c->y, c->x, 0.2f, c->n); break;
	case EL_TANH: tanh_forward(c->y, c->x, c->n); break;
	case EL_DROPOUT: {
		Rng r = c->rng;  /* the same mask every call */
		dropout_forward(c->y, c->mask, c->x, c->p, &r, c->n);
		break;
	}
	case EL_GRL:
		/* forward is the identity; the reversed gradient is that of -lambda * sum(w x) */
		return -c->lambda * dot(c->wt, c->x, c->n);
	}
	return dot(c->wt, c->y, c->n);
}
static void test_elementwise(void)
{
	const char *names[] = { "relu", "leaky_relu", "tanh", "dropout", "grl" };
	for (int k = EL_RELU; k <= EL_GRL; k++) {
		ElCtx c = { k, rint_in(5, 40), 0, 0, 0, 0, 0.3f, { { 0 } }, 0.7f };
		c.x = randv(c.n, 1);
		away_from_zero(c.x, c.n, 0.05f);
		c.wt = randv(c.n, 1);
		c.y = randv(c.n, 0);
		c.mask = randv(c.n, 0);
		rng_seed(&c.rng, 42 + k);
		float *dx = xcalloc((size_t)c.n, sizeof(float));
		el_f(&c);  /* caches the mask */
		switch (k) {
		case EL_RELU: relu_backward(dx, c.wt, c.x, c.n); break;
		case EL_LEAKY: leaky_relu_backward(dx, c.wt, c.x, 0.2f, c.n); break;
		case EL_TANH: tanh_backward(dx, c.wt, c.y, c.n); break;
		case EL_DROPOUT: dropout_backward(dx, c.wt, c.mask, c.n); break;
		case EL_GRL: grl_backward(dx, c.wt, c.lambda, c.n); break;
		}
		fd_check(names[k], "dinp", c.x, c.n, el_f, &c, dx, 1e-2f, 1e-3, 1e-3);
		free(c.x); free(c.wt); free(c.y); free(c.mask); free(dx);
	}
	/* dropout: inverted scaling, a fraction near p dropped, p = 0 is the identity */
	long n = 20000;
	float *x = randv(n, 0), *y = randv(n, 0), *mask = randv(n, 0);
	for (long i = 0; i < n; i++) x[i] = 1.0f;
	Rng r;
	rng_seed(&r, 7);
	dropout_forward(y, mask, x, 0.25f, &r, n);
	long zeros = 0, bad = 0;
	for (long i = 0; i < n; i++) {
		if (mask[i] == 0.0f) zeros++;
		else if (fabsf(mask[i] - 1.0f / 0.75f) > 1e-6f || y[i] != mask[i]) bad++;
	}
	CHECK("dropout keeps 1/(1-p)", bad == 0);
	CHECK("dropout drops about p", fabs((double)zeros / n - 0.25) < 0.02);
	Rng r0 = r;
	dropout_forward(y, mask, x, 0.0f, &r, n);
	CHECK("dropout p=0 is identity and draws nothing", y[0] == 1.0f && y[n - 1] == 1.0f && r.s[0] == r0.s[0]);
	free(x); free(y); free(mask);
}

/* ---- batchnorm (train) and layernorm ---- */
typedef struct { int ln, B, C; float *x, *g, *b, *wt, *y, *mean, *rstd; } NormCtx;
static double norm_f(void *p)
{
	NormCtx *c = p;
	if (c->ln) layernorm_forward(c->y, c->mean, c->rstd, c->x, c->g, c->b, 1e-5f, c->B, c->C);
	else batchnorm_forward(c->y, c->mean, c->rstd, c->x, c->g, c->b, NULL, NULL, 0.1f, 1e-5f, 1, c->B, c->C);
	return dot(c->wt, c->y, (long)c->B * c->C);
}
static void test_norms(void)
{
	for (int ln = 0; ln <= 1; ln++) {
		NormCtx c = { ln, rint_in(3, 8), rint_in(2, 6), 0, 0, 0, 0, 0, 0, 0 };
		long n = (long)c.B * c.C;
		c.x = randv(n, 1.5f);
		c.g = randv(c.C, 1);
		c.b = randv(c.C, 1);
		c.wt = randv(n, 1);
		c.y = randv(n, 0);
		c.mean = randv(c.B + c.C, 0);
		c.rstd = randv(c.B + c.C, 0);
		norm_f(&c);
		float *dx = xcalloc((size_t)n, sizeof(float));
		float *dg = xcalloc((size_t)c.C, sizeof(float));
		float *db = xcalloc((size_t)c.C, sizeof(float));
		if (ln) layernorm_backward(dx, dg, db, c.wt, c.x, c.mean, c.rstd, c.g, c.B, c.C);
		else batchnorm_backward(dx, dg, db, c.wt, c.x, c.mean, c.rstd, c.g, c.B, c.C);
		const char *op = ln ? "layernorm" : "batchnorm(train)";
		fd_check(op, "dinp", c.x, n, norm_f, &c, dx, 1e-2f, 2e-3, 1e-2);
		fd_check(op, "dgamma", c.g, c.C, norm_f, &c, dg, 1e-2f, 2e-3, 1e-2);
		fd_check(op, "dbeta", c.b, c.C, norm_f, &c, db, 1e-2f, 2e-3, 1e-2);
		free(c.x); free(c.g); free(c.b); free(c.wt); free(c.y); free(c.mean); free(c.rstd);
		free(dx); free(dg); free(db);
	}
}

/* ---- losses ---- */
typedef struct { int kind, B, K; float *logits, *cw, smoothing, *t; int32_t *y; float sign; } LossCtx;
enum { L_XENT, L_BCE, L_SOFTPLUS };
static double loss_f(void *p)
{
	LossCtx *c = p;
	switch (c->kind) {
	case L_XENT: return softmax_xent(NULL, NULL, NULL, c->logits, c->y, c->cw, c->smoothing, c->B, c->K);
	case L_BCE: return bce_logits(NULL, c->logits, c->t, c->B);
	default: return mean_softplus(NULL, c->logits, c->sign, c->B);
	}
}
static void test_losses(void)
{
	/* cross-entropy: plain, class weights, smoothing, both; some rows ignored */
	for (int v = 0; v < 4; v++) {
		LossCtx c = { L_XENT, rint_in(3, 8), rint_in(2, 6), 0, 0, 0, 0, 0, 0 };
		long n = (long)c.B * c.K;
		c.logits = randv(n, 2);
		c.y = xmallocarray((size_t)c.B, sizeof(int32_t));
		for (int i = 0; i < c.B; i++) c.y[i] = (int32_t)rng_below(&R, (uint64_t)c.K);
		c.y[1] = -1;  /* an unlabelled row */
		if (v & 1) {
			c.cw = randv(c.K, 0);
			for (int k = 0; k < c.K; k++) c.cw[k] = (float)(0.2 + 2 * rng_uniform(&R));
		}
		c.smoothing = (v & 2) ? 0.15f : 0.0f;
		float *d = xcalloc((size_t)n, sizeof(float));
		float *probs = xcalloc((size_t)n, sizeof(float));
		softmax_xent(d, probs, NULL, c.logits, c.y, c.cw, c.smoothing, c.B, c.K);
		char what[64];
		snprintf(what, sizeof what, "dlogits%s%s", c.cw ? " weighted" : "", c.smoothing > 0 ? " smoothed" : "");
		fd_check("softmax_xent", what, c.logits, n, loss_f, &c, d, 1e-2f, 1e-4, 1e-2);
		/* the ignored row has zero gradient */
		int zero = 1;
		for (int k = 0; k < c.K; k++) if (d[c.K + k] != 0.0f) zero = 0;
		snprintf(what, sizeof what, "softmax_xent ignored row v%d", v);
		CHECK(what, zero);
		free(c.logits); free(c.y); free(c.cw); free(d); free(probs);
	}
	{
		/* nothing labelled: loss 0, gradient 0 */
		float logits[6] = { 1, 2, 3, 4, 5, 6 }, d[6];
		int32_t y[2] = { -1, -1 };
		float l = softmax_xent(d, NULL, NULL, logits, y, NULL, 0.1f, 2, 3);
		int zero = l == 0.0f;
		for (int i = 0; i < 6; i++) if (d[i] != 0.0f) zero = 0;
		CHECK("softmax_xent all ignored", zero);
		/* stable: huge logits do not overflow */
		float big[3] = { 1000, -1000, 999 };
		int32_t y1[1] = { 2 };
		l = softmax_xent(d, NULL, NULL, big, y1, NULL, 0, 1, 3);
		CHECK("softmax_xent stable for large logits", fabsf(l - 1.3132616f) < 1e-4f && isfinite(d[0]));
	}
	{
		LossCtx c = { L_BCE, rint_in(3, 10), 0, 0, 0, 0, 0, 0, 0 };
		c.logits = randv(c.B, 3);
		c.t = randv(c.B, 0);
		for (int i = 0; i < c.B; i++) c.t[i] = i % 3 == 2 ? (float)rng_uniform(&R) : (float)(i % 2);
		float *d = xcalloc((size_t)c.B, sizeof(float));
		bce_logits(d, c.logits, c.t, c.B);
		fd_check("bce_logits", "dlogit", c.logits, c.B, loss_f, &c, d, 1e-2f, 1e-4, 1e-2);
		free(c.logits); free(c.t); free(d);
	}
	for (int sgn = -1; sgn <= 1; sgn += 2) {
		LossCtx c = { L_SOFTPLUS, rint_in(3, 10), 0, 0, 0, 0, 0, 0, (float)sgn };
		c.logits = randv(c.B, 3);
		float *d = xcalloc((size_t)c.B, sizeof(float));
		mean_softplus(d, c.logits, c.sign, c.B);
		fd_check("mean_softplus", sgn > 0 ? "ds sign +1" : "ds sign -1", c.logits, c.B, loss_f, &c, d, 1e-2f, 1e-4, 1e-2);
		free(c.logits); free(d);
	}
	{
		float s[2] = { 200.0f, -200.0f }, d[2];
		float l = mean_softplus(d, s, 1.0f, 2);
		CHECK("mean_softplus stable for large scores", fabsf(l - 100.0f) < 1e-3f && fabsf(d[0] - 0.5f) < 1e-6f && fabsf(d[1]) < 1e-6f);
		float t[2] = { 1, 0 };
		l = bce_logits(d, s, t, 2);
		CHECK("bce_logits stable for large logits", fabsf(l) < 1e-6f && isfinite(d[0]));
	}
}

/* ---- the whole MLP ---- */
typedef struct { Mlp *m; int B; float *x, *wt; int train; } MlpCtx;
static double mlp_f(void *p)
{
	MlpCtx *c = p;
	mlp_set_seed(c->m, 99);  /* the same dropout mask every call */
	const float *y = mlp_forward(c->m, c->x, c->B, c->train);
	return dot(c->wt, y, (long)c->B * mlp_out(c->m));
}
static void test_mlp(void)
{
	for (int norm = NORM_NONE; norm < NORM_COUNT; norm++) {
		for (int act = ACT_RELU; act < ACT_COUNT; act++) {
			for (int train = 1; train >= 0; train--) {
				if (!train && norm != NORM_BATCH) continue;
				MlpSpec s;
				mlp_spec_init(&s);
				s.in = rint_in(2, 6);
				s.nlayers = rint_in(2, 3);
				for (int l = 0; l < s.nlayers; l++) s.widths[l] = rint_in(2, 6);
				s.act = (Act)act;
				s.norm = (Norm)norm;
				s.dropout = (act == ACT_TANH) ? 0.3f : 0.0f;
				s.head = (act != ACT_LEAKY_RELU);
				Mlp *m = mlp_new(&s, 1000 + norm * 10 + act);
				MlpCtx c = { m, rint_in(3, 7), 0, 0, train };
				c.x = randv((long)c.B * s.in, 1);
				c.wt = randv((long)c.B * mlp_out(m), 1);
				if (!train) {
					/* non-trivial running statistics */
					for (int t = 0; t < 3; t++) mlp_forward(m, c.x, c.B, 1);
				}
				mlp_f(&c);
				mlp_zero_grad(m);
				float *dx = xcalloc((size_t)c.B * s.in, sizeof(float));
				mlp_backward(m, c.wt, dx);
				size_t np = mlp_nparams(m);
				float *g = xmallocarray(np, sizeof(float));
				memcpy(g, mlp_grads(m), np * sizeof(float));
				char op[96];
				snprintf(op, sizeof op, "mlp(%s,%s%s%s,%d layers)", act_names[act], norm_names[norm],
				         s.dropout > 0 ? ",dropout" : "", train ? "" : ",eval", s.nlayers);
				/* piecewise-linear activations have kinks; the tolerances allow
				 * float noise, not a wrong formula */
				fd_check(op, "dparams", mlp_params(m), (long)np, mlp_f, &c, g, 5e-4f, 5e-3, 2e-2);
				fd_check(op, "dx", c.x, (long)c.B * s.in, mlp_f, &c, dx, 5e-4f, 5e-3, 2e-2);
				free(g); free(dx); free(c.x); free(c.wt);
				mlp_free(m);
			}
		}
	}
}

/* ---- WGAN-GP gradient penalty ---- */
typedef struct { Mlp *m; int B; float *x; float weight; } GpCtx;
static double gp_f(void *p)
{
	GpCtx *c = p;
	float pen = mlp_gradient_penalty(c->m, c->x, c->B, c->weight);
	return pen;
}
static void test_gp(void)
{
	for (int act = ACT_RELU; act <= ACT_LEAKY_RELU; act++) {
		for (int rep = 0; rep < 2; rep++) {
			MlpSpec s;
			mlp_spec_init(&s);
			s.in = rint_in(3, 6);
			s.nlayers = 3 + rep;
			for (int l = 0; l < s.nlayers - 1; l++) s.widths[l] = rint_in(3, 6);
			s.widths[s.nlayers - 1] = 1;
			s.act = (Act)act;
			s.head = 1;
			Mlp *m = mlp_new(&s, 500 + act * 7 + rep);
			GpCtx c = { m, rint_in(3, 6), 0, 10.0f };
			c.x = randv((long)c.B * s.in, 1);
			mlp_zero_grad(m);
			float pen = mlp_gradient_penalty(m, c.x, c.B, c.weight);
			size_t np = mlp_nparams(m);
			float *g = xmallocarray(np, sizeof(float));
			memcpy(g, mlp_grads(m), np * sizeof(float));
			char op[96];
			snprintf(op, sizeof op, "gradient_penalty(%s,%d layers)", act_names[act], s.nlayers);
			CHECK(op, isfinite(pen) && pen > 0);
			/* every weight and bias (the bias gradient is 0, which FD confirms) */
			fd_check(op, "dparams", mlp_params(m), (long)np, gp_f, &c, g, 1e-3f, 2e-3, 2e-2);
			/* the penalty itself against an FD estimate of the input gradient:
			 * g_b = dD/dx_b by central differences on the critic output */
			const float *D0;
			double pen_fd = 0;
			for (int b = 0; b < c.B; b++) {
				double nn = 0;
				for (int j = 0; j < s.in; j++) {
					float *xv = &c.x[(long)b * s.in + j], save = *xv;
					*xv = save + 1e-2f;
					D0 = mlp_forward(m, c.x, c.B, 0);
					double dp = D0[b];
					*xv = save - 1e-2f;
					D0 = mlp_forward(m, c.x, c.B, 0);
					double dm = D0[b];
					*xv = save;
					double gj = (dp - dm) / 2e-2;
					nn += gj * gj;
				}
				pen_fd += (sqrt(nn) - 1) * (sqrt(nn) - 1);
			}
			pen_fd *= c.weight / c.B;
			char nm[200];
			snprintf(nm, sizeof nm, "%s value vs finite-difference input gradient (%.6g vs %.6g)", op, pen, pen_fd);
			CHECK(nm, fabs(pen - pen_fd) <= 1e-3 + 1e-2 * fabs(pen_fd));
			free(g); free(c.x);
			mlp_free(m);
		}
	}
	{
		/* the penalty has its own buffers: calling it between a forward and its
		 * backward leaves the backward unchanged */
		MlpSpec s;
		mlp_spec_init(&s);
		s.in = 4; s.nlayers = 3; s.widths[0] = 5; s.widths[1] = 3; s.widths[2] = 1; s.head = 1;
		s.act = ACT_LEAKY_RELU;
		Mlp *m = mlp_new(&s, 9);
		float *x = randv(6 * 4, 1), *xh = randv(6 * 4, 1), *d = randv(6, 1);
		size_t np = mlp_nparams(m);
		float *g1 = xmallocarray(np, sizeof(float));
		mlp_zero_grad(m);
		mlp_forward(m, x, 6, 1);
		mlp_backward(m, d, NULL);
		mlp_gradient_penalty(m, xh, 6, 10);
		memcpy(g1, mlp_grads(m), np * sizeof(float));
		mlp_zero_grad(m);
		mlp_forward(m, x, 6, 1);
		mlp_gradient_penalty(m, xh, 6, 10);
		mlp_backward(m, d, NULL);
		check_close("gradient_penalty between forward and backward", mlp_grads(m), g1, (long)np, 1e-7, 1e-6);
		free(x); free(xh); free(d); free(g1);
		mlp_free(m);
	}
	/* not a plain critic: NAN */
	MlpSpec s;
	mlp_spec_init(&s);
	s.in = 3; s.nlayers = 2; s.widths[0] = 4; s.widths[1] = 1; s.head = 1; s.norm = NORM_BATCH;
	Mlp *m = mlp_new(&s, 1);
	float x[6] = { 0 };
	CHECK("gradient_penalty refuses a critic with BatchNorm", isnan(mlp_gradient_penalty(m, x, 2, 10)));
	mlp_free(m);
}

int main(void)
{
	util_init("test_grad");
	rng_seed(&R, 20260101);
	test_linear();
	test_elementwise();
	test_norms();
	test_losses();
	test_mlp();
	test_gp();
	return check_status();
}
