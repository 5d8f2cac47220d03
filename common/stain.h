/* stain.h: H&E stain normalisation (Macenko, Reinhard), optical density, colour
 * conversions, tissue masks. Pixels are RGB8 triples, n of them, contiguous.
 * Everything is computed in double; no function ever produces NaN: an image the method
 * cannot handle (too few tissue pixels, one stain only, a flat colour) is reported by a
 * non-zero status and copied through unchanged. docs/STAIN.md gives the definitions. */
#ifndef DAPIPE_STAIN_H
#define DAPIPE_STAIN_H

#include <stddef.h>
#include <stdint.h>

/* status of an estimate or an application */
enum {
	STAIN_OK = 0,
	STAIN_FEW_PIXELS,   /* fewer than STAIN_MIN_PIXELS tissue pixels */
	STAIN_DEGENERATE,   /* one stain, a flat colour, a singular stain matrix, zero spread */
	STAIN_COUNT
};
extern const char *stain_status_names[STAIN_COUNT];
#define STAIN_MIN_PIXELS 16
/* Macenko: a second eigenvalue below this fraction of the first means one stain */
#define STAIN_MIN_EIG_RATIO 1e-3

/* ---- optical density ---- */
/* OD of an 8-bit intensity v under illumination io: -ln((v + 1) / io) */
double od_of(int v, double io);

/* ---- Macenko ---- */
typedef struct {
	double io;         /* transmitted light intensity, 240 */
	double alpha;      /* angle percentile, 1 (uses alpha and 100 - alpha) */
	double beta;       /* OD threshold of the pixels used for the stain vectors, 0.15 */
	double he[3][2];   /* stain matrix: column 0 hematoxylin, column 1 eosin (OD per R,G,B) */
	double maxc[2];    /* 99th percentile of the concentrations */
} Macenko;
/* the usual reference: he = [[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]],
 * maxc = [1.9705, 1.0308], io 240, alpha 1, beta 0.15 */
void macenko_defaults(Macenko *m);
/* Estimate m->he and m->maxc of n pixels (using m->io, alpha, beta). STAIN_OK or a
 * fallback status (m->he/maxc untouched then). */
int macenko_estimate(Macenko *m, const uint8_t *px, long n);
/* Normalise n pixels from their own estimate to the reference ref: out may equal in.
 * On a fallback status out is a copy of in. */
int macenko_apply(const Macenko *ref, const uint8_t *in, uint8_t *out, long n);

/* ---- colour: sRGB (D65) <-> linear <-> XYZ <-> CIELAB ---- */
void rgb8_to_lab(const uint8_t rgb[3], double lab[3]);
/* back to 8-bit sRGB: clipped to [0,1], rounded to nearest */
void lab_to_rgb8(const double lab[3], uint8_t rgb[3]);
void lab_to_rgb(const double lab[3], double rgb[3]);   /* [0,1], clipped */

/* ---- Reinhard (CIELAB means and standard deviations) ---- */
typedef struct {
	double mean[3];
	double std[3];
} Reinhard;
/* statistics of n pixels (population standard deviation); STAIN_FEW_PIXELS if n == 0 */
int reinhard_estimate(Reinhard *r, const uint8_t *px, long n);
/* lab' = (lab - mean_img) / std_img * std_ref + mean_ref per channel; a channel of zero
 * spread (std_img < 1e-6) is shifted only. out may equal in. */
int reinhard_apply(const Reinhard *ref, const uint8_t *in, uint8_t *out, long n);

/* ---- tissue masks ---- */
enum { TISSUE_OD, TISSUE_LIGHTNESS };
/* fraction of tissue pixels: TISSUE_OD: OD > thr in any channel (io used);
 * TISSUE_LIGHTNESS: L* / 100 < thr. 0 for n == 0. */
double tissue_fraction(const uint8_t *px, long n, int method, double thr, double io);

/* ---- helpers (exposed for tests) ---- */
/* q-th percentile (0..100) with linear interpolation (numpy's default); a is reordered */
double percentile(double *a, long n, double q);
/* eigen-decomposition of a symmetric 3x3 matrix (Jacobi): w ascending, v[:,i] the
 * eigenvector of w[i] (columns) */
void sym3_eig(const double a[3][3], double w[3], double v[3][3]);

#endif
