/* combat.h: ComBat batch correction (Johnson, Li & Rabinovic 2007), parametric
 * empirical Bayes and the mean-only variant, as in sva::ComBat (par.prior = TRUE,
 * no ref.batch). See docs/ARCHS4.md.
 *
 * Matrices are SAMPLES x GENES, row-major (n, G), like the rows of a data stream
 * (sva takes genes x samples; the arithmetic is the same). Each sample has a batch
 * index in [0, nbatch) and, optionally, a level of one categorical covariate in
 * [0, nlevel) (the biological signal to preserve, e.g. the class label); nlevel = 1
 * means no covariate.
 *
 * The fit is one pass over the samples and keeps only sufficient statistics: for
 * every (batch, level) cell and gene, the count, mean and sum of squared deviations
 * (Welford, merged with Chan's formula). Everything ComBat computes (the regression
 * on batch and covariate, the pooled variance, gamma-hat, delta-hat, the priors and
 * the iterative posterior) is a function of these, so the fit runs in bounded memory
 * O(nbatch * nlevel * G), can be fitted in slices and merged (fit per chunk, merge,
 * finalize), and the adjustment is then applied row by row to any samples of a
 * batch seen in the fit. Applying to the fitted samples themselves gives sva's
 * ComBat output (within rounding, checked by tests/unit/test_combat.c).
 *
 * As in sva 3.46: genes with zero variance inside a batch of more than one sample
 * are left unadjusted (and out of the priors); a batch of one sample forces the
 * mean-only variant; a covariate confounded with batch is an error. Missing values
 * (NaN) are not supported (combat_add dies). */
#ifndef DAPIPE_COMBAT_H
#define DAPIPE_COMBAT_H

#include <stdint.h>
#include "stream.h"

typedef struct {
	int ngenes, nbatch, nlevel;
	int mean_only;          /* asked for */
	char **genes;           /* (G) names, or NULL */
	char **batches;         /* (nbatch) names, or NULL */
	char **levels;          /* (nlevel) names, or NULL */
	/* accumulators; cell c = b * nlevel + l */
	double *cn;             /* (C) samples */
	double *cmean, *cm2;    /* (C, G) mean and sum of squared deviations */
	/* fitted by combat_finalize */
	int fitted;
	int mean_only_used;     /* mean-only in effect (asked, or a batch of one sample) */
	int *iterations;        /* (nbatch) posterior iterations (0: mean-only or empty) */
	double *grand_mean;     /* (G) */
	double *var_pooled;     /* (G) */
	double *alpha;          /* (nlevel, G) covariate effect of each level (reference level 0) */
	double *alpha_mean;     /* (G) sample-weighted mean of alpha: used for samples of unknown level */
	double *gamma_hat, *delta_hat;    /* (nbatch, G) */
	double *gamma_star, *delta_star;  /* (nbatch, G) */
	uint8_t *adjust;        /* (G) 1: adjusted, 0: left as is (uniform within a batch) */
	double *sd;             /* (G) sqrt(var_pooled), derived */
	double *inv_sqrt_delta; /* (nbatch, G) 1 / sqrt(delta_star), derived */
} Combat;

/* names may be NULL (then "0", "1", ... are used when saving) */
void combat_init(Combat *c, int ngenes, int nbatch, int nlevel, int mean_only,
                 char *const *genes, char *const *batches, char *const *levels);
void combat_free(Combat *c);
/* accumulate x (n, G); batch (n) in [0, nbatch); level (n) in [0, nlevel) or NULL
 * (all level 0). Dies on NaN/Inf, naming the sample row and gene. */
void combat_add(Combat *c, const float *x, int n, const int32_t *batch, const int32_t *level);
/* out += in (same sizes and mean_only) */
void combat_merge(Combat *out, const Combat *in);
/* compute the adjustment; dies if the design is singular (covariate confounded with
 * batch) or no batch has samples. Returns the number of genes left unadjusted. */
int combat_finalize(Combat *c);
/* adjust x (n, G) in place; level may be NULL or hold -1 for "unknown" (then the mean
 * covariate effect is used: exact for mean-only, an approximation otherwise).
 * Dies if a batch had no samples in the fit. */
void combat_apply(const Combat *c, float *x, int n, const int32_t *batch, const int32_t *level);
/* the whole thing on one matrix: init, add, finalize, apply */
int combat_matrix(float *x, int n, int ngenes, const int32_t *batch, int nbatch,
                  const int32_t *level, int nlevel, int mean_only);

/* Serialise as a msgpack map (kind "combat"; accumulators and fitted values) and
 * back; a stored fit can be merged with others and finalized again. */
void combat_to_blob(const Combat *c, Blob *b);
void combat_from_object(Combat *c, const SReader *r, const msgpack_object *o);
/* a file: a stream with header kind "combat" (features = genes, domains = batches,
 * classes = levels, key "combat" = the map), then end; written atomically */
void combat_save(const Combat *c, const char *path);
void combat_load(Combat *c, const char *path);

#endif
