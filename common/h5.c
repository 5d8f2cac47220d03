/* h5.c: see h5.h. The ARCHS4 HDF5 reader. Compiled for real only when <hdf5.h> is on
 * the include path; otherwise each entry point dies with a clear message. */
#include "h5.h"
#include "util.h"

#if defined(__has_include)
#if __has_include(<hdf5.h>)
#define DAPIPE_HAVE_HDF5 1
#endif
#endif

#ifdef DAPIPE_HAVE_HDF5

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "prep.h"

#define H5_MAX_META 64
#define H5_SLICE 65536L

struct H5In {
	char *path;
	hid_t file, dset;
	long ngenes, nsamples;
	long chunk_g, chunk_s;
	char **genes[2];
	int genes_tried[2];
	int nmeta;
	char *meta_name[H5_MAX_META];
	char **meta_val[H5_MAX_META];
	float *buf;
	size_t bufcap;
};

int h5_available(void) { return 1; }

static void h5_init_errors(void)
{
	static int done;
	if (done) return;
	done = 1;
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* Does the object at path exist? Checks each component, so a missing group is
 * "no", not an HDF5 error. */
static int path_exists(hid_t file, const char *path)
{
	char buf[1024];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof buf) return 0;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0') continue;
		char c = buf[i];
		buf[i] = '\0';
		htri_t e = H5Lexists(file, buf, H5P_DEFAULT);
		buf[i] = c;
		if (e <= 0) return 0;
	}
	return H5Oexists_by_name(file, path, H5P_DEFAULT) > 0;
}

/* The dataset path of a sample field, or NULL if none. Returned string owned. */
static char *meta_path(H5In *f, const char *field)
{
	if (strchr(field, '/'))
		return path_exists(f->file, field) ? xstrdup(field) : NULL;
	char *p = xasprintf("meta/samples/%s", field);
	if (path_exists(f->file, p)) return p;
	free(p);
	p = xasprintf("meta/Sample_%s", field);  /* ARCHS4 v1 */
	if (path_exists(f->file, p)) return p;
	free(p);
	return NULL;
}

/* Open a 1-D dataset and return its length; dies naming file and dataset. */
static hid_t open_1d(H5In *f, const char *name, long *len)
{
	hid_t d = H5Dopen2(f->file, name, H5P_DEFAULT);
	if (d < 0) die("%s: %s: cannot open dataset", f->path, name);
	hid_t sp = H5Dget_space(d);
	int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
	hsize_t dims[2] = {0, 0};
	if (nd == 2) H5Sget_simple_extent_dims(sp, dims, NULL);
	if (sp >= 0) H5Sclose(sp);
	if (nd == 2 && (dims[0] == 1 || dims[1] == 1)) {
		*len = (long)(dims[0] == 1 ? dims[1] : dims[0]);
		return d;
	}
	if (nd != 1) {
		H5Dclose(d);
		die("%s: %s: expected 1 dimension, found %d", f->path, name, nd);
	}
	sp = H5Dget_space(d);
	H5Sget_simple_extent_dims(sp, dims, NULL);
	H5Sclose(sp);
	*len = (long)dims[0];
	return d;
}

/* Read elements [start, start+count) of a 1-D dataset as strings into out (owned). */
static void read_strings(H5In *f, const char *name, hid_t d, long len, long start, long count, char **out)
{
	if (count == 0) return;
	hid_t ft = H5Dget_type(d);
	if (ft < 0) die("%s: %s: cannot read its type", f->path, name);
	H5T_class_t cls = H5Tget_class(ft);
	hid_t fsp = H5Dget_space(d);
	int nd = H5Sget_simple_extent_ndims(fsp);
	hsize_t off[2] = {0, 0}, cnt[2] = {1, 1};
	if (nd == 1) {
		off[0] = (hsize_t)start;
		cnt[0] = (hsize_t)count;
	} else {
		hsize_t dims[2];
		H5Sget_simple_extent_dims(fsp, dims, NULL);
		int ax = dims[0] == 1 ? 1 : 0;
		off[ax] = (hsize_t)start;
		cnt[ax] = (hsize_t)count;
	}
	hsize_t mcnt = (hsize_t)count;
	hid_t msp = H5Screate_simple(1, &mcnt, NULL);
	if (H5Sselect_hyperslab(fsp, H5S_SELECT_SET, off, NULL, cnt, NULL) < 0)
		die("%s: %s: cannot select elements %ld..%ld of %ld", f->path, name, start, start + count - 1, len);
	herr_t st;
	if (cls == H5T_STRING && H5Tis_variable_str(ft) > 0) {
		hid_t mt = H5Tcopy(H5T_C_S1);
		H5Tset_size(mt, H5T_VARIABLE);
		H5Tset_cset(mt, H5Tget_cset(ft));
		char **tmp = xcalloc((size_t)count, sizeof *tmp);
		st = H5Dread(d, mt, msp, fsp, H5P_DEFAULT, tmp);
		if (st < 0) die("%s: %s: cannot read strings", f->path, name);
		for (long i = 0; i < count; i++) out[i] = xstrdup(tmp[i] ? tmp[i] : "");
		H5Dvlen_reclaim(mt, msp, H5P_DEFAULT, tmp);
		free(tmp);
		H5Tclose(mt);
	} else if (cls == H5T_STRING) {
		size_t sz = H5Tget_size(ft);
		if (sz == 0) die("%s: %s: string size 0", f->path, name);
		hid_t mt = H5Tcopy(ft);
		char *tmp = xmallocarray((size_t)count, sz);
		st = H5Dread(d, mt, msp, fsp, H5P_DEFAULT, tmp);
		if (st < 0) die("%s: %s: cannot read strings", f->path, name);
		for (long i = 0; i < count; i++) {
			const char *s = tmp + (size_t)i * sz;
			size_t n = strnlen(s, sz);
			while (n > 0 && s[n - 1] == ' ') n--;   /* space padding */
			out[i] = xmalloc(n + 1);
			memcpy(out[i], s, n);
			out[i][n] = '\0';
		}
		free(tmp);
		H5Tclose(mt);
	} else if (cls == H5T_INTEGER) {
		long long *tmp = xmallocarray((size_t)count, sizeof *tmp);
		if (H5Dread(d, H5T_NATIVE_LLONG, msp, fsp, H5P_DEFAULT, tmp) < 0)
			die("%s: %s: cannot read integers", f->path, name);
		for (long i = 0; i < count; i++) out[i] = xasprintf("%lld", tmp[i]);
		free(tmp);
	} else if (cls == H5T_FLOAT) {
		double *tmp = xmallocarray((size_t)count, sizeof *tmp);
		if (H5Dread(d, H5T_NATIVE_DOUBLE, msp, fsp, H5P_DEFAULT, tmp) < 0)
			die("%s: %s: cannot read numbers", f->path, name);
		for (long i = 0; i < count; i++) out[i] = xasprintf("%.17g", tmp[i]);
		free(tmp);
	} else {
		die("%s: %s: unsupported type (not strings or numbers)", f->path, name);
	}
	H5Sclose(msp);
	H5Sclose(fsp);
	H5Tclose(ft);
}

/* A whole 1-D dataset as strings; checks its length against want (if >= 0). */
static char **read_all_strings(H5In *f, const char *name, long want, const char *what)
{
	long len;
	hid_t d = open_1d(f, name, &len);
	if (want >= 0 && len != want) {
		H5Dclose(d);
		die("%s: %s: %ld entries, expected %ld (%s)", f->path, name, len, want, what);
	}
	char **v = xcalloc((size_t)(len ? len : 1), sizeof *v);
	for (long s = 0; s < len; s += H5_SLICE) {
		long c = len - s < H5_SLICE ? len - s : H5_SLICE;
		read_strings(f, name, d, len, s, c, v + s);
	}
	H5Dclose(d);
	return v;
}

static long next_prime(long n)
{
	if (n < 3) return 3;
	for (;; n++) {
		int prime = 1;
		for (long k = 2; k * k <= n; k++)
			if (n % k == 0) { prime = 0; break; }
		if (prime) return n;
	}
}

H5In *h5_open(const char *path)
{
	h5_init_errors();
	if (access(path, R_OK) != 0) die("%s: cannot open:", path);
	htri_t is = H5Fis_hdf5(path);
	if (is <= 0) die("%s: not an HDF5 file", path);
	H5In *f = xcalloc(1, sizeof *f);
	f->path = xstrdup(path);
	f->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (f->file < 0) die("%s: cannot open as HDF5", path);
	const char *ds = "data/expression";
	if (!path_exists(f->file, ds)) die("%s: %s: not found", path, ds);
	hid_t d = H5Dopen2(f->file, ds, H5P_DEFAULT);
	if (d < 0) die("%s: %s: cannot open dataset", path, ds);
	hid_t sp = H5Dget_space(d);
	int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
	if (nd != 2) die("%s: %s: expected 2 dimensions (genes, samples), found %d", path, ds, nd);
	hsize_t dims[2];
	H5Sget_simple_extent_dims(sp, dims, NULL);
	H5Sclose(sp);
	f->ngenes = (long)dims[0];
	f->nsamples = (long)dims[1];
	hid_t t = H5Dget_type(d);
	H5T_class_t cls = H5Tget_class(t);
	size_t tsz = H5Tget_size(t);
	H5Tclose(t);
	if (cls != H5T_INTEGER && cls != H5T_FLOAT)
		die("%s: %s: not a numeric dataset", path, ds);
	hid_t dcpl = H5Dget_create_plist(d);
	if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) {
		hsize_t ch[2];
		if (H5Pget_chunk(dcpl, 2, ch) == 2) {
			f->chunk_g = (long)ch[0];
			f->chunk_s = (long)ch[1];
		}
	}
	if (dcpl >= 0) H5Pclose(dcpl);
	H5Dclose(d);
	/* Reopen with a chunk cache that holds two columns of chunks (all genes), so
	 * successive slices of samples decompress each chunk once. */
	hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
	if (f->chunk_g > 0) {
		long rows = (f->ngenes + f->chunk_g - 1) / f->chunk_g;
		double bytes = 2.0 * (double)f->chunk_g * (double)f->chunk_s * (double)tsz * (double)rows;
		double cap = 256.0 * 1024 * 1024;
		if (bytes > cap) bytes = cap;
		if (bytes < 1024.0 * 1024) bytes = 1024.0 * 1024;
		H5Pset_chunk_cache(dapl, (size_t)next_prime(rows * 40 + 101), (size_t)bytes, H5D_CHUNK_CACHE_W0_DEFAULT);
	}
	f->dset = H5Dopen2(f->file, ds, dapl);
	H5Pclose(dapl);
	if (f->dset < 0) die("%s: %s: cannot open dataset", path, ds);
	return f;
}

void h5_close(H5In *f)
{
	if (!f) return;
	H5Dclose(f->dset);
	H5Fclose(f->file);
	for (int k = 0; k < 2; k++)
		if (f->genes[k]) h5_free_strs(f->genes[k], (int)f->ngenes);
	for (int i = 0; i < f->nmeta; i++) {
		free(f->meta_name[i]);
		h5_free_strs(f->meta_val[i], (int)f->nsamples);
	}
	free(f->buf);
	free(f->path);
	free(f);
}

void h5_free_strs(char **s, int n)
{
	if (!s) return;
	for (int i = 0; i < n; i++) free(s[i]);
	free(s);
}

const char *h5_path(const H5In *f) { return f->path; }
long h5_ngenes(const H5In *f) { return f->ngenes; }
long h5_nsamples(const H5In *f) { return f->nsamples; }

void h5_chunk(const H5In *f, long *genes, long *samples)
{
	*genes = f->chunk_g;
	*samples = f->chunk_s;
}

char *const *h5_genes(H5In *f, H5GeneKind kind)
{
	static const char *names[2][3] = {
		{"meta/genes/symbol", "meta/genes/gene_symbol", "meta/genes/genes"},
		{"meta/genes/ensembl_gene", "meta/genes/ensembl_gene_id", NULL},
	};
	int k = kind == H5_GENE_ENSEMBL ? 1 : 0;
	if (f->genes_tried[k]) return f->genes[k];
	f->genes_tried[k] = 1;
	for (int i = 0; i < 3 && names[k][i]; i++) {
		if (path_exists(f->file, names[k][i]) && H5Oexists_by_name(f->file, names[k][i], H5P_DEFAULT) > 0) {
			H5O_info_t oi;
			if (H5Oget_info_by_name(f->file, names[k][i], &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET)
				continue;
			f->genes[k] = read_all_strings(f, names[k][i], f->ngenes, "genes in data/expression");
			return f->genes[k];
		}
	}
	/* ARCHS4 v1: meta/genes is itself the symbol dataset */
	if (k == 0 && path_exists(f->file, "meta/genes")) {
		H5O_info_t oi;
		if (H5Oget_info_by_name(f->file, "meta/genes", &oi, H5P_DEFAULT) >= 0 && oi.type == H5O_TYPE_DATASET)
			f->genes[k] = read_all_strings(f, "meta/genes", f->ngenes, "genes in data/expression");
	}
	return f->genes[k];
}

int h5_has_meta(H5In *f, const char *field)
{
	char *p = meta_path(f, field);
	free(p);
	return p != NULL;
}

char *const *h5_meta(H5In *f, const char *field)
{
	for (int i = 0; i < f->nmeta; i++)
		if (strcmp(f->meta_name[i], field) == 0) return f->meta_val[i];
	char *p = meta_path(f, field);
	if (!p) {
		if (strchr(field, '/')) die("%s: %s: not found", f->path, field);
		die("%s: meta/samples/%s: not found", f->path, field);
	}
	char **v = read_all_strings(f, p, f->nsamples, "samples in data/expression");
	free(p);
	if (f->nmeta == H5_MAX_META) {  /* forget the oldest */
		free(f->meta_name[0]);
		h5_free_strs(f->meta_val[0], (int)f->nsamples);
		memmove(f->meta_name, f->meta_name + 1, (H5_MAX_META - 1) * sizeof f->meta_name[0]);
		memmove(f->meta_val, f->meta_val + 1, (H5_MAX_META - 1) * sizeof f->meta_val[0]);
		f->nmeta--;
	}
	f->meta_name[f->nmeta] = xstrdup(field);
	f->meta_val[f->nmeta] = v;
	f->nmeta++;
	return v;
}

typedef struct { char **v; int n, cap; const char *prefix; } NameList;

static herr_t collect_name(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
	NameList *l = op;
	if (l->prefix) {
		size_t k = strlen(l->prefix);
		if (strncmp(name, l->prefix, k) != 0) return 0;
		name += k;
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 32;
		l->v = xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
	}
	l->v[l->n++] = xstrdup(name);
	return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **h5_meta_fields(H5In *f, int *n)
{
	NameList l = {0};
	const char *grp = "meta/samples";
	if (!path_exists(f->file, grp)) {
		grp = "meta";
		l.prefix = "Sample_";
		if (!path_exists(f->file, grp)) {
			*n = 0;
			return xcalloc(1, sizeof(char *));
		}
	}
	hid_t g = H5Gopen2(f->file, grp, H5P_DEFAULT);
	if (g < 0) die("%s: %s: cannot open group", f->path, grp);
	hsize_t idx = 0;
	if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &l) < 0)
		die("%s: %s: cannot list", f->path, grp);
	H5Gclose(g);
	if (l.n > 1) qsort(l.v, (size_t)l.n, sizeof *l.v, cmp_str);
	*n = l.n;
	return l.v ? l.v : xcalloc(1, sizeof(char *));
}

long h5_select_ids(H5In *f, const char *field, char *const *ids, long nids, long **idx, long *missing, int warn)
{
	if (!field) field = "geo_accession";
	char *const *v = h5_meta(f, field);
	StrMap want;
	sm_init(&want, (size_t)nids * 2 + 16);
	for (long i = 0; i < nids; i++) sm_put(&want, ids[i], (int)i);
	unsigned char *found = xcalloc((size_t)(nids ? nids : 1), 1);
	long n = 0, cap = 64;
	long *out = xmallocarray((size_t)cap, sizeof *out);
	for (long s = 0; s < f->nsamples; s++) {
		int k = sm_get(&want, v[s]);
		if (k < 0) continue;
		found[k] = 1;
		if (n == cap) {
			cap *= 2;
			out = xrealloc(out, (size_t)cap * sizeof *out);
		}
		out[n++] = s;
	}
	long miss = 0, first = -1;
	for (long i = 0; i < nids; i++) {
		/* a repeated id counts as found when its first copy was */
		if (!found[sm_get(&want, ids[i])]) {
			if (first < 0) first = i;
			miss++;
		}
	}
	if (miss && warn)
		warnx("%s: %ld of %ld ids not found in %s (first: %s)", f->path, miss, nids, field, ids[first]);
	if (missing) *missing = miss;
	free(found);
	sm_free(&want);
	*idx = out;
	return n;
}

long h5_select_match(H5In *f, const char *field, const char *pattern, int exact, long **idx)
{
	char *p = meta_path(f, field);
	if (!p) {
		if (strchr(field, '/')) die("%s: %s: not found", f->path, field);
		die("%s: meta/samples/%s: not found", f->path, field);
	}
	long len;
	hid_t d = open_1d(f, p, &len);
	if (len != f->nsamples)
		die("%s: %s: %ld entries, expected %ld (samples in data/expression)", f->path, p, len, f->nsamples);
	long n = 0, cap = 64;
	long *out = xmallocarray((size_t)cap, sizeof *out);
	char **tmp = xcalloc((size_t)H5_SLICE, sizeof *tmp);
	for (long s = 0; s < len; s += H5_SLICE) {
		long c = len - s < H5_SLICE ? len - s : H5_SLICE;
		read_strings(f, p, d, len, s, c, tmp);
		for (long i = 0; i < c; i++) {
			int hit = exact ? strcmp(tmp[i], pattern) == 0 : strcasestr(tmp[i], pattern) != NULL;
			free(tmp[i]);
			if (!hit) continue;
			if (n == cap) {
				cap *= 2;
				out = xrealloc(out, (size_t)cap * sizeof *out);
			}
			out[n++] = s + i;
		}
	}
	free(tmp);
	H5Dclose(d);
	free(p);
	*idx = out;
	return n;
}

typedef struct { long col, pos; } ColPos;

static int cmp_colpos(const void *a, const void *b)
{
	const ColPos *x = a, *y = b;
	if (x->col != y->col) return x->col < y->col ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

void h5_read_samples(H5In *f, const long *idx, long n, float *out)
{
	if (n <= 0) return;
	const long G = f->ngenes;
	ColPos *cp = xmallocarray((size_t)n, sizeof *cp);
	for (long i = 0; i < n; i++) {
		if (idx[i] < 0 || idx[i] >= f->nsamples)
			die("%s: data/expression: sample index %ld outside 0..%ld", f->path, idx[i], f->nsamples - 1);
		cp[i].col = idx[i];
		cp[i].pos = i;
	}
	qsort(cp, (size_t)n, sizeof *cp, cmp_colpos);
	long budget_mb = 64;
	const char *e = getenv("DAPIPE_H5_BUFFER_MB");
	if (e && *e) {
		char *end;
		long v = strtol(e, &end, 10);
		if (*end == '\0' && v >= 1 && v <= 1L << 20) budget_mb = v;
	}
	long wmax = (long)((double)budget_mb * 1024 * 1024 / 4 / (double)(G ? G : 1));
	if (wmax < 1) wmax = 1;
	hid_t fsp = H5Dget_space(f->dset);
	if (fsp < 0) die("%s: data/expression: cannot get its dataspace", f->path);
	for (long j = 0; j < n;) {
		long s = cp[j].col, k = j + 1;
		while (k < n) {
			long c = cp[k].col, prev = cp[k - 1].col;
			if (c - s + 1 > wmax) break;
			/* one column of chunks per read: each chunk is decompressed once and
			 * stays cached for the next read (the next slice may start in it) */
			if (f->chunk_s > 0 ? c / f->chunk_s != s / f->chunk_s : c - prev > 8) break;
			k++;
		}
		long w = cp[k - 1].col - s + 1;
		size_t need = (size_t)G * (size_t)w;
		if (need > f->bufcap) {
			free(f->buf);
			f->buf = xmallocarray(need, sizeof(float));
			f->bufcap = need;
		}
		hsize_t off[2] = {0, (hsize_t)s}, cnt[2] = {(hsize_t)G, (hsize_t)w};
		if (H5Sselect_hyperslab(fsp, H5S_SELECT_SET, off, NULL, cnt, NULL) < 0)
			die("%s: data/expression: cannot select samples %ld..%ld", f->path, s, s + w - 1);
		hid_t msp = H5Screate_simple(2, cnt, NULL);
		if (H5Dread(f->dset, H5T_NATIVE_FLOAT, msp, fsp, H5P_DEFAULT, f->buf) < 0)
			die("%s: data/expression: cannot read samples %ld..%ld (corrupt or truncated file?)", f->path, s, s + w - 1);
		H5Sclose(msp);
		/* transpose (G, w) -> rows of out, in blocks of genes to stay in cache */
		const float *buf = f->buf;
		for (long g0 = 0; g0 < G; g0 += 256) {
			long g1 = g0 + 256 < G ? g0 + 256 : G;
			for (long q = j; q < k; q++) {
				long c = cp[q].col - s;
				float *o = out + (size_t)cp[q].pos * (size_t)G;
				for (long g = g0; g < g1; g++) o[g] = buf[(size_t)g * (size_t)w + (size_t)c];
			}
		}
		j = k;
	}
	H5Sclose(fsp);
	free(cp);
}

void h5_labels(H5In *f, const char *field, const long *idx, long n, const char **labels)
{
	char *const *v = h5_meta(f, field);
	for (long i = 0; i < n; i++) {
		if (idx[i] < 0 || idx[i] >= f->nsamples)
			die("%s: sample index %ld outside 0..%ld", f->path, idx[i], f->nsamples - 1);
		labels[i] = v[idx[i]];
	}
}

#else /* no HDF5 */

#define NO_H5() die("built without HDF5 support (compile with $(pkg-config --cflags hdf5), link with $(pkg-config --libs hdf5))")

struct H5In { int unused; };
int h5_available(void) { return 0; }
H5In *h5_open(const char *path) { (void)path; NO_H5(); }
void h5_close(H5In *f) { (void)f; }
const char *h5_path(const H5In *f) { (void)f; NO_H5(); }
long h5_ngenes(const H5In *f) { (void)f; NO_H5(); }
long h5_nsamples(const H5In *f) { (void)f; NO_H5(); }
void h5_chunk(const H5In *f, long *genes, long *samples) { (void)f; (void)genes; (void)samples; NO_H5(); }
char *const *h5_genes(H5In *f, H5GeneKind kind) { (void)f; (void)kind; NO_H5(); }
int h5_has_meta(H5In *f, const char *field) { (void)f; (void)field; NO_H5(); }
char *const *h5_meta(H5In *f, const char *field) { (void)f; (void)field; NO_H5(); }
char **h5_meta_fields(H5In *f, int *n) { (void)f; (void)n; NO_H5(); }
void h5_free_strs(char **s, int n) { (void)s; (void)n; }
long h5_select_ids(H5In *f, const char *field, char *const *ids, long nids, long **idx, long *missing, int warn)
{ (void)f; (void)field; (void)ids; (void)nids; (void)idx; (void)missing; (void)warn; NO_H5(); }
long h5_select_match(H5In *f, const char *field, const char *pattern, int exact, long **idx)
{ (void)f; (void)field; (void)pattern; (void)exact; (void)idx; NO_H5(); }
void h5_read_samples(H5In *f, const long *idx, long n, float *out) { (void)f; (void)idx; (void)n; (void)out; NO_H5(); }
void h5_labels(H5In *f, const char *field, const long *idx, long n, const char **labels)
{ (void)f; (void)field; (void)idx; (void)n; (void)labels; NO_H5(); }

#endif

/* ---- the selection of normalize and --list-samples: built on the calls above, so
 * it needs no HDF5 of its own ---- */

#include <stdlib.h>
#include <string.h>

static long intersect(long *a, long na, const long *b, long nb)
{
	long i = 0, j = 0, k = 0;
	while (i < na && j < nb) {
		if (a[i] < b[j]) i++;
		else if (a[i] > b[j]) j++;
		else { a[k++] = a[i]; i++; j++; }
	}
	return k;
}

long h5_select(H5In *f, const char *name, char *const *ids, long nids, char *const *where, int nwhere, long **idx)
{
	long *sel = NULL, n = -1;
	if (ids) n = h5_select_ids(f, NULL, ids, nids, &sel, NULL, !quiet);
	for (int k = 0; k < nwhere; k++) {
		const char *wh = where[k];
		size_t fl = strcspn(wh, "=~");
		if (!fl || !wh[fl]) usage_error("--where: %s: expected FIELD=VALUE or FIELD~SUBSTRING", wh);
		char *field = xmalloc(fl + 1);
		memcpy(field, wh, fl);
		field[fl] = 0;
		long *m;
		long nm = h5_select_match(f, field, wh + fl + 1, wh[fl] == '=', &m);
		free(field);
		if (n < 0) { sel = m; n = nm; }
		else { n = intersect(sel, n, m, nm); free(m); }
	}
	if (n < 0) {
		n = h5_nsamples(f);
		sel = xmallocarray((size_t)n + 1, sizeof(long));
		for (long i = 0; i < n; i++) sel[i] = i;
	}
	if (n == 0) die("%s: no sample matches the selection (--samples-file/--where)", name);
	*idx = sel;
	return n;
}
