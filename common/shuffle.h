/* shuffle.h: rows of fixed size held in memory, or spilled to a temporary file, and
 * read back in any order (the file-backed shuffle of batch; see docs/BATCH.md).
 *
 * A RowStore keeps n records of rowbytes bytes each. Rows are appended once, in order;
 * afterwards any row is read by its index. While the bytes held by all stores that share
 * one RowBudget stay within its limit, the rows live in memory; the append that would
 * pass the limit moves this store's rows to a temporary file of fixed-size records in
 * the budget's folder (created with mkstemp and unlinked at once, so it disappears with
 * the process, even on a crash) and every later append goes there. Reads of a spilled
 * store are pread(2) calls at row * rowbytes: the order of the rows never depends on
 * where they are kept, so a seeded permutation gives the same bytes either way.
 *
 *   RowBudget bud = { .limit = 0, .dir = "/scratch" };     // 0: spill from the first row
 *   RowStore rs;
 *   rows_init(&rs, sizeof(float) * F, &bud, "S.mpk");
 *   rows_append(&rs, x, n);          // any number of times
 *   rows_finish(&rs);                // flush; reads may start
 *   rows_prefetch(&rs, idx, k);      // optional hint: these rows are read next
 *   rows_get(&rs, i, dst);           // dst gets rowbytes bytes
 *   rows_free(&rs);
 *
 * Errors (cannot create the file, a full disk, a failed read) die with one line naming
 * the store and the folder. */
#ifndef DAPIPE_SHUFFLE_H
#define DAPIPE_SHUFFLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
	size_t limit;   /* bytes all stores may hold in memory together; 0: always spill */
	size_t used;    /* bytes held in memory now */
	const char *dir;/* folder of the spill files (NULL: $TMPDIR, else /tmp) */
} RowBudget;

typedef struct {
	const char *name;   /* for messages (e.g. the input's path) */
	size_t rowbytes;
	long n;             /* rows appended */
	RowBudget *bud;
	/* in memory */
	char *mem;
	size_t cap;         /* rows allocated in mem */
	/* spilled */
	int fd;             /* -1 while in memory */
	char *dir;          /* folder of the file (for messages) */
	char *wbuf;         /* append buffer */
	size_t wlen, wcap;
	int finished;
} RowStore;

void rows_init(RowStore *s, size_t rowbytes, RowBudget *bud, const char *name);
void rows_append(RowStore *s, const void *rows, long n);
void rows_finish(RowStore *s);
/* copy row i (0 <= i < n) into dst */
void rows_get(RowStore *s, long i, void *dst);
/* dst + k*rowbytes gets row idx[k], k < n; spilled rows are read in file order */
void rows_gather(RowStore *s, const int *idx, int n, void *dst);
/* a hint that rows idx[0..n-1] are read soon (posix_fadvise WILLNEED); no-op in memory */
void rows_prefetch(RowStore *s, const int *idx, int n);
int rows_spilled(const RowStore *s);
void rows_free(RowStore *s);

/* The default limit (bytes): half the physical memory, or half the cgroup memory limit
 * (a container's, v2 memory.max or v1 memory.limit_in_bytes) when that is lower; 1 GiB
 * when neither can be known. */
size_t rows_default_limit(void);
/* The limit in a cgroup memory file (v2 memory.max, v1 memory.limit_in_bytes), in bytes;
 * 0 when the file is missing or says there is none ("max", or v1's page-rounded
 * LLONG_MAX). */
size_t cgroup_memory_limit(const char *path);

#endif
