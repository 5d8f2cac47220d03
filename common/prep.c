/* prep.c: see prep.h and docs/NORMALIZE.md. */
#include "prep.h"
#include "util.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- StrMap: open addressing, FNV-1a ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ULL; }
	return h;
}

void sm_init(StrMap *m, size_t hint)
{
	m->cap = 64;
	while (m->cap < hint * 2) m->cap *= 2;
	m->n = 0;
	m->keys = xcalloc(m->cap, sizeof(char *));
	m->vals = xcalloc(m->cap, sizeof(int));
}

void sm_free(StrMap *m)
{
	for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof *m);
}

int sm_get(const StrMap *m, const char *key)
{
	size_t i = hash_str(key) & (m->cap - 1);
	while (m->keys[i]) {
		if (strcmp(m->keys[i], key) == 0) return m->vals[i];
		i = (i + 1) & (m->cap - 1);
	}
	return -1;
}

int sm_put(StrMap *m, const char *key, int val)
{
	if ((m->n + 1) * 2 > m->cap) {
		StrMap b;
		sm_init(&b, m->cap);
		for (size_t i = 0; i < m->cap; i++)
			if (m->keys[i]) {
				size_t j = hash_str(m->keys[i]) & (b.cap - 1);
				while (b.keys[j]) j = (j + 1) & (b.cap - 1);
				b.keys[j] = m->keys[i];
				b.vals[j] = m->vals[i];
				b.n++;
			}
		free(m->keys);
		free(m->vals);
		*m = b;
	}
	size_t i = hash_str(key) & (m->cap - 1);
	while (m->keys[i]) {
		if (strcmp(m->keys[i], key) == 0) return m->vals[i];
		i = (i + 1) & (m->cap - 1);
	}
	m->keys[i] = xstrdup(key);
	m->vals[i] = val;
	m->n++;
	return val;
}

char *gene_key(const char *id, int ignore_case)
{
	char *k = xstrdup(id);
	/* Ensembl: ENS + capitals + digits + '.' + digits */
	if (strncmp(k, "ENS", 3) == 0) {
		char *p = k + 3;
		while (*p >= 'A' && *p <= 'Z') p++;
		char *d = p;
		while (*p >= '0' && *p <= '9') p++;
		if (p > d && *p == '.' && p[1]) {
			char *q = p + 1;
			while (*q >= '0' && *q <= '9') q++;
			if (*q == 0) *p = 0;
		}
	}
	if (ignore_case)
		for (char *p = k; *p; p++) *p = (char)tolower((unsigned char)*p);
	return k;
}

/* ---- stats ---- */

int prep_needs_fit(const PrepOpts *o)
{
	return o->drop_zero || o->quantile || o->zscore || o->top_variable > 0 || o->missing_mean || o->combat;
}

static double *dzeros(int n) { return xcalloc((size_t)(n ? n : 1), sizeof(double)); }

void stats_init(Stats *s, const PrepOpts *o, char *const *genes, int ngenes)
{
	memset(s, 0, sizeof *s);
	s->o = *o;
	s->ngenes = ngenes;
	s->genes = xmallocarray((size_t)ngenes + 1, sizeof(char *));
	for (int i = 0; i < ngenes; i++) s->genes[i] = xstrdup(genes[i]);
	s->nsel = ngenes;
	s->sel = xmallocarray((size_t)ngenes + 1, sizeof(int));
	for (int i = 0; i < ngenes; i++) s->sel[i] = i;
}

static void stats_alloc_acc(Stats *s)
{
	int w = s->ngenes;
	s->count = dzeros(w); s->sum = dzeros(w); s->sumsq = dzeros(w);
	s->nonzero = dzeros(w); s->raw_sum = dzeros(w); s->raw_count = dzeros(w);
	s->fitted = 1;
}

void stats_free(Stats *s)
{
	for (int i = 0; i < s->ngenes; i++) free(s->genes[i]);
	free(s->genes); free(s->sel);
	free(s->count); free(s->sum); free(s->sumsq); free(s->nonzero);
	free(s->raw_sum); free(s->raw_count); free(s->qref); free(s->mean); free(s->sd);
	if (s->combat) { combat_free(s->combat); free(s->combat); }
	free(s->combat_column);
	blob_free(&s->before);
	memset(s, 0, sizeof *s);
}

typedef struct { float v; int i; } VI;

static int cmp_vi(const void *a, const void *b)
{
	const VI *p = a, *q = b;
	if (p->v < q->v) return -1;
	if (p->v > q->v) return 1;
	return p->i - q->i;
}

size_t quantile_scratch(int w) { return sizeof(VI) * (size_t)(w ? w : 1); }

/* value of the sorted reference ref (w) at rank k of m ranks (linear interpolation) */
static double ref_at(const double *ref, int w, int k, int m)
{
	if (m == w) return ref[k];
	if (m <= 1 || w == 1) return ref[(w - 1) / 2] * 0.5 + ref[w / 2] * 0.5;
	double pos = (double)k * (double)(w - 1) / (double)(m - 1);
	int a = (int)pos;
	if (a >= w - 1) return ref[w - 1];
	double t = pos - a;
	return ref[a] * (1 - t) + ref[a + 1] * t;
}

void quantile_row(float *x, int w, const double *ref, void *scratch)
{
	VI *v = scratch;
	int m = 0;
	for (int i = 0; i < w; i++)
		if (!isnan(x[i])) { v[m].v = x[i]; v[m].i = i; m++; }
	if (m == 0) return;
	qsort(v, (size_t)m, sizeof *v, cmp_vi);
	for (int a = 0; a < m;) {
		int b = a + 1;
		while (b < m && v[b].v == v[a].v) b++;
		/* ties get the mean of their ranks' reference values */
		double acc = 0;
		for (int k = a; k < b; k++) acc += ref_at(ref, w, k, m);
		float val = (float)(acc / (b - a));
		for (int k = a; k < b; k++) x[v[k].i] = val;
		a = b;
	}
}

int quantile_ref_add(double *acc, const float *x, int w, void *scratch)
{
	VI *v = scratch;
	int m = 0;
	for (int i = 0; i < w; i++)
		if (!isnan(x[i])) { v[m].v = x[i]; v[m].i = i; m++; }
	if (m == 0) return 0;
	qsort(v, (size_t)m, sizeof *v, cmp_vi);
	for (int k = 0; k < w; k++) {
		if (m == w) { acc[k] += v[k].v; continue; }
		double pos = w == 1 ? (m - 1) * 0.5 : (double)k * (double)(m - 1) / (double)(w - 1);
		int a = (int)pos;
		if (a >= m - 1) { acc[k] += v[m - 1].v; continue; }
		double t = pos - a;
		acc[k] += v[a].v * (1 - t) + v[a + 1].v * t;
	}
	return 1;
}

double cpm_row(float *x, int g)
{
	double lib = 0;
	for (int i = 0; i < g; i++)
		if (!isnan(x[i])) lib += x[i];
	if (lib > 0) {
		double f = 1e6 / lib;
		for (int i = 0; i < g; i++) x[i] = (float)(x[i] * f);
	}
	return lib;
}

/* log2f(k + 1) for the small integers of count tables, the same values as log2f */
#define LOG2_TAB 65536
static float *log2_tab;

long log2p1(float *x, long n)
{
	if (!log2_tab) {
		float *t = xmallocarray(LOG2_TAB, sizeof(float));
		for (int k = 0; k < LOG2_TAB; k++) t[k] = log2f((float)k + 1.0f);
		log2_tab = t;
	}
	long bad = -1;
	for (long i = 0; i < n; i++) {
		float v = x[i];
		if (v >= 0.0f && v < (float)LOG2_TAB) {
			int k = (int)v;
			if ((float)k == v) { x[i] = log2_tab[k]; continue; }
		}
		if (v <= -1.0f && bad < 0) bad = i;
		x[i] = log2f(v + 1.0f);
	}
	return bad;
}

typedef struct { double v; int i; } DI;

static int cmp_di_desc(const void *a, const void *b)
{
	const DI *p = a, *q = b;
	if (p->v > q->v) return -1;
	if (p->v < q->v) return 1;
	return p->i - q->i;
}

static int cmp_int(const void *a, const void *b)
{
	int p = *(const int *)a, q = *(const int *)b;
	return (p > q) - (p < q);
}

void top_n(const double *v, int w, int n, int *out)
{
	DI *d = xmallocarray((size_t)(w ? w : 1), sizeof *d);
	for (int i = 0; i < w; i++) { d[i].v = isnan(v[i]) ? -1 : v[i]; d[i].i = i; }
	qsort(d, (size_t)w, sizeof *d, cmp_di_desc);
	if (n > w) n = w;
	for (int i = 0; i < n; i++) out[i] = d[i].i;
	qsort(out, (size_t)n, sizeof *out, cmp_int);
	free(d);
}

static void gene_moments(const Stats *s, int g, double *mean, double *var)
{
	double c = s->count[g];
	if (c <= 0) { *mean = 0; *var = 0; return; }
	double m = s->sum[g] / c;
	double v = s->sumsq[g] / c - m * m;
	*mean = m;
	*var = v > 0 ? v : 0;
}

void stats_finalize(Stats *s)
{
	int w = s->ngenes;
	free(s->sel); free(s->mean); free(s->sd);
	s->mean = s->sd = NULL;
	s->sel = xmallocarray((size_t)w + 1, sizeof(int));
	if (s->o.top_variable > 0 && s->o.top_variable < w) {
		double *var = dzeros(w);
		for (int g = 0; g < w; g++) { double m; gene_moments(s, g, &m, &var[g]); }
		top_n(var, w, s->o.top_variable, s->sel);
		s->nsel = s->o.top_variable;
		free(var);
	} else {
		s->nsel = w;
		for (int g = 0; g < w; g++) s->sel[g] = g;
	}
	s->mean = dzeros(s->nsel);
	s->sd = dzeros(s->nsel);
	for (int j = 0; j < s->nsel; j++) {
		double m, v;
		gene_moments(s, s->sel[j], &m, &v);
		s->mean[j] = m;
		s->sd[j] = sqrt(v);
	}
}

void stats_fit(Stats *s, float *x, int n, const double *raw_sum, const double *raw_count)
{
	stats_fit_prepare(s, x, n, raw_sum, raw_count);
	stats_fit_finish(s, x, n);
}

void stats_fit_prepare(Stats *s, float *x, int n, const double *raw_sum, const double *raw_count)
{
	int w = s->ngenes;
	stats_alloc_acc(s);
	s->n = n;
	for (int i = 0; i < n; i++) {
		const float *row = x + (size_t)i * w;
		for (int g = 0; g < w; g++)
			if (!isnan(row[g]) && row[g] != 0) s->nonzero[g] += 1;
	}
	if (raw_sum)
		for (int g = 0; g < w; g++) { s->raw_sum[g] = raw_sum[g]; s->raw_count[g] = raw_count[g]; }
	if (s->o.drop_zero) {
		/* compact genes and columns in place (rows keep stride w until rewritten) */
		int *keep = xmallocarray((size_t)w + 1, sizeof(int));
		int k = 0;
		for (int g = 0; g < w; g++)
			if (s->nonzero[g] > 0) keep[k++] = g;
			else free(s->genes[g]);
		for (int j = 0; j < k; j++) {
			int g = keep[j];
			s->genes[j] = s->genes[g];
			s->nonzero[j] = s->nonzero[g];
			s->raw_sum[j] = s->raw_sum[g];
			s->raw_count[j] = s->raw_count[g];
		}
		for (int i = 0; i < n; i++) {
			const float *src = x + (size_t)i * w;
			float *dst = x + (size_t)i * k;
			for (int j = 0; j < k; j++) dst[j] = src[keep[j]];
		}
		free(keep);
		s->ngenes = w = k;
	}
	if (s->o.quantile) {
		s->qref = dzeros(w);
		void *scr = xmalloc(quantile_scratch(w));
		double m = 0;
		for (int i = 0; i < n; i++) m += quantile_ref_add(s->qref, x + (size_t)i * w, w, scr);
		for (int g = 0; g < w; g++) s->qref[g] = m > 0 ? s->qref[g] / m : 0;
		s->qn = m;
		for (int i = 0; i < n; i++) quantile_row(x + (size_t)i * w, w, s->qref, scr);
		free(scr);
	}
}

void stats_fit_finish(Stats *s, const float *x, int n)
{
	int w = s->ngenes;
	for (int i = 0; i < n; i++) {
		const float *row = x + (size_t)i * w;
		for (int g = 0; g < w; g++) {
			double v = row[g];
			if (isnan(v)) continue;
			s->count[g] += 1;
			s->sum[g] += v;
			s->sumsq[g] += v * v;
		}
	}
	stats_finalize(s);
}

static int same_opts(const PrepOpts *a, const PrepOpts *b)
{
	return a->drop_zero == b->drop_zero && a->cpm == b->cpm && a->log2 == b->log2 &&
	       a->quantile == b->quantile && a->zscore == b->zscore && a->top_variable == b->top_variable &&
	       a->missing_mean == b->missing_mean && a->combat == b->combat;
}

void stats_merge(Stats *out, Stats *const *in, char *const *names, int k)
{
	ASSERT(k >= 1);
	StrMap idx;
	int cap = in[0]->ngenes + 16, w = 0;
	char **genes = xmallocarray((size_t)cap, sizeof(char *));
	sm_init(&idx, (size_t)cap);
	int differ = 0;
	for (int c = 0; c < k; c++) {
		if (!in[c]->fitted) die("%s: statistics hold no fitted values to merge", names[c]);
		if (in[c]->o.combat)
			die("%s: statistics with ComBat cannot be merged (ComBat is fitted on the data whole)", names[c]);
		if (!same_opts(&in[c]->o, &in[0]->o))
			die("%s: fitted with other transforms than %s; cannot merge", names[c], names[0]);
		if (!pre_equal(&in[c]->before, &in[0]->before)) {
			char *a = pre_describe(&in[c]->before), *b = pre_describe(&in[0]->before);
			die("%s: fitted on data prepared by %s, %s on data prepared by %s; cannot merge", names[c], a, names[0], b);
		}
		if (c > 0 && in[c]->ngenes != in[0]->ngenes) differ = 1;
		for (int g = 0; g < in[c]->ngenes; g++) {
			if (sm_get(&idx, in[c]->genes[g]) >= 0) continue;
			if (c > 0) differ = 1;
			if (w == cap) { cap *= 2; genes = xrealloc(genes, sizeof(char *) * (size_t)cap); }
			sm_put(&idx, in[c]->genes[g], w);
			genes[w++] = in[c]->genes[g];
		}
	}
	if (differ && in[0]->o.quantile)
		die("%s: gene list differs from %s; quantile references can only be merged over the same genes (fit every chunk with the same --genes)", names[k - 1], names[0]);
	if (differ && !in[0]->o.drop_zero)
		die("%s: gene list differs from %s; fit every chunk with the same --genes", names[k - 1], names[0]);
	stats_init(out, &in[0]->o, genes, w);
	free(genes);
	stats_alloc_acc(out);
	if (in[0]->o.quantile) out->qref = dzeros(w);
	int *seen = xmallocarray((size_t)w + 1, sizeof(int));
	for (int c = 0; c < k; c++) {
		const Stats *s = in[c];
		out->n += s->n;
		for (int g = 0; g < w; g++) seen[g] = 0;
		for (int g = 0; g < s->ngenes; g++) {
			int j = sm_get(&idx, s->genes[g]);
			seen[j] = 1;
			out->count[j] += s->count[g];
			out->sum[j] += s->sum[g];
			out->sumsq[j] += s->sumsq[g];
			out->nonzero[j] += s->nonzero[g];
			out->raw_sum[j] += s->raw_sum[g];
			out->raw_count[j] += s->raw_count[g];
			if (out->qref) out->qref[j] += s->qref[g] * s->qn;
		}
		/* a gene this chunk dropped was zero in all of its samples */
		for (int g = 0; g < w; g++)
			if (!seen[g]) { out->count[g] += s->n; out->raw_count[g] += s->n; }
		out->qn += s->qn;
	}
	if (out->qref)
		for (int g = 0; g < w; g++) out->qref[g] = out->qn > 0 ? out->qref[g] / out->qn : 0;
	free(seen);
	sm_free(&idx);
	stats_finalize(out);
	if (in[0]->before.len) blob_copy(&out->before, &in[0]->before);
}

/* ---- serialisation ---- */

static void put_f64(SWriter *w, const char *key, const double *v, int n)
{
	int64_t sh[1] = { n };
	sw_key(w, key);
	sw_tensor(w, DT_F64, 1, sh, v);
}

void stats_to_blob(const Stats *s, Blob *b)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m) die("out of memory");
	SWriter w;
	sw_init(&w, m, "preprocessing");
	const PrepOpts *o = &s->o;
	const char *steps[7];
	int ns = 0;
	if (o->drop_zero) steps[ns++] = "drop-zero";
	if (o->cpm) steps[ns++] = "cpm";
	if (o->log2) steps[ns++] = "log2";
	if (o->quantile) steps[ns++] = "quantile";
	if (o->combat) steps[ns++] = "combat";
	if (o->top_variable > 0) steps[ns++] = "top-variable";
	if (o->zscore) steps[ns++] = "zscore";
	int with_combat = o->combat && s->combat && s->combat->fitted;
	sw_map(&w, (s->fitted ? 19 : 8) + (o->combat ? 1 : 0) + with_combat + (s->before.len ? 1 : 0));
	sw_key(&w, "version"); sw_int(&w, 1);
	sw_key(&w, "steps"); sw_strs(&w, (char *const *)steps, ns);
	sw_key(&w, "top_variable"); sw_int(&w, o->top_variable);
	sw_key(&w, "missing"); sw_str(&w, o->missing_mean ? "mean" : "error");
	sw_key(&w, "fill"); sw_double(&w, o->fill);
	sw_key(&w, "genes"); sw_strs(&w, s->genes, s->ngenes);
	int64_t sh[1] = { s->nsel };
	sw_key(&w, "selected");
	int32_t *sel = xmallocarray((size_t)s->nsel + 1, sizeof(int32_t));
	for (int i = 0; i < s->nsel; i++) sel[i] = s->sel[i];
	sw_tensor(&w, DT_I32, 1, sh, sel);
	free(sel);
	sw_key(&w, "fitted"); sw_bool(&w, s->fitted);
	if (o->combat) { sw_key(&w, "combat_column"); sw_str(&w, s->combat_column ? s->combat_column : "domain"); }
	if (with_combat) {
		Blob cb;
		combat_to_blob(s->combat, &cb);
		sw_key(&w, "combat");
		sw_blob(&w, &cb);
		blob_free(&cb);
	}
	if (s->before.len) {
		sw_key(&w, "before");
		sw_blob(&w, &s->before);
	}
	if (s->fitted) {
		int g = s->ngenes;
		sw_key(&w, "n"); sw_double(&w, s->n);
		put_f64(&w, "count", s->count, g);
		put_f64(&w, "sum", s->sum, g);
		put_f64(&w, "sumsq", s->sumsq, g);
		put_f64(&w, "nonzero", s->nonzero, g);
		put_f64(&w, "raw_sum", s->raw_sum, g);
		put_f64(&w, "raw_count", s->raw_count, g);
		sw_key(&w, "quantile_n"); sw_double(&w, s->qn);
		sw_key(&w, "quantile_ref");
		if (s->qref) {
			int64_t shq[1] = { g };
			sw_tensor(&w, DT_F64, 1, shq, s->qref);
		} else {
			sw_nil(&w);
		}
		put_f64(&w, "mean", s->mean, s->nsel);
		put_f64(&w, "sd", s->sd, s->nsel);
	}
	if (fclose(m) != 0) die("out of memory");
	b->data = buf;
	b->len = len;
}

static int has_step(const SReader *r, const msgpack_object *steps, const char *name)
{
	for (uint32_t i = 0; i < steps->via.array.size; i++) {
		const msgpack_object *e = &steps->via.array.ptr[i];
		if (e->type != MSGPACK_OBJECT_STR) sr_fail(r, "preprocessing: steps: expected strings");
		if (obj_is_str(e, name)) return 1;
	}
	return 0;
}

static double *get_f64(const SReader *r, const msgpack_object *o, const char *key, int n)
{
	Tensor t;
	get_tensor(r, o, key, DT_F64, 1, &t);
	if (t.shape[0] != n) sr_fail(r, "preprocessing: %s has %lld values, expected %d", key, (long long)t.shape[0], n);
	double *v = dzeros(n);
	memcpy(v, t.data, sizeof(double) * (size_t)n);
	tensor_free(&t);
	return v;
}

void stats_from_object(Stats *s, const SReader *r, const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_MAP) sr_fail(r, "preprocessing: expected a map");
	if (opt_int(r, o, "version", 1) != 1) sr_fail(r, "preprocessing: version is not supported");
	const msgpack_object *steps = obj_get(o, "steps");
	if (!steps || steps->type != MSGPACK_OBJECT_ARRAY) sr_fail(r, "preprocessing: missing \"steps\"");
	static const char *known[] = { "drop-zero", "cpm", "log2", "quantile", "top-variable", "zscore", "combat" };
	for (uint32_t i = 0; i < steps->via.array.size; i++) {
		int ok = 0;
		for (int j = 0; j < 7; j++) ok |= obj_is_str(&steps->via.array.ptr[i], known[j]);
		if (!ok) sr_fail(r, "preprocessing: unknown step");
	}
	PrepOpts po;
	memset(&po, 0, sizeof po);
	po.drop_zero = has_step(r, steps, "drop-zero");
	po.cpm = has_step(r, steps, "cpm");
	po.log2 = has_step(r, steps, "log2");
	po.quantile = has_step(r, steps, "quantile");
	po.zscore = has_step(r, steps, "zscore");
	po.combat = has_step(r, steps, "combat");
	int64_t tv = opt_int(r, o, "top_variable", 0);
	if (tv < 0 || tv > INT32_MAX) sr_fail(r, "preprocessing: bad top_variable");
	po.top_variable = (int)tv;
	const msgpack_object *mm = obj_get(o, "missing");
	po.missing_mean = mm && obj_is_str(mm, "mean");
	po.fill = opt_num(r, o, "fill", 0);
	char **genes;
	int ng = get_strs(r, o, "genes", &genes);
	stats_init(s, &po, genes, ng);
	for (int i = 0; i < ng; i++) free(genes[i]);
	free(genes);
	Tensor t;
	get_tensor(r, o, "selected", DT_I32, 1, &t);
	s->nsel = (int)t.shape[0];
	const int32_t *sel = t.data;
	if (s->nsel > ng) sr_fail(r, "preprocessing: more selected genes than genes");
	for (int i = 0; i < s->nsel; i++) {
		if (sel[i] < 0 || sel[i] >= ng || (i > 0 && sel[i] <= sel[i - 1]))
			sr_fail(r, "preprocessing: selected[%d] = %d is out of order or range", i, sel[i]);
		s->sel[i] = sel[i];
	}
	tensor_free(&t);
	const msgpack_object *fit = obj_get(o, "fitted");
	s->fitted = fit && fit->type == MSGPACK_OBJECT_BOOLEAN && fit->via.boolean;
	if (s->fitted) {
		s->n = get_num(r, o, "n");
		s->count = get_f64(r, o, "count", ng);
		s->sum = get_f64(r, o, "sum", ng);
		s->sumsq = get_f64(r, o, "sumsq", ng);
		s->nonzero = get_f64(r, o, "nonzero", ng);
		s->raw_sum = get_f64(r, o, "raw_sum", ng);
		s->raw_count = get_f64(r, o, "raw_count", ng);
		s->qn = opt_num(r, o, "quantile_n", 0);
		const msgpack_object *q = obj_get(o, "quantile_ref");
		if (q && q->type != MSGPACK_OBJECT_NIL) s->qref = get_f64(r, o, "quantile_ref", ng);
		if (po.quantile && !s->qref) sr_fail(r, "preprocessing: quantile step without \"quantile_ref\"");
		s->mean = get_f64(r, o, "mean", s->nsel);
		s->sd = get_f64(r, o, "sd", s->nsel);
		if (po.combat) {
			const msgpack_object *cc = obj_get(o, "combat"), *col = obj_get(o, "combat_column");
			if (!cc) sr_fail(r, "preprocessing: combat step without a fitted \"combat\"");
			if (!col || col->type != MSGPACK_OBJECT_STR) sr_fail(r, "preprocessing: combat step without \"combat_column\"");
			s->combat_column = xmalloc(col->via.str.size + 1);
			memcpy(s->combat_column, col->via.str.ptr, col->via.str.size);
			s->combat_column[col->via.str.size] = 0;
			s->combat = xcalloc(1, sizeof(Combat));
			combat_from_object(s->combat, r, cc);
			if (!s->combat->fitted) sr_fail(r, "preprocessing: the ComBat fit is not finalized");
			if (s->combat->ngenes != ng)
				sr_fail(r, "preprocessing: ComBat fitted on %d genes, the statistics have %d", s->combat->ngenes, ng);
		}
	} else if (prep_needs_fit(&po)) {
		sr_fail(r, "preprocessing: steps need fitted statistics, but none are stored");
	}
	const msgpack_object *bef = obj_get(o, "before");
	if (bef && bef->type != MSGPACK_OBJECT_NIL) {
		/* a well-formed map itself (checked by reading it), kept as it is */
		Stats t;
		stats_from_object(&t, r, bef);
		stats_free(&t);
		blob_from_object(&s->before, bef);
	}
}

/* ---- chains ---- */

int pre_trivial(const Blob *b)
{
	if (!b || b->len == 0) return 1;
	msgpack_unpacked up;
	const msgpack_object *o = blob_object(b, &up);
	const msgpack_object *st = o->type == MSGPACK_OBJECT_MAP ? obj_get(o, "steps") : NULL;
	const msgpack_object *bef = o->type == MSGPACK_OBJECT_MAP ? obj_get(o, "before") : NULL;
	int t = st && st->type == MSGPACK_OBJECT_ARRAY && st->via.array.size == 0 &&
	        (!bef || bef->type == MSGPACK_OBJECT_NIL);
	msgpack_unpacked_destroy(&up);
	return t;
}

int pre_equal(const Blob *a, const Blob *b)
{
	int ta = pre_trivial(a), tb = pre_trivial(b);
	if (ta || tb) return ta && tb;
	/* re-packed, so that two encodings of one map compare equal */
	msgpack_unpacked ua, ub;
	Blob ca, cb;
	blob_from_object(&ca, blob_object(a, &ua));
	blob_from_object(&cb, blob_object(b, &ub));
	int eq = ca.len == cb.len && memcmp(ca.data, cb.data, ca.len) == 0;
	blob_free(&ca);
	blob_free(&cb);
	msgpack_unpacked_destroy(&ua);
	msgpack_unpacked_destroy(&ub);
	return eq;
}

static void describe_obj(const msgpack_object *o, FILE *m, int depth)
{
	const msgpack_object *bef = obj_get(o, "before");
	if (bef && bef->type == MSGPACK_OBJECT_MAP && depth < 16) {
		describe_obj(bef, m, depth + 1);
		fputs(" then ", m);
	}
	const msgpack_object *st = obj_get(o, "steps");
	fputc('[', m);
	if (st && st->type == MSGPACK_OBJECT_ARRAY) {
		for (uint32_t i = 0; i < st->via.array.size; i++) {
			const msgpack_object *e = &st->via.array.ptr[i];
			if (e->type == MSGPACK_OBJECT_STR) fprintf(m, "%s%.*s", i ? ", " : "", (int)e->via.str.size, e->via.str.ptr);
		}
		if (st->via.array.size == 0) fputs("genes only", m);
	}
	fputc(']', m);
}

char *pre_describe(const Blob *b)
{
	if (pre_trivial(b)) return xstrdup("nothing (raw values)");
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m) die("out of memory");
	msgpack_unpacked up;
	const msgpack_object *o = blob_object(b, &up);
	if (o->type == MSGPACK_OBJECT_MAP) describe_obj(o, m, 0);
	msgpack_unpacked_destroy(&up);
	if (fclose(m) != 0) die("out of memory");
	return buf;
}

void stats_save(const Stats *s, const char *path)
{
	AtomicFile af;
	FILE *fp = atomic_open(&af, path);
	SWriter w;
	sw_init(&w, fp, path);
	Header h;
	header_init(&h, "stats");
	for (int j = 0; j < s->nsel; j++) {
		h.features = xrealloc(h.features, sizeof(char *) * (size_t)(h.nfeat + 1));
		h.features[h.nfeat++] = xstrdup(s->genes[s->sel[j]]);
	}
	Blob b;
	stats_to_blob(s, &b);
	header_set(&h, "preprocessing", &b);
	blob_free(&b);
	sw_header(&w, &h);
	sw_end(&w, 0, 0);
	header_free(&h);
	atomic_commit(&af);
}

void stats_load(Stats *s, const char *path, Header *h_out)
{
	DataIn in;
	sr_open(&in.r, path);
	const msgpack_object *f = sr_next(&in.r);
	if (!f) sr_fail(&in.r, "empty file (no header frame)");
	header_parse(&in.r, f, &in.h);
	const Blob *b = header_get(&in.h, "preprocessing");
	if (!b) sr_fail(&in.r, "the header (kind \"%s\") has no \"preprocessing\"", in.h.kind);
	msgpack_unpacked up;
	const msgpack_object *o = blob_object(b, &up);
	stats_from_object(s, &in.r, o);
	msgpack_unpacked_destroy(&up);
	if (h_out) header_copy(h_out, &in.h);
	/* the rest of the file (a bundle's params frames) must end with its end frame,
	 * so a truncated statistics file or model is refused, not half-used */
	for (;;) {
		const msgpack_object *g = sr_next(&in.r);
		if (!g) {
			in.r.frame++;
			sr_fail(&in.r, "file ends without an end frame (truncated?)");
		}
		if (strcmp(frame_type(&in.r, g), "end") == 0) break;
	}
	data_close(&in);
}
