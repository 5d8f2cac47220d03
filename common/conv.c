/* conv.c: convolution (im2col + one gemm per batch), pooling, and the ResNet encoder
 * of conv.h. NHWC activations; dense math through gemm() of blas.h; BatchNorm2d and
 * ReLU are the layers of layers.c applied to (B*H*W, C) rows. */
#include "conv.h"
#include "blas.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *stem_names[STEM_COUNT] = { "small", "imagenet" };

int conv_out_size(int n, int k, int stride, int pad)
{
	return (n + 2 * pad - k) / stride + 1;
}

/* ---- im2col ---- */

void im2col(float *col, const float *inp, int B, int H, int W, int C, int K, int stride, int pad)
{
	/* inp is (B,H,W,C); col row (b,oy,ox) holds the K*K*C window values in (ky,kx,c)
	 * order, zeros where the window leaves the image */
	int OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
	size_t KKC = (size_t)K * K * C;
	for (int b = 0; b < B; b++) {
		const float *img = inp + (size_t)b * H * W * C;
		for (int oy = 0; oy < OH; oy++) {
			for (int ox = 0; ox < OW; ox++) {
				float *row = col + (((size_t)b * OH + oy) * OW + ox) * KKC;
				for (int ky = 0; ky < K; ky++) {
					int iy = oy * stride - pad + ky;
					float *dst = row + (size_t)ky * K * C;
					if (iy < 0 || iy >= H) {
						memset(dst, 0, sizeof(float) * (size_t)K * C);
						continue;
					}
					int ix0 = ox * stride - pad;
					if (ix0 >= 0 && ix0 + K <= W) {
						/* the whole window row is inside: one contiguous copy */
						memcpy(dst, img + ((size_t)iy * W + ix0) * C, sizeof(float) * (size_t)K * C);
						continue;
					}
					for (int kx = 0; kx < K; kx++) {
						int ix = ix0 + kx;
						if (ix < 0 || ix >= W) memset(dst + (size_t)kx * C, 0, sizeof(float) * (size_t)C);
						else memcpy(dst + (size_t)kx * C, img + ((size_t)iy * W + ix) * C, sizeof(float) * (size_t)C);
					}
				}
			}
		}
	}
}

void col2im_add(float *dinp, const float *dcol, int B, int H, int W, int C, int K, int stride, int pad)
{
	/* in the forward pass this was: col[row, (ky,kx,c)] = inp[b, iy, ix, c] */
	int OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
	size_t KKC = (size_t)K * K * C;
	for (int b = 0; b < B; b++) {
		float *img = dinp + (size_t)b * H * W * C;
		for (int oy = 0; oy < OH; oy++) {
			for (int ox = 0; ox < OW; ox++) {
				const float *row = dcol + (((size_t)b * OH + oy) * OW + ox) * KKC;
				for (int ky = 0; ky < K; ky++) {
					int iy = oy * stride - pad + ky;
					if (iy < 0 || iy >= H) continue;
					for (int kx = 0; kx < K; kx++) {
						int ix = ox * stride - pad + kx;
						if (ix < 0 || ix >= W) continue;
						const float *src = row + ((size_t)ky * K + kx) * C;
						float *dst = img + ((size_t)iy * W + ix) * C;
						for (int c = 0; c < C; c++) dst[c] += src[c];
					}
				}
			}
		}
	}
}

/* ---- conv2d ---- */

static int is_pointwise(int K, int stride, int pad) { return K == 1 && stride == 1 && pad == 0; }

void conv2d_forward(float *out, float *col, const float *inp, const float *w, const float *b,
                    int B, int H, int W, int C, int OC, int K, int stride, int pad)
{
	/* inp is (B,H,W,C), w is (OC,K,K,C), out is (B,OH,OW,OC):
	 * out[b,oy,ox,o] = b[o] + sum_{ky,kx,c} w[o,ky,kx,c] * inp[b, oy*s-p+ky, ox*s-p+kx, c]
	 * = (im2col(inp) (N,KKC)) @ w^T (KKC,OC), N = B*OH*OW: one gemm for the batch */
	int OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
	int N = B * OH * OW, KKC = K * K * C;
	const float *cols = inp;
	if (!is_pointwise(K, stride, pad)) {
		im2col(col, inp, B, H, W, C, K, stride, pad);
		cols = col;
	}
	if (b)
		for (int i = 0; i < N; i++) memcpy(out + (size_t)i * OC, b, sizeof(float) * (size_t)OC);
	gemm(0, 1, N, OC, KKC, 1.0f, cols, KKC, w, KKC, b ? 1.0f : 0.0f, out, OC);
}

void conv2d_backward(float *dinp, float *dw, float *db, float *col, const float *dout, const float *inp,
                     const float *w, int B, int H, int W, int C, int OC, int K, int stride, int pad)
{
	/* in the forward pass this was: out (N,OC) = cols (N,KKC) @ w^T + b, cols = im2col(inp) */
	int OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
	int N = B * OH * OW, KKC = K * K * C;
	int pw = is_pointwise(K, stride, pad);
	const float *cols = inp;
	if (!pw) {
		im2col(col, inp, B, H, W, C, K, stride, pad);  /* recomputed: cheaper than keeping them */
		cols = col;
	}
	/* dw (OC,KKC) += dout^T (OC,N) @ cols (N,KKC) */
	if (dw) gemm(1, 0, OC, KKC, N, 1.0f, dout, OC, cols, KKC, 1.0f, dw, KKC);
	if (db)
		for (int i = 0; i < N; i++) {
			const float *d = dout + (size_t)i * OC;
			for (int o = 0; o < OC; o++) db[o] += d[o];
		}
	if (!dinp) return;
	if (pw) {
		/* dinp (N,C) += dout (N,OC) @ w (OC,C) */
		gemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
		return;
	}
	/* dcol (N,KKC) = dout (N,OC) @ w (OC,KKC), in the column buffer, then scattered back */
	gemm(0, 0, N, KKC, OC, 1.0f, dout, OC, w, KKC, 0.0f, col, KKC);
	col2im_add(dinp, col, B, H, W, C, K, stride, pad);
}

/* ---- pooling ---- */

void maxpool2d_forward(float *out, int32_t *idx, const float *inp, int B, int H, int W, int C, int K, int stride, int pad)
{
	/* inp is (B,H,W,C), out and idx (B,OH,OW,C): out = max over the window, idx its flat
	 * index in inp (the first maximum on ties, like PyTorch's CPU kernel) */
	int OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
	for (int b = 0; b < B; b++)
		for (int oy = 0; oy < OH; oy++)
			for (int ox = 0; ox < OW; ox++) {
				size_t o = (((size_t)b * OH + oy) * OW + ox) * C;
				float *ov = out + o;
				int32_t *oi = idx + o;
				for (int c = 0; c < C; c++) { ov[c] = -INFINITY; oi[c] = -1; }
				for (int ky = 0; ky < K; ky++) {
					int iy = oy * stride - pad + ky;
					if (iy < 0 || iy >= H) continue;
					for (int kx = 0; kx < K; kx++) {
						int ix = ox * stride - pad + kx;
						if (ix < 0 || ix >= W) continue;
						size_t base = (((size_t)b * H + iy) * W + ix) * C;
						const float *v = inp + base;
						for (int c = 0; c < C; c++)
							if (oi[c] < 0 || v[c] > ov[c] || isnan(v[c])) {
								ov[c] = v[c];
								oi[c] = (int32_t)(base + (size_t)c);
							}
					}
				}
			}
}

void maxpool2d_backward(float *dinp, const float *dout, const int32_t *idx, long n)
{
	/* in the forward pass this was: out[i] = inp[idx[i]] */
	for (long i = 0; i < n; i++) dinp[idx[i]] += dout[i];
}

void avgpool2d_forward(float *out, const float *inp, int B, int H, int W, int C, int K, int stride, int pad)
{
	/* out[b,oy,ox,c] = sum over the window's inside positions / (K*K) */
	int OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
	float inv = 1.0f / (float)(K * K);
	for (int b = 0; b < B; b++)
		for (int oy = 0; oy < OH; oy++)
			for (int ox = 0; ox < OW; ox++) {
				float *ov = out + (((size_t)b * OH + oy) * OW + ox) * C;
				for (int c = 0; c < C; c++) ov[c] = 0.0f;
				for (int ky = 0; ky < K; ky++) {
					int iy = oy * stride - pad + ky;
					if (iy < 0 || iy >= H) continue;
					for (int kx = 0; kx < K; kx++) {
						int ix = ox * stride - pad + kx;
						if (ix < 0 || ix >= W) continue;
						const float *v = inp + (((size_t)b * H + iy) * W + ix) * C;
						for (int c = 0; c < C; c++) ov[c] += v[c];
					}
				}
				for (int c = 0; c < C; c++) ov[c] *= inv;
			}
}

void avgpool2d_backward(float *dinp, const float *dout, int B, int H, int W, int C, int K, int stride, int pad)
{
	/* in the forward pass this was: out = sum(window) / (K*K) */
	int OH = conv_out_size(H, K, stride, pad), OW = conv_out_size(W, K, stride, pad);
	float inv = 1.0f / (float)(K * K);
	for (int b = 0; b < B; b++)
		for (int oy = 0; oy < OH; oy++)
			for (int ox = 0; ox < OW; ox++) {
				const float *d = dout + (((size_t)b * OH + oy) * OW + ox) * C;
				for (int ky = 0; ky < K; ky++) {
					int iy = oy * stride - pad + ky;
					if (iy < 0 || iy >= H) continue;
					for (int kx = 0; kx < K; kx++) {
						int ix = ox * stride - pad + kx;
						if (ix < 0 || ix >= W) continue;
						float *g = dinp + (((size_t)b * H + iy) * W + ix) * C;
						for (int c = 0; c < C; c++) g[c] += d[c] * inv;
					}
				}
			}
}

void global_avgpool_forward(float *out, const float *inp, int B, int HW, int C)
{
	/* inp is (B,HW,C), out (B,C) = mean over HW */
	float inv = 1.0f / (float)HW;
	for (int b = 0; b < B; b++) {
		float *o = out + (size_t)b * C;
		for (int c = 0; c < C; c++) o[c] = 0.0f;
		for (int p = 0; p < HW; p++) {
			const float *v = inp + ((size_t)b * HW + p) * C;
			for (int c = 0; c < C; c++) o[c] += v[c];
		}
		for (int c = 0; c < C; c++) o[c] *= inv;
	}
}

void global_avgpool_backward(float *dinp, const float *dout, int B, int HW, int C)
{
	/* in the forward pass this was: out[b,c] = mean_p inp[b,p,c] */
	float inv = 1.0f / (float)HW;
	for (int b = 0; b < B; b++) {
		const float *d = dout + (size_t)b * C;
		for (int p = 0; p < HW; p++) {
			float *g = dinp + ((size_t)b * HW + p) * C;
			for (int c = 0; c < C; c++) g[c] += d[c] * inv;
		}
	}
}

void batchnorm_eval_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                             const float *mean, const float *rstd, const float *gamma, int N, int C)
{
	/* in the forward pass this was: out = gamma * (x - mean) * rstd + beta, statistics constant */
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C, *d = dout + (size_t)i * C;
		float *dx = dinp + (size_t)i * C;
		for (int c = 0; c < C; c++) {
			if (dgamma) dgamma[c] += d[c] * (x[c] - mean[c]) * rstd[c];
			if (dbeta) dbeta[c] += d[c];
			dx[c] += gamma[c] * rstd[c] * d[c];
		}
	}
}

/* ---- ResNet ---- */

/* a convolution without bias followed by BatchNorm2d (and ReLU when relu) */
typedef struct {
	int H, W, C, OC, K, stride, pad, OH, OW, relu;
	float *w, *gamma, *beta;          /* parameters */
	float *dw, *dgamma, *dbeta;       /* gradients */
	float *rmean, *rvar;              /* buffers */
	float *mean, *rstd;               /* (OC) batch statistics of the last forward */
	const float *inp;                 /* input of the last forward */
	float *a;                         /* conv output (B,OH,OW,OC), in the arena */
	float *y;                         /* BatchNorm (+ReLU) output */
} Cbn;

typedef struct {
	Cbn c1, c2, down;
	int has_down;
	float *out;                       /* relu(bn2(conv2) + shortcut) (B,OH,OW,OC) = c2.y */
} BasicBlock;

typedef struct {
	char name[48];
	int ndim;
	int64_t shape[4];
	float *data, *grad;
} RTensor;

struct ResNet {
	ResNetSpec spec;
	Cbn stem;
	int pool;                         /* maxpool 3x3 s2 p1 after the stem */
	int pH, pW, pC;                   /* after the stem (and pool) */
	int nblocks;
	BasicBlock *blk;
	int fH, fW, fC;                   /* last feature map */
	int ntensors, tcap;
	RTensor *tensors;
	size_t nparams, nbuffers;
	float *params, *grads, *buffers, *stats;
	/* arena: cap images */
	int cap;
	float *arena;
	int32_t *pool_idx;
	float *xn, *pool_out, *z;
	float *buf[4], *col;
	size_t maxact, maxcol;            /* floats per image */
	int B, train, can_back;
	float *eval_out;
	int eval_cap;
};

void resnet_spec_init(ResNetSpec *s)
{
	memset(s, 0, sizeof *s);
	s->h = s->w = 32;
	s->width = 16;
	s->nstages = 4;
	for (int i = 0; i < 4; i++) s->blocks[i] = 1;
	s->stem = STEM_SMALL;
	/* ImageNet statistics, the usual choice for tiles and for torchvision weights */
	s->mean[0] = 0.485f; s->mean[1] = 0.456f; s->mean[2] = 0.406f;
	s->std[0] = 0.229f; s->std[1] = 0.224f; s->std[2] = 0.225f;
	s->bn_momentum = 0.1f;
	s->eps = 1e-5f;
}

const char *resnet_spec_check(const ResNetSpec *s)
{
	if (s->h < 4 || s->w < 4 || s->h > 4096 || s->w > 4096) return "the input size must be 4 to 4096 pixels a side";
	if (s->width < 1 || s->width > 4096) return "the width must be 1 to 4096";
	if (s->nstages < 1 || s->nstages > RESNET_MAXSTAGES) return "1 to 6 stages";
	if ((long)s->width << (s->nstages - 1) > 8192) return "the last stage would be wider than 8192 channels";
	for (int i = 0; i < s->nstages; i++)
		if (s->blocks[i] < 1 || s->blocks[i] > 64) return "1 to 64 blocks per stage";
	if (s->stem < 0 || s->stem >= STEM_COUNT) return "unknown stem";
	for (int c = 0; c < 3; c++)
		if (!(s->std[c] > 0) || !isfinite(s->mean[c])) return "the input std must be positive";
	/* the feature map must not vanish */
	int h = s->h, w = s->w;
	if (s->stem == STEM_IMAGENET) {
		h = conv_out_size(conv_out_size(h, 7, 2, 3), 3, 2, 1);
		w = conv_out_size(conv_out_size(w, 7, 2, 3), 3, 2, 1);
	}
	for (int i = 1; i < s->nstages; i++) {
		h = conv_out_size(h, 3, 2, 1);
		w = conv_out_size(w, 3, 2, 1);
	}
	if (h < 1 || w < 1) return "the input is too small for this many stages";
	return "";
}

static void add_tensor(ResNet *m, const char *name, int ndim, const int64_t *shape, float *data, float *grad)
{
	if (m->ntensors == m->tcap) {
		m->tcap = m->tcap ? 2 * m->tcap : 64;
		m->tensors = xrealloc(m->tensors, sizeof(RTensor) * (size_t)m->tcap);
	}
	RTensor *t = &m->tensors[m->ntensors++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->ndim = ndim;
	memset(t->shape, 0, sizeof t->shape);
	for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
	t->data = data;
	t->grad = grad;
}

static void cbn_geom(Cbn *c, int H, int W, int C, int OC, int K, int stride, int pad, int relu)
{
	memset(c, 0, sizeof *c);
	c->H = H; c->W = W; c->C = C; c->OC = OC; c->K = K; c->stride = stride; c->pad = pad; c->relu = relu;
	c->OH = conv_out_size(H, K, stride, pad);
	c->OW = conv_out_size(W, K, stride, pad);
}

static size_t cbn_nparams(const Cbn *c) { return (size_t)c->OC * c->K * c->K * c->C + 2 * (size_t)c->OC; }

/* carve c's parameters, gradients, buffers and statistics; register the tensors */
static void cbn_carve(ResNet *m, Cbn *c, const char *conv, const char *bn, float **p, float **g, float **bu, float **st)
{
	char name[48];
	size_t nw = (size_t)c->OC * c->K * c->K * c->C;
	c->w = *p; c->dw = *g; *p += nw; *g += nw;
	c->gamma = *p; c->dgamma = *g; *p += c->OC; *g += c->OC;
	c->beta = *p; c->dbeta = *g; *p += c->OC; *g += c->OC;
	c->rmean = *bu; *bu += c->OC;
	c->rvar = *bu; *bu += c->OC;
	c->mean = *st; *st += c->OC;
	c->rstd = *st; *st += c->OC;
	int64_t sw[4] = { c->OC, c->K, c->K, c->C }, sc[1] = { c->OC };
	snprintf(name, sizeof name, "%s.w", conv);
	add_tensor(m, name, 4, sw, c->w, c->dw);
	snprintf(name, sizeof name, "%s.gamma", bn);
	add_tensor(m, name, 1, sc, c->gamma, c->dgamma);
	snprintf(name, sizeof name, "%s.beta", bn);
	add_tensor(m, name, 1, sc, c->beta, c->dbeta);
	for (int i = 0; i < c->OC; i++) { c->gamma[i] = 1.0f; c->rvar[i] = 1.0f; }
}

static void cbn_buffers(ResNet *m, Cbn *c, const char *bn)
{
	char name[48];
	int64_t sc[1] = { c->OC };
	snprintf(name, sizeof name, "%s.running_mean", bn);
	add_tensor(m, name, 1, sc, c->rmean, NULL);
	snprintf(name, sizeof name, "%s.running_var", bn);
	add_tensor(m, name, 1, sc, c->rvar, NULL);
}

/* every Cbn of the net in a fixed order, with its torchvision names */
typedef void (*CbnFn)(ResNet *m, Cbn *c, const char *conv, const char *bn, void *ctx);
static void each_cbn(ResNet *m, CbnFn fn, void *ctx)
{
	char cv[48], bn[48];
	fn(m, &m->stem, "conv1", "bn1", ctx);
	int k = 0;
	for (int s = 0; s < m->spec.nstages; s++)
		for (int b = 0; b < m->spec.blocks[s]; b++, k++) {
			BasicBlock *bk = &m->blk[k];
			snprintf(cv, sizeof cv, "layer%d.%d.conv1", s + 1, b);
			snprintf(bn, sizeof bn, "layer%d.%d.bn1", s + 1, b);
			fn(m, &bk->c1, cv, bn, ctx);
			snprintf(cv, sizeof cv, "layer%d.%d.conv2", s + 1, b);
			snprintf(bn, sizeof bn, "layer%d.%d.bn2", s + 1, b);
			fn(m, &bk->c2, cv, bn, ctx);
			if (bk->has_down) {
				snprintf(cv, sizeof cv, "layer%d.%d.down.conv", s + 1, b);
				snprintf(bn, sizeof bn, "layer%d.%d.down.bn", s + 1, b);
				fn(m, &bk->down, cv, bn, ctx);
			}
		}
}

typedef struct { float *p, *g, *bu, *st; } Carve;
static void carve_fn(ResNet *m, Cbn *c, const char *conv, const char *bn, void *ctx)
{
	Carve *cv = ctx;
	cbn_carve(m, c, conv, bn, &cv->p, &cv->g, &cv->bu, &cv->st);
}
static void buffers_fn(ResNet *m, Cbn *c, const char *conv, const char *bn, void *ctx)
{
	(void)conv; (void)ctx;
	cbn_buffers(m, c, bn);
}
static void count_fn(ResNet *m, Cbn *c, const char *conv, const char *bn, void *ctx)
{
	(void)conv; (void)bn;
	size_t *n = ctx;
	n[0] += cbn_nparams(c);
	n[1] += 2 * (size_t)c->OC;
	size_t act = (size_t)c->OH * c->OW * c->OC;
	if (act > m->maxact) m->maxact = act;
	if (!is_pointwise(c->K, c->stride, c->pad)) {
		size_t col = (size_t)c->OH * c->OW * c->K * c->K * c->C;
		if (col > m->maxcol) m->maxcol = col;
	}
}
typedef struct { Rng rng; } InitCtx;
static void init_fn(ResNet *m, Cbn *c, const char *conv, const char *bn, void *ctx)
{
	(void)m; (void)conv; (void)bn;
	InitCtx *ic = ctx;
	/* torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") */
	double sd = sqrt(2.0 / ((double)c->OC * c->K * c->K));
	size_t nw = (size_t)c->OC * c->K * c->K * c->C;
	for (size_t i = 0; i < nw; i++) c->w[i] = (float)(sd * rng_normal(&ic->rng));
}
static void flops_fn(ResNet *m, Cbn *c, const char *conv, const char *bn, void *ctx)
{
	(void)m; (void)conv; (void)bn;
	*(double *)ctx += (double)c->OH * c->OW * c->OC * c->K * c->K * c->C;
}

ResNet *resnet_new(const ResNetSpec *spec, uint64_t seed)
{
	ASSERT(resnet_spec_check(spec)[0] == 0);
	ResNet *m = xcalloc(1, sizeof *m);
	m->spec = *spec;
	if (!(m->spec.eps > 0)) m->spec.eps = 1e-5f;
	if (!(m->spec.bn_momentum > 0)) m->spec.bn_momentum = 0.1f;
	const ResNetSpec *s = &m->spec;
	/* geometry */
	if (s->stem == STEM_IMAGENET) {
		cbn_geom(&m->stem, s->h, s->w, 3, s->width, 7, 2, 3, 1);
		m->pool = 1;
		m->pH = conv_out_size(m->stem.OH, 3, 2, 1);
		m->pW = conv_out_size(m->stem.OW, 3, 2, 1);
	} else {
		cbn_geom(&m->stem, s->h, s->w, 3, s->width, 3, 1, 1, 1);
		m->pH = m->stem.OH;
		m->pW = m->stem.OW;
	}
	m->pC = s->width;
	for (int i = 0; i < s->nstages; i++) m->nblocks += s->blocks[i];
	m->blk = xcalloc((size_t)m->nblocks, sizeof *m->blk);
	int H = m->pH, W = m->pW, C = m->pC, k = 0;
	for (int st = 0; st < s->nstages; st++) {
		int OC = s->width << st;
		for (int b = 0; b < s->blocks[st]; b++, k++) {
			BasicBlock *bk = &m->blk[k];
			int stride = st > 0 && b == 0 ? 2 : 1;
			cbn_geom(&bk->c1, H, W, C, OC, 3, stride, 1, 1);
			cbn_geom(&bk->c2, bk->c1.OH, bk->c1.OW, OC, OC, 3, 1, 1, 0);
			bk->has_down = stride != 1 || C != OC;
			if (bk->has_down) cbn_geom(&bk->down, H, W, C, OC, 1, stride, 0, 0);
			H = bk->c1.OH; W = bk->c1.OW; C = OC;
		}
	}
	m->fH = H; m->fW = W; m->fC = C;
	/* sizes, then one allocation each for parameters, gradients, buffers, statistics */
	size_t n[2] = { 0, 0 };
	m->maxact = (size_t)s->h * s->w * 3;
	each_cbn(m, count_fn, n);
	if ((size_t)m->pH * m->pW * m->pC > m->maxact) m->maxact = (size_t)m->pH * m->pW * m->pC;
	m->nparams = n[0];
	m->nbuffers = n[1];
	m->params = xcalloc(n[0], sizeof(float));
	m->grads = xcalloc(n[0], sizeof(float));
	m->buffers = xcalloc(n[1], sizeof(float));
	m->stats = xcalloc(n[1], sizeof(float));
	Carve cv = { m->params, m->grads, m->buffers, m->stats };
	each_cbn(m, carve_fn, &cv);
	each_cbn(m, buffers_fn, NULL);   /* buffers listed after all parameters */
	ASSERT(cv.p == m->params + m->nparams);
	InitCtx ic;
	rng_seed2(&ic.rng, seed, 0);
	each_cbn(m, init_fn, &ic);
	return m;
}

void resnet_free(ResNet *m)
{
	if (!m) return;
	free(m->params); free(m->grads); free(m->buffers); free(m->stats);
	free(m->arena); free(m->pool_idx); free(m->col);
	for (int i = 0; i < 4; i++) free(m->buf[i]);
	free(m->eval_out);
	free(m->tensors);
	free(m->blk);
	free(m);
}

const ResNetSpec *resnet_spec(const ResNet *m) { return &m->spec; }
int resnet_in(const ResNet *m) { return m->spec.h * m->spec.w * 3; }
int resnet_out(const ResNet *m) { return m->fC; }
size_t resnet_nparams(const ResNet *m) { return m->nparams; }
float *resnet_params(ResNet *m) { return m->params; }
float *resnet_grads(ResNet *m) { return m->grads; }
int resnet_ntensors(const ResNet *m) { return m->ntensors; }
int resnet_can_backward(const ResNet *m) { return m->can_back; }
void resnet_zero_grad(ResNet *m) { memset(m->grads, 0, m->nparams * sizeof(float)); }

const char *resnet_tensor(ResNet *m, int i, int *ndim, int64_t shape[4], float **data)
{
	if (i < 0 || i >= m->ntensors) return NULL;
	RTensor *t = &m->tensors[i];
	if (ndim) *ndim = t->ndim;
	if (shape) memcpy(shape, t->shape, sizeof t->shape);
	if (data) *data = t->data;
	return t->name;
}

float *resnet_tensor_grad(ResNet *m, int i)
{
	return i < 0 || i >= m->ntensors ? NULL : m->tensors[i].grad;
}

int resnet_find_tensor(const ResNet *m, const char *name)
{
	for (int i = 0; i < m->ntensors; i++)
		if (strcmp(m->tensors[i].name, name) == 0) return i;
	return -1;
}

double resnet_flops(const ResNet *m)
{
	double f = 0;
	each_cbn((ResNet *)m, flops_fn, &f);
	return f;
}

/* grow the arena to B images and carve it into the activation caches */
static void reserve(ResNet *m, int B)
{
	if (B <= m->cap) return;
	int cap = m->cap ? m->cap : 1;
	while (cap < B) cap *= 2;
	const ResNetSpec *s = &m->spec;
	size_t per = (size_t)s->h * s->w * 3;                        /* xn */
	per += 2 * (size_t)m->stem.OH * m->stem.OW * m->stem.OC;      /* stem a, y */
	if (m->pool) per += (size_t)m->pH * m->pW * m->pC;
	for (int k = 0; k < m->nblocks; k++) {
		BasicBlock *bk = &m->blk[k];
		size_t a1 = (size_t)bk->c1.OH * bk->c1.OW * bk->c1.OC, a2 = (size_t)bk->c2.OH * bk->c2.OW * bk->c2.OC;
		per += 2 * a1 + 2 * a2;                                    /* c1 a, y; c2 a; out */
		if (bk->has_down) per += 2 * (size_t)bk->down.OH * bk->down.OW * bk->down.OC;
	}
	per += (size_t)m->fC;                                         /* z */
	free(m->arena);
	free(m->pool_idx);
	free(m->col);
	m->arena = xmallocarray(per * (size_t)cap, sizeof(float));
	m->pool_idx = m->pool ? xmallocarray((size_t)cap * m->pH * m->pW * m->pC, sizeof(int32_t)) : NULL;
	m->col = xmallocarray((size_t)cap * (m->maxcol ? m->maxcol : 1), sizeof(float));
	for (int i = 0; i < 4; i++) {
		free(m->buf[i]);
		m->buf[i] = xmallocarray((size_t)cap * m->maxact, sizeof(float));
	}
	float *a = m->arena;
#define TAKE(n) (a += (size_t)cap * (n), a - (size_t)cap * (n))
	m->xn = TAKE((size_t)s->h * s->w * 3);
	m->stem.a = TAKE((size_t)m->stem.OH * m->stem.OW * m->stem.OC);
	m->stem.y = TAKE((size_t)m->stem.OH * m->stem.OW * m->stem.OC);
	m->pool_out = m->pool ? TAKE((size_t)m->pH * m->pW * m->pC) : NULL;
	for (int k = 0; k < m->nblocks; k++) {
		BasicBlock *bk = &m->blk[k];
		size_t a1 = (size_t)bk->c1.OH * bk->c1.OW * bk->c1.OC, a2 = (size_t)bk->c2.OH * bk->c2.OW * bk->c2.OC;
		bk->c1.a = TAKE(a1);
		bk->c1.y = TAKE(a1);
		bk->c2.a = TAKE(a2);
		bk->out = bk->c2.y = TAKE(a2);
		if (bk->has_down) {
			size_t ad = (size_t)bk->down.OH * bk->down.OW * bk->down.OC;
			bk->down.a = TAKE(ad);
			bk->down.y = TAKE(ad);
		}
	}
	m->z = TAKE((size_t)m->fC);
#undef TAKE
	ASSERT(a == m->arena + per * (size_t)cap);
	m->cap = cap;
}

static void cbn_forward(ResNet *m, Cbn *c, const float *inp, int B, int train)
{
	int N = B * c->OH * c->OW;
	c->inp = inp;
	conv2d_forward(c->a, m->col, inp, c->w, NULL, B, c->H, c->W, c->C, c->OC, c->K, c->stride, c->pad);
	batchnorm_forward(c->y, c->mean, c->rstd, c->a, c->gamma, c->beta, c->rmean, c->rvar,
	                  m->spec.bn_momentum, m->spec.eps, train, N, c->OC);
	if (c->relu) relu_forward(c->y, c->y, (long)N * c->OC);
}

/* dy (B,OH,OW,OC) is the gradient of c->y (masked in place by the ReLU);
 * da: scratch; dinp (+=) or NULL */
static void cbn_backward(ResNet *m, Cbn *c, float *dy, float *da, float *dinp, int B)
{
	int N = B * c->OH * c->OW;
	long n = (long)N * c->OC;
	if (c->relu) {
		/* in the forward pass this was: y = relu(bn(a)); y > 0 exactly where bn(a) > 0 */
		for (long i = 0; i < n; i++) if (!(c->y[i] > 0.0f)) dy[i] = 0.0f;
	}
	memset(da, 0, sizeof(float) * (size_t)n);
	if (m->train)
		batchnorm_backward(da, c->dgamma, c->dbeta, dy, c->a, c->mean, c->rstd, c->gamma, N, c->OC);
	else
		batchnorm_eval_backward(da, c->dgamma, c->dbeta, dy, c->a, c->mean, c->rstd, c->gamma, N, c->OC);
	conv2d_backward(dinp, c->dw, NULL, m->col, da, c->inp, c->w, B, c->H, c->W, c->C, c->OC, c->K, c->stride, c->pad);
}

static const float *forward_chunk(ResNet *m, const float *x, int B, int train)
{
	reserve(m, B);
	const ResNetSpec *s = &m->spec;
	/* input normalisation: xn = (x - mean_c) / std_c, x in [0,1] (B,h,w,3) */
	size_t npx = (size_t)B * s->h * s->w;
	float is[3] = { 1.0f / s->std[0], 1.0f / s->std[1], 1.0f / s->std[2] };
	for (size_t i = 0; i < npx; i++)
		for (int c = 0; c < 3; c++) m->xn[i * 3 + c] = (x[i * 3 + c] - s->mean[c]) * is[c];
	cbn_forward(m, &m->stem, m->xn, B, train);
	const float *h = m->stem.y;
	if (m->pool) {
		maxpool2d_forward(m->pool_out, m->pool_idx, h, B, m->stem.OH, m->stem.OW, m->pC, 3, 2, 1);
		h = m->pool_out;
	}
	for (int k = 0; k < m->nblocks; k++) {
		BasicBlock *bk = &m->blk[k];
		cbn_forward(m, &bk->c1, h, B, train);
		cbn_forward(m, &bk->c2, bk->c1.y, B, train);   /* c2.y is bk->out */
		long n = (long)B * bk->c2.OH * bk->c2.OW * bk->c2.OC;
		const float *sc = h;
		if (bk->has_down) {
			cbn_forward(m, &bk->down, h, B, train);
			sc = bk->down.y;
		}
		for (long i = 0; i < n; i++) bk->out[i] += sc[i];
		relu_forward(bk->out, bk->out, n);
		h = bk->out;
	}
	global_avgpool_forward(m->z, h, B, m->fH * m->fW, m->fC);
	return m->z;
}

const float *resnet_forward(ResNet *m, const float *x, int B, int train)
{
	ASSERT(B >= 1);
	m->train = train;
	if (train || B <= RESNET_EVAL_CHUNK) {
		m->B = B;
		m->can_back = 1;
		return forward_chunk(m, x, B, train);
	}
	/* evaluation of a large batch: chunk by chunk, no backward afterwards */
	if (B > m->eval_cap) {
		free(m->eval_out);
		m->eval_out = xmallocarray((size_t)B * m->fC, sizeof(float));
		m->eval_cap = B;
	}
	int in = resnet_in(m);
	for (int s = 0; s < B; s += RESNET_EVAL_CHUNK) {
		int n = B - s < RESNET_EVAL_CHUNK ? B - s : RESNET_EVAL_CHUNK;
		const float *z = forward_chunk(m, x + (size_t)s * in, n, 0);
		memcpy(m->eval_out + (size_t)s * m->fC, z, sizeof(float) * (size_t)n * m->fC);
	}
	m->B = 0;
	m->can_back = 0;
	return m->eval_out;
}

void resnet_backward(ResNet *m, const float *dout, float *dx)
{
	ASSERT(m->can_back && m->B > 0);
	int B = m->B;
	float *P = m->buf[0], *Q = m->buf[1], *R = m->buf[2], *S = m->buf[3];
	/* in the forward pass this was: z = mean over the last feature map */
	memset(P, 0, sizeof(float) * (size_t)B * m->fH * m->fW * m->fC);
	global_avgpool_backward(P, dout, B, m->fH * m->fW, m->fC);
	for (int k = m->nblocks - 1; k >= 0; k--) {
		BasicBlock *bk = &m->blk[k];
		/* in the forward pass this was: out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) */
		long n = (long)B * bk->c2.OH * bk->c2.OW * bk->c2.OC;
		for (long i = 0; i < n; i++) if (!(bk->out[i] > 0.0f)) P[i] = 0.0f;
		long n1 = (long)B * bk->c1.OH * bk->c1.OW * bk->c1.OC;
		memset(Q, 0, sizeof(float) * (size_t)n1);
		cbn_backward(m, &bk->c2, P, R, Q, B);                 /* P: d(bn2 out), no ReLU: kept */
		long nin = (long)B * bk->c1.H * bk->c1.W * bk->c1.C;
		memset(S, 0, sizeof(float) * (size_t)nin);
		cbn_backward(m, &bk->c1, Q, R, S, B);
		if (bk->has_down) cbn_backward(m, &bk->down, P, R, S, B);
		else for (long i = 0; i < nin; i++) S[i] += P[i];
		float *t = P; P = S; S = t;
	}
	if (m->pool) {
		/* in the forward pass this was: pool_out = maxpool(stem.y) */
		long n = (long)B * m->stem.OH * m->stem.OW * m->stem.OC;
		memset(Q, 0, sizeof(float) * (size_t)n);
		maxpool2d_backward(Q, P, m->pool_idx, (long)B * m->pH * m->pW * m->pC);
		float *t = P; P = Q; Q = t;
	}
	const ResNetSpec *s = &m->spec;
	size_t npx = (size_t)B * s->h * s->w;
	if (dx) memset(dx, 0, sizeof(float) * npx * 3);
	cbn_backward(m, &m->stem, P, R, dx, B);
	if (dx) {
		/* in the forward pass this was: xn = (x - mean_c) / std_c */
		float is[3] = { 1.0f / s->std[0], 1.0f / s->std[1], 1.0f / s->std[2] };
		for (size_t i = 0; i < npx; i++)
			for (int c = 0; c < 3; c++) dx[i * 3 + c] *= is[c];
	}
}
