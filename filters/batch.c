/* batch: splits and minibatches for domain-adaptation training.
 *
 * Reads a labelled source data stream and a target data stream (and optionally a
 * separate test stream), merges their class lists by name, splits the rows into
 * roles and writes the minibatch stream that train-step reads (docs/BATCH.md):
 *
 *   {type:"header", kind:"batches", features, classes (merged), domains ["source","target"],
 *    steps_per_epoch, epochs, batch_source, batch_target, seed, mode, preprocessing,
 *    n_labeled_target, ...}
 *   {type:"val", set:"target"|"source", ids, x f32 (n,F), y i32 (n)}   once, before epoch 0
 *   per epoch e, per step: {type:"batch", epoch, step, xs (Bs,F), ys (Bs), xt (Bt,F), yt (Bt)}
 *                          {type:"epoch_end", epoch}
 *   {type:"end", rows, frames}
 *
 * Roles. Source: source-train, source-val (--source-val-fraction, stratified), and
 * "unused" for the source-train rows left out by --source-fraction. Target: test
 * (--test-fraction, or every row of --test FILE), validation (--val-fraction, labelled
 * rows only), labelled-train (--labeled-per-class / --labeled-fraction) and
 * unlabelled-train. Every split is stratified per class with round-half-up counts and
 * keeps at least one training row per class. Without --labeled-*, training is
 * unsupervised: target labels never reach a batch (yt = -1) and no target validation
 * is sent unless --val-fraction is given.
 *
 * Batches. steps_per_epoch = max(1, floor(source-train / batch-size)), raised in
 * supervised runs to ceil(labelled-train / labelled rows per batch) when the labelled
 * target is the larger (so a target-only model sees every labelled row each epoch
 * however small the source); the source is
 * reshuffled every epoch (or drawn class-balanced with --balance-classes); target rows
 * are drawn from reshuffled permutations cycled across epochs, so a small target is
 * oversampled. In supervised mode a target batch holds half labelled and half
 * unlabelled rows (at least 2 of each) when both exist. No batch has fewer than 2 rows.
 *
 * Images. Source and target may be image streams instead (header kind "images",
 * frames {type:"images", ids, x u8 (N,H,W,3), y, d}; both with the same tile size).
 * Their tiles are held as bytes; every row sent (batches and val frames) is the tile
 * as f32 pixels / 255 in (H,W,3) order, so F = H*W*3; the header's features are the
 * pixel names "r0_0", "g0_0", "b0_0", ... and the header gets key "image" {h, w,
 * channels, layout:"hwc", scale} (the encoder, e.g. encode --stage --arch resnet,
 * normalises and convolves them). --augment applies, to the training rows of every
 * batch (never to validation or test rows), a seeded random symmetry of the square
 * (flips, 90-degree rotations; flips only for non-square tiles) and a mild colour
 * jitter (contrast, brightness and per-channel gain, each 1 +- --jitter). --test-out
 * then writes an image stream.
 *
 * Memory. The rows of data streams are held in memory up to --memory-limit MB (all
 * inputs together; default half the physical memory, or of the cgroup memory limit when
 * lower); an input that would pass it is
 * spilled to a temporary file of fixed-size records in --spill DIR (default $TMPDIR or
 * /tmp; --spill alone spills every input) and its rows are read back with pread in the
 * same seeded order, so the output is the same bytes either way (docs/BATCH.md).
 * Image tiles are always held in memory.
 *
 * Options: see usage() (every option with its default).
 * Exit: 0 ok, 1 bad input data or I/O error, 2 usage error. */
#include "image.h"
#include "rng.h"
#include "shuffle.h"
#include "stream.h"
#include "util.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { R_SOURCE_TRAIN, R_SOURCE_VAL, R_LABELLED_TRAIN, R_UNLABELLED_TRAIN, R_VALIDATION, R_TEST, R_UNUSED, R_COUNT };
static const char *role_names[R_COUNT] = {
	"source-train", "source-val", "labelled-train", "unlabelled-train", "validation", "test", "unused"
};

/* RNG stream ids: the split and each kind of draw get their own stream, so changing
 * one choice (e.g. --source-fraction) leaves the others as they were. */
enum { RS_SPLIT_SOURCE = 1, RS_SPLIT_TARGET, RS_SOURCE_EPOCH, RS_BALANCE_ORDER, RS_TARGET_LAB, RS_TARGET_UNLAB, RS_AUGMENT,
       RS_BALANCE_CLASS = 100 };

/* frames of a validation set are cut below this size (bytes of x) */
#define VAL_FRAME_BYTES ((size_t)256 << 20)
#define TEST_BLOCK_ROWS 256

typedef struct {
	const char *path;
	Header h;
	Block b;     /* ids, labels and domains of every row (no x: b.f = 0) */
	int f;       /* features of a data stream */
	RowStore rs; /* x of a data stream, in memory or spilled */
	int *cls;    /* label per row in the merged class list, -1 = unlabelled */
	int *role;
	int img;     /* an image stream: b.f = 0 and the tiles are in px */
	int th, tw;
	uint8_t *px; /* n * th * tw * 3 */
} Input;

typedef struct {
	int *idx;
	int n, pos;
	Rng rng;
} Cycler;

static struct {
	const char *source, *target, *test, *split_out, *test_out;
	long batch_size, target_batch_size, epochs, labeled_per_class;
	unsigned long long seed, split_seed;
	double labeled_fraction, val_fraction, test_fraction, source_val_fraction, source_fraction;
	int val_given, test_given, split_seed_given, balance, supervised, augment;
	double jitter;
	const char *spill_dir;
	long memory_limit;   /* MiB; -1: default */
} opt = {
	.memory_limit = -1,
	.jitter = 0.05,
	.batch_size = 32, .target_batch_size = 0, .epochs = 50, .seed = 1,
	.val_fraction = 0.1, .test_fraction = 0.2, .source_val_fraction = 0.1, .source_fraction = 1.0,
};

static void usage(void)
{
	printf("Usage: batch --source S.mpk --target T.mpk [OPTIONS] > batches.mpk\n"
	       "Split source and target data streams and write the minibatch stream for train-step.\n"
	       "\n"
	       "Inputs and outputs:\n"
	       "  --source FILE             labelled source data stream (required; - is stdin)\n"
	       "  --target FILE             target data stream (required)\n"
	       "  --test FILE               a separate target test stream; the target itself is then\n"
	       "                            not split for test (default: none, test split from --target)\n"
	       "  --split FILE              write CSV id,domain,role for every row (default: none)\n"
	       "  --test-out FILE           write the test rows, labels kept, as a data stream\n"
	       "                            (default: none)\n"
	       "\n"
	       "Splits (stratified per class; counts rounded half up; at least one training row per class):\n"
	       "  --val-fraction F          target validation fraction, labelled rows only (default 0.1;\n"
	       "                            without --labeled-* only when given)\n"
	       "  --test-fraction F         target test fraction (default 0.2; 0 with --test)\n"
	       "  --labeled-per-class N     supervised: N labelled target training rows per class\n"
	       "  --labeled-fraction F      supervised: fraction F (0 < F <= 1) of each class's target\n"
	       "                            training rows labelled, at least 1 (default: unsupervised)\n"
	       "  --source-val-fraction F   source validation fraction (default 0.1)\n"
	       "  --source-fraction F       keep this fraction of the source training rows (default 1)\n"
	       "  --split-seed N            seed of the splits (default: --seed)\n"
	       "\n"
	       "Batches:\n"
	       "  --batch-size N            source rows per batch, at least 2 (default 32)\n"
	       "  --target-batch-size N     target rows per batch, at least 2 (default: --batch-size)\n"
	       "  --epochs N                epochs (default 50)\n"
	       "  --balance-classes         draw source batches class-balanced (default: off)\n"
	       "  --seed N                  seed of the shuffles (default 1)\n"
	       "\n"
	       "Image streams (tiles become rows of H*W*3 pixels / 255):\n"
	       "  --augment                 random flips, 90-degree rotations and colour jitter of\n"
	       "                            the training rows, seeded by --seed (default: off)\n"
	       "  --jitter F                colour jitter amplitude with --augment, 0 to 0.5\n"
	       "                            (default 0.05)\n"
	       "\n"
	       "Memory (data streams; the output is the same bytes either way):\n"
	       "  --memory-limit MB         hold at most MB MiB of input rows in memory; an input\n"
	       "                            past it is spilled to a temporary file (default: half\n"
	       "                            the physical memory, or of the container's memory\n"
	       "                            limit when lower; 0: spill every input)\n"
	       "  --spill DIR               folder of the spill files (default: $TMPDIR, else /tmp);\n"
	       "                            without --memory-limit every input is spilled\n"
	       "\n"
	       "  --progress                progress on stderr even when it is not a terminal\n"
	       "  -q, --quiet               no messages except errors and warnings\n"
	       "  -h, --help                this help\n"
	       "\n"
	       "Exit status: 0 ok, 1 bad input or I/O error, 2 usage error. See docs/BATCH.md.\n");
	exit(0);
}

/* ---- helpers ---- */

static long round_half_up(double x) { return (long)floor(x + 0.5); }

static void header_set_double(Header *h, const char *key, double v)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_double(&pk, v);
	Blob b = { sb.data, sb.size };
	header_set(h, key, &b);
	msgpack_sbuffer_destroy(&sb);
}

/* an image stream, after its header: tiles into in->px, ids/labels/domains into in->b */
static void load_images(Input *in, ImgIn *ii)
{
	ImgBlock ib;
	memset(&ib, 0, sizeof ib);
	block_init(&in->b, 0, 256);
	size_t tile = (size_t)ii->th * ii->tw * 3, cap = 0;
	in->img = 1;
	in->th = ii->th;
	in->tw = ii->tw;
	while (imgin_next(ii, &ib)) {
		if (ib.n > INT_MAX - in->b.n) die("%s: too many images", in->path);
		if ((size_t)(in->b.n + ib.n) > cap) {
			while ((size_t)(in->b.n + ib.n) > cap) cap = cap ? 2 * cap : 256;
			if (cap > SIZE_MAX / tile) die("%s: too many images", in->path);
			in->px = xrealloc(in->px, cap * tile);
		}
		memcpy(in->px + (size_t)in->b.n * tile, ib.x, (size_t)ib.n * tile);
		for (int i = 0; i < ib.n; i++) block_push(&in->b, ib.ids[i], NULL, ib.y[i], ib.d[i]);
	}
	imgblock_free(&ib);
	header_copy(&in->h, &ii->h);
	imgin_close(ii);
	in->cls = xmallocarray(in->b.n ? (size_t)in->b.n : 1, sizeof(int));
	in->role = xmallocarray(in->b.n ? (size_t)in->b.n : 1, sizeof(int));
}

static RowBudget budget;

static void load(Input *in, const char *path)
{
	DataIn d;
	Block tmp;
	memset(in, 0, sizeof *in);
	in->path = path;
	/* the header decides: a data stream or an image stream */
	SReader r;
	sr_open(&r, path);
	const msgpack_object *f = sr_next(&r);
	if (!f) sr_fail(&r, "empty stream (no header frame)");
	Header h;
	header_parse(&r, f, &h);
	if (strcmp(h.kind, "images") == 0) {
		ImgIn ii;
		memset(&ii, 0, sizeof ii);
		const msgpack_object *t = obj_get(f, "tile");
		if (!t || t->type != MSGPACK_OBJECT_MAP) sr_fail(&r, "header has no \"tile\" map {h, w}");
		int64_t th = get_int(&r, t, "h"), tw = get_int(&r, t, "w");
		if (th < 1 || tw < 1 || th > 4096 || tw > 4096) sr_fail(&r, "tile %lldx%lld is not a usable tile size", (long long)tw, (long long)th);
		ii.r = r;
		ii.h = h;
		ii.th = (int)th;
		ii.tw = (int)tw;
		load_images(in, &ii);
		return;
	}
	memset(&d, 0, sizeof d);
	d.r = r;
	d.h = h;
	block_init(&tmp, d.h.nfeat, 1);
	block_init(&in->b, 0, 256);
	in->f = d.h.nfeat;
	rows_init(&in->rs, sizeof(float) * (size_t)(in->f ? in->f : 1), &budget, path);
	while (data_next(&d, &tmp)) {
		Block *b = &in->b;
		if (tmp.n > INT_MAX - b->n) die("%s: too many rows", path);
		if (b->n + tmp.n > b->cap) {
			int cap = b->cap;
			while (cap < b->n + tmp.n) cap = cap > INT_MAX / 2 ? INT_MAX : cap * 2;
			block_reserve(b, cap);
		}
		/* take the ids over from tmp; the numbers go to the row store */
		memcpy(b->ids + b->n, tmp.ids, sizeof(char *) * (size_t)tmp.n);
		if (in->f) rows_append(&in->rs, tmp.x, tmp.n);
		memcpy(b->y + b->n, tmp.y, sizeof(int32_t) * (size_t)tmp.n);
		memcpy(b->d + b->n, tmp.d, sizeof(int32_t) * (size_t)tmp.n);
		b->n += tmp.n;
		tmp.n = 0;
	}
	block_free(&tmp);
	rows_finish(&in->rs);
	if (rows_spilled(&in->rs))
		info("%s: %d rows x %d features (%.1f MiB) spilled to a temporary file in %s", path, in->b.n, in->f,
		     (double)in->b.n * (double)in->rs.rowbytes / 1048576.0, in->rs.dir);
	/* keep the header; the reader goes */
	header_copy(&in->h, &d.h);
	data_close(&d);
	in->cls = xmallocarray(in->b.n ? (size_t)in->b.n : 1, sizeof(int));
	in->role = xmallocarray(in->b.n ? (size_t)in->b.n : 1, sizeof(int));
}

static void free_input(Input *in)
{
	header_free(&in->h);
	block_free(&in->b);
	free(in->cls);
	free(in->role);
	free(in->px);
	if (!in->img) rows_free(&in->rs);
}

static void same_features(const Input *a, const Input *b)
{
	if (a->img != b->img)
		die("%s and %s: one is an image stream, the other a data stream", a->path, b->path);
	if (a->img) {
		if (a->th != b->th || a->tw != b->tw)
			die("%s and %s: tiles differ: %dx%d in %s, %dx%d in %s (tile both to one size with stain-norm --tile)",
			    a->path, b->path, a->tw, a->th, a->path, b->tw, b->th, b->path);
		return;
	}
	int n = a->h.nfeat < b->h.nfeat ? a->h.nfeat : b->h.nfeat;
	for (int i = 0; i < n; i++)
		if (strcmp(a->h.features[i], b->h.features[i]) != 0)
			die("%s and %s: features differ at column %d: \"%s\" in %s, \"%s\" in %s (align them with normalize --like or --genes)",
			    a->path, b->path, i + 1, a->h.features[i], a->path, b->h.features[i], b->path);
	if (a->h.nfeat != b->h.nfeat) {
		const Input *big = a->h.nfeat > b->h.nfeat ? a : b;
		die("%s and %s: features differ: %s has %d features, %s has %d (first extra: \"%s\" in %s)",
		    a->path, b->path, a->path, a->h.nfeat, b->path, b->h.nfeat, big->h.features[n], big->path);
	}
}

/* labels of in, remapped by class name into the merged list of out */
static void merge_classes(Header *out, Input *in)
{
	int *map = xmallocarray(in->h.nclass ? (size_t)in->h.nclass : 1, sizeof *map);
	for (int c = 0; c < in->h.nclass; c++) map[c] = header_add_class(out, in->h.classes[c]);
	for (int i = 0; i < in->b.n; i++) in->cls[i] = in->b.y[i] < 0 ? -1 : map[in->b.y[i]];
	free(map);
}

/* Rows of in grouped by merged class (group k = class k, group nclass = unlabelled),
 * each group in input order. Returns offsets (nclass+2) into *rows. */
static int *group_rows(const Input *in, int nclass, int **rows)
{
	int ng = nclass + 1;
	int *off = xcalloc((size_t)ng + 1, sizeof *off);
	for (int i = 0; i < in->b.n; i++) off[(in->cls[i] < 0 ? nclass : in->cls[i]) + 1]++;
	for (int g = 0; g < ng; g++) off[g + 1] += off[g];
	int *pos = xmallocarray((size_t)ng, sizeof *pos);
	memcpy(pos, off, sizeof(int) * (size_t)ng);
	*rows = xmallocarray(in->b.n ? (size_t)in->b.n : 1, sizeof **rows);
	for (int i = 0; i < in->b.n; i++) (*rows)[pos[in->cls[i] < 0 ? nclass : in->cls[i]]++] = i;
	free(pos);
	return off;
}

/* Stratified split of the source: per class [kept train | unused | source-val]. */
static void split_source(Input *s, int nclass)
{
	Rng rng;
	rng_seed2(&rng, opt.split_seed, RS_SPLIT_SOURCE);
	int *rows, *off = group_rows(s, nclass, &rows);
	for (int g = 0; g < nclass; g++) {
		int *r = rows + off[g], n = off[g + 1] - off[g];
		if (n == 0) continue;
		rng_shuffle_int(&rng, r, n);
		long nv = round_half_up(n * opt.source_val_fraction);
		if (nv > n - 1) nv = n - 1;
		long ntr = n - nv;
		long keep = round_half_up(ntr * opt.source_fraction);
		if (keep < 1) keep = 1;
		if (keep > ntr) keep = ntr;
		for (int i = 0; i < n; i++)
			s->role[r[i]] = i < keep ? R_SOURCE_TRAIN : i < ntr ? R_UNUSED : R_SOURCE_VAL;
	}
	free(rows);
	free(off);
}

/* Stratified split of the target: per class [labelled-train | unlabelled-train |
 * validation | test]; unlabelled rows [unlabelled-train | test]. The labelled rows are a
 * prefix of one seeded permutation, so for one seed a smaller labelled set lies inside a
 * larger one and validation and test do not depend on it. */
static void split_target(Input *t, int nclass, double val_frac, double test_frac)
{
	Rng rng;
	rng_seed2(&rng, opt.split_seed, RS_SPLIT_TARGET);
	int *rows, *off = group_rows(t, nclass, &rows);
	for (int g = 0; g <= nclass; g++) {
		int *r = rows + off[g], n = off[g + 1] - off[g];
		if (n == 0) continue;
		rng_shuffle_int(&rng, r, n);
		int labelled = g < nclass;
		long nt = round_half_up(n * test_frac);
		long nv = labelled ? round_half_up(n * val_frac) : 0;
		while (nt + nv > n - 1 && nt + nv > 0) { /* keep one training row */
			if (nv > 0) nv--;
			else nt--;
		}
		long ntr = n - nt - nv, nl = 0;
		if (labelled && opt.supervised) {
			if (opt.labeled_per_class > 0) nl = opt.labeled_per_class;
			else nl = round_half_up(ntr * opt.labeled_fraction);
			if (nl < 1) nl = 1;
			if (nl > ntr) nl = ntr;
		}
		for (int i = 0; i < n; i++)
			t->role[r[i]] = i < nl ? R_LABELLED_TRAIN : i < ntr ? R_UNLABELLED_TRAIN
			              : i < ntr + nv ? R_VALIDATION : R_TEST;
	}
	free(rows);
	free(off);
}

static int collect(const Input *in, int role, int **out)
{
	int n = 0;
	*out = xmallocarray(in->b.n ? (size_t)in->b.n : 1, sizeof **out);
	for (int i = 0; i < in->b.n; i++)
		if (in->role[i] == role) (*out)[n++] = i;
	return n;
}

static void count_roles(const Input *in, long *cnt)
{
	memset(cnt, 0, sizeof(long) * R_COUNT);
	for (int i = 0; i < in->b.n; i++) cnt[in->role[i]]++;
}

static void report(const char *what, const Input *in)
{
	long cnt[R_COUNT];
	char buf[512];
	size_t len = 0;
	count_roles(in, cnt);
	buf[0] = 0;
	for (int r = 0; r < R_COUNT; r++)
		if (cnt[r] && len < sizeof buf)
			len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%ld %s", len ? ", " : "", cnt[r], role_names[r]);
	info("%s %s: %d rows: %s", what, in->path, in->b.n, in->b.n ? buf : "none");
}

static void cycler_init(Cycler *c, const int *idx, int n, uint64_t stream)
{
	c->idx = xmallocarray(n ? (size_t)n : 1, sizeof *c->idx);
	memcpy(c->idx, idx, sizeof(int) * (size_t)n);
	c->n = n;
	c->pos = n; /* the first draw shuffles */
	rng_seed2(&c->rng, opt.seed, stream);
}

static int cycler_next(Cycler *c)
{
	ASSERT(c->n > 0);
	if (c->pos == c->n) {
		rng_shuffle_int(&c->rng, c->idx, c->n);
		c->pos = 0;
	}
	return c->idx[c->pos++];
}

static void cycler_free(Cycler *c) { free(c->idx); }

/* ---- output ---- */

static void csv_field(FILE *fp, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, fp);
		return;
	}
	fputc('"', fp);
	for (; *s; s++) {
		if (*s == '"') fputc('"', fp);
		fputc(*s, fp);
	}
	fputc('"', fp);
}

static void write_split(const char *path, Input *const *ins, int nin)
{
	AtomicFile af;
	FILE *fp = atomic_open(&af, path);
	fputs("id,domain,role\n", fp);
	for (int k = 0; k < nin; k++) {
		const Input *in = ins[k];
		for (int i = 0; i < in->b.n; i++) {
			csv_field(fp, in->b.ids[i]);
			fputc(',', fp);
			csv_field(fp, in->h.domains[in->b.d[i]]);
			fprintf(fp, ",%s\n", role_names[in->role[i]]);
		}
	}
	atomic_commit(&af);
}

static void write_test(const char *path, const Input *in, const Header *merged, const int *rows, int n)
{
	AtomicFile af;
	SWriter w;
	Header h;
	header_copy(&h, &in->h);
	free(h.kind);
	h.kind = xstrdup("data");
	for (int c = 0; c < h.nclass; c++) free(h.classes[c]);
	free(h.classes);
	h.nclass = 0;
	h.classes = xmalloc(sizeof(char *));
	for (int c = 0; c < merged->nclass; c++) header_add_class(&h, merged->classes[c]);

	FILE *fp = atomic_open(&af, path);
	if (in->img) {
		ImgOut io;
		size_t tile = (size_t)in->th * in->tw * 3;
		imgout_start(&io, fp, path, &h, in->th, in->tw);
		for (int i = 0; i < n; i++) {
			int r = rows[i];
			imgout_push(&io, in->b.ids[r], in->px + (size_t)r * tile, in->cls[r], in->b.d[r]);
		}
		imgout_finish(&io);
		atomic_commit(&af);
		header_free(&h);
		return;
	}
	sw_init(&w, fp, path);
	sw_header(&w, &h);
	Block b;
	block_init(&b, in->f, TEST_BLOCK_ROWS);
	float *row = xmallocarray((size_t)(in->f ? in->f : 1), sizeof(float));
	long frames = 0;
	for (int i = 0; i < n; i++) {
		int r = rows[i];
		if (in->f) rows_get((RowStore *)&in->rs, r, row);
		block_push(&b, in->b.ids[r], row, in->cls[r], in->b.d[r]);
		if (b.n == TEST_BLOCK_ROWS || i == n - 1) {
			sw_block(&w, &b);
			frames++;
			block_clear(&b);
		}
	}
	sw_end(&w, n, frames);
	sw_flush(&w);
	atomic_commit(&af);
	free(row);
	block_free(&b);
	header_free(&h);
}

static Rng aug_rng;

/* tile of in's row into dst (H*W*3 floats, pixels / 255); aug: a random symmetry of the
 * square (transpose only when square; flips) and colour jitter, drawn from aug_rng */
static void tile_row(float *dst, const Input *in, int row, int aug)
{
	int H = in->th, W = in->tw;
	const uint8_t *src = in->px + (size_t)row * H * W * 3;
	const float k = 1.0f / 255.0f;
	if (!aug) {
		for (size_t i = 0; i < (size_t)H * W * 3; i++) dst[i] = (float)src[i] * k;
		return;
	}
	int tr = H == W ? (int)rng_below(&aug_rng, 2) : 0;
	int fh = (int)rng_below(&aug_rng, 2), fv = (int)rng_below(&aug_rng, 2);
	double j = opt.jitter;
	float con = (float)(1 + j * (2 * rng_uniform(&aug_rng) - 1));
	float bri = (float)(1 + j * (2 * rng_uniform(&aug_rng) - 1));
	float gain[3];
	for (int c = 0; c < 3; c++) gain[c] = bri * (float)(1 + j * (2 * rng_uniform(&aug_rng) - 1));
	for (int y = 0; y < H; y++)
		for (int x = 0; x < W; x++) {
			int sy = tr ? x : y, sx = tr ? y : x;
			if (fh) sx = W - 1 - sx;
			if (fv) sy = H - 1 - sy;
			const uint8_t *p = src + ((size_t)sy * W + sx) * 3;
			float *o = dst + ((size_t)y * W + x) * 3;
			for (int c = 0; c < 3; c++) {
				float v = (((float)p[c] * k - 0.5f) * con + 0.5f) * gain[c];
				o[c] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
			}
		}
}

static int row_width(const Input *in) { return in->img ? in->th * in->tw * 3 : in->f; }

static void gather_aug(float *x, int32_t *y, const Input *in, int row, int label, int k, int aug)
{
	int f = row_width(in);
	if (in->img) tile_row(x + (size_t)k * f, in, row, aug);
	else if (f) rows_get((RowStore *)&in->rs, row, x + (size_t)k * f);
	y[k] = label;
}

static void gather(float *x, int32_t *y, const Input *in, int row, int label, int k)
{
	gather_aug(x, y, in, row, label, k, opt.augment);
}

static long write_val(SWriter *w, const char *set, const Input *in, const int *rows, int n)
{
	int f = row_width(in);
	size_t rowbytes = sizeof(float) * (size_t)(f ? f : 1);
	int chunk = (int)(VAL_FRAME_BYTES / rowbytes);
	if (chunk < 1) chunk = 1;
	if (chunk > n) chunk = n;
	float *x = xmallocarray((size_t)chunk * (size_t)(f ? f : 1), sizeof(float));
	int32_t *y = xmallocarray((size_t)chunk, sizeof(int32_t));
	char **ids = xmallocarray((size_t)chunk, sizeof(char *));
	long frames = 0;
	for (int start = 0; start < n; start += chunk) {
		int m = n - start < chunk ? n - start : chunk;
		for (int k = 0; k < m; k++) {
			int r = rows[start + k];
			gather_aug(x, y, in, r, in->cls[r], k, 0);
			ids[k] = in->b.ids[r];
		}
		int64_t shx[2] = { m, f }, shy[1] = { m };
		sw_map(w, 5);
		sw_key(w, "type"); sw_str(w, "val");
		sw_key(w, "set"); sw_str(w, set);
		sw_key(w, "ids"); sw_strs(w, ids, m);
		sw_key(w, "x"); sw_tensor(w, DT_F32, 2, shx, x);
		sw_key(w, "y"); sw_tensor(w, DT_I32, 1, shy, y);
		w->frames++;
		frames++;
	}
	free(x); free(y); free(ids);
	return frames;
}

/* ---- main ---- */

enum {
	O_SOURCE = 256, O_TARGET, O_TEST, O_SPLIT, O_TEST_OUT, O_BATCH, O_TBATCH, O_EPOCHS, O_SEED,
	O_SPLIT_SEED, O_LPC, O_LFRAC, O_VAL, O_TESTF, O_SVAL, O_SFRAC, O_BALANCE, O_PROGRESS, O_QUIET, O_HELP,
	O_AUGMENT, O_JITTER, O_SPILL, O_MEMLIMIT
};

static double parse_fraction(const char *name, const char *s, double max, int allow_zero)
{
	double v = parse_double(name, s, 0, max);
	if (!allow_zero && v == 0) usage_error("%s: %s: must be greater than 0", name, s);
	return v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "source", required_argument, 0, O_SOURCE },
		{ "target", required_argument, 0, O_TARGET },
		{ "test", required_argument, 0, O_TEST },
		{ "split", required_argument, 0, O_SPLIT },
		{ "test-out", required_argument, 0, O_TEST_OUT },
		{ "batch-size", required_argument, 0, O_BATCH },
		{ "target-batch-size", required_argument, 0, O_TBATCH },
		{ "epochs", required_argument, 0, O_EPOCHS },
		{ "seed", required_argument, 0, O_SEED },
		{ "split-seed", required_argument, 0, O_SPLIT_SEED },
		{ "labeled-per-class", required_argument, 0, O_LPC },
		{ "labeled-fraction", required_argument, 0, O_LFRAC },
		{ "val-fraction", required_argument, 0, O_VAL },
		{ "test-fraction", required_argument, 0, O_TESTF },
		{ "source-val-fraction", required_argument, 0, O_SVAL },
		{ "source-fraction", required_argument, 0, O_SFRAC },
		{ "balance-classes", no_argument, 0, O_BALANCE },
		{ "augment", no_argument, 0, O_AUGMENT },
		{ "jitter", required_argument, 0, O_JITTER },
		{ "spill", required_argument, 0, O_SPILL },
		{ "memory-limit", required_argument, 0, O_MEMLIMIT },
		{ "progress", no_argument, 0, O_PROGRESS },
		{ "quiet", no_argument, 0, O_QUIET },
		{ "help", no_argument, 0, O_HELP },
		{ 0, 0, 0, 0 }
	};
	int force_progress = 0, quiet_flag = 0, c;
	util_init(argv[0]);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hq", longopts, NULL)) != -1) {
		switch (c) {
		case O_SOURCE: opt.source = optarg; break;
		case O_TARGET: opt.target = optarg; break;
		case O_TEST: opt.test = optarg; break;
		case O_SPLIT: opt.split_out = optarg; break;
		case O_TEST_OUT: opt.test_out = optarg; break;
		case O_BATCH: opt.batch_size = parse_long("--batch-size", optarg, 2, 1L << 20); break;
		case O_TBATCH: opt.target_batch_size = parse_long("--target-batch-size", optarg, 2, 1L << 20); break;
		case O_EPOCHS: opt.epochs = parse_long("--epochs", optarg, 1, 1000000); break;
		case O_SEED: opt.seed = (unsigned long long)parse_long("--seed", optarg, 0, LONG_MAX); break;
		case O_SPLIT_SEED:
			opt.split_seed = (unsigned long long)parse_long("--split-seed", optarg, 0, LONG_MAX);
			opt.split_seed_given = 1;
			break;
		case O_LPC: opt.labeled_per_class = parse_long("--labeled-per-class", optarg, 1, INT_MAX); break;
		case O_LFRAC: opt.labeled_fraction = parse_fraction("--labeled-fraction", optarg, 1, 0); break;
		case O_VAL: opt.val_fraction = parse_fraction("--val-fraction", optarg, 0.9, 1); opt.val_given = 1; break;
		case O_TESTF: opt.test_fraction = parse_fraction("--test-fraction", optarg, 0.9, 1); opt.test_given = 1; break;
		case O_SVAL: opt.source_val_fraction = parse_fraction("--source-val-fraction", optarg, 0.9, 1); break;
		case O_SFRAC: opt.source_fraction = parse_fraction("--source-fraction", optarg, 1, 0); break;
		case O_BALANCE: opt.balance = 1; break;
		case O_AUGMENT: opt.augment = 1; break;
		case O_JITTER: opt.jitter = parse_double("--jitter", optarg, 0, 0.5); break;
		case O_SPILL:
			if (!*optarg) usage_error("--spill: empty folder name");
			opt.spill_dir = optarg;
			break;
		case O_MEMLIMIT: opt.memory_limit = parse_long("--memory-limit", optarg, 0, 1L << 40); break;
		case O_PROGRESS: force_progress = 1; break;
		case 'q':
		case O_QUIET: quiet_flag = 1; break;
		case 'h':
		case O_HELP: usage(); break;
		case ':': usage_error("%s: missing argument", argv[optind - 1]); break;
		default:
			if (optopt) usage_error("unknown option -%c", optopt);
			usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc) usage_error("unexpected argument %s", argv[optind]);
	if (!opt.source) usage_error("--source FILE is required");
	if (!opt.target) usage_error("--target FILE is required");
	if ((!strcmp(opt.source, "-")) + (!strcmp(opt.target, "-")) + (opt.test && !strcmp(opt.test, "-")) > 1)
		usage_error("only one input can be stdin (-)");
	if (opt.labeled_per_class && opt.labeled_fraction > 0)
		usage_error("--labeled-per-class and --labeled-fraction exclude each other");
	if (opt.test && opt.test_given)
		usage_error("--test-fraction and --test exclude each other (the test set is the --test file)");
	opt.supervised = opt.labeled_per_class > 0 || opt.labeled_fraction > 0;
	double val_frac = opt.supervised || opt.val_given ? opt.val_fraction : 0;
	double test_frac = opt.test ? 0 : opt.test_fraction;
	if (val_frac + test_frac >= 1)
		usage_error("--val-fraction + --test-fraction = %g: must be below 1", val_frac + test_frac);
	if (!opt.split_seed_given) opt.split_seed = opt.seed;
	if (!opt.target_batch_size) opt.target_batch_size = opt.batch_size;
	if (isatty(1)) usage_error("refusing to write a binary stream to a terminal (redirect stdout)");
	progress_setup(force_progress, quiet_flag);
	if (opt.spill_dir && access(opt.spill_dir, W_OK | X_OK) != 0) die("--spill %s:", opt.spill_dir);
	budget.dir = opt.spill_dir;
	budget.limit = opt.memory_limit >= 0 ? (size_t)opt.memory_limit << 20
	             : opt.spill_dir ? 0 : rows_default_limit();

	/* ---- read and check the inputs ---- */
	Input src, tgt, tst;
	memset(&tst, 0, sizeof tst);
	double t_start = now_seconds();
	load(&src, opt.source);
	load(&tgt, opt.target);
	if (opt.test) load(&tst, opt.test);
	same_features(&src, &tgt);
	if (opt.test) same_features(&src, &tst);
	if (src.b.n == 0) die("%s: the source stream has no rows", src.path);
	if (tgt.b.n == 0) die("%s: the target stream has no rows", tgt.path);
	{
		long nu = 0;
		for (int i = 0; i < src.b.n; i++) nu += src.b.y[i] < 0;
		if (nu) die("%s: %ld source rows are unlabelled (y = -1); the source must be labelled", src.path, nu);
	}

	if (opt.augment && !src.img) die("%s: --augment applies to image streams", src.path);
	Header out;
	header_init(&out, "batches");
	if (src.img) {
		/* pixel names in the row order (H,W,3) */
		static const char rgb[3] = { 'r', 'g', 'b' };
		out.nfeat = row_width(&src);
		free(out.features);  /* header_init's empty list */
		out.features = xmallocarray((size_t)out.nfeat, sizeof(char *));
		for (int i = 0; i < out.nfeat; i++)
			out.features[i] = xasprintf("%c%d_%d", rgb[i % 3], i / 3 / src.tw, i / 3 % src.tw);
	} else {
		for (int i = 0; i < src.h.nfeat; i++) {
			out.features = xrealloc(out.features, sizeof(char *) * (size_t)(i + 1));
			out.features[i] = xstrdup(src.h.features[i]);
		}
		out.nfeat = src.h.nfeat;
	}
	merge_classes(&out, &src);
	int nsrc_classes = out.nclass;
	merge_classes(&out, &tgt);
	if (opt.test) merge_classes(&out, &tst);
	if (out.nclass > nsrc_classes) {
		char buf[256];
		size_t len = 0;
		buf[0] = 0;
		for (int c = nsrc_classes; c < out.nclass && len < sizeof buf; c++)
			len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", c > nsrc_classes ? ", " : "", out.classes[c]);
		info("%d classes, %d of them not in the source: %s", out.nclass, out.nclass - nsrc_classes, buf);
	}
	header_add_domain(&out, "source");
	header_add_domain(&out, "target");

	/* ---- splits ---- */
	split_source(&src, out.nclass);
	split_target(&tgt, out.nclass, val_frac, test_frac);
	for (int i = 0; i < tst.b.n; i++) tst.role[i] = R_TEST;

	int *s_train, *s_val, *t_lab, *t_unlab, *t_val, *t_test;
	int n_s = collect(&src, R_SOURCE_TRAIN, &s_train);
	int n_sv = collect(&src, R_SOURCE_VAL, &s_val);
	int n_l = collect(&tgt, R_LABELLED_TRAIN, &t_lab);
	int n_u = collect(&tgt, R_UNLABELLED_TRAIN, &t_unlab);
	int n_tv = collect(&tgt, R_VALIDATION, &t_val);
	int n_tt = collect(&tgt, R_TEST, &t_test);

	report("source", &src);
	report("target", &tgt);
	if (opt.test) report("test", &tst);
	if (n_s < 2)
		die("%s: %d source training row%s; a batch needs at least 2", src.path, n_s, n_s == 1 ? "" : "s");
	if (opt.supervised && n_l == 0)
		die("%s: no labelled target rows to train on (%s was given, but the target has no labels)",
		    tgt.path, opt.labeled_per_class ? "--labeled-per-class" : "--labeled-fraction");
	if (!opt.supervised && opt.val_given && opt.val_fraction > 0) {
		if (n_tv) warnx("unsupervised run with --val-fraction: %d labelled target rows will be used for model selection", n_tv);
		else warnx("--val-fraction: the target has no labelled rows for validation");
	}
	if (n_l + n_u == 1) warnx("%s: a single target training row; every target batch repeats it", tgt.path);

	/* ---- batch shapes ---- */
	int bs = n_s < opt.batch_size ? n_s : (int)opt.batch_size;
	long steps = n_s / opt.batch_size > 0 ? n_s / opt.batch_size : 1;
	int nl_b, nu_b; /* labelled and unlabelled target rows per batch */
	if (n_l > 0 && n_u > 0) {
		nl_b = (int)(opt.target_batch_size / 2);
		if (nl_b < 2) nl_b = 2;
		nu_b = (int)opt.target_batch_size - nl_b;
		if (nu_b < 2) nu_b = 2;
		if (nl_b + nu_b != opt.target_batch_size)
			info("target batch of %d rows: %d labelled + %d unlabelled (at least 2 of each)", nl_b + nu_b, nl_b, nu_b);
	} else if (n_l > 0) {
		nl_b = (int)opt.target_batch_size;
		nu_b = 0;
	} else {
		nl_b = 0;
		nu_b = (int)opt.target_batch_size;
	}
	int bt = nl_b + nu_b;
	/* every labelled target row at least once per epoch (target-only with a small source) */
	if (nl_b > 0 && (n_l + nl_b - 1) / nl_b > steps) steps = (n_l + nl_b - 1) / nl_b;
	info("%ld epochs x %ld steps; %d source + %d target rows per batch (%d labelled, %d unlabelled); %s",
	     opt.epochs, steps, bs, bt, nl_b, nu_b, opt.supervised ? "supervised" : "unsupervised");

	/* ---- side outputs ---- */
	if (opt.split_out) {
		Input *ins[3] = { &src, &tgt, &tst };
		write_split(opt.split_out, ins, opt.test ? 3 : 2);
	}
	if (opt.test_out) {
		if (opt.test) {
			int *all;
			int n = collect(&tst, R_TEST, &all);
			write_test(opt.test_out, &tst, &out, all, n);
			free(all);
		} else {
			write_test(opt.test_out, &tgt, &out, t_test, n_tt);
		}
	}

	/* ---- header ---- */
	header_set_int(&out, "steps_per_epoch", steps);
	header_set_int(&out, "epochs", opt.epochs);
	header_set_int(&out, "batch_source", bs);
	header_set_int(&out, "batch_target", bt);
	header_set_int(&out, "batch_target_labeled", nl_b);
	header_set_int(&out, "seed", (int64_t)opt.seed);
	header_set_int(&out, "split_seed", (int64_t)opt.split_seed);
	header_set_str(&out, "mode", opt.supervised ? "supervised" : "unsupervised");
	const Blob *pre = header_get(&src.h, "preprocessing");
	if (pre) header_set(&out, "preprocessing", pre);
	if (src.img) {
		/* how rows were made of tiles; for images it is also the model's preprocessing
		 * (with the source's stain normalisation, when it had one) */
		msgpack_sbuffer sb;
		msgpack_packer pk;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 5);
		msgpack_pack_str_with_body(&pk, "h", 1); msgpack_pack_int(&pk, src.th);
		msgpack_pack_str_with_body(&pk, "w", 1); msgpack_pack_int(&pk, src.tw);
		msgpack_pack_str_with_body(&pk, "channels", 8); msgpack_pack_int(&pk, 3);
		msgpack_pack_str_with_body(&pk, "layout", 6); msgpack_pack_str_with_body(&pk, "hwc", 3);
		msgpack_pack_str_with_body(&pk, "scale", 5); msgpack_pack_double(&pk, 1.0 / 255.0);
		Blob ib = { sb.data, sb.size };
		header_set(&out, "image", &ib);
		if (!pre) {
			const Blob *sn = header_get(&src.h, "stain_norm");
			msgpack_sbuffer pb;
			msgpack_packer pp;
			msgpack_sbuffer_init(&pb);
			msgpack_packer_init(&pp, &pb, msgpack_sbuffer_write);
			msgpack_pack_map(&pp, 2);
			msgpack_pack_str_with_body(&pp, "image", 5);
			msgpack_pack_bin_body(&pp, ib.data, ib.len);  /* raw: the packed map itself */
			msgpack_pack_str_with_body(&pp, "stain_norm", 10);
			if (sn) msgpack_pack_bin_body(&pp, sn->data, sn->len);
			else msgpack_pack_nil(&pp);
			Blob pbb = { pb.data, pb.size };
			header_set(&out, "preprocessing", &pbb);
			msgpack_sbuffer_destroy(&pb);
		}
		msgpack_sbuffer_destroy(&sb);
		header_set_int(&out, "augment", opt.augment);
		if (opt.augment) header_set_double(&out, "jitter", opt.jitter);
	}
	header_set_int(&out, "n_labeled_target", n_l);
	header_set_int(&out, "n_unlabeled_target", n_u);
	header_set_int(&out, "n_source_train", n_s);
	header_set_int(&out, "n_source_val", n_sv);
	header_set_int(&out, "n_target_val", n_tv);
	header_set_int(&out, "n_test", opt.test ? tst.b.n : n_tt);
	if (opt.labeled_per_class) header_set_int(&out, "labeled_per_class", opt.labeled_per_class);
	if (opt.labeled_fraction > 0) header_set_double(&out, "labeled_fraction", opt.labeled_fraction);
	header_set_double(&out, "val_fraction", val_frac);
	header_set_double(&out, "test_fraction", test_frac);
	header_set_double(&out, "source_val_fraction", opt.source_val_fraction);
	header_set_double(&out, "source_fraction", opt.source_fraction);
	header_set_int(&out, "balance_classes", opt.balance);

	static char obuf[1 << 20];
	setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
	SWriter w;
	sw_init(&w, stdout, "<stdout>");
	sw_header(&w, &out);
	long rows = 0;
	if (n_tv) { write_val(&w, "target", &tgt, t_val, n_tv); rows += n_tv; }
	if (n_sv) { write_val(&w, "source", &src, s_val, n_sv); rows += n_sv; }

	/* ---- epochs ---- */
	int f = row_width(&src);
	rng_seed2(&aug_rng, opt.seed, RS_AUGMENT);
	float *xs = xmallocarray((size_t)bs * (size_t)(f ? f : 1), sizeof(float));
	float *xt = xmallocarray((size_t)(bt ? bt : 1) * (size_t)(f ? f : 1), sizeof(float));
	int32_t *ys = xmallocarray((size_t)bs, sizeof(int32_t)), *yt = xmallocarray((size_t)(bt ? bt : 1), sizeof(int32_t));
	Rng epoch_rng, order_rng;
	rng_seed2(&epoch_rng, opt.seed, RS_SOURCE_EPOCH);
	rng_seed2(&order_rng, opt.seed, RS_BALANCE_ORDER);
	Cycler lab, unlab;
	cycler_init(&lab, t_lab, n_l, RS_TARGET_LAB);
	cycler_init(&unlab, t_unlab, n_u, RS_TARGET_UNLAB);
	/* class-balanced source: one cycler per class present in source-train */
	Cycler *bycls = NULL;
	int *present = NULL, npresent = 0;
	if (opt.balance) {
		bycls = xcalloc((size_t)out.nclass, sizeof *bycls);
		present = xmallocarray((size_t)out.nclass, sizeof *present);
		int *tmp = xmallocarray((size_t)n_s, sizeof *tmp);
		for (int c = 0; c < out.nclass; c++) {
			int m = 0;
			for (int i = 0; i < n_s; i++)
				if (src.cls[s_train[i]] == c) tmp[m++] = s_train[i];
			cycler_init(&bycls[c], tmp, m, RS_BALANCE_CLASS + (uint64_t)c);
			if (m) present[npresent++] = c;
		}
		free(tmp);
	}
	int64_t shs[2] = { bs, f }, shys[1] = { bs }, sht[2] = { bt, f }, shyt[1] = { bt };
	double t_epochs = now_seconds();
	for (long e = 0; e < opt.epochs; e++) {
		if (!opt.balance) rng_shuffle_int(&epoch_rng, s_train, n_s);
		for (long s = 0; s < steps; s++) {
			/* steps raised for the labelled target cycle the source: past the end of
			 * this epoch's permutation, rows are taken from its start again */
			if (!opt.balance && !src.img && (s + 1) * bs <= n_s) {
				/* spilled rows: ask for the next step's rows now, read this step's in
				 * file order (in memory both are plain copies) */
				if (s + 1 < steps && (s + 2) * bs <= n_s) rows_prefetch(&src.rs, s_train + (s + 1) * bs, bs);
				rows_gather(&src.rs, s_train + s * bs, bs, xs);
				for (int k = 0; k < bs; k++) ys[k] = src.cls[s_train[s * bs + k]];
			} else for (int k = 0; k < bs; k++) {
				int r;
				if (opt.balance) {
					if (k % npresent == 0) rng_shuffle_int(&order_rng, present, npresent);
					r = cycler_next(&bycls[present[k % npresent]]);
				} else {
					r = s_train[(s * bs + k) % n_s];
				}
				gather(xs, ys, &src, r, src.cls[r], k);
			}
			for (int k = 0; k < nl_b; k++) {
				int r = cycler_next(&lab);
				gather(xt, yt, &tgt, r, tgt.cls[r], k);
			}
			for (int k = 0; k < nu_b; k++) {
				int r = cycler_next(&unlab);
				gather(xt, yt, &tgt, r, -1, nl_b + k);
			}
			sw_map(&w, 7);
			sw_key(&w, "type"); sw_str(&w, "batch");
			sw_key(&w, "epoch"); sw_int(&w, e);
			sw_key(&w, "step"); sw_int(&w, s);
			sw_key(&w, "xs"); sw_tensor(&w, DT_F32, 2, shs, xs);
			sw_key(&w, "ys"); sw_tensor(&w, DT_I32, 1, shys, ys);
			sw_key(&w, "xt"); sw_tensor(&w, DT_F32, 2, sht, xt);
			sw_key(&w, "yt"); sw_tensor(&w, DT_I32, 1, shyt, yt);
			w.frames++;
			rows += bs + bt;
		}
		sw_map(&w, 2);
		sw_key(&w, "type"); sw_str(&w, "epoch_end");
		sw_key(&w, "epoch"); sw_int(&w, e);
		w.frames++;
		progress("epoch %ld/%ld", e + 1, opt.epochs);
	}
	progress_done();
	if (progress_on)
		info("inputs read and validation sets written in %.1f s; %ld epochs written in %.1f s (%.2f s per epoch)", t_epochs - t_start, opt.epochs,
		     now_seconds() - t_epochs, (now_seconds() - t_epochs) / (double)opt.epochs);
	sw_end(&w, rows, w.frames - 1);
	sw_flush(&w);

	/* ---- done ---- */
	if (bycls) {
		for (int c = 0; c < out.nclass; c++) cycler_free(&bycls[c]);
		free(bycls);
		free(present);
	}
	cycler_free(&lab);
	cycler_free(&unlab);
	free(xs); free(xt); free(ys); free(yt);
	free(s_train); free(s_val); free(t_lab); free(t_unlab); free(t_val); free(t_test);
	header_free(&out);
	free_input(&src);
	free_input(&tgt);
	if (opt.test) free_input(&tst);
	return 0;
}
