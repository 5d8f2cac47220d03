/* check.h: tiny assertion helpers for C unit tests. Each check prints
 * "PASS name" or "FAIL name: ..."; main returns check_status(). */
#ifndef DAPIPE_CHECK_H
#define DAPIPE_CHECK_H
#include <math.h>
#include <stdio.h>

static int check_failures;

#define CHECK(name, cond) do { \
	if (cond) printf("PASS %s\n", name); \
	else { printf("FAIL %s: %s (%s:%d)\n", name, #cond, __FILE__, __LINE__); check_failures++; } \
} while (0)

/* compare two float arrays; report maxdiff */
static inline int check_close(const char *name, const float *a, const float *b, long n, double atol, double rtol)
{
	double maxdiff = 0;
	long worst = -1;
	for (long i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);
		double tol = atol + rtol * fabs((double)b[i]);
		if (!(d <= tol) && (worst < 0 || d > maxdiff)) worst = i;
		if (d > maxdiff || d != d) maxdiff = d;
	}
	if (worst < 0) { printf("PASS %s (maxdiff %.3g)\n", name, maxdiff); return 1; }
	printf("FAIL %s: index %ld: %.9g vs %.9g (maxdiff %.3g)\n", name, worst, a[worst], b[worst], maxdiff);
	check_failures++;
	return 0;
}

static inline int check_status(void) { return check_failures ? 1 : 0; }
#endif
