/* align.h: domain-alignment metrics between source and target features
 * (latent features from encode --model; docs/EXPLAIN.md).
 *
 * Proxy A-distance (Ben-David et al. 2007, Ganin et al. 2016): a fresh linear domain
 * classifier (logistic regression, the project's MLP with one Linear layer, Adam,
 * class-balanced BCE, features standardised on the training half) is trained on a
 * seeded half of each domain; its balanced error eps on the other halves gives
 * PAD = 2 (1 - 2 eps). Identical distributions: eps ~ 0.5, PAD ~ 0 (it may fall
 * slightly below 0 by chance); separable domains: eps = 0, PAD = 2. The balanced error
 * (mean of the two per-domain error rates) keeps a trivial majority vote at PAD 0
 * when the domains differ in size.
 *
 * MMD: squared maximum mean discrepancy, the unbiased estimate
 *   MMD2_u = sum_{i!=j} k(s_i,s_j)/(m(m-1)) + sum_{i!=j} k(t_i,t_j)/(n(n-1)) - 2 sum k(s_i,t_j)/(mn)
 * with the RBF kernel k(a,b) = exp(-|a-b|^2 / (2 sigma^2)) and the median heuristic
 * sigma^2 = median of the pairwise squared distances of the pooled sample (so
 * sigma is the median distance). At most max_rows rows per domain (a seeded subsample)
 * enter MMD: the cost is quadratic. */
#ifndef DAPIPE_ALIGN_H
#define DAPIPE_ALIGN_H

#include <stdint.h>

typedef struct {
	double pad;          /* 2 (1 - 2 err) */
	double err;          /* balanced test error */
	double err_source, err_target;
	int n_train, n_test;
} PadResult;
/* zs (ns,H), zt (nt,H); each domain needs at least 2 rows. */
void align_pad(const float *zs, int ns, const float *zt, int nt, int H, uint64_t seed, PadResult *r);

typedef struct {
	double mmd2;         /* unbiased, may be slightly negative */
	double mmd;          /* sqrt(max(mmd2, 0)) */
	double sigma2;       /* kernel bandwidth sigma^2 */
	int ns, nt;          /* rows used */
} MmdResult;
void align_mmd(const float *zs, int ns, const float *zt, int nt, int H, uint64_t seed, int max_rows, MmdResult *r);

#endif
