/* table.h: expression tables in, plain or gzip (detected by magic bytes).
 *
 * ByteIn reads a file or stdin in big blocks, inflating gzip when the first two bytes
 * are the gzip magic (concatenated members too); a truncated or corrupt gzip is an error.
 * CsvIn splits it into records: a fast path for lines without quotes, libcsv for the
 * rest (quotes, delimiters or newlines inside quotes). A UTF-8 BOM, CRLF line ends,
 * blank lines and one trailing empty field are accepted; spaces around unquoted
 * fields are trimmed.
 * Table gives an expression table (CSV/TSV samples as rows, genes as rows, GCT 1.2,
 * or a data stream) as blocks of sample rows with values in float, NaN = missing.
 * Every error names the file and line: "x.csv:17: column 5 (TP53): 'x1' is not a number". */
#ifndef DAPIPE_TABLE_H
#define DAPIPE_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "stream.h"

typedef struct {
	int fd, own_fd;
	char *name;
	int gz;                 /* input is gzip */
	z_stream zs;
	int zend;               /* inflate reached the end of a member */
	unsigned char *raw;     /* raw (compressed) bytes */
	size_t rawcap, rawlen, rawpos;
	int raweof;
	char *buf;              /* decoded bytes: [pos, len) unread */
	size_t cap, len, pos;
	int eof;                /* no more decoded bytes after [pos, len) */
} ByteIn;

void bi_open(ByteIn *b, const char *path);   /* "-" is stdin */
/* Make at least want bytes available (fewer at the end); returns bytes available. */
size_t bi_fill(ByteIn *b, size_t want);
/* The next line without its '\n', NUL-terminated, valid until the next call;
 * NULL at the end of input. */
char *bi_getline(ByteIn *b, size_t *len);
void bi_close(ByteIn *b);

typedef struct {
	ByteIn in;
	int delim;           /* 0 until detected from the first record */
	long line;           /* line number of the last line read */
	long rec_line;       /* line where the last record started */
	int nf, fcap;
	char **f;            /* fields of the last record, NUL-terminated */
	size_t *fl;          /* their lengths */
	int quoted_ok;
	/* slow path (libcsv) */
	void *parser;
	char *sbuf; size_t slen, scap;
	size_t *soff; int sn, scapn;
	int got;
} CsvIn;

void csv_in_open(CsvIn *c, const char *path, int delim);
/* 1: a record in c->f/c->fl/c->nf; 0: end of input */
int csv_in_next(CsvIn *c);
/* Like csv_in_next, but a line without quotes comes back unsplit in line and len
 * (NUL-terminated, BOM and CR removed; returns 2); a record with quotes comes back
 * split in c->f (returns 1); 0 at the end. csv_split splits such a line in place. */
int csv_in_next_raw(CsvIn *c, char **line, size_t *len);
void csv_split(CsvIn *c, char *line, size_t len);
void csv_in_close(CsvIn *c);
/* detect the delimiter of a header line: tab if it has tabs and at least as many
 * tabs as commas, otherwise comma */
int csv_detect_delim(const char *line, size_t len);

/* Parse a number: 0 ok, 1 missing (empty, NA, NaN, nan, N/A, null), 2 infinite,
 * -1 not a number. Surrounding spaces are allowed. The value is strtod's (correctly
 * rounded): decimal numbers of at most 19 significant digits whose value is
 * m * 10^e with m < 2^53 and |e| <= 22 are computed exactly (Clinger's fast path),
 * the rest go through strtod. */
int parse_cell(const char *s, size_t n, double *out);
/* The fast path alone on [s, end): the end of the number and *out, or NULL when the
 * text does not start with a number of that form. */
const char *parse_num_fast(const char *s, const char *end, double *out);

typedef enum { TF_AUTO, TF_CSV, TF_TSV, TF_GCT, TF_STREAM, TF_HDF5 } TableFormat;

typedef struct {
	TableFormat format;
	int delim;              /* 0: detect */
	int genes_as_rows;
	int gene_id_desc;       /* GCT: genes named by the Description column */
	const char *label_column; /* a column of the table holding labels (samples as rows) */
	const char *batch_column; /* a column holding batches (samples as rows), or NULL */
	char **ignore_columns;  /* columns that are neither genes nor samples (metadata) */
	int nignore;
	/* HDF5 (ARCHS4) */
	int h5_gene_ensembl;    /* genes named by Ensembl ids (default symbols) */
	const char *h5_label_field;  /* labels from this sample metadata field */
	const char *h5_batch_field;  /* batches from this sample metadata field */
	char **h5_ids;          /* select these samples (geo_accession), or NULL */
	long h5_nids;
	char **h5_where;        /* FIELD=VALUE (exact) or FIELD~SUBSTRING, all must hold */
	int h5_nwhere;
	int allow_missing;      /* missing cells become NaN, otherwise an error */
	int block_rows;
} TableOpts;

typedef struct {
	char *path;             /* as given ("-" = stdin) */
	const char *name;       /* for messages */
	TableFormat format;
	int ngenes;
	char **genes;           /* gene ids in column order */
	int whole;              /* loaded whole (genes as rows, GCT) */
	TableOpts o;
	/* text tables */
	CsvIn csv;
	int ncols;              /* header fields */
	int *gcol;              /* field index of gene j */
	int label_col;          /* -1 none */
	int batch_col;          /* -1 none */
	signed char *skip;      /* (ncols) 1: a metadata column (--ignore-column) */
	int *colgene;           /* (ncols) gene index of a field, -1 id, -2 label, -3 batch, -4 ignored */
	long first_line;        /* line of the first data record */
	char **colnames;
	/* whole tables */
	int nsamples;
	char **samples;
	float *wx;              /* ngenes x nsamples as read */
	int next;               /* next sample to hand out */
	/* streams */
	DataIn din;
	Block blk;
	int blk_pos;
	/* HDF5 */
	struct H5In *h5;
	long *h5_idx;           /* selected sample columns */
	long h5_n, h5_next;
	char *const *h5_sid;    /* sample ids (geo_accession) */
	const char **h5_lab, **h5_bat;  /* per selected sample, or NULL */
	/* the block handed out */
	int n, cap;
	char **ids;
	char **labels;          /* NULL entries = unlabelled */
	char **batches;         /* batch of each row when a batch column is read, else NULL */
	const char **domains;   /* per row domain name (streams), else NULL */
	long *lines;
	float *x;               /* n x ngenes, NaN = missing */
	long rows;
} Table;

/* Opens and reads the header (and, for tables that must be transposed, the whole table). */
void table_open(Table *t, const char *path, const TableOpts *o);
/* Next block of at most o->block_rows samples in t->n/ids/labels/x; returns t->n (0 at end). */
int table_read(Table *t);
void table_close(Table *t);

/* A file of names, one per line (blank lines and lines starting with '#' skipped). */
int read_name_list(const char *path, char ***out);

#endif
