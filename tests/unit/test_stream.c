/* test_stream.c: the stream reader and writer. Every dtype round-trips; every
 * truncated prefix of a valid stream and random bytes are rejected with a message
 * (never a crash); a declared shape too large or overflowing is rejected before
 * allocating. Failing reads run in a child process (the reader dies on bad input). */
#include "check.h"
#include "rng.h"
#include "stream.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *mem;
static size_t memlen;

/* a valid data stream in memory: header, two data frames, end */
static void make_stream(void)
{
	FILE *m = open_memstream(&mem, &memlen);
	SWriter w;
	sw_init(&w, m, "mem");
	Header h;
	header_init(&h, "data");
	h.features = xrealloc(h.features, 2 * sizeof(char *));
	h.features[0] = xstrdup("G1"); h.features[1] = xstrdup("G2"); h.nfeat = 2;
	header_add_class(&h, "a");
	header_add_domain(&h, "d");
	header_set_str(&h, "note", "kept");
	sw_header(&w, &h);
	Block b;
	block_init(&b, 2, 2);
	float x[2] = { 1.5f, -2 };
	for (int k = 0; k < 2; k++) {
		block_clear(&b);
		block_push(&b, k ? "s2" : "s1", x, k ? -1 : 0, 0);
		sw_block(&w, &b);
	}
	sw_end(&w, 2, 2);
	fclose(m);
	block_free(&b);
	header_free(&h);
}

/* read a stream from bytes in a child; returns the exit status (0 = read fully);
 * the child's stderr goes to errbuf */
static int read_child(const char *bytes, size_t n, char *errbuf, size_t errcap)
{
	int in[2], er[2];
	if (pipe(in) || pipe(er)) return -1;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(in[1]); close(er[0]);
		dup2(er[1], 2);
		close(1);
		DataIn d;
		data_open_fd(&d, in[0], "mem");
		Block b;
		block_init(&b, 0, 1);
		while (data_next(&d, &b)) {}
		_exit(0);
	}
	close(in[0]); close(er[1]);
	size_t off = 0;
	while (off < n) {
		ssize_t k = write(in[1], bytes + off, n - off);
		if (k <= 0) break;
		off += (size_t)k;
	}
	close(in[1]);
	size_t got = 0;
	ssize_t k;
	while ((k = read(er[0], errbuf + got, errcap - 1 - got)) > 0) got += (size_t)k;
	errbuf[got] = 0;
	close(er[0]);
	int st;
	waitpid(pid, &st, 0);
	if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

static void test_roundtrip(void)
{
	char *buf;
	size_t len;
	FILE *m = open_memstream(&buf, &len);
	SWriter w;
	sw_init(&w, m, "mem");
	float f32[3] = { 1.5f, -0.25f, 3e38f };
	double f64[2] = { 1e-300, -2.5 };
	int32_t i32[4] = { -1, 0, 7, INT32_MAX };
	int64_t i64[2] = { INT64_MIN, 42 };
	uint8_t u8[5] = { 0, 1, 127, 128, 255 };
	const void *data[DT_COUNT] = { f32, f64, i32, i64, u8 };
	int64_t shapes[DT_COUNT][2] = { { 3, 1 }, { 1, 2 }, { 2, 2 }, { 2, 1 }, { 5, 1 } };
	sw_map(&w, DT_COUNT + 1);
	sw_key(&w, "type"); sw_str(&w, "t");
	for (int t = 0; t < DT_COUNT; t++) {
		sw_key(&w, dtype_names[t]);
		sw_tensor(&w, (DType)t, 2, shapes[t], data[t]);
	}
	fclose(m);
	char path[] = "/tmp/dapipe-stream-XXXXXX";
	int fd = mkstemp(path);
	if (write(fd, buf, len) != (ssize_t)len) return;
	close(fd);
	SReader r;
	sr_open(&r, path);
	const msgpack_object *f = sr_next(&r);
	for (int t = 0; t < DT_COUNT; t++) {
		Tensor tt;
		get_tensor(&r, f, dtype_names[t], t, 2, &tt);
		char name[64];
		snprintf(name, sizeof name, "round trip %s", dtype_names[t]);
		CHECK(name, tt.dtype == (DType)t && tt.shape[0] == shapes[t][0] && tt.shape[1] == shapes[t][1] &&
		      tt.nbytes == (size_t)tensor_numel(&tt) * dtype_size((DType)t) && memcmp(tt.data, data[t], tt.nbytes) == 0);
		tensor_free(&tt);
	}
	CHECK("round trip: clean end", sr_next(&r) == NULL);
	sr_close(&r);
	unlink(path);
	free(buf);
}

static void test_valid_and_truncated(void)
{
	char err[4096];
	int rc = read_child(mem, memlen, err, sizeof err);
	CHECK("valid stream reads", rc == 0 && err[0] == 0);
	int crashes = 0, accepted = 0, silent = 0;
	for (size_t n = 0; n < memlen; n++) {
		rc = read_child(mem, n, err, sizeof err);
		if (rc > 128) crashes++;
		else if (rc == 0) accepted++;
		else if (strncmp(err, "test_stream: mem", 16) != 0 || !strchr(err, '\n') || strchr(err, '\n')[1]) silent++;
	}
	CHECK("every truncated prefix: no crash", crashes == 0);
	CHECK("every truncated prefix: rejected", accepted == 0);
	CHECK("every truncated prefix: one line naming the input", silent == 0);
}

static void test_random(void)
{
	Rng g;
	rng_seed(&g, 11);
	char err[4096], bytes[1024];
	ASSERT(memlen < sizeof bytes);
	int crashes = 0, accepted = 0;
	for (int it = 0; it < 300; it++) {
		size_t n = 1 + rng_below(&g, sizeof bytes);
		for (size_t i = 0; i < n; i++) bytes[i] = (char)rng_below(&g, 256);
		if (it % 3 == 0) {
			/* a damaged prefix of the valid stream (a flipped byte alone may hit data) */
			n = 1 + rng_below(&g, memlen - 1);
			memcpy(bytes, mem, n);
			bytes[rng_below(&g, n)] ^= (char)(1 + rng_below(&g, 255));
		}
		int rc = read_child(bytes, n, err, sizeof err);
		if (rc > 128) crashes++;
		else if (rc == 0) accepted++;
	}
	CHECK("random bytes: no crash", crashes == 0);
	CHECK("random bytes: rejected", accepted == 0);
}

/* frames with a declared size beyond the limit or a shape that overflows */
static void test_shapes(void)
{
	char err[4096];
	/* a bin header declaring 4 GiB - 1 bytes, with 10 bytes present */
	unsigned char huge[] = { 0x81, 0xa4, 't', 'y', 'p', 'e', 0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	setenv("DAPIPE_MAX_FRAME", "100000", 1);
	int rc = read_child((char *)huge, sizeof huge, err, sizeof err);
	CHECK("declared size beyond the frame limit: rejected", rc == 1 && strstr(err, "frame limit"));
	/* an array of 2^32-1 elements declared */
	unsigned char arr[] = { 0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0 };
	rc = read_child((char *)arr, sizeof arr, err, sizeof err);
	CHECK("declared array beyond the frame limit: rejected", rc == 1 && strstr(err, "frame limit"));
	unsetenv("DAPIPE_MAX_FRAME");
	/* tensor shapes that overflow or exceed the data, checked before allocating */
	int64_t shapes[3][2] = { { INT32_MAX, INT32_MAX }, { 1000000, 1000000 }, { 3, 1 } };
	const char *why[3] = { "overflow or mismatch", "mismatch", "mismatch" };
	for (int k = 0; k < 3; k++) {
		char *buf;
		size_t len;
		FILE *m = open_memstream(&buf, &len);
		msgpack_packer pk;
		SWriter w;
		sw_init(&w, m, "mem");
		pk = w.pk;
		sw_map(&w, 2);
		sw_key(&w, "type"); sw_str(&w, "t");
		sw_key(&w, "x");
		sw_map(&w, 3);
		sw_key(&w, "dtype"); sw_str(&w, "f32");
		sw_key(&w, "shape"); sw_array(&w, 2); sw_int(&w, shapes[k][0]); sw_int(&w, shapes[k][1]);
		sw_key(&w, "data"); msgpack_pack_bin(&pk, 8); msgpack_pack_bin_body(&pk, "12345678", 8);
		fclose(m);
		int in[2], er[2];
		if (pipe(in) || pipe(er)) return;
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			close(in[1]); close(er[0]);
			dup2(er[1], 2);
			close(1);
			SReader r;
			sr_open_fd(&r, in[0], "mem");
			const msgpack_object *f = sr_next(&r);
			Tensor t;
			get_tensor(&r, f, "x", -1, -1, &t);
			_exit(0);
		}
		close(in[0]); close(er[1]);
		if (write(in[1], buf, len) != (ssize_t)len) return;
		close(in[1]);
		size_t got = 0;
		ssize_t k;
		while ((k = read(er[0], err + got, sizeof err - 1 - got)) > 0) got += (size_t)k;
		err[got] = 0;
		close(er[0]);
		int st;
		waitpid(pid, &st, 0);
		if (!(WIFEXITED(st) && WEXITSTATUS(st) == 1)) printf("# status %d: %s\n", st, err);
		char name[96];
		snprintf(name, sizeof name, "tensor shape %lldx%lld rejected (%s)", (long long)shapes[k][0], (long long)shapes[k][1], why[k]);
		CHECK(name, WIFEXITED(st) && WEXITSTATUS(st) == 1 && (strstr(err, "bytes") || strstr(err, "overflow")));
		free(buf);
	}
}

/* a few bytes that declare a 2 GiB bin: refused as truncated, and the reader reserved
 * room for a bounded part of the declaration only (not 2 GiB ahead of the bytes) */
static void test_forged_declaration(void)
{
	static const unsigned char forged[] = { 0x81, 0xa1, 'x', 0xc6, 0x7f, 0xff, 0xff, 0x00, 1, 2, 3 };
	int p[2];
	if (pipe(p) != 0) { CHECK("forged: pipe", 0); return; }
	if (write(p[1], forged, sizeof forged) != (ssize_t)sizeof forged) { CHECK("forged: write", 0); return; }
	close(p[1]);
	SReader r;
	sr_open_fd(&r, p[0], "forged");
	r.own_fd = 1;
	const msgpack_object *f;
	const char *why = NULL;
	int k = sr_try_next(&r, &f, &why);
	CHECK("forged declaration refused", k < 0 && why && strstr(why, "truncated"));
	CHECK("forged declaration reserved little", r.cap <= ((size_t)128 << 20));
	sr_close(&r);
}

int main(void)
{
	util_init("test_stream");
	make_stream();
	test_roundtrip();
	test_valid_and_truncated();
	test_random();
	test_shapes();
	test_forged_declaration();
	free(mem);
	return check_status();
}
