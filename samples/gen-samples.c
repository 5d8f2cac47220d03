/* gen-samples: synthetic TCGA-like, ARCHS4-like and GTEx-like expression cohorts.
 *
 * Writes, into --out DIR, three cohorts that share one gene universe and one label
 * space (16 organ classes) but differ the way public RNA-seq compendia differ:
 *   tcga.csv.gz      TCGA-like: log2(TPM+1), samples as rows, CSV, columns
 *                    sample_id,tissue,ENSG...(versioned), sorted by gene id
 *   archs4.tsv.gz    ARCHS4-like: raw integer counts (gamma-Poisson), samples as rows,
 *                    TSV, columns sample_id,tissue,series,ENSG...(no version), genes in
 *                    another order, ~3% of the genes missing, series batch effects
 *   gtex.gct.gz      GTEx-like: GCT 1.2, genes as rows (Name = versioned Ensembl id with
 *                    partly different versions, Description = symbol), TPM values
 *   gtex_labels.csv  sample_id,tissue for the GTEx-like samples
 *   genes.tsv        ensembl_id,symbol of the whole universe (tab-separated)
 * The generative model (class markers, biological programs with class means, cohort
 * batch effects, gene-gene mixing, nuisance factors, program scales, degradation,
 * cross-tissue contamination, nonlinear distortion, tempered label shift) is documented with formulas in
 * samples/README.md. Same options and --seed give byte-identical files. The
 * GTEx-like and ARCHS4-like shift parameters can be overridden at compile time
 * (GTEX_MIX, GTEX_PROG, GTEX_NUIS, GTEX_QSD, GTEX_PROG_NOISE, GTEX_MISS_MARKERS,
 * GTEX_CONTAM, GTEX_CONTAM_MAX, ARCHS4_MIX, ARCHS4_PROG, ARCHS4_NUIS, ARCHS4_QSD,
 * ARCHS4_PROG_NOISE, and the tumour programs TCGA_TUMOUR, ARCHS4_TUMOUR, GTEX_TUMOUR,
 * TUM_FRAC, TUM_LOAD, TUM_MEAN_SD, TUM_SD) for experiments; the defaults make the
 * committed samples.
 *
 * Options: --out DIR (required), --seed N (1), --genes N (2000), --tcga N (1200),
 * --archs4 N (1200), --gtex N (500), --samples N (all three), --shift S (1.0),
 * --no-gzip, --markers-out FILE (CSV class,gene,symbol,effect of the planted class
 * markers), --quiet, --help. A cohort size of 0 skips that cohort.
 *
 * Exit codes: 0 ok, 1 runtime error (cannot write), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "rng.h"
#include "util.h"

#define NCLASS 16
#define NPROG 8      /* shared biological programs (latent factors) */
#define NNUIS 6      /* cohort nuisance factors (protocol gene-set effects) */
#define NMIX 8       /* cohort gene-gene mixing rank */
/* model constants (samples/README.md gives their role) */
#define MARK_LO 2.0  /* class marker effect, log2: MARK_LO .. MARK_HI */
#define MARK_HI 3.0
#define MARK_PCT 8   /* markers per class, percent of the marker pool */
#define PROG_SD 0.5 /* program loading sd, log2 */
#define PROG_MEAN_SD 1.0 /* class mean of a program's activity (tissue composition) */
#define LABEL_TEMPER 0.5 /* class proportions follow the cohort weights to this power */
#define SERIES_SD 0.075 /* ARCHS4-like series effect sd, log2 */
#define GTEX_TAU 1.0  /* GTEx-like gene-wise shift sd, log2 */
#define GTEX_FRAC 0.8 /* GTEx-like fraction of genes with a batch effect */
/* Cohort-shift parameters of the GTEx-like and ARCHS4-like cohorts. The defaults make
 * the committed samples; each can be overridden at compile time (cc -DGTEX_MIX=1.0 ...)
 * to measure another balance of the shift (docs/PIPELINES.md, "Rebalancing the cohort
 * shift"). */
#ifndef GTEX_MIX
#define GTEX_MIX 1.0   /* gene-gene mixing strength mu_D */
#endif
#ifndef GTEX_PROG
#define GTEX_PROG 0.1  /* log sd of the program activity scales omega_D */
#endif
#ifndef GTEX_NUIS
#define GTEX_NUIS 1.5  /* nuisance factor loading sd nu_D, log2 */
#endif
#ifndef GTEX_QSD
#define GTEX_QSD 1.0   /* sd of the degradation factor q */
#endif
#ifndef GTEX_PROG_NOISE
#define GTEX_PROG_NOISE 0.0 /* sd of extra per-sample program activity (0: none) */
#endif
#ifndef GTEX_MISS_MARKERS
#define GTEX_MISS_MARKERS 0.0 /* fraction of marker genes absent from the file */
#endif
#ifndef GTEX_CONTAM
#define GTEX_CONTAM 0.7 /* fraction of samples contaminated by another tissue */
#endif
#ifndef GTEX_CONTAM_MAX
#define GTEX_CONTAM_MAX 0.4 /* contaminating share of the RNA: U(0, this) */
#endif
#ifndef ARCHS4_MIX
#define ARCHS4_MIX 0.35
#endif
#ifndef ARCHS4_PROG
#define ARCHS4_PROG 0.07
#endif
#ifndef ARCHS4_NUIS
#define ARCHS4_NUIS 0.5
#endif
#ifndef ARCHS4_QSD
#define ARCHS4_QSD 0.4
#endif
#ifndef ARCHS4_PROG_NOISE
#define ARCHS4_PROG_NOISE 0.0
#endif
/* tumour programs (an experiment, off in the committed samples): expression programs of
 * the tumour itself (proliferation, immune infiltration, stroma, hypoxia) whose activity
 * depends on the cancer type, present in a cohort's tumour samples (TCGA_TUMOUR,
 * ARCHS4_TUMOUR: their share) and absent from normal tissue; each loads on a share of
 * the non-marker genes. docs/PIPELINES.md, "Shifts that marginal alignment cannot use". */
#define NTUM 4
#ifndef TUM_FRAC
#define TUM_FRAC 0.04  /* non-marker genes each tumour program loads on */
#endif
#ifndef TUM_LOAD
#define TUM_LOAD 0.6   /* loading sd, log2 */
#endif
#ifndef TUM_MEAN_SD
#define TUM_MEAN_SD 1.5 /* sd of the cancer-type means of the tumour program activities */
#endif
#ifndef TUM_SD
#define TUM_SD 0.5     /* per-sample sd of a tumour program's activity */
#endif
#ifndef TCGA_TUMOUR
#define TCGA_TUMOUR 0.0 /* share of tumour samples (e.g. 1.0) */
#endif
#ifndef ARCHS4_TUMOUR
#define ARCHS4_TUMOUR 0.0 /* (e.g. 0.5) */
#endif
#ifndef GTEX_TUMOUR
#define GTEX_TUMOUR 0.0
#endif
#define NUIS_FRAC 0.3 /* marker genes each nuisance factor acts on */
#define MIX_FRAC 0.3  /* marker genes read and written by each mixing component */

/* The 16 organ classes that TCGA projects and GTEx tissues both map to
 * (the label mapping of the RNA-seq domain-adaptation study). */
static const char *CLASSES[NCLASS] = {
	"bladder", "brain", "breast", "cervix", "colon", "headneck", "kidney", "liver",
	"lung", "ovary", "prostate", "sarcoma", "skin", "stomach", "thyroid", "uterine",
};
/* class weights: TCGA project sizes, GTEx v8 tissue counts (SMTS, merged by the
 * mapping), and an ARCHS4-like mixture (brain- and liver-heavy, few cervix). */
static const double W_TCGA[NCLASS] = {
	430, 530, 1220, 310, 520, 570, 900, 420, 1150, 380, 550, 265, 470, 450, 570, 580 };
static const double W_GTEX[NCLASS] = {
	21, 2642, 459, 19, 779, 1607, 89, 226, 578, 180, 245, 2007, 1809, 359, 653, 142 };
static const double W_ARCHS4[NCLASS] = {
	60, 900, 500, 40, 400, 250, 300, 450, 600, 120, 200, 350, 400, 150, 250, 180 };

static const char *SYM_PREFIX[] = {
	"ZNF", "SLC", "TMEM", "KRT", "RPL", "CD", "FAM", "ANKRD", "CCDC", "KLHL", "LRRC",
	"PCDH", "TRIM", "DNAJ", "MYO", "COL", "ADAM", "WDR", "GPR", "KIF", "CDH", "RAB",
	"SNX", "ATP", "HOX", "SOX", "FOX", "IL", "MT", "ST", "PPP", "SEC",
};
#define NPREFIX (int)(sizeof SYM_PREFIX / sizeof SYM_PREFIX[0])

typedef struct {
	char id[16];     /* ENSG + 11 digits, no version */
	char sym[16];
	int ver;         /* version in the TCGA-like files */
	int ver_gtex;    /* version in the GTEx-like file (a later annotation) */
	double base;     /* baseline log2 expression */
	double sd;       /* residual biological noise, log2 */
	double len;      /* standardised gene-length covariate (degradation loading) */
	double disp;     /* negative-binomial dispersion (ARCHS4-like counts) */
	int marker;      /* 1 when some class uses it as a marker */
} Gene;

typedef struct {
	const char *name;
	int n;                   /* samples */
	const double *w;         /* class weights */
	int rng_stream;
	double tau, rho, frac;   /* gene-wise batch effect: shift sd, log-scale sd, gene fraction */
	double q_mean, q_sd;     /* degradation factor */
	double kappa, knee;      /* nonlinear curve */
	double miss;             /* fraction of (non-marker) genes absent from the file */
	double miss_mark;        /* fraction of marker genes absent from the file */
	double nuis_sd;          /* nuisance factor loading sd, log2 */
	double prog_sd;          /* log sd of the cohort's program activity scales */
	double prog_noise;       /* sd of extra per-sample program activity in this cohort */
	double mix;              /* gene-gene mixing strength */
	double contam, contam_max; /* contaminated sample fraction, largest contaminating share */
	double tumour;           /* share of samples carrying the tumour programs */
	double *mixu, *mixv;     /* (G, NMIX) mixing: written to, read from */
	double *a, *b;           /* per gene shift and scale */
	double *nload;           /* (G, NNUIS) nuisance loadings */
	double pscale[NPROG];    /* program activity scales */
	unsigned char *present;  /* per gene */
	int *counts;             /* samples per class */
} Cohort;

typedef struct {
	int G;
	Gene *g;
	double *delta;           /* (NCLASS, G) class marker effects, log2 */
	double *load;            /* (G, NPROG) program loadings */
	double *pmean;           /* (NCLASS, NPROG) class means of the program activities */
	double *tload;           /* (G, NTUM) tumour program loadings */
	double *tmean;           /* (NCLASS, NTUM) cancer-type means of the tumour programs */
	double shift;
} Model;

/* ---- output: plain or gzip through zlib, written atomically ---- */

typedef struct {
	AtomicFile af;
	FILE *fp;
	int gz;
	z_stream zs;
	char *buf;
	size_t len, cap;
	unsigned char *zbuf;
	char *path;
} Out;

#define OUT_CHUNK (1 << 16)

static void out_open(Out *o, const char *dir, const char *name, int gz)
{
	memset(o, 0, sizeof *o);
	o->gz = gz;
	o->path = xasprintf("%s/%s%s", dir, name, gz ? ".gz" : "");
	o->fp = atomic_open(&o->af, o->path);
	o->cap = OUT_CHUNK;
	o->buf = xmalloc(o->cap + 256);
	if (gz) {
		o->zbuf = xmalloc(OUT_CHUNK);
		/* windowBits 15+16: a gzip wrapper with mtime 0, no file name: reproducible */
		if (deflateInit2(&o->zs, 4, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			die("%s: zlib initialisation failed", o->path);
	}
}

static void out_drain(Out *o, int finish)
{
	if (!o->gz) {
		if (o->len && fwrite(o->buf, 1, o->len, o->fp) != o->len)
			die("%s: write error:", o->path);
		o->len = 0;
		return;
	}
	o->zs.next_in = (unsigned char *)o->buf;
	o->zs.avail_in = (unsigned)o->len;
	int flush = finish ? Z_FINISH : Z_NO_FLUSH, rc;
	do {
		o->zs.next_out = o->zbuf;
		o->zs.avail_out = OUT_CHUNK;
		rc = deflate(&o->zs, flush);
		if (rc == Z_STREAM_ERROR) die("%s: zlib error", o->path);
		size_t have = OUT_CHUNK - o->zs.avail_out;
		if (have && fwrite(o->zbuf, 1, have, o->fp) != have)
			die("%s: write error:", o->path);
	} while (o->zs.avail_out == 0 || (finish && rc != Z_STREAM_END));
	o->len = 0;
}

static inline void out_reserve(Out *o, size_t n)
{
	if (o->len + n > o->cap) out_drain(o, 0);
	if (n > o->cap) {
		o->cap = n;
		o->buf = xrealloc(o->buf, o->cap + 256);
	}
}

static void out_str(Out *o, const char *s)
{
	size_t n = strlen(s);
	out_reserve(o, n);
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static inline void out_char(Out *o, char c)
{
	out_reserve(o, 1);
	o->buf[o->len++] = c;
}

static void out_ulong(Out *o, unsigned long v)
{
	char t[24];
	int n = 0;
	do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v);
	out_reserve(o, (size_t)n);
	while (n) o->buf[o->len++] = t[--n];
}

/* v >= 0 with dec decimals, rounded half away from zero; 0 prints as "0" */
static void out_fixed(Out *o, double v, int dec)
{
	static const double P10[] = { 1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7 };
	unsigned long k = (unsigned long)llround(v * P10[dec]);
	if (k == 0) { out_char(o, '0'); return; }
	unsigned long ip = k, fp = 0, p = 1;
	for (int i = 0; i < dec; i++) p *= 10;
	ip = k / p;
	fp = k % p;
	out_ulong(o, ip);
	if (dec) {
		char t[8];
		out_char(o, '.');
		for (int i = dec - 1; i >= 0; i--) { t[i] = (char)('0' + fp % 10); fp /= 10; }
		out_reserve(o, (size_t)dec);
		memcpy(o->buf + o->len, t, (size_t)dec);
		o->len += (size_t)dec;
	}
}

/* three significant digits, never an exponent (GTEx-style TPM) */
static void out_sig3(Out *o, double v)
{
	if (v < 5e-7) { out_char(o, '0'); return; }
	int e = (int)floor(log10(v));
	int dec = 2 - e;
	if (dec < 0) {
		double p = pow(10, -dec);
		out_ulong(o, (unsigned long)llround(v / p) * (unsigned long)p);
		return;
	}
	if (dec > 6) dec = 6;
	out_fixed(o, v, dec);
}

static void out_close(Out *o)
{
	out_drain(o, 1);
	if (o->gz) deflateEnd(&o->zs);
	atomic_commit(&o->af);
	free(o->buf);
	free(o->zbuf);
	free(o->path);
}

/* ---- the generative model ---- */

/* a unique k-character base-36 code for index i (an affine bijection mod 36^k) */
static void code36(char *dst, unsigned long i, int k, unsigned long salt, int digits_only)
{
	static const char A36[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	unsigned long base = digits_only ? 10 : 36, mod = 1;
	for (int j = 0; j < k; j++) mod *= base;
	unsigned long x = (i * 2654435761UL + salt) % mod; /* the multiplier is a prime: a bijection */
	for (int j = k - 1; j >= 0; j--) { dst[j] = A36[x % base]; x /= base; }
	dst[k] = 0;
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static void build_genes(Model *m, uint64_t seed)
{
	int G = m->G;
	Rng r;
	rng_seed2(&r, seed, 1);
	m->g = xcalloc((size_t)G, sizeof(Gene));
	int *pcount = xcalloc(NPREFIX, sizeof(int));
	long id = 1000 + (long)rng_below(&r, 3000);
	for (int j = 0; j < G; j++) {
		Gene *g = &m->g[j];
		id += 1 + (long)rng_below(&r, 40);
		snprintf(g->id, sizeof g->id, "ENSG%011ld", id);
		int p = (int)rng_below(&r, NPREFIX);
		snprintf(g->sym, sizeof g->sym, "%s%d", SYM_PREFIX[p], ++pcount[p]);
		/* versions: mostly small, a long tail */
		g->ver = 1 + (int)rng_below(&r, 6) + (rng_uniform(&r) < 0.3 ? (int)rng_below(&r, 12) : 0);
		g->ver_gtex = g->ver + (rng_uniform(&r) < 0.3 ? 1 : 0);
		g->base = clampd(3.0 + 2.0 * rng_normal(&r), -3.0, 12.0);
		g->sd = 0.3 + 0.5 * rng_uniform(&r);
		g->len = rng_normal(&r);
		g->disp = 0.03 * exp(0.5 * rng_normal(&r));
	}
	free(pcount);

	/* biological programs: each loads on a random 20% of the genes */
	m->load = xcalloc((size_t)G * NPROG, sizeof(double));
	for (int j = 0; j < G; j++)
		for (int k = 0; k < NPROG; k++)
			if (rng_uniform(&r) < 0.2) m->load[(size_t)j * NPROG + k] = PROG_SD * rng_normal(&r);

	/* class markers: a pool of 15% of the genes; each class draws M markers from it */
	Rng rm;
	rng_seed2(&rm, seed, 2);
	int pool = G * 15 / 100, M = pool * MARK_PCT / 100;
	if (M < 4) M = 4;
	if (M > pool) M = pool;
	int *perm = xmallocarray((size_t)G, sizeof(int));
	for (int j = 0; j < G; j++) perm[j] = j;
	rng_shuffle_int(&rm, perm, G);
	int *pick = xmallocarray((size_t)pool, sizeof(int));
	m->delta = xcalloc((size_t)NCLASS * G, sizeof(double));
	for (int c = 0; c < NCLASS; c++) {
		for (int j = 0; j < pool; j++) pick[j] = perm[j];
		rng_shuffle_int(&rm, pick, pool);
		for (int t = 0; t < M; t++) {
			int j = pick[t];
			double mag = MARK_LO + (MARK_HI - MARK_LO) * rng_uniform(&rm);
			double sign = rng_uniform(&rm) < 0.7 ? 1.0 : -1.0;
			m->delta[(size_t)c * G + j] = sign * mag;
			m->g[j].marker = 1;
		}
	}
	free(pick);
	free(perm);

	/* tissue composition: each class has its own mean activity of every program */
	Rng rp;
	rng_seed2(&rp, seed, 3);
	m->pmean = xmallocarray((size_t)NCLASS * NPROG, sizeof(double));
	for (int c = 0; c < NCLASS; c++)
		for (int k = 0; k < NPROG; k++)
			m->pmean[(size_t)c * NPROG + k] = PROG_MEAN_SD * rng_normal(&rp);

	/* tumour programs: on non-marker genes only (what a tumour adds, not what makes
	 * the organ), with a cancer-type mean activity */
	Rng rt;
	rng_seed2(&rt, seed, 4);
	m->tload = xcalloc((size_t)G * NTUM, sizeof(double));
	for (int j = 0; j < G; j++)
		for (int k = 0; k < NTUM; k++) {
			double u = rng_uniform(&rt), z = rng_normal(&rt);
			if (!m->g[j].marker && u < TUM_FRAC) m->tload[(size_t)j * NTUM + k] = TUM_LOAD * z;
		}
	m->tmean = xmallocarray((size_t)NCLASS * NTUM, sizeof(double));
	for (int c = 0; c < NCLASS; c++)
		for (int k = 0; k < NTUM; k++)
			m->tmean[(size_t)c * NTUM + k] = TUM_MEAN_SD * rng_normal(&rt);
}

static void build_cohort(const Model *m, Cohort *co, uint64_t seed)
{
	int G = m->G;
	Rng r;
	rng_seed2(&r, seed, (uint64_t)co->rng_stream);
	double S = m->shift;
	co->a = xcalloc((size_t)G, sizeof(double));
	co->b = xmallocarray((size_t)G, sizeof(double));
	co->present = xmallocarray((size_t)G, 1);
	for (int j = 0; j < G; j++) {
		co->b[j] = 1.0;
		/* draw every variate whatever the parameters, so streams stay aligned */
		double u = rng_uniform(&r), za = rng_normal(&r), zb = rng_normal(&r), um = rng_uniform(&r);
		if (u < co->frac) {
			co->a[j] = S * co->tau * za;
			co->b[j] = exp(S * co->rho * zb);
		}
		co->present[j] = !(um < (m->g[j].marker ? co->miss_mark : co->miss));
	}
	/* nuisance factors: factor h acts on the genes of program h mod NPROG (a
	 * protocol effect on a gene set that also carries class signal) and on a random
	 * 10% of the other genes, with its own loadings; and a scale per program */
	co->nload = xcalloc((size_t)G * NNUIS, sizeof(double));
	for (int j = 0; j < G; j++)
		for (int h = 0; h < NNUIS; h++) {
			double u = rng_uniform(&r), z = rng_normal(&r);
			int on = m->g[j].marker && u < NUIS_FRAC;
			if (on) co->nload[(size_t)j * NNUIS + h] = S * co->nuis_sd * z;
		}
	for (int k = 0; k < NPROG; k++) co->pscale[k] = exp(S * co->prog_sd * rng_normal(&r));
	/* gene-gene mixing: component k reads a random MIX_FRAC of the genes through
	 * unit-norm weights v and writes its value into another random MIX_FRAC of the
	 * genes with weights u ~ N(0, (S mix)^2) */
	co->mixu = xcalloc((size_t)G * NMIX, sizeof(double));
	co->mixv = xcalloc((size_t)G * NMIX, sizeof(double));
	for (int k = 0; k < NMIX; k++) {
		double nv = 0;
		for (int j = 0; j < G; j++) {
			double u1 = rng_uniform(&r), z1 = rng_normal(&r), u2 = rng_uniform(&r), z2 = rng_normal(&r);
			if (!m->g[j].marker) continue;
			if (u1 < MIX_FRAC) { co->mixv[(size_t)j * NMIX + k] = z1; nv += z1 * z1; }
			if (u2 < MIX_FRAC) co->mixu[(size_t)j * NMIX + k] = S * co->mix * z2;
		}
		nv = nv > 0 ? 1.0 / sqrt(nv) : 0;
		for (int j = 0; j < G; j++) co->mixv[(size_t)j * NMIX + k] *= nv;
	}
	/* class counts: a floor per class, the rest by the cohort's class weights
	 * (largest remainder) */
	co->counts = xcalloc(NCLASS, sizeof(int));
	int n = co->n;
	if (n == 0) return;
	int mn = n / 32 < 10 ? n / 32 : 10;
	double wsum = 0, wt[NCLASS];
	for (int c = 0; c < NCLASS; c++) wsum += wt[c] = pow(co->w[c], LABEL_TEMPER);
	int rest = n - NCLASS * mn, used = 0;
	double frac[NCLASS];
	for (int c = 0; c < NCLASS; c++) {
		double q = wt[c] / wsum * rest;
		co->counts[c] = mn + (int)floor(q);
		frac[c] = q - floor(q);
		used += (int)floor(q);
	}
	while (used < rest) {
		int best = 0;
		for (int c = 1; c < NCLASS; c++) if (frac[c] > frac[best]) best = c;
		co->counts[best]++;
		frac[best] = -1;
		used++;
	}
}

/* One sample of cohort co with class c: y (G) is the measured log2 expression,
 * tpm (G) its closure to TPM. extra (G or NULL) is added to y before the
 * nonlinear curve (the ARCHS4-like series effect). */
static void gen_profile(const Model *m, const Cohort *co, Rng *r, int c, const double *extra,
		double *y, double *tpm)
{
	int G = m->G;
	double S = m->shift;
	double f[NPROG], h[NNUIS];
	for (int k = 0; k < NPROG; k++)
		f[k] = co->pscale[k] * (m->pmean[(size_t)c * NPROG + k] + rng_normal(r));
	/* a cohort-specific extra spread of the program activities (drawn only when
	 * the cohort has one, so the other cohorts' streams do not move) */
	if (co->prog_noise != 0)
		for (int k = 0; k < NPROG; k++) f[k] += S * co->prog_noise * rng_normal(r);
	for (int k = 0; k < NNUIS; k++) h[k] = rng_normal(r);
	double q = S * (co->q_mean + co->q_sd * rng_normal(r));
	double kappa = clampd(S * co->kappa, -0.9, 0.9);
	double calpha = 0;
	int cc = 0;
	if (co->contam != 0) {
		double u = rng_uniform(r), a = rng_uniform(r);
		cc = (int)rng_below(r, NCLASS);
		if (u < co->contam && cc != c) calpha = clampd(S * co->contam_max, 0, 1) * a;
	}
	/* tumour program activities (drawn only in a cohort with tumour samples) */
	double t[NTUM] = { 0 };
	int tum = 0;
	if (co->tumour != 0) {
		tum = rng_uniform(r) < co->tumour;
		for (int k = 0; k < NTUM; k++) {
			double z = rng_normal(r);
			if (tum) t[k] = m->tmean[(size_t)c * NTUM + k] + TUM_SD * z;
		}
	}
	/* the true expression x, centred on the baseline, into y */
	for (int j = 0; j < G; j++) {
		const Gene *g = &m->g[j];
		double x = m->delta[(size_t)c * G + j] + g->sd * rng_normal(r);
		const double *L = &m->load[(size_t)j * NPROG];
		for (int k = 0; k < NPROG; k++) x += L[k] * f[k];
		if (tum) {
			const double *T = &m->tload[(size_t)j * NTUM];
			for (int k = 0; k < NTUM; k++) x += S * T[k] * t[k];
		}
		y[j] = x;
	}
	/* gene-gene mixing: s_k = sum_j v_jk x_j, added as u_gk s_k */
	double mixs[NMIX] = { 0 };
	if (co->mix != 0)
		for (int j = 0; j < G; j++) {
			const double *V = &co->mixv[(size_t)j * NMIX];
			for (int k = 0; k < NMIX; k++) mixs[k] += V[k] * y[j];
		}
	double sum = 0;
	for (int j = 0; j < G; j++) {
		const Gene *g = &m->g[j];
		double x = y[j];
		if (co->mix != 0) {
			const double *U = &co->mixu[(size_t)j * NMIX];
			for (int k = 0; k < NMIX; k++) x += U[k] * mixs[k];
		}
		/* cohort measurement: gene-wise affine batch effect around the baseline,
		 * nuisance factors, degradation along the length covariate, series effect,
		 * nonlinear curve */
		double v = g->base + co->a[j] + co->b[j] * x + 0.4 * q * g->len;
		const double *N = &co->nload[(size_t)j * NNUIS];
		for (int k = 0; k < NNUIS; k++) v += N[k] * h[k];
		if (extra) v += extra[j];
		if (calpha > 0) {
			/* cross-tissue contamination: a share calpha of the RNA comes from
			 * tissue cc (its mean profile), mixed on the linear scale */
			double xc = m->delta[(size_t)cc * G + j];
			const double *L = &m->load[(size_t)j * NPROG];
			for (int k = 0; k < NPROG; k++) xc += L[k] * m->pmean[(size_t)cc * NPROG + k];
			double u = g->base + co->a[j] + co->b[j] * xc;
			v = log2((1.0 - calpha) * exp2(v) + calpha * exp2(u));
		}
		v = v - kappa * log2(1.0 + exp2(v - co->knee));
		y[j] = v;
		tpm[j] = exp2(v);
		sum += tpm[j];
	}
	for (int j = 0; j < G; j++) tpm[j] *= 1e6 / sum;
}

static int *class_order(const Cohort *co, Rng *r)
{
	int *lab = xmallocarray((size_t)co->n, sizeof(int)), k = 0;
	for (int c = 0; c < NCLASS; c++)
		for (int t = 0; t < co->counts[c]; t++) lab[k++] = c;
	rng_shuffle_int(r, lab, co->n);
	return lab;
}

static void write_tcga(const Model *m, const Cohort *co, uint64_t seed, const char *dir, int gz)
{
	int G = m->G;
	Rng r;
	rng_seed2(&r, seed, 100);
	int *lab = class_order(co, &r);
	char tss[NCLASS][2][3];
	for (int c = 0; c < NCLASS; c++)
		for (int t = 0; t < 2; t++)
			code36(tss[c][t], rng_below(&r, 1296), 2, 0, 0);
	unsigned long salt = rng_below(&r, 1679616);
	Out o;
	out_open(&o, dir, "tcga.csv", gz);
	out_str(&o, "sample_id,tissue");
	char t[40];
	for (int j = 0; j < G; j++) {
		if (!co->present[j]) continue;
		snprintf(t, sizeof t, ",%s.%d", m->g[j].id, m->g[j].ver);
		out_str(&o, t);
	}
	out_char(&o, '\n');
	double *y = xmallocarray((size_t)G, sizeof(double)), *tpm = xmallocarray((size_t)G, sizeof(double));
	for (int i = 0; i < co->n; i++) {
		int c = lab[i];
		char part[8];
		code36(part, (unsigned long)i, 4, salt, 0);
		snprintf(t, sizeof t, "TCGA-%s-%s-01A,", tss[c][rng_below(&r, 2)], part);
		out_str(&o, t);
		out_str(&o, CLASSES[c]);
		gen_profile(m, co, &r, c, NULL, y, tpm);
		for (int j = 0; j < G; j++) {
			if (!co->present[j]) continue;
			out_char(&o, ',');
			out_fixed(&o, log2(tpm[j] + 1.0), 1);
		}
		out_char(&o, '\n');
	}
	out_close(&o);
	free(y);
	free(tpm);
	free(lab);
}

static void write_archs4(const Model *m, const Cohort *co, uint64_t seed, const char *dir, int gz)
{
	int G = m->G;
	Rng r;
	rng_seed2(&r, seed, 200);
	int *lab = class_order(co, &r);
	/* series: 2 to 4 per class, each with its own gene-wise log-scale effect */
	int first[NCLASS + 1], ns = 0;
	for (int c = 0; c < NCLASS; c++) { first[c] = ns; ns += 2 + (int)rng_below(&r, 3); }
	first[NCLASS] = ns;
	long *gse = xmallocarray((size_t)ns, sizeof(long));
	double *ser = xmallocarray((size_t)ns * G, sizeof(double));
	long acc = 20000 + (long)rng_below(&r, 10000);
	for (int s = 0; s < ns; s++) {
		acc += 1 + (long)rng_below(&r, 2000);
		gse[s] = acc;
		for (int j = 0; j < G; j++) ser[(size_t)s * G + j] = m->shift * SERIES_SD * rng_normal(&r);
	}
	/* another gene order */
	int *ord = xmallocarray((size_t)G, sizeof(int));
	for (int j = 0; j < G; j++) ord[j] = j;
	rng_shuffle_int(&r, ord, G);
	unsigned long salt = rng_below(&r, 10000000);
	Out o;
	out_open(&o, dir, "archs4.tsv", gz);
	out_str(&o, "sample_id\ttissue\tseries");
	for (int t = 0; t < G; t++) {
		int j = ord[t];
		if (!co->present[j]) continue;
		out_char(&o, '\t');
		out_str(&o, m->g[j].id);
	}
	out_char(&o, '\n');
	double *y = xmallocarray((size_t)G, sizeof(double)), *tpm = xmallocarray((size_t)G, sizeof(double));
	double reads0 = 30.0 * G; /* reads on these genes: reads0 .. 10 x reads0 */
	char t[48];
	for (int i = 0; i < co->n; i++) {
		int c = lab[i];
		int s = first[c] + (int)rng_below(&r, (uint64_t)(first[c + 1] - first[c]));
		char num[8];
		code36(num, (unsigned long)i, 7, salt, 1);
		snprintf(t, sizeof t, "GSM%s\t%s\tGSE%ld", num, CLASSES[c], gse[s]);
		out_str(&o, t);
		gen_profile(m, co, &r, c, &ser[(size_t)s * G], y, tpm);
		double lib = reads0 * pow(10.0, rng_uniform(&r));
		for (int tt = 0; tt < G; tt++) {
			int j = ord[tt];
			/* gamma-Poisson: mean lib * proportion, dispersion per gene;
			 * the draws happen for absent genes too (the stream stays aligned) */
			double mu = lib * tpm[j] * 1e-6, phi = m->g[j].disp;
			double lam = mu * rng_gamma(&r, 1.0 / phi) * phi;
			uint64_t k = rng_poisson(&r, lam);
			if (!co->present[j]) continue;
			out_char(&o, '\t');
			out_ulong(&o, (unsigned long)k);
		}
		out_char(&o, '\n');
	}
	out_close(&o);
	free(y);
	free(tpm);
	free(ord);
	free(ser);
	free(gse);
	free(lab);
}

typedef struct { char id[40]; int c; } GtexSample;

static int cmp_sample(const void *a, const void *b)
{
	return strcmp(((const GtexSample *)a)->id, ((const GtexSample *)b)->id);
}

static void write_gtex(const Model *m, const Cohort *co, uint64_t seed, const char *dir, int gz)
{
	int G = m->G, n = co->n;
	Rng r;
	rng_seed2(&r, seed, 300);
	int *lab = class_order(co, &r);
	unsigned long salt1 = rng_below(&r, 60466176), salt2 = rng_below(&r, 60466176);
	GtexSample *smp = xmallocarray((size_t)n, sizeof(GtexSample));
	float *tpmall = xmallocarray((size_t)n * G, sizeof(float));
	double *y = xmallocarray((size_t)G, sizeof(double)), *tpm = xmallocarray((size_t)G, sizeof(double));
	for (int i = 0; i < n; i++) {
		char donor[8], sm[8];
		code36(donor, (unsigned long)i, 5, salt1, 0);
		code36(sm, (unsigned long)i, 5, salt2, 0);
		snprintf(smp[i].id, sizeof smp[i].id, "GTEX-%s-%04d-SM-%s", donor,
			1 + (int)rng_below(&r, 3000), sm);
		smp[i].c = lab[i];
		gen_profile(m, co, &r, lab[i], NULL, y, tpm);
		for (int j = 0; j < G; j++) tpmall[(size_t)i * G + j] = (float)tpm[j];
	}
	int np = 0;
	for (int j = 0; j < G; j++) np += co->present[j];
	Out o;
	out_open(&o, dir, "gtex.gct", gz);
	char t[64];
	snprintf(t, sizeof t, "#1.2\n%d\t%d\nName\tDescription", np, n);
	out_str(&o, t);
	for (int i = 0; i < n; i++) { out_char(&o, '\t'); out_str(&o, smp[i].id); }
	out_char(&o, '\n');
	for (int j = 0; j < G; j++) {
		if (!co->present[j]) continue;
		snprintf(t, sizeof t, "%s.%d\t%s", m->g[j].id, m->g[j].ver_gtex, m->g[j].sym);
		out_str(&o, t);
		for (int i = 0; i < n; i++) {
			out_char(&o, '\t');
			out_sig3(&o, tpmall[(size_t)i * G + j]);
		}
		out_char(&o, '\n');
	}
	out_close(&o);
	/* labels in another order (sorted by id): a consumer must join by id */
	qsort(smp, (size_t)n, sizeof *smp, cmp_sample);
	out_open(&o, dir, "gtex_labels.csv", 0);
	out_str(&o, "sample_id,tissue\n");
	for (int i = 0; i < n; i++) {
		out_str(&o, smp[i].id);
		out_char(&o, ',');
		out_str(&o, CLASSES[smp[i].c]);
		out_char(&o, '\n');
	}
	out_close(&o);
	free(y);
	free(tpm);
	free(tpmall);
	free(smp);
	free(lab);
}

static void write_genes(const Model *m, const char *dir)
{
	Out o;
	out_open(&o, dir, "genes.tsv", 0);
	out_str(&o, "ensembl_id\tsymbol\n");
	for (int j = 0; j < m->G; j++) {
		out_str(&o, m->g[j].id);
		out_char(&o, '\t');
		out_str(&o, m->g[j].sym);
		out_char(&o, '\n');
	}
	out_close(&o);
}

/* the planted class markers: class,gene (Ensembl id without version),symbol,effect (log2) */
static void write_markers(const Model *m, const char *path)
{
	AtomicFile af;
	FILE *fp = atomic_open(&af, path);
	fputs("class,gene,symbol,effect\n", fp);
	for (int c = 0; c < NCLASS; c++)
		for (int j = 0; j < m->G; j++) {
			double e = m->delta[(size_t)c * m->G + j];
			if (e != 0) fprintf(fp, "%s,%s,%s,%.4f\n", CLASSES[c], m->g[j].id, m->g[j].sym, e);
		}
	atomic_commit(&af);
}

static void help(void)
{
	printf(
"Usage: gen-samples --out DIR [OPTIONS]\n"
"Generate synthetic TCGA-like (source), ARCHS4-like and GTEx-like (target)\n"
"expression cohorts with a shared gene universe, 16 organ classes, label shift\n"
"and a cohort batch effect (see samples/README.md for the model).\n"
"Writes DIR/tcga.csv.gz, DIR/archs4.tsv.gz, DIR/gtex.gct.gz, DIR/gtex_labels.csv\n"
"and DIR/genes.tsv.\n"
"\n"
"  -o, --out DIR      output folder, created if missing (required)\n"
"  -s, --seed N       random seed (default 1)\n"
"  -g, --genes N      genes in the universe, 100..60000 (default 2000)\n"
"      --tcga N       TCGA-like samples, 0 (skip) or 32..1000000 (default 1200)\n"
"      --archs4 N     ARCHS4-like samples, 0 (skip) or 32..1000000 (default 1200)\n"
"      --gtex N       GTEx-like samples, 0 (skip) or 32..1000000 (default 500)\n"
"      --samples N    set all three cohort sizes to N\n"
"      --shift S      strength of the cohort shift, 0..5; 0 leaves only label\n"
"                     shift and file-format differences (default 1)\n"
"      --no-gzip      write tcga.csv, archs4.tsv, gtex.gct uncompressed\n"
"      --markers-out FILE  also write the planted class markers as CSV\n"
"                     class,gene,symbol,effect (gene: Ensembl id without version;\n"
"                     effect: log2 shift in that class) (default: not written)\n"
"  -q, --quiet        no summary on stderr\n"
"  -h, --help         this help\n"
"\n"
"Exit status: 0 ok, 1 write error, 2 usage error.\n");
}

static int cohort_size(const char *opt, const char *s)
{
	long v = parse_long(opt, s, 0, 1000000);
	if (v > 0 && v < 32) usage_error("%s: %s: must be 0 or at least 32", opt, s);
	return (int)v;
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	const char *dir = NULL;
	uint64_t seed = 1;
	int G = 2000, gz = 1, qflag = 0;
	int ntcga = 1200, narchs4 = 1200, ngtex = 500;
	double shift = 1.0;
	enum { O_TCGA = 256, O_ARCHS4, O_GTEX, O_SAMPLES, O_SHIFT, O_NOGZ, O_MARKERS };
	const char *markers = NULL;
	static const struct option opts[] = {
		{ "out", required_argument, 0, 'o' },
		{ "seed", required_argument, 0, 's' },
		{ "genes", required_argument, 0, 'g' },
		{ "tcga", required_argument, 0, O_TCGA },
		{ "archs4", required_argument, 0, O_ARCHS4 },
		{ "gtex", required_argument, 0, O_GTEX },
		{ "samples", required_argument, 0, O_SAMPLES },
		{ "shift", required_argument, 0, O_SHIFT },
		{ "no-gzip", no_argument, 0, O_NOGZ },
		{ "markers-out", required_argument, 0, O_MARKERS },
		{ "quiet", no_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, ":o:s:g:qh", opts, NULL)) != -1) {
		switch (ch) {
		case 'o': dir = optarg; break;
		case 's': seed = (uint64_t)parse_long("--seed", optarg, 0, 2147483647L); break;
		case 'g': G = (int)parse_long("--genes", optarg, 100, 60000); break;
		case O_TCGA: ntcga = cohort_size("--tcga", optarg); break;
		case O_ARCHS4: narchs4 = cohort_size("--archs4", optarg); break;
		case O_GTEX: ngtex = cohort_size("--gtex", optarg); break;
		case O_SAMPLES: ntcga = narchs4 = ngtex = cohort_size("--samples", optarg); break;
		case O_SHIFT: shift = parse_double("--shift", optarg, 0.0, 5.0); break;
		case O_NOGZ: gz = 0; break;
		case O_MARKERS: markers = optarg; break;
		case 'q': qflag = 1; break;
		case 'h': help(); return 0;
		case ':': usage_error("%s: missing argument", argv[optind - 1]);
		default:
			if (optopt) usage_error("-%c: unknown option", optopt);
			usage_error("%s: unknown option", argv[optind - 1]);
		}
	}
	if (optind < argc) usage_error("%s: unexpected argument", argv[optind]);
	if (!dir) usage_error("--out DIR is required");
	if (mkdir(dir, 0777) != 0 && errno != EEXIST) die("%s: cannot create folder:", dir);
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) die("%s: not a folder", dir);
	quiet = qflag;
	double t0 = now_seconds();

	Model m = { .G = G, .shift = shift };
	build_genes(&m, seed);
	/* cohort parameters (documented in samples/README.md); TCGA-like is the
	 * reference measurement: no gene-wise batch effect, no curve */
	Cohort tcga = { .name = "tcga", .n = ntcga, .w = W_TCGA, .rng_stream = 10,
		.tau = 0, .rho = 0, .frac = 0, .q_mean = 0, .q_sd = 0.15,
		.kappa = 0, .knee = 6, .miss = 0.01, .nuis_sd = 0.15, .prog_sd = 0, .mix = 0,
		.tumour = TCGA_TUMOUR };
	Cohort archs4 = { .name = "archs4", .n = narchs4, .w = W_ARCHS4, .rng_stream = 20,
		.tau = 0.4, .rho = 0.125, .frac = 0.6, .q_mean = 0.25, .q_sd = ARCHS4_QSD,
		.kappa = -0.15, .knee = 5, .miss = 0.03, .nuis_sd = ARCHS4_NUIS, .prog_sd = ARCHS4_PROG,
		.prog_noise = ARCHS4_PROG_NOISE, .mix = ARCHS4_MIX, .tumour = ARCHS4_TUMOUR };
	Cohort gtex = { .name = "gtex", .n = ngtex, .w = W_GTEX, .rng_stream = 30,
		.tau = GTEX_TAU, .rho = 0.15, .frac = GTEX_FRAC, .q_mean = 0.5, .q_sd = GTEX_QSD,
		.kappa = 0.2, .knee = 4, .miss = 0.005, .miss_mark = GTEX_MISS_MARKERS, .nuis_sd = GTEX_NUIS,
		.prog_sd = GTEX_PROG, .prog_noise = GTEX_PROG_NOISE, .mix = GTEX_MIX,
		.contam = GTEX_CONTAM, .contam_max = GTEX_CONTAM_MAX, .tumour = GTEX_TUMOUR };
	build_cohort(&m, &tcga, seed);
	build_cohort(&m, &archs4, seed);
	build_cohort(&m, &gtex, seed);

	write_genes(&m, dir);
	if (markers) write_markers(&m, markers);
	if (ntcga) write_tcga(&m, &tcga, seed, dir, gz);
	if (narchs4) write_archs4(&m, &archs4, seed, dir, gz);
	if (ngtex) write_gtex(&m, &gtex, seed, dir, gz);
	info("%d genes, tcga %d, archs4 %d, gtex %d samples, seed %lu, shift %g: %.1fs",
		G, ntcga, narchs4, ngtex, (unsigned long)seed, shift, now_seconds() - t0);

	Cohort *all[3] = { &tcga, &archs4, &gtex };
	for (int k = 0; k < 3; k++) {
		free(all[k]->a);
		free(all[k]->nload);
		free(all[k]->mixu);
		free(all[k]->mixv);
		free(all[k]->b);
		free(all[k]->present);
		free(all[k]->counts);
	}
	free(m.g);
	free(m.delta);
	free(m.load);
	free(m.pmean);
	free(m.tload);
	free(m.tmean);
	return 0;
}
