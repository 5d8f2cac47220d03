/* stream.h: the msgpack tensor stream (see docs/FORMAT.md).
 *
 * A stream is a sequence of msgpack maps ("frames") with string keys and a "type".
 * A data stream is: header, data*, end. Tensors are maps {dtype, shape, data(bin, LE)}.
 *
 * SWriter packs frames onto a FILE*. SReader reads frames from a file descriptor with
 * read(2) (so it works for request/response over pipes), checks each frame completely
 * before unpacking it (declared lengths are bounded by the bytes actually present, and
 * by a frame-size limit), and dies with "FILE: frame N: reason" on anything malformed.
 * DataIn/DataOut add the header/data/end discipline on top. */
#ifndef DAPIPE_STREAM_H
#define DAPIPE_STREAM_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define STREAM_VERSION 1

typedef enum { DT_F32, DT_F64, DT_I32, DT_I64, DT_U8, DT_COUNT } DType;
extern const char *dtype_names[DT_COUNT];
size_t dtype_size(DType t);

#define TENSOR_MAXDIM 8
typedef struct {
	DType dtype;
	int ndim;
	int64_t shape[TENSOR_MAXDIM];
	void *data;     /* owned, nbytes */
	size_t nbytes;
} Tensor;
int64_t tensor_numel(const Tensor *t);
void tensor_free(Tensor *t);

/* A packed msgpack value kept verbatim (e.g. preprocessing statistics). */
typedef struct { char *data; size_t len; } Blob;
void blob_from_object(Blob *b, const msgpack_object *o);
void blob_copy(Blob *dst, const Blob *src);  /* dst gets its own copy of src's bytes */
void blob_free(Blob *b);
/* unpack a blob into a zone-backed object valid while *up lives */
const msgpack_object *blob_object(const Blob *b, msgpack_unpacked *up);

/* ---- writer ---- */
typedef struct {
	FILE *fp;
	const char *name;  /* for messages */
	msgpack_packer pk;
	long frames;
} SWriter;
void sw_init(SWriter *w, FILE *fp, const char *name);
void sw_map(SWriter *w, size_t n);
void sw_array(SWriter *w, size_t n);
void sw_key(SWriter *w, const char *k);     /* a string */
void sw_str(SWriter *w, const char *s);
void sw_int(SWriter *w, int64_t v);
void sw_double(SWriter *w, double v);
void sw_bool(SWriter *w, int v);
void sw_nil(SWriter *w);
void sw_strs(SWriter *w, char *const *s, int n);
void sw_tensor(SWriter *w, DType t, int ndim, const int64_t *shape, const void *data);
void sw_blob(SWriter *w, const Blob *b);
void sw_object(SWriter *w, const msgpack_object *o);
void sw_flush(SWriter *w);  /* fflush, dies on error */

/* ---- reader ---- */
typedef struct {
	int fd;
	int own_fd;
	char *name;
	char *buf;
	size_t len, pos, cap;
	size_t max_frame;
	long frame;          /* number of the frame last returned, from 1 */
	int eof;
	msgpack_unpacked res;
	double deadline;     /* now_seconds() by which the next frame must be complete; 0: none */
	/* sr_set_buffer: the buffer's owner; NULL: the heap */
	char *(*grow)(void *ctx, size_t cap);
	void *grow_ctx;
} SReader;
/* path "-" is stdin. max frame size: $DAPIPE_MAX_FRAME bytes, default 2 GiB. */
void sr_open(SReader *r, const char *path);
void sr_open_fd(SReader *r, int fd, const char *name);
/* Next frame (a map), valid until the next call; NULL at a clean end of input
 * (no bytes left). Dies on truncation, malformed msgpack or a non-map frame. */
const msgpack_object *sr_next(SReader *r);
void sr_close(SReader *r);
_Noreturn void sr_fail(const SReader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like sr_next but returns -1 with *why set instead of dying (for protocol peers);
 * -2 (why "timed out") when r->deadline is set and passes before a frame is complete. */
int sr_try_next(SReader *r, const msgpack_object **out, const char **why);
/* Let the caller own the reader's buffer (e.g. shared memory, so that a frame's tensors
 * are read once by the kernel straight to where another process reads them):
 * grow(ctx, cap) returns a buffer of at least cap bytes that keeps the bytes of the
 * previous one (at the same offsets), or NULL, after which the reader goes on in the
 * heap. Called between frames (the last frame returned is no longer valid); the
 * unread bytes move to the new buffer's start. sr_close does not free it.
 * A frame of large tensors is read so that it ends where the buffered bytes end, so a
 * frame's bytes are never moved once read and the next frame starts at offset 0. */
void sr_set_buffer(SReader *r, char *(*grow)(void *ctx, size_t cap), void *ctx);

/* ---- object access (all die through sr_fail with the key named) ---- */
const msgpack_object *obj_get(const msgpack_object *map, const char *key);
int obj_is_str(const msgpack_object *o, const char *s);
const char *frame_type(const SReader *r, const msgpack_object *f); /* static buffer copy */
char *obj_strdup(const SReader *r, const msgpack_object *o, const char *what);
int64_t obj_int(const SReader *r, const msgpack_object *o, const char *what);
double obj_num(const SReader *r, const msgpack_object *o, const char *what);
/* required fields */
char *get_str(const SReader *r, const msgpack_object *f, const char *key);
int64_t get_int(const SReader *r, const msgpack_object *f, const char *key);
double get_num(const SReader *r, const msgpack_object *f, const char *key);
/* optional fields with defaults */
int64_t opt_int(const SReader *r, const msgpack_object *f, const char *key, int64_t def);
double opt_num(const SReader *r, const msgpack_object *f, const char *key, double def);
/* array of strings; returns count */
int get_strs(const SReader *r, const msgpack_object *f, const char *key, char ***out);
/* A tensor field, copied and checked: dtype must be want (or any if want<0),
 * ndim must be ndim (or any if ndim<0), shape product * size == data length. */
void get_tensor(const SReader *r, const msgpack_object *f, const char *key, int want, int ndim, Tensor *out);
void obj_tensor(const SReader *r, const msgpack_object *o, const char *what, int want, int ndim, Tensor *out);
/* get_tensor without the copy: data points into the frame (host order; valid until the
 * next frame; not to be freed; take each tensor's view once, and only read it through
 * memcpy-like access: it may not be aligned). */
typedef struct {
	DType dtype;
	int ndim;
	int64_t shape[TENSOR_MAXDIM];
	const void *data;
	size_t nbytes;
} TensorView;
void get_tensor_view(const SReader *r, const msgpack_object *f, const char *key, int want, int ndim, TensorView *out);

/* ---- data streams ---- */
typedef struct {
	int version;
	char *kind;          /* "data" for samples, "model" for bundles */
	int nfeat;
	char **features;
	int nclass;
	char **classes;
	int ndom;
	char **domains;
	/* every other key of the header, kept verbatim and re-emitted */
	int nextra;
	char **extra_keys;
	Blob *extra;
} Header;
void header_init(Header *h, const char *kind);
void header_free(Header *h);
void header_copy(Header *dst, const Header *src);
const Blob *header_get(const Header *h, const char *key);
void header_set(Header *h, const char *key, const Blob *b); /* copies */
void header_set_str(Header *h, const char *key, const char *s);
void header_set_int(Header *h, const char *key, int64_t v);
void header_del(Header *h, const char *key);
int header_find_class(const Header *h, const char *name);  /* -1 if absent */
int header_add_class(Header *h, const char *name);         /* index */
int header_add_domain(Header *h, const char *name);
void sw_header(SWriter *w, const Header *h);
void header_parse(const SReader *r, const msgpack_object *f, Header *h);

typedef struct {
	int n, f;       /* rows, features */
	int cap;        /* rows allocated */
	char **ids;     /* n owned strings */
	float *x;       /* n x f */
	int32_t *y;     /* n; -1 = unlabelled */
	int32_t *d;     /* n; domain index into header domains */
} Block;
void block_init(Block *b, int f, int cap);
void block_clear(Block *b);       /* n = 0, frees ids */
void block_free(Block *b);
void block_reserve(Block *b, int cap);
/* append one row (copies id and x) */
void block_push(Block *b, const char *id, const float *x, int32_t y, int32_t d);
void sw_block(SWriter *w, const Block *b);

typedef struct {
	SReader r;
	Header h;
	long rows;
	long blocks;
	int done;
} DataIn;
/* opens, reads and checks the header (version, kind "data") */
void data_open(DataIn *in, const char *path);
void data_open_fd(DataIn *in, int fd, const char *name);
/* 1: a block (replaces *b's contents); 0: end frame seen and checked.
 * Dies on missing end, unknown frame type, wrong widths, labels or domains
 * outside the header's lists. */
int data_next(DataIn *in, Block *b);
void data_close(DataIn *in);
/* The next frame of the given type in a header/frames/end stream, skipping unknown
 * types; NULL (and *done = 1) at the end frame, whose row count must equal rows.
 * Dies on a missing end frame, a second header or data after the end. */
const msgpack_object *stream_next_of(SReader *r, const char *type, long rows, int *done);

void sw_end(SWriter *w, long rows, long blocks);

#endif
