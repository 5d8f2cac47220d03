/* table.c: see table.h. */
#include "table.h"
#include "h5.h"
#include "util.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- ByteIn ---- */

#define BI_RAW (1 << 20)
#define BI_BUF (4 << 20)

static size_t read_fd(ByteIn *b, void *dst, size_t n)
{
	for (;;) {
		ssize_t k = read(b->fd, dst, n);
		if (k >= 0) return (size_t)k;
		if (errno == EINTR) continue;
		die("%s: read error:", b->name);
	}
}

void bi_open(ByteIn *b, const char *path)
{
	memset(b, 0, sizeof *b);
	if (strcmp(path, "-") == 0) {
		b->fd = 0;
		b->name = xstrdup("<stdin>");
	} else {
		b->fd = open(path, O_RDONLY);
		if (b->fd < 0) die("%s: cannot open:", path);
		b->own_fd = 1;
		b->name = xstrdup(path);
	}
	b->cap = BI_BUF;
	b->buf = xmalloc(b->cap + 1);
	/* sniff the gzip magic from the first bytes */
	size_t got = 0;
	while (got < 2) {
		size_t k = read_fd(b, b->buf + got, b->cap - got);
		if (k == 0) { b->eof = 1; break; }
		got += k;
	}
	if (got >= 2 && (unsigned char)b->buf[0] == 0x1f && (unsigned char)b->buf[1] == 0x8b) {
		b->gz = 1;
		b->rawcap = BI_RAW > got ? BI_RAW : got;
		b->raw = xmalloc(b->rawcap);
		memcpy(b->raw, b->buf, got);
		b->rawlen = got;
		b->raweof = b->eof;
		b->eof = 0;
		if (inflateInit2(&b->zs, 15 + 32) != Z_OK) die("%s: cannot start gzip decoder", b->name);
		b->len = 0;
	} else {
		b->len = got;
	}
}

/* inflate into buf[len..cap) */
static void bi_inflate(ByteIn *b)
{
	while (b->len < b->cap) {
		if (b->rawpos == b->rawlen) {
			if (b->raweof) {
				if (!b->zend) die("%s: truncated gzip input (unexpected end of file)", b->name);
				b->eof = 1;
				return;
			}
			b->rawpos = 0;
			b->rawlen = read_fd(b, b->raw, b->rawcap);
			if (b->rawlen == 0) { b->raweof = 1; continue; }
		}
		if (b->zend) {
			/* another gzip member follows */
			if (inflateReset(&b->zs) != Z_OK) die("%s: gzip decoder error", b->name);
			b->zend = 0;
		}
		b->zs.next_in = b->raw + b->rawpos;
		b->zs.avail_in = (uInt)(b->rawlen - b->rawpos);
		b->zs.next_out = (unsigned char *)b->buf + b->len;
		b->zs.avail_out = (uInt)(b->cap - b->len);
		int r = inflate(&b->zs, Z_NO_FLUSH);
		b->rawpos = b->rawlen - b->zs.avail_in;
		b->len = b->cap - b->zs.avail_out;
		if (r == Z_STREAM_END) b->zend = 1;
		else if (r == Z_BUF_ERROR) continue;
		else if (r != Z_OK)
			die("%s: corrupt gzip input (%s)", b->name, b->zs.msg ? b->zs.msg : "data error");
		if (b->len > 0 && b->zs.avail_out == 0) return;
		if (b->zend) return;
	}
}

size_t bi_fill(ByteIn *b, size_t want)
{
	while (b->len - b->pos < want && !b->eof) {
		if (b->pos > 0) {
			memmove(b->buf, b->buf + b->pos, b->len - b->pos);
			b->len -= b->pos;
			b->pos = 0;
		}
		if (b->len == b->cap) {
			b->cap *= 2;
			b->buf = xrealloc(b->buf, b->cap + 1);
		}
		if (b->gz) {
			bi_inflate(b);
		} else {
			size_t k = read_fd(b, b->buf + b->len, b->cap - b->len);
			if (k == 0) b->eof = 1;
			b->len += k;
		}
	}
	return b->len - b->pos;
}

char *bi_getline(ByteIn *b, size_t *len)
{
	size_t scanned = 0;
	for (;;) {
		char *p = b->buf + b->pos;
		size_t avail = b->len - b->pos;
		char *nl = avail > scanned ? memchr(p + scanned, '\n', avail - scanned) : NULL;
		if (nl) {
			*nl = 0;
			*len = (size_t)(nl - p);
			b->pos += *len + 1;
			return p;
		}
		if (b->eof) {
			if (avail == 0) return NULL;
			p[avail] = 0; /* buf has one spare byte */
			*len = avail;
			b->pos = b->len;
			return p;
		}
		scanned = avail;
		bi_fill(b, avail + 1);
	}
}

void bi_close(ByteIn *b)
{
	if (b->gz) inflateEnd(&b->zs);
	if (b->own_fd) close(b->fd);
	free(b->raw);
	free(b->buf);
	free(b->name);
	memset(b, 0, sizeof *b);
}

/* ---- numbers ---- */

static const double pow10tab[23] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

static int is_missing_word(const char *s, size_t n)
{
	if (n == 0) return 1;
	if (n > 4) return 0;
	char c = s[0] | 0x20;
	if (c != 'n') return 0;
	if (n == 2) return (s[1] | 0x20) == 'a';
	if (n == 3) return ((s[1] | 0x20) == 'a' && (s[2] | 0x20) == 'n') || (s[1] == '/' && (s[2] | 0x20) == 'a');
	return strncasecmp(s, "null", 4) == 0;
}

static inline __attribute__((always_inline)) const char *num_fast(const char *s, const char *end, double *out)
{
	const char *p = s;
	int neg = 0;
	if (p < end && (*p == '-' || *p == '+')) { neg = *p == '-'; p++; }
	uint64_t m = 0;
	int nd = 0, e = 0;
	const char *d0 = p;
	while (p < end && (unsigned)(*p - '0') < 10) {
		if (nd < 19) { m = m * 10 + (uint64_t)(*p - '0'); nd += m != 0; } else e++;
		p++;
	}
	int any = p > d0;
	if (p < end && *p == '.') {
		p++;
		const char *f0 = p;
		while (p < end && (unsigned)(*p - '0') < 10) {
			if (nd < 19) { m = m * 10 + (uint64_t)(*p - '0'); nd += m != 0; e--; }
			p++;
		}
		any |= p > f0;
	}
	if (!any) return NULL;
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		int eneg = 0, x = 0;
		if (p < end && (*p == '-' || *p == '+')) { eneg = *p == '-'; p++; }
		const char *e0 = p;
		while (p < end && (unsigned)(*p - '0') < 10) { if (x < 100000) x = x * 10 + (*p - '0'); p++; }
		if (p == e0) return NULL;
		e += eneg ? -x : x;
	}
	if (m >= (1ULL << 53) || e < -22 || e > 22) return NULL;
	/* m and 10^|e| are exact doubles: one correctly rounded operation */
	double v = (double)m;
	v = e < 0 ? v / pow10tab[-e] : v * pow10tab[e];
	*out = neg ? -v : v;
	return p;
}

const char *parse_num_fast(const char *s, const char *end, double *out) { return num_fast(s, end, out); }

int parse_cell(const char *s, size_t n, double *out)
{
	while (n && s[0] == ' ') { s++; n--; }
	while (n && s[n - 1] == ' ') n--;
	if (num_fast(s, s + n, out) == s + n && n) return 0;
	if (is_missing_word(s, n)) return 1;
	char tmp[64];
	char *heap = NULL, *p = tmp;
	if (n >= sizeof tmp) p = heap = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	char *end;
	errno = 0;
	double v = strtod(p, &end);
	int ok = end != p && *end == 0;
	free(heap);
	if (!ok) return -1;
	if (isnan(v)) return 1;
	if (isinf(v)) return 2;
	*out = v;
	return 0;
}

/* ---- CsvIn ---- */

int csv_detect_delim(const char *line, size_t len)
{
	size_t tabs = 0, commas = 0;
	int inq = 0;
	for (size_t i = 0; i < len; i++) {
		if (line[i] == '"') inq = !inq;
		else if (!inq && line[i] == '\t') tabs++;
		else if (!inq && line[i] == ',') commas++;
	}
	return tabs > 0 && tabs >= commas ? '\t' : ',';
}

static int space_only(unsigned char c) { return c == ' '; }

static void push_field(CsvIn *c, char *s, size_t n)
{
	if (c->nf == c->fcap) {
		c->fcap = c->fcap ? c->fcap * 2 : 64;
		c->f = xrealloc(c->f, sizeof(char *) * (size_t)c->fcap);
		c->fl = xrealloc(c->fl, sizeof(size_t) * (size_t)c->fcap);
	}
	c->f[c->nf] = s;
	c->fl[c->nf] = n;
	c->nf++;
}

static void slow_cb1(void *s, size_t n, void *data)
{
	CsvIn *c = data;
	if (c->slen + n + 1 > c->scap) {
		c->scap = (c->slen + n + 1) * 2;
		c->sbuf = xrealloc(c->sbuf, c->scap);
	}
	if (n) memcpy(c->sbuf + c->slen, s, n);
	c->sbuf[c->slen + n] = 0;
	if (c->sn == c->scapn) {
		c->scapn = c->scapn ? c->scapn * 2 : 64;
		c->soff = xrealloc(c->soff, sizeof(size_t) * 2 * (size_t)c->scapn);
	}
	c->soff[2 * c->sn] = c->slen;
	c->soff[2 * c->sn + 1] = n;
	c->sn++;
	c->slen += n + 1;
}

static void slow_cb2(int ch, void *data)
{
	CsvIn *c = data;
	c->got = 1;
}

void csv_in_open(CsvIn *c, const char *path, int delim)
{
	memset(c, 0, sizeof *c);
	bi_open(&c->in, path);
	c->delim = delim;
}

static void slow_start(CsvIn *c)
{
	if (!c->parser) {
		c->parser = xmalloc(sizeof(struct csv_parser));
		if (csv_init(c->parser, CSV_APPEND_NULL) != 0) die("out of memory");
		csv_set_space_func(c->parser, space_only);
	}
	csv_set_delim(c->parser, (unsigned char)c->delim);
	c->slen = 0;
	c->sn = 0;
	c->got = 0;
}

static int slow_finish(CsvIn *c)
{
	c->nf = 0;
	for (int i = 0; i < c->sn; i++) push_field(c, c->sbuf + c->soff[2 * i], c->soff[2 * i + 1]);
	c->got = 0;
	c->sn = 0;
	c->slen = 0;
	return 1;
}

void csv_split(CsvIn *c, char *line, size_t len)
{
	c->nf = 0;
	char *p = line, *end = line + len;
	for (;;) {
		char *q = memchr(p, c->delim, (size_t)(end - p));
		char *fe = q ? q : end;
		char *fs = p;
		while (fs < fe && *fs == ' ') fs++;
		char *ft = fe;
		while (ft > fs && ft[-1] == ' ') ft--;
		*ft = 0;
		push_field(c, fs, (size_t)(ft - fs));
		if (!q) break;
		p = q + 1;
	}
}

static int next_record(CsvIn *c, char **rawline, size_t *rawlen)
{
	int slow = 0;
	for (;;) {
		size_t len;
		char *line = bi_getline(&c->in, &len);
		if (!line) {
			if (slow) {
				csv_fini(c->parser, slow_cb1, slow_cb2, c);
				if (c->sn > 0) return slow_finish(c);
				die("%s:%ld: unterminated quoted field at the end of the file", c->in.name, c->rec_line);
			}
			return 0;
		}
		c->line++;
		if (c->line == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) { line += 3; len -= 3; }
		if (len && line[len - 1] == '\r') line[--len] = 0;
		if (memchr(line, 0, len))
			die("%s:%ld: a NUL byte in the text (binary data, not a text table?)", c->in.name, c->line);
		if (!slow) {
			if (len == 0) continue;
			if (!c->delim) c->delim = csv_detect_delim(line, len);
			c->rec_line = c->line;
			if (!memchr(line, '"', len)) {
				if (rawline) {
					*rawline = line;
					*rawlen = len;
					return 2;
				}
				csv_split(c, line, len);
				return 1;
			}
			slow = 1;
			slow_start(c);
		}
		if (csv_parse(c->parser, line, len, slow_cb1, slow_cb2, c) != len ||
		    csv_parse(c->parser, "\n", 1, slow_cb1, slow_cb2, c) != 1)
			die("%s:%ld: malformed CSV (%s)", c->in.name, c->line, csv_strerror(csv_error(c->parser)));
		if (c->got) return slow_finish(c);
	}
}

int csv_in_next(CsvIn *c) { return next_record(c, NULL, NULL); }
int csv_in_next_raw(CsvIn *c, char **line, size_t *len) { return next_record(c, line, len); }

void csv_in_close(CsvIn *c)
{
	bi_close(&c->in);
	if (c->parser) {
		csv_free(c->parser);
		free(c->parser);
	}
	free(c->f); free(c->fl); free(c->sbuf); free(c->soff);
	memset(c, 0, sizeof *c);
}

/* ---- Table ---- */

static void rows_reserve(Table *t, int n)
{
	if (n <= t->cap) return;
	t->ids = xrealloc(t->ids, sizeof(char *) * (size_t)n);
	t->labels = xrealloc(t->labels, sizeof(char *) * (size_t)n);
	t->batches = xrealloc(t->batches, sizeof(char *) * (size_t)n);
	t->domains = xrealloc(t->domains, sizeof(char *) * (size_t)n);
	t->lines = xrealloc(t->lines, sizeof(long) * (size_t)n);
	t->x = xrealloc(t->x, sizeof(float) * (size_t)n * (size_t)(t->ngenes ? t->ngenes : 1));
	for (int i = t->cap; i < n; i++) { t->ids[i] = NULL; t->labels[i] = NULL; t->batches[i] = NULL; }
	t->cap = n;
}

static void rows_clear(Table *t)
{
	for (int i = 0; i < t->n; i++) {
		free(t->ids[i]); t->ids[i] = NULL;
		free(t->labels[i]); t->labels[i] = NULL;
		free(t->batches[i]); t->batches[i] = NULL;
	}
	t->n = 0;
}

static char *label_dup(const char *s, size_t n)
{
	while (n && *s == ' ') { s++; n--; }
	while (n && s[n - 1] == ' ') n--;
	if (is_missing_word(s, n)) return NULL;
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

static char *sdup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

/* parse one cell into *out, dying with a located message on bad input */
static void cell(const Table *t, long line, int col, const char *colname, const char *s, size_t n, float *out)
{
	double v;
	int r = parse_cell(s, n, &v);
	if (r == 0) {
		if (v > 3.4e38 || v < -3.4e38)
			die("%s:%ld: column %d (%s): '%s' is too large for float", t->name, line, col + 1, colname, s);
		*out = (float)v;
		return;
	}
	if (r == 1) {
		if (t->o.allow_missing) { *out = NAN; return; }
		die("%s:%ld: column %d (%s): missing value '%s' (use --missing mean to fill)", t->name, line, col + 1, colname, s);
	}
	if (r == 2) die("%s:%ld: column %d (%s): '%s' is not a finite number", t->name, line, col + 1, colname, s);
	/* text in the first data row: most likely a whole column of metadata */
	if (line == t->first_line && t->format != TF_GCT)
		die("%s:%ld: column %d (%s): '%s' is not a number (a metadata column? use --ignore-column %s)",
		    t->name, line, col + 1, colname, s, colname);
	die("%s:%ld: column %d (%s): '%s' is not a number", t->name, line, col + 1, colname, s);
}

static void check_width(const Table *t, CsvIn *c)
{
	if (c->nf == t->ncols + 1 && c->fl[c->nf - 1] == 0) c->nf--; /* trailing delimiter */
	if (c->nf != t->ncols)
		die("%s:%ld: %d fields, expected %d (as in the header line)", t->name, c->rec_line, c->nf, t->ncols);
}

static char *fdup(const CsvIn *c, int i) { return sdup(c->f[i], c->fl[i]); }

static void open_stream(Table *t)
{
	/* hand the descriptor and the bytes already read to the stream reader */
	ByteIn *b = &t->csv.in;
	if (b->gz) die("%s: a gzip-compressed stream; decompress it first (zcat)", t->name);
	SReader *r = &t->din.r;
	sr_open_fd(r, b->fd, b->name);
	r->own_fd = b->own_fd;
	b->own_fd = 0;
	size_t n = b->len - b->pos;
	if (r->cap < n + 4096) { r->cap = n + 4096; r->buf = xrealloc(r->buf, r->cap); }
	memcpy(r->buf, b->buf + b->pos, n);
	r->len = n;
	r->pos = 0;
	csv_in_close(&t->csv);
	t->din.rows = t->din.blocks = 0;
	t->din.done = 0;
	const msgpack_object *f = sr_next(r);
	if (!f) sr_fail(r, "empty stream (no header frame)");
	header_parse(r, f, &t->din.h);
	if (strcmp(t->din.h.kind, "data") != 0) sr_fail(r, "a stream of kind \"%s\", expected \"data\"", t->din.h.kind);
	t->ngenes = t->din.h.nfeat;
	t->genes = xmallocarray((size_t)t->ngenes + 1, sizeof(char *));
	for (int i = 0; i < t->ngenes; i++) t->genes[i] = xstrdup(t->din.h.features[i]);
	block_init(&t->blk, t->ngenes, 1);
	t->blk_pos = 0;
}

/* mark the --ignore-column columns (from index first on); unknown names are reported */
static void mark_ignored(Table *t, int first)
{
	t->skip = xcalloc((size_t)t->ncols + 1, 1);
	for (int k = 0; k < t->o.nignore; k++) {
		int found = 0;
		for (int i = first; i < t->ncols; i++)
			if (strcmp(t->colnames[i], t->o.ignore_columns[k]) == 0) { t->skip[i] = 1; found = 1; }
		if (!found) info("%s: no column named '%s' (--ignore-column)", t->name, t->o.ignore_columns[k]);
	}
}

/* read a genes-as-rows table (or GCT) whole; first is the index of the first value column */
static void load_whole(Table *t, int first, int idcol)
{
	CsvIn *c = &t->csv;
	mark_ignored(t, first);
	t->gcol = xmallocarray((size_t)t->ncols + 1, sizeof(int));   /* field of sample i */
	t->nsamples = 0;
	for (int i = first; i < t->ncols; i++) if (!t->skip[i]) t->gcol[t->nsamples++] = i;
	if (t->nsamples == 0) die("%s: no sample columns (all ignored)", t->name);
	t->samples = xmallocarray((size_t)t->nsamples + 1, sizeof(char *));
	for (int i = 0; i < t->nsamples; i++) t->samples[i] = xstrdup(t->colnames[t->gcol[i]]);
	size_t gcap = 1024;
	t->genes = xmallocarray(gcap, sizeof(char *));
	t->wx = xmallocarray(gcap, sizeof(float) * (size_t)t->nsamples);
	t->ngenes = 0;
	while (csv_in_next(c)) {
		check_width(t, c);
		if (!t->first_line) t->first_line = c->rec_line;
		if ((size_t)t->ngenes == gcap) {
			gcap *= 2;
			t->genes = xrealloc(t->genes, gcap * sizeof(char *));
			t->wx = xrealloc(t->wx, gcap * sizeof(float) * (size_t)t->nsamples);
		}
		float *row = t->wx + (size_t)t->ngenes * (size_t)t->nsamples;
		for (int i = 0; i < t->nsamples; i++) {
			int col = t->gcol[i];
			cell(t, c->rec_line, col, t->samples[i], c->f[col], c->fl[col], &row[i]);
		}
		t->genes[t->ngenes++] = fdup(c, idcol);
	}
	if (t->ngenes == 0) die("%s: no data rows (header only)", t->name);
	t->whole = 1;
	t->next = 0;
}

static int find_col(const Table *t, const char *name, const char *opt)
{
	for (int i = 1; i < t->ncols; i++)
		if (strcmp(t->colnames[i], name) == 0) return i;
	die("%s: no column named '%s' (%s)", t->name, name, opt);
}

/* ---- HDF5 (ARCHS4) ---- */

static int is_hdf5(const ByteIn *b, size_t avail)
{
	return avail >= 8 && memcmp(b->buf + b->pos, "\x89HDF\r\n\x1a\n", 8) == 0;
}

/* a and b ascending; the common elements into a, returns their number */
static void open_h5(Table *t, const char *path)
{
	const TableOpts *o = &t->o;
	if (strcmp(path, "-") == 0) die("<stdin>: HDF5 input must be a file (it is read by random access)");
	csv_in_close(&t->csv);
	if (!h5_available()) die("%s: this build has no HDF5 support (rebuild with libhdf5-dev installed)", t->name);
	H5In *f = h5_open(path);
	t->h5 = f;
	char *const *g = h5_genes(f, o->h5_gene_ensembl ? H5_GENE_ENSEMBL : H5_GENE_SYMBOL);
	if (!g) die("%s: no %s gene ids under meta/genes (try --gene-id %s)", t->name,
	            o->h5_gene_ensembl ? "Ensembl" : "symbol", o->h5_gene_ensembl ? "symbol" : "ensembl");
	long ng = h5_ngenes(f), ns = h5_nsamples(f);
	if (ng > (1L << 30)) die("%s: %ld genes: too many", t->name, ng);
	t->ngenes = (int)ng;
	t->genes = xmallocarray((size_t)t->ngenes + 1, sizeof(char *));
	for (int i = 0; i < t->ngenes; i++) t->genes[i] = xstrdup(g[i] ? g[i] : "");
	/* the selection: ids, then every --where (all must hold) */
	long *idx;
	long n = h5_select(f, t->name, o->h5_ids, o->h5_nids, o->h5_where, o->h5_nwhere, &idx);
	t->h5_idx = idx;
	t->h5_n = n;
	t->h5_next = 0;
	t->h5_sid = h5_has_meta(f, "geo_accession") ? h5_meta(f, "geo_accession") : NULL;
	if (o->h5_label_field) {
		t->h5_lab = xmallocarray((size_t)n + 1, sizeof(char *));
		h5_labels(f, o->h5_label_field, idx, n, t->h5_lab);
	}
	if (o->h5_batch_field) {
		t->h5_bat = xmallocarray((size_t)n + 1, sizeof(char *));
		h5_labels(f, o->h5_batch_field, idx, n, t->h5_bat);
	}
	char b1[32];
	snprintf(b1, sizeof b1, "%ld", ns);
	info("%s: %ld of %s samples selected, %d genes", t->name, n, b1, t->ngenes);
}

void table_open(Table *t, const char *path, const TableOpts *o)
{
	memset(t, 0, sizeof *t);
	t->o = *o;
	if (t->o.block_rows <= 0) t->o.block_rows = 256;
	t->path = xstrdup(path);
	t->name = strcmp(path, "-") == 0 ? "<stdin>" : t->path;
	t->label_col = -1;
	t->batch_col = -1;
	CsvIn *c = &t->csv;
	int delim = o->delim;
	if (!delim && o->format == TF_TSV) delim = '\t';
	if (!delim && o->format == TF_CSV) delim = ',';
	if (o->format == TF_GCT) delim = '\t';
	csv_in_open(c, path, delim);
	size_t avail = bi_fill(&c->in, 8);
	if (avail == 0 && o->format != TF_STREAM) die("%s: empty file", t->name);
	unsigned char b0 = avail ? (unsigned char)c->in.buf[c->in.pos] : 0;
	TableFormat f = o->format;
	if (f == TF_AUTO) {
		if (is_hdf5(&c->in, avail)) f = TF_HDF5;
		else if ((b0 >= 0x80 && b0 <= 0x8f) || b0 == 0xde || b0 == 0xdf) f = TF_STREAM;
		else if (avail >= 2 && c->in.buf[c->in.pos] == '#' && c->in.buf[c->in.pos + 1] == '1') f = TF_GCT;
		else f = TF_CSV;
	}
	t->format = f;
	if (f == TF_HDF5) {
		if (!is_hdf5(&c->in, avail)) die("%s: not an HDF5 file (no HDF5 signature)", t->name);
		if (o->label_column) usage_error("--label-column with an HDF5 input: use --label-field FIELD");
		open_h5(t, path);
		return;
	}
	if (f == TF_STREAM) {
		if (o->label_column) usage_error("--label-column with a stream input: labels come from the stream");
		open_stream(t);
		return;
	}
	if (f == TF_GCT) {
		c->delim = '\t';
		size_t len;
		char *l = bi_getline(&c->in, &len);
		c->line++;
		if (!l || strncmp(l, "#1.2", 4) != 0) die("%s:1: not a GCT 1.2 file (the first line must be \"#1.2\")", t->name);
		l = bi_getline(&c->in, &len);
		c->line++;
		long nr = -1, nc = -1;
		if (!l || sscanf(l, "%ld%*[ \t]%ld", &nr, &nc) != 2 || nr < 0 || nc < 0)
			die("%s:2: expected the dimensions line \"ROWS<TAB>COLUMNS\"", t->name);
		if (!csv_in_next(c)) die("%s: no header line after the dimensions line", t->name);
		if (c->nf < 2 || strcasecmp(c->f[0], "Name") != 0 || strcasecmp(c->f[1], "Description") != 0)
			die("%s:%ld: the GCT header must start with Name and Description", t->name, c->rec_line);
		t->ncols = c->nf;
		if (t->ncols > 2 && c->fl[t->ncols - 1] == 0) t->ncols--;
		t->colnames = xmallocarray((size_t)t->ncols, sizeof(char *));
		for (int i = 0; i < t->ncols; i++) t->colnames[i] = fdup(c, i);
		if (t->ncols - 2 != nc)
			die("%s:2: the dimensions line says %ld samples, the header has %d", t->name, nc, t->ncols - 2);
		if (o->label_column) usage_error("--label-column: a GCT table has no label column; use --labels FILE");
		load_whole(t, 2, o->gene_id_desc ? 1 : 0);
		if (t->ngenes != nr)
			die("%s: %d gene rows, the dimensions line says %ld", t->name, t->ngenes, nr);
		return;
	}
	/* CSV or TSV */
	if (!csv_in_next(c)) die("%s: empty file", t->name);
	t->ncols = c->nf;
	if (t->ncols > 1 && c->fl[t->ncols - 1] == 0) t->ncols--; /* trailing delimiter */
	t->colnames = xmallocarray((size_t)t->ncols, sizeof(char *));
	for (int i = 0; i < t->ncols; i++) t->colnames[i] = fdup(c, i);
	if (t->ncols < 2) die("%s:%ld: the header has %d column; expected an id column and values", t->name, c->rec_line, t->ncols);
	if (o->genes_as_rows) {
		if (o->label_column) usage_error("--label-column: a genes-as-rows table has no label column; use --labels FILE");
		load_whole(t, 1, 0);
		return;
	}
	mark_ignored(t, 1);
	if (o->label_column) t->label_col = find_col(t, o->label_column, "--label-column");
	if (o->batch_column) t->batch_col = find_col(t, o->batch_column, "--combat");
	t->colgene = xmallocarray((size_t)t->ncols + 1, sizeof(int));
	t->genes = xmallocarray((size_t)t->ncols + 1, sizeof(char *));
	t->gcol = xmallocarray((size_t)t->ncols + 1, sizeof(int));
	t->colgene[0] = -1;
	int j = 0;
	for (int i = 1; i < t->ncols; i++) {
		if (i == t->label_col) { t->colgene[i] = -2; continue; }
		if (i == t->batch_col) { t->colgene[i] = -3; continue; }
		if (t->skip[i]) { t->colgene[i] = -4; continue; }
		t->colgene[i] = j;
		t->genes[j] = xstrdup(t->colnames[i]);
		t->gcol[j++] = i;
	}
	t->ngenes = j;
	if (t->ngenes == 0) die("%s: no gene columns (all are the id, label or ignored columns)", t->name);
}

/* One unquoted samples-as-rows line parsed in place of splitting it: numbers straight
 * from the text. Returns 0 when anything is unusual (a field count that differs, a
 * cell that is not a plain number); the caller then splits the line and reports. */
static int fast_row(Table *t, int k, const char *line, size_t len)
{
	const char *p = line, *end = line + len;
	const int delim = t->csv.delim, ncols = t->ncols;
	const int *cg = t->colgene;
	float *row = t->x + (size_t)k * t->ngenes;
	const char *fs[3] = { 0 };
	size_t fn[3] = { 0 };
	int col = 0;
	for (;;) {
		int g = cg[col];
		if (g >= 0) {
			/* the common case first: a plain integer (the line ends with a NUL) */
			const char *q = p;
			uint64_t m = 0;
			while ((unsigned)(*q - '0') < 10) { m = m * 10 + (uint64_t)(*q - '0'); q++; }
			if (q > p && q - p <= 15 && (q == end || *q == delim)) {
				row[g] = (float)m;
				p = q;
				goto next;
			}
			while (p < end && *p == ' ') p++;
			double v;
			const char *e = num_fast(p, end, &v);
			if (!e) return 0;
			while (e < end && *e == ' ') e++;
			if (e < end && *e != delim) return 0;
			row[g] = (float)v;
			p = e;
		} else {
			const char *e = memchr(p, delim, (size_t)(end - p));
			if (!e) e = end;
			if (g >= -3) { fs[-g - 1] = p; fn[-g - 1] = (size_t)(e - p); }
			p = e;
		}
	next:
		col++;
		if (p == end) break;
		p++;                        /* the delimiter */
		if (col == ncols) {
			if (p == end) break;    /* one trailing delimiter */
			return 0;
		}
	}
	if (col != ncols) return 0;
	/* fields: 0 id, 1 label, 2 batch */
	const char *s = fs[0];
	size_t n = fn[0];
	while (n && *s == ' ') { s++; n--; }
	while (n && s[n - 1] == ' ') n--;
	t->ids[k] = sdup(s, n);
	t->labels[k] = t->label_col >= 0 ? label_dup(fs[1], fn[1]) : NULL;
	t->batches[k] = t->batch_col >= 0 ? label_dup(fs[2], fn[2]) : NULL;
	return 1;
}

int table_read(Table *t)
{
	rows_clear(t);
	int want = t->o.block_rows;
	rows_reserve(t, want);
	if (t->format == TF_STREAM) {
		while (t->n < want) {
			if (t->blk_pos == t->blk.n) {
				if (!data_next(&t->din, &t->blk)) break;
				t->blk_pos = 0;
				continue;
			}
			int i = t->blk_pos++;
			int k = t->n++;
			t->ids[k] = xstrdup(t->blk.ids[i]);
			int y = t->blk.y[i];
			t->labels[k] = y >= 0 ? xstrdup(t->din.h.classes[y]) : NULL;
			t->domains[k] = t->din.h.domains[t->blk.d[i]];
			t->lines[k] = t->din.r.frame;
			memcpy(t->x + (size_t)k * t->ngenes, t->blk.x + (size_t)i * t->ngenes, sizeof(float) * (size_t)t->ngenes);
		}
		t->rows += t->n;
		return t->n;
	}
	if (t->format == TF_HDF5) {
		long n = t->h5_n - t->h5_next;
		if (n > want) n = want;
		if (n <= 0) return 0;
		h5_read_samples(t->h5, t->h5_idx + t->h5_next, n, t->x);
		for (long i = 0; i < n; i++) {
			long s = t->h5_idx[t->h5_next + i];
			t->ids[i] = t->h5_sid ? xstrdup(t->h5_sid[s]) : xasprintf("sample%ld", s);
			t->labels[i] = t->h5_lab && t->h5_lab[t->h5_next + i] ? label_dup(t->h5_lab[t->h5_next + i], strlen(t->h5_lab[t->h5_next + i])) : NULL;
			t->batches[i] = t->h5_bat && t->h5_bat[t->h5_next + i] ? label_dup(t->h5_bat[t->h5_next + i], strlen(t->h5_bat[t->h5_next + i])) : NULL;
			t->domains[i] = NULL;
			t->lines[i] = 0;
		}
		t->h5_next += n;
		t->n = (int)n;
		t->rows += n;
		return t->n;
	}
	if (t->whole) {
		while (t->n < want && t->next < t->nsamples) {
			int s = t->next++;
			int k = t->n++;
			t->ids[k] = xstrdup(t->samples[s]);
			t->labels[k] = NULL;
			t->domains[k] = NULL;
			t->lines[k] = 0;
			float *row = t->x + (size_t)k * t->ngenes;
			for (int g = 0; g < t->ngenes; g++) row[g] = t->wx[(size_t)g * t->nsamples + s];
		}
		t->rows += t->n;
		return t->n;
	}
	CsvIn *c = &t->csv;
	char *line;
	size_t len;
	int r;
	while (t->n < want && (r = csv_in_next_raw(c, &line, &len))) {
		int k = t->n;
		if (!t->first_line) t->first_line = c->rec_line;
		t->domains[k] = NULL;
		t->lines[k] = c->rec_line;
		if (r == 2 && fast_row(t, k, line, len)) { t->n++; continue; }
		if (r == 2) csv_split(c, line, len);
		check_width(t, c);
		t->ids[k] = fdup(c, 0);
		t->labels[k] = t->label_col >= 0 ? label_dup(c->f[t->label_col], c->fl[t->label_col]) : NULL;
		t->batches[k] = t->batch_col >= 0 ? label_dup(c->f[t->batch_col], c->fl[t->batch_col]) : NULL;
		float *row = t->x + (size_t)k * t->ngenes;
		for (int g = 0; g < t->ngenes; g++) {
			int col = t->gcol[g];
			cell(t, c->rec_line, col, t->genes[g], c->f[col], c->fl[col], &row[g]);
		}
		t->n++;
	}
	if (t->n == 0 && t->rows == 0) die("%s: no data rows (header only)", t->name);
	t->rows += t->n;
	return t->n;
}

static void free_strs(char **s, int n)
{
	if (!s) return;
	for (int i = 0; i < n; i++) free(s[i]);
	free(s);
}

void table_close(Table *t)
{
	rows_clear(t);
	if (t->format == TF_STREAM) {
		block_free(&t->blk);
		data_close(&t->din);
	} else if (t->format == TF_HDF5) {
		if (t->h5) h5_close(t->h5);
		free(t->h5_idx);
		free(t->h5_lab);
		free(t->h5_bat);
	} else {
		csv_in_close(&t->csv);
	}
	free_strs(t->genes, t->ngenes);
	free_strs(t->colnames, t->ncols);
	free_strs(t->samples, t->nsamples);
	free(t->gcol); free(t->wx); free(t->skip); free(t->colgene);
	free(t->ids); free(t->labels); free(t->batches); free(t->domains); free(t->lines); free(t->x);
	free(t->path);
	memset(t, 0, sizeof *t);
}

int read_name_list(const char *path, char ***out)
{
	ByteIn b;
	bi_open(&b, path);
	int n = 0, cap = 1024;
	char **s = xmallocarray((size_t)cap, sizeof(char *));
	size_t len;
	char *l;
	while ((l = bi_getline(&b, &len))) {
		if (n == 0 && len >= 3 && memcmp(l, "\xEF\xBB\xBF", 3) == 0) { l += 3; len -= 3; }
		while (len && (l[len - 1] == '\r' || l[len - 1] == ' ' || l[len - 1] == '\t')) l[--len] = 0;
		while (*l == ' ' || *l == '\t') { l++; len--; }
		if (len == 0 || l[0] == '#') continue;
		if (n == cap) { cap *= 2; s = xrealloc(s, sizeof(char *) * (size_t)cap); }
		s[n++] = xstrdup(l);
	}
	bi_close(&b);
	if (n == 0) die("%s: no names in the file", path);
	*out = s;
	return n;
}
