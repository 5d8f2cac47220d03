/* blas.h: the one place that calls OpenBLAS. */
#ifndef DAPIPE_BLAS_H
#define DAPIPE_BLAS_H
/* C (M,N) = alpha * op(A) op(B) + beta * C, row-major; ta/tb: 1 = transpose. */
void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);
/* Symmetric eigen-decomposition (LAPACK ssyev): a (n,n) row-major, w (n) ascending,
 * a overwritten by eigenvectors (rows). Returns 0 on success. */
int sym_eig(float *a, float *w, int n);
void blas_threads(int n);
#endif
