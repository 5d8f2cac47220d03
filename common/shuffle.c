/* shuffle.c: see shuffle.h. */
#include "shuffle.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WBUF_BYTES ((size_t)1 << 20)

size_t cgroup_memory_limit(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) return 0;
	char buf[64];
	size_t v = 0;
	if (fgets(buf, sizeof buf, f)) {
		char *end;
		unsigned long long x = strtoull(buf, &end, 10);
		/* cgroup v1 writes "no limit" as a page-rounded LLONG_MAX */
		if (end != buf && x > 0 && x < (1ull << 60)) v = (size_t)x;
	}
	fclose(f);
	return v;
}

size_t rows_default_limit(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	size_t mem = pages > 0 && psize > 0 ? (size_t)pages * (size_t)psize : (size_t)2 << 30;
	/* a container's limit, when lower than the machine's memory (cgroup v2, then v1) */
	static const char *files[] = { "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes" };
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		size_t c = cgroup_memory_limit(files[i]);
		if (c > 0 && c < mem) mem = c;
	}
	return mem / 2;
}

void rows_init(RowStore *s, size_t rowbytes, RowBudget *bud, const char *name)
{
	memset(s, 0, sizeof *s);
	ASSERT(rowbytes > 0);
	s->name = name;
	s->rowbytes = rowbytes;
	s->bud = bud;
	s->fd = -1;
}

int rows_spilled(const RowStore *s) { return s->fd >= 0; }

static void write_all(RowStore *s, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(s->fd, p, len);
		if (w < 0) {
			if (errno == EINTR) continue;
			die("%s: writing the spill file in %s:", s->name, s->dir);
		}
		p += w;
		len -= (size_t)w;
	}
}

static void flush_wbuf(RowStore *s)
{
	if (s->wlen) write_all(s, s->wbuf, s->wlen);
	s->wlen = 0;
}

/* move the rows held in memory to a new temporary file */
static void spill(RowStore *s)
{
	const char *dir = s->bud && s->bud->dir ? s->bud->dir : getenv("TMPDIR");
	if (!dir || !*dir) dir = "/tmp";
	s->dir = xstrdup(dir);
	char *path = xasprintf("%s/dapipe-spill-XXXXXX", dir);
	s->fd = mkstemp(path);
	if (s->fd < 0) die("%s: cannot create a spill file in %s:", s->name, dir);
	/* the name goes at once: the file lives as long as the descriptor */
	if (unlink(path) != 0) die("%s: cannot unlink the spill file %s:", s->name, path);
	free(path);
	if (s->n) write_all(s, s->mem, (size_t)s->n * s->rowbytes);
	if (s->bud) s->bud->used -= s->cap * s->rowbytes;
	free(s->mem);
	s->mem = NULL;
	s->cap = 0;
	s->wcap = WBUF_BYTES > s->rowbytes ? WBUF_BYTES : s->rowbytes;
	s->wbuf = xmalloc(s->wcap);
	s->wlen = 0;
}

void rows_append(RowStore *s, const void *rows, long n)
{
	ASSERT(!s->finished && n >= 0);
	if (n == 0) return;
	if ((size_t)n > (SIZE_MAX / s->rowbytes) - (size_t)s->n) die("%s: too many rows", s->name);
	size_t add = (size_t)n * s->rowbytes;
	if (s->fd < 0) {
		size_t need = (size_t)s->n + (size_t)n;
		if (need > s->cap) {
			size_t cap = s->cap ? s->cap : 256;
			while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
			size_t grow = (cap - s->cap) * s->rowbytes;
			if (s->bud && (s->bud->used + grow > s->bud->limit || s->bud->used + grow < s->bud->used)) {
				/* the exact need may still fit where the doubling does not */
				cap = need;
				grow = (cap - s->cap) * s->rowbytes;
			}
			if (s->bud && (s->bud->used + grow > s->bud->limit || s->bud->used + grow < s->bud->used)) {
				spill(s);
			} else {
				if (cap > SIZE_MAX / s->rowbytes) die("%s: too many rows", s->name);
				s->mem = xrealloc(s->mem, cap * s->rowbytes);
				if (s->bud) s->bud->used += grow;
				s->cap = cap;
			}
		}
	}
	if (s->fd < 0) {
		memcpy(s->mem + (size_t)s->n * s->rowbytes, rows, add);
	} else if (add >= s->wcap) {
		flush_wbuf(s);
		write_all(s, rows, add);
	} else {
		if (s->wlen + add > s->wcap) flush_wbuf(s);
		memcpy(s->wbuf + s->wlen, rows, add);
		s->wlen += add;
	}
	s->n += n;
}

void rows_finish(RowStore *s)
{
	if (s->fd >= 0) {
		flush_wbuf(s);
		free(s->wbuf);
		s->wbuf = NULL;
		s->wcap = 0;
	}
	s->finished = 1;
}

static void read_row(RowStore *s, long i, void *dst)
{
	char *p = dst;
	size_t len = s->rowbytes;
	off_t off = (off_t)i * (off_t)s->rowbytes;
	while (len > 0) {
		ssize_t r = pread(s->fd, p, len, off);
		if (r < 0) {
			if (errno == EINTR) continue;
			die("%s: reading row %ld from the spill file in %s:", s->name, i, s->dir);
		}
		if (r == 0) die("%s: row %ld: the spill file in %s is shorter than written", s->name, i, s->dir);
		p += r;
		off += r;
		len -= (size_t)r;
	}
}

void rows_get(RowStore *s, long i, void *dst)
{
	ASSERT(s->finished && i >= 0 && i < s->n);
	if (s->fd < 0) memcpy(dst, s->mem + (size_t)i * s->rowbytes, s->rowbytes);
	else read_row(s, i, dst);
}

typedef struct { long row; int k; } RowRef;

static int cmp_ref(const void *a, const void *b)
{
	const RowRef *x = a, *y = b;
	return x->row < y->row ? -1 : x->row > y->row ? 1 : x->k - y->k;
}

void rows_gather(RowStore *s, const int *idx, int n, void *dst)
{
	char *d = dst;
	if (s->fd < 0 || n < 2) {
		for (int k = 0; k < n; k++) rows_get(s, idx[k], d + (size_t)k * s->rowbytes);
		return;
	}
	RowRef *ref = xmallocarray((size_t)n, sizeof *ref);
	for (int k = 0; k < n; k++) { ref[k].row = idx[k]; ref[k].k = k; }
	qsort(ref, (size_t)n, sizeof *ref, cmp_ref);
	for (int k = 0; k < n; k++) rows_get(s, ref[k].row, d + (size_t)ref[k].k * s->rowbytes);
	free(ref);
}

void rows_prefetch(RowStore *s, const int *idx, int n)
{
	if (s->fd < 0) return;
	for (int k = 0; k < n; k++) {
		ASSERT(idx[k] >= 0 && idx[k] < s->n);
		/* only a hint: an error changes nothing that matters */
		(void)posix_fadvise(s->fd, (off_t)idx[k] * (off_t)s->rowbytes, (off_t)s->rowbytes, POSIX_FADV_WILLNEED);
	}
}

void rows_free(RowStore *s)
{
	if (s->fd >= 0) close(s->fd);
	else if (s->bud) s->bud->used -= s->cap * s->rowbytes;
	free(s->mem);
	free(s->wbuf);
	free(s->dir);
	memset(s, 0, sizeof *s);
	s->fd = -1;
}
