/* validate.h: unsupervised validators, scores of a trained model that need no target
 * labels (docs/VALIDATION.md). Pure functions on arrays: probabilities p (n,K) are
 * row-stochastic (softmax of the classifier's logits), features z (n,H) are latent
 * rows, all row-major.
 *
 * Every score is oriented so that HIGHER IS BETTER (val_score turns entropy and DEV,
 * which are smaller for better models, into their negatives). */
#ifndef DAPIPE_VALIDATE_H
#define DAPIPE_VALIDATE_H
#include <stdint.h>

enum {
	VAL_SOURCE_ACC,   /* accuracy on the labelled source validation split */
	VAL_ENTROPY,      /* -mean entropy of the target predictions */
	VAL_IM,           /* information maximisation: H(mean p) - mean H(p) on the target */
	VAL_SND,          /* soft neighbourhood density of the target predictions */
	VAL_DEV,          /* -deep embedded validation risk (importance-weighted source loss) */
	VAL_REVERSE,      /* reverse validation: target pseudo-labels -> source accuracy */
	VAL_COUNT
};
extern const char *val_names[VAL_COUNT];  /* "source-val", "entropy", "im", "snd", "dev", "reverse" */
int val_find(const char *name);           /* index, or -1 */

/* in place: logits (n,K) -> softmax probabilities */
void val_softmax(float *p, int n, int K);
/* mean over rows of -sum_k p log p (nats) */
double val_entropy(const float *p, int n, int K);
/* H(mean_i p_i) - mean_i H(p_i) (mutual information of input and prediction) */
double val_im(const float *p, int n, int K);
/* soft neighbourhood density (Saito et al. 2021): rows L2-normalised, cosine
 * similarities to every other row divided by tau (0.05 in the paper), softmax per row
 * without the row itself, mean entropy of those rows. Needs n >= 2 (else NAN). */
double val_snd(const float *p, int n, int K, double tau);
/* deep embedded validation (You et al. 2019): a logistic-regression domain classifier
 * on standardised features (two-fold cross-fitting, L2), density ratios
 * w = (ns/nt) p(t|z)/(1-p(t|z)) on the source validation rows, and the
 * control-variate estimate mean(wl) + eta mean(w) - eta, eta = -Cov(wl,w)/Var(w).
 * zs (ns,H) source validation features, loss (ns) their cross-entropies, zt (nt,H)
 * target features. Lower is better. NAN when ns < 4 or nt < 4; +INFINITY when the
 * mean weight is below 0.1 (it should be 1: the domains do not overlap in z, so no
 * source row informs the target risk). */
double val_dev(const float *zs, const float *loss, int ns, const float *zt, int nt, int H, uint64_t seed);
/* reverse validation: a softmax regression fitted on the target features zt (nt,H) with
 * the model's pseudo-labels pl (nt), accuracy of it on the source validation rows zs (ns,H)
 * with their true labels ys (ns). NAN when ns < 1 or nt < 2. */
double val_reverse(const float *zt, const int32_t *pl, int nt, const float *zs, const int32_t *ys, int ns,
                   int H, int K);
/* the oriented score (higher is better) of a validator's raw value */
double val_score(int v, double raw);
#endif
