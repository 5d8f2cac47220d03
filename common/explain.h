/* explain.h: Integrated Gradients through the stages (docs/EXPLAIN.md).
 *
 * For an input x (F), a baseline x' (F) and a class c, the attribution of feature j is
 *
 *     IG_j(x) = (x_j - x'_j) * integral_0^1 df(x' + a (x - x'))/dx_j da
 *
 * where f is the class probability softmax(logits)_c (default) or the logit c.
 * Completeness: sum_j IG_j = f(x) - f(x'), up to the quadrature error.
 *
 * The model is never evaluated in this process: the encoder and classifier stages
 * are child processes (common/proto.h) loaded with the bundle's params frames
 * (request "load"); each chunk of interpolated inputs costs one evaluation-mode
 * "forward" and one "backward" with want_dx per stage. So any stage that speaks the
 * protocol (docs/STAGES.md), a user's own included, can be explained.
 *
 * Inputs are rows of F floats. An image (H,W,3) is attributed the same way, as its
 * F = H*W*3 flattened values (row-major, pixels / 255): reshape the attribution row
 * to (H,W,3). For tiles the driver also writes heatmap PNGs (ig_heatmap) and offers
 * a per-tile baseline, the tile blurred with a Gaussian (ig_blur). */
#ifndef DAPIPE_EXPLAIN_H
#define DAPIPE_EXPLAIN_H

#include "image.h"
#include "proto.h"
#include "stage.h"

typedef enum { IG_TRAPEZOID, IG_GAUSS, IG_RULE_COUNT } IgRule;
typedef enum { IG_PROB, IG_LOGIT, IG_OUTPUT_COUNT } IgOutput;
extern const char *ig_rule_names[IG_RULE_COUNT];     /* "trapezoid", "gauss-legendre" */
extern const char *ig_output_names[IG_OUTPUT_COUNT]; /* "probability", "logit" */

/* Quadrature of int_0^1 g(a) da on `steps` intervals/nodes: nodes alpha in [0,1]
 * ascending and weights w summing to 1. Trapezoid: steps+1 nodes k/steps (the end
 * points included); Gauss-Legendre: steps interior nodes. Returns the node count
 * (arrays must hold steps+1). */
int ig_nodes(IgRule rule, int steps, double *alpha, double *w);

typedef struct {
	Peer enc, cls;
	int F, H, K;
	int resnet;         /* the encoder params are a ResNet's (arch.kind "resnet") */
	int th, tw;         /* its input tile (resnet only) */
	int max_rows;       /* rows per request the encoder can differentiate, 0 = any */
} IgModel;

/* Start the two stages (enc_cmd, cls_cmd; NULL: the encode and predict binaries
 * next to this program, with --stage, and --arch resnet for a ResNet encoder) and
 * load the bundle's encoder and classifier params into them. A ResNet stage
 * differentiates an evaluation forward of at most RESNET_EVAL_CHUNK (32) rows, so
 * max_rows is set to that and ig_attribute chunks its requests accordingly.
 * Dies naming the stage on any failure. */
void ig_start(IgModel *g, const Bundle *b, const char *enc_cmd, const char *cls_cmd);
void ig_stop(IgModel *g);

typedef struct {
	int steps;          /* default 50 */
	IgRule rule;        /* default trapezoid */
	IgOutput output;    /* default probability */
	int max_rows;       /* interpolated rows per request, default 2048 */
} IgOptions;
void ig_options_init(IgOptions *o);

/* Attributions of n inputs x (n,F) against baselines base: sample s uses
 * base + s * base_stride (F values; base_stride 0: one baseline for all, F: one
 * per sample): attr (n,F). cls (n): the class to attribute, or -1 for the
 * predicted one (argmax of the logits at x), which is then written back. fx, fb
 * (n): f at x and at the baseline. */
void ig_attribute(IgModel *g, const IgOptions *o, const float *x, int n, const float *base,
                  size_t base_stride, int *cls, float *attr, double *fx, double *fb);

/* ---- tiles ---- */
/* Gaussian blur of an image x (h,w,c) into out (h,w,c) (not in place): separable,
 * kernel radius ceil(3 sigma), edges mirrored (half-sample symmetric, as scipy's
 * "reflect"); sigma 0 copies. */
void ig_blur(float *out, const float *x, int h, int w, int c, double sigma);

typedef enum { HEAT_ABS, HEAT_SIGNED, HEAT_MODE_COUNT } HeatMode;
extern const char *heat_mode_names[HEAT_MODE_COUNT]; /* "abs", "signed" */
typedef struct {
	HeatMode mode;      /* abs: sum_c |attr| (default); signed: sum_c attr */
	double smooth;      /* Gaussian sigma (px) applied to the map before colouring, default 1 */
	double clip;        /* percentile of |map| mapped to full colour, default 99 */
	double max;         /* > 0: this map value at full colour for every tile instead */
	double alpha;       /* opacity of the colour at full scale, default 0.75 */
	int scale;          /* integer upscaling (nearest neighbour), default 1 */
	int panel;          /* 1: the tile and the overlay side by side */
} HeatOptions;
void heat_options_init(HeatOptions *o);
/* The heatmap of one tile: the attribution map (sum over channels of attr (h,w,3),
 * |.| or signed), smoothed and scaled by its clip percentile, coloured and blended
 * over the tile px (h,w,3 bytes). abs: transparent -> yellow -> red; signed: blue
 * (against the class) and red (for it). out is allocated ((h,w) * scale, twice as
 * wide with panel). Returns the map value shown at full colour (the scale: o->max
 * if set, else the tile's own clip percentile). */
double ig_heatmap(Image *out, const uint8_t *px, const float *attr, int h, int w, const HeatOptions *o);

/* ---- the predict --explain driver ---- */
typedef enum { IG_CLASS_PREDICTED, IG_CLASS_LABEL, IG_CLASS_NAMED } IgClassMode;
typedef struct {
	const char *model;        /* bundle */
	const char *input;        /* data stream, "-" = stdin */
	const char *encoder, *classifier;  /* stage commands or NULL */
	IgOptions ig;
	IgClassMode class_mode;
	const char *class_name;   /* IG_CLASS_NAMED */
	const char *baseline;     /* "zeros", "source-mean", "blur" or a data or image stream
	                           * file; NULL: blur for an image model, else zeros */
	double blur_sigma;        /* --baseline blur: Gaussian sigma in pixels, default 4 */
	const char *heatmaps;     /* folder for one PNG per tile, or NULL */
	HeatOptions heat;
	const char *out_stream;   /* per-sample attribution stream, or NULL */
	const char *ranking;      /* per-class gene ranking CSV, or NULL */
	int rank_abs;             /* rank by mean |attribution| instead of mean attribution */
	int top;                  /* rows per class in the ranking, 0 = all */
	const char *completeness; /* CSV file, NULL = stdout */
} ExplainArgs;
void explain_args_init(ExplainArgs *a);
void explain_run(const ExplainArgs *a);

#endif
