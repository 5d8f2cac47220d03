/* combat.c: see combat.h. The arithmetic follows sva::ComBat 3.46 line by line, with
 * every per-sample sum replaced by the same sum over (batch, level) cells. */
#include "combat.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COMBAT_CONV 1e-4        /* sva's it.sol conv */
#define COMBAT_MAXIT 100000

static char **copy_names(char *const *s, int n)
{
	if (!s) return NULL;
	char **v = xmallocarray((size_t)(n ? n : 1), sizeof *v);
	for (int i = 0; i < n; i++) v[i] = xstrdup(s[i]);
	return v;
}

static void free_names(char **s, int n)
{
	if (!s) return;
	for (int i = 0; i < n; i++) free(s[i]);
	free(s);
}

void combat_init(Combat *c, int ngenes, int nbatch, int nlevel, int mean_only,
                 char *const *genes, char *const *batches, char *const *levels)
{
	ASSERT(ngenes >= 0 && nbatch >= 1 && nlevel >= 1);
	memset(c, 0, sizeof *c);
	c->ngenes = ngenes;
	c->nbatch = nbatch;
	c->nlevel = nlevel;
	c->mean_only = mean_only ? 1 : 0;
	c->genes = copy_names(genes, ngenes);
	c->batches = copy_names(batches, nbatch);
	c->levels = copy_names(levels, nlevel);
	size_t C = (size_t)nbatch * (size_t)nlevel, G = (size_t)ngenes;
	c->cn = xcalloc(C, sizeof(double));
	c->cmean = xcalloc(C * G, sizeof(double));
	c->cm2 = xcalloc(C * G, sizeof(double));
}

static void free_fit(Combat *c)
{
	free(c->iterations);
	free(c->grand_mean);
	free(c->var_pooled);
	free(c->alpha);
	free(c->alpha_mean);
	free(c->gamma_hat);
	free(c->delta_hat);
	free(c->gamma_star);
	free(c->delta_star);
	free(c->adjust);
	free(c->sd);
	free(c->inv_sqrt_delta);
	c->sd = c->inv_sqrt_delta = NULL;
	c->iterations = NULL;
	c->grand_mean = c->var_pooled = c->alpha = c->alpha_mean = NULL;
	c->gamma_hat = c->delta_hat = c->gamma_star = c->delta_star = NULL;
	c->adjust = NULL;
	c->fitted = 0;
}

void combat_free(Combat *c)
{
	free_fit(c);
	free_names(c->genes, c->ngenes);
	free_names(c->batches, c->nbatch);
	free_names(c->levels, c->nlevel);
	free(c->cn);
	free(c->cmean);
	free(c->cm2);
	memset(c, 0, sizeof *c);
}

void combat_add(Combat *c, const float *x, int n, const int32_t *batch, const int32_t *level)
{
	const int G = c->ngenes;
	for (int i = 0; i < n; i++) {
		int b = batch[i], l = level ? level[i] : 0;
		if (b < 0 || b >= c->nbatch) die("combat: sample %d: batch %d outside 0..%d", i, b, c->nbatch - 1);
		if (l < 0 || l >= c->nlevel) die("combat: sample %d: covariate level %d outside 0..%d", i, l, c->nlevel - 1);
		size_t cell = (size_t)b * (size_t)c->nlevel + (size_t)l;
		double cnt = ++c->cn[cell];
		double *mean = c->cmean + cell * (size_t)G, *m2 = c->cm2 + cell * (size_t)G;
		const float *row = x + (size_t)i * (size_t)G;
		for (int g = 0; g < G; g++) {
			double v = row[g];
			if (!isfinite(v))
				die("combat: sample %d, gene %s: value %g (missing values are not supported)", i,
				    c->genes ? c->genes[g] : xasprintf("%d", g), v);
			double d = v - mean[g];
			mean[g] += d / cnt;
			m2[g] += d * (v - mean[g]);
		}
	}
	if (c->fitted) free_fit(c);
}

void combat_merge(Combat *out, const Combat *in)
{
	if (out->ngenes != in->ngenes || out->nbatch != in->nbatch || out->nlevel != in->nlevel)
		die("combat: cannot merge fits of different sizes (%d genes, %d batches, %d levels vs %d, %d, %d)",
		    out->ngenes, out->nbatch, out->nlevel, in->ngenes, in->nbatch, in->nlevel);
	if (out->mean_only != in->mean_only) die("combat: cannot merge a mean-only fit with a full fit");
	const size_t G = (size_t)out->ngenes, C = (size_t)out->nbatch * (size_t)out->nlevel;
	for (size_t cell = 0; cell < C; cell++) {
		double na = out->cn[cell], nb = in->cn[cell], nt = na + nb;
		if (nb == 0) continue;
		double *ma = out->cmean + cell * G, *sa = out->cm2 + cell * G;
		const double *mb = in->cmean + cell * G, *sb = in->cm2 + cell * G;
		for (size_t g = 0; g < G; g++) {
			double d = mb[g] - ma[g];
			ma[g] += d * nb / nt;
			sa[g] += sb[g] + d * d * na * nb / nt;
		}
		out->cn[cell] = nt;
	}
	if (out->fitted) free_fit(out);
}

/* Cholesky a = L L^T of a (p,p) in place (lower triangle); 0 if not positive definite */
static int cholesky(double *a, int p)
{
	double maxd = 0;
	for (int i = 0; i < p; i++) if (a[i * p + i] > maxd) maxd = a[i * p + i];
	for (int j = 0; j < p; j++) {
		double s = a[j * p + j];
		for (int k = 0; k < j; k++) s -= a[j * p + k] * a[j * p + k];
		if (!(s > 1e-10 * maxd)) return 0;
		a[j * p + j] = sqrt(s);
		for (int i = j + 1; i < p; i++) {
			double t = a[i * p + j];
			for (int k = 0; k < j; k++) t -= a[i * p + k] * a[j * p + k];
			a[i * p + j] = t / a[j * p + j];
		}
	}
	return 1;
}

static void chol_solve(const double *l, int p, double *x)
{
	for (int i = 0; i < p; i++) {
		double s = x[i];
		for (int k = 0; k < i; k++) s -= l[i * p + k] * x[k];
		x[i] = s / l[i * p + i];
	}
	for (int i = p - 1; i >= 0; i--) {
		double s = x[i];
		for (int k = i + 1; k < p; k++) s -= l[k * p + i] * x[k];
		x[i] = s / l[i * p + i];
	}
}

static double mean_of(const double *v, const uint8_t *use, int n, int *cnt)
{
	double s = 0;
	int k = 0;
	for (int i = 0; i < n; i++) if (use[i]) { s += v[i]; k++; }
	*cnt = k;
	return k ? s / k : NAN;
}

/* unbiased variance (R's var) over the used entries */
static double var_of(const double *v, const uint8_t *use, int n)
{
	int k;
	double m = mean_of(v, use, n, &k), s = 0;
	for (int i = 0; i < n; i++) if (use[i]) s += (v[i] - m) * (v[i] - m);
	return k > 1 ? s / (k - 1) : NAN;
}

/* the factors combat_apply uses, from the fitted values */
static void derive(Combat *c)
{
	const size_t G = (size_t)c->ngenes, B = (size_t)c->nbatch;
	c->sd = xmallocarray(G + 1, sizeof(double));
	c->inv_sqrt_delta = xmallocarray(B * G + 1, sizeof(double));
	for (size_t g = 0; g < G; g++) c->sd[g] = sqrt(c->var_pooled[g]);
	for (size_t i = 0; i < B * G; i++) c->inv_sqrt_delta[i] = 1 / sqrt(c->delta_star[i]);
}

int combat_finalize(Combat *c)
{
	const int G = c->ngenes, B = c->nbatch, L = c->nlevel;
	const size_t Gs = (size_t)G;
	free_fit(c);
	/* batch and level sizes; the design has one column per batch with samples and
	 * one per level with samples except the first such level (the reference) */
	double *nb = xcalloc((size_t)B, sizeof(double)), *nl = xcalloc((size_t)L, sizeof(double)), n = 0;
	for (int b = 0; b < B; b++)
		for (int l = 0; l < L; l++) {
			double k = c->cn[b * L + l];
			nb[b] += k;
			nl[l] += k;
			n += k;
		}
	if (n == 0) die("combat: no samples");
	int *bcol = xmallocarray((size_t)B, sizeof(int)), *lcol = xmallocarray((size_t)L, sizeof(int));
	int p = 0, single = 0;
	for (int b = 0; b < B; b++) {
		bcol[b] = nb[b] > 0 ? p++ : -1;
		if (nb[b] == 1) single = 1;
	}
	int ref = -1;
	for (int l = 0; l < L; l++) {
		lcol[l] = -1;
		if (nl[l] == 0) continue;
		if (ref < 0) ref = l;
		else lcol[l] = p++;
	}
	c->mean_only_used = c->mean_only || single;
	double *xtx = xcalloc((size_t)p * (size_t)p, sizeof(double));
	for (int b = 0; b < B; b++)
		for (int l = 0; l < L; l++) {
			double k = c->cn[b * L + l];
			if (k == 0) continue;
			int cols[2] = { bcol[b], lcol[l] }, nc = lcol[l] >= 0 ? 2 : 1;
			for (int i = 0; i < nc; i++)
				for (int j = 0; j < nc; j++) xtx[cols[i] * p + cols[j]] += k;
		}
	if (!cholesky(xtx, p)) die("combat: the covariate is confounded with batch (the design is singular)");

	c->iterations = xcalloc((size_t)B, sizeof(int));
	c->grand_mean = xcalloc(Gs, sizeof(double));
	c->var_pooled = xcalloc(Gs, sizeof(double));
	c->alpha = xcalloc((size_t)L * Gs, sizeof(double));
	c->alpha_mean = xcalloc(Gs, sizeof(double));
	c->gamma_hat = xcalloc((size_t)B * Gs, sizeof(double));
	c->delta_hat = xcalloc((size_t)B * Gs, sizeof(double));
	c->gamma_star = xcalloc((size_t)B * Gs, sizeof(double));
	c->delta_star = xcalloc((size_t)B * Gs, sizeof(double));
	c->adjust = xcalloc(Gs, 1);
	double *beta = xmallocarray((size_t)p + 1, sizeof(double));
	int unadjusted = 0;
	for (int g = 0; g < G; g++) {
		/* B.hat <- solve(crossprod(design), tcrossprod(t(design), dat)) */
		memset(beta, 0, sizeof(double) * (size_t)p);
		for (int b = 0; b < B; b++)
			for (int l = 0; l < L; l++) {
				size_t cell = (size_t)(b * L + l);
				double k = c->cn[cell];
				if (k == 0) continue;
				double s = k * c->cmean[cell * Gs + g];
				beta[bcol[b]] += s;
				if (lcol[l] >= 0) beta[lcol[l]] += s;
			}
		chol_solve(xtx, p, beta);
		/* grand.mean <- crossprod(n.batches/n.array, B.hat[1:n.batch,]) */
		double grand = 0;
		for (int b = 0; b < B; b++) if (bcol[b] >= 0) grand += nb[b] / n * beta[bcol[b]];
		double am = 0;
		for (int l = 0; l < L; l++) {
			double a = nl[l] == 0 ? NAN : lcol[l] >= 0 ? beta[lcol[l]] : 0;
			c->alpha[(size_t)l * Gs + g] = a;
			if (nl[l] > 0) am += nl[l] / n * a;
		}
		/* var.pooled <- ((dat - t(design %*% B.hat))^2) %*% rep(1/n.array, n.array) */
		double rss = 0;
		for (int b = 0; b < B; b++)
			for (int l = 0; l < L; l++) {
				size_t cell = (size_t)(b * L + l);
				double k = c->cn[cell];
				if (k == 0) continue;
				double fit = beta[bcol[b]] + (lcol[l] >= 0 ? beta[lcol[l]] : 0);
				double e = c->cmean[cell * Gs + g] - fit;
				rss += c->cm2[cell * Gs + g] + k * e * e;
			}
		double vp = rss / n;
		c->grand_mean[g] = grand;
		c->var_pooled[g] = vp;
		c->alpha_mean[g] = am;
		/* genes with var(x) == 0 inside a batch of more than one sample stay as they are */
		int keep = vp > 0;
		for (int b = 0; b < B && keep; b++) {
			if (nb[b] < 2) continue;
			int uniform = 1;
			double first = NAN;
			for (int l = 0; l < L && uniform; l++) {
				size_t cell = (size_t)(b * L + l);
				if (c->cn[cell] == 0) continue;
				double m = c->cmean[cell * Gs + g];
				if (c->cm2[cell * Gs + g] != 0 || (first == first && m != first)) uniform = 0;
				first = m;
			}
			if (uniform) keep = 0;
		}
		c->adjust[g] = (uint8_t)keep;
		if (!keep) unadjusted++;
		/* s.data <- (dat - stand.mean) / sqrt(var.pooled); gamma.hat: batch means of
		 * s.data; delta.hat: rowVars(s.data[, batch]) */
		double sd = sqrt(vp);
		for (int b = 0; b < B; b++) {
			size_t bg = (size_t)b * Gs + g;
			if (nb[b] == 0 || !keep) {
				c->gamma_hat[bg] = 0;
				c->delta_hat[bg] = 1;
				continue;
			}
			double s = 0;
			for (int l = 0; l < L; l++) {
				size_t cell = (size_t)(b * L + l);
				if (c->cn[cell] == 0) continue;
				s += c->cn[cell] * (c->cmean[cell * Gs + g] - grand - c->alpha[(size_t)l * Gs + g]);
			}
			double gh = s / (nb[b] * sd);
			c->gamma_hat[bg] = gh;
			if (c->mean_only_used) {
				c->delta_hat[bg] = 1;
				continue;
			}
			double ss = 0;
			for (int l = 0; l < L; l++) {
				size_t cell = (size_t)(b * L + l);
				if (c->cn[cell] == 0) continue;
				double sbar = (c->cmean[cell * Gs + g] - grand - c->alpha[(size_t)l * Gs + g]) / sd;
				ss += c->cm2[cell * Gs + g] / vp + c->cn[cell] * (sbar - gh) * (sbar - gh);
			}
			c->delta_hat[bg] = ss / (nb[b] - 1);
		}
	}
	int kept = G - unadjusted;
	if (kept < 2) die("combat: needs at least 2 genes that vary within every batch (%d do)", kept);

	/* priors over the adjusted genes, then the posterior per batch */
	double *gold = xmallocarray(Gs + 1, sizeof(double)), *dold = xmallocarray(Gs + 1, sizeof(double));
	for (int b = 0; b < B; b++) {
		double *gh = c->gamma_hat + (size_t)b * Gs, *dh = c->delta_hat + (size_t)b * Gs;
		double *gs = c->gamma_star + (size_t)b * Gs, *ds = c->delta_star + (size_t)b * Gs;
		for (int g = 0; g < G; g++) { gs[g] = 0; ds[g] = 1; }
		if (nb[b] == 0) {
			for (int g = 0; g < G; g++) gs[g] = ds[g] = NAN;
			continue;
		}
		int k;
		double gbar = mean_of(gh, c->adjust, G, &k);
		double t2 = var_of(gh, c->adjust, G);
		if (c->mean_only_used) {
			/* postmean(gamma.hat, gamma.bar, 1, 1, t2) */
			for (int g = 0; g < G; g++)
				if (c->adjust[g]) gs[g] = (t2 * gh[g] + gbar) / (t2 + 1);
			continue;
		}
		double m = mean_of(dh, c->adjust, G, &k), s2 = var_of(dh, c->adjust, G);
		double a = (2 * s2 + m * m) / s2, bb = (m * s2 + m * m * m) / s2;
		double nn = nb[b];
		for (int g = 0; g < G; g++) { gold[g] = gh[g]; dold[g] = dh[g]; }
		/* it.sol: alternate the posterior mean and variance until the largest relative
		 * change (sva's abs(new - old) / old, sign of old kept) is at most conv */
		double change = 1;
		int it = 0;
		while (change > COMBAT_CONV) {
			change = -INFINITY;
			for (int g = 0; g < G; g++) {
				if (!c->adjust[g]) continue;
				double gn = (t2 * nn * gh[g] + dold[g] * gbar) / (t2 * nn + dold[g]);
				double sum2 = 0;
				for (int l = 0; l < L; l++) {
					size_t cell = (size_t)(b * L + l);
					if (c->cn[cell] == 0) continue;
					double sbar = (c->cmean[cell * Gs + g] - c->grand_mean[g] - c->alpha[(size_t)l * Gs + g]) / sqrt(c->var_pooled[g]);
					sum2 += c->cm2[cell * Gs + g] / c->var_pooled[g] + c->cn[cell] * (sbar - gn) * (sbar - gn);
				}
				double dn = (0.5 * sum2 + bb) / (nn / 2 + a - 1);
				double cg = fabs(gn - gold[g]) / gold[g], cd = fabs(dn - dold[g]) / dold[g];
				if (cg > change) change = cg;
				if (cd > change) change = cd;
				gold[g] = gn;
				dold[g] = dn;
			}
			it++;
			if (it >= COMBAT_MAXIT) {
				warnx("combat: batch %d: the posterior did not converge in %d iterations", b, it);
				break;
			}
		}
		c->iterations[b] = it;
		for (int g = 0; g < G; g++)
			if (c->adjust[g]) { gs[g] = gold[g]; ds[g] = dold[g]; }
	}
	free(gold);
	free(dold);
	free(beta);
	free(xtx);
	free(bcol);
	free(lcol);
	free(nb);
	free(nl);
	derive(c);
	c->fitted = 1;
	return unadjusted;
}

void combat_apply(const Combat *c, float *x, int n, const int32_t *batch, const int32_t *level)
{
	ASSERT(c->fitted);
	const size_t G = (size_t)c->ngenes;
	for (int i = 0; i < n; i++) {
		int b = batch[i], l = level ? level[i] : 0;
		if (b < 0 || b >= c->nbatch) die("combat: sample %d: batch %d outside 0..%d", i, b, c->nbatch - 1);
		if (l < -1 || l >= c->nlevel) die("combat: sample %d: covariate level %d outside 0..%d", i, l, c->nlevel - 1);
		const double *gs = c->gamma_star + (size_t)b * G, *isd = c->inv_sqrt_delta + (size_t)b * G;
		const double *al = l >= 0 ? c->alpha + (size_t)l * G : c->alpha_mean;
		const double *gm = c->grand_mean, *sd = c->sd;
		/* an empty batch or level has NaN parameters for every gene */
		if (G > 0 && isnan(gs[0]))
			die("combat: sample %d: batch %s had no samples in the fit", i,
			    c->batches ? c->batches[b] : xasprintf("%d", b));
		if (G > 0 && isnan(al[0]))
			die("combat: sample %d: covariate level %s had no samples in the fit", i,
			    c->levels ? c->levels[l] : xasprintf("%d", l));
		float *row = x + (size_t)i * G;
		for (size_t g = 0; g < G; g++) {
			if (!c->adjust[g]) continue;
			/* bayesdata <- ((s.data - gamma.star) / sqrt(delta.star)) * sqrt(var.pooled) + stand.mean */
			double sm = gm[g] + al[g];
			double s = ((double)row[g] - sm) / sd[g];
			row[g] = (float)((s - gs[g]) * isd[g] * sd[g] + sm);
		}
	}
}

int combat_matrix(float *x, int n, int ngenes, const int32_t *batch, int nbatch,
                  const int32_t *level, int nlevel, int mean_only)
{
	Combat c;
	combat_init(&c, ngenes, nbatch, level ? nlevel : 1, mean_only, NULL, NULL, NULL);
	combat_add(&c, x, n, batch, level);
	int r = combat_finalize(&c);
	combat_apply(&c, x, n, batch, level);
	combat_free(&c);
	return r;
}

/* ---- serialisation ---- */

static void put_f64(SWriter *w, const char *key, const double *v, int ndim, int64_t d0, int64_t d1)
{
	int64_t sh[2] = { d0, d1 };
	sw_key(w, key);
	sw_tensor(w, DT_F64, ndim, sh, v);
}

static char **default_names(char **names, int n)
{
	if (names) return names;
	char **v = xmallocarray((size_t)(n ? n : 1), sizeof *v);
	for (int i = 0; i < n; i++) v[i] = xasprintf("%d", i);
	return v;
}

void combat_to_blob(const Combat *c, Blob *blob)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m) die("out of memory");
	SWriter w;
	sw_init(&w, m, "combat");
	const int64_t G = c->ngenes, B = c->nbatch, L = c->nlevel;
	sw_map(&w, c->fitted ? 20 : 10);
	sw_key(&w, "version"); sw_int(&w, 1);
	sw_key(&w, "method"); sw_str(&w, c->mean_only ? "combat-mean-only" : "combat");
	char **gn = default_names(c->genes, c->ngenes), **bn = default_names(c->batches, c->nbatch),
	     **ln = default_names(c->levels, c->nlevel);
	sw_key(&w, "genes"); sw_strs(&w, gn, c->ngenes);
	sw_key(&w, "batches"); sw_strs(&w, bn, c->nbatch);
	sw_key(&w, "levels"); sw_strs(&w, ln, c->nlevel);
	if (gn != c->genes) free_names(gn, c->ngenes);
	if (bn != c->batches) free_names(bn, c->nbatch);
	if (ln != c->levels) free_names(ln, c->nlevel);
	sw_key(&w, "mean_only"); sw_bool(&w, c->mean_only);
	put_f64(&w, "cell_n", c->cn, 2, B, L);
	put_f64(&w, "cell_mean", c->cmean, 2, B * L, G);
	put_f64(&w, "cell_m2", c->cm2, 2, B * L, G);
	sw_key(&w, "fitted"); sw_bool(&w, c->fitted);
	if (c->fitted) {
		sw_key(&w, "mean_only_used"); sw_bool(&w, c->mean_only_used);
		put_f64(&w, "grand_mean", c->grand_mean, 1, G, 0);
		put_f64(&w, "var_pooled", c->var_pooled, 1, G, 0);
		put_f64(&w, "alpha", c->alpha, 2, L, G);
		put_f64(&w, "alpha_mean", c->alpha_mean, 1, G, 0);
		put_f64(&w, "gamma_hat", c->gamma_hat, 2, B, G);
		put_f64(&w, "delta_hat", c->delta_hat, 2, B, G);
		put_f64(&w, "gamma_star", c->gamma_star, 2, B, G);
		put_f64(&w, "delta_star", c->delta_star, 2, B, G);
		int64_t sh[1] = { G };
		sw_key(&w, "adjust"); sw_tensor(&w, DT_U8, 1, sh, c->adjust);
	}
	if (fclose(m) != 0) die("out of memory");
	blob->data = buf;
	blob->len = len;
}

static double *get_f64(const SReader *r, const msgpack_object *o, const char *key, int64_t d0, int64_t d1)
{
	Tensor t;
	get_tensor(r, o, key, DT_F64, d1 >= 0 ? 2 : 1, &t);
	if (t.shape[0] != d0 || (d1 >= 0 && t.shape[1] != d1)) {
		if (d1 >= 0)
			sr_fail(r, "combat: %s: shape (%lld, %lld), expected (%lld, %lld)", key, (long long)t.shape[0],
			        (long long)t.shape[1], (long long)d0, (long long)d1);
		sr_fail(r, "combat: %s: shape (%lld), expected (%lld)", key, (long long)t.shape[0], (long long)d0);
	}
	double *v = t.data;
	if (!v) v = xmalloc(8);
	return v;
}

void combat_from_object(Combat *c, const SReader *r, const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_MAP) sr_fail(r, "combat: expected a map");
	if (opt_int(r, o, "version", 1) != 1) sr_fail(r, "combat: version is not supported");
	char **genes, **batches, **levels;
	int G = get_strs(r, o, "genes", &genes);
	int B = get_strs(r, o, "batches", &batches);
	int L = get_strs(r, o, "levels", &levels);
	if (B < 1 || L < 1) sr_fail(r, "combat: needs at least one batch and one level");
	const msgpack_object *mo = obj_get(o, "mean_only");
	if (!mo || mo->type != MSGPACK_OBJECT_BOOLEAN) sr_fail(r, "combat: missing \"mean_only\"");
	combat_init(c, G, B, L, mo->via.boolean, genes, batches, levels);
	free_names(genes, G);
	free_names(batches, B);
	free_names(levels, L);
	free(c->cn);
	free(c->cmean);
	free(c->cm2);
	c->cn = get_f64(r, o, "cell_n", B, L);
	c->cmean = get_f64(r, o, "cell_mean", (int64_t)B * L, G);
	c->cm2 = get_f64(r, o, "cell_m2", (int64_t)B * L, G);
	for (int i = 0; i < B * L; i++)
		if (!(c->cn[i] >= 0)) sr_fail(r, "combat: cell_n has a negative count");
	const msgpack_object *fo = obj_get(o, "fitted");
	if (!fo || fo->type != MSGPACK_OBJECT_BOOLEAN) sr_fail(r, "combat: missing \"fitted\"");
	if (!fo->via.boolean) return;
	const msgpack_object *mu = obj_get(o, "mean_only_used");
	c->mean_only_used = mu && mu->type == MSGPACK_OBJECT_BOOLEAN && mu->via.boolean;
	c->grand_mean = get_f64(r, o, "grand_mean", G, -1);
	c->var_pooled = get_f64(r, o, "var_pooled", G, -1);
	c->alpha = get_f64(r, o, "alpha", L, G);
	c->alpha_mean = get_f64(r, o, "alpha_mean", G, -1);
	c->gamma_hat = get_f64(r, o, "gamma_hat", B, G);
	c->delta_hat = get_f64(r, o, "delta_hat", B, G);
	c->gamma_star = get_f64(r, o, "gamma_star", B, G);
	c->delta_star = get_f64(r, o, "delta_star", B, G);
	Tensor t;
	get_tensor(r, o, "adjust", DT_U8, 1, &t);
	if (t.shape[0] != G) sr_fail(r, "combat: adjust: %lld entries, expected %d", (long long)t.shape[0], G);
	c->adjust = t.data ? t.data : xcalloc(1, 1);
	for (int g = 0; g < G; g++)
		if (c->adjust[g] && !(c->var_pooled[g] > 0))
			sr_fail(r, "combat: gene %s: adjusted with var_pooled %g", c->genes[g], c->var_pooled[g]);
	c->iterations = xcalloc((size_t)B, sizeof(int));
	derive(c);
	c->fitted = 1;
}

void combat_save(const Combat *c, const char *path)
{
	AtomicFile af;
	FILE *fp = atomic_open(&af, path);
	SWriter w;
	sw_init(&w, fp, path);
	Header h;
	header_init(&h, "combat");
	char **gn = default_names(c->genes, c->ngenes), **bn = default_names(c->batches, c->nbatch),
	     **ln = default_names(c->levels, c->nlevel);
	free(h.features);
	free(h.domains);
	free(h.classes);
	h.features = copy_names(gn, c->ngenes);
	h.nfeat = c->ngenes;
	h.domains = copy_names(bn, c->nbatch);
	h.ndom = c->nbatch;
	h.classes = copy_names(ln, c->nlevel);
	h.nclass = c->nlevel;
	if (gn != c->genes) free_names(gn, c->ngenes);
	if (bn != c->batches) free_names(bn, c->nbatch);
	if (ln != c->levels) free_names(ln, c->nlevel);
	Blob b;
	combat_to_blob(c, &b);
	header_set(&h, "combat", &b);
	blob_free(&b);
	sw_header(&w, &h);
	sw_end(&w, 0, 0);
	header_free(&h);
	atomic_commit(&af);
}

void combat_load(Combat *c, const char *path)
{
	SReader r;
	sr_open(&r, path);
	const msgpack_object *f = sr_next(&r);
	if (!f) sr_fail(&r, "empty file (no header frame)");
	Header h;
	header_parse(&r, f, &h);
	const Blob *b = header_get(&h, "combat");
	if (!b) sr_fail(&r, "the header (kind \"%s\") has no \"combat\"", h.kind);
	msgpack_unpacked up;
	const msgpack_object *o = blob_object(b, &up);
	combat_from_object(c, &r, o);
	msgpack_unpacked_destroy(&up);
	header_free(&h);
	f = sr_next(&r);
	if (!f || strcmp(frame_type(&r, f), "end") != 0) sr_fail(&r, "expected an end frame after the header");
	sr_close(&r);
}
