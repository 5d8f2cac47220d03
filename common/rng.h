/* rng.h: the one seeded random number generator (xoshiro256**, seeded by
 * splitmix64). Never rand(). Same seed, same sequence, on every platform. */
#ifndef DAPIPE_RNG_H
#define DAPIPE_RNG_H
#include <stdint.h>

typedef struct { uint64_t s[4]; } Rng;

void rng_seed(Rng *r, uint64_t seed);
/* an independent stream derived from (seed, stream id) */
void rng_seed2(Rng *r, uint64_t seed, uint64_t stream);
uint64_t rng_u64(Rng *r);
double rng_uniform(Rng *r);            /* [0,1) */
uint64_t rng_below(Rng *r, uint64_t n); /* [0,n), unbiased */
double rng_normal(Rng *r);             /* N(0,1), Box-Muller without caching */
double rng_gamma(Rng *r, double shape); /* Gamma(shape, 1), Marsaglia-Tsang */
uint64_t rng_poisson(Rng *r, double mean);
void rng_shuffle_int(Rng *r, int *a, int n);

#endif
