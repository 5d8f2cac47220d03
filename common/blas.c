/* blas.c: the one file that calls OpenBLAS (cblas and LAPACK). */
#include "blas.h"
#include "util.h"

#include <cblas.h>
#include <stdlib.h>

/* LAPACK from OpenBLAS (Fortran interface). */
extern void ssyev_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
                   float *w, float *work, const int *lwork, int *info);

void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc)
{
	if (M == 0 || N == 0) return;
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
	            M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int sym_eig(float *a, float *w, int n)
{
	/* Row-major symmetric a is its own transpose, so column-major LAPACK sees the same
	 * matrix; the eigenvectors come back as columns in column-major = rows here. */
	int info = 0, lwork = -1;
	float q;
	ssyev_("V", "U", &n, a, &n, w, &q, &lwork, &info);
	if (info != 0) return info;
	lwork = (int)q + 1;
	float *work = xmallocarray((size_t)lwork, sizeof(float));
	ssyev_("V", "U", &n, a, &n, w, work, &lwork, &info);
	free(work);
	return info;
}

void blas_threads(int n)
{
	openblas_set_num_threads(n);
}
