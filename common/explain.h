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
 * F = H*W*3 flattened values (row-major): reshape the attribution row to (H,W,3). */
#ifndef DAPIPE_EXPLAIN_H
#define DAPIPE_EXPLAIN_H

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
} IgModel;

/* Start the two stages (enc_cmd, cls_cmd; NULL: the encode and predict binaries
 * next to this program, with --stage) and load the bundle's encoder and
 * classifier params into them. Dies naming the stage on any failure. */
void ig_start(IgModel *g, const Bundle *b, const char *enc_cmd, const char *cls_cmd);
void ig_stop(IgModel *g);

typedef struct {
	int steps;          /* default 50 */
	IgRule rule;        /* default trapezoid */
	IgOutput output;    /* default probability */
	int max_rows;       /* interpolated rows per request, default 2048 */
} IgOptions;
void ig_options_init(IgOptions *o);

/* Attributions of n inputs x (n,F) against base (F): attr (n,F). cls (n): the
 * class to attribute, or -1 for the predicted one (argmax of the logits at x),
 * which is then written back. fx, fb (n): f at x and at the baseline. */
void ig_attribute(IgModel *g, const IgOptions *o, const float *x, int n, const float *base,
                  int *cls, float *attr, double *fx, double *fb);

/* ---- the predict --explain driver ---- */
typedef enum { IG_CLASS_PREDICTED, IG_CLASS_LABEL, IG_CLASS_NAMED } IgClassMode;
typedef struct {
	const char *model;        /* bundle */
	const char *input;        /* data stream, "-" = stdin */
	const char *encoder, *classifier;  /* stage commands or NULL */
	IgOptions ig;
	IgClassMode class_mode;
	const char *class_name;   /* IG_CLASS_NAMED */
	const char *baseline;     /* "zeros", "source-mean", "blur" or a data stream file */
	const char *out_stream;   /* per-sample attribution stream, or NULL */
	const char *ranking;      /* per-class gene ranking CSV, or NULL */
	int rank_abs;             /* rank by mean |attribution| instead of mean attribution */
	int top;                  /* rows per class in the ranking, 0 = all */
	const char *completeness; /* CSV file, NULL = stdout */
} ExplainArgs;
void explain_args_init(ExplainArgs *a);
void explain_run(const ExplainArgs *a);

#endif
