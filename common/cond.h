/* cond.h: conditional adversarial alignment (CDAN, Long et al. 2018, "Conditional
 * Adversarial Domain Adaptation", NeurIPS).
 *
 * The domain head reads the multilinear map of the latent row z (H) and the
 * classifier's probabilities p (K) instead of z alone:
 *   T[i, k*H + h] = p[i,k] z[i,h]          (B, K*H), the layout of the published code
 *                                          (bmm(p^T, z) flattened class-major)
 * so that it aligns the joint distribution of features and predictions, not the
 * marginal of the features. p is treated as a constant (the published code detaches
 * it): the encoder's gradient from dT is
 *   dz[i,h] += sum_k p[i,k] dT[i, k*H + h].
 * CDAN+E weights each row's domain loss by e_i = 1 + exp(-H(p_i)) (H the entropy in
 * nats), normalised within each domain; here as the per-row weights w_i of the
 * weighted BCE (1/B) sum_i w_i BCE_i: w_i = (B/2) e_i / sum_{j in domain(i)} e_j, so
 * that each domain carries half of the loss whatever its row count (the published
 * sum_i (e_i / S_dom(i)) BCE_i / 2). */
#ifndef DAPIPE_COND_H
#define DAPIPE_COND_H

/* T (B, K*H) = the map of P (B,K) and Z (B,H) */
void cond_map(float *T, const float *P, const float *Z, int B, int K, int H);
/* dZ (B,H) += the gradient through the map of scale * dT, P held constant */
void cond_map_backward(float *dZ, const float *P, const float *dT, float scale, int B, int K, int H);
/* w (B): CDAN+E weights; rows [0, ns) are the source, [ns, B) the target (each
 * domain needs at least one row) */
void cond_entropy_weights(float *w, const float *P, int B, int ns, int K);

#endif
