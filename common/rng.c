/* rng.c: see rng.h. */
#include "rng.h"
#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

void rng_seed2(Rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);
	uint64_t y = splitmix64(&x);
	rng_seed(r, y ^ stream);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_u64(Rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double rng_uniform(Rng *r)
{
	return (rng_u64(r) >> 11) * 0x1.0p-53;
}

uint64_t rng_below(Rng *r, uint64_t n)
{
	if (n <= 1) return 0;
	uint64_t lim = UINT64_MAX - UINT64_MAX % n;
	uint64_t x;
	do x = rng_u64(r); while (x >= lim);
	return x % n;
}

double rng_normal(Rng *r)
{
	double u1 = rng_uniform(r), u2 = rng_uniform(r);
	if (u1 < 1e-300) u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double rng_gamma(Rng *r, double shape)
{
	if (shape < 1.0) {
		double u = rng_uniform(r);
		return rng_gamma(r, shape + 1.0) * pow(u > 0 ? u : 1e-300, 1.0 / shape);
	}
	double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		double x, v;
		do { x = rng_normal(r); v = 1.0 + c * x; } while (v <= 0);
		v = v * v * v;
		double u = rng_uniform(r);
		if (u < 1 - 0.0331 * x * x * x * x) return d * v;
		if (log(u) < 0.5 * x * x + d * (1 - v + log(v))) return d * v;
	}
}

uint64_t rng_poisson(Rng *r, double mean)
{
	if (mean <= 0) return 0;
	if (mean < 30) {
		double L = exp(-mean), p = 1.0;
		uint64_t k = 0;
		do { k++; p *= rng_uniform(r); } while (p > L);
		return k - 1;
	}
	/* normal approximation with continuity correction, adequate for simulation */
	double x = floor(mean + sqrt(mean) * rng_normal(r) + 0.5);
	return x < 0 ? 0 : (uint64_t)x;
}

void rng_shuffle_int(Rng *r, int *a, int n)
{
	for (int i = n - 1; i > 0; i--) {
		int j = (int)rng_below(r, (uint64_t)i + 1);
		int t = a[i]; a[i] = a[j]; a[j] = t;
	}
}
