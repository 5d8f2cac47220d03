/* prep.h: expression preprocessing: transforms, statistics (fit, merge, apply,
 * save, load) and gene-id matching. See docs/NORMALIZE.md.
 *
 * The transforms, in this order: drop genes zero everywhere, CPM, log2(x+1),
 * quantile normalisation, ComBat batch correction, selection of the N most variable
 * genes, per-gene z-score.
 * Values are float with NaN = missing (a gene the input lacks); sums are double.
 *
 * Statistics (Stats) hold the working gene list W (after drop-zero), the selected
 * output genes (indices into W), and per-gene accumulators over W that merge by
 * addition: counts, sums and sums of squares of the values after log/quantile, raw
 * sums for filling missing cells, non-zero counts, and the quantile reference
 * (merged as a count-weighted mean). Mean and sd of the selected genes are derived. */
#ifndef DAPIPE_PREP_H
#define DAPIPE_PREP_H

#include <stdint.h>
#include "combat.h"
#include "stream.h"

/* ---- string -> int map (gene keys, sample ids) ---- */
typedef struct {
	char **keys;
	int *vals;
	size_t cap, n;
} StrMap;
void sm_init(StrMap *m, size_t hint);
void sm_free(StrMap *m);
/* returns the value, or -1 if absent */
int sm_get(const StrMap *m, const char *key);
/* inserts key -> val unless present; returns the value now stored */
int sm_put(StrMap *m, const char *key, int val);

/* Matching key of a gene id: an Ensembl id loses its version suffix
 * (ENSG00000141510.16 -> ENSG00000141510); with ignore_case, lower case. Owned. */
char *gene_key(const char *id, int ignore_case);

typedef struct {
	int drop_zero, cpm, log2, quantile, zscore;
	int top_variable;       /* 0: keep all */
	int missing_mean;       /* fill missing cells with the gene's mean raw value */
	double fill;            /* value for genes an input lacks, on the output scale */
	int combat;             /* ComBat after log2/quantile, before selection and z-score */
	int combat_mean_only;
	int combat_labels;      /* the class label is a covariate to preserve */
} PrepOpts;

typedef struct {
	PrepOpts o;
	int ngenes;
	char **genes;           /* W: working gene list */
	int nsel;
	int *sel;               /* output genes: indices into genes, ascending */
	int fitted;             /* accumulators present */
	double n;               /* samples */
	double *count, *sum, *sumsq, *nonzero, *raw_sum, *raw_count; /* (W) */
	double *qref;           /* (W) quantile reference, ascending, or NULL */
	double qn;              /* samples behind qref */
	double *mean, *sd;      /* (nsel) z-score statistics */
	char *combat_column;    /* where the batches come from ("domain": the input's domain) */
	Combat *combat;         /* fitted on W, or NULL */
	Blob before;            /* the "preprocessing" map of the stream these steps were
	                         * applied to (len 0: a raw table, or a stream without
	                         * steps); written as key "before", so chains are kept */
} Stats;

void stats_init(Stats *s, const PrepOpts *o, char *const *genes, int ngenes);
void stats_free(Stats *s);
/* Does the steps need the data whole (fitting from the input itself)? */
int prep_needs_fit(const PrepOpts *o);

/* Fit on x (n,W) holding values after CPM and log2 (NaN = missing); raw_sum/raw_count
 * (W) are the raw-scale sums for missing-value filling (may be NULL). Drops all-zero
 * genes when asked (compacting x, genes and the raw sums; *W updated), applies the
 * quantile normalisation in place, accumulates and finalizes. */
void stats_fit(Stats *s, float *x, int n, const double *raw_sum, const double *raw_count);
/* stats_fit in two halves, for a step in between (ComBat): the first drops zero genes
 * and quantile-normalises x in place; the second accumulates and finalizes. */
void stats_fit_prepare(Stats *s, float *x, int n, const double *raw_sum, const double *raw_count);
void stats_fit_finish(Stats *s, const float *x, int n);
/* derive sel (top variable), mean and sd from the accumulators */
void stats_finalize(Stats *s);
/* merge k statistics (same steps) into out; dies with a message naming names[i] */
void stats_merge(Stats *out, Stats *const *in, char *const *names, int k);

/* Serialise as the "preprocessing" map and back. name is for messages. */
void stats_to_blob(const Stats *s, Blob *b);
void stats_from_object(Stats *s, const SReader *r, const msgpack_object *o);
/* Chains of preprocessing ("before"): is the map one without steps and without a
 * "before" (raw values)? Are two maps the same (compared as re-packed msgpack)? The
 * chain in words, e.g. "[log2] then [log2, zscore]" (owned by the caller). A blob of
 * len 0 is raw values. */
int pre_trivial(const Blob *b);
int pre_equal(const Blob *a, const Blob *b);
char *pre_describe(const Blob *b);

/* stats file: a stream with header kind "stats"; written atomically */
void stats_save(const Stats *s, const char *path);
/* the "preprocessing" map of a stats file or model bundle; kind_out gets the kind */
void stats_load(Stats *s, const char *path, Header *h_out);

/* ---- transforms on one row ---- */
/* x *= 1e6 / sum(x) over the non-missing entries; returns the library size */
double cpm_row(float *x, int g);
/* log2(x+1) in place; returns the index of the first value <= -1 (or -1) */
long log2p1(float *x, long n);
/* quantile-normalise one row (W, NaN = missing skipped) to the reference (W) */
void quantile_row(float *x, int w, const double *ref, void *scratch);
/* scratch bytes that quantile_row and quantile_ref_add need for w genes */
size_t quantile_scratch(int w);
/* add the row's sorted values, resampled to w points, into acc (W) */
int quantile_ref_add(double *acc, const float *x, int w, void *scratch);
/* select the n largest of v (w), ties to the lower index; out gets indices ascending */
void top_n(const double *v, int w, int n, int *out);

#endif
