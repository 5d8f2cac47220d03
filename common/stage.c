/* stage.c: see stage.h and docs/STAGES.md. */
#include "stage.h"
#include "blas.h"
#include "util.h"

#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

Act parse_act(const char *opt, const char *s)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *c = buf; *c; c++)
		if (*c == '-') *c = '_';
	for (int i = 0; i < ACT_COUNT; i++)
		if (strcmp(buf, act_names[i]) == 0) return (Act)i;
	usage_error("%s: %s: expected relu, leaky-relu or tanh", opt, s);
}

Norm parse_norm(const char *opt, const char *s)
{
	for (int i = 0; i < NORM_COUNT; i++)
		if (strcmp(s, norm_names[i]) == 0) return (Norm)i;
	usage_error("%s: %s: expected batch, layer or none", opt, s);
}

void parse_layers(StageArch *a, const char *opt, const char *s)
{
	a->nhidden = parse_int_list(opt, s, a->hidden, MLP_MAXLAYERS - 1, 1, 1 << 20);
	if (a->nhidden == 0 && !a->head) usage_error("%s: needs at least one width", opt);
}

MlpSpec stage_spec(const StageArch *a, int in, int out)
{
	MlpSpec sp;
	memset(&sp, 0, sizeof sp);
	sp.in = in;
	sp.nlayers = 0;
	for (int i = 0; i < a->nhidden; i++) sp.widths[sp.nlayers++] = a->hidden[i];
	if (a->head) sp.widths[sp.nlayers++] = out;
	sp.act = a->act;
	sp.slope = a->slope;
	sp.norm = a->norm;
	sp.dropout = a->dropout;
	sp.head = a->head;
	sp.bn_momentum = 0.1f;
	sp.eps = 1e-5f;
	return sp;
}

/* ---- responses ---- */

void stage_ok(Stage *s, size_t n)
{
	sw_map(&s->out, n + 1);
	sw_key(&s->out, "type");
	sw_str(&s->out, "ok");
	s->out.frames++;
}

void stage_error(Stage *s, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sw_map(&s->out, 2);
	sw_key(&s->out, "type"); sw_str(&s->out, "error");
	sw_key(&s->out, "message"); sw_str(&s->out, msg);
	s->out.frames++;
}

int req_bool(const SReader *r, const msgpack_object *req, const char *key, int def)
{
	const msgpack_object *o = obj_get(req, key);
	if (!o || o->type == MSGPACK_OBJECT_NIL) return def;
	if (o->type == MSGPACK_OBJECT_BOOLEAN) return o->via.boolean;
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return o->via.u64 != 0;
	sr_fail(r, "%s: expected a boolean", key);
}

/* A tensor {dtype: "f32", shape: [rows, cols], shm: {offset, size, parts?}} whose bytes
 * lie in the shared region: checks it and sets rp to its row blocks in the region
 * (mapped or remapped to size bytes on demand). */
static void shm_matrix(Stage *s, const msgpack_object *o, const msgpack_object *ref, const char *key, int cols, RowParts *rp)
{
	SReader *r = &s->in;
	if (!s->shm_on) sr_fail(r, "%s: a tensor in shared memory, but none was set up at init", key);
	if (ref->type != MSGPACK_OBJECT_MAP) sr_fail(r, "%s: shm is not a map", key);
	int64_t off = get_int(r, ref, "offset"), size = get_int(r, ref, "size");
	const msgpack_object *dt = obj_get(o, "dtype"), *sh = obj_get(o, "shape");
	if (!obj_is_str(dt, "f32")) sr_fail(r, "%s: expected dtype f32", key);
	if (!sh || sh->type != MSGPACK_OBJECT_ARRAY || sh->via.array.size != 2)
		sr_fail(r, "%s: expected a shape of 2 dimensions", key);
	int64_t dim[2];
	for (int i = 0; i < 2; i++) {
		const msgpack_object *d = &sh->via.array.ptr[i];
		if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 > INT32_MAX)
			sr_fail(r, "%s: shape[%d] is not a non-negative integer", key, i);
		dim[i] = (int64_t)d->via.u64;
	}
	if (dim[1] != cols) sr_fail(r, "%s has %lld columns, the %s takes %d", key, (long long)dim[1], s->role, cols);
	if (size < 0) sr_fail(r, "%s: the shared region's size is negative", key);
	/* the row blocks: parts [[offset, rows], ...], or all rows at offset */
	int64_t poff[STAGE_MAXPARTS], prows[STAGE_MAXPARTS];
	int np = 1;
	const msgpack_object *pa = obj_get(ref, "parts");
	if (pa) {
		if (pa->type != MSGPACK_OBJECT_ARRAY || pa->via.array.size < 1 || pa->via.array.size > STAGE_MAXPARTS)
			sr_fail(r, "%s: shm.parts: expected an array of 1 to %d [offset, rows] pairs", key, STAGE_MAXPARTS);
		np = (int)pa->via.array.size;
		int64_t sum = 0;
		for (int i = 0; i < np; i++) {
			const msgpack_object *e = &pa->via.array.ptr[i];
			if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2)
				sr_fail(r, "%s: shm.parts[%d]: expected [offset, rows]", key, i);
			poff[i] = obj_int(r, &e->via.array.ptr[0], "shm.parts offset");
			prows[i] = obj_int(r, &e->via.array.ptr[1], "shm.parts rows");
			if (prows[i] < 0 || prows[i] > dim[0] - sum)
				sr_fail(r, "%s: shm.parts: the blocks' rows do not add up to shape[0] = %lld", key, (long long)dim[0]);
			sum += prows[i];
		}
		if (sum != dim[0])
			sr_fail(r, "%s: shm.parts: the blocks' rows do not add up to shape[0] = %lld", key, (long long)dim[0]);
	} else {
		poff[0] = off;
		prows[0] = dim[0];
	}
	for (int i = 0; i < np; i++) {
		uint64_t bytes = (uint64_t)prows[i] * (uint64_t)dim[1] * sizeof(float);
		if (poff[i] < 0 || (uint64_t)poff[i] > (uint64_t)size || bytes > (uint64_t)size - (uint64_t)poff[i])
			sr_fail(r, "%s: %llu bytes at offset %lld do not fit the shared region of %lld bytes", key,
			        (unsigned long long)bytes, (long long)poff[i], (long long)size);
	}
	if ((size_t)size > s->shm_len) {
		struct stat st;
		if (fstat(s->shm_fd, &st) != 0 || st.st_size < size)
			sr_fail(r, "%s: the shared region is smaller than the %lld bytes announced", key, (long long)size);
		if (s->shm) munmap((void *)s->shm, s->shm_len);
		s->shm = NULL;
		s->shm_len = 0;
		void *a = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, s->shm_fd, 0);
		if (a == MAP_FAILED) die("shared memory: cannot map %lld bytes:", (long long)size);
		s->shm = a;
		s->shm_len = (size_t)size;
	}
	rp->n = np;
	for (int i = 0; i < np; i++) {
		rp->data[i] = (const float *)(s->shm + poff[i]);
		rp->rows[i] = (int)prows[i];
	}
}

int req_matrix_parts(Stage *s, const msgpack_object *req, const char *key, int cols, RowParts *rp, Tensor *t)
{
	double t0 = now_seconds();
	const msgpack_object *o = obj_get(req, key);
	const msgpack_object *ref = o && o->type == MSGPACK_OBJECT_MAP ? obj_get(o, "shm") : NULL;
	memset(t, 0, sizeof *t);
	int rows = 0;
	if (ref) {
		shm_matrix(s, o, ref, key, cols, rp);
		for (int i = 0; i < rp->n; i++) rows += rp->rows[i];
	} else {
		get_tensor(&s->in, req, key, DT_F32, 2, t);
		if (t->shape[1] != cols)
			sr_fail(&s->in, "%s has %lld columns, the %s takes %d", key, (long long)t->shape[1], s->role, cols);
		rows = (int)t->shape[0];
		rp->n = 1;
		rp->data[0] = t->data;
		rp->rows[0] = rows;
	}
	s->decode_s += now_seconds() - t0;
	return rows;
}

/* t becomes an f32 (rows, cols) tensor with uninitialised data */
static void f32_matrix_alloc(Tensor *t, int rows, int cols)
{
	t->dtype = DT_F32;
	t->ndim = 2;
	t->shape[0] = rows;
	t->shape[1] = cols;
	t->nbytes = (size_t)rows * (size_t)cols * sizeof(float);
	t->data = xmalloc(t->nbytes ? t->nbytes : 1);
}

int req_matrix_view(Stage *s, const msgpack_object *req, const char *key, int cols, const float **data, Tensor *t)
{
	RowParts rp;
	int rows = req_matrix_parts(s, req, key, cols, &rp, t);
	if (t->data || (rp.n == 1 && ((uintptr_t)rp.data[0] & (sizeof(float) - 1)) == 0)) {
		*data = rp.data[0];
		return rows;
	}
	/* blocks, or an unaligned block, in shared memory: gathered into *t */
	double t0 = now_seconds();
	f32_matrix_alloc(t, rows, cols);
	char *o = t->data;
	for (int i = 0; i < rp.n; i++) {
		size_t n = (size_t)rp.rows[i] * (size_t)cols * sizeof(float);
		memcpy(o, rp.data[i], n);
		o += n;
	}
	*data = t->data;
	s->decode_s += now_seconds() - t0;
	return rows;
}

int req_matrix(Stage *s, const msgpack_object *req, const char *key, int cols, Tensor *t)
{
	const float *data;
	int rows = req_matrix_view(s, req, key, cols, &data, t);
	if (!t->data) {
		/* in shared memory: the caller owns a copy */
		double t0 = now_seconds();
		f32_matrix_alloc(t, rows, cols);
		memcpy(t->data, data, t->nbytes);
		s->decode_s += now_seconds() - t0;
	}
	return rows;
}

void stage_step(Stage *s, double lr)
{
	double t0 = now_seconds();
	optim_step_zero(&s->opt, mlp_params(s->m), mlp_grads(s->m), (float)lr);
	s->opt_s += now_seconds() - t0;
}

/* ---- params frames ---- */

/* ---- optimiser state, shared by every stage's params frame ---- */

static OptKind optim_kind(const SReader *r, const msgpack_object *o, const char *where)
{
	char *k = get_str(r, o, "kind");
	int kind = -1;
	for (int i = 0; i < OPT_COUNT; i++) if (strcmp(k, opt_names[i]) == 0) kind = i;
	free(k);
	if (kind < 0) sr_fail(r, "%s.kind: unknown optimiser", where);
	return (OptKind)kind;
}

void optim_from_request(const SReader *r, const msgpack_object *req, Optim *opt, size_t nparams)
{
	const msgpack_object *o = obj_get(req, "optimizer");
	int is_map = o && o->type == MSGPACK_OBJECT_MAP;
	OptKind kind = is_map && obj_get(o, "kind") ? optim_kind(r, o, "optimizer") : OPT_ADAM;
	optim_init(opt, kind, nparams);
	if (is_map) {
		opt->weight_decay = (float)opt_num(r, o, "weight_decay", opt->weight_decay);
		opt->beta1 = (float)opt_num(r, o, "beta1", opt->beta1);
		opt->beta2 = (float)opt_num(r, o, "beta2", opt->beta2);
		opt->eps = (float)opt_num(r, o, "eps", opt->eps);
		opt->momentum = (float)opt_num(r, o, "momentum", opt->momentum);
	}
}

void optim_state_write(SWriter *w, const Optim *opt)
{
	sw_key(w, "optimizer");
	sw_map(w, 9);
	sw_key(w, "kind"); sw_str(w, opt_names[opt->kind]);
	sw_key(w, "t"); sw_int(w, opt->t);
	sw_key(w, "beta1"); sw_double(w, opt->beta1);
	sw_key(w, "beta2"); sw_double(w, opt->beta2);
	sw_key(w, "eps"); sw_double(w, opt->eps);
	sw_key(w, "weight_decay"); sw_double(w, opt->weight_decay);
	sw_key(w, "momentum"); sw_double(w, opt->momentum);
	static const float none[1];
	int64_t sh[1] = { opt->m ? (int64_t)opt->n : 0 };
	sw_key(w, "m"); sw_tensor(w, DT_F32, 1, sh, opt->m ? opt->m : none);
	sh[0] = opt->v ? (int64_t)opt->n : 0;
	sw_key(w, "v"); sw_tensor(w, DT_F32, 1, sh, opt->v ? opt->v : none);
}

void optim_state_read(const SReader *r, const msgpack_object *state, Optim *opt, size_t nparams)
{
	const msgpack_object *o = obj_get(state, "optimizer");
	if (!o || o->type != MSGPACK_OBJECT_MAP) sr_fail(r, "state: no optimizer map");
	optim_init(opt, optim_kind(r, o, "state.optimizer"), nparams);
	opt->t = get_int(r, o, "t");
	opt->beta1 = (float)get_num(r, o, "beta1");
	opt->beta2 = (float)get_num(r, o, "beta2");
	opt->eps = (float)get_num(r, o, "eps");
	opt->weight_decay = (float)get_num(r, o, "weight_decay");
	opt->momentum = (float)get_num(r, o, "momentum");
	const char *mv[2] = { "m", "v" };
	float *dst[2] = { opt->m, opt->v };
	for (int j = 0; j < 2; j++) {
		Tensor t;
		get_tensor(r, o, mv[j], DT_F32, 1, &t);
		if (dst[j] && (size_t)t.shape[0] == opt->n) memcpy(dst[j], t.data, t.nbytes);
		else if (t.shape[0] != 0 || dst[j])
			sr_fail(r, "state.optimizer.%s: %lld values, the model has %zu parameters", mv[j], (long long)t.shape[0], opt->n);
		tensor_free(&t);
	}
}

void params_write(SWriter *w, const char *role, const char *method, Mlp *m, const Optim *opt)
{
	const MlpSpec *sp = mlp_spec(m);
	sw_map(w, opt ? 5 : 4);
	sw_key(w, "type"); sw_str(w, "params");
	sw_key(w, "stage"); sw_str(w, role);
	sw_key(w, "arch");
	sw_map(w, method ? 8 : 7);
	sw_key(w, "in"); sw_int(w, sp->in);
	sw_key(w, "widths"); sw_array(w, (size_t)sp->nlayers);
	for (int i = 0; i < sp->nlayers; i++) sw_int(w, sp->widths[i]);
	sw_key(w, "head"); sw_bool(w, sp->head);
	sw_key(w, "act"); sw_str(w, act_names[sp->act]);
	sw_key(w, "norm"); sw_str(w, norm_names[sp->norm]);
	sw_key(w, "dropout"); sw_double(w, sp->dropout);
	sw_key(w, "slope"); sw_double(w, sp->slope);
	if (method) { sw_key(w, "method"); sw_str(w, method); }
	int nt = mlp_ntensors(m);
	sw_key(w, "tensors");
	sw_map(w, (size_t)nt);
	for (int i = 0; i < nt; i++) {
		int ndim;
		int64_t shape[2];
		float *data;
		const char *name = mlp_tensor(m, i, &ndim, shape, &data);
		sw_key(w, name);
		sw_tensor(w, DT_F32, ndim, shape, data);
	}
	if (opt) {
		sw_key(w, "state");
		sw_map(w, 2);
		optim_state_write(w, opt);
		Rng *rng = mlp_rng(m);
		int64_t four[1] = { 4 };
		sw_key(w, "rng"); sw_tensor(w, DT_I64, 1, four, rng->s);
	}
}

static const msgpack_object *need(const SReader *r, const msgpack_object *map, const char *key, const char *where)
{
	const msgpack_object *o = obj_get(map, key);
	if (!o) sr_fail(r, "%s: missing \"%s\"", where, key);
	return o;
}

Mlp *params_read(const SReader *r, const msgpack_object *p, const char *role, char **method, Optim *opt, int *has_state)
{
	if (!p || p->type != MSGPACK_OBJECT_MAP) sr_fail(r, "params: not a map");
	if (method) *method = NULL;
	if (has_state) *has_state = 0;
	char *st = get_str(r, p, "stage");
	if (role && strcmp(st, role) != 0) {
		char msg[256];
		snprintf(msg, sizeof msg, "params are for the %s stage, not the %s", st, role);
		free(st);
		sr_fail(r, "%s", msg);
	}
	free(st);
	const msgpack_object *a = need(r, p, "arch", "params");
	if (a->type != MSGPACK_OBJECT_MAP) sr_fail(r, "params: arch is not a map");
	MlpSpec sp;
	memset(&sp, 0, sizeof sp);
	int64_t in = obj_int(r, need(r, a, "in", "arch"), "arch.in");
	if (in < 1 || in > (1 << 24)) sr_fail(r, "arch.in = %lld is out of range", (long long)in);
	sp.in = (int)in;
	const msgpack_object *wd = need(r, a, "widths", "arch");
	if (wd->type != MSGPACK_OBJECT_ARRAY || wd->via.array.size < 1 || wd->via.array.size > MLP_MAXLAYERS)
		sr_fail(r, "arch.widths: expected 1 to %d widths", MLP_MAXLAYERS);
	sp.nlayers = (int)wd->via.array.size;
	for (int i = 0; i < sp.nlayers; i++) {
		int64_t v = obj_int(r, &wd->via.array.ptr[i], "arch.widths");
		if (v < 1 || v > (1 << 20)) sr_fail(r, "arch.widths[%d] = %lld is out of range", i, (long long)v);
		sp.widths[i] = (int)v;
	}
	const msgpack_object *h = need(r, a, "head", "arch");
	if (h->type != MSGPACK_OBJECT_BOOLEAN) sr_fail(r, "arch.head: expected a boolean");
	sp.head = h->via.boolean;
	char *s = get_str(r, a, "act");
	int act = -1, norm = -1;
	for (int i = 0; i < ACT_COUNT; i++) if (strcmp(s, act_names[i]) == 0) act = i;
	free(s);
	s = get_str(r, a, "norm");
	for (int i = 0; i < NORM_COUNT; i++) if (strcmp(s, norm_names[i]) == 0) norm = i;
	free(s);
	if (act < 0) sr_fail(r, "arch.act: unknown activation");
	if (norm < 0) sr_fail(r, "arch.norm: unknown normalisation");
	sp.act = (Act)act;
	sp.norm = (Norm)norm;
	double dr = get_num(r, a, "dropout"), sl = opt_num(r, a, "slope", 0.2);
	if (!(dr >= 0 && dr < 1)) sr_fail(r, "arch.dropout: must be in [0, 1)");
	if (!isfinite(sl)) sr_fail(r, "arch.slope: not finite");
	sp.dropout = (float)dr;
	sp.slope = (float)sl;
	sp.bn_momentum = 0.1f;
	sp.eps = 1e-5f;
	if (method && obj_get(a, "method")) *method = get_str(r, a, "method");

	const msgpack_object *ts = need(r, p, "tensors", "params");
	if (ts->type != MSGPACK_OBJECT_MAP) sr_fail(r, "params: tensors is not a map");
	/* checked before allocated: the weight matrices the architecture declares must
	 * fit in the bytes the tensors hold (a forged arch must not allocate terabytes) */
	uint64_t need_b = 0, have_b = 0;
	for (int i = 0, prev = sp.in; i < sp.nlayers; prev = sp.widths[i], i++)
		need_b += (uint64_t)prev * (uint64_t)sp.widths[i] * sizeof(float);
	for (uint32_t i = 0; i < ts->via.map.size; i++) {
		const msgpack_object *v = &ts->via.map.ptr[i].val;
		const msgpack_object *d = v->type == MSGPACK_OBJECT_MAP ? obj_get(v, "data") : NULL;
		if (d && d->type == MSGPACK_OBJECT_BIN) have_b += d->via.bin.size;
	}
	if (need_b > have_b)
		sr_fail(r, "params: the architecture needs %llu bytes of weights, the tensors hold %llu",
		        (unsigned long long)need_b, (unsigned long long)have_b);
	Mlp *m = mlp_new(&sp, 0);
	int nt = mlp_ntensors(m);
	for (int i = 0; i < nt; i++) {
		int ndim;
		int64_t shape[2];
		float *data;
		const char *name = mlp_tensor(m, i, &ndim, shape, &data);
		Tensor t;
		obj_tensor(r, obj_get(ts, name), name, DT_F32, ndim, &t);
		for (int k = 0; k < ndim; k++)
			if (t.shape[k] != shape[k])
				sr_fail(r, "tensor %s: shape[%d] is %lld, the architecture needs %lld", name, k,
				        (long long)t.shape[k], (long long)shape[k]);
		const float *src = t.data;
		for (int64_t k = 0; k < tensor_numel(&t); k++)
			if (!isfinite(src[k])) sr_fail(r, "tensor %s: element %lld is not finite", name, (long long)k);
		memcpy(data, t.data, t.nbytes);
		tensor_free(&t);
	}
	if (ts->via.map.size != (uint32_t)nt)
		sr_fail(r, "params: %u tensors, the architecture has %d", ts->via.map.size, nt);
	const msgpack_object *state = obj_get(p, "state");
	if (opt && state && state->type == MSGPACK_OBJECT_MAP) {
		optim_state_read(r, state, opt, mlp_nparams(m));
		Tensor t;
		get_tensor(r, state, "rng", DT_I64, 1, &t);
		if (t.shape[0] != 4) sr_fail(r, "state.rng: expected 4 values");
		memcpy(mlp_rng(m)->s, t.data, sizeof(uint64_t) * 4);
		tensor_free(&t);
		if (has_state) *has_state = 1;
	}
	return m;
}

/* ---- the serve loop ---- */

/* BLAS threads of a stage: the heads' products are small (a few hundred rows and
 * columns), so their gemms run on one thread: a second OpenBLAS thread buys them
 * little and, between calls, spins (sched_yield) on a core that the encoder and
 * train-step need (three stages share the cores). A stage with a large layer (the
 * encoder's first, genes x width), or one that asks for it (s->pool: the domain
 * head, which works while the others wait), runs its products on as many threads
 * ($OPENBLAS_NUM_THREADS, else the cores) of our own pool (blas_pool). */
#define STAGE_SMALL_LAYER ((size_t)1 << 20)
static void stage_threads(Stage *s)
{
	static int single;
	const MlpSpec *sp = mlp_spec(s->m);
	size_t big = 0;
	for (int l = 0, in = sp->in; l < sp->nlayers; in = sp->widths[l], l++)
		if ((size_t)in * (size_t)sp->widths[l] > big) big = (size_t)in * (size_t)sp->widths[l];
	int many = big >= STAGE_SMALL_LAYER || s->pool;
	if (!many && !single) {
		blas_threads(1);
		single = 1;
	} else if (many && (single || blas_pool_threads() == 1)) {
		const char *e = getenv("OPENBLAS_NUM_THREADS");
		long n = e && *e ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
		if (n < 1) n = 1;
		/* the large products on our own threads (blas_pool), each band on one
		 * OpenBLAS thread: no thread spins waiting for a preempted one */
		if (n > 1 && blas_pool((int)n) > 1) blas_threads(1);
		else blas_threads((int)n);
		single = 0;
	}
}

static void write_arch_reply(Stage *s, int shm)
{
	stage_ok(s, shm ? 3 : 2);
	sw_key(&s->out, "out"); sw_int(&s->out, mlp_out(s->m));
	sw_key(&s->out, "nparams"); sw_int(&s->out, (int64_t)mlp_nparams(s->m));
	if (shm) { sw_key(&s->out, "shm"); sw_bool(&s->out, 1); }
}

/* init's shm_fd: the descriptor of the shared region train-step offers; accepted when
 * it is open here (a stage started elsewhere, e.g. over ssh, has no such descriptor) */
static int shm_accept(Stage *s, const msgpack_object *req)
{
	int64_t fd = opt_int(&s->in, req, "shm_fd", -1);
	const char *env = getenv("DAPIPE_SHM");
	struct stat st;
	if (fd < 0 || fd > 1024 || (env && strcmp(env, "0") == 0)) return 0;
	if (fstat((int)fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
	if (s->shm) munmap((void *)s->shm, s->shm_len);
	s->shm = NULL;
	s->shm_len = 0;
	s->shm_on = 1;
	s->shm_fd = (int)fd;
	return 1;
}

static void do_init(Stage *s, const msgpack_object *req)
{
	int64_t in = get_int(&s->in, req, "in");
	int64_t out = opt_int(&s->in, req, "out", 0);
	int64_t seed = opt_int(&s->in, req, "seed", 1);
	if (in < 1 || in > (1 << 24)) { stage_error(s, "init: in = %lld is out of range", (long long)in); return; }
	if (s->arch.fixed_out) out = s->arch.fixed_out;
	if (s->arch.head && (out < 1 || out > (1 << 20))) { stage_error(s, "init: the %s needs \"out\" (at least 1)", s->role); return; }
	if (s->m) { mlp_free(s->m); optim_free(&s->opt); }
	MlpSpec sp = stage_spec(&s->arch, (int)in, (int)out);
	s->m = mlp_new(&sp, (uint64_t)seed);
	mlp_set_seed(s->m, (uint64_t)seed * 2654435761u + 1);
	optim_from_request(&s->in, req, &s->opt, mlp_nparams(s->m));
	s->last_b = 0;
	stage_threads(s);
	write_arch_reply(s, shm_accept(s, req));
}

static void do_forward(Stage *s, const msgpack_object *req)
{
	Tensor x;
	RowParts xp;
	int train = req_bool(&s->in, req, "train", 0);
	int b = req_matrix_parts(s, req, "x", mlp_spec(s->m)->in, &xp, &x);
	if (train && b < 2 && mlp_spec(s->m)->norm == NORM_BATCH) {
		tensor_free(&x);
		stage_error(s, "forward: a training batch of %d row%s would reach BatchNorm", b, b == 1 ? "" : "s");
		return;
	}
	/* the rows (one block, or [xs; xt] where train-step read them) copied once, into
	 * the cache that backward reads */
	double t0 = now_seconds();
	const float *y = b ? mlp_forward_parts(s->m, xp.n, xp.data, xp.rows, train) : NULL;
	s->fwd_s += now_seconds() - t0;
	/* backward may follow either mode: after an evaluation-mode forward it
	 * differentiates the evaluation-mode function (BatchNorm with its running
	 * statistics, no dropout), which is what input attributions need */
	s->last_b = b;
	int64_t sh[2] = { b, mlp_out(s->m) };
	static const float none[1];
	stage_ok(s, 1);
	sw_key(&s->out, "y");
	sw_tensor(&s->out, DT_F32, 2, sh, y ? y : none);
	tensor_free(&x);
}

static void do_backward(Stage *s, const msgpack_object *req)
{
	Tensor dy;
	int b = req_matrix(s, req, "dy", mlp_out(s->m), &dy);
	if (b != s->last_b || b == 0) {
		tensor_free(&dy);
		stage_error(s, "backward: dy has %d rows, the last forward had %d", b, s->last_b);
		return;
	}
	int want = req_bool(&s->in, req, "want_dx", 0);
	const msgpack_object *lr = obj_get(req, "lr");
	float *dx = want ? xmallocarray((size_t)b * mlp_spec(s->m)->in, sizeof(float)) : NULL;
	double t0 = now_seconds();
	if (lr) {
		/* the step with the backward pass: the first layer's weight gradient is used
		 * band by band while in cache (mlp_backward_step); its seconds count as backward */
		mlp_backward_step(s->m, dy.data, dx, &s->opt, (float)obj_num(&s->in, lr, "lr"));
	} else {
		mlp_backward(s->m, dy.data, dx);
	}
	s->bwd_s += now_seconds() - t0;
	if (want) {
		int64_t sh[2] = { b, mlp_spec(s->m)->in };
		stage_ok(s, 1);
		sw_key(&s->out, "dx");
		sw_tensor(&s->out, DT_F32, 2, sh, dx);
	} else {
		stage_ok(s, 0);
	}
	free(dx);
	tensor_free(&dy);
}

static void do_save(Stage *s, const msgpack_object *req)
{
	int state = req_bool(&s->in, req, "state", 0);
	stage_ok(s, 1);
	sw_key(&s->out, "params");
	params_write(&s->out, s->role, s->method, s->m, state ? &s->opt : NULL);
}

static void do_load(Stage *s, const msgpack_object *req)
{
	char *method = NULL;
	Optim opt;
	int has_state;
	memset(&opt, 0, sizeof opt);
	Mlp *m = params_read(&s->in, obj_get(req, "params"), s->role, &method, &opt, &has_state);
	if (s->method && method && strcmp(method, s->method) != 0) {
		stage_error(s, "load: params of a %s %s, this stage runs %s", method, s->role, s->method);
		free(method);
		mlp_free(m);
		if (has_state) optim_free(&opt);
		return;
	}
	free(method);
	if (s->m) {
		if (has_state) optim_free(&s->opt);
		mlp_free(s->m);
	}
	s->m = m;
	if (has_state) s->opt = opt;
	else if (!s->opt.m && !s->opt.v) optim_from_request(&s->in, req, &s->opt, mlp_nparams(s->m));
	else if (s->opt.n != mlp_nparams(m)) { optim_free(&s->opt); optim_from_request(&s->in, req, &s->opt, mlp_nparams(s->m)); }
	s->last_b = 0;
	stage_threads(s);
	write_arch_reply(s, 0);
}

void stage_serve(Stage *s)
{
	/* request tensors (tens of MiB through the pipes) come from the heap and stay there
	 * when freed, instead of being mapped, faulted in page by page and unmapped each time */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	sr_open_fd(&s->in, 0, "<requests>");
	sw_init(&s->out, stdout, "<stdout>");
	for (;;) {
		const msgpack_object *req = sr_next(&s->in);
		if (!req) break;  /* the driver closed the pipe: same as quit */
		char type[64];
		snprintf(type, sizeof type, "%s", frame_type(&s->in, req));
		if (strcmp(type, "quit") == 0) {
			/* stats: the seconds spent in handlers, less decoding tensors */
			int stats = req_bool(&s->in, req, "stats", 0);
			stage_ok(s, stats ? 5 : 0);
			if (stats) {
				sw_key(&s->out, "compute_s"); sw_double(&s->out, s->busy_s - s->decode_s);
				sw_key(&s->out, "decode_s"); sw_double(&s->out, s->decode_s);
				sw_key(&s->out, "forward_s"); sw_double(&s->out, s->fwd_s);
				sw_key(&s->out, "backward_s"); sw_double(&s->out, s->bwd_s);
				sw_key(&s->out, "optimizer_s"); sw_double(&s->out, s->opt_s);
			}
			sw_flush(&s->out);
			break;
		}
		double t0 = now_seconds();
		if (strcmp(type, "init") == 0) do_init(s, req);
		else if (!s->m && strcmp(type, "load") != 0) stage_error(s, "%s: the stage is not initialised (send init or load first)", type);
		else if (strcmp(type, "forward") == 0) do_forward(s, req);
		else if (strcmp(type, "backward") == 0) do_backward(s, req);
		else if (strcmp(type, "step") == 0) {
			stage_step(s, get_num(&s->in, req, "lr"));
			stage_ok(s, 0);
		} else if (strcmp(type, "save") == 0) do_save(s, req);
		else if (strcmp(type, "load") == 0) do_load(s, req);
		else if (!s->handle || !s->handle(s, type, req))
			stage_error(s, "unknown request \"%s\" for the %s stage", type, s->role);
		s->busy_s += now_seconds() - t0;
		sw_flush(&s->out);
	}
	if (s->m) {
		mlp_free(s->m);
		optim_free(&s->opt);
	}
	if (s->shm) munmap((void *)s->shm, s->shm_len);
	sr_close(&s->in);
	exit(0);
}

/* ---- bundles ---- */

void bundle_read(Bundle *b, const char *path)
{
	SReader r;
	memset(b, 0, sizeof *b);
	sr_open(&r, path);
	b->path = xstrdup(r.name);
	const msgpack_object *f = sr_next(&r);
	if (!f) sr_fail(&r, "empty file (no header frame)");
	header_parse(&r, f, &b->h);
	if (strcmp(b->h.kind, "model") != 0) sr_fail(&r, "kind \"%s\", expected a model bundle (kind \"model\")", b->h.kind);
	for (;;) {
		f = sr_next(&r);
		if (!f) {
			r.frame++;
			sr_fail(&r, "bundle ends without an end frame (truncated?)");
		}
		const char *t = frame_type(&r, f);
		if (strcmp(t, "end") == 0) {
			if (sr_next(&r)) sr_fail(&r, "data after the end frame");
			break;
		}
		if (strcmp(t, "params") != 0) continue;
		b->stage = xrealloc(b->stage, sizeof(char *) * (size_t)(b->n + 1));
		b->params = xrealloc(b->params, sizeof(Blob) * (size_t)(b->n + 1));
		b->frame = xrealloc(b->frame, sizeof(long) * (size_t)(b->n + 1));
		b->stage[b->n] = get_str(&r, f, "stage");
		blob_from_object(&b->params[b->n], f);
		b->frame[b->n] = r.frame;
		b->n++;
	}
	sr_close(&r);
}

Mlp *bundle_mlp(const Bundle *b, const char *stage, char **method)
{
	for (int i = 0; i < b->n; i++) {
		if (strcmp(b->stage[i], stage) != 0) continue;
		SReader r;
		memset(&r, 0, sizeof r);
		r.name = b->path;
		r.frame = b->frame[i];
		msgpack_unpacked up;
		const msgpack_object *o = blob_object(&b->params[i], &up);
		Mlp *m = params_read(&r, o, stage, method, NULL, NULL);
		msgpack_unpacked_destroy(&up);
		return m;
	}
	die("%s: the bundle has no %s (params frame with stage \"%s\")", b->path, stage, stage);
}

void bundle_free(Bundle *b)
{
	for (int i = 0; i < b->n; i++) {
		free(b->stage[i]);
		blob_free(&b->params[i]);
	}
	free(b->stage);
	free(b->params);
	free(b->frame);
	free(b->path);
	header_free(&b->h);
	memset(b, 0, sizeof *b);
}
