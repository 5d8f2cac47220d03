/* gen-h5: write a small HDF5 file in the ARCHS4 layout, for tests and examples.
 *
 *   data/expression            (genes, samples) uint32 counts (or float32), chunked
 *                              and deflate-compressed like ARCHS4 (or contiguous)
 *   meta/genes/symbol          GENE1..GENEn (--symbol-name gene_symbol: older name)
 *   meta/genes/ensembl_gene    ENSG00000000001.1..
 *   meta/samples/geo_accession GSM1000000..
 *   meta/samples/series_id     GSE1..GSEk (samples in runs)
 *   meta/samples/characteristics_ch1  "tissue: lung; donor: d3" (4 tissues in turn)
 *   meta/samples/source_name_ch1      the tissue alone ("Lung")
 *   meta/samples/title, meta/samples/readsaligned (integers),
 *   meta/samples/singlecellprobability (float64)
 * --layout v1 writes the ARCHS4 v1 names instead: meta/genes (symbols) and
 * meta/Sample_<field>.
 * Counts: Poisson(gene mean x library factor x series effect), seeded (--seed).
 * --dump FILE writes the matrix as CSV (geo_accession then one column per symbol,
 * samples as rows), the expected output of readers.
 * Faults for error tests: --omit PATH (skip a dataset), --short-genes (symbol list one
 * short), --expr-1d (a 1-D data/expression).
 * Built by tests/cli/h5.sh with $(pkg-config --cflags --libs hdf5). Exit: 0 ok, 1 error, 2 usage. */
#include <getopt.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "util.h"

static const char *tissues[4] = { "lung", "liver", "breast", "colon" };

static void usage(void)
{
	printf(
"Usage: gen-h5 [OPTIONS] OUT.h5\n"
"Write a small HDF5 file in the ARCHS4 layout (see docs/ARCHS4.md).\n"
"  --genes N          genes (default 50)\n"
"  --samples N        samples (default 40)\n"
"  --series N         series (GSE ids; samples in runs; default 4)\n"
"  --chunk G,S        chunk shape of data/expression (default 20,8); 0,0: contiguous\n"
"  --strings S        vlen|fixed|space: variable-length UTF-8 (ARCHS4), fixed-length\n"
"                     NUL-padded, or fixed-length space-padded (default vlen)\n"
"  --dtype T          u32|f32 (default u32)\n"
"  --symbol-name N    symbol|gene_symbol: name of the symbol dataset (default symbol)\n"
"  --layout L         v2|v1 (default v2)\n"
"  --seed N           random seed (default 1)\n"
"  --dump FILE        also write the matrix as CSV (samples as rows)\n"
"  --omit PATH        do not write this dataset (e.g. meta/samples/series_id)\n"
"  --short-genes      write one symbol fewer than genes\n"
"  --expr-1d          write data/expression as one dimension\n"
"  --help             this help\n");
}

static hid_t string_type(const char *mode, char *const *v, long n)
{
	hid_t t = H5Tcopy(H5T_C_S1);
	if (strcmp(mode, "vlen") == 0) {
		H5Tset_size(t, H5T_VARIABLE);
		H5Tset_cset(t, H5T_CSET_UTF8);
		return t;
	}
	size_t m = 1;
	for (long i = 0; i < n; i++) if (strlen(v[i]) > m) m = strlen(v[i]);
	H5Tset_size(t, m);
	H5Tset_strpad(t, strcmp(mode, "space") == 0 ? H5T_STR_SPACEPAD : H5T_STR_NULLPAD);
	return t;
}

static const char *out_path;

static void check(herr_t st, const char *what)
{
	if (st < 0) die("%s: %s: HDF5 write failed", out_path, what);
}

static void write_strings(hid_t file, const char *name, const char *mode, char *const *v, long n, const char *omit)
{
	if (omit && strcmp(omit, name) == 0) return;
	hsize_t dims[1] = { (hsize_t)n };
	hid_t sp = H5Screate_simple(1, dims, NULL);
	hid_t t = string_type(mode, v, n);
	hid_t d = H5Dcreate2(file, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (d < 0) die("%s: %s: cannot create", out_path, name);
	if (strcmp(mode, "vlen") == 0) {
		check(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), name);
	} else {
		size_t sz = H5Tget_size(t);
		char *buf = xcalloc((size_t)(n ? n : 1), sz);
		for (long i = 0; i < n; i++) {
			size_t k = strlen(v[i]);
			memcpy(buf + (size_t)i * sz, v[i], k);
			if (strcmp(mode, "space") == 0) memset(buf + (size_t)i * sz + k, ' ', sz - k);
		}
		check(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), name);
		free(buf);
	}
	H5Dclose(d);
	H5Tclose(t);
	H5Sclose(sp);
}

static void write_numbers(hid_t file, const char *name, hid_t ftype, hid_t mtype, const void *v, long n, const char *omit)
{
	if (omit && strcmp(omit, name) == 0) return;
	hsize_t dims[1] = { (hsize_t)n };
	hid_t sp = H5Screate_simple(1, dims, NULL);
	hid_t d = H5Dcreate2(file, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (d < 0) die("%s: %s: cannot create", out_path, name);
	check(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), name);
	H5Dclose(d);
	H5Sclose(sp);
}

static void group(hid_t file, const char *name)
{
	hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (g < 0) die("%s: %s: cannot create group", out_path, name);
	H5Gclose(g);
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	long G = 50, S = 40, nseries = 4, seed = 1;
	long chunk[2] = { 20, 8 };
	const char *strmode = "vlen", *dtype = "u32", *symname = "symbol", *layout = "v2", *dump = NULL, *omit = NULL;
	int short_genes = 0, expr1d = 0;
	static struct option opts[] = {
		{ "genes", 1, 0, 'g' }, { "samples", 1, 0, 's' }, { "series", 1, 0, 'S' }, { "chunk", 1, 0, 'c' },
		{ "strings", 1, 0, 't' }, { "dtype", 1, 0, 'd' }, { "symbol-name", 1, 0, 'n' }, { "layout", 1, 0, 'l' },
		{ "seed", 1, 0, 'r' }, { "dump", 1, 0, 'D' }, { "omit", 1, 0, 'o' }, { "short-genes", 0, 0, 'k' },
		{ "expr-1d", 0, 0, '1' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'g': G = parse_long("--genes", optarg, 1, 1000000); break;
		case 's': S = parse_long("--samples", optarg, 1, 10000000); break;
		case 'S': nseries = parse_long("--series", optarg, 1, 1000000); break;
		case 'c': {
			int v[2];
			if (parse_int_list("--chunk", optarg, v, 2, 0, 1 << 30) != 2) usage_error("--chunk: %s: expected G,S", optarg);
			if ((v[0] == 0) != (v[1] == 0)) usage_error("--chunk: %s: both 0 (contiguous) or both positive", optarg);
			chunk[0] = v[0]; chunk[1] = v[1];
			break;
		}
		case 't':
			if (strcmp(optarg, "vlen") && strcmp(optarg, "fixed") && strcmp(optarg, "space"))
				usage_error("--strings: %s: expected vlen, fixed or space", optarg);
			strmode = optarg;
			break;
		case 'd':
			if (strcmp(optarg, "u32") && strcmp(optarg, "f32")) usage_error("--dtype: %s: expected u32 or f32", optarg);
			dtype = optarg;
			break;
		case 'n':
			if (strcmp(optarg, "symbol") && strcmp(optarg, "gene_symbol"))
				usage_error("--symbol-name: %s: expected symbol or gene_symbol", optarg);
			symname = optarg;
			break;
		case 'l':
			if (strcmp(optarg, "v1") && strcmp(optarg, "v2")) usage_error("--layout: %s: expected v1 or v2", optarg);
			layout = optarg;
			break;
		case 'r': seed = parse_long("--seed", optarg, 0, LONG_MAX); break;
		case 'D': dump = optarg; break;
		case 'o': omit = optarg; break;
		case 'k': short_genes = 1; break;
		case '1': expr1d = 1; break;
		case 'h': usage(); return 0;
		default: usage_error("unknown option");
		}
	}
	if (optind != argc - 1) usage_error("expected one output file");
	out_path = argv[optind];
	if (chunk[0] > G) chunk[0] = G;
	if (chunk[1] > S) chunk[1] = S;
	int v1 = strcmp(layout, "v1") == 0;

	/* names and metadata */
	char **sym = xmallocarray((size_t)G, sizeof *sym), **ens = xmallocarray((size_t)G, sizeof *ens);
	for (long g = 0; g < G; g++) {
		sym[g] = xasprintf("GENE%ld", g + 1);
		ens[g] = xasprintf("ENSG%011ld.%ld", g + 1, g % 3 + 1);
	}
	char **gsm = xmallocarray((size_t)S, sizeof *gsm), **gse = xmallocarray((size_t)S, sizeof *gse),
	     **chr = xmallocarray((size_t)S, sizeof *chr), **src = xmallocarray((size_t)S, sizeof *src),
	     **title = xmallocarray((size_t)S, sizeof *title);
	long long *reads = xmallocarray((size_t)S, sizeof *reads);
	double *scp = xmallocarray((size_t)S, sizeof *scp);
	long run = (S + nseries - 1) / nseries;
	for (long s = 0; s < S; s++) {
		const char *t = tissues[s % 4];
		gsm[s] = xasprintf("GSM%ld", 1000000 + s);
		gse[s] = xasprintf("GSE%ld", s / run + 1);
		chr[s] = xasprintf("tissue: %s; donor: d%ld", t, s % 7);
		src[s] = xasprintf("%c%s", t[0] - 'a' + 'A', t + 1);
		title[s] = xasprintf("sample %ld (%s, \xc3\xa9tude)", s, t);
		scp[s] = (double)(s % 10) / 10.0;
	}
	/* counts */
	Rng r;
	rng_seed(&r, (uint64_t)seed);
	double *gmean = xmallocarray((size_t)G, sizeof *gmean), *teff = xmallocarray((size_t)G * 4, sizeof *teff);
	for (long g = 0; g < G; g++) {
		gmean[g] = g % 9 == 4 ? 0 : exp(1 + 5 * rng_uniform(&r));   /* some genes all zero */
		for (int t = 0; t < 4; t++) teff[g * 4 + t] = exp(rng_normal(&r) * (g < G / 5 ? 1.0 : 0.1));
	}
	double seff[64];
	for (int k = 0; k < 64; k++) seff[k] = exp(0.3 * rng_normal(&r));
	uint32_t *x = xmallocarray((size_t)G * (size_t)S, sizeof *x);   /* (G, S) */
	for (long s = 0; s < S; s++) {
		double lib = 0.5 + rng_uniform(&r), se = seff[(s / run) % 64];
		for (long g = 0; g < G; g++) {
			x[(size_t)g * S + s] = (uint32_t)rng_poisson(&r, gmean[g] * teff[g * 4 + s % 4] * lib * se);
		}
	}
	for (long s = 0; s < S; s++) {
		long long tot = 0;
		for (long g = 0; g < G; g++) tot += x[(size_t)g * S + s];
		reads[s] = tot;
	}

	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	/* HDF5 writes the temporary name through its own descriptor; atomic_commit then
	 * syncs it (nothing is buffered in af.fp) and renames it into place */
	AtomicFile af;
	atomic_open(&af, out_path);
	hid_t file = H5Fcreate(af.tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	if (file < 0) die("%s: cannot create", out_path);
	group(file, "data");
	group(file, "meta");
	if (!v1) {
		group(file, "meta/genes");
		group(file, "meta/samples");
	}
	/* data/expression */
	if (!(omit && strcmp(omit, "data/expression") == 0)) {
		hid_t ft = strcmp(dtype, "u32") == 0 ? H5T_STD_U32LE : H5T_IEEE_F32LE;
		hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
		hsize_t dims[2] = { (hsize_t)G, (hsize_t)S };
		int nd = 2;
		if (expr1d) { dims[0] = (hsize_t)(G * S); nd = 1; }
		if (chunk[0] > 0 && !expr1d) {
			hsize_t cd[2] = { (hsize_t)chunk[0], (hsize_t)chunk[1] };
			H5Pset_chunk(dcpl, 2, cd);
			if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) H5Pset_deflate(dcpl, 4);
		}
		hid_t sp = H5Screate_simple(nd, dims, NULL);
		hid_t d = H5Dcreate2(file, "data/expression", ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
		if (d < 0) die("%s: data/expression: cannot create", out_path);
		if (strcmp(dtype, "u32") == 0) {
			check(H5Dwrite(d, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), "data/expression");
		} else {
			float *xf = xmallocarray((size_t)G * (size_t)S, sizeof *xf);
			for (size_t i = 0; i < (size_t)G * (size_t)S; i++) xf[i] = (float)x[i];
			check(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, xf), "data/expression");
			free(xf);
		}
		H5Dclose(d);
		H5Sclose(sp);
		H5Pclose(dcpl);
	}
	long ng = short_genes ? G - 1 : G;
	char *p;
	if (v1) {
		write_strings(file, "meta/genes", strmode, sym, ng, omit);
	} else {
		p = xasprintf("meta/genes/%s", symname);
		write_strings(file, p, strmode, sym, ng, omit);
		free(p);
		write_strings(file, "meta/genes/ensembl_gene", strmode, ens, G, omit);
	}
	const char *pre = v1 ? "meta/Sample_" : "meta/samples/";
	struct { const char *name; char **v; } sf[] = {
		{ "geo_accession", gsm }, { "series_id", gse }, { "characteristics_ch1", chr },
		{ "source_name_ch1", src }, { "title", title },
	};
	for (size_t i = 0; i < sizeof sf / sizeof *sf; i++) {
		p = xasprintf("%s%s", pre, sf[i].name);
		write_strings(file, p, strmode, sf[i].v, S, omit);
		free(p);
	}
	p = xasprintf("%sreadsaligned", pre);
	write_numbers(file, p, H5T_STD_I64LE, H5T_NATIVE_LLONG, reads, S, omit);
	free(p);
	p = xasprintf("%ssinglecellprobability", pre);
	write_numbers(file, p, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, scp, S, omit);
	free(p);
	if (H5Fclose(file) < 0) die("%s: cannot close", out_path);
	atomic_commit(&af);

	if (dump) {
		AtomicFile df;
		FILE *fp = atomic_open(&df, dump);
		fprintf(fp, "geo_accession");
		for (long g = 0; g < G; g++) fprintf(fp, ",%s", sym[g]);
		fputc('\n', fp);
		for (long s = 0; s < S; s++) {
			fprintf(fp, "%s", gsm[s]);
			for (long g = 0; g < G; g++) fprintf(fp, ",%u", x[(size_t)g * S + s]);
			fputc('\n', fp);
		}
		atomic_commit(&df);
	}
	for (long g = 0; g < G; g++) { free(sym[g]); free(ens[g]); }
	for (long s = 0; s < S; s++) { free(gsm[s]); free(gse[s]); free(chr[s]); free(src[s]); free(title[s]); }
	free(sym); free(ens); free(gsm); free(gse); free(chr); free(src); free(title);
	free(reads); free(scp); free(gmean); free(teff); free(x);
	return 0;
}
