/* mlp.c: the multilayer perceptron of nn.h, used by every training stage (encoder,
 * classifier head, domain discriminator / critic), and the WGAN-GP gradient penalty
 * by exact double backpropagation through a critic MLP.
 *
 * Memory, as in llm.c: all parameters live in one allocation carved into named
 * tensors through a table of sizes; the gradients in a second allocation with the
 * same layout; the buffers (BatchNorm running statistics) in a third. Activations
 * live in an arena that grows with the batch size; no allocation per element. */
#include "nn.h"
#include "blas.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *act_names[ACT_COUNT] = { "relu", "leaky_relu", "tanh" };
const char *norm_names[NORM_COUNT] = { "none", "batch", "layer" };

typedef struct {
	char name[32];
	int ndim;
	int64_t shape[2];
	float *data;
	float *grad;   /* NULL for buffers */
} MlpTensor;

/* one layer: Linear, then (unless it is the head) activation -> norm -> dropout */
typedef struct {
	int in, out, plain;             /* plain: the head Linear, nothing after it */
	float *w, *b, *gamma, *beta;    /* parameters */
	float *dw, *db, *dgamma, *dbeta;
	float *rmean, *rvar;            /* BatchNorm buffers */
	/* activations of the last forward (B rows), in the arena */
	const float *inp;               /* the layer's input */
	float *pre, *act, *nrm, *mask, *drop, *mean, *rstd;
	float *outp;                    /* the layer's output (one of the above) */
} Layer;

struct Mlp {
	MlpSpec spec;
	Layer layers[MLP_MAXLAYERS];
	int ntensors;
	MlpTensor tensors[MLP_MAXLAYERS * 6];
	size_t nparams, nbuffers;
	float *params, *grads, *buffers;
	Rng rng;                        /* dropout */
	/* activation arena */
	int cap;                        /* rows the arena holds */
	float *arena;
	float *xcopy;                   /* input of the last forward (B,in) */
	float *scratch;                 /* two (cap, maxw) buffers for backward */
	int maxw;
	int B, train;                   /* of the last forward; B = 0: none yet */
	/* gradient-penalty arena */
	int gp_cap;
	float *gp;
};

void mlp_spec_init(MlpSpec *s)
{
	memset(s, 0, sizeof *s);
	s->act = ACT_RELU;
	s->slope = 0.2f;
	s->norm = NORM_NONE;
	s->dropout = 0.0f;
	s->head = 0;
	s->bn_momentum = 0.1f;
	s->eps = 1e-5f;
}

static void add_tensor(Mlp *m, const char *name, int ndim, int64_t d0, int64_t d1, float *data, float *grad)
{
	ASSERT(m->ntensors < (int)(sizeof m->tensors / sizeof m->tensors[0]));
	MlpTensor *t = &m->tensors[m->ntensors++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = ndim > 1 ? d1 : 0;
	t->data = data;
	t->grad = grad;
}

Mlp *mlp_new(const MlpSpec *spec, uint64_t seed)
{
	ASSERT(spec->in > 0);
	ASSERT(spec->nlayers >= 1 && spec->nlayers <= MLP_MAXLAYERS);
	ASSERT((unsigned)spec->act < ACT_COUNT && (unsigned)spec->norm < NORM_COUNT);
	ASSERT(spec->dropout >= 0.0f && spec->dropout < 1.0f);
	Mlp *m = xcalloc(1, sizeof *m);
	m->spec = *spec;
	if (!(m->spec.eps > 0.0f)) m->spec.eps = 1e-5f;
	if (!(m->spec.bn_momentum > 0.0f)) m->spec.bn_momentum = 0.1f;
	int L = spec->nlayers;
	/* the table of sizes: first count, then carve */
	size_t np = 0, nb = 0;
	int in = spec->in, maxw = spec->in;
	for (int l = 0; l < L; l++) {
		int out = spec->widths[l];
		ASSERT(out > 0);
		Layer *y = &m->layers[l];
		y->in = in;
		y->out = out;
		y->plain = spec->head && l == L - 1;
		np += (size_t)out * in + out;
		if (!y->plain && spec->norm != NORM_NONE) np += 2 * (size_t)out;
		if (!y->plain && spec->norm == NORM_BATCH) nb += 2 * (size_t)out;
		if (out > maxw) maxw = out;
		in = out;
	}
	m->maxw = maxw;
	m->nparams = np;
	m->nbuffers = nb;
	m->params = nn_alloc(np, sizeof(float), 1);
	m->grads = nn_alloc(np, sizeof(float), 1);
	m->buffers = xcalloc(nb ? nb : 1, sizeof(float));
	float *p = m->params, *g = m->grads, *bu = m->buffers;
	char name[32];
	for (int l = 0; l < L; l++) {
		Layer *y = &m->layers[l];
		y->w = p; y->dw = g; p += (size_t)y->out * y->in; g += (size_t)y->out * y->in;
		snprintf(name, sizeof name, "l%d.w", l);
		add_tensor(m, name, 2, y->out, y->in, y->w, y->dw);
		y->b = p; y->db = g; p += y->out; g += y->out;
		snprintf(name, sizeof name, "l%d.b", l);
		add_tensor(m, name, 1, y->out, 0, y->b, y->db);
		if (!y->plain && spec->norm != NORM_NONE) {
			const char *nn = spec->norm == NORM_BATCH ? "bn" : "ln";
			y->gamma = p; y->dgamma = g; p += y->out; g += y->out;
			snprintf(name, sizeof name, "l%d.%s.gamma", l, nn);
			add_tensor(m, name, 1, y->out, 0, y->gamma, y->dgamma);
			y->beta = p; y->dbeta = g; p += y->out; g += y->out;
			snprintf(name, sizeof name, "l%d.%s.beta", l, nn);
			add_tensor(m, name, 1, y->out, 0, y->beta, y->dbeta);
			for (int c = 0; c < y->out; c++) y->gamma[c] = 1.0f;
		}
	}
	/* buffers after all parameters, so mlp_tensor lists parameters first */
	for (int l = 0; l < L; l++) {
		Layer *y = &m->layers[l];
		if (y->plain || spec->norm != NORM_BATCH) continue;
		y->rmean = bu; bu += y->out;
		y->rvar = bu; bu += y->out;
		for (int c = 0; c < y->out; c++) y->rvar[c] = 1.0f;
		snprintf(name, sizeof name, "l%d.bn.running_mean", l);
		add_tensor(m, name, 1, y->out, 0, y->rmean, NULL);
		snprintf(name, sizeof name, "l%d.bn.running_var", l);
		add_tensor(m, name, 1, y->out, 0, y->rvar, NULL);
	}
	/* PyTorch's default Linear init: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in))
	 * for the weight, the same bound for the bias. */
	Rng init;
	rng_seed2(&init, seed, 0);
	for (int l = 0; l < L; l++) {
		Layer *y = &m->layers[l];
		float bound = 1.0f / sqrtf((float)y->in);
		for (size_t i = 0; i < (size_t)y->out * y->in; i++)
			y->w[i] = (float)((2.0 * rng_uniform(&init) - 1.0) * bound);
		for (int i = 0; i < y->out; i++)
			y->b[i] = (float)((2.0 * rng_uniform(&init) - 1.0) * bound);
	}
	rng_seed2(&m->rng, seed, 1);
	return m;
}

void mlp_free(Mlp *m)
{
	if (!m) return;
	free(m->params);
	free(m->grads);
	free(m->buffers);
	free(m->arena);
	free(m->scratch);
	free(m->gp);
	free(m);
}

const MlpSpec *mlp_spec(const Mlp *m) { return &m->spec; }
int mlp_out(const Mlp *m) { return m->layers[m->spec.nlayers - 1].out; }
size_t mlp_nparams(const Mlp *m) { return m->nparams; }
float *mlp_params(Mlp *m) { return m->params; }
float *mlp_grads(Mlp *m) { return m->grads; }
int mlp_ntensors(const Mlp *m) { return m->ntensors; }
void mlp_set_seed(Mlp *m, uint64_t seed) { rng_seed2(&m->rng, seed, 1); }
Rng *mlp_rng(Mlp *m) { return &m->rng; }

const char *mlp_tensor(Mlp *m, int i, int *ndim, int64_t shape[2], float **data)
{
	if (i < 0 || i >= m->ntensors) return NULL;
	MlpTensor *t = &m->tensors[i];
	if (ndim) *ndim = t->ndim;
	if (shape) { shape[0] = t->shape[0]; shape[1] = t->shape[1]; }
	if (data) *data = t->data;
	return t->name;
}

float *mlp_tensor_grad(Mlp *m, int i)
{
	if (i < 0 || i >= m->ntensors) return NULL;
	return m->tensors[i].grad;
}

int mlp_find_tensor(const Mlp *m, const char *name)
{
	for (int i = 0; i < m->ntensors; i++)
		if (strcmp(m->tensors[i].name, name) == 0) return i;
	return -1;
}

void mlp_zero_grad(Mlp *m)
{
	memset(m->grads, 0, (m->nparams ? m->nparams : 1) * sizeof(float));
}

/* grow the activation arena to hold B rows and carve it into the layer caches */
static void reserve(Mlp *m, int B)
{
	if (B <= m->cap) return;
	int cap = m->cap ? m->cap : 1;
	while (cap < B) cap *= 2;
	const MlpSpec *s = &m->spec;
	size_t total = (size_t)cap * s->in;
	for (int l = 0; l < s->nlayers; l++) {
		Layer *y = &m->layers[l];
		size_t rows = (size_t)cap * y->out;
		total += rows;                                  /* pre */
		if (!y->plain) {
			total += rows;                              /* act */
			if (s->norm != NORM_NONE) total += rows + 2 * (size_t)(cap > y->out ? cap : y->out);
			if (s->dropout > 0.0f) total += 2 * rows;   /* mask, drop */
		}
	}
	free(m->arena);
	free(m->scratch);
	m->arena = nn_alloc(total, sizeof(float), 0);
	m->scratch = nn_alloc((size_t)2 * cap * m->maxw, sizeof(float), 0);
	float *a = m->arena;
	m->xcopy = a; a += (size_t)cap * s->in;
	for (int l = 0; l < s->nlayers; l++) {
		Layer *y = &m->layers[l];
		size_t rows = (size_t)cap * y->out;
		y->pre = a; a += rows;
		y->act = y->nrm = y->mask = y->drop = y->mean = y->rstd = NULL;
		if (!y->plain) {
			y->act = a; a += rows;
			if (s->norm != NORM_NONE) {
				size_t st = (size_t)(cap > y->out ? cap : y->out);
				y->nrm = a; a += rows;
				y->mean = a; a += st;
				y->rstd = a; a += st;
			}
			if (s->dropout > 0.0f) {
				y->mask = a; a += rows;
				y->drop = a; a += rows;
			}
		}
	}
	m->cap = cap;
}

static const float *forward_xcopy(Mlp *m, int B, int train);

/* The copy of a batch into the input cache (20 MiB for 256 rows of 20,000 genes), in
 * pieces of 1 MiB on the pool's threads: memory-bound, it goes faster on two cores. */
#define COPY_PIECE ((size_t)1 << 20)
typedef struct {
	const float *const *part;
	const int *rows;
	int nparts;
	size_t rowbytes;
	char *dst;
} Copy;

static void copy_piece(void *ctx, int k)
{
	const Copy *c = ctx;
	size_t lo = (size_t)k * COPY_PIECE, hi = lo + COPY_PIECE, a = 0;
	for (int i = 0; i < c->nparts && a < hi; i++) {
		size_t b = a + (size_t)c->rows[i] * c->rowbytes;
		if (lo < b) {
			size_t s = lo > a ? lo : a, e = hi < b ? hi : b;
			memcpy(c->dst + s, (const char *)c->part[i] + (s - a), e - s);
		}
		a = b;
	}
}

static void copy_parallel(const Copy *c)
{
	size_t total = 0;
	for (int i = 0; i < c->nparts; i++) total += (size_t)c->rows[i] * c->rowbytes;
	blas_parallel((int)((total + COPY_PIECE - 1) / COPY_PIECE), copy_piece, (void *)c);
}

const float *mlp_forward(Mlp *m, const float *x, int B, int train)
{
	ASSERT(B >= 1);
	reserve(m, B);
	Copy c = { &x, &B, 1, (size_t)m->spec.in * sizeof(float), (char *)m->xcopy };
	copy_parallel(&c);
	return forward_xcopy(m, B, train);
}

const float *mlp_forward_parts(Mlp *m, int nparts, const float *const *part, const int *rows, int train)
{
	int B = 0;
	for (int i = 0; i < nparts; i++) B += rows[i];
	ASSERT(B >= 1);
	reserve(m, B);
	/* the input's one copy (kept for backward): the blocks may lie anywhere, unaligned */
	Copy c = { part, rows, nparts, (size_t)m->spec.in * sizeof(float), (char *)m->xcopy };
	copy_parallel(&c);
	return forward_xcopy(m, B, train);
}

/* the forward pass of the B rows in m->xcopy */
static const float *forward_xcopy(Mlp *m, int B, int train)
{
	const MlpSpec *s = &m->spec;
	m->B = B;
	m->train = train;
	const float *h = m->xcopy;
	for (int l = 0; l < s->nlayers; l++) {
		Layer *y = &m->layers[l];
		long n = (long)B * y->out;
		y->inp = h;
		linear_forward(y->pre, h, y->w, y->b, B, y->in, y->out);
		y->outp = y->pre;
		if (!y->plain) {
			switch (s->act) {
			case ACT_RELU: relu_forward(y->act, y->pre, n); break;
			case ACT_LEAKY_RELU: leaky_relu_forward(y->act, y->pre, s->slope, n); break;
			case ACT_TANH: tanh_forward(y->act, y->pre, n); break;
			default: ASSERT(0);
			}
			y->outp = y->act;
			if (s->norm == NORM_BATCH) {
				batchnorm_forward(y->nrm, y->mean, y->rstd, y->act, y->gamma, y->beta, y->rmean, y->rvar,
				                  s->bn_momentum, s->eps, train, B, y->out);
				y->outp = y->nrm;
			} else if (s->norm == NORM_LAYER) {
				layernorm_forward(y->nrm, y->mean, y->rstd, y->act, y->gamma, y->beta, s->eps, B, y->out);
				y->outp = y->nrm;
			}
			if (train && s->dropout > 0.0f) {
				dropout_forward(y->drop, y->mask, y->outp, s->dropout, &m->rng, n);
				y->outp = y->drop;
			}
		}
		h = y->outp;
	}
	return h;
}

/* BatchNorm backward in inference mode: the statistics are constants,
 * out = gamma * (x - running_mean) * rstd + beta, so dx = gamma * rstd * dout */
static void batchnorm_backward_eval(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                                    const float *mean, const float *rstd, const float *gamma, int B, int C)
{
	for (int i = 0; i < B; i++) {
		const float *x = inp + (size_t)i * C, *d = dout + (size_t)i * C;
		float *dx = dinp + (size_t)i * C;
		for (int c = 0; c < C; c++) {
			dgamma[c] += d[c] * (x[c] - mean[c]) * rstd[c];
			dbeta[c] += d[c];
			dx[c] += gamma[c] * rstd[c] * d[c];
		}
	}
}

/* the ping-pong buffer that is not d, zeroed for cnt floats (backward functions add) */
static float *next_buf(float *P, float *Q, const float *d, long cnt)
{
	float *nx = (d == P) ? Q : P;
	memset(nx, 0, (size_t)cnt * sizeof(float));
	return nx;
}

/* The first layer's weight gradient (out x in, the encoder's 20 MiB) and the optimiser
 * step together: the columns of dW in gemm's bands (about 1024 wide), each computed and at once
 * used by the step while it is in cache (instead of written out whole, then read back
 * by the step), and the rest of the parameters as one more piece; the pieces are taken
 * by the pool's threads (blas_parallel), so a memory-bound step on one thread overlaps
 * a product on the other. Each element goes through the same arithmetic as
 * linear_backward then optim_step_zero. */
typedef struct {
	Mlp *m;
	const Layer *y;
	const float *d;
	int B, nbands, width;
	const OptimStep *st;
} Fused;

static void fused_piece(void *ctx, int c)
{
	const Fused *f = ctx;
	const Layer *y = f->y;
	Mlp *m = f->m;
	if (c == f->nbands) {
		optim_step_range(f->st, m->params, m->grads, (size_t)y->out * y->in, m->nparams);
		return;
	}
	int lo = c * f->width, hi = lo + f->width < y->in ? lo + f->width : y->in;
	/* dw[:, lo:hi] += dout^T (out,B) @ inp[:, lo:hi] (B,hi-lo) */
	gemm1(1, 0, y->out, hi - lo, f->B, 1.0f, f->d, y->out, y->inp + lo, y->in, 1.0f, y->dw + lo, y->in);
	for (int o = 0; o < y->out; o++) {
		size_t base = (size_t)o * y->in;
		optim_step_range(f->st, m->params, m->grads, base + lo, base + hi);
	}
}

static void backward(Mlp *m, const float *dout, float *dx, Optim *opt, float lr);

void mlp_backward(Mlp *m, const float *dout, float *dx)
{
	backward(m, dout, dx, NULL, 0.0f);
}

void mlp_backward_step(Mlp *m, const float *dout, float *dx, Optim *opt, float lr)
{
	const Layer *y = &m->layers[0];
	if (dx || opt->n != m->nparams || y->w != m->params || (size_t)y->in * y->out < ((size_t)1 << 20)) {
		backward(m, dout, dx, NULL, 0.0f);
		optim_step_zero(opt, m->params, m->grads, lr);
		return;
	}
	backward(m, dout, NULL, opt, lr);
}

static void backward(Mlp *m, const float *dout, float *dx, Optim *opt, float lr)
{
	ASSERT(m->B > 0);
	const MlpSpec *s = &m->spec;
	int B = m->B;
	float *P = m->scratch, *Q = m->scratch + (size_t)m->cap * m->maxw;
	const float *d = dout;
	for (int l = s->nlayers - 1; l >= 0; l--) {
		Layer *y = &m->layers[l];
		long n = (long)B * y->out;
		if (!y->plain) {
			if (m->train && s->dropout > 0.0f) {
				float *nx = next_buf(P, Q, d, n);
				dropout_backward(nx, d, y->mask, n);
				d = nx;
			}
			if (s->norm == NORM_BATCH) {
				float *nx = next_buf(P, Q, d, n);
				if (m->train)
					batchnorm_backward(nx, y->dgamma, y->dbeta, d, y->act, y->mean, y->rstd, y->gamma, B, y->out);
				else
					batchnorm_backward_eval(nx, y->dgamma, y->dbeta, d, y->act, y->mean, y->rstd, y->gamma, B, y->out);
				d = nx;
			} else if (s->norm == NORM_LAYER) {
				float *nx = next_buf(P, Q, d, n);
				layernorm_backward(nx, y->dgamma, y->dbeta, d, y->act, y->mean, y->rstd, y->gamma, B, y->out);
				d = nx;
			}
			float *nx = next_buf(P, Q, d, n);
			switch (s->act) {
			case ACT_RELU: relu_backward(nx, d, y->pre, n); break;
			case ACT_LEAKY_RELU: leaky_relu_backward(nx, d, y->pre, s->slope, n); break;
			case ACT_TANH: tanh_backward(nx, d, y->act, n); break;
			default: ASSERT(0);
			}
			d = nx;
		}
		float *dinp;
		if (l > 0) {
			dinp = next_buf(P, Q, d, (long)B * y->in);
		} else {
			dinp = dx;
			if (dx) memset(dx, 0, (size_t)B * y->in * sizeof(float));
		}
		if (l == 0 && opt) {
			/* the biases' gradient first: every gradient but dW is then final */
			linear_backward(NULL, NULL, y->db, d, y->inp, y->w, B, y->in, y->out);
			OptimStep st;
			optim_step_begin(opt, lr, &st);
			/* the bands of gemm's (blas_band), so the bits are those of the unfused path */
			int wb = blas_band(y->in);
			if (wb == 0) wb = y->in;
			int nb = (y->in + wb - 1) / wb;
			Fused f = { m, y, d, B, nb, wb, &st };
			blas_parallel(nb + 1, fused_piece, &f);
			break;
		}
		linear_backward(dinp, y->dw, y->db, d, y->inp, y->w, B, y->in, y->out);
		d = dinp;
	}
}

/* ---- WGAN-GP gradient penalty ----
 *
 * The critic is h_0 = xhat; z_l = h_l W_l^T + b_l; h_{l+1} = s(z_l) for the hidden
 * layers; D = z_{L-1} (one column). Its input gradient, per row, is the backward pass
 * started from dD = 1:
 *   delta_{L-1} = 1;  u_l = delta_l W_l;  delta_{l-1} = s'(z_{l-1}) * u_l;  g = u_0
 * With the masks s'(z) held fixed (ReLU: [z>0]; LeakyReLU: [z>0] + slope [z<=0]),
 * g = 1^T W_{L-1} M_{L-2} W_{L-2} ... M_0 W_0 is multilinear in the weights.
 * The penalty is P = weight/B sum_b (||g_b|| - 1)^2, so
 *   gbar_b = dP/dg_b = weight/B * 2 (||g_b|| - 1) g_b / ||g_b||   (0 where ||g_b|| = 0,
 * as PyTorch's norm backward). Differentiating the backward pass (double backprop):
 *   u_l = delta_l W_l       ->  dW_l += delta_l^T ubar_l,   deltabar_l = ubar_l W_l^T
 *   delta_l = s'(z_l) * u_{l+1}  ->  ubar_{l+1} = s'(z_l) * deltabar_l
 * walking l = 0 .. L-1 (the reverse of the backward pass). The biases enter g only
 * through the masks s'(z_l), which are piecewise constant in z: their derivative is
 * zero almost everywhere, so dP/db_l = 0. The same holds for the weights' effect
 * through the masks, which leaves dW_l = delta_l^T ubar_l exact almost everywhere. */

static void gp_reserve(Mlp *m, int B)
{
	if (B <= m->gp_cap) return;
	int cap = m->gp_cap ? m->gp_cap : 1;
	while (cap < B) cap *= 2;
	size_t total = 2 * (size_t)cap * m->maxw;   /* two ping-pong buffers */
	for (int l = 0; l < m->spec.nlayers; l++) total += 2 * (size_t)cap * m->layers[l].out;  /* z_l, delta_l */
	free(m->gp);
	m->gp = xmallocarray(total, sizeof(float));
	m->gp_cap = cap;
}

static inline float act_deriv(float z, int leaky, float slope)
{
	return z > 0.0f ? 1.0f : (leaky ? slope : 0.0f);
}

float mlp_gradient_penalty(Mlp *m, const float *xhat, int B, float weight)
{
	const MlpSpec *s = &m->spec;
	int L = s->nlayers;
	if (s->norm != NORM_NONE || s->dropout != 0.0f || !s->head || mlp_out(m) != 1 ||
	    (s->act != ACT_RELU && s->act != ACT_LEAKY_RELU) || B < 1)
		return NAN;
	gp_reserve(m, B);
	int leaky = s->act == ACT_LEAKY_RELU;
	float slope = s->slope;
	size_t cw = (size_t)m->gp_cap * m->maxw;
	float *P = m->gp, *Q = m->gp + cw;
	float *z[MLP_MAXLAYERS], *delta[MLP_MAXLAYERS];
	float *a = m->gp + 2 * cw;
	for (int l = 0; l < L; l++) {
		size_t rows = (size_t)m->gp_cap * m->layers[l].out;
		z[l] = a; a += rows;
		delta[l] = a; a += rows;
	}
	/* forward: z_l = h_l W_l^T + b_l, h_{l+1} = s(z_l) */
	const float *h = xhat;
	for (int l = 0; l < L; l++) {
		Layer *y = &m->layers[l];
		linear_forward(z[l], h, y->w, y->b, B, y->in, y->out);
		if (l < L - 1) {
			float *hn = (h == P) ? Q : P;
			long n = (long)B * y->out;
			if (leaky) leaky_relu_forward(hn, z[l], slope, n);
			else relu_forward(hn, z[l], n);
			h = hn;
		}
	}
	/* backward from dD = 1: delta_{L-1} = 1; u_l = delta_l W_l; delta_{l-1} = s'(z_{l-1}) * u_l */
	for (int i = 0; i < B; i++) delta[L - 1][i] = 1.0f;
	float *u = P;
	for (int l = L - 1; l >= 0; l--) {
		Layer *y = &m->layers[l];
		u = (l % 2) ? Q : P;
		gemm(0, 0, B, y->in, y->out, 1.0f, delta[l], y->out, y->w, y->in, 0.0f, u, y->in);
		if (l > 0) {
			float *dp = delta[l - 1], *zp = z[l - 1];
			long n = (long)B * y->in;
			for (long j = 0; j < n; j++) dp[j] = act_deriv(zp[j], leaky, slope) * u[j];
		}
	}
	/* u = g (B,in). penalty and gbar, in place: u becomes ubar_0 */
	double pen = 0.0;
	int C = s->in;
	for (int i = 0; i < B; i++) {
		float *g = u + (size_t)i * C;
		double ss = 0.0;
		for (int c = 0; c < C; c++) ss += (double)g[c] * g[c];
		double nrm = sqrt(ss);
		pen += (nrm - 1.0) * (nrm - 1.0);
		float k = nrm > 0.0 ? (float)((double)weight / B * 2.0 * (nrm - 1.0) / nrm) : 0.0f;
		for (int c = 0; c < C; c++) g[c] *= k;
	}
	/* double backprop: dW_l += delta_l^T ubar_l; deltabar_l = ubar_l W_l^T; ubar_{l+1} = s'(z_l) * deltabar_l */
	float *ubar = u;
	for (int l = 0; l < L; l++) {
		Layer *y = &m->layers[l];
		gemm(1, 0, y->out, y->in, B, 1.0f, delta[l], y->out, ubar, y->in, 1.0f, y->dw, y->in);
		if (l < L - 1) {
			float *nb = (ubar == P) ? Q : P;
			gemm(0, 1, B, y->out, y->in, 1.0f, ubar, y->in, y->w, y->in, 0.0f, nb, y->out);
			long n = (long)B * y->out;
			const float *zl = z[l];
			for (long j = 0; j < n; j++) nb[j] *= act_deriv(zl[j], leaky, slope);
			ubar = nb;
		}
	}
	return (float)((double)weight * pen / B);
}
