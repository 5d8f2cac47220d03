/* h5cat: read samples out of an ARCHS4-layout HDF5 file through common/h5.h, as CSV
 * (samples as rows) or as a data stream (header, data, end) that normalize reads with
 * --format stream. The reference client of the h5 library and the driver of
 * tests/cli/h5.sh; normalize --format hdf5 does the same inside normalize.
 *
 * Selection: every sample, or --ids FILE (one id per line, matched against
 * --id-field, default geo_accession), or --match FIELD=TEXT (field contains TEXT,
 * case-insensitive), or --exact FIELD=TEXT; --match and --exact repeat and all must
 * hold. Samples come out in file order, read --chunk samples at a time.
 * Other modes: --info (sizes, chunking, gene names, metadata fields), --meta FIELD
 * (one value per selected sample).
 * Built by tests/cli/h5.sh with HDF5's flags.
 * Exit: 0 ok, 1 data or runtime error, 2 usage. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "h5.h"
#include "prep.h"
#include "stream.h"
#include "util.h"

static void usage(void)
{
	printf(
"Usage: h5cat [OPTIONS] FILE.h5\n"
"Read samples from an ARCHS4-layout HDF5 file (see docs/ARCHS4.md).\n"
"  --ids FILE         select the samples whose --id-field is listed in FILE (one per line)\n"
"  --id-field F       field matched by --ids and written as the sample id\n"
"                     (default geo_accession)\n"
"  --match F=TEXT     select samples whose field F contains TEXT (case-insensitive);\n"
"                     repeatable, all must hold\n"
"  --exact F=TEXT     select samples whose field F equals TEXT; repeatable\n"
"  --label F          class labels from field F (default: none)\n"
"  --genes K          symbol|ensembl gene names (default symbol)\n"
"  --chunk N          samples per read (default 256)\n"
"  --format F         csv|stream (default csv)\n"
"  --domain NAME      domain of a stream (default: the file's base name)\n"
"  --info             print sizes, chunk shape and metadata fields instead\n"
"  --meta F           print field F of the selected samples, one per line, instead\n"
"  --help             this help\n");
}

typedef struct { const char *field, *text; int exact; } Cond;

static char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	char *b = xstrdup(s ? s + 1 : path);
	char *dot = strchr(b, '.');
	if (dot && dot != b) *dot = '\0';
	return b;
}

/* intersect sorted a (na) with sorted b (nb) into a; returns the new count */
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

int main(int argc, char **argv)
{
	util_init(argv[0]);
	const char *ids_file = NULL, *id_field = "geo_accession", *label = NULL, *genes_kind = "symbol";
	const char *format = "csv", *domain = NULL, *meta = NULL;
	long chunk = 256;
	int info = 0, ncond = 0;
	Cond cond[16];
	static struct option opts[] = {
		{ "ids", 1, 0, 'i' }, { "id-field", 1, 0, 'I' }, { "match", 1, 0, 'm' }, { "exact", 1, 0, 'e' },
		{ "label", 1, 0, 'l' }, { "genes", 1, 0, 'g' }, { "chunk", 1, 0, 'c' }, { "format", 1, 0, 'f' },
		{ "domain", 1, 0, 'd' }, { "info", 0, 0, 'n' }, { "meta", 1, 0, 'M' }, { "help", 0, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'i': ids_file = optarg; break;
		case 'I': id_field = optarg; break;
		case 'm': case 'e': {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg) usage_error("--%s: %s: expected FIELD=TEXT", ch == 'm' ? "match" : "exact", optarg);
			if (ncond == 16) usage_error("at most 16 --match/--exact conditions");
			*eq = '\0';
			cond[ncond++] = (Cond){ optarg, eq + 1, ch == 'e' };
			break;
		}
		case 'l': label = optarg; break;
		case 'g':
			if (strcmp(optarg, "symbol") && strcmp(optarg, "ensembl")) usage_error("--genes: %s: expected symbol or ensembl", optarg);
			genes_kind = optarg;
			break;
		case 'c': chunk = parse_long("--chunk", optarg, 1, 1 << 24); break;
		case 'f':
			if (strcmp(optarg, "csv") && strcmp(optarg, "stream")) usage_error("--format: %s: expected csv or stream", optarg);
			format = optarg;
			break;
		case 'd': domain = optarg; break;
		case 'n': info = 1; break;
		case 'M': meta = optarg; break;
		case 'h': usage(); return 0;
		default: usage_error("unknown option");
		}
	}
	if (optind != argc - 1) usage_error("expected one HDF5 file");
	const char *path = argv[optind];
	H5In *f = h5_open(path);
	long G = h5_ngenes(f), S = h5_nsamples(f);

	if (info) {
		long cg, cs;
		h5_chunk(f, &cg, &cs);
		printf("genes\t%ld\nsamples\t%ld\nchunk\t%ld,%ld\n", G, S, cg, cs);
		char *const *sym = h5_genes(f, H5_GENE_SYMBOL), *const *ens = h5_genes(f, H5_GENE_ENSEMBL);
		printf("symbols\t%s\n", sym ? (G ? sym[0] : "") : "(none)");
		printf("ensembl\t%s\n", ens ? (G ? ens[0] : "") : "(none)");
		int n;
		char **fields = h5_meta_fields(f, &n);
		printf("fields");
		for (int i = 0; i < n; i++) printf("%c%s", i ? ',' : '\t', fields[i]);
		printf("\n");
		h5_free_strs(fields, n);
		h5_close(f);
		return 0;
	}

	/* selection */
	long *sel = NULL, nsel;
	if (ids_file) {
		FILE *fp = fopen(ids_file, "r");
		if (!fp) die("%s: cannot open:", ids_file);
		char **ids = NULL, *line = NULL;
		size_t cap = 0;
		long nids = 0, idcap = 0;
		ssize_t len;
		while ((len = getline(&line, &cap, fp)) >= 0) {
			while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
			if (len == 0) continue;
			if (nids == idcap) {
				idcap = idcap ? 2 * idcap : 64;
				ids = xrealloc(ids, (size_t)idcap * sizeof *ids);
			}
			ids[nids++] = xstrdup(line);
		}
		free(line);
		fclose(fp);
		nsel = h5_select_ids(f, id_field, ids, nids, &sel, NULL, 1);
		for (long i = 0; i < nids; i++) free(ids[i]);
		free(ids);
	} else {
		nsel = S;
		sel = xmallocarray((size_t)(S ? S : 1), sizeof *sel);
		for (long s = 0; s < S; s++) sel[s] = s;
	}
	for (int k = 0; k < ncond; k++) {
		long *m;
		long nm = h5_select_match(f, cond[k].field, cond[k].text, cond[k].exact, &m);
		nsel = intersect(sel, nsel, m, nm);
		free(m);
	}
	if (nsel == 0) warnx("%s: no sample selected", path);
	char *const *idv = h5_meta(f, id_field);

	if (meta) {
		char *const *v = h5_meta(f, meta);
		for (long i = 0; i < nsel; i++) printf("%s\n", v[sel[i]]);
		free(sel);
		h5_close(f);
		return 0;
	}

	char *const *genes = h5_genes(f, strcmp(genes_kind, "ensembl") == 0 ? H5_GENE_ENSEMBL : H5_GENE_SYMBOL);
	if (!genes) genes = h5_genes(f, strcmp(genes_kind, "ensembl") == 0 ? H5_GENE_SYMBOL : H5_GENE_ENSEMBL);
	if (!genes) die("%s: meta/genes: no gene names (symbol, gene_symbol or ensembl_gene)", path);
	const char **labels = NULL;
	if (label) {
		labels = xmallocarray((size_t)(nsel ? nsel : 1), sizeof *labels);
		h5_labels(f, label, sel, nsel, labels);
	}
	float *x = xmallocarray((size_t)chunk * (size_t)(G ? G : 1), sizeof *x);
	int stream = strcmp(format, "stream") == 0;
	SWriter w;
	Header h;
	StrMap cls;
	sm_init(&cls, 64);
	if (stream) {
		sw_init(&w, stdout, "stdout");
		header_init(&h, "data");
		for (long g = 0; g < G; g++) {
			h.features = xrealloc(h.features, sizeof(char *) * (size_t)(h.nfeat + 1));
			h.features[h.nfeat++] = xstrdup(genes[g]);
		}
		/* the class list up front, in order of first appearance */
		for (long i = 0; labels && i < nsel; i++)
			if (labels[i][0] && sm_get(&cls, labels[i]) < 0) sm_put(&cls, labels[i], header_add_class(&h, labels[i]));
		char *dn = domain ? xstrdup(domain) : base_name(path);
		header_add_domain(&h, dn);
		free(dn);
		sw_header(&w, &h);
	} else {
		printf("%s", "id");
		if (label) printf(",label");
		for (long g = 0; g < G; g++) printf(",%s", genes[g]);
		printf("\n");
	}
	Block b;
	if (stream) block_init(&b, (int)G, (int)chunk);
	long frames = 0;
	for (long off = 0; off < nsel; off += chunk) {
		long n = nsel - off < chunk ? nsel - off : chunk;
		h5_read_samples(f, sel + off, n, x);
		if (stream) {
			block_clear(&b);
			for (long i = 0; i < n; i++) {
				int y = labels && labels[off + i][0] ? sm_get(&cls, labels[off + i]) : -1;
				block_push(&b, idv[sel[off + i]], x + (size_t)i * G, y, 0);
			}
			sw_block(&w, &b);
			frames++;
		} else {
			for (long i = 0; i < n; i++) {
				printf("%s", idv[sel[off + i]]);
				if (label) printf(",%s", labels[off + i]);
				const float *row = x + (size_t)i * G;
				for (long g = 0; g < G; g++) printf(",%.9g", row[g]);
				printf("\n");
			}
		}
	}
	if (stream) {
		sw_end(&w, nsel, frames);
		sw_flush(&w);
		block_free(&b);
		header_free(&h);
	}
	sm_free(&cls);
	free(x);
	free(labels);
	free(sel);
	h5_close(f);
	return 0;
}
