/* blas.h: the one place that calls OpenBLAS. */
#ifndef DAPIPE_BLAS_H
#define DAPIPE_BLAS_H
/* C (M,N) = alpha * op(A) op(B) + beta * C, row-major; ta/tb: 1 = transpose. */
void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);
/* the same on the calling thread alone (a piece of a job of blas_parallel) */
void gemm1(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc);
/* Symmetric eigen-decomposition (LAPACK ssyev): a (n,n) row-major, w (n) ascending,
 * a overwritten by eigenvectors (rows). Returns 0 on success. */
int sym_eig(float *a, float *w, int n);
void blas_threads(int n);
/* Once OpenBLAS runs on one thread (blas_threads(1), or blas_pool), gemm cuts a
 * product of at least 2^21 multiply-adds into independent bands of C's
 * longer side, blas_band(len) wide (0: not cut), each a one-thread OpenBLAS call; the
 * bands depend on the shape alone, so results do not depend on the threads. Our own n
 * threads (the caller counts as one) then take the bands in turn (OpenBLAS is set to
 * one thread). Started once; returns the threads in use (1: none). */
int blas_band(int len);
int blas_pool(int n);
int blas_pool_threads(void);
/* fn(ctx, c) for c = 0 .. nchunks-1, on the pool's threads when there is one (in any
 * order, each chunk once); returns when all are done */
void blas_parallel(int nchunks, void (*fn)(void *ctx, int chunk), void *ctx);
#endif
