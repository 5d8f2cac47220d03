/* test_shuffle.c: the row store of batch (common/shuffle.h): the same rows in memory and
 * spilled to a file, read in any order; the cgroup memory files of the default limit. */
#include "check.h"
#include "shuffle.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t limit_of(const char *text)
{
	char path[] = "/tmp/test_shuffle.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0) return (size_t)-1;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) { close(fd); unlink(path); return (size_t)-1; }
	close(fd);
	size_t v = cgroup_memory_limit(path);
	unlink(path);
	return v;
}

static void cgroup_files(void)
{
	CHECK("cgroup v2 number", limit_of("1073741824\n") == 1073741824u);
	CHECK("cgroup v2 max: none", limit_of("max\n") == 0);
	CHECK("cgroup v1 unlimited: none", limit_of("9223372036854771712\n") == 0);
	CHECK("cgroup empty file: none", limit_of("") == 0);
	CHECK("cgroup garbage: none", limit_of("lots\n") == 0);
	CHECK("cgroup missing file: none", cgroup_memory_limit("/nonexistent/memory.max") == 0);
	size_t d = rows_default_limit();
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	CHECK("default limit at most half the memory", d > 0 && d <= (size_t)pages * (size_t)psize / 2);
	size_t c2 = cgroup_memory_limit("/sys/fs/cgroup/memory.max");
	size_t c1 = cgroup_memory_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes");
	CHECK("default limit at most half the cgroup limit", (!c2 || d <= c2 / 2) && (!c1 || d <= c1 / 2));
}

/* rows of 3 floats, row i = {i, -i, i/2}; both stores read back in a permuted order */
static void store_roundtrip(void)
{
	enum { N = 1000, C = 3 };
	float rows[N][C];
	for (int i = 0; i < N; i++) { rows[i][0] = (float)i; rows[i][1] = (float)-i; rows[i][2] = i / 2.0f; }
	RowBudget mem = { .limit = (size_t)1 << 30 }, disk = { .limit = 0, .dir = "/tmp" };
	RowStore a, b;
	rows_init(&a, sizeof rows[0], &mem, "in memory");
	rows_init(&b, sizeof rows[0], &disk, "spilled");
	for (int i = 0; i < N; i += 100) { rows_append(&a, rows[i], 100); rows_append(&b, rows[i], 100); }
	rows_finish(&a);
	rows_finish(&b);
	CHECK("store in memory", !rows_spilled(&a) && a.n == N);
	CHECK("store spilled", rows_spilled(&b) && b.n == N);
	int idx[N], bad = 0;
	for (int i = 0; i < N; i++) idx[i] = (i * 617) % N;  /* 617 is prime to 1000 */
	static float ga[N][C], gb[N][C];
	rows_gather(&a, idx, N, ga);
	rows_gather(&b, idx, N, gb);
	for (int i = 0; i < N; i++) bad += memcmp(ga[i], rows[idx[i]], sizeof rows[0]) != 0 || memcmp(gb[i], rows[idx[i]], sizeof rows[0]) != 0;
	CHECK("gather: same rows in memory and spilled", bad == 0);
	float one[C];
	rows_get(&b, 999, one);
	CHECK("get the last spilled row", one[0] == 999 && one[1] == -999);
	rows_free(&a);
	rows_free(&b);
}

int main(void)
{
	cgroup_files();
	store_roundtrip();
	return check_status();
}
