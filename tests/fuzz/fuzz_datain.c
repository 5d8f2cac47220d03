/* fuzz_datain.c: the data-stream discipline (DataIn) over arbitrary bytes, and a
 * round trip through the writer.
 *
 * data_open_fd + data_next until the end frame, under FUZZ_TRY (a die() is the
 * expected answer to most inputs). When the reader accepts the whole stream, the
 * header and blocks are written again with sw_header/sw_block/sw_end and read back:
 * that second read must not fail and must give the same header (features, classes,
 * domains, extra keys byte for byte) and the same rows (ids, x bits, y, d).
 * Properties: no crash, no sanitizer report, no leak on a clean path, die() always
 * exits 1, writer output is always readable, the round trip is exact. */
#include "fuzz.h"
#include "stream.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	setenv("DAPIPE_MAX_FRAME", "1048576", 1);
	return 0;
}

typedef struct {
	Header h;
	int nblock;
	Block *blocks;
	long rows;
} Stream;

static void stream_free(Stream *s)
{
	for (int i = 0; i < s->nblock; i++) block_free(&s->blocks[i]);
	free(s->blocks);
	header_free(&s->h);
	memset(s, 0, sizeof *s);
}

/* The reader lives here so that its msgpack zone (allocated inside libmsgpackc,
 * not recorded by fuzz.h) can be released after a die(). */
static DataIn in;

static void reader_cleanup(void)
{
	msgpack_unpacked_destroy(&in.r.res);
	memset(&in, 0, sizeof in);
}

/* Read a whole data stream from fd into s. Dies on bad input. */
static void read_all(int fd, Stream *s)
{
	memset(&in, 0, sizeof in);
	data_open_fd(&in, fd, "fuzz");
	header_copy(&s->h, &in.h);
	Block b;
	block_init(&b, in.h.nfeat, 1);
	while (data_next(&in, &b)) {
		s->blocks = realloc(s->blocks, sizeof *s->blocks * (size_t)(s->nblock + 1));
		if (!s->blocks) abort();
		Block *c = &s->blocks[s->nblock++];
		block_init(c, b.f, b.n);
		for (int i = 0; i < b.n; i++)
			block_push(c, b.ids[i], b.x + (size_t)i * (size_t)b.f, b.y[i], b.d[i]);
		s->rows += b.n;
	}
	if (in.rows != s->rows) abort();
	block_free(&b);
	data_close(&in);
}

static int strs_eq(char **a, int na, char **b, int nb)
{
	if (na != nb) return 0;
	for (int i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0) return 0;
	return 1;
}

static void compare(const Stream *a, const Stream *b)
{
	if (a->h.version != b->h.version || strcmp(a->h.kind, b->h.kind) != 0) abort();
	if (!strs_eq(a->h.features, a->h.nfeat, b->h.features, b->h.nfeat)) abort();
	if (!strs_eq(a->h.classes, a->h.nclass, b->h.classes, b->h.nclass)) abort();
	if (!strs_eq(a->h.domains, a->h.ndom, b->h.domains, b->h.ndom)) abort();
	if (a->h.nextra != b->h.nextra) abort();
	for (int i = 0; i < a->h.nextra; i++) {
		const Blob *x = header_get(&b->h, a->h.extra_keys[i]);
		if (!x || x->len != a->h.extra[i].len || memcmp(x->data, a->h.extra[i].data, x->len) != 0) abort();
	}
	if (a->nblock != b->nblock || a->rows != b->rows) abort();
	for (int k = 0; k < a->nblock; k++) {
		const Block *p = &a->blocks[k], *q = &b->blocks[k];
		if (p->n != q->n || p->f != q->f) abort();
		for (int i = 0; i < p->n; i++)
			if (strcmp(p->ids[i], q->ids[i]) != 0 || p->y[i] != q->y[i] || p->d[i] != q->d[i]) abort();
		if (p->n && p->f && memcmp(p->x, q->x, sizeof(float) * (size_t)p->n * (size_t)p->f) != 0) abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = fuzz_fd(data, size);
	fuzz_begin();
	Stream a;
	memset(&a, 0, sizeof a);
	int died;
	FUZZ_TRY(died, read_all(fd, &a));
	close(fd);
	if (died) {
		if (fuzz_exit_code != 1) abort();
		reader_cleanup();
		fuzz_end(); /* frees what the reader left (a's parts included) */
		return 0;
	}

	/* round trip: write, read back, compare */
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	if (!fp) abort();
	SWriter w;
	sw_init(&w, fp, "memory");
	sw_header(&w, &a.h);
	for (int k = 0; k < a.nblock; k++) sw_block(&w, &a.blocks[k]);
	sw_end(&w, a.rows, a.nblock);
	if (fclose(fp) != 0) abort();
	int fd2 = fuzz_fd((const uint8_t *)buf, len);
	free(buf);
	Stream b;
	memset(&b, 0, sizeof b);
	FUZZ_TRY(died, read_all(fd2, &b));
	close(fd2);
	if (died) {
		fprintf(stdout, "fuzz: the reader rejects what the writer wrote\n");
		abort();
	}
	compare(&a, &b);
	stream_free(&a);
	stream_free(&b);
	fuzz_end();
	return 0;
}
