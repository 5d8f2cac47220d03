/* stream.c: see stream.h and docs/FORMAT.md. */
#include "stream.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *dtype_names[DT_COUNT] = { "f32", "f64", "i32", "i64", "u8" };
static const size_t dtype_sizes[DT_COUNT] = { 4, 8, 4, 8, 1 };

size_t dtype_size(DType t) { ASSERT(t >= 0 && t < DT_COUNT); return dtype_sizes[t]; }

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_BIG_ENDIAN 1
#else
#define HOST_BIG_ENDIAN 0
#endif

static void swap_bytes(void *data, size_t n, size_t es)
{
	if (!HOST_BIG_ENDIAN || es == 1) return;
	unsigned char *p = data;
	for (size_t i = 0; i < n; i++, p += es)
		for (size_t a = 0, b = es - 1; a < b; a++, b--) {
			unsigned char t = p[a]; p[a] = p[b]; p[b] = t;
		}
}

int64_t tensor_numel(const Tensor *t)
{
	int64_t n = 1;
	for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
	return n;
}

void tensor_free(Tensor *t)
{
	free(t->data);
	t->data = NULL;
	t->nbytes = 0;
}

/* ---- blobs ---- */

void blob_from_object(Blob *b, const msgpack_object *o)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_object(&pk, *o) != 0) die("out of memory");
	b->data = xmalloc(sb.size);
	memcpy(b->data, sb.data, sb.size);
	b->len = sb.size;
	msgpack_sbuffer_destroy(&sb);
}

void blob_copy(Blob *dst, const Blob *src)
{
	dst->data = xmalloc(src->len ? src->len : 1);
	memcpy(dst->data, src->data, src->len);
	dst->len = src->len;
}

void blob_free(Blob *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

const msgpack_object *blob_object(const Blob *b, msgpack_unpacked *up)
{
	size_t off = 0;
	msgpack_unpacked_init(up);
	if (msgpack_unpack_next(up, b->data, b->len, &off) != MSGPACK_UNPACK_SUCCESS)
		die("internal error: bad blob");
	return &up->data;
}

/* ---- writer ---- */

static int fp_write(void *data, const char *buf, size_t len)
{
	FILE *fp = data;
	return fwrite(buf, 1, len, fp) == len ? 0 : -1;
}

void sw_init(SWriter *w, FILE *fp, const char *name)
{
	w->fp = fp;
	w->name = name;
	w->frames = 0;
	msgpack_packer_init(&w->pk, fp, fp_write);
}

void sw_map(SWriter *w, size_t n) { msgpack_pack_map(&w->pk, n); }
void sw_array(SWriter *w, size_t n) { msgpack_pack_array(&w->pk, n); }
void sw_str(SWriter *w, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(&w->pk, n);
	msgpack_pack_str_body(&w->pk, s, n);
}
void sw_key(SWriter *w, const char *k) { sw_str(w, k); }
void sw_int(SWriter *w, int64_t v) { msgpack_pack_int64(&w->pk, v); }
void sw_double(SWriter *w, double v) { msgpack_pack_double(&w->pk, v); }
void sw_bool(SWriter *w, int v) { if (v) msgpack_pack_true(&w->pk); else msgpack_pack_false(&w->pk); }
void sw_nil(SWriter *w) { msgpack_pack_nil(&w->pk); }
void sw_strs(SWriter *w, char *const *s, int n)
{
	sw_array(w, (size_t)n);
	for (int i = 0; i < n; i++) sw_str(w, s[i]);
}

void sw_tensor(SWriter *w, DType t, int ndim, const int64_t *shape, const void *data)
{
	ASSERT(t >= 0 && t < DT_COUNT && ndim >= 0 && ndim <= TENSOR_MAXDIM);
	size_t n = 1;
	for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
	size_t bytes = n * dtype_sizes[t];
	ASSERT(bytes <= UINT32_MAX);
	sw_map(w, 3);
	sw_key(w, "dtype"); sw_str(w, dtype_names[t]);
	sw_key(w, "shape"); sw_array(w, (size_t)ndim);
	for (int i = 0; i < ndim; i++) sw_int(w, shape[i]);
	sw_key(w, "data");
	msgpack_pack_bin(&w->pk, bytes);
	if (HOST_BIG_ENDIAN && dtype_sizes[t] > 1) {
		char *tmp = xmalloc(bytes);
		memcpy(tmp, data, bytes);
		swap_bytes(tmp, n, dtype_sizes[t]);
		msgpack_pack_bin_body(&w->pk, tmp, bytes);
		free(tmp);
	} else {
		msgpack_pack_bin_body(&w->pk, data, bytes);
	}
}

void sw_blob(SWriter *w, const Blob *b)
{
	if (fwrite(b->data, 1, b->len, w->fp) != b->len) { /* reported at flush */ }
}

void sw_object(SWriter *w, const msgpack_object *o) { msgpack_pack_object(&w->pk, *o); }

void sw_flush(SWriter *w)
{
	if (fflush(w->fp) != 0 || ferror(w->fp)) die("%s: write error:", w->name);
}

/* ---- reader ---- */

void sr_fail(const SReader *r, const char *fmt, ...)
{
	va_list ap;
	char msg[512];
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (r->frame > 0) die("%s: frame %ld: %s", r->name, r->frame, msg);
	die("%s: %s", r->name, msg);
}

static void sr_setup(SReader *r)
{
	r->grow = NULL;
	r->grow_ctx = NULL;
	r->cap = 1 << 16;
	r->buf = xmalloc(r->cap);
	r->len = r->pos = 0;
	r->frame = 0;
	r->eof = 0;
	r->deadline = 0;
	r->max_frame = (size_t)2 << 30;
	const char *e = getenv("DAPIPE_MAX_FRAME");
	if (e && *e) {
		char *end;
		unsigned long long v = strtoull(e, &end, 10);
		if (!*end && v >= 64) r->max_frame = (size_t)v;
	}
	msgpack_unpacked_init(&r->res);
}

void sr_open_fd(SReader *r, int fd, const char *name)
{
	r->fd = fd;
	r->own_fd = 0;
	r->name = xstrdup(name);
	sr_setup(r);
}

void sr_open(SReader *r, const char *path)
{
	if (strcmp(path, "-") == 0) {
		sr_open_fd(r, 0, "<stdin>");
		return;
	}
	int fd = open(path, O_RDONLY);
	if (fd < 0) die("%s: cannot open:", path);
	sr_open_fd(r, fd, path);
	r->own_fd = 1;
}

void sr_close(SReader *r)
{
	if (r->own_fd) close(r->fd);
	msgpack_unpacked_destroy(&r->res);
	if (!r->grow) free(r->buf);
	r->grow = NULL;
	free(r->name);
	r->buf = NULL;
	r->name = NULL;
}

/* Scan one complete msgpack value at p[0..n). Returns its length, 0 if more bytes
 * are needed, -1 if malformed. *declared gets the largest declared element count or
 * byte length seen, so an absurd declaration can be rejected before buffering it.
 * When more bytes are needed, *want is the length the value has at least (the end of
 * the element it stopped in), and st keeps where the scan got to, so that the next
 * call (on the same bytes, and more) resumes there: a frame of many small elements
 * that arrives in many reads is still scanned once. st->pending = 0: from the start. */
typedef struct { size_t i; uint64_t pending, declared; } ScanState;
static long long mp_scan(const unsigned char *p, size_t n, uint64_t *declared, uint64_t *want, ScanState *st)
{
	size_t i = 0;
	uint64_t pending = 1; /* values still to read */
	*declared = 0;
	if (st->pending) {
		i = st->i;
		pending = st->pending;
		*declared = st->declared;
	}
	*want = 0;
	size_t start;  /* where the element being read begins */
#define SUSPEND(w) do { *want = (w); st->i = start; st->pending = pending + 1; st->declared = *declared; return 0; } while (0)
#define NEED(k) do { if (n - i < (size_t)(k)) SUSPEND((uint64_t)i + (uint64_t)(k)); } while (0)
#define BE16(q) (((uint64_t)(q)[0] << 8) | (q)[1])
#define BE32(q) (((uint64_t)(q)[0] << 24) | ((uint64_t)(q)[1] << 16) | ((uint64_t)(q)[2] << 8) | (q)[3])
	while (pending) {
		start = i;
		pending--;
		NEED(1);
		unsigned c = p[i++];
		uint64_t skip = 0, items = 0;
		if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
			skip = 0;
		} else if (c >= 0x80 && c <= 0x8f) {
			items = 2 * (uint64_t)(c & 0x0f);
		} else if (c >= 0x90 && c <= 0x9f) {
			items = c & 0x0f;
		} else if (c >= 0xa0 && c <= 0xbf) {
			skip = c & 0x1f;
		} else {
			switch (c) {
			case 0xc4: case 0xd9: NEED(1); skip = p[i]; i += 1; break;
			case 0xc5: case 0xda: NEED(2); skip = BE16(p + i); i += 2; break;
			case 0xc6: case 0xdb: NEED(4); skip = BE32(p + i); i += 4; break;
			case 0xc7: NEED(1); skip = 1 + (uint64_t)p[i]; i += 1; break;
			case 0xc8: NEED(2); skip = 1 + BE16(p + i); i += 2; break;
			case 0xc9: NEED(4); skip = 1 + BE32(p + i); i += 4; break;
			case 0xca: skip = 4; break;
			case 0xcb: skip = 8; break;
			case 0xcc: case 0xd0: skip = 1; break;
			case 0xcd: case 0xd1: skip = 2; break;
			case 0xce: case 0xd2: skip = 4; break;
			case 0xcf: case 0xd3: skip = 8; break;
			case 0xd4: skip = 2; break;
			case 0xd5: skip = 3; break;
			case 0xd6: skip = 5; break;
			case 0xd7: skip = 9; break;
			case 0xd8: skip = 17; break;
			case 0xdc: NEED(2); items = BE16(p + i); i += 2; break;
			case 0xdd: NEED(4); items = BE32(p + i); i += 4; break;
			case 0xde: NEED(2); items = 2 * BE16(p + i); i += 2; break;
			case 0xdf: NEED(4); items = 2 * BE32(p + i); i += 4; break;
			default: return -1; /* 0xc1 */
			}
		}
		if (skip > *declared) *declared = skip;
		if (items > *declared) *declared = items;
		if (skip) {
			/* a bin or str longer than what is here: the value needs at least its end */
			if (n - i < skip) SUSPEND((uint64_t)i + skip);
			i += (size_t)skip;
		}
		pending += items;
	}
	st->pending = 0;
	return (long long)i;
#undef SUSPEND
#undef NEED
#undef BE16
#undef BE32
}

/* the reader's buffer grown to cap bytes, contents kept */
static void sr_grow(SReader *r, size_t cap)
{
	if (r->grow) {
		char *b = r->grow(r->grow_ctx, cap);
		if (b) {
			r->buf = b;
			r->cap = cap;
			return;
		}
		/* the owner cannot grow its memory: carry on in the heap */
		char *h = xmalloc(cap);
		memcpy(h, r->buf, r->len);
		r->buf = h;
		r->grow = NULL;
		r->grow_ctx = NULL;
	} else {
		r->buf = xrealloc(r->buf, cap);
	}
	r->cap = cap;
}

void sr_set_buffer(SReader *r, char *(*grow)(void *ctx, size_t cap), void *ctx)
{
	size_t keep = r->len - r->pos, cap = r->cap;
	if (cap < keep) cap = keep;
	char *b = grow(ctx, cap);
	if (!b) return;
	memcpy(b, r->buf + r->pos, keep);
	if (!r->grow) free(r->buf);
	r->buf = b;
	r->cap = cap;
	r->len = keep;
	r->pos = 0;
	r->grow = grow;
	r->grow_ctx = ctx;
}

/* reads of a frame's small parts are at most this long, so that a read seldom runs far
 * past the end of a frame (what it runs into is moved to the buffer's start later) */
#define SR_CHUNK ((size_t)1 << 16)
/* room reserved ahead of a frame's declared bytes, at most (see sr_try_next) */
#define SR_RESERVE ((size_t)64 << 20)

int sr_try_next(SReader *r, const msgpack_object **out, const char **why)
{
	uint64_t want = 0;  /* bytes the frame at pos needs at least (from the last scan) */
	ScanState st = { 0, 0, 0 };  /* offsets from pos, so a move of the bytes keeps it */
	for (;;) {
		if (r->pos < r->len) {
			uint64_t declared;
			long long k = mp_scan((unsigned char *)r->buf + r->pos, r->len - r->pos, &declared, &want, &st);
			if (k < 0) { r->frame++; *why = "malformed msgpack"; return -1; }
			if (k != 0 && declared > r->max_frame) {
				/* malformed or complete: a declaration past the limit is refused either way */
				r->frame++;
				*why = "declared size exceeds the frame limit (DAPIPE_MAX_FRAME)";
				return -1;
			}
			if (k > 0 && (size_t)k > r->max_frame) {
				r->frame++;
				*why = "frame exceeds the frame limit (DAPIPE_MAX_FRAME)";
				return -1;
			}
			if (k == 0 && declared > r->max_frame) {
				r->frame++;
				*why = "declared size exceeds the frame limit (DAPIPE_MAX_FRAME)";
				return -1;
			}
			if (k > 0) {
				size_t off = 0;
				r->frame++;
				msgpack_unpack_return ret = msgpack_unpack_next(&r->res, r->buf + r->pos, (size_t)k, &off);
				if (ret != MSGPACK_UNPACK_SUCCESS) {
					*why = ret == MSGPACK_UNPACK_NOMEM_ERROR ? "out of memory unpacking frame"
					                                        : "malformed msgpack (nested too deeply?)";
					return -1;
				}
				r->pos += (size_t)k;
				if (r->res.data.type != MSGPACK_OBJECT_MAP) { *why = "frame is not a map"; return -1; }
				*out = &r->res.data;
				return 1;
			}
			if (r->len - r->pos > r->max_frame) {
				r->frame++;
				*why = "frame exceeds the frame limit (DAPIPE_MAX_FRAME)";
				return -1;
			}
		}
		if (r->eof) {
			if (r->pos == r->len) return 0;
			r->frame++;
			*why = "truncated frame (unexpected end of input)";
			return -1;
		}
		/* make room and read more. A large frame is read to the byte it needs next (the
		 * end of its current bin), so that it ends where the buffer's contents end: the
		 * next frame then starts at the buffer's start and nothing large is ever moved
		 * (or copied by a realloc) once read. */
		if (r->pos > 0 && r->pos == r->len) r->pos = r->len = 0;
		size_t have = r->len - r->pos;
		size_t need = want > have ? (size_t)(want - have) : 0;  /* bytes still missing */
		/* a declared size is not data yet: room is reserved ahead of the bytes for at most
		 * SR_RESERVE bytes or as many as are here already, so that a forged declaration
		 * (a few bytes claiming a 2 GiB bin) costs little; a real large frame then grows
		 * the buffer by doubling as its bytes arrive */
		size_t bound = have > SR_RESERVE ? have : SR_RESERVE;
		if (need > bound) need = bound;
		if (r->cap - r->len < 4096 || need > r->cap - r->len) {
			if (r->pos > 0) {
				memmove(r->buf, r->buf + r->pos, have);
				r->len = have;
				r->pos = 0;
			}
			if (r->cap - r->len < 4096 || need > r->cap - r->len) {
				size_t cap = r->cap * 2;
				while (cap - r->len < 4096 || cap - r->len < need) cap *= 2;
				sr_grow(r, cap);
			}
		}
		size_t room = r->cap - r->len;
		if (need > SR_CHUNK) {
			if (room > need) room = need;
		} else if (room > SR_CHUNK) {
			room = SR_CHUNK;
		}
		if (r->deadline > 0) {
			/* wait for input no later than the deadline */
			double left = r->deadline - now_seconds();
			struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
			int pr = left > 0 ? poll(&pfd, 1, left > 1e6 ? 1000000000 : (int)(left * 1000) + 1) : 0;
			if (pr < 0 && errno == EINTR) continue;
			if (pr == 0) { *why = "timed out"; return -2; }
		}
		ssize_t got = read(r->fd, r->buf + r->len, room);
		if (got < 0) {
			if (errno == EINTR) continue;
			*why = strerror(errno);
			r->frame++;
			return -1;
		}
		if (got == 0) r->eof = 1;
		r->len += (size_t)got;
	}
}

const msgpack_object *sr_next(SReader *r)
{
	const msgpack_object *o;
	const char *why;
	int k = sr_try_next(r, &o, &why);
	if (k < 0) sr_fail(r, "%s", why);
	return k ? o : NULL;
}

/* ---- object access ---- */

const msgpack_object *obj_get(const msgpack_object *map, const char *key)
{
	if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
	size_t kn = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kn && memcmp(k->via.str.ptr, key, kn) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

int obj_is_str(const msgpack_object *o, const char *s)
{
	size_t n = strlen(s);
	return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

char *obj_strdup(const SReader *r, const msgpack_object *o, const char *what)
{
	if (!o || o->type != MSGPACK_OBJECT_STR) sr_fail(r, "%s: expected a string", what);
	if (o->via.str.size && memchr(o->via.str.ptr, 0, o->via.str.size)) sr_fail(r, "%s: string contains a NUL byte", what);
	char *s = xmalloc(o->via.str.size + 1);
	if (o->via.str.size) memcpy(s, o->via.str.ptr, o->via.str.size);
	s[o->via.str.size] = 0;
	return s;
}

const char *frame_type(const SReader *r, const msgpack_object *f)
{
	static char buf[64];
	const msgpack_object *t = obj_get(f, "type");
	if (!t) sr_fail(r, "frame has no \"type\"");
	if (t->type != MSGPACK_OBJECT_STR || t->via.str.size >= sizeof buf)
		sr_fail(r, "\"type\" is not a short string");
	memcpy(buf, t->via.str.ptr, t->via.str.size);
	buf[t->via.str.size] = 0;
	return buf;
}

int64_t obj_int(const SReader *r, const msgpack_object *o, const char *what)
{
	if (!o) sr_fail(r, "missing \"%s\"", what);
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > INT64_MAX) sr_fail(r, "%s: integer too large", what);
		return (int64_t)o->via.u64;
	}
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return o->via.i64;
	sr_fail(r, "%s: expected an integer", what);
}

double obj_num(const SReader *r, const msgpack_object *o, const char *what)
{
	if (!o) sr_fail(r, "missing \"%s\"", what);
	switch (o->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER: return (double)o->via.u64;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return (double)o->via.i64;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return o->via.f64;
	default: sr_fail(r, "%s: expected a number", what);
	}
}

char *get_str(const SReader *r, const msgpack_object *f, const char *key)
{
	const msgpack_object *o = obj_get(f, key);
	if (!o) sr_fail(r, "missing \"%s\"", key);
	return obj_strdup(r, o, key);
}

int64_t get_int(const SReader *r, const msgpack_object *f, const char *key) { return obj_int(r, obj_get(f, key), key); }
double get_num(const SReader *r, const msgpack_object *f, const char *key) { return obj_num(r, obj_get(f, key), key); }

int64_t opt_int(const SReader *r, const msgpack_object *f, const char *key, int64_t def)
{
	const msgpack_object *o = obj_get(f, key);
	return o && o->type != MSGPACK_OBJECT_NIL ? obj_int(r, o, key) : def;
}

double opt_num(const SReader *r, const msgpack_object *f, const char *key, double def)
{
	const msgpack_object *o = obj_get(f, key);
	return o && o->type != MSGPACK_OBJECT_NIL ? obj_num(r, o, key) : def;
}

int get_strs(const SReader *r, const msgpack_object *f, const char *key, char ***out)
{
	const msgpack_object *o = obj_get(f, key);
	if (!o) sr_fail(r, "missing \"%s\"", key);
	if (o->type != MSGPACK_OBJECT_ARRAY) sr_fail(r, "%s: expected an array of strings", key);
	uint32_t n = o->via.array.size;
	if (n > INT32_MAX / 2) sr_fail(r, "%s: too many entries", key);
	char **s = xmallocarray(n ? n : 1, sizeof *s);
	for (uint32_t i = 0; i < n; i++) s[i] = obj_strdup(r, &o->via.array.ptr[i], key);
	*out = s;
	return (int)n;
}

/* every check of obj_tensor; fills out but its data; returns the data object */
static const msgpack_object *tensor_check(const SReader *r, const msgpack_object *o, const char *what, int want, int ndim, Tensor *out)
{
	if (!o) sr_fail(r, "missing tensor \"%s\"", what);
	if (o->type != MSGPACK_OBJECT_MAP) sr_fail(r, "%s: tensor is not a map", what);
	const msgpack_object *dt = obj_get(o, "dtype"), *sh = obj_get(o, "shape"), *da = obj_get(o, "data");
	if (!dt || !sh || !da) sr_fail(r, "%s: tensor needs dtype, shape and data", what);
	int t = -1;
	for (int i = 0; i < DT_COUNT; i++)
		if (obj_is_str(dt, dtype_names[i])) t = i;
	if (t < 0) sr_fail(r, "%s: unknown dtype", what);
	if (want >= 0 && t != want) sr_fail(r, "%s: dtype %s, expected %s", what, dtype_names[t], dtype_names[want]);
	if (sh->type != MSGPACK_OBJECT_ARRAY) sr_fail(r, "%s: shape is not an array", what);
	if (sh->via.array.size > TENSOR_MAXDIM) sr_fail(r, "%s: more than %d dimensions", what, TENSOR_MAXDIM);
	if (ndim >= 0 && (int)sh->via.array.size != ndim)
		sr_fail(r, "%s: %u dimensions, expected %d", what, sh->via.array.size, ndim);
	out->dtype = (DType)t;
	out->ndim = (int)sh->via.array.size;
	uint64_t n = 1;
	for (int i = 0; i < out->ndim; i++) {
		const msgpack_object *d = &sh->via.array.ptr[i];
		if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER) sr_fail(r, "%s: shape[%d] is not a non-negative integer", what, i);
		if (d->via.u64 > INT32_MAX) sr_fail(r, "%s: shape[%d] = %llu is too large", what, i, (unsigned long long)d->via.u64);
		out->shape[i] = (int64_t)d->via.u64;
		if (__builtin_mul_overflow(n, d->via.u64, &n)) sr_fail(r, "%s: shape overflows", what);
	}
	uint64_t bytes;
	if (__builtin_mul_overflow(n, (uint64_t)dtype_sizes[t], &bytes)) sr_fail(r, "%s: shape overflows", what);
	if (da->type != MSGPACK_OBJECT_BIN) sr_fail(r, "%s: data is not bin", what);
	if (bytes != da->via.bin.size)
		sr_fail(r, "%s: shape needs %llu bytes, data has %u", what, (unsigned long long)bytes, da->via.bin.size);
	out->nbytes = (size_t)bytes;
	out->data = NULL;
	return da;
}

void obj_tensor(const SReader *r, const msgpack_object *o, const char *what, int want, int ndim, Tensor *out)
{
	const msgpack_object *da = tensor_check(r, o, what, want, ndim, out);
	out->data = xmalloc(out->nbytes);
	memcpy(out->data, da->via.bin.ptr, out->nbytes);
	swap_bytes(out->data, out->nbytes / dtype_sizes[out->dtype], dtype_sizes[out->dtype]);
}

void get_tensor_view(const SReader *r, const msgpack_object *f, const char *key, int want, int ndim, TensorView *out)
{
	Tensor t;
	const msgpack_object *da = tensor_check(r, obj_get(f, key), key, want, ndim, &t);
	out->dtype = t.dtype;
	out->ndim = t.ndim;
	memcpy(out->shape, t.shape, sizeof t.shape);
	out->nbytes = t.nbytes;
	out->data = da->via.bin.ptr;
	/* host order in place: the frame's bytes are the reader's own */
	if (HOST_BIG_ENDIAN && dtype_sizes[t.dtype] > 1)
		swap_bytes((void *)da->via.bin.ptr, t.nbytes / dtype_sizes[t.dtype], dtype_sizes[t.dtype]);
}

void get_tensor(const SReader *r, const msgpack_object *f, const char *key, int want, int ndim, Tensor *out)
{
	obj_tensor(r, obj_get(f, key), key, want, ndim, out);
}

/* ---- header ---- */

void header_init(Header *h, const char *kind)
{
	memset(h, 0, sizeof *h);
	h->version = STREAM_VERSION;
	h->kind = xstrdup(kind);
	h->features = xmalloc(sizeof(char *));
	h->classes = xmalloc(sizeof(char *));
	h->domains = xmalloc(sizeof(char *));
}

static void free_strs(char **s, int n)
{
	for (int i = 0; i < n; i++) free(s[i]);
	free(s);
}

void header_free(Header *h)
{
	free(h->kind);
	free_strs(h->features, h->nfeat);
	free_strs(h->classes, h->nclass);
	free_strs(h->domains, h->ndom);
	for (int i = 0; i < h->nextra; i++) {
		free(h->extra_keys[i]);
		blob_free(&h->extra[i]);
	}
	free(h->extra_keys);
	free(h->extra);
	memset(h, 0, sizeof *h);
}

static char **dup_strs(char *const *s, int n)
{
	char **d = xmallocarray(n ? (size_t)n : 1, sizeof *d);
	for (int i = 0; i < n; i++) d[i] = xstrdup(s[i]);
	return d;
}

void header_copy(Header *dst, const Header *src)
{
	dst->version = src->version;
	dst->kind = xstrdup(src->kind);
	dst->nfeat = src->nfeat; dst->features = dup_strs(src->features, src->nfeat);
	dst->nclass = src->nclass; dst->classes = dup_strs(src->classes, src->nclass);
	dst->ndom = src->ndom; dst->domains = dup_strs(src->domains, src->ndom);
	dst->nextra = 0; dst->extra_keys = NULL; dst->extra = NULL;
	for (int i = 0; i < src->nextra; i++) header_set(dst, src->extra_keys[i], &src->extra[i]);
}

const Blob *header_get(const Header *h, const char *key)
{
	for (int i = 0; i < h->nextra; i++)
		if (strcmp(h->extra_keys[i], key) == 0) return &h->extra[i];
	return NULL;
}

void header_set(Header *h, const char *key, const Blob *b)
{
	int i;
	for (i = 0; i < h->nextra; i++)
		if (strcmp(h->extra_keys[i], key) == 0) break;
	if (i == h->nextra) {
		h->extra_keys = xrealloc(h->extra_keys, sizeof(char *) * (size_t)(h->nextra + 1));
		h->extra = xrealloc(h->extra, sizeof(Blob) * (size_t)(h->nextra + 1));
		h->extra_keys[i] = xstrdup(key);
		h->nextra++;
	} else {
		blob_free(&h->extra[i]);
	}
	blob_copy(&h->extra[i], b);
}

static void header_set_packed(Header *h, const char *key, void (*fn)(msgpack_packer *, const void *), const void *arg)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	fn(&pk, arg);
	Blob b = { sb.data, sb.size };
	header_set(h, key, &b);
	msgpack_sbuffer_destroy(&sb);
}

static void pack_str_fn(msgpack_packer *pk, const void *arg)
{
	const char *s = arg;
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

static void pack_int_fn(msgpack_packer *pk, const void *arg) { msgpack_pack_int64(pk, *(const int64_t *)arg); }

void header_set_str(Header *h, const char *key, const char *s) { header_set_packed(h, key, pack_str_fn, s); }
void header_set_int(Header *h, const char *key, int64_t v) { header_set_packed(h, key, pack_int_fn, &v); }

void header_del(Header *h, const char *key)
{
	for (int i = 0; i < h->nextra; i++)
		if (strcmp(h->extra_keys[i], key) == 0) {
			free(h->extra_keys[i]);
			blob_free(&h->extra[i]);
			memmove(h->extra_keys + i, h->extra_keys + i + 1, sizeof(char *) * (size_t)(h->nextra - i - 1));
			memmove(h->extra + i, h->extra + i + 1, sizeof(Blob) * (size_t)(h->nextra - i - 1));
			h->nextra--;
			return;
		}
}

int header_find_class(const Header *h, const char *name)
{
	for (int i = 0; i < h->nclass; i++)
		if (strcmp(h->classes[i], name) == 0) return i;
	return -1;
}

int header_add_class(Header *h, const char *name)
{
	int i = header_find_class(h, name);
	if (i >= 0) return i;
	h->classes = xrealloc(h->classes, sizeof(char *) * (size_t)(h->nclass + 1));
	h->classes[h->nclass] = xstrdup(name);
	return h->nclass++;
}

int header_add_domain(Header *h, const char *name)
{
	for (int i = 0; i < h->ndom; i++)
		if (strcmp(h->domains[i], name) == 0) return i;
	h->domains = xrealloc(h->domains, sizeof(char *) * (size_t)(h->ndom + 1));
	h->domains[h->ndom] = xstrdup(name);
	return h->ndom++;
}

static const char *std_keys[] = { "type", "version", "kind", "features", "classes", "domains" };

void sw_header(SWriter *w, const Header *h)
{
	sw_map(w, 6 + (size_t)h->nextra);
	sw_key(w, "type"); sw_str(w, "header");
	sw_key(w, "version"); sw_int(w, h->version);
	sw_key(w, "kind"); sw_str(w, h->kind);
	sw_key(w, "features"); sw_strs(w, h->features, h->nfeat);
	sw_key(w, "classes"); sw_strs(w, h->classes, h->nclass);
	sw_key(w, "domains"); sw_strs(w, h->domains, h->ndom);
	for (int i = 0; i < h->nextra; i++) {
		sw_key(w, h->extra_keys[i]);
		sw_blob(w, &h->extra[i]);
	}
	w->frames++;
}

void header_parse(const SReader *r, const msgpack_object *f, Header *h)
{
	memset(h, 0, sizeof *h);
	if (strcmp(frame_type(r, f), "header") != 0) sr_fail(r, "expected a header frame, got \"%s\"", frame_type(r, f));
	int64_t v = get_int(r, f, "version");
	if (v != STREAM_VERSION) sr_fail(r, "stream format version %lld is not supported (this build reads version %d)", (long long)v, STREAM_VERSION);
	h->version = (int)v;
	h->kind = get_str(r, f, "kind");
	h->nfeat = get_strs(r, f, "features", &h->features);
	h->nclass = get_strs(r, f, "classes", &h->classes);
	h->ndom = get_strs(r, f, "domains", &h->domains);
	for (uint32_t i = 0; i < f->via.map.size; i++) {
		const msgpack_object *k = &f->via.map.ptr[i].key;
		if (k->type != MSGPACK_OBJECT_STR) sr_fail(r, "header key is not a string");
		int std = 0;
		for (size_t j = 0; j < sizeof std_keys / sizeof *std_keys; j++)
			if (obj_is_str(k, std_keys[j])) std = 1;
		if (std) continue;
		char *key = obj_strdup(r, k, "header key");
		Blob b;
		blob_from_object(&b, &f->via.map.ptr[i].val);
		header_set(h, key, &b);
		blob_free(&b);
		free(key);
	}
}

/* ---- blocks ---- */

void block_init(Block *b, int f, int cap)
{
	memset(b, 0, sizeof *b);
	b->f = f;
	block_reserve(b, cap > 0 ? cap : 1);
}

void block_reserve(Block *b, int cap)
{
	if (cap <= b->cap) return;
	b->ids = xrealloc(b->ids, sizeof(char *) * (size_t)cap);
	b->x = xrealloc(b->x, sizeof(float) * (size_t)cap * (size_t)(b->f ? b->f : 1));
	b->y = xrealloc(b->y, sizeof(int32_t) * (size_t)cap);
	b->d = xrealloc(b->d, sizeof(int32_t) * (size_t)cap);
	b->cap = cap;
}

void block_clear(Block *b)
{
	for (int i = 0; i < b->n; i++) free(b->ids[i]);
	b->n = 0;
}

void block_free(Block *b)
{
	block_clear(b);
	free(b->ids); free(b->x); free(b->y); free(b->d);
	memset(b, 0, sizeof *b);
}

void block_push(Block *b, const char *id, const float *x, int32_t y, int32_t d)
{
	if (b->n == b->cap) block_reserve(b, b->cap * 2);
	b->ids[b->n] = xstrdup(id);
	if (b->f) memcpy(b->x + (size_t)b->n * b->f, x, sizeof(float) * (size_t)b->f);
	b->y[b->n] = y;
	b->d[b->n] = d;
	b->n++;
}

void sw_block(SWriter *w, const Block *b)
{
	int64_t shx[2] = { b->n, b->f }, sh1[1] = { b->n };
	sw_map(w, 5);
	sw_key(w, "type"); sw_str(w, "data");
	sw_key(w, "ids"); sw_strs(w, b->ids, b->n);
	sw_key(w, "x"); sw_tensor(w, DT_F32, 2, shx, b->x);
	sw_key(w, "y"); sw_tensor(w, DT_I32, 1, sh1, b->y);
	sw_key(w, "d"); sw_tensor(w, DT_I32, 1, sh1, b->d);
	w->frames++;
}

void sw_end(SWriter *w, long rows, long blocks)
{
	sw_map(w, 3);
	sw_key(w, "type"); sw_str(w, "end");
	sw_key(w, "rows"); sw_int(w, rows);
	sw_key(w, "frames"); sw_int(w, blocks);
	w->frames++;
}

/* ---- data streams ---- */

static void data_start(DataIn *in)
{
	in->rows = in->blocks = 0;
	in->done = 0;
	const msgpack_object *f = sr_next(&in->r);
	if (!f) sr_fail(&in->r, "empty stream (no header frame)");
	header_parse(&in->r, f, &in->h);
	if (strcmp(in->h.kind, "data") != 0)
		sr_fail(&in->r, "a \"%s\" stream, not a data stream", in->h.kind);
}

void data_open(DataIn *in, const char *path) { sr_open(&in->r, path); data_start(in); }
void data_open_fd(DataIn *in, int fd, const char *name) { sr_open_fd(&in->r, fd, name); data_start(in); }

const msgpack_object *stream_next_of(SReader *r, const char *type, long rows, int *done)
{
	for (;;) {
		const msgpack_object *f = sr_next(r);
		if (!f) {
			r->frame++;
			sr_fail(r, "stream ends without an end frame (did the producer fail?)");
		}
		const char *t = frame_type(r, f);
		if (strcmp(t, "end") == 0) {
			int64_t n = get_int(r, f, "rows");
			if (n != rows) sr_fail(r, "end frame counts %lld rows, stream had %ld", (long long)n, rows);
			*done = 1;
			if (sr_next(r)) sr_fail(r, "data after the end frame");
			return NULL;
		}
		if (strcmp(t, type) == 0) return f;
		if (strcmp(t, "header") == 0) sr_fail(r, "a second header frame");
		/* unknown frame types are skipped: later versions may add some */
	}
}

int data_next(DataIn *in, Block *b)
{
	if (in->done) return 0;
	{
		const msgpack_object *f = stream_next_of(&in->r, "data", in->rows, &in->done);
		if (!f) return 0;
		Tensor x, y, d;
		char **ids;
		int n = get_strs(&in->r, f, "ids", &ids);
		get_tensor(&in->r, f, "x", DT_F32, 2, &x);
		get_tensor(&in->r, f, "y", DT_I32, 1, &y);
		get_tensor(&in->r, f, "d", DT_I32, 1, &d);
		if (x.shape[0] != n || y.shape[0] != n || d.shape[0] != n)
			sr_fail(&in->r, "ids, x, y and d disagree on the number of rows");
		if (x.shape[1] != in->h.nfeat)
			sr_fail(&in->r, "x has %lld columns, header has %d features", (long long)x.shape[1], in->h.nfeat);
		const int32_t *yy = y.data, *dd = d.data;
		for (int i = 0; i < n; i++) {
			if (yy[i] < -1 || yy[i] >= in->h.nclass) sr_fail(&in->r, "row %d (%s): label %d is not a class of the header", i, ids[i], yy[i]);
			if (dd[i] < 0 || dd[i] >= in->h.ndom) sr_fail(&in->r, "row %d (%s): domain %d is not a domain of the header", i, ids[i], dd[i]);
		}
		const float *xx = x.data;
		for (size_t i = 0; i < (size_t)n * (size_t)in->h.nfeat; i++)
			if (!isfinite(xx[i])) {
				size_t row = i / (size_t)in->h.nfeat, col = i % (size_t)in->h.nfeat;
				sr_fail(&in->r, "row %zu (%s): feature %s is %s", row, ids[row], in->h.features[col],
				        isnan(xx[i]) ? "NaN" : "infinite");
			}
		block_clear(b);
		if (b->f != in->h.nfeat || b->cap < n) {
			free(b->x); b->x = NULL; b->cap = 0; b->f = in->h.nfeat;
			free(b->ids); free(b->y); free(b->d);
			b->ids = NULL; b->y = b->d = NULL;
			block_reserve(b, n > 0 ? n : 1);
		}
		for (int i = 0; i < n; i++) b->ids[i] = ids[i];
		free(ids);
		memcpy(b->x, x.data, x.nbytes);
		memcpy(b->y, y.data, y.nbytes);
		memcpy(b->d, d.data, d.nbytes);
		b->n = n;
		tensor_free(&x); tensor_free(&y); tensor_free(&d);
		in->rows += n;
		in->blocks++;
		return 1;
	}
}

void data_close(DataIn *in)
{
	header_free(&in->h);
	sr_close(&in->r);
}
