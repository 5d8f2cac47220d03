/* test_conv: the convolutional layers and the ResNet encoder of conv.h.
 *  - conv2d forward against a naive direct convolution (the reference lives only
 *    here), for several kernel sizes, strides, paddings and the 1x1 fast path;
 *  - every layer's backward against central finite differences of f = sum(r * op(x))
 *    (conv2d: input, weight, bias; max, average and global average pooling);
 *  - the whole small ResNet (both stems, BatchNorm in training and evaluation mode):
 *    input and parameter gradients against finite differences, in double-checked
 *    samples; evaluation in chunks equals evaluation in one piece; a few Adam steps
 *    lower a loss. */
#include "check.h"
#include "conv.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Rng R;

static float *randn(long n, float sd)
{
	float *a = xmallocarray((size_t)n, sizeof(float));
	for (long i = 0; i < n; i++) a[i] = (float)(sd * rng_normal(&R));
	return a;
}

/* the reference: out[b,oy,ox,o] = b[o] + sum w[o,ky,kx,c] inp[b,iy,ix,c], in double */
static void conv_naive(float *out, const float *inp, const float *w, const float *bias,
                       int B, int H, int W, int C, int OC, int K, int s, int p)
{
	int OH = (H + 2 * p - K) / s + 1, OW = (W + 2 * p - K) / s + 1;
	for (int b = 0; b < B; b++)
		for (int oy = 0; oy < OH; oy++)
			for (int ox = 0; ox < OW; ox++)
				for (int o = 0; o < OC; o++) {
					double acc = bias ? bias[o] : 0.0;
					for (int ky = 0; ky < K; ky++)
						for (int kx = 0; kx < K; kx++) {
							int iy = oy * s - p + ky, ix = ox * s - p + kx;
							if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
							for (int c = 0; c < C; c++)
								acc += (double)w[((o * K + ky) * K + kx) * C + c] *
								       inp[((b * H + iy) * W + ix) * C + c];
						}
					out[((b * OH + oy) * OW + ox) * OC + o] = (float)acc;
				}
}

static double dot(const float *a, const float *b, long n)
{
	double s = 0;
	for (long i = 0; i < n; i++) s += (double)a[i] * b[i];
	return s;
}

/* ---- conv2d ---- */

typedef struct { int B, H, W, C, OC, K, s, p; } Geo;

static void test_conv(const Geo *g)
{
	char name[128];
	int OH = conv_out_size(g->H, g->K, g->s, g->p), OW = conv_out_size(g->W, g->K, g->s, g->p);
	long nin = (long)g->B * g->H * g->W * g->C, nw = (long)g->OC * g->K * g->K * g->C;
	long nout = (long)g->B * OH * OW * g->OC, ncol = (long)g->B * OH * OW * g->K * g->K * g->C;
	float *x = randn(nin, 1), *w = randn(nw, 0.5f), *b = randn(g->OC, 0.5f), *r = randn(nout, 1);
	float *out = xmallocarray((size_t)nout, sizeof(float)), *ref = xmallocarray((size_t)nout, sizeof(float));
	float *col = xmallocarray((size_t)ncol, sizeof(float));
	snprintf(name, sizeof name, "conv2d B%d %dx%dx%d->%d K%d s%d p%d", g->B, g->H, g->W, g->C, g->OC, g->K, g->s, g->p);
	conv2d_forward(out, col, x, w, b, g->B, g->H, g->W, g->C, g->OC, g->K, g->s, g->p);
	conv_naive(ref, x, w, b, g->B, g->H, g->W, g->C, g->OC, g->K, g->s, g->p);
	char n2[160];
	snprintf(n2, sizeof n2, "%s forward vs direct", name);
	check_close(n2, out, ref, nout, 1e-4, 1e-4);
	/* backward: f = sum(r * out) */
	float *dx = xcalloc((size_t)nin, sizeof(float)), *dw = xcalloc((size_t)nw, sizeof(float)), *db = xcalloc((size_t)g->OC, sizeof(float));
	conv2d_backward(dx, dw, db, col, r, x, w, g->B, g->H, g->W, g->C, g->OC, g->K, g->s, g->p);
	/* the conv is linear in x, w and b: central differences in double are exact up to rounding */
	float *fd;
	const float eps = 1e-2f;
	struct { const char *what; float *v, *grad; long n; } ps[3] = { { "dinp", x, dx, nin }, { "dw", w, dw, nw }, { "db", b, db, g->OC } };
	for (int k = 0; k < 3; k++) {
		fd = xmallocarray((size_t)ps[k].n, sizeof(float));
		for (long i = 0; i < ps[k].n; i++) {
			float keep = ps[k].v[i];
			ps[k].v[i] = keep + eps;
			conv_naive(ref, x, w, b, g->B, g->H, g->W, g->C, g->OC, g->K, g->s, g->p);
			double fp = dot(ref, r, nout);
			ps[k].v[i] = keep - eps;
			conv_naive(ref, x, w, b, g->B, g->H, g->W, g->C, g->OC, g->K, g->s, g->p);
			double fm = dot(ref, r, nout);
			ps[k].v[i] = keep;
			fd[i] = (float)((fp - fm) / (2 * eps));
		}
		snprintf(n2, sizeof n2, "%s %s vs finite differences", name, ps[k].what);
		check_close(n2, ps[k].grad, fd, ps[k].n, 2e-3, 2e-3);
		free(fd);
	}
	/* backward adds: a second call doubles the gradients */
	float *dx2 = xmallocarray((size_t)nin, sizeof(float));
	memcpy(dx2, dx, sizeof(float) * (size_t)nin);
	conv2d_backward(dx2, NULL, NULL, col, r, x, w, g->B, g->H, g->W, g->C, g->OC, g->K, g->s, g->p);
	for (long i = 0; i < nin; i++) dx[i] *= 2;
	snprintf(n2, sizeof n2, "%s backward accumulates", name);
	check_close(n2, dx2, dx, nin, 1e-5, 1e-5);
	free(x); free(w); free(b); free(r); free(out); free(ref); free(col); free(dx); free(dw); free(db); free(dx2);
}

/* ---- pooling ---- */

typedef void (*PoolF)(float *out, const float *inp, const Geo *g, int32_t *idx);
static void pf_max(float *out, const float *inp, const Geo *g, int32_t *idx)
{
	maxpool2d_forward(out, idx, inp, g->B, g->H, g->W, g->C, g->K, g->s, g->p);
}
static void pf_avg(float *out, const float *inp, const Geo *g, int32_t *idx)
{
	(void)idx;
	avgpool2d_forward(out, inp, g->B, g->H, g->W, g->C, g->K, g->s, g->p);
}
static void pf_gap(float *out, const float *inp, const Geo *g, int32_t *idx)
{
	(void)idx;
	global_avgpool_forward(out, inp, g->B, g->H * g->W, g->C);
}

static void test_pool(const char *what, PoolF f, const Geo *g, int global)
{
	char name[160];
	int OH = global ? 1 : conv_out_size(g->H, g->K, g->s, g->p), OW = global ? 1 : conv_out_size(g->W, g->K, g->s, g->p);
	long nin = (long)g->B * g->H * g->W * g->C, nout = (long)g->B * OH * OW * g->C;
	/* distinct values, so that a small step never changes which element is the max */
	float *x = xmallocarray((size_t)nin, sizeof(float));
	int *perm = xmallocarray((size_t)nin, sizeof(int));
	for (long i = 0; i < nin; i++) perm[i] = (int)i;
	rng_shuffle_int(&R, perm, (int)nin);
	for (long i = 0; i < nin; i++) x[i] = (float)perm[i] * 0.1f - (float)nin * 0.05f;
	float *r = randn(nout, 1), *out = xmallocarray((size_t)nout, sizeof(float));
	int32_t *idx = xmallocarray((size_t)nout, sizeof(int32_t));
	float *dx = xcalloc((size_t)nin, sizeof(float)), *fd = xmallocarray((size_t)nin, sizeof(float));
	f(out, x, g, idx);
	if (f == pf_max) {
		/* forward against a direct max */
		int bad = 0;
		for (int b = 0; b < g->B; b++)
			for (int oy = 0; oy < OH; oy++)
				for (int ox = 0; ox < OW; ox++)
					for (int c = 0; c < g->C; c++) {
						float mx = -INFINITY;
						for (int ky = 0; ky < g->K; ky++)
							for (int kx = 0; kx < g->K; kx++) {
								int iy = oy * g->s - g->p + ky, ix = ox * g->s - g->p + kx;
								if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W) continue;
								float v = x[((b * g->H + iy) * g->W + ix) * g->C + c];
								if (v > mx) mx = v;
							}
						bad += out[((b * OH + oy) * OW + ox) * g->C + c] != mx;
					}
		snprintf(name, sizeof name, "%s %dx%d K%d s%d p%d forward vs direct", what, g->H, g->W, g->K, g->s, g->p);
		CHECK(name, bad == 0);
		maxpool2d_backward(dx, r, idx, nout);
	} else if (f == pf_avg) {
		avgpool2d_backward(dx, r, g->B, g->H, g->W, g->C, g->K, g->s, g->p);
	} else {
		global_avgpool_backward(dx, r, g->B, g->H * g->W, g->C);
	}
	const float eps = 1e-2f;
	for (long i = 0; i < nin; i++) {
		float keep = x[i];
		x[i] = keep + eps;
		f(out, x, g, idx);
		double fp = dot(out, r, nout);
		x[i] = keep - eps;
		f(out, x, g, idx);
		double fm = dot(out, r, nout);
		x[i] = keep;
		fd[i] = (float)((fp - fm) / (2 * eps));
	}
	snprintf(name, sizeof name, "%s %dx%d K%d s%d p%d backward vs finite differences", what, g->H, g->W, g->K, g->s, g->p);
	check_close(name, dx, fd, nin, 2e-3, 2e-3);
	free(x); free(perm); free(r); free(out); free(idx); free(dx); free(fd);
}

/* ---- the ResNet ---- */

static double net_loss(ResNet *m, const float *x, const float *r, int B, int train)
{
	const float *z = resnet_forward(m, x, B, train);
	return dot(z, r, (long)B * resnet_out(m));
}

/* running statistics change with each training forward: keep them fixed across the
 * finite differences by restoring the buffers */
static void save_buffers(ResNet *m, float **keep, int restore)
{
	int nt = resnet_ntensors(m), k = 0;
	for (int i = 0; i < nt; i++) {
		if (resnet_tensor_grad(m, i)) continue;
		int nd;
		int64_t sh[4];
		float *d;
		resnet_tensor(m, i, &nd, sh, &d);
		if (restore) memcpy(d, keep[k], sizeof(float) * (size_t)sh[0]);
		else { keep[k] = xmallocarray((size_t)sh[0], sizeof(float)); memcpy(keep[k], d, sizeof(float) * (size_t)sh[0]); }
		k++;
	}
}

static void test_resnet(const char *label, int stem, int hw, int width, int nst, int train)
{
	char name[200];
	ResNetSpec sp;
	resnet_spec_init(&sp);
	sp.h = sp.w = hw;
	sp.width = width;
	sp.nstages = nst;
	for (int i = 0; i < nst; i++) sp.blocks[i] = i == 0 ? 2 : 1;
	sp.stem = stem;
	CHECK("resnet spec valid", resnet_spec_check(&sp)[0] == 0);
	ResNet *m = resnet_new(&sp, 7);
	int B = 3, in = resnet_in(m), H = resnet_out(m);
	float *x = xmallocarray((size_t)B * in, sizeof(float));
	for (long i = 0; i < (long)B * in; i++) x[i] = (float)rng_uniform(&R);
	float *r = randn((long)B * H, 1);
	if (!train) {
		/* give the running statistics something other than 0/1 */
		for (int k = 0; k < 3; k++) resnet_forward(m, x, B, 1);
	}
	int nt = resnet_ntensors(m), nbuf = 0;
	for (int i = 0; i < nt; i++) nbuf += resnet_tensor_grad(m, i) == NULL;
	float **keep = xcalloc((size_t)nbuf + 1, sizeof(float *));
	save_buffers(m, keep, 0);
	resnet_zero_grad(m);
	resnet_forward(m, x, B, train);
	float *dx = xmallocarray((size_t)B * in, sizeof(float));
	resnet_backward(m, r, dx);
	save_buffers(m, keep, 1);
	/* parameters: a sample of each tensor; the input: a sample of pixels.
	 * f is a float32 network: steps of 1e-3 balance rounding (~1e-6 relative) against the curvature of BatchNorm and the ReLU kinks */
	const double eps = 1e-3;
	int nbad = 0, nchk = 0;
	double worst = 0;
	char worst_name[96] = "";
	for (int i = -1; i < nt; i++) {
		float *d, *gr;
		long n;
		const char *tn;
		if (i < 0) { d = x; gr = dx; n = (long)B * in; tn = "input"; }
		else {
			int nd;
			int64_t sh[4];
			tn = resnet_tensor(m, i, &nd, sh, &d);
			gr = resnet_tensor_grad(m, i);
			if (!gr) continue;
			n = 1;
			for (int k = 0; k < nd; k++) n *= sh[k];
		}
		for (int t = 0; t < 6; t++) {
			long j = (long)rng_below(&R, (uint64_t)n);
			float v = d[j];
			d[j] = (float)(v + eps);
			double fp = net_loss(m, x, r, B, train);
			save_buffers(m, keep, 1);
			d[j] = (float)(v - eps);
			double fm = net_loss(m, x, r, B, train);
			save_buffers(m, keep, 1);
			d[j] = v;
			double num = (fp - fm) / (2 * eps), an = gr[j];
			double err = fabs(num - an) / (1e-2 + fabs(num) + fabs(an));
			nchk++;
			if (err > 0.05) nbad++;
			if (err > worst) { worst = err; snprintf(worst_name, sizeof worst_name, "%s[%ld] %.6g vs %.6g", tn, j, an, num); }
		}
	}
	/* a ReLU or max kink inside a step may spoil a few of the samples */
	snprintf(name, sizeof name, "resnet %s gradients vs finite differences (%d of %d samples off; worst %.3g at %s)",
	         label, nbad, nchk, worst, worst_name);
	CHECK(name, nbad * 20 <= nchk);
	for (int k = 0; k < nbuf; k++) free(keep[k]);
	free(keep);
	free(x); free(r); free(dx);
	resnet_free(m);
}

static void test_resnet_eval_chunks(void)
{
	ResNetSpec sp;
	resnet_spec_init(&sp);
	sp.h = sp.w = 16;
	sp.width = 4;
	sp.nstages = 3;
	ResNet *m = resnet_new(&sp, 3);
	int B = RESNET_EVAL_CHUNK * 2 + 5, in = resnet_in(m), H = resnet_out(m);
	float *x = xmallocarray((size_t)B * in, sizeof(float));
	for (long i = 0; i < (long)B * in; i++) x[i] = (float)rng_uniform(&R);
	resnet_forward(m, x, 8, 1);  /* running statistics away from their start */
	float *all = xmallocarray((size_t)B * H, sizeof(float));
	memcpy(all, resnet_forward(m, x, B, 0), sizeof(float) * (size_t)B * H);
	CHECK("resnet eval of a large batch: no backward", !resnet_can_backward(m));
	float *one = xmallocarray((size_t)B * H, sizeof(float));
	for (int i = 0; i < B; i++) memcpy(one + (size_t)i * H, resnet_forward(m, x + (size_t)i * in, 1, 0), sizeof(float) * H);
	check_close("resnet eval in chunks equals row by row", all, one, (long)B * H, 1e-5, 1e-4);
	CHECK("resnet latent width", H == 16 && resnet_out(m) == sp.width << 2);
	free(x); free(all); free(one);
	resnet_free(m);
}

static void test_resnet_learns(void)
{
	/* two classes of 16x16 tiles: a bright square in the upper-left or lower-right
	 * quadrant; ResNet + linear head, Adam: the loss must fall */
	ResNetSpec sp;
	resnet_spec_init(&sp);
	sp.h = sp.w = 16;
	sp.width = 4;
	sp.nstages = 2;
	ResNet *m = resnet_new(&sp, 5);
	int B = 16, in = resnet_in(m), H = resnet_out(m), K = 2;
	MlpSpec hs;
	mlp_spec_init(&hs);
	hs.in = H; hs.nlayers = 1; hs.widths[0] = K; hs.head = 1;
	Mlp *head = mlp_new(&hs, 5);
	Optim o1, o2;
	optim_init(&o1, OPT_ADAM, resnet_nparams(m));
	optim_init(&o2, OPT_ADAM, mlp_nparams(head));
	float *x = xmallocarray((size_t)B * in, sizeof(float)), *dl = xmallocarray((size_t)B * K, sizeof(float));
	float *dz = xmallocarray((size_t)B * H, sizeof(float));
	int32_t y[16];
	double first = 0, last = 0;
	for (int step = 0; step < 40; step++) {
		for (int b = 0; b < B; b++) {
			y[b] = (int32_t)rng_below(&R, 2);
			for (int p = 0; p < 16 * 16; p++) {
				int py = p / 16, px = p % 16;
				int in_sq = y[b] ? (py >= 9 && py < 14 && px >= 9 && px < 14) : (py >= 2 && py < 7 && px >= 2 && px < 7);
				for (int c = 0; c < 3; c++) x[((size_t)b * 256 + p) * 3 + c] = (float)(0.2 + 0.1 * rng_uniform(&R) + (in_sq ? 0.5 : 0));
			}
		}
		const float *z = resnet_forward(m, x, B, 1);
		const float *lg = mlp_forward(head, z, B, 1);
		float loss = softmax_xent(dl, NULL, NULL, lg, y, NULL, 0, B, K);
		if (step < 5) first += loss / 5;
		if (step >= 35) last += loss / 5;
		mlp_backward(head, dl, dz);
		resnet_backward(m, dz, NULL);
		optim_step(&o1, resnet_params(m), resnet_grads(m), 3e-3f);
		optim_step(&o2, mlp_params(head), mlp_grads(head), 3e-3f);
		resnet_zero_grad(m);
		mlp_zero_grad(head);
	}
	char name[128];
	snprintf(name, sizeof name, "resnet + head learn a spatial pattern (loss %.3f -> %.3f)", first, last);
	CHECK(name, last < 0.5 * first);
	optim_free(&o1); optim_free(&o2);
	free(x); free(dl); free(dz);
	mlp_free(head);
	resnet_free(m);
}

static void test_tensors(void)
{
	ResNetSpec sp;
	resnet_spec_init(&sp);
	sp.h = sp.w = 64;
	sp.width = 64;
	sp.nstages = 4;
	for (int i = 0; i < 4; i++) sp.blocks[i] = 2;
	sp.stem = STEM_IMAGENET;
	ResNet *m = resnet_new(&sp, 1);
	/* torchvision's resnet18 without fc has 11,176,512 parameters (conv and BN weights) */
	char name[128];
	snprintf(name, sizeof name, "ResNet-18 parameter count %zu", resnet_nparams(m));
	CHECK(name, resnet_nparams(m) == 11176512);
	CHECK("ResNet-18 tensor names", resnet_find_tensor(m, "conv1.w") == 0 && resnet_find_tensor(m, "layer4.1.bn2.running_var") > 0 &&
	      resnet_find_tensor(m, "layer2.0.down.conv.w") > 0 && resnet_find_tensor(m, "layer1.0.down.conv.w") < 0);
	int nd;
	int64_t sh[4];
	resnet_tensor(m, resnet_find_tensor(m, "conv1.w"), &nd, sh, NULL);
	CHECK("ResNet-18 stem weight (64,7,7,3)", nd == 4 && sh[0] == 64 && sh[1] == 7 && sh[2] == 7 && sh[3] == 3);
	CHECK("ResNet-18 latent width 512", resnet_out(m) == 512);
	resnet_free(m);
	ResNetSpec bad = sp;
	bad.h = bad.w = 4;
	bad.nstages = 6;
	CHECK("spec check: too small an input", resnet_spec_check(&bad)[0] != 0);
}

int main(void)
{
	rng_seed(&R, 12345);
	Geo geos[] = {
		{ 2, 5, 6, 3, 4, 3, 1, 1 },   /* 3x3 same */
		{ 2, 7, 7, 2, 3, 3, 2, 1 },   /* strided */
		{ 1, 8, 6, 3, 2, 7, 2, 3 },   /* the ImageNet stem */
		{ 2, 4, 5, 3, 5, 1, 1, 0 },   /* 1x1: the gemm-only path */
		{ 2, 6, 6, 4, 3, 1, 2, 0 },   /* 1x1 stride 2: the downsample shortcut */
		{ 1, 5, 5, 2, 2, 2, 1, 0 },   /* even kernel, no padding */
	};
	for (size_t i = 0; i < sizeof geos / sizeof *geos; i++) test_conv(&geos[i]);
	Geo pg[] = { { 2, 7, 7, 3, 0, 3, 2, 1 }, { 1, 6, 5, 2, 0, 2, 2, 0 }, { 2, 5, 5, 2, 0, 3, 1, 1 } };
	for (size_t i = 0; i < sizeof pg / sizeof *pg; i++) {
		test_pool("maxpool2d", pf_max, &pg[i], 0);
		test_pool("avgpool2d", pf_avg, &pg[i], 0);
	}
	test_pool("global avgpool", pf_gap, &pg[0], 1);
	test_resnet("small stem, training mode", STEM_SMALL, 8, 3, 3, 1);
	test_resnet("small stem, evaluation mode", STEM_SMALL, 8, 3, 3, 0);
	test_resnet("imagenet stem, training mode", STEM_IMAGENET, 16, 3, 2, 1);
	test_resnet_eval_chunks();
	test_resnet_learns();
	test_tensors();
	return check_status();
}
