/* optim.c: optimisers (Adam, AdamW, SGD with momentum; PyTorch semantics) and the
 * schedules of Ganin & Lempitsky (2016). One flat parameter vector, one gradient vector. */
#include "nn.h"
#include "blas.h"
#include "util.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *opt_names[OPT_COUNT] = { "adam", "adamw", "sgd" };

void optim_init(Optim *o, OptKind kind, size_t n)
{
	o->kind = kind;
	o->beta1 = 0.9f;
	o->beta2 = 0.999f;
	o->eps = 1e-8f;
	o->weight_decay = 0.0f;
	o->momentum = 0.0f;
	o->t = 0;
	o->n = n;
	o->m = nn_alloc(n, sizeof(float), 1);
	o->v = kind == OPT_SGD ? NULL : nn_alloc(n, sizeof(float), 1);
}

void optim_free(Optim *o)
{
	free(o->m);
	free(o->v);
	o->m = o->v = NULL;
	o->n = 0;
}

/* One pass over the parameters: the update of optim_step, and (zero) the gradient
 * cleared right after it is read, so that a training step walks the 5 M parameters
 * of a wide encoder once, not twice. The loops are branch-free over restrict
 * pointers with the per-step constants hoisted, so the compiler vectorises them
 * (sqrtf inlines to one instruction with -fno-math-errno); one division per element
 * remains (Adam's m / denom, kept exact). */
static void sgd_pass(float *restrict p, float *restrict g, float *restrict buf, size_t n,
                     float lr, float wd, float mu, int zero)
{
	/* torch.optim.SGD (dampening 0, no Nesterov):
	 *   g = grad + wd * p;  buf = momentum * buf + g (buf = g at the first step);  p -= lr * buf
	 * buf starts at zero, so the first step gives buf = g as well. */
	if (mu != 0.0f) {
		for (size_t i = 0; i < n; i++) {
			float b = mu * buf[i] + (g[i] + wd * p[i]);
			buf[i] = b;
			p[i] -= lr * b;
		}
	} else {
		for (size_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
	}
	if (zero) memset(g, 0, n * sizeof(float));
}

static inline __attribute__((always_inline)) void adam_pass(float *restrict p, float *restrict g, float *restrict m, float *restrict v, size_t n,
                      float b1, float b2, float eps, float step_size, float inv_bc2_sqrt, float shrink, float wd,
                      int zero)
{
	/* torch.optim.Adam / AdamW (single-tensor path):
	 *   AdamW: p *= 1 - lr * wd (shrink)   Adam: g = grad + wd * p (wd; shrink = 1)
	 *   m = b1 m + (1-b1) g  (PyTorch: exp_avg.lerp_(grad, 1 - beta1));  v = b2 v + (1-b2) g^2
	 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
	float c1 = 1.0f - b1, c2 = 1.0f - b2;
	for (size_t i = 0; i < n; i++) {
		float pi = p[i] * shrink;
		float gi = g[i] + wd * pi;
		float mi = m[i] + (gi - m[i]) * c1;
		float vi = b2 * v[i] + c2 * gi * gi;
		m[i] = mi;
		v[i] = vi;
		p[i] = pi - step_size * (mi / (sqrtf(vi) * inv_bc2_sqrt + eps));
		if (zero) g[i] = 0.0f;
	}
}

/* one contiguous range [lo, hi) of the update; the constants of this step in st */
typedef struct {
	OptimStep st;
	float *params, *grads;
	size_t lo, hi;
	int zero;
} Range;

static void run_range(const Range *r)
{
	const OptimStep *st = &r->st;
	Optim *o = st->o;
	size_t lo = r->lo, n = r->hi - r->lo;
	float *p = r->params + lo, *g = r->grads + lo;
	if (o->kind == OPT_SGD) {
		sgd_pass(p, g, o->m + lo, n, st->lr, o->weight_decay, o->momentum, r->zero);
		return;
	}
	/* zero as a constant in each call, so neither loop carries the branch */
	if (r->zero) adam_pass(p, g, o->m + lo, o->v + lo, n, o->beta1, o->beta2, o->eps, st->step_size, st->inv_bc2_sqrt, st->shrink, st->l2, 1);
	else adam_pass(p, g, o->m + lo, o->v + lo, n, o->beta1, o->beta2, o->eps, st->step_size, st->inv_bc2_sqrt, st->shrink, st->l2, 0);
}

void optim_step_begin(Optim *o, float lr, OptimStep *st)
{
	memset(st, 0, sizeof *st);
	o->t++;
	st->o = o;
	st->lr = lr;
	if (o->kind != OPT_SGD) {
		float b1 = o->beta1, b2 = o->beta2, wd = o->weight_decay;
		float bc1 = 1.0f - powf(b1, (float)o->t);
		float bc2_sqrt = sqrtf(1.0f - powf(b2, (float)o->t));
		int decoupled = o->kind == OPT_ADAMW;
		st->step_size = lr / bc1;
		/* sqrt(v) / bc2_sqrt as sqrt(v) * (1 / bc2_sqrt): within one rounding of PyTorch's */
		st->inv_bc2_sqrt = 1.0f / bc2_sqrt;
		st->shrink = decoupled ? 1.0f - lr * wd : 1.0f;
		st->l2 = decoupled ? 0.0f : wd;
	}
}

void optim_step_range(const OptimStep *st, float *params, float *grads, size_t lo, size_t hi)
{
	Range r = { *st, params, grads, lo, hi, 1 };
	if (hi > lo) run_range(&r);
}

static void *range_thread(void *a)
{
	run_range(a);
	return NULL;
}

typedef struct {
	Range r;
	size_t per;
} Chunks;

static void chunk_run(void *ctx, int i)
{
	const Chunks *c = ctx;
	Range r = c->r;
	r.lo = (size_t)i * c->per;
	r.hi = r.lo + c->per < r.st.o->n ? r.lo + c->per : r.st.o->n;
	run_range(&r);
}

/* Threads for a large update (a wide encoder's 5 M parameters): $DAPIPE_OPTIM_THREADS,
 * else the online cores, at most 8; 1 below a million parameters. Each element is
 * updated alone, so the result does not depend on the number of threads. */
static int range_threads(size_t n)
{
	if (n < ((size_t)1 << 20)) return 1;
	const char *e = getenv("DAPIPE_OPTIM_THREADS");
	long k = e && *e ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
	if (k < 1) k = 1;
	if (k > 8) k = 8;
	return (int)k;
}

static void step(Optim *o, float *params, float *grads, float lr, int zero)
{
	Range r;
	memset(&r, 0, sizeof r);
	optim_step_begin(o, lr, &r.st);
	r.params = params;
	r.grads = grads;
	r.zero = zero;
	size_t n = o->n;
	if (n >= ((size_t)1 << 20) && blas_pool_threads() > 1) {
		/* on the pool's threads (see blas_pool): chunks of 256 Ki elements, taken in
		 * turn, so a thread that has no core does not hold the others up */
		Chunks c = { r, (size_t)1 << 18 };
		blas_parallel((int)((n + c.per - 1) / c.per), chunk_run, &c);
		return;
	}
	int k = range_threads(n);
	Range part[8];
	pthread_t th[8];
	int started[8] = { 0 };
	size_t per = (n / (size_t)k + 15) & ~(size_t)15;  /* 64-byte aligned chunks */
	for (int i = 0; i < k; i++) {
		part[i] = r;
		part[i].lo = (size_t)i * per < n ? (size_t)i * per : n;
		part[i].hi = (size_t)(i + 1) * per < n && i < k - 1 ? (size_t)(i + 1) * per : n;
	}
	for (int i = 1; i < k; i++)
		started[i] = pthread_create(&th[i], NULL, range_thread, &part[i]) == 0;
	run_range(&part[0]);
	for (int i = 1; i < k; i++) {
		if (started[i]) pthread_join(th[i], NULL);
		else run_range(&part[i]);  /* no thread to be had: do it here */
	}
}

void optim_step(Optim *o, float *params, const float *grads, float lr)
{
	step(o, params, (float *)grads, lr, 0);  /* zero = 0: grads is only read */
}

void optim_step_zero(Optim *o, float *params, float *grads, float lr)
{
	step(o, params, grads, lr, 1);
}

float sched_lr_ganin(float lr0, float p)
{
	/* lr_p = lr0 / (1 + alpha p)^beta, alpha = 10, beta = 0.75 */
	return lr0 / powf(1.0f + 10.0f * p, 0.75f);
}

float sched_lambda_ganin(float p)
{
	/* lambda_p = 2 / (1 + exp(-gamma p)) - 1, gamma = 10 */
	return 2.0f / (1.0f + expf(-10.0f * p)) - 1.0f;
}
