/* fuzz_stream.c: the stream reader over arbitrary bytes.
 *
 * Pass 1: sr_try_next in a loop (the non-dying path the stage protocol uses); every
 * frame it returns is then taken apart with the dying accessors, each under FUZZ_TRY:
 * frame_type, header_parse (+ header_copy, header_free), and for every key obj_tensor
 * on maps, get_strs on arrays, obj_int/obj_num on scalars, obj_strdup on strings,
 * blob_from_object/blob_object on everything.
 * Pass 2: the same bytes through sr_next until it dies or ends.
 * Properties: no crash, no sanitizer report, no leak on a clean path, a tensor that
 * obj_tensor accepts has nbytes == numel * dtype size, and sr_try_next's error paths
 * count the frame. */
#include "fuzz.h"
#include "stream.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

static void poke_value(SReader *r, const msgpack_object *f, const msgpack_object *k, const msgpack_object *v)
{
	char key[64];
	size_t n = 0;
	if (k->type == MSGPACK_OBJECT_STR) {
		n = k->via.str.size < sizeof key - 1 ? k->via.str.size : sizeof key - 1;
		if (n) memcpy(key, k->via.str.ptr, n);
	}
	key[n] = 0;
	int died;
	switch (v->type) {
	case MSGPACK_OBJECT_MAP: {
		Tensor t = { 0 };
		FUZZ_TRY(died, obj_tensor(r, v, key, -1, -1, &t));
		if (!died) {
			if (t.ndim < 0 || t.ndim > TENSOR_MAXDIM) abort();
			if ((uint64_t)tensor_numel(&t) * dtype_size(t.dtype) != t.nbytes) abort();
			tensor_free(&t);
		}
		/* the strict form the data frames use */
		Tensor u = { 0 };
		FUZZ_TRY(died, obj_tensor(r, v, key, DT_F32, 2, &u));
		if (!died) {
			if (u.ndim != 2 || u.dtype != DT_F32) abort();
			tensor_free(&u);
		}
		break;
	}
	case MSGPACK_OBJECT_ARRAY: {
		char **s = NULL;
		volatile int cnt = 0;
		if (n) {
			FUZZ_TRY(died, cnt = get_strs(r, f, key, &s));
			if (!died) {
				for (int i = 0; i < cnt; i++) free(s[i]);
				free(s);
			}
		}
		break;
	}
	case MSGPACK_OBJECT_STR: {
		char *s = NULL;
		FUZZ_TRY(died, s = obj_strdup(r, v, key));
		if (!died) free(s);
		break;
	}
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: {
		volatile int64_t i = 0;
		volatile double d = 0;
		FUZZ_TRY(died, i = obj_int(r, v, key));
		FUZZ_TRY(died, d = obj_num(r, v, key));
		(void)i; (void)d;
		break;
	}
	default:
		break;
	}
	/* verbatim copy, as header extras are kept */
	Blob b;
	blob_from_object(&b, v);
	msgpack_unpacked up;
	const msgpack_object *o = blob_object(&b, &up);
	Blob c;
	blob_from_object(&c, o);
	if (c.len != b.len || memcmp(c.data, b.data, b.len) != 0) abort();
	msgpack_unpacked_destroy(&up);
	blob_free(&b);
	blob_free(&c);
}

static void poke_frame(SReader *r, const msgpack_object *f)
{
	int died;
	const char *volatile t = NULL;
	FUZZ_TRY(died, t = frame_type(r, f));
	if (!died && strcmp(t, "header") == 0) {
		Header h;
		memset(&h, 0, sizeof h);
		FUZZ_TRY(died, header_parse(r, f, &h));
		if (died) {
			/* what header_parse stored so far is owned by h */
			header_free(&h);
		} else {
			Header c;
			header_copy(&c, &h);
			if (c.nfeat != h.nfeat || c.nclass != h.nclass || c.nextra != h.nextra) abort();
			for (int i = 0; i < h.nextra; i++) {
				const Blob *b = header_get(&c, h.extra_keys[i]);
				if (!b || b->len != h.extra[i].len || memcmp(b->data, h.extra[i].data, b->len)) abort();
			}
			header_free(&c);
			header_free(&h);
		}
	}
	for (uint32_t i = 0; i < f->via.map.size && i < 64; i++)
		poke_value(r, f, &f->via.map.ptr[i].key, &f->via.map.ptr[i].val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = fuzz_fd(data, size);
	fuzz_begin();

	SReader r;
	sr_open_fd(&r, fd, "fuzz");
	const msgpack_object *f;
	const char *why;
	int k;
	long frames = 0;
	while ((k = sr_try_next(&r, &f, &why)) > 0) {
		frames++;
		if (r.frame != frames) abort();
		if (f->type != MSGPACK_OBJECT_MAP) abort();
		poke_frame(&r, f);
	}
	if (k < 0 && (r.frame != frames + 1 || !why || !*why)) abort();
	sr_close(&r);

	/* pass 2: the dying reader */
	if (lseek(fd, 0, SEEK_SET) != 0) abort();
	SReader r2;
	sr_open_fd(&r2, fd, "fuzz");
	int died;
	FUZZ_TRY(died, while (sr_next(&r2)) {});
	if (died) {
		if (fuzz_exit_code != 1) abort();
		msgpack_unpacked_destroy(&r2.res);
	} else {
		sr_close(&r2);
	}
	/* frames that pass 1 accepted cleanly must not make pass 2 fail, and vice versa */
	if ((k < 0) != died) abort();

	fuzz_end();
	close(fd);
	return 0;
}
