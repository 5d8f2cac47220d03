/* test_torch_ref.c: replays the training steps of tests/torch_ref.py with the C code
 * and compares per-step losses and the final parameters (and BatchNorm running
 * statistics) with PyTorch's, from the committed fixtures in tests/fixtures/torch/
 * (so this test needs no torch). The fixture folder is argv[1], else $DAPIPE_FIXTURES,
 * else tests/fixtures/torch relative to the current folder or to this source file.
 *
 *   wgan:  critic step (-mean sp(D(zs)) + mean sp(D(zt)) + 10 GP), then encoder +
 *          classifier step (CE + w * -mean sp(D(zt))), Adam
 *   dann:  CE + BCE(domain) through the gradient reversal layer, Ganin schedules, Adam
 *   optim: weighted, smoothed cross-entropy; SGD with momentum, then AdamW */
#include "check.h"
#include "nn.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RTOL 1e-4
#define ATOL 2e-6

typedef struct { char *name; long n; float *v; } Entry;
static Entry *fx;
static int nfx;
static const char *fxfile;

static void fx_load(const char *dir, const char *file)
{
	for (int i = 0; i < nfx; i++) { free(fx[i].name); free(fx[i].v); }
	free(fx);
	fx = NULL;
	nfx = 0;
	char *path = xasprintf("%s/%s", dir, file);
	FILE *f = fopen(path, "r");
	if (!f) die("%s:", path);
	fxfile = file;
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0;
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		char *p = line, *end;
		char *name = strsep(&p, " ");
		if (!p) die("%s:%d: no count", path, lineno);
		long n = strtol(p, &end, 10);
		if (end == p || n < 0) die("%s:%d: bad count", path, lineno);
		p = end;
		float *v = xmallocarray((size_t)(n ? n : 1), sizeof(float));
		for (long i = 0; i < n; i++) {
			v[i] = strtof(p, &end);
			if (end == p) die("%s:%d: value %ld missing", path, lineno, i);
			p = end;
		}
		fx = xrealloc(fx, (size_t)(nfx + 1) * sizeof *fx);
		fx[nfx].name = xstrdup(name);
		fx[nfx].n = n;
		fx[nfx].v = v;
		nfx++;
	}
	free(line);
	fclose(f);
	free(path);
}

static float *fx_get(const char *name, long want)
{
	for (int i = 0; i < nfx; i++) {
		if (strcmp(fx[i].name, name) == 0) {
			if (want >= 0 && fx[i].n != want) die("%s: %s: %ld values, expected %ld", fxfile, name, fx[i].n, want);
			return fx[i].v;
		}
	}
	die("%s: no entry %s", fxfile, name);
}

static float fx_scalar(const char *fmt, int step)
{
	char name[96];
	snprintf(name, sizeof name, fmt, step);
	return fx_get(name, 1)[0];
}

static float *fx_step(const char *what, int step, long n)
{
	char name[96];
	snprintf(name, sizeof name, "step%d.%s", step, what);
	return fx_get(name, n);
}

static int32_t *labels(const float *v, int n)
{
	int32_t *y = xmallocarray((size_t)n, sizeof(int32_t));
	for (int i = 0; i < n; i++) y[i] = (int32_t)lrintf(v[i]);
	return y;
}

static void load_mlp(Mlp *m, const char *prefix)
{
	for (int i = 0; i < mlp_ntensors(m); i++) {
		int nd;
		int64_t sh[2];
		float *d;
		const char *tn = mlp_tensor(m, i, &nd, sh, &d);
		long n = (long)sh[0] * (nd > 1 ? sh[1] : 1);
		char name[96];
		snprintf(name, sizeof name, "%s.%s", prefix, tn);
		memcpy(d, fx_get(name, n), (size_t)n * sizeof(float));
	}
}

static void compare_mlp(const char *run, Mlp *m, const char *prefix)
{
	for (int i = 0; i < mlp_ntensors(m); i++) {
		int nd;
		int64_t sh[2];
		float *d;
		const char *tn = mlp_tensor(m, i, &nd, sh, &d);
		long n = (long)sh[0] * (nd > 1 ? sh[1] : 1);
		char name[96], label[160];
		snprintf(name, sizeof name, "%s.%s", prefix, tn);
		snprintf(label, sizeof label, "torch %s %s", run, name);
		check_close(label, d, fx_get(name, n), n, ATOL, RTOL);
	}
}

static void compare_scalar(const char *run, const char *what, int step, float got, float want)
{
	char label[128];
	snprintf(label, sizeof label, "torch %s step%d %s", run, step, what);
	check_close(label, &got, &want, 1, 1e-6, RTOL);
}

static MlpSpec spec(int in, int n, const int *w, Act act, Norm norm, int head)
{
	MlpSpec s;
	mlp_spec_init(&s);
	s.in = in;
	s.nlayers = n;
	for (int i = 0; i < n; i++) s.widths[i] = w[i];
	s.act = act;
	s.norm = norm;
	s.head = head;
	return s;
}

enum { B = 8, FIN = 6, K = 3, H = 8 };

static void models(Mlp **enc, Mlp **cls)
{
	MlpSpec se = spec(FIN, 2, (int[]){ H, H }, ACT_RELU, NORM_BATCH, 0);
	MlpSpec sc = spec(H, 2, (int[]){ 5, K }, ACT_RELU, NORM_NONE, 1);
	*enc = mlp_new(&se, 1);
	*cls = mlp_new(&sc, 2);
	load_mlp(*enc, "init.enc");
	load_mlp(*cls, "init.cls");
}

static void adam(Optim *o, Mlp *m, float beta1, float beta2, float wd)
{
	optim_init(o, OPT_ADAM, mlp_nparams(m));
	o->beta1 = beta1;
	o->beta2 = beta2;
	o->weight_decay = wd;
}

static void run_wgan(const char *dir)
{
	fx_load(dir, "wgan.txt");
	int steps = (int)fx_get("config.steps", 1)[0];
	float w = fx_get("config.adapt_weight", 1)[0], gpw = fx_get("config.gp_weight", 1)[0];
	Mlp *enc, *cls;
	models(&enc, &cls);
	MlpSpec sd = spec(H, 3, (int[]){ 6, 4, 1 }, ACT_LEAKY_RELU, NORM_NONE, 1);
	Mlp *critic = mlp_new(&sd, 3);
	load_mlp(critic, "init.critic");
	Optim oc, oe, ocl;
	adam(&oc, critic, 0.5f, 0.9f, 0.0f);
	adam(&oe, enc, 0.9f, 0.999f, 1e-4f);
	adam(&ocl, cls, 0.9f, 0.999f, 1e-4f);
	float zs[B * H], zt[B * H], xhat[B * H], dz[B * H], dlog[B * K], g[B], d1[B];
	for (int s = 0; s < steps; s++) {
		const float *xs = fx_step("xs", s, B * FIN), *xt = fx_step("xt", s, B * FIN);
		const float *alpha = fx_step("alpha", s, B);
		int32_t *ys = labels(fx_step("ys", s, B), B);
		/* critic step: encoder forward only (its BatchNorm statistics move, as in torch) */
		memcpy(zs, mlp_forward(enc, xs, B, 1), sizeof zs);
		memcpy(zt, mlp_forward(enc, xt, B, 1), sizeof zt);
		mlp_zero_grad(critic);
		const float *D = mlp_forward(critic, zs, B, 1);
		float ls = mean_softplus(g, D, 1.0f, B);
		for (int i = 0; i < B; i++) d1[i] = -g[i];  /* -mean sp(D(zs)) */
		mlp_backward(critic, d1, NULL);
		D = mlp_forward(critic, zt, B, 1);
		float lt = mean_softplus(g, D, 1.0f, B);
		mlp_backward(critic, g, NULL);
		for (int i = 0; i < B; i++)
			for (int j = 0; j < H; j++)
				xhat[i * H + j] = alpha[i] * zs[i * H + j] + (1.0f - alpha[i]) * zt[i * H + j];
		float gp = mlp_gradient_penalty(critic, xhat, B, gpw);
		optim_step(&oc, mlp_params(critic), mlp_grads(critic), 1e-3f);
		compare_scalar("wgan", "gp", s, gp, fx_scalar("step%d.gp", s));
		compare_scalar("wgan", "critic_loss", s, -ls + lt + gp, fx_scalar("step%d.critic_loss", s));
		/* encoder + classifier step */
		mlp_zero_grad(enc);
		mlp_zero_grad(cls);
		mlp_zero_grad(critic);
		const float *logits = mlp_forward(cls, mlp_forward(enc, xs, B, 1), B, 1);
		float ce = softmax_xent(dlog, NULL, NULL, logits, ys, NULL, 0.0f, B, K);
		mlp_backward(cls, dlog, dz);
		mlp_backward(enc, dz, NULL);
		D = mlp_forward(critic, mlp_forward(enc, xt, B, 1), B, 1);
		float adv = -mean_softplus(g, D, 1.0f, B);
		for (int i = 0; i < B; i++) d1[i] = -w * g[i];
		mlp_backward(critic, d1, dz);  /* critic gradients are discarded: only dz is used */
		mlp_backward(enc, dz, NULL);
		optim_step(&oe, mlp_params(enc), mlp_grads(enc), 1e-3f);
		optim_step(&ocl, mlp_params(cls), mlp_grads(cls), 1e-3f);
		compare_scalar("wgan", "ce", s, ce, fx_scalar("step%d.ce", s));
		compare_scalar("wgan", "enc_loss", s, ce + w * adv, fx_scalar("step%d.enc_loss", s));
		free(ys);
	}
	compare_mlp("wgan", enc, "final.enc");
	compare_mlp("wgan", cls, "final.cls");
	compare_mlp("wgan", critic, "final.critic");
	optim_free(&oc); optim_free(&oe); optim_free(&ocl);
	mlp_free(enc); mlp_free(cls); mlp_free(critic);
}

static void run_dann(const char *dir)
{
	fx_load(dir, "dann.txt");
	int steps = (int)fx_get("config.steps", 1)[0];
	float lr0 = fx_get("config.lr0", 1)[0];
	Mlp *enc, *cls;
	models(&enc, &cls);
	MlpSpec sd = spec(H, 2, (int[]){ 6, 1 }, ACT_RELU, NORM_NONE, 1);
	Mlp *dom = mlp_new(&sd, 3);
	load_mlp(dom, "init.dom");
	Optim oe, ocl, od;
	adam(&oe, enc, 0.9f, 0.999f, 1e-4f);
	adam(&ocl, cls, 0.9f, 0.999f, 1e-4f);
	adam(&od, dom, 0.9f, 0.999f, 1e-4f);
	float dz[B * H], dzd[B * H], dlog[B * K], dl[B], t0[B], t1[B];
	for (int i = 0; i < B; i++) { t0[i] = 0.0f; t1[i] = 1.0f; }
	for (int s = 0; s < steps; s++) {
		const float *xs = fx_step("xs", s, B * FIN), *xt = fx_step("xt", s, B * FIN);
		int32_t *ys = labels(fx_step("ys", s, B), B);
		float p = (float)s / (float)steps;
		float lam = sched_lambda_ganin(p), lr = sched_lr_ganin(lr0, p);
		compare_scalar("dann", "lambda (ganin schedule)", s, lam, fx_scalar("step%d.lambda", s));
		compare_scalar("dann", "lr (ganin schedule)", s, lr, fx_scalar("step%d.lr", s));
		mlp_zero_grad(enc);
		mlp_zero_grad(cls);
		mlp_zero_grad(dom);
		/* BCE over the 2B rows [zs; zt] is the mean of the two halves' means */
		const float *zs = mlp_forward(enc, xs, B, 1);
		const float *ls = mlp_forward(dom, zs, B, 1);
		float bs = bce_logits(dl, ls, t0, B);
		for (int i = 0; i < B; i++) dl[i] *= 0.5f;
		mlp_backward(dom, dl, dzd);
		const float *logits = mlp_forward(cls, zs, B, 1);
		float ce = softmax_xent(dlog, NULL, NULL, logits, ys, NULL, 0.0f, B, K);
		mlp_backward(cls, dlog, dz);
		grl_backward(dz, dzd, lam, B * H);  /* the gradient reversal layer */
		mlp_backward(enc, dz, NULL);
		const float *lt = mlp_forward(dom, mlp_forward(enc, xt, B, 1), B, 1);
		float bt = bce_logits(dl, lt, t1, B);
		for (int i = 0; i < B; i++) dl[i] *= 0.5f;
		mlp_backward(dom, dl, dzd);
		memset(dz, 0, sizeof dz);
		grl_backward(dz, dzd, lam, B * H);
		mlp_backward(enc, dz, NULL);
		optim_step(&oe, mlp_params(enc), mlp_grads(enc), lr);
		optim_step(&ocl, mlp_params(cls), mlp_grads(cls), lr);
		optim_step(&od, mlp_params(dom), mlp_grads(dom), lr);
		compare_scalar("dann", "ce", s, ce, fx_scalar("step%d.ce", s));
		compare_scalar("dann", "bce", s, 0.5f * (bs + bt), fx_scalar("step%d.bce", s));
		free(ys);
	}
	compare_mlp("dann", enc, "final.enc");
	compare_mlp("dann", cls, "final.cls");
	compare_mlp("dann", dom, "final.dom");
	optim_free(&oe); optim_free(&ocl); optim_free(&od);
	mlp_free(enc); mlp_free(cls); mlp_free(dom);
}

static void run_optim(const char *dir)
{
	fx_load(dir, "optim.txt");
	const float *cw = fx_get("config.class_w", K);
	float smoothing = fx_get("config.smoothing", 1)[0];
	MlpSpec sc = spec(FIN, 2, (int[]){ 5, K }, ACT_RELU, NORM_NONE, 1);
	Mlp *cls = mlp_new(&sc, 2);
	load_mlp(cls, "init.cls");
	Optim sgd, adamw;
	optim_init(&sgd, OPT_SGD, mlp_nparams(cls));
	sgd.momentum = 0.9f;
	sgd.weight_decay = 1e-3f;
	optim_init(&adamw, OPT_ADAMW, mlp_nparams(cls));
	adamw.weight_decay = 1e-2f;
	float dlog[B * K];
	for (int s = 0; s < 8; s++) {
		const float *x = fx_step("x", s, B * FIN);
		int32_t *y = labels(fx_step("y", s, B), B);
		mlp_zero_grad(cls);
		const float *logits = mlp_forward(cls, x, B, 1);
		float loss = softmax_xent(dlog, NULL, NULL, logits, y, cw, smoothing, B, K);
		mlp_backward(cls, dlog, NULL);
		if (s < 4) optim_step(&sgd, mlp_params(cls), mlp_grads(cls), 0.05f);
		else optim_step(&adamw, mlp_params(cls), mlp_grads(cls), 1e-2f);
		compare_scalar("optim", "weighted smoothed xent", s, loss, fx_scalar("step%d.loss", s));
		free(y);
	}
	compare_mlp("optim (sgd+adamw)", cls, "final.cls");
	optim_free(&sgd); optim_free(&adamw);
	mlp_free(cls);
}

int main(int argc, char **argv)
{
	util_init("test_torch_ref");
	const char *dir = argc > 1 ? argv[1] : getenv("DAPIPE_FIXTURES");
	char *alt = NULL;
	if (!dir) {
		dir = "tests/fixtures/torch";
		if (access("tests/fixtures/torch/wgan.txt", R_OK) != 0) {
			/* this source file's folder: tests/unit/ -> tests/fixtures/torch */
			const char *src = __FILE__;
			const char *slash = strrchr(src, '/');
			alt = xasprintf("%.*s/../fixtures/torch", slash ? (int)(slash - src) : 1, slash ? src : ".");
			dir = alt;
		}
	}
	run_wgan(dir);
	run_dann(dir);
	run_optim(dir);
	free(alt);
	for (int i = 0; i < nfx; i++) { free(fx[i].name); free(fx[i].v); }
	free(fx);
	return check_status();
}
