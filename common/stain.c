/* stain.c: see stain.h and docs/STAIN.md. */
#include "stain.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *stain_status_names[STAIN_COUNT] = { "ok", "too few tissue pixels", "degenerate stains" };

double od_of(int v, double io)
{
	return -log(((double)v + 1.0) / io);
}

/* ---- helpers ---- */

static double select_kth(double *a, long n, long k)
{
	long lo = 0, hi = n - 1;
	while (hi > lo) {
		/* median of three as the pivot */
		long mid = lo + (hi - lo) / 2;
		double x = a[lo], y = a[mid], z = a[hi];
		double p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
		long i = lo, j = hi;
		while (i <= j) {
			while (a[i] < p) i++;
			while (a[j] > p) j--;
			if (i <= j) {
				double t = a[i]; a[i] = a[j]; a[j] = t;
				i++; j--;
			}
		}
		if (k <= j) hi = j;
		else if (k >= i) lo = i;
		else break;
	}
	return a[k];
}

double percentile(double *a, long n, double q)
{
	ASSERT(n > 0);
	double pos = q / 100.0 * (double)(n - 1);
	long lo = (long)floor(pos);
	if (lo < 0) lo = 0;
	if (lo > n - 1) lo = n - 1;
	double frac = pos - (double)lo;
	double vlo = select_kth(a, n, lo);
	if (frac <= 0 || lo == n - 1) return vlo;
	/* after selection every element past lo is >= a[lo]: the next order statistic
	 * is their minimum */
	double vhi = a[lo + 1];
	for (long i = lo + 2; i < n; i++)
		if (a[i] < vhi) vhi = a[i];
	return vlo + frac * (vhi - vlo);
}

void sym3_eig(const double a[3][3], double w[3], double v[3][3])
{
	double m[3][3];
	memcpy(m, a, sizeof m);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) v[i][j] = i == j;
	for (int sweep = 0; sweep < 64; sweep++) {
		double off = fabs(m[0][1]) + fabs(m[0][2]) + fabs(m[1][2]);
		double scale = fabs(m[0][0]) + fabs(m[1][1]) + fabs(m[2][2]);
		if (off == 0 || off <= 1e-17 * scale) break;
		for (int p = 0; p < 2; p++)
			for (int q = p + 1; q < 3; q++) {
				if (m[p][q] == 0) continue;
				/* rotation that zeroes m[p][q] (Numerical Recipes' Jacobi) */
				double theta = (m[q][q] - m[p][p]) / (2 * m[p][q]);
				double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
				double c = 1 / sqrt(t * t + 1), s = t * c;
				for (int k = 0; k < 3; k++) {
					double mkp = m[k][p], mkq = m[k][q];
					m[k][p] = c * mkp - s * mkq;
					m[k][q] = s * mkp + c * mkq;
				}
				for (int k = 0; k < 3; k++) {
					double mpk = m[p][k], mqk = m[q][k];
					m[p][k] = c * mpk - s * mqk;
					m[q][k] = s * mpk + c * mqk;
				}
				for (int k = 0; k < 3; k++) {
					double vkp = v[k][p], vkq = v[k][q];
					v[k][p] = c * vkp - s * vkq;
					v[k][q] = s * vkp + c * vkq;
				}
			}
	}
	for (int i = 0; i < 3; i++) w[i] = m[i][i];
	/* sort ascending, columns with them */
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2 - i; j++)
			if (w[j] > w[j + 1]) {
				double t = w[j]; w[j] = w[j + 1]; w[j + 1] = t;
				for (int k = 0; k < 3; k++) { t = v[k][j]; v[k][j] = v[k][j + 1]; v[k][j + 1] = t; }
			}
}

/* ---- Macenko ---- */

void macenko_defaults(Macenko *m)
{
	static const double he[3][2] = { { 0.5626, 0.2159 }, { 0.7201, 0.8012 }, { 0.4062, 0.5581 } };
	m->io = 240;
	m->alpha = 1;
	m->beta = 0.15;
	memcpy(m->he, he, sizeof he);
	m->maxc[0] = 1.9705;
	m->maxc[1] = 1.0308;
}

/* the 2x3 pseudo-inverse of a 3x2 stain matrix: (HE^T HE)^-1 HE^T; -1 if singular */
static int pinv32(const double he[3][2], double p[2][3])
{
	double a = 0, b = 0, d = 0;
	for (int k = 0; k < 3; k++) {
		a += he[k][0] * he[k][0];
		b += he[k][0] * he[k][1];
		d += he[k][1] * he[k][1];
	}
	double det = a * d - b * b;
	/* det / (a d) is sin^2 of the angle between the stain vectors */
	if (!(a > 0 && d > 0) || !(det > 1e-4 * a * d)) return -1;
	for (int k = 0; k < 3; k++) {
		p[0][k] = (d * he[k][0] - b * he[k][1]) / det;
		p[1][k] = (a * he[k][1] - b * he[k][0]) / det;
	}
	return 0;
}

/* Stain matrix and concentrations of n pixels. On STAIN_OK, c (2n: c0 then c1) holds
 * the concentrations when c is not NULL. */
static int macenko_core(Macenko *m, const uint8_t *px, long n, double *c)
{
	double lut[256];
	for (int v = 0; v < 256; v++) lut[v] = od_of(v, m->io);
	/* tissue pixels: OD >= beta in every channel */
	long nt = 0;
	double mean[3] = { 0, 0, 0 };
	for (long i = 0; i < n; i++) {
		const uint8_t *p = px + 3 * i;
		double r = lut[p[0]], g = lut[p[1]], b = lut[p[2]];
		if (r < m->beta || g < m->beta || b < m->beta) continue;
		mean[0] += r; mean[1] += g; mean[2] += b;
		nt++;
	}
	if (nt < STAIN_MIN_PIXELS) return STAIN_FEW_PIXELS;
	for (int k = 0; k < 3; k++) mean[k] /= (double)nt;
	double cov[3][3] = { { 0 } };
	for (long i = 0; i < n; i++) {
		const uint8_t *p = px + 3 * i;
		double o[3] = { lut[p[0]], lut[p[1]], lut[p[2]] };
		if (o[0] < m->beta || o[1] < m->beta || o[2] < m->beta) continue;
		for (int k = 0; k < 3; k++) o[k] -= mean[k];
		for (int a = 0; a < 3; a++)
			for (int b = a; b < 3; b++) cov[a][b] += o[a] * o[b];
	}
	for (int a = 0; a < 3; a++)
		for (int b = a; b < 3; b++) {
			cov[a][b] /= (double)(nt - 1);
			cov[b][a] = cov[a][b];
		}
	double w[3], v[3][3];
	sym3_eig(cov, w, v);
	if (!(w[2] > 1e-12) || !isfinite(w[2])) return STAIN_DEGENERATE;
	/* one stain only: the second direction holds less than 1/1000 of the variance of
	 * the first (8-bit rounding and noise), and any "second stain vector" would be
	 * noise. H&E and IHC images have ratios of 0.004 to 0.1. */
	if (!(w[1] > STAIN_MIN_EIG_RATIO * w[2])) return STAIN_DEGENERATE;
	/* e1 = eigenvector of the second largest eigenvalue, e2 = of the largest. Their signs
	 * change nothing: flipping e2 maps phi to -phi, flipping e1 maps it to pi - phi, and
	 * either way the two extreme directions come out swapped, to be ordered by red OD
	 * below. With e2 along the mean OD every tissue pixel projects positively on it, so
	 * the angles do not wrap at +-pi. The signs are fixed (components summing to >= 0)
	 * only so that intermediate values are reproducible. */
	double e1[3] = { v[0][1], v[1][1], v[2][1] }, e2[3] = { v[0][2], v[1][2], v[2][2] };
	if (e1[0] + e1[1] + e1[2] < 0) for (int k = 0; k < 3; k++) e1[k] = -e1[k];
	if (e2[0] + e2[1] + e2[2] < 0) for (int k = 0; k < 3; k++) e2[k] = -e2[k];
	/* phi = atan2(projection on e2, projection on e1) for every tissue pixel */
	double *phi = xmallocarray((size_t)nt, sizeof *phi);
	long j = 0;
	for (long i = 0; i < n; i++) {
		const uint8_t *p = px + 3 * i;
		double o[3] = { lut[p[0]], lut[p[1]], lut[p[2]] };
		if (o[0] < m->beta || o[1] < m->beta || o[2] < m->beta) continue;
		double t0 = o[0] * e1[0] + o[1] * e1[1] + o[2] * e1[2];
		double t1 = o[0] * e2[0] + o[1] * e2[1] + o[2] * e2[2];
		phi[j++] = atan2(t1, t0);
	}
	double minphi = percentile(phi, nt, m->alpha);
	double maxphi = percentile(phi, nt, 100 - m->alpha);
	free(phi);
	double vmin[3], vmax[3];
	for (int k = 0; k < 3; k++) {
		vmin[k] = e1[k] * cos(minphi) + e2[k] * sin(minphi);
		vmax[k] = e1[k] * cos(maxphi) + e2[k] * sin(maxphi);
	}
	/* hematoxylin first: the vector with the larger red OD */
	double he[3][2];
	int hmin = vmin[0] > vmax[0];
	for (int k = 0; k < 3; k++) {
		he[k][0] = hmin ? vmin[k] : vmax[k];
		he[k][1] = hmin ? vmax[k] : vmin[k];
	}
	double pinv[2][3];
	if (pinv32(he, pinv) != 0) return STAIN_DEGENERATE;
	/* concentrations of every pixel (background included), their 99th percentiles */
	double *cc = c ? c : xmallocarray((size_t)n, 2 * sizeof *cc);
	for (long i = 0; i < n; i++) {
		const uint8_t *p = px + 3 * i;
		double r = lut[p[0]], g = lut[p[1]], b = lut[p[2]];
		cc[i] = pinv[0][0] * r + pinv[0][1] * g + pinv[0][2] * b;
		cc[n + i] = pinv[1][0] * r + pinv[1][1] * g + pinv[1][2] * b;
	}
	double maxc[2];
	double *tmp = xmallocarray((size_t)n, sizeof *tmp);
	for (int s = 0; s < 2; s++) {
		memcpy(tmp, cc + (size_t)s * n, sizeof *tmp * (size_t)n);
		maxc[s] = percentile(tmp, n, 99);
	}
	free(tmp);
	if (!c) free(cc);
	for (int s = 0; s < 2; s++)
		if (!(maxc[s] > 1e-6) || !isfinite(maxc[s])) return STAIN_DEGENERATE;
	for (int k = 0; k < 3; k++)
		for (int s = 0; s < 2; s++)
			if (!isfinite(he[k][s])) return STAIN_DEGENERATE;
	memcpy(m->he, he, sizeof he);
	m->maxc[0] = maxc[0];
	m->maxc[1] = maxc[1];
	return STAIN_OK;
}

int macenko_estimate(Macenko *m, const uint8_t *px, long n)
{
	return macenko_core(m, px, n, NULL);
}

static uint8_t to_u8(double v)
{
	if (!(v > 0)) return 0;   /* also NaN, which never reaches here */
	if (v >= 255) return 255;
	return (uint8_t)floor(v + 0.5);
}

int macenko_apply(const Macenko *ref, const uint8_t *in, uint8_t *out, long n)
{
	Macenko src = *ref;
	double *c = xmallocarray((size_t)n > 0 ? (size_t)n : 1, 2 * sizeof *c);
	int st = n > 0 ? macenko_core(&src, in, n, c) : STAIN_FEW_PIXELS;
	if (st != STAIN_OK) {
		free(c);
		if (out != in) memcpy(out, in, (size_t)n * 3);
		return st;
	}
	double s0 = ref->maxc[0] / src.maxc[0], s1 = ref->maxc[1] / src.maxc[1];
	for (long i = 0; i < n; i++) {
		double c0 = c[i] * s0, c1 = c[n + i] * s1;
		for (int k = 0; k < 3; k++)
			out[3 * i + k] = to_u8(ref->io * exp(-(ref->he[k][0] * c0 + ref->he[k][1] * c1)));
	}
	free(c);
	return STAIN_OK;
}

/* ---- colour ---- */

/* sRGB primaries, D65 white (as in scikit-image's color module) */
static const double M_XYZ[3][3] = {
	{ 0.412453, 0.357580, 0.180423 },
	{ 0.212671, 0.715160, 0.072169 },
	{ 0.019334, 0.119193, 0.950227 },
};
static const double WHITE[3] = { 0.95047, 1.0, 1.08883 };
#define LAB_EPS (216.0 / 24389.0)
#define LAB_KAPPA (24389.0 / 27.0)

static double lin_lut[256];
static double m_rgb[3][3];  /* inverse of M_XYZ */
static int colour_ready;

static void colour_init(void)
{
	if (colour_ready) return;
	for (int v = 0; v < 256; v++) {
		double c = v / 255.0;
		lin_lut[v] = c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
	}
	const double (*a)[3] = M_XYZ;
	double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
	           - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
	           + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			/* cofactor of a[j][i] */
			int r0 = (j + 1) % 3, r1 = (j + 2) % 3, c0 = (i + 1) % 3, c1 = (i + 2) % 3;
			m_rgb[i][j] = (a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0]) / det;
		}
	colour_ready = 1;
}

static double lab_f(double t) { return t > LAB_EPS ? cbrt(t) : (LAB_KAPPA * t + 16.0) / 116.0; }
static double lab_finv(double f) { return f > 6.0 / 29.0 ? f * f * f : (116.0 * f - 16.0) / LAB_KAPPA; }

void rgb8_to_lab(const uint8_t rgb[3], double lab[3])
{
	colour_init();
	double l[3] = { lin_lut[rgb[0]], lin_lut[rgb[1]], lin_lut[rgb[2]] };
	double f[3];
	for (int i = 0; i < 3; i++)
		f[i] = lab_f((M_XYZ[i][0] * l[0] + M_XYZ[i][1] * l[1] + M_XYZ[i][2] * l[2]) / WHITE[i]);
	lab[0] = 116.0 * f[1] - 16.0;
	lab[1] = 500.0 * (f[0] - f[1]);
	lab[2] = 200.0 * (f[1] - f[2]);
}

void lab_to_rgb(const double lab[3], double rgb[3])
{
	colour_init();
	double fy = (lab[0] + 16.0) / 116.0;
	double f[3] = { fy + lab[1] / 500.0, fy, fy - lab[2] / 200.0 };
	if (f[2] < 0) f[2] = 0;
	double xyz[3];
	for (int i = 0; i < 3; i++) xyz[i] = lab_finv(f[i]) * WHITE[i];
	for (int i = 0; i < 3; i++) {
		double c = m_rgb[i][0] * xyz[0] + m_rgb[i][1] * xyz[1] + m_rgb[i][2] * xyz[2];
		c = c > 0.0031308 ? 1.055 * pow(c, 1 / 2.4) - 0.055 : 12.92 * c;
		if (!(c > 0)) c = 0;
		if (c > 1) c = 1;
		rgb[i] = c;
	}
}

void lab_to_rgb8(const double lab[3], uint8_t rgb[3])
{
	double c[3];
	lab_to_rgb(lab, c);
	for (int i = 0; i < 3; i++) rgb[i] = to_u8(c[i] * 255.0);
}

/* ---- Reinhard ---- */

/* means and population standard deviations of n LAB triples: two passes (no cancellation) */
static void lab_stats(const double *lab, long n, Reinhard *r)
{
	double s[3] = { 0, 0, 0 }, ss[3] = { 0, 0, 0 };
	for (long i = 0; i < n; i++)
		for (int k = 0; k < 3; k++) s[k] += lab[3 * i + k];
	for (int k = 0; k < 3; k++) r->mean[k] = s[k] / (double)n;
	for (long i = 0; i < n; i++)
		for (int k = 0; k < 3; k++) {
			double d = lab[3 * i + k] - r->mean[k];
			ss[k] += d * d;
		}
	for (int k = 0; k < 3; k++) r->std[k] = sqrt(ss[k] / (double)n);
}

static double *to_lab(const uint8_t *px, long n)
{
	double *lab = xmallocarray((size_t)n, 3 * sizeof *lab);
	for (long i = 0; i < n; i++) rgb8_to_lab(px + 3 * i, lab + 3 * i);
	return lab;
}

int reinhard_estimate(Reinhard *r, const uint8_t *px, long n)
{
	if (n <= 0) return STAIN_FEW_PIXELS;
	double *lab = to_lab(px, n);
	lab_stats(lab, n, r);
	free(lab);
	return STAIN_OK;
}

int reinhard_apply(const Reinhard *ref, const uint8_t *in, uint8_t *out, long n)
{
	if (n <= 0) return STAIN_FEW_PIXELS;
	double *lab = to_lab(in, n);
	Reinhard src;
	lab_stats(lab, n, &src);
	if (src.std[0] < 1e-6 && src.std[1] < 1e-6 && src.std[2] < 1e-6) {
		/* one flat colour: nothing to match */
		free(lab);
		if (out != in) memcpy(out, in, (size_t)n * 3);
		return STAIN_DEGENERATE;
	}
	double scale[3];
	for (int k = 0; k < 3; k++) scale[k] = src.std[k] < 1e-6 ? 1.0 : ref->std[k] / src.std[k];
	for (long i = 0; i < n; i++) {
		double *l = lab + 3 * i;
		for (int k = 0; k < 3; k++) l[k] = (l[k] - src.mean[k]) * scale[k] + ref->mean[k];
		lab_to_rgb8(l, out + 3 * i);
	}
	free(lab);
	return STAIN_OK;
}

/* ---- tissue ---- */

double tissue_fraction(const uint8_t *px, long n, int method, double thr, double io)
{
	if (n <= 0) return 0;
	unsigned char is[256];
	long t = 0;
	if (method == TISSUE_OD) {
		for (int v = 0; v < 256; v++) is[v] = od_of(v, io) > thr;
		for (long i = 0; i < n; i++) {
			const uint8_t *p = px + 3 * i;
			t += is[p[0]] | is[p[1]] | is[p[2]];
		}
	} else {
		colour_init();
		for (long i = 0; i < n; i++) {
			const uint8_t *p = px + 3 * i;
			double y = M_XYZ[1][0] * lin_lut[p[0]] + M_XYZ[1][1] * lin_lut[p[1]] + M_XYZ[1][2] * lin_lut[p[2]];
			double l = 116.0 * lab_f(y) - 16.0;
			t += l / 100.0 < thr;
		}
	}
	return (double)t / (double)n;
}
