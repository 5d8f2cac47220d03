/* fuzz_table.c: the expression-table reader (common/table.h) over arbitrary bytes.
 *
 * The first byte picks the options (format auto/csv/tsv/gct, genes as rows, missing
 * cells allowed, a label column, block size); the rest is the file. table_open and
 * table_read until the end, under FUZZ_TRY. gzip inputs are left to the CLI catalogue
 * (zlib's state lives outside the allocation tracking of fuzz.h). libcsv's parser
 * state is also untracked, so this harness runs with -detect_leaks=0 (fuzz_table.flags).
 * Properties: no crash, no sanitizer report, die() exits 1 (usage_error 2), every block has
 * 0 < n <= block_rows rows and ngenes values per row, no leak on a clean path. */
#include <fcntl.h>

#include "fuzz.h"
#include "table.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

static Table t;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1) return 0;
	unsigned o = data[0];
	data++, size--;
	if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) return 0;
	int fd = fuzz_fd(data, size);
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int mark = open("/dev/null", O_RDONLY); /* the first descriptor table_open may take */
	close(mark);

	TableOpts opts;
	memset(&opts, 0, sizeof opts);
	static const TableFormat fmts[4] = { TF_AUTO, TF_CSV, TF_TSV, TF_GCT };
	opts.format = fmts[o & 3];
	opts.genes_as_rows = (o >> 2) & 1;
	opts.allow_missing = (o >> 3) & 1;
	opts.label_column = (o >> 4) & 1 ? "label" : NULL;
	opts.gene_id_desc = (o >> 5) & 1;
	opts.block_rows = (o >> 6) + 1;

	fuzz_begin();
	memset(&t, 0, sizeof t);
	int died;
	FUZZ_TRY(died, {
		table_open(&t, path, &opts);
		int n;
		while ((n = table_read(&t)) > 0) {
			if (n > opts.block_rows || t.ngenes < 0) {
				printf("fuzz: table_read gave %d rows, block_rows %d, ngenes %d\n", n, opts.block_rows, t.ngenes);
				abort();
			}
			for (int i = 0; i < n; i++)
				if (!t.ids[i]) abort();
		}
		table_close(&t);
	});
	if (died) {
		/* 2: options that do not go together (a label column with genes as rows) */
		if (fuzz_exit_code != 1 && fuzz_exit_code != 2) abort();
		/* descriptors the reader opened before dying */
		for (int f = mark; f < mark + 8; f++)
			if (f != fd) close(f);
		msgpack_unpacked_destroy(&t.din.r.res); /* a stream input's zone */
		memset(&t, 0, sizeof t);
	}
	fuzz_end();
	close(fd);
	return 0;
}
