/* chunk.c: see chunk.h. */
#include "chunk.h"
#include "h5.h"
#include "stream.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- concatenation ---- */

static const char *name_of(const char *path) { return strcmp(path, "-") == 0 ? "<stdin>" : path; }

/* b's header agrees with a's on features and on every extra key */
static void same_header(const Header *a, const char *pa, const Header *b, const char *pb)
{
	int n = a->nfeat < b->nfeat ? a->nfeat : b->nfeat;
	for (int j = 0; j < n; j++)
		if (strcmp(a->features[j], b->features[j]) != 0)
			die("%s and %s: features differ at column %d: \"%s\" and \"%s\" (chunks of one run have the same genes)",
			    pa, pb, j + 1, a->features[j], b->features[j]);
	if (a->nfeat != b->nfeat)
		die("%s and %s: %d and %d features (chunks of one run have the same genes)", pa, pb, a->nfeat, b->nfeat);
	if (a->version != b->version) die("%s and %s: stream versions %d and %d", pa, pb, a->version, b->version);
	for (int k = 0; k < a->nextra; k++) {
		const Blob *x = header_get(b, a->extra_keys[k]);
		if (!x) die("%s: header has no \"%s\", %s has (chunks of one run have the same header keys)", pb, a->extra_keys[k], pa);
		if (x->len != a->extra[k].len || memcmp(x->data, a->extra[k].data, x->len) != 0)
			die("%s and %s: header key \"%s\" differs (chunks of one run are prepared with the same statistics)",
			    pa, pb, a->extra_keys[k]);
	}
	for (int k = 0; k < b->nextra; k++)
		if (!header_get(a, b->extra_keys[k]))
			die("%s: header has no \"%s\", %s has (chunks of one run have the same header keys)", pa, b->extra_keys[k], pb);
}

int chunk_concat(char *const *paths, int n, int block_rows)
{
	if (n < 1) usage_error("--concat: no input streams");
	for (int i = 0; i < n; i++)
		if (strcmp(paths[i], "-") == 0 && n > 1) usage_error("--concat: stdin ('-') only as the one input");
	if (isatty(1)) usage_error("refusing to write a binary stream to a terminal (redirect stdout)");
	/* pass 1: headers; the merged class and domain lists */
	Header out;
	DataIn d;
	memset(&out, 0, sizeof out);
	int keep_open = n == 1;
	for (int i = 0; i < n; i++) {
		memset(&d, 0, sizeof d);
		data_open(&d, paths[i]);
		if (i == 0) {
			header_copy(&out, &d.h);
			/* the merged lists start from nothing and grow in input order */
			for (int k = 0; k < out.nclass; k++) free(out.classes[k]);
			for (int k = 0; k < out.ndom; k++) free(out.domains[k]);
			out.nclass = out.ndom = 0;
		} else {
			same_header(&out, name_of(paths[0]), &d.h, name_of(paths[i]));
		}
		for (int k = 0; k < d.h.nclass; k++) header_add_class(&out, d.h.classes[k]);
		for (int k = 0; k < d.h.ndom; k++) header_add_domain(&out, d.h.domains[k]);
		if (!keep_open) data_close(&d);
	}
	static char obuf[1 << 20];
	setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
	SWriter w;
	sw_init(&w, stdout, "<stdout>");
	sw_header(&w, &out);
	/* pass 2: the rows, labels and domains mapped into the merged lists */
	Block in, ob;
	block_init(&in, out.nfeat, 1);
	block_init(&ob, out.nfeat, block_rows);
	long rows = 0, frames = 0;
	for (int i = 0; i < n; i++) {
		if (!keep_open) {
			memset(&d, 0, sizeof d);
			data_open(&d, paths[i]);
			/* the file may have changed between the passes */
			same_header(&out, name_of(paths[0]), &d.h, name_of(paths[i]));
		}
		int *cmap = xmallocarray((size_t)d.h.nclass + 1, sizeof(int));
		int *dmap = xmallocarray((size_t)d.h.ndom + 1, sizeof(int));
		for (int k = 0; k < d.h.nclass; k++) {
			cmap[k] = header_find_class(&out, d.h.classes[k]);
			if (cmap[k] < 0) die("%s: class \"%s\" appeared after the first pass (the file changed?)", name_of(paths[i]), d.h.classes[k]);
		}
		for (int k = 0; k < d.h.ndom; k++) dmap[k] = header_add_domain(&out, d.h.domains[k]);
		while (data_next(&d, &in)) {
			for (int r = 0; r < in.n; r++) {
				block_push(&ob, in.ids[r], in.x + (size_t)r * (size_t)in.f,
				           in.y[r] < 0 ? -1 : cmap[in.y[r]], dmap[in.d[r]]);
				if (ob.n == block_rows) {
					sw_block(&w, &ob);
					frames++;
					rows += ob.n;
					block_clear(&ob);
				}
			}
		}
		data_close(&d);
		free(cmap);
		free(dmap);
	}
	if (ob.n) {
		sw_block(&w, &ob);
		frames++;
		rows += ob.n;
	}
	sw_end(&w, rows, frames);
	sw_flush(&w);
	char b[32];
	snprintf(b, sizeof b, "%ld", rows);
	info("concatenated %d stream%s: %s rows x %d features, %d classes, %d domains", n, n == 1 ? "" : "s", b, out.nfeat,
	     out.nclass, out.ndom);
	block_free(&in);
	block_free(&ob);
	header_free(&out);
	return 0;
}

/* ---- HDF5 sample lists ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int chunk_list_h5(const char *path, char *const *ids, long nids, char *const *where, int nwhere)
{
	if (!h5_available()) die("%s: this build has no HDF5 support (rebuild with libhdf5-dev installed)", path);
	H5In *f = h5_open(path);
	long ns = h5_nsamples(f), *idx;
	if (!h5_has_meta(f, "geo_accession")) die("%s: meta/samples/geo_accession: not found (samples cannot be listed by id)", path);
	long n = h5_select(f, path, ids, nids, where, nwhere, &idx);
	char *const *gsm = h5_meta(f, "geo_accession");
	char **s = xmallocarray((size_t)n, sizeof(char *));
	for (long i = 0; i < n; i++) s[i] = gsm[idx[i]] ? gsm[idx[i]] : "";
	qsort(s, (size_t)n, sizeof *s, cmp_str);
	for (long i = 1; i < n; i++)
		if (strcmp(s[i - 1], s[i]) == 0)
			die("%s: geo_accession \"%s\" names several selected samples (a list of ids cannot split them)", path, s[i]);
	for (long i = 0; i < n; i++) {
		const char *id = gsm[idx[i]];
		if (!id || !*id || strchr(id, '\n')) die("%s: sample %ld has no usable geo_accession", path, idx[i]);
		puts(id);
	}
	info("%s: %ld of %ld samples selected", path, n, ns);
	free(s);
	free(idx);
	h5_close(f);
	return 0;
}
