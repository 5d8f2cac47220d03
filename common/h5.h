/* h5.h: reading expression matrices in the ARCHS4 HDF5 layout (see docs/ARCHS4.md).
 *
 * Layout (ARCHS4 v2, "human_gene_v2.x.h5"):
 *   data/expression            (genes, samples) integer counts (uint32), chunked
 *   meta/genes/symbol          gene symbols (older v2 files: meta/genes/gene_symbol)
 *   meta/genes/ensembl_gene    Ensembl ids (or meta/genes/ensembl_gene_id)
 *   meta/samples/geo_accession GSM ids; series_id, characteristics_ch1, title, ...
 * Strings may be variable-length or fixed-length (NUL- or space-padded), ASCII or
 * UTF-8. The ARCHS4 v1 layout (meta/genes as one dataset, meta/Sample_<field>) is
 * accepted as a fallback. data/expression may be any integer or float type; values
 * are converted to float by HDF5.
 *
 * Every failure dies (exit 1) with one line naming the file and the dataset:
 *   "normalize: big.h5: meta/samples/series_id: not found"
 * HDF5's own error printing is turned off.
 *
 * Built with HDF5 only when <hdf5.h> is on the include path (compile with
 * $(pkg-config --cflags hdf5), link with $(pkg-config --libs hdf5)); otherwise every
 * function below dies with "built without HDF5 support" and h5_available() is 0. */
#ifndef DAPIPE_H5_H
#define DAPIPE_H5_H

#include <stddef.h>

typedef struct H5In H5In;

typedef enum { H5_GENE_SYMBOL, H5_GENE_ENSEMBL } H5GeneKind;

/* 1 when this build can read HDF5 files */
int h5_available(void);

/* Opens the file read-only and checks data/expression (2 dimensions). */
H5In *h5_open(const char *path);
void h5_close(H5In *f);
const char *h5_path(const H5In *f);
long h5_ngenes(const H5In *f);
long h5_nsamples(const H5In *f);
/* The chunk shape of data/expression (genes, samples); 0 0 when not chunked. */
void h5_chunk(const H5In *f, long *genes, long *samples);

/* Gene names (ngenes strings, owned by f, valid until h5_close): symbols from
 * meta/genes/symbol or meta/genes/gene_symbol; Ensembl ids from
 * meta/genes/ensembl_gene or meta/genes/ensembl_gene_id. NULL when the file has
 * neither dataset of that kind. Dies if one exists but its length is not ngenes. */
char *const *h5_genes(H5In *f, H5GeneKind kind);

/* Does sample metadata field exist? field is a name under meta/samples ("series_id")
 * or a full path containing '/' ("meta/samples/series_id"). */
int h5_has_meta(H5In *f, const char *field);
/* A sample metadata field as nsamples strings (owned by f, valid until h5_close).
 * Numbers are formatted with %.17g (floats) or %lld (integers). Dies if absent or
 * its length is not nsamples. Reads the whole field: for ARCHS4's longest fields
 * (characteristics_ch1) that is tens of MB; h5_select_match reads in slices. */
char *const *h5_meta(H5In *f, const char *field);
/* The names under meta/samples (sorted); *n gets the count; free with h5_free_strs. */
char **h5_meta_fields(H5In *f, int *n);
void h5_free_strs(char **s, int n);

/* Sample selection. Both return the number of samples selected and put their
 * column indices, ascending, in *idx (malloc'ed; free it).
 * h5_select_ids: the samples whose field (default "geo_accession" when field is NULL)
 * equals one of ids[0..nids-1]; *missing (may be NULL) gets how many ids were not
 * found (the first one is named in a warning through warnx when warn is set).
 * h5_select_match: the samples whose field contains pattern (exact = 0; case-
 * insensitive) or equals it (exact = 1; case-sensitive). Reads the field in slices. */
long h5_select_ids(H5In *f, const char *field, char *const *ids, long nids, long **idx, long *missing, int warn);
long h5_select_match(H5In *f, const char *field, const char *pattern, int exact, long **idx);
/* The samples normalize reads: those named in ids (if ids is not NULL) that also match
 * every where[k] ("FIELD=VALUE" exact, "FIELD~TEXT" contains); every sample when neither
 * is given. Ascending in *idx (malloc'ed). Dies naming `name` when none is left. */
long h5_select(H5In *f, const char *name, char *const *ids, long nids, char *const *where, int nwhere, long **idx);

/* Read samples idx[0..n-1] (any order, repeats allowed) as a samples x genes block:
 * out is (n, ngenes) row-major, out[i*ngenes + g] = expression[g, idx[i]].
 * Contiguous ranges of columns are read for all genes at once (one hyperslab per
 * range, split where the gap would cross a chunk with no selected sample, and capped
 * by the buffer budget), then transposed. Memory: out plus a buffer of at most
 * max(ngenes, $DAPIPE_H5_BUFFER_MB (default 64) MiB / 4) floats, and an HDF5 chunk
 * cache sized for one column of chunks (capped at 256 MiB). Callers read a large
 * selection in slices of N samples: h5_read_samples(f, idx + off, N, out). */
void h5_read_samples(H5In *f, const long *idx, long n, float *out);

/* Class labels from a metadata field: labels[i] is the field's value for sample
 * idx[i] (pointers into h5_meta's strings). */
void h5_labels(H5In *f, const char *field, const long *idx, long n, const char **labels);

#endif
