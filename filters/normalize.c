/* normalize: expression tables in, a data stream out.
 *
 * Reads CSV/TSV (samples as rows, or --genes-as-rows), GCT 1.2, ARCHS4 HDF5 or a data
 * stream, plain or gzip (detected by magic bytes), skips named metadata columns, joins
 * labels (a column of the table, an HDF5 metadata field or an id->label file), aligns
 * genes to one list (the first input's, --genes, --stats or --like), applies the
 * transforms in their fixed order (drop-zero, CPM, log2(x+1), quantile, ComBat,
 * top-variable, z-score), fits or applies saved statistics, and writes a data stream:
 *   header {kind:"data", features, classes, domains, preprocessing:{steps, genes,
 *           selected, fitted statistics}}, data {ids, x, y, d}..., end {rows, frames}.
 * On bad input it stops with one line naming file, line and column, leaving the stream
 * without its end frame.
 * Other modes: --merge-stats OUT IN... merges statistics fitted on chunks;
 * --show header|shapes|head|csv|pca [FILE] inspects a stream; --concat STREAM... joins the
 * streams of chunks into one and --list-samples FILE.h5 lists the ids an HDF5 selection
 * gives (common/chunk.c; both for pipelines/preprocess).
 * Options: see usage() (--help). Exit: 0 ok, 1 data or runtime error, 2 usage error. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "chunk.h"
#include "prep.h"
#include "stream.h"
#include "table.h"
#include "util.h"

static void usage(void)
{
	printf(
"Usage: normalize [OPTIONS] [FILE...]        (FILE '-' or none: stdin)\n"
"       normalize --merge-stats OUT STATS...\n"
"       normalize --concat [--block-rows N] STREAM...\n"
"       normalize --list-samples [--samples-file F] [--where F=V] FILE.h5\n"
"       normalize --show header|shapes|head|csv|pca [FILE]\n"
"Read expression tables (CSV/TSV/GCT, plain or gzip, or a data stream) and write a\n"
"data stream on stdout. Several inputs are concatenated, each aligned to one gene list.\n"
"\n"
"Input:\n"
"  --format F          auto|csv|tsv|gct|stream|hdf5 (default auto: HDF5 by its signature,\n"
"                      stream by its first byte, GCT by \"#1.2\", otherwise CSV/TSV by\n"
"                      the header line)\n"
"  --delimiter C       field delimiter: ',' ';' or 'tab' (default: detected)\n"
"  --genes-as-rows     rows are genes, columns samples (read whole and transposed)\n"
"  --gene-id W         GCT: name|description column names the genes (default name);\n"
"                      HDF5: symbol|ensembl (default symbol)\n"
"  --label-column NAME labels: a column of the table, or of --labels FILE\n"
"                      (default with --labels: its second column)\n"
"  --labels FILE       id->label table (CSV/TSV with a header line)\n"
"  --id-column NAME    id column of --labels (default: its first column)\n"
"  --ignore-column A,B metadata columns of the table (series, sex, age...) that are\n"
"                      neither genes nor samples; repeatable (default: none). The id\n"
"                      column, --label-column and --combat's batch column are never genes\n"
"  --classes A,B,...   explicit class list and order (default: order of first appearance);\n"
"                      a label outside it is an error. Empty and NA labels: unlabelled (-1)\n"
"  --domain NAME       domain of the inputs; repeat to give one per input (default: each\n"
"                      file's base name without extensions; stdin: \"stdin\")\n"
"  --duplicates R      duplicate gene ids in one input: first|sum (default first)\n"
"  --ignore-case       match gene symbols case-insensitively (Ensembl versions always\n"
"                      ignored: ENSG00000141510.16 matches ENSG00000141510)\n"
"  --missing M         empty/NA/NaN cells: error|mean (default error; mean: the gene's\n"
"                      mean raw value, fitted on the input or taken from --stats)\n"
"  --block-rows N      rows per data frame and per read (default 256)\n"
"HDF5 (ARCHS4 layout: data/expression, meta/genes, meta/samples; see docs/ARCHS4.md):\n"
"  --samples-file FILE the samples whose geo_accession is listed (one per line)\n"
"  --where F=VALUE     the samples whose metadata field F equals VALUE; F~TEXT: contains\n"
"                      TEXT (any case); repeatable, all must hold (default: all samples)\n"
"  --label-field F     labels from the sample metadata field F (e.g. source_name_ch1)\n"
"                      Samples are read in blocks of --block-rows columns.\n"
"Transforms (applied in this order; with --stats/--like the saved ones):\n"
"  --drop-zero         drop genes that are zero in every sample\n"
"  --cpm               counts per million (library size over all genes of the input)\n"
"  --log2              log2(x+1)\n"
"  --quantile          quantile-normalise each sample to the mean sorted sample\n"
"  --combat COLUMN     ComBat batch correction (parametric empirical Bayes, as\n"
"                      sva::ComBat) after log2/quantile, before top-variable and\n"
"                      z-score. Batches from COLUMN of the table (samples as rows), a\n"
"                      sample metadata field (HDF5), or 'domain': the inputs' domains.\n"
"                      Fitting reads the data whole. Off by default\n"
"  --combat-mean-only  ComBat adjusts batch means only, not variances (default off)\n"
"  --combat-keep-labels  the class label is a covariate ComBat preserves (every fitted\n"
"                      sample must be labelled; default off)\n"
"  --top-variable N    keep the N genes of highest variance (after log/quantile, before\n"
"                      z-score), in their original order (default 0: all)\n"
"  --zscore            per-gene (x-mean)/sd, population sd; sd 0 gives 0\n"
"Statistics and alignment:\n"
"  --fit-stats FILE    save the fitted statistics (written atomically)\n"
"  --stats FILE        apply saved statistics: same transforms, same genes and order\n"
"  --like BUNDLE       apply the preprocessing stored in a model bundle's header\n"
"  --genes FILE        align to this gene list (one id per line)\n"
"  --fill V            value for genes an input lacks, on the output (transformed)\n"
"                      scale, set after all transforms (default 0)\n"
"  --merge-stats OUT   merge statistics files fitted on chunks into OUT\n"
"  --concat            join data streams of chunks (same features and preprocessing)\n"
"                      into one stream in frames of --block-rows (default: off)\n"
"  --list-samples      print the geo_accession of each sample the HDF5 selection\n"
"                      gives, one per line, in file order (default: off)\n"
"Inspection:\n"
"  --show MODE         header | shapes | head | csv | pca (CSV id,domain,label,pc1,pc2;\n"
"                      reads the stream whole)\n"
"  --rows N            rows shown by --show head (default 5)\n"
"  --progress          progress on stderr even when it is not a terminal\n"
"  --quiet             no messages except errors\n"
"  --help              this help\n"
"\n"
"Memory: samples-as-rows input streams in blocks when the output needs no fitting from\n"
"the input (log2, CPM, --stats, --like). Fitting drop-zero, quantile, top-variable,\n"
"z-score or missing means from the input itself needs the data whole; so do\n"
"genes-as-rows and GCT tables, and labels without --classes (to learn the class order).\n"
"Exit: 0 ok, 1 data or runtime error, 2 usage error.\n");
	exit(0);
}

/* ---- options ---- */

static TableOpts topt;
static PrepOpts popt;
static const char *labels_path, *id_column, *label_column, *classes_arg;
static const char *samples_file, *combat_arg;
static int concat_mode, list_mode;
static const char *combat_col;  /* the batch column in use, or NULL; "domain": the domains */
static char **fit_batch;        /* fit mode with ComBat: batch of each accumulated row */
static int fit_batch_cap;
static const char *stats_path, *like_path, *genes_path, *fit_path, *merge_path, *show_mode;
static char **domain_args;
static int ndomain_args;
static int dup_sum, ignore_case, show_rows = 5, transforms_given;

/* ---- state ---- */

static Header H;                /* output header */
static Stats S;                 /* statistics to apply, or fitted */
static int have_S;              /* statistics from --stats/--like */
static char **W;                /* working gene list */
static int nW;
static StrMap Wkey;             /* gene key -> index in W */
static StrMap ids_seen;
static char **input_names;
static StrMap label_map;        /* --labels: id -> index in label_vals */
static char **label_vals;
static int nlabel_vals;
static long n_labelled, n_unlabelled, n_label_matched;
static int fixed_classes;
static SWriter out;
static long out_rows, out_frames;

typedef struct {
	Table t;
	const char *name;
	int dom;                /* fixed domain index, or -1 (stream rows carry theirs) */
	int nu;                 /* unique genes of the input */
	int *colmap;            /* table gene -> unique gene, -1 = ignored duplicate */
	int *umap;              /* W gene -> unique gene or -1 */
	int has_dups;
	float *fillu;           /* per unique gene raw fill for missing cells, or NULL */
	float *u;               /* scratch (nu) */
} Input;

static int show_main(const char *mode, const char *path, int rows);

static char *base_domain(const char *path)
{
	if (strcmp(path, "-") == 0) return xstrdup("stdin");
	const char *b = strrchr(path, '/');
	b = b ? b + 1 : path;
	char *d = xstrdup(b);
	char *dot = strchr(d + (d[0] == '.'), '.');
	if (dot) *dot = 0;
	return d;
}

static char *fmt_count(long v, char *buf)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof tmp, "%ld", v), k = 0, j = 0;
	for (int i = 0; i < n; i++) {
		buf[k++] = tmp[i];
		j = n - 1 - i;
		if (j > 0 && j % 3 == 0 && tmp[i] != '-') buf[k++] = ',';
	}
	buf[k] = 0;
	return buf;
}

/* ---- labels ---- */

static void load_labels(void)
{
	CsvIn c;
	csv_in_open(&c, labels_path, topt.delim);
	if (!csv_in_next(&c)) die("%s: empty file", labels_path);
	int nc = c.nf, idc = 0, lc = 1;
	if (id_column) {
		idc = -1;
		for (int i = 0; i < nc; i++) if (strcmp(c.f[i], id_column) == 0) idc = i;
		if (idc < 0) die("%s: no column named '%s' (--id-column)", labels_path, id_column);
	}
	if (label_column) {
		lc = -1;
		for (int i = 0; i < nc; i++) if (strcmp(c.f[i], label_column) == 0) lc = i;
		if (lc < 0) die("%s: no column named '%s' (--label-column)", labels_path, label_column);
	} else if (nc < 2) {
		die("%s: needs an id column and a label column", labels_path);
	}
	sm_init(&label_map, 1024);
	int cap = 1024;
	label_vals = xmallocarray((size_t)cap, sizeof(char *));
	while (csv_in_next(&c)) {
		if (c.nf == nc + 1 && c.fl[nc] == 0) c.nf--;
		if (c.nf != nc) die("%s:%ld: %d fields, expected %d (as in the header line)", labels_path, c.rec_line, c.nf, nc);
		if (sm_get(&label_map, c.f[idc]) >= 0) die("%s:%ld: duplicate id '%s'", labels_path, c.rec_line, c.f[idc]);
		if (nlabel_vals == cap) { cap *= 2; label_vals = xrealloc(label_vals, sizeof(char *) * (size_t)cap); }
		const char *l = c.f[lc];
		int missing = !*l || strcmp(l, "NA") == 0 || str_ieq(l, "nan");
		label_vals[nlabel_vals] = missing ? NULL : xstrdup(l);
		sm_put(&label_map, c.f[idc], nlabel_vals++);
	}
	if (nlabel_vals == 0) die("%s: no data rows (header only)", labels_path);
	csv_in_close(&c);
}

static int class_of(const char *label, const Input *in, long line)
{
	if (!label) { n_unlabelled++; return -1; }
	int k = header_find_class(&H, label);
	if (k < 0) {
		if (fixed_classes) {
			if (line > 0 && in->t.format != TF_STREAM) die("%s:%ld: label '%s' is not in --classes", in->name, line, label);
			die("%s: label '%s' is not in the class list", in->name, label);
		}
		k = header_add_class(&H, label);
	}
	n_labelled++;
	return k;
}

/* ---- gene alignment ---- */

static void set_W(char **genes, int n)
{
	W = genes;
	nW = n;
	sm_init(&Wkey, (size_t)n);
	for (int i = 0; i < n; i++) {
		char *k = gene_key(genes[i], ignore_case);
		sm_put(&Wkey, k, i);
		free(k);
	}
}

/* deduplicated gene list of a table (the working list when nothing else gives one) */
static char **unique_genes(Table *t, int *n)
{
	StrMap m;
	sm_init(&m, (size_t)t->ngenes);
	char **g = xmallocarray((size_t)t->ngenes + 1, sizeof(char *));
	int k = 0;
	for (int i = 0; i < t->ngenes; i++) {
		char *key = gene_key(t->genes[i], ignore_case);
		if (sm_get(&m, key) < 0) { sm_put(&m, key, k); g[k++] = xstrdup(t->genes[i]); }
		free(key);
	}
	sm_free(&m);
	*n = k;
	return g;
}

static void align_input(Input *in)
{
	Table *t = &in->t;
	StrMap m;
	sm_init(&m, (size_t)t->ngenes);
	in->colmap = xmallocarray((size_t)t->ngenes + 1, sizeof(int));
	int ndup = 0;
	in->nu = 0;
	int *u2w = xmallocarray((size_t)t->ngenes + 1, sizeof(int));
	for (int i = 0; i < t->ngenes; i++) {
		char *key = gene_key(t->genes[i], ignore_case);
		int u = sm_get(&m, key);
		if (u >= 0) {
			ndup++;
			in->colmap[i] = dup_sum ? u : -1;
		} else {
			u = in->nu++;
			sm_put(&m, key, u);
			in->colmap[i] = u;
			u2w[u] = sm_get(&Wkey, key);
		}
		free(key);
	}
	sm_free(&m);
	in->has_dups = ndup > 0;
	char b1[32], b2[32], b3[32];
	if (ndup)
		info("%s: %s duplicate gene ids (%s)", in->name, fmt_count(ndup, b1), dup_sum ? "summed" : "the first kept");
	in->umap = xmallocarray((size_t)nW + 1, sizeof(int));
	for (int j = 0; j < nW; j++) in->umap[j] = -1;
	int matched = 0;
	for (int u = 0; u < in->nu; u++)
		if (u2w[u] >= 0 && in->umap[u2w[u]] < 0) { in->umap[u2w[u]] = u; matched++; }
	free(u2w);
	int extra = in->nu - matched;
	if (extra > 0)
		info("%s: %s of %s genes matched (%s extra genes dropped)", in->name, fmt_count(matched, b1), fmt_count(nW, b2), fmt_count(extra, b3));
	else
		info("%s: %s of %s genes matched", in->name, fmt_count(matched, b1), fmt_count(nW, b2));
	if (matched == 0) die("%s: no gene matches the gene list (wrong --genes-as-rows or gene ids?)", in->name);
	if (matched < nW && !quiet) {
		char list[512];
		int k = 0, shown = 0;
		list[0] = 0;
		for (int j = 0; j < nW && shown < 5; j++)
			if (in->umap[j] < 0) {
				k += snprintf(list + k, sizeof list - (size_t)k, "%s%s", shown ? ", " : "", W[j]);
				if (k >= (int)sizeof list) k = (int)sizeof list - 1;
				shown++;
			}
		warnx("%s: %s genes missing, set to %g after the transforms: %s%s", in->name,
		      fmt_count(nW - matched, b1), popt.fill, list, nW - matched > 5 ? ", ..." : "");
	}
	in->u = xmallocarray((size_t)in->nu + 1, sizeof(float));
}

/* ---- rows: stage 1 (raw -> W space after CPM and log2) ---- */

static double *raw_sum, *raw_count;   /* (W) fit mode */

static void stage1(Input *in, const float *raw, float *w, const char *id, long line)
{
	Table *t = &in->t;
	float *u;
	if (!in->has_dups && in->nu == t->ngenes) {
		memcpy(in->u, raw, sizeof(float) * (size_t)in->nu);
	} else {
		for (int k = 0; k < in->nu; k++) in->u[k] = NAN;
		for (int g = 0; g < t->ngenes; g++) {
			int k = in->colmap[g];
			if (k < 0) continue;
			float v = raw[g];
			if (isnan(in->u[k])) in->u[k] = v;
			else if (!isnan(v)) in->u[k] += v;
		}
	}
	u = in->u;
	if (raw_sum)
		for (int j = 0; j < nW; j++) {
			int k = in->umap[j];
			if (k >= 0 && !isnan(u[k])) { raw_sum[j] += u[k]; raw_count[j] += 1; }
		}
	if (in->fillu)
		for (int k = 0; k < in->nu; k++)
			if (isnan(u[k])) u[k] = in->fillu[k];
	if (popt.cpm) {
		double lib = cpm_row(u, in->nu);
		if (lib <= 0) warnx("%s: sample '%s' has library size %g; CPM left it unscaled", in->name, id, lib);
	}
	for (int j = 0; j < nW; j++) {
		int k = in->umap[j];
		w[j] = k >= 0 ? u[k] : NAN;
	}
	if (popt.log2) {
		long bad = log2p1(w, nW);
		if (bad >= 0) {
			if (line > 0 && t->format != TF_STREAM)
				die("%s:%ld: sample '%s', gene %s: a value <= -1 where log2(x+1) is undefined", in->name, line, id, W[bad]);
			die("%s: sample '%s', gene %s: a value <= -1 where log2(x+1) is undefined", in->name, id, W[bad]);
		}
	}
}

/* stage 2: W space -> output (quantile when applying, selection, z-score, fill) */
static void stage2(const float *w_in, float *w_scratch, float *o, int do_quantile, void *qscr, int32_t cb, int32_t cl)
{
	const float *w = w_in;
	if (do_quantile && S.o.quantile) {
		memcpy(w_scratch, w_in, sizeof(float) * (size_t)nW);
		quantile_row(w_scratch, nW, S.qref, qscr);
		w = w_scratch;
	}
	if (cb >= 0) {
		if (w != w_scratch) memcpy(w_scratch, w, sizeof(float) * (size_t)nW);
		combat_apply(S.combat, w_scratch, 1, &cb, &cl);
		w = w_scratch;
	}
	for (int j = 0; j < S.nsel; j++) {
		float v = w[S.sel[j]];
		if (isnan(v)) { o[j] = (float)S.o.fill; continue; }
		if (S.o.zscore) v = S.sd[j] > 0 ? (float)((v - S.mean[j]) / S.sd[j]) : 0.0f;
		o[j] = v;
	}
}

static void emit(Block *b)
{
	if (b->n == 0) return;
	sw_block(&out, b);
	out_rows += b->n;
	out_frames++;
	progress("%ld rows", out_rows);
	block_clear(b);
}

static void check_id(Input *in, int ii, int i, const char *id)
{
	int prev = sm_get(&ids_seen, id);
	if (prev >= 0) {
		if (in->t.format != TF_STREAM && in->t.lines[i] > 0)
			die("%s:%ld: duplicate sample id '%s' (first in %s)", in->name, in->t.lines[i], id, input_names[prev]);
		die("%s: duplicate sample id '%s' (first in %s)", in->name, id, input_names[prev]);
	}
	sm_put(&ids_seen, id, ii);
}

static int row_label(Input *in, int i)
{
	const char *l = in->t.labels[i];
	if (labels_path) {
		int k = sm_get(&label_map, in->t.ids[i]);
		if (k >= 0) n_label_matched++;
		l = k >= 0 ? label_vals[k] : NULL;
	}
	return class_of(l, in, in->t.lines[i]);
}

static int row_domain(Input *in, int i)
{
	if (in->dom >= 0) return in->dom;
	return header_add_domain(&H, in->t.domains[i]);
}

/* missing-value fill from the statistics (apply mode) */
static void fill_from_stats(Input *in)
{
	in->fillu = xmallocarray((size_t)in->nu + 1, sizeof(float));
	for (int k = 0; k < in->nu; k++) in->fillu[k] = 0;
	for (int j = 0; j < nW; j++) {
		int k = in->umap[j];
		if (k >= 0 && S.raw_count && S.raw_count[j] > 0) in->fillu[k] = (float)(S.raw_sum[j] / S.raw_count[j]);
	}
}

static Input *ins;
static int fit, whole;
static Block acc, ob;
static float *wrow, *wtmp, *orow;
static void *qscr;

/* the batch of row i for ComBat */
static const char *row_batch(Input *in, int i, int d)
{
	if (!strcmp(combat_col, "domain")) return H.domains[d];
	const char *b = in->t.batches[i];
	if (b) return b;
	if (in->t.lines[i] > 0 && in->t.format != TF_STREAM)
		die("%s:%ld: sample '%s' has no batch (column %s is empty)", in->name, in->t.lines[i], in->t.ids[i], combat_col);
	die("%s: sample '%s' has no batch (field %s is empty)", in->name, in->t.ids[i], combat_col);
}

/* apply mode: the row's batch and covariate level among those of the ComBat fit */
static void row_combat(Input *in, int i, int d, int y, int32_t *cb, int32_t *cl)
{
	const Combat *c = S.combat;
	const char *b = row_batch(in, i, d);
	*cb = -1;
	for (int k = 0; k < c->nbatch; k++) if (!strcmp(c->batches[k], b)) *cb = k;
	if (*cb < 0) {
		char list[256];
		int k0 = 0;
		list[0] = 0;
		for (int k = 0; k < c->nbatch && k0 < (int)sizeof list - 1; k++)
			k0 += snprintf(list + k0, sizeof list - (size_t)k0, "%s%s", k ? ", " : "", c->batches[k]);
		die("%s: sample '%s': batch '%s' is not one of the ComBat fit (%s)", in->name, in->t.ids[i], b, list);
	}
	*cl = c->nlevel > 1 ? -1 : 0;
	if (c->nlevel > 1 && y >= 0)
		for (int k = 0; k < c->nlevel; k++) if (!strcmp(c->levels[k], H.classes[y])) *cl = k;
}

static void process_block(int ii)
{
	Input *in = &ins[ii];
	Table *t = &in->t;
	for (int r = 0; r < t->n; r++) {
		const char *id = t->ids[r];
		check_id(in, ii, r, id);
		int y = row_label(in, r);
		int d = row_domain(in, r);
		stage1(in, t->x + (size_t)r * t->ngenes, wrow, id, t->lines[r]);
		if (fit) {
			if (popt.combat) {
				if (acc.n == fit_batch_cap) {
					fit_batch_cap = fit_batch_cap ? 2 * fit_batch_cap : 1024;
					fit_batch = xrealloc(fit_batch, sizeof(char *) * (size_t)fit_batch_cap);
				}
				fit_batch[acc.n] = xstrdup(row_batch(in, r, d));
			}
			block_push(&acc, id, wrow, y, d);
		} else {
			int32_t cb = -1, cl = -1;
			if (S.combat) row_combat(in, r, d, y, &cb, &cl);
			stage2(wrow, wtmp, orow, 1, qscr, cb, cl);
			if (whole) block_push(&acc, id, orow, y, d);
			else block_push(&ob, id, orow, y, d);
		}
	}
	if (!whole) emit(&ob);
}

/* fit ComBat on the accumulated rows (W space, after log2/quantile) and correct them */
static void fit_combat(void)
{
	int n = acc.n, G = S.ngenes;
	for (int i = 0; i < n; i++)
		for (int g = 0; g < G; g++)
			if (isnan(acc.x[(size_t)i * G + g]))
				die("sample '%s' lacks gene %s: ComBat needs every gene in every sample "
				    "(align the inputs with --genes to their common genes, or --missing mean)", acc.ids[i], S.genes[g]);
	StrMap bm;
	sm_init(&bm, 64);
	char **bn = xmallocarray((size_t)n + 1, sizeof(char *));
	int32_t *bi = xmallocarray((size_t)n + 1, sizeof(int32_t));
	int nb = 0;
	for (int i = 0; i < n; i++) {
		int k = sm_get(&bm, fit_batch[i]);
		if (k < 0) { k = sm_put(&bm, fit_batch[i], nb); bn[nb++] = fit_batch[i]; }
		bi[i] = k;
	}
	int nl = 1;
	int32_t *li = NULL;
	/* the errors below free this function's arrays first, so that a sanitizer build
	 * reports no leak on them (they are unreachable once die() runs) */
#define FIT_COMBAT_FAIL(...) do { sm_free(&bm); free(bn); free(bi); free(li); die(__VA_ARGS__); } while (0)
	if (nb < 2) {
		const char *only = bn[0]; /* a string of fit_batch, which stays */
		FIT_COMBAT_FAIL("--combat %s: one batch ('%s') in the data; nothing to correct", combat_col, only);
	}
	if (S.o.combat_labels) {
		if (H.nclass < 1) FIT_COMBAT_FAIL("--combat-keep-labels: the samples have no labels");
		nl = H.nclass;
		li = xmallocarray((size_t)n + 1, sizeof(int32_t));
		for (int i = 0; i < n; i++) {
			if (acc.y[i] < 0)
				FIT_COMBAT_FAIL("--combat-keep-labels: sample '%s' is unlabelled; every fitted sample needs a label", acc.ids[i]);
			li[i] = acc.y[i];
		}
	}
	Combat *c = xcalloc(1, sizeof(Combat));
	combat_init(c, G, nb, nl, S.o.combat_mean_only, S.genes, bn, nl > 1 ? H.classes : NULL);
	combat_add(c, acc.x, n, bi, li);
	int un = combat_finalize(c);
	char b1[32], b2[32];
	info("ComBat%s on %d batches (%s): %s of %s genes adjusted", c->mean_only_used ? " (mean only)" : "", nb, combat_col,
	     fmt_count(G - un, b1), fmt_count(G, b2));
	combat_apply(c, acc.x, n, bi, li);
	S.combat = c;
	sm_free(&bm);
	free(bn); free(bi); free(li);
	for (int i = 0; i < n; i++) free(fit_batch[i]);
#undef FIT_COMBAT_FAIL
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	enum { O_FORMAT = 256, O_DELIM, O_GAR, O_GENEID, O_LABCOL, O_LABELS, O_IDCOL, O_CLASSES, O_DOMAIN,
	       O_DUP, O_ICASE, O_MISSING, O_BLOCK, O_DROP, O_CPM, O_LOG2, O_QUANT, O_TOPV, O_Z, O_FIT,
	       O_STATS, O_LIKE, O_GENES, O_FILL, O_MERGE, O_SHOW, O_ROWS, O_PROGRESS, O_QUIET, O_HELP,
	       O_IGNORE, O_SAMPLES_FILE, O_WHERE, O_LABEL_FIELD, O_COMBAT, O_COMBAT_MEAN, O_COMBAT_LABELS,
	       O_CONCAT, O_LIST_SAMPLES };
	static const struct option lo[] = {
		{ "format", 1, 0, O_FORMAT }, { "delimiter", 1, 0, O_DELIM }, { "genes-as-rows", 0, 0, O_GAR },
		{ "gene-id", 1, 0, O_GENEID }, { "label-column", 1, 0, O_LABCOL }, { "labels", 1, 0, O_LABELS },
		{ "id-column", 1, 0, O_IDCOL }, { "classes", 1, 0, O_CLASSES }, { "domain", 1, 0, O_DOMAIN },
		{ "duplicates", 1, 0, O_DUP }, { "ignore-case", 0, 0, O_ICASE }, { "missing", 1, 0, O_MISSING },
		{ "block-rows", 1, 0, O_BLOCK }, { "drop-zero", 0, 0, O_DROP }, { "cpm", 0, 0, O_CPM },
		{ "log2", 0, 0, O_LOG2 }, { "quantile", 0, 0, O_QUANT }, { "top-variable", 1, 0, O_TOPV },
		{ "zscore", 0, 0, O_Z }, { "fit-stats", 1, 0, O_FIT }, { "stats", 1, 0, O_STATS },
		{ "like", 1, 0, O_LIKE }, { "genes", 1, 0, O_GENES }, { "fill", 1, 0, O_FILL },
		{ "merge-stats", 1, 0, O_MERGE }, { "show", 1, 0, O_SHOW }, { "rows", 1, 0, O_ROWS },
		{ "ignore-column", 1, 0, O_IGNORE }, { "samples-file", 1, 0, O_SAMPLES_FILE },
		{ "where", 1, 0, O_WHERE }, { "label-field", 1, 0, O_LABEL_FIELD },
		{ "combat", 1, 0, O_COMBAT }, { "combat-mean-only", 0, 0, O_COMBAT_MEAN },
		{ "combat-keep-labels", 0, 0, O_COMBAT_LABELS },
		{ "concat", 0, 0, O_CONCAT }, { "list-samples", 0, 0, O_LIST_SAMPLES },
		{ "progress", 0, 0, O_PROGRESS }, { "quiet", 0, 0, O_QUIET }, { "help", 0, 0, O_HELP },
		{ 0, 0, 0, 0 }
	};
	int force_progress = 0, quiet_flag = 0, c;
	topt.block_rows = 256;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hq", lo, NULL)) != -1) {
		switch (c) {
		case O_FORMAT:
			if (!strcmp(optarg, "auto")) topt.format = TF_AUTO;
			else if (!strcmp(optarg, "csv")) topt.format = TF_CSV;
			else if (!strcmp(optarg, "tsv")) topt.format = TF_TSV;
			else if (!strcmp(optarg, "gct")) topt.format = TF_GCT;
			else if (!strcmp(optarg, "stream")) topt.format = TF_STREAM;
			else if (!strcmp(optarg, "hdf5")) topt.format = TF_HDF5;
			else usage_error("--format: %s: expected auto, csv, tsv, gct or stream (or hdf5 for an HDF5 file)", optarg);
			break;
		case O_DELIM:
			if (!strcmp(optarg, "tab") || !strcmp(optarg, "\\t") || !strcmp(optarg, "\t")) topt.delim = '\t';
			else if (strlen(optarg) == 1 && optarg[0] != '"' && optarg[0] != '\n') topt.delim = optarg[0];
			else usage_error("--delimiter: %s: expected one character or 'tab'", optarg);
			break;
		case O_GAR: topt.genes_as_rows = 1; break;
		case O_GENEID:
			if (!strcmp(optarg, "name")) topt.gene_id_desc = 0;
			else if (!strcmp(optarg, "description")) topt.gene_id_desc = 1;
			else if (!strcmp(optarg, "symbol")) topt.h5_gene_ensembl = 0;
			else if (!strcmp(optarg, "ensembl")) topt.h5_gene_ensembl = 1;
			else usage_error("--gene-id: %s: expected name or description (GCT), symbol or ensembl (HDF5)", optarg);
			break;
		case O_LABCOL: label_column = optarg; break;
		case O_SAMPLES_FILE: samples_file = optarg; break;
		case O_WHERE: {
			size_t fl = strcspn(optarg, "=~");
			if (fl == 0 || !optarg[fl]) usage_error("--where: %s: expected FIELD=VALUE or FIELD~SUBSTRING", optarg);
			topt.h5_where = xrealloc(topt.h5_where, sizeof(char *) * (size_t)(topt.h5_nwhere + 1));
			topt.h5_where[topt.h5_nwhere++] = optarg;
			break;
		}
		case O_LABEL_FIELD: topt.h5_label_field = optarg; break;
		case O_COMBAT:
			if (!*optarg) usage_error("--combat: empty column name");
			combat_arg = optarg;
			break;
		case O_COMBAT_MEAN: popt.combat_mean_only = 1; transforms_given = 1; break;
		case O_COMBAT_LABELS: popt.combat_labels = 1; transforms_given = 1; break;
		case O_CONCAT: concat_mode = 1; break;
		case O_LIST_SAMPLES: list_mode = 1; break;
		case O_IGNORE: {
			char *cp = xstrdup(optarg), *save = NULL;
			for (char *tok = strtok_r(cp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				topt.ignore_columns = xrealloc(topt.ignore_columns, sizeof(char *) * (size_t)(topt.nignore + 1));
				topt.ignore_columns[topt.nignore++] = tok;
			}
			if (!topt.nignore) usage_error("--ignore-column: empty name");
			break;
		}
		case O_LABELS: labels_path = optarg; break;
		case O_IDCOL: id_column = optarg; break;
		case O_CLASSES: classes_arg = optarg; break;
		case O_DOMAIN:
			domain_args = xrealloc(domain_args, sizeof(char *) * (size_t)(ndomain_args + 1));
			if (!*optarg) usage_error("--domain: empty name");
			domain_args[ndomain_args++] = optarg;
			break;
		case O_DUP:
			if (!strcmp(optarg, "first")) dup_sum = 0;
			else if (!strcmp(optarg, "sum")) dup_sum = 1;
			else usage_error("--duplicates: %s: expected first or sum", optarg);
			break;
		case O_ICASE: ignore_case = 1; break;
		case O_MISSING:
			if (!strcmp(optarg, "error")) popt.missing_mean = 0;
			else if (!strcmp(optarg, "mean")) popt.missing_mean = 1;
			else usage_error("--missing: %s: expected error or mean", optarg);
			break;
		case O_BLOCK: topt.block_rows = (int)parse_long("--block-rows", optarg, 1, 1 << 20); break;
		case O_DROP: popt.drop_zero = 1; transforms_given = 1; break;
		case O_CPM: popt.cpm = 1; transforms_given = 1; break;
		case O_LOG2: popt.log2 = 1; transforms_given = 1; break;
		case O_QUANT: popt.quantile = 1; transforms_given = 1; break;
		case O_TOPV: popt.top_variable = (int)parse_long("--top-variable", optarg, 1, 100000000); transforms_given = 1; break;
		case O_Z: popt.zscore = 1; transforms_given = 1; break;
		case O_FIT: fit_path = optarg; break;
		case O_STATS: stats_path = optarg; break;
		case O_LIKE: like_path = optarg; break;
		case O_GENES: genes_path = optarg; break;
		case O_FILL: popt.fill = parse_double("--fill", optarg, -1e30, 1e30); break;
		case O_MERGE: merge_path = optarg; break;
		case O_SHOW:
			if (strcmp(optarg, "header") && strcmp(optarg, "shapes") && strcmp(optarg, "head") &&
			    strcmp(optarg, "csv") && strcmp(optarg, "pca"))
				usage_error("--show: %s: expected header, shapes, head, csv or pca", optarg);
			show_mode = optarg;
			break;
		case O_ROWS: show_rows = (int)parse_long("--rows", optarg, 0, 1000000000); break;
		case O_PROGRESS: force_progress = 1; break;
		case 'q': case O_QUIET: quiet_flag = 1; break;
		case 'h': case O_HELP: usage(); break;
		default:
			if (optopt && optopt < 256) usage_error("-%c: unknown option", optopt);
			if (optopt) usage_error("%s: needs a value", argv[optind - 1]);
			usage_error("%s: unknown option", argv[optind - 1]);
		}
	}
	progress_setup(force_progress, quiet_flag);
	int nin = argc - optind;
	char **inputs = argv + optind;

	if (show_mode) {
		if (nin > 1) usage_error("--show reads one stream");
		return show_main(show_mode, nin ? inputs[0] : "-", show_rows);
	}
	if (concat_mode) return chunk_concat(inputs, nin, topt.block_rows);
	if (merge_path) {
		if (nin < 1) usage_error("--merge-stats OUT needs statistics files to merge");
		Stats *parts = xcalloc((size_t)nin, sizeof(Stats));
		Stats **pp = xcalloc((size_t)nin, sizeof(Stats *));
		for (int i = 0; i < nin; i++) { stats_load(&parts[i], inputs[i], NULL); pp[i] = &parts[i]; }
		Stats m;
		stats_merge(&m, pp, inputs, nin);
		stats_save(&m, merge_path);
		char b1[32], b2[32];
		info("%s: merged %d statistics files (%s samples, %s genes)", merge_path, nin, fmt_count((long)m.n, b1), fmt_count(m.ngenes, b2));
		for (int i = 0; i < nin; i++) stats_free(&parts[i]);
		stats_free(&m);
		free(parts);
		free(pp);
		return 0;
	}
	if (stats_path && like_path) usage_error("--stats and --like both give the preprocessing; use one");
	if ((stats_path || like_path) && genes_path) usage_error("--genes with --stats/--like: the gene list comes from the statistics");
	if ((stats_path || like_path) && transforms_given)
		usage_error("transform options with --stats/--like: the transforms come from the statistics");
	if ((stats_path || like_path) && fit_path) usage_error("--fit-stats with --stats/--like: nothing to fit");
	if (label_column && labels_path == NULL && topt.genes_as_rows)
		usage_error("--label-column: a genes-as-rows table has no label column; use --labels FILE");
	if (id_column && !labels_path) usage_error("--id-column needs --labels FILE");
	if ((popt.combat_mean_only || popt.combat_labels) && !combat_arg)
		usage_error("--combat-mean-only and --combat-keep-labels need --combat COLUMN");
	if (combat_arg && !stats_path && !like_path) popt.combat = 1;
	if (ndomain_args > 1 && ndomain_args != (nin ? nin : 1))
		usage_error("--domain given %d times for %d inputs (give it once or once per input)", ndomain_args, nin ? nin : 1);
	static char *stdin_arg[] = { "-" };
	if (nin == 0) { inputs = stdin_arg; nin = 1; }
	int nstdin = 0;
	for (int i = 0; i < nin; i++) nstdin += strcmp(inputs[i], "-") == 0;
	if (nstdin > 1) usage_error("stdin ('-') given more than once");

	header_init(&H, "data");
	Header bundle;
	int have_bundle = 0;
	if (stats_path || like_path) {
		const char *p = stats_path ? stats_path : like_path;
		stats_load(&S, p, &bundle);
		have_bundle = 1;
		have_S = 1;
		if (like_path) {
			int same = bundle.nfeat == S.nsel;
			for (int j = 0; same && j < S.nsel; j++) same = strcmp(bundle.features[j], S.genes[S.sel[j]]) == 0;
			if (!same) die("%s: the bundle's features differ from the genes of its preprocessing", like_path);
			for (int k = 0; k < bundle.nclass; k++) header_add_class(&H, bundle.classes[k]);
		}
		header_free(&bundle);
		popt.drop_zero = S.o.drop_zero; popt.cpm = S.o.cpm; popt.log2 = S.o.log2; popt.quantile = S.o.quantile;
		popt.zscore = S.o.zscore; popt.top_variable = S.o.top_variable;
		popt.combat = S.o.combat; popt.combat_mean_only = S.o.combat_mean_only; popt.combat_labels = S.o.combat_labels;
		if (combat_arg && !S.o.combat) usage_error("--combat with --stats/--like: the statistics were fitted without ComBat");
		if (S.o.combat) combat_col = combat_arg ? combat_arg : S.combat_column;
		popt.missing_mean |= S.o.missing_mean;
		S.o.missing_mean = popt.missing_mean;
		S.o.fill = popt.fill;
		set_W(S.genes, S.ngenes);
	}
	if (classes_arg) {
		if (have_bundle && like_path && H.nclass) {
			/* --classes replaces the bundle's list */
			for (int k = 0; k < H.nclass; k++) free(H.classes[k]);
			H.nclass = 0;
		}
		char *cp = xstrdup(classes_arg), *save = NULL;
		for (char *tok = strtok_r(cp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (header_find_class(&H, tok) >= 0) usage_error("--classes: '%s' given twice", tok);
			header_add_class(&H, tok);
		}
		free(cp);
		if (H.nclass == 0) usage_error("--classes: empty list");
		fixed_classes = 1;
	}
	if (labels_path) load_labels();
	if (samples_file) {
		char **ids;
		topt.h5_nids = read_name_list(samples_file, &ids);
		topt.h5_ids = ids;
	}
	if (list_mode) {
		if (nin != 1 || strcmp(inputs[0], "-") == 0) usage_error("--list-samples reads one HDF5 file");
		return chunk_list_h5(inputs[0], topt.h5_ids, topt.h5_nids, topt.h5_where, topt.h5_nwhere);
	}
	if (topt.h5_label_field && (labels_path || label_column))
		usage_error("--label-field with --labels/--label-column: give the labels one way");

	if (!have_S && popt.combat) combat_col = combat_arg;
	if (combat_col && strcmp(combat_col, "domain")) {
		topt.batch_column = combat_col;
		topt.h5_batch_field = combat_col;
	}
	/* open the inputs */
	topt.label_column = labels_path ? NULL : label_column;
	topt.allow_missing = popt.missing_mean;
	ins = xcalloc((size_t)nin, sizeof(Input));
	input_names = xcalloc((size_t)nin, sizeof(char *));
	int any_text_labels = 0;
	for (int i = 0; i < nin; i++) {
		Input *in = &ins[i];
		table_open(&in->t, inputs[i], &topt);
		in->name = in->t.name;
		input_names[i] = (char *)in->name;
		if (in->t.format == TF_STREAM && !ndomain_args) {
			in->dom = -1;
			for (int k = 0; k < in->t.din.h.ndom; k++) header_add_domain(&H, in->t.din.h.domains[k]);
			for (int k = 0; k < in->t.din.h.nclass; k++)
				if (!fixed_classes) header_add_class(&H, in->t.din.h.classes[k]);
		} else {
			char *d = ndomain_args ? xstrdup(domain_args[ndomain_args > 1 ? i : 0]) : base_domain(inputs[i]);
			in->dom = header_add_domain(&H, d);
			free(d);
		}
		if (labels_path || (in->t.format != TF_STREAM && (label_column || topt.h5_label_field))) any_text_labels = 1;
		if (topt.batch_column && in->t.format != TF_HDF5 && in->t.batch_col < 0)
			die("%s: --combat %s: this input has no metadata columns (a stream, GCT or genes-as-rows table); "
			    "--combat domain corrects between inputs", in->name, combat_col);
	}
	/* what the inputs were prepared by (a stream's "preprocessing"; a table: raw values).
	 * It goes into the output's preprocessing as "before", so that statistics or a model
	 * made from this output are applied only to data prepared the same way. */
	Blob in_pre = { 0 };
	for (int i = 0; i < nin; i++) {
		const Blob *b = ins[i].t.format == TF_STREAM ? header_get(&ins[i].t.din.h, "preprocessing") : NULL;
		if (i == 0) {
			if (!pre_trivial(b)) blob_copy(&in_pre, b);
		} else if (!pre_equal(b, &in_pre)) {
			char *d1 = pre_describe(b), *d0 = pre_describe(&in_pre);
			die("%s: prepared by %s, but %s by %s: join inputs prepared alike", ins[i].name, d1, ins[0].name, d0);
		}
	}
	if (have_S && S.before.len && !pre_equal(&S.before, &in_pre)) {
		char *want = pre_describe(&S.before), *got = pre_describe(&in_pre);
		const char *p = stats_path ? stats_path : like_path;
		die("%s: prepared by %s, but %s was fitted on data prepared by %s: prepare it that way first "
		    "and pipe it in (see docs/NORMALIZE.md, \"Chains\")", ins[0].name, got, p, want);
	}
	if (have_S) {
		if (!S.before.len) S.before = in_pre;  /* applied on top of the input's steps */
		else blob_free(&in_pre);               /* the same chain */
	}

	int any_h5 = 0;
	for (int i = 0; i < nin; i++) any_h5 |= ins[i].t.format == TF_HDF5;
	if (!any_h5 && (samples_file || topt.h5_nwhere || topt.h5_label_field))
		usage_error("--samples-file, --where and --label-field select from an HDF5 input; none is");
	if (!have_S) {
		if (genes_path) {
			char **g;
			int n = read_name_list(genes_path, &g);
			set_W(g, n);
		} else {
			int n;
			char **g = unique_genes(&ins[0].t, &n);
			set_W(g, n);
		}
	}
	for (int i = 0; i < nin; i++) align_input(&ins[i]);
	sm_init(&ids_seen, 1024);

	fit = !have_S && (prep_needs_fit(&popt) || fit_path);
	whole = fit || (any_text_labels && !fixed_classes);
	if (!have_S) {
		stats_init(&S, &popt, W, nW);
		S.before = in_pre;
		if (popt.combat) S.combat_column = xstrdup(combat_col);
	}

	FILE *fp = stdout;
	sw_init(&out, fp, "<stdout>");
	qscr = xmalloc(quantile_scratch(nW));
	wrow = xmallocarray((size_t)nW + 1, sizeof(float));
	wtmp = xmallocarray((size_t)nW + 1, sizeof(float));
	/* whole mode: rows in W space (fit) or output space */
	block_init(&acc, fit ? nW : S.nsel, 256);
	block_init(&ob, S.nsel, topt.block_rows);
	int header_written = 0;
	if (!whole) {
		Blob b;
		stats_to_blob(&S, &b);
		header_set(&H, "preprocessing", &b);
		blob_free(&b);
		for (int j = 0; j < S.nsel; j++) {
			H.features = xrealloc(H.features, sizeof(char *) * (size_t)(H.nfeat + 1));
			H.features[H.nfeat++] = xstrdup(W[S.sel[j]]);
		}
		sw_header(&out, &H);
		header_written = 1;
	}
	if (fit) {
		raw_sum = xcalloc((size_t)nW + 1, sizeof(double));
		raw_count = xcalloc((size_t)nW + 1, sizeof(double));
	}
	orow = xmallocarray((size_t)S.nsel + 1, sizeof(float));
	for (int i = 0; i < nin; i++) {
		Input *in = &ins[i];
		Table *t = &in->t;
		if (popt.missing_mean && have_S) fill_from_stats(in);
		/* fit mode with missing means: the file's own raw means, from a first whole read */
		Block rawb;
		int rawmode = fit && popt.missing_mean;
		if (rawmode) {
			block_init(&rawb, t->ngenes, 256);
			char **labs = NULL;
			const char **doms = NULL;
			long *lines = NULL;
			int cap = 0;
			double *su = xcalloc((size_t)t->ngenes + 1, sizeof(double)), *cn = xcalloc((size_t)t->ngenes + 1, sizeof(double));
			while (table_read(t)) {
				if (rawb.n + t->n > cap) {
					cap = (rawb.n + t->n) * 2;
					labs = xrealloc(labs, sizeof(char *) * (size_t)cap);
					doms = xrealloc(doms, sizeof(char *) * (size_t)cap);
					lines = xrealloc(lines, sizeof(long) * (size_t)cap);
				}
				for (int r = 0; r < t->n; r++) {
					labs[rawb.n] = t->labels[r] ? xstrdup(t->labels[r]) : NULL;
					doms[rawb.n] = t->domains[r];
					lines[rawb.n] = t->lines[r];
					block_push(&rawb, t->ids[r], t->x + (size_t)r * t->ngenes, 0, 0);
					const float *x = t->x + (size_t)r * t->ngenes;
					for (int g = 0; g < t->ngenes; g++)
						if (!isnan(x[g])) { su[g] += x[g]; cn[g] += 1; }
				}
			}
			/* per unique gene fill values (a duplicate column counts toward its first) */
			in->fillu = xcalloc((size_t)in->nu + 1, sizeof(float));
			for (int g = t->ngenes - 1; g >= 0; g--) {
				int k = in->colmap[g];
				if (k >= 0) in->fillu[k] = cn[g] > 0 ? (float)(su[g] / cn[g]) : 0.0f;
			}
			free(su); free(cn);
			/* hand the buffered rows back through the table's arrays */
			int keep_block = t->o.block_rows;
			for (int r0 = 0; r0 < rawb.n; r0 += keep_block) {
				int n = rawb.n - r0 < keep_block ? rawb.n - r0 : keep_block;
				for (int r = 0; r < n; r++) {
					free(t->ids[r]);
					free(t->labels[r]);
					t->ids[r] = rawb.ids[r0 + r]; rawb.ids[r0 + r] = NULL;
					t->labels[r] = labs[r0 + r];
					t->domains[r] = doms[r0 + r];
					t->lines[r] = lines[r0 + r];
					memcpy(t->x + (size_t)r * t->ngenes, rawb.x + (size_t)(r0 + r) * t->ngenes, sizeof(float) * (size_t)t->ngenes);
				}
				t->n = n;
				process_block(i);
			}
			rawb.n = 0;
			block_free(&rawb);
			free(labs); free(doms); free(lines);
			continue;
		}
		while (table_read(t)) process_block(i);
	}
	if (labels_path && n_label_matched == 0) die("%s: no id matches a sample of the input", labels_path);
	if ((labels_path || label_column) && n_unlabelled > 0) {
		char b1[32], b2[32];
		info("%s of %s samples have no label (unlabelled)", fmt_count(n_unlabelled, b1), fmt_count(n_unlabelled + n_labelled, b2));
	}
	if (fit) {
		if (acc.n == 0) die("%s: no samples to fit on", ins[0].name);
		stats_fit_prepare(&S, acc.x, acc.n, raw_sum, raw_count);
		if (popt.combat) fit_combat();
		stats_fit_finish(&S, acc.x, acc.n);
		/* stats_fit compacted the genes for drop-zero: acc.x rows now have S.ngenes columns */
		if (S.ngenes != nW) {
			char b1[32];
			info("dropped %s genes that are zero in every sample", fmt_count(nW - S.ngenes, b1));
		}
		if (W != S.genes) {
			/* the list of unique_genes or --genes: S holds its own copy */
			for (int i = 0; i < nW; i++) free(W[i]);
			free(W);
		}
		W = S.genes;
		nW = S.ngenes;
		if (fit_path) stats_save(&S, fit_path);
	}
	if (!header_written) {
		Blob b;
		stats_to_blob(&S, &b);
		header_set(&H, "preprocessing", &b);
		blob_free(&b);
		for (int j = 0; j < S.nsel; j++) {
			H.features = xrealloc(H.features, sizeof(char *) * (size_t)(H.nfeat + 1));
			H.features[H.nfeat++] = xstrdup(S.genes[S.sel[j]]);
		}
		sw_header(&out, &H);
		block_free(&ob);
		block_init(&ob, S.nsel, topt.block_rows);
		orow = xrealloc(orow, sizeof(float) * (size_t)(S.nsel + 1));
		for (int r = 0; r < acc.n; r++) {
			if (fit) stage2(acc.x + (size_t)r * nW, wtmp, orow, 0, qscr, -1, -1);
			else memcpy(orow, acc.x + (size_t)r * S.nsel, sizeof(float) * (size_t)S.nsel);
			block_push(&ob, acc.ids[r], orow, acc.y[r], acc.d[r]);
			if (ob.n == topt.block_rows) emit(&ob);
		}
		emit(&ob);
	}
	sw_end(&out, out_rows, out_frames);
	sw_flush(&out);
	progress_done();
	char b1[32], b2[32];
	info("wrote %s samples x %s genes", fmt_count(out_rows, b1), fmt_count(S.nsel, b2));
	block_free(&acc);
	block_free(&ob);
	for (int i = 0; i < nin; i++) table_close(&ins[i].t);
	return 0;
}

/* ---- --show ---- */

static int is_tensor(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_MAP && obj_get(o, "dtype") && obj_get(o, "shape") && obj_get(o, "data");
}

static void print_tensor_sig(const msgpack_object *o)
{
	const msgpack_object *dt = obj_get(o, "dtype"), *sh = obj_get(o, "shape");
	if (dt->type == MSGPACK_OBJECT_STR) printf("%.*s", (int)dt->via.str.size, dt->via.str.ptr);
	printf("[");
	if (sh->type == MSGPACK_OBJECT_ARRAY)
		for (uint32_t i = 0; i < sh->via.array.size; i++)
			printf("%s%lld", i ? "," : "", (long long)sh->via.array.ptr[i].via.i64);
	printf("]");
}

static void print_str(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\') printf("\\%c", ch);
		else if (ch < 0x20) printf("\\u%04x", ch);
		else putchar(ch);
	}
	putchar('"');
}

static void print_obj(const msgpack_object *o, int depth)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: printf("null"); break;
	case MSGPACK_OBJECT_BOOLEAN: printf(o->via.boolean ? "true" : "false"); break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER: printf("%llu", (unsigned long long)o->via.u64); break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: printf("%lld", (long long)o->via.i64); break;
	case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: printf("%.9g", o->via.f64); break;
	case MSGPACK_OBJECT_STR: print_str(o->via.str.ptr, o->via.str.size); break;
	case MSGPACK_OBJECT_BIN: printf("\"<%u bytes>\"", o->via.bin.size); break;
	case MSGPACK_OBJECT_EXT: printf("\"<ext>\""); break;
	case MSGPACK_OBJECT_ARRAY: {
		uint32_t n = o->via.array.size, show = n > 10 ? 8 : n;
		printf("[");
		for (uint32_t i = 0; i < show; i++) { if (i) printf(", "); print_obj(&o->via.array.ptr[i], depth + 1); }
		if (show < n) printf(", \"... %u more\"", n - show);
		printf("]");
		break;
	}
	case MSGPACK_OBJECT_MAP:
		if (is_tensor(o)) { printf("\""); print_tensor_sig(o); printf("\""); break; }
		printf("{");
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			if (depth == 0) printf("\n  ");
			else if (i) printf(", ");
			print_obj(&o->via.map.ptr[i].key, depth + 1);
			printf(": ");
			print_obj(&o->via.map.ptr[i].val, depth + 1);
			if (depth == 0 && i + 1 < o->via.map.size) printf(",");
		}
		printf(depth == 0 ? "\n}" : "}");
		break;
	}
}

static void show_pca(DataIn *in)
{
	Block b, all;
	block_init(&b, in->h.nfeat, 1);
	block_init(&all, in->h.nfeat, 256);
	while (data_next(in, &b))
		for (int i = 0; i < b.n; i++) block_push(&all, b.ids[i], b.x + (size_t)i * b.f, b.y[i], b.d[i]);
	int n = all.n, f = all.f;
	if (n < 2) die("%s: PCA needs at least 2 rows, the stream has %d", in->r.name, n);
	if (f < 1) die("%s: PCA needs features", in->r.name);
	/* centre the columns (in double) */
	double *mu = xcalloc((size_t)f, sizeof(double));
	for (int i = 0; i < n; i++) for (int j = 0; j < f; j++) mu[j] += all.x[(size_t)i * f + j];
	for (int j = 0; j < f; j++) mu[j] /= n;
	for (int i = 0; i < n; i++) for (int j = 0; j < f; j++) all.x[(size_t)i * f + j] -= (float)mu[j];
	float *pc = xcalloc((size_t)n * 2, sizeof(float));
	float ev[2] = { 0, 0 };
	double total = 0;
	if (n <= f) {
		/* Gram matrix K = Xc Xc^T (n,n): its eigenvectors scaled by sqrt(eigenvalue)
		 * are the principal component scores */
		float *K = xmallocarray((size_t)n * n, sizeof(float)), *w = xmallocarray((size_t)n, sizeof(float));
		gemm(0, 1, n, n, f, 1.0f, all.x, f, all.x, f, 0.0f, K, n);
		for (int i = 0; i < n; i++) total += K[(size_t)i * n + i];
		if (sym_eig(K, w, n) != 0) die("PCA: eigen-decomposition failed");
		for (int c = 0; c < 2 && c < n; c++) {
			int k = n - 1 - c;
			float l = w[k] > 0 ? w[k] : 0;
			ev[c] = l;
			for (int i = 0; i < n; i++) pc[(size_t)i * 2 + c] = K[(size_t)k * n + i] * sqrtf(l);
		}
		free(K); free(w);
	} else {
		/* covariance C = Xc^T Xc (f,f), scores = Xc v */
		float *C = xmallocarray((size_t)f * f, sizeof(float)), *w = xmallocarray((size_t)f, sizeof(float));
		gemm(1, 0, f, f, n, 1.0f, all.x, f, all.x, f, 0.0f, C, f);
		for (int i = 0; i < f; i++) total += C[(size_t)i * f + i];
		if (sym_eig(C, w, f) != 0) die("PCA: eigen-decomposition failed");
		for (int c = 0; c < 2 && c < f; c++) {
			int k = f - 1 - c;
			ev[c] = w[k] > 0 ? w[k] : 0;
			for (int i = 0; i < n; i++) {
				double s = 0;
				for (int j = 0; j < f; j++) s += (double)all.x[(size_t)i * f + j] * C[(size_t)k * f + j];
				pc[(size_t)i * 2 + c] = (float)s;
			}
		}
		free(C); free(w);
	}
	/* sign: the largest score of each component is positive */
	for (int c = 0; c < 2; c++) {
		int best = 0;
		for (int i = 1; i < n; i++) if (fabsf(pc[(size_t)i * 2 + c]) > fabsf(pc[(size_t)best * 2 + c])) best = i;
		if (pc[(size_t)best * 2 + c] < 0) for (int i = 0; i < n; i++) pc[(size_t)i * 2 + c] = -pc[(size_t)i * 2 + c];
	}
	printf("id,domain,label,pc1,pc2\n");
	for (int i = 0; i < n; i++)
		printf("%s,%s,%s,%.6g,%.6g\n", all.ids[i], in->h.domains[all.d[i]], all.y[i] >= 0 ? in->h.classes[all.y[i]] : "",
		       pc[(size_t)i * 2], pc[(size_t)i * 2 + 1]);
	if (total > 0) info("pc1 explains %.1f%%, pc2 %.1f%% of the variance", 100 * ev[0] / total, 100 * ev[1] / total);
	free(pc); free(mu);
	block_free(&b); block_free(&all);
}

static void csv_field(const char *s)
{
	if (strpbrk(s, ",\"\n\r")) print_str(s, strlen(s));
	else fputs(s, stdout);
}

static int show_main(const char *mode, const char *path, int rows)
{
	if (!strcmp(mode, "header") || !strcmp(mode, "shapes")) {
		SReader r;
		sr_open(&r, path);
		const msgpack_object *f = sr_next(&r);
		if (!f) sr_fail(&r, "empty stream (no header frame)");
		if (!strcmp(mode, "header")) {
			print_obj(f, 0);
			printf("\n");
			sr_close(&r);
			return 0;
		}
		do {
			printf("frame %ld: %s", r.frame, frame_type(&r, f));
			for (uint32_t i = 0; i < f->via.map.size; i++) {
				const msgpack_object *k = &f->via.map.ptr[i].key, *v = &f->via.map.ptr[i].val;
				if (obj_is_str(k, "type") || k->type != MSGPACK_OBJECT_STR) continue;
				printf(" %.*s=", (int)k->via.str.size, k->via.str.ptr);
				if (is_tensor(v)) print_tensor_sig(v);
				else if (v->type == MSGPACK_OBJECT_ARRAY) printf("[%u]", v->via.array.size);
				else if (v->type == MSGPACK_OBJECT_MAP) printf("{%u}", v->via.map.size);
				else print_obj(v, 1);
			}
			printf("\n");
		} while ((f = sr_next(&r)));
		sr_close(&r);
		return 0;
	}
	DataIn in;
	data_open(&in, path);
	if (!strcmp(mode, "pca")) { show_pca(&in); data_close(&in); return 0; }
	int head = !strcmp(mode, "head");
	int nf = in.h.nfeat, shown = head && nf > 10 ? 10 : nf;
	printf("id,domain,label");
	for (int j = 0; j < shown; j++) { putchar(','); csv_field(in.h.features[j]); }
	if (shown < nf) printf(",...(%d more)", nf - shown);
	printf("\n");
	Block b;
	block_init(&b, nf, 1);
	long done = 0;
	while (data_next(&in, &b)) {
		for (int i = 0; i < b.n && (!head || done < rows); i++, done++) {
			csv_field(b.ids[i]);
			putchar(',');
			csv_field(in.h.domains[b.d[i]]);
			putchar(',');
			if (b.y[i] >= 0) csv_field(in.h.classes[b.y[i]]);
			for (int j = 0; j < shown; j++) printf(head ? ",%.4g" : ",%.9g", b.x[(size_t)i * nf + j]);
			if (shown < nf) printf(",...");
			printf("\n");
		}
		if (head && done >= rows) break;
	}
	block_free(&b);
	data_close(&in);
	return 0;
}
