/* gen-rows: a synthetic data stream of any size, fast (for memory and speed tests of
 * batch at scale; tests/cli/batch_large.sh, docs/BATCH.md).
 *
 *   gen-rows --rows N --features F [--classes K] [--seed S] [--block-rows B]
 *            [--domain NAME] [--prefix ID] > out.mpk
 *
 * Row i has id PREFIX<i>, label i % K, and features drawn uniform in [-1, 1) plus
 * 0.5 for the features j with j % K == label (so the classes can be told apart).
 * Same options, same bytes. Writes header, data frames of B rows (default 256), end.
 * Exit: 0 ok, 1 write error, 2 usage error. */
#include "rng.h"
#include "stream.h"
#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = 0, f = 0, k = 4, block = 256;
	unsigned long long seed = 1;
	const char *domain = "gen", *prefix = "row";
	static const struct option lo[] = {
		{ "rows", 1, 0, 'n' }, { "features", 1, 0, 'f' }, { "classes", 1, 0, 'k' },
		{ "seed", 1, 0, 's' }, { "block-rows", 1, 0, 'b' }, { "domain", 1, 0, 'd' },
		{ "prefix", 1, 0, 'p' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
	};
	int c;
	util_init(argv[0]);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		switch (c) {
		case 'n': n = parse_long("--rows", optarg, 1, 1L << 31); break;
		case 'f': f = parse_long("--features", optarg, 1, 1L << 24); break;
		case 'k': k = parse_long("--classes", optarg, 1, 1000); break;
		case 's': seed = (unsigned long long)parse_long("--seed", optarg, 0, 1L << 62); break;
		case 'b': block = parse_long("--block-rows", optarg, 1, 1L << 20); break;
		case 'd': domain = optarg; break;
		case 'p': prefix = optarg; break;
		case 'h':
			printf("Usage: gen-rows --rows N --features F [--classes K (4)] [--seed S (1)]\n"
			       "                [--block-rows B (256)] [--domain NAME (gen)] [--prefix ID (row)] > out.mpk\n");
			return 0;
		default: usage_error("unknown option or missing argument: %s", argv[optind - 1]);
		}
	}
	if (!n || !f) usage_error("--rows N and --features F are required");
	if (isatty(1)) usage_error("refusing to write a binary stream to a terminal");
	Header h;
	header_init(&h, "data");
	h.nfeat = (int)f;
	h.features = xmallocarray((size_t)f, sizeof(char *));
	for (long j = 0; j < f; j++) h.features[j] = xasprintf("g%ld", j);
	for (long q = 0; q < k; q++) {
		char *name = xasprintf("c%ld", q);
		header_add_class(&h, name);
		free(name);
	}
	header_add_domain(&h, domain);
	static char obuf[1 << 20];
	setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
	SWriter w;
	sw_init(&w, stdout, "<stdout>");
	sw_header(&w, &h);
	Block b;
	block_init(&b, (int)f, (int)block);
	float *row = xmallocarray((size_t)f, sizeof(float));
	Rng r;
	rng_seed(&r, seed);
	long frames = 0;
	for (long i = 0; i < n; i++) {
		int y = (int)(i % k);
		for (long j = 0; j < f; j += 2) {
			uint64_t u = rng_u64(&r);
			row[j] = (float)(u >> 40) * (2.0f / 16777216.0f) - 1.0f;
			if (j + 1 < f) row[j + 1] = (float)((u >> 8) & 0xffffff) * (2.0f / 16777216.0f) - 1.0f;
		}
		for (long j = y; j < f; j += k) row[j] += 0.5f;
		char id[64];
		snprintf(id, sizeof id, "%s%ld", prefix, i);
		block_push(&b, id, row, y, 0);
		if (b.n == block || i == n - 1) {
			sw_block(&w, &b);
			frames++;
			block_clear(&b);
		}
	}
	sw_end(&w, n, frames);
	sw_flush(&w);
	free(row);
	block_free(&b);
	header_free(&h);
	return 0;
}
