/* nn.h: layers, losses, the MLP used by every stage, the WGAN-GP gradient penalty,
 * optimisers and schedules. Shapes are row-major, outermost first. Layer functions
 * come in forward/backward pairs in llm.c's shape: outputs, then caches, then inputs,
 * then weights, then sizes. Backward functions ADD into gradients (+=); zeroing is
 * a separate call. All dense math goes through blas.h (OpenBLAS). */
#ifndef DAPIPE_NN_H
#define DAPIPE_NN_H

#include <stddef.h>
#include <stdint.h>
#include "rng.h"

/* ---- layers ---- */
/* inp (B,C), w (OC,C), b (OC) or NULL, out (B,OC) */
void linear_forward(float *out, const float *inp, const float *w, const float *b, int B, int C, int OC);
/* dinp (B,C) or NULL, dw (OC,C), db (OC) or NULL, dout (B,OC) */
void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int B, int C, int OC);
void relu_forward(float *out, const float *inp, long n);
void relu_backward(float *dinp, const float *dout, const float *inp, long n);
void leaky_relu_forward(float *out, const float *inp, float slope, long n);
void leaky_relu_backward(float *dinp, const float *dout, const float *inp, float slope, long n);
/* tanh: backward takes the forward OUTPUT (1 - out^2) */
void tanh_forward(float *out, const float *inp, long n);
void tanh_backward(float *dinp, const float *dout, const float *out, long n);
/* BatchNorm1d over inp (B,C). train: batch statistics (biased variance for
 * normalising, unbiased for the running update, like PyTorch), mean/rstd (C) cached,
 * running_mean/var updated with momentum. !train: running statistics. B must be > 1
 * in training (the caller guarantees it). */
void batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma, const float *beta,
                       float *running_mean, float *running_var, float momentum, float eps, int train, int B, int C);
/* training-mode backward (uses the cached batch mean/rstd) */
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int B, int C);
/* LayerNorm over the last dimension of inp (B,C); mean/rstd (B) cached */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma, const float *beta, float eps, int B, int C);
void layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int B, int C);
/* inverted dropout: mask[i] = 0 or 1/(1-p), drawn from rng */
void dropout_forward(float *out, float *mask, const float *inp, float p, Rng *rng, long n);
void dropout_backward(float *dinp, const float *dout, const float *mask, long n);
/* gradient reversal layer: identity forward; backward dinp += -lambda * dout */
void grl_backward(float *dinp, const float *dout, float lambda, long n);

/* ---- losses (each returns the loss; d* may be NULL; gradients are of the returned loss).
 * Unlike the layers, a loss WRITES its gradient (d* = dloss/dinput, not +=): it is where
 * backward starts. Scale it yourself to weight a loss term. ---- */
/* Softmax cross-entropy on logits (B,K) with labels y (B); rows with y < 0 are ignored.
 * class_w (K) or NULL; smoothing in [0,1). PyTorch semantics: weighted mean over the
 * labelled rows (sum w_y l / sum w_y). probs (B,K) or NULL receives softmax(logits).
 * Returns 0 with zero gradient when no row is labelled. *ncorrect (or NULL) counts
 * labelled rows whose argmax equals y. Never apply softmax before calling this. */
float softmax_xent(float *dlogits, float *probs, int *ncorrect, const float *logits, const int32_t *y,
                   const float *class_w, float smoothing, int B, int K);
/* mean binary cross-entropy with logits (B), targets t in [0,1] */
float bce_logits(float *dlogit, const float *logit, const float *t, int B);
/* mean softplus(sign * s) over s (B): the critic losses are
 * critic:  -mean softplus(D(zs)) + mean softplus(D(zt))  (= -sp(+1, Ds) + sp(+1, Dt))
 * encoder: -mean softplus(D(zt)) */
float mean_softplus(float *ds, const float *s, float sign, int B);
/* the same with row weights w (B), w >= 0, or NULL (all 1): (1/B) sum_i w_i l_i, not
 * normalised by sum w (importance weights keep their scale); the domain losses of
 * importance-weighted alignment (train-step --align weighted) */
float bce_logits_w(float *dlogit, const float *logit, const float *t, const float *w, int B);
float mean_softplus_w(float *ds, const float *s, const float *w, float sign, int B);
/* Label shift: the target class proportions q (K) under which a classifier trained
 * with class proportions p (K) produced the probabilities P (n,K) on target rows, by
 * EM (Saerens, Latinne & Decaestecker 2002; maximum likelihood when p(x|y) is shared):
 * q = p, then r_jc = P_jc q_c/p_c / sum_k P_jk q_k/p_k and q_c = mean_j r_jc until q
 * moves less than tol in L1 or after max_iter rounds. Classes with p_c = 0 get q_c = 0.
 * Returns the rounds used. Importance weights of the source rows: w_c = q_c / p_c. */
int prior_shift_em(double *q, const float *P, int n, int K, const double *p, int max_iter, double tol);

/* ---- MLP ---- */
typedef enum { ACT_RELU, ACT_LEAKY_RELU, ACT_TANH, ACT_COUNT } Act;
typedef enum { NORM_NONE, NORM_BATCH, NORM_LAYER, NORM_COUNT } Norm;
extern const char *act_names[ACT_COUNT];
extern const char *norm_names[NORM_COUNT];

#define MLP_MAXLAYERS 16
typedef struct {
	int in;                      /* input width */
	int nlayers;                 /* hidden blocks + (head ? 1 : 0) */
	int widths[MLP_MAXLAYERS];   /* output width of each layer */
	Act act;
	float slope;                 /* LeakyReLU slope, default 0.2 */
	Norm norm;
	float dropout;               /* probability, 0 = none */
	int head;                    /* 1: the last layer is a plain Linear (logits/score) */
	float bn_momentum;           /* default 0.1 */
	float eps;                   /* default 1e-5 */
} MlpSpec;
/* Block order for each hidden layer: Linear -> activation -> norm -> dropout
 * (the published encoder: Linear, ReLU, BatchNorm, Dropout). */

/* defaults: act relu, slope 0.2, norm none, dropout 0, head 0, bn_momentum 0.1, eps 1e-5
 * (mlp_new also takes eps <= 0 and bn_momentum <= 0 as these defaults) */
void mlp_spec_init(MlpSpec *s);

typedef struct Mlp Mlp;
Mlp *mlp_new(const MlpSpec *spec, uint64_t seed);  /* PyTorch default init: U(-1/sqrt(in), 1/sqrt(in)) for w and b; BN gamma 1 beta 0 */
void mlp_free(Mlp *m);
const MlpSpec *mlp_spec(const Mlp *m);
int mlp_out(const Mlp *m);
/* Forward x (B,in) -> returns (B,out), owned by m, valid until the next forward.
 * train: batch statistics and dropout (seeded by the mlp's rng). Caches what backward needs;
 * B may change from call to call (buffers grow). */
const float *mlp_forward(Mlp *m, const float *x, int B, int train);
/* Backward from dout (B,out) of the last forward: ADDS parameter gradients;
 * dx (B,in) is written (not added) when non-NULL (NULL skips the input-gradient matmul).
 * After a forward with train = 0, BatchNorm is differentiated with its running
 * statistics as constants. */
void mlp_backward(Mlp *m, const float *dout, float *dx);
void mlp_zero_grad(Mlp *m);
/* all parameters in one allocation; grads parallel to it */
size_t mlp_nparams(const Mlp *m);
float *mlp_params(Mlp *m);
float *mlp_grads(Mlp *m);
/* named tensors for save/load: parameters then buffers (running mean/var).
 * name like "l0.w", "l0.b", "l0.bn.gamma", "l0.bn.running_mean". */
int mlp_ntensors(const Mlp *m);
const char *mlp_tensor(Mlp *m, int i, int *ndim, int64_t shape[2], float **data);
/* the gradient of tensor i (parallel to its data), NULL for buffers */
float *mlp_tensor_grad(Mlp *m, int i);
/* index of the tensor with this name, -1 if none */
int mlp_find_tensor(const Mlp *m, const char *name);
void mlp_set_seed(Mlp *m, uint64_t seed);  /* dropout stream */
/* rng state for exact resume */
Rng *mlp_rng(Mlp *m);

/* WGAN-GP gradient penalty for a critic MLP (norm none, dropout 0, act relu or leaky, head 1, out 1):
 * xhat (B,in) interpolates; returns weight * mean_b (||dD(xhat_b)/dxhat_b||_2 - 1)^2 and
 * ADDS its gradient with respect to the critic parameters (exact double backpropagation).
 * Fails (returns NAN) if the MLP is not of that kind. */
float mlp_gradient_penalty(Mlp *m, const float *xhat, int B, float weight);

/* ---- optimisers ---- */
typedef enum { OPT_ADAM, OPT_ADAMW, OPT_SGD, OPT_COUNT } OptKind;
extern const char *opt_names[OPT_COUNT];
typedef struct {
	OptKind kind;
	float beta1, beta2, eps;     /* Adam: 0.9 0.999 1e-8 */
	float weight_decay;          /* Adam, SGD: L2 added to the gradient (PyTorch); AdamW: decoupled */
	float momentum;              /* SGD (PyTorch semantics, no dampening, no Nesterov) */
	long t;                      /* steps taken */
	size_t n;
	float *m, *v;                /* moments (Adam) / velocity (SGD in m) */
} Optim;
void optim_init(Optim *o, OptKind kind, size_t n);
/* n elements of size bytes for a large buffer (parameters, gradients, moments,
 * activations): from 4 MiB on aligned to 2 MiB and marked for transparent huge pages
 * (fewer page faults and TLB misses when a product streams through it); zero: cleared.
 * Released with free(). */
void *nn_alloc(size_t n, size_t size, int zero);
void optim_free(Optim *o);
void optim_step(Optim *o, float *params, const float *grads, float lr);
/* the same step, then grads set to zero, in one pass over memory */
void optim_step_zero(Optim *o, float *params, float *grads, float lr);
/* The same step in pieces, e.g. each band of a gradient right after it is computed:
 * optim_step_begin counts the step and fixes its constants, then optim_step_range
 * updates params[lo, hi) from grads[lo, hi) and zeroes those gradients. Every element
 * of params must be covered once per step; each element is updated alone, so the
 * pieces give exactly what optim_step_zero gives. */
typedef struct {
	Optim *o;
	float lr, inv_bc2_sqrt, step_size, shrink, l2;
} OptimStep;
void optim_step_begin(Optim *o, float lr, OptimStep *st);
void optim_step_range(const OptimStep *st, float *params, float *grads, size_t lo, size_t hi);
/* mlp_backward, then the optimiser step with rate lr and the gradients zeroed
 * (optim_step_zero over all parameters), with the same result; without dx and with a
 * large first layer, that layer's weight gradient is computed and used by the step in
 * bands, on the pool's threads (blas_parallel). */
void mlp_backward_step(Mlp *m, const float *dout, float *dx, Optim *opt, float lr);

/* ---- schedules; p in [0,1] is training progress ---- */
float sched_lr_ganin(float lr0, float p);   /* lr0 / (1 + 10 p)^0.75 */
float sched_lambda_ganin(float p);          /* 2 / (1 + exp(-10 p)) - 1 */

#endif
