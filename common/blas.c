/* blas.c: the one file that calls OpenBLAS (cblas and LAPACK). */
#include "blas.h"
#include "util.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* LAPACK from OpenBLAS (Fortran interface). */
extern void ssyev_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
                   float *w, float *work, const int *lwork, int *info);

/* ---- our own threads for the large products and loops ----
 *
 * OpenBLAS's threaded gemm synchronises its threads at every block of the inner
 * dimension, and a thread that waits spins (sched_yield): on a machine whose cores
 * train-step and the other stages share, one preempted thread stalls the others at each
 * of those points. Here (once OpenBLAS runs on one thread: blas_threads(1), as in the
 * training stages, or blas_pool) a product of at least POOL_MIN_WORK multiply-adds is cut into
 * independent bands of C's columns (or rows), each one single-threaded OpenBLAS call;
 * with blas_pool(n), n threads (the caller is one of them) take the bands in turn, a
 * thread with no band left returns or sleeps on a condition variable, and a thread that
 * wakes late finds nothing to do: nobody waits for a thread that has no core. The bands
 * depend on the shape alone, so the result does not depend on the number of threads. */

#define POOL_MAX 8
#define POOL_MIN_WORK ((double)(1 << 21))

static struct {
	int n;                        /* threads including the caller; <= 1: no pool */
	pthread_t th[POOL_MAX];
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	unsigned job;                 /* bumped for each job (under mu) */
	void (*fn)(void *, int);      /* the current job (under mu) */
	void *ctx;
	int nchunks;
	_Atomic uint64_t claim;       /* job << 32 | next chunk to take */
	atomic_int finished;          /* chunks of the current job done */
	atomic_uint posted;           /* job, read without the lock by spinning threads */
	int sleeping;                 /* workers waiting on go (under mu) */
} P = { .mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER };

/* OpenBLAS set to one thread (blas_threads(1) or blas_pool): products are cut in bands */
static int one_thread;

/* set while a thread runs a chunk: a blas_parallel (or gemm) inside it runs there */
static _Thread_local int in_chunk;

/* take and run chunks of job `job` until none is left */
static void pool_work(unsigned job, void (*fn)(void *, int), void *ctx, int nchunks)
{
	in_chunk = 1;
	for (;;) {
		uint64_t v = atomic_load(&P.claim);
		if ((unsigned)(v >> 32) != job || (int)(uint32_t)v >= nchunks) break;
		if (!atomic_compare_exchange_weak(&P.claim, &v, v + 1)) continue;
		fn(ctx, (int)(uint32_t)v);
		if (atomic_fetch_add(&P.finished, 1) + 1 == nchunks) {
			pthread_mutex_lock(&P.mu);
			pthread_cond_signal(&P.done);
			pthread_mutex_unlock(&P.mu);
		}
	}
	in_chunk = 0;
}

/* A thread that ends a job, or waits for one to end, first watches for a short while
 * (POOL_SPIN_S) before it sleeps: the products of a small network come one after
 * another, tens of microseconds each, and waking a sleeping thread costs about as much.
 * The watch reads one word and pauses; it is short enough not to matter to the other
 * processes on the cores. */
#define POOL_SPIN_S 50e-6

static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static int spin_until(int (*ready)(unsigned), unsigned arg)
{
	double t0 = 0;
	for (int i = 0;; i++) {
		if (ready(arg)) return 1;
		cpu_pause();
		if ((i & 63) == 63) {
			double t = now_seconds();
			if (t0 == 0) t0 = t;
			else if (t - t0 > POOL_SPIN_S) return 0;
		}
	}
}

static int job_posted(unsigned seen) { return atomic_load_explicit(&P.posted, memory_order_acquire) != seen; }
static int job_done(unsigned nchunks) { return atomic_load_explicit(&P.finished, memory_order_acquire) >= (int)nchunks; }

static void *pool_thread(void *arg)
{
	(void)arg;
	unsigned seen = 0;
	for (;;) {
		spin_until(job_posted, seen);
		pthread_mutex_lock(&P.mu);
		while (P.job == seen) {
			P.sleeping++;
			pthread_cond_wait(&P.go, &P.mu);
			P.sleeping--;
		}
		seen = P.job;
		void (*fn)(void *, int) = P.fn;
		void *ctx = P.ctx;
		int nchunks = P.nchunks;
		pthread_mutex_unlock(&P.mu);
		pool_work(seen, fn, ctx, nchunks);
	}
	return NULL;
}

int blas_pool(int n)
{
	if (n > POOL_MAX) n = POOL_MAX;
	if (P.n > 1 || n <= 1) return P.n > 1 ? P.n : 1;
	/* the products run on one OpenBLAS thread each, called from ours */
	openblas_set_num_threads(1);
	one_thread = 1;
	P.n = 1;
	for (int i = 1; i < n; i++) {
		if (pthread_create(&P.th[i], NULL, pool_thread, NULL) != 0) break;
		P.n++;
	}
	return P.n;
}

int blas_pool_threads(void)
{
	return P.n > 1 ? P.n : 1;
}

void blas_parallel(int nchunks, void (*fn)(void *ctx, int chunk), void *ctx)
{
	if (nchunks <= 0) return;
	if (P.n <= 1 || nchunks == 1 || in_chunk) {
		for (int c = 0; c < nchunks; c++) fn(ctx, c);
		return;
	}
	pthread_mutex_lock(&P.mu);
	unsigned job = ++P.job;
	P.fn = fn;
	P.ctx = ctx;
	P.nchunks = nchunks;
	atomic_store(&P.finished, 0);
	atomic_store(&P.claim, (uint64_t)job << 32);
	atomic_store_explicit(&P.posted, job, memory_order_release);
	if (P.sleeping) pthread_cond_broadcast(&P.go);
	pthread_mutex_unlock(&P.mu);
	pool_work(job, fn, ctx, nchunks);
	if (spin_until(job_done, (unsigned)nchunks)) return;
	pthread_mutex_lock(&P.mu);
	while (atomic_load(&P.finished) < nchunks) pthread_cond_wait(&P.done, &P.mu);
	pthread_mutex_unlock(&P.mu);
}

/* one band of a product cut by blas_parallel */
typedef struct {
	int ta, tb, M, N, K, lda, ldb, ldc, cols, step;  /* cols: bands of columns, else of rows */
	float alpha, beta;
	const float *A, *B;
	float *C;
} Band;

static void band_run(void *ctx, int c)
{
	const Band *g = ctx;
	int total = g->cols ? g->N : g->M;
	int lo = c * g->step, hi = lo + g->step < total ? lo + g->step : total;
	if (lo >= hi) return;
	const float *A = g->A, *B = g->B;
	float *C = g->C;
	int M = g->M, N = g->N;
	if (g->cols) {
		/* C[:, lo:hi] = op(A) op(B)[:, lo:hi] */
		B += g->tb ? (size_t)lo * g->ldb : (size_t)lo;
		C += lo;
		N = hi - lo;
	} else {
		/* C[lo:hi, :] = op(A)[lo:hi, :] op(B) */
		A += g->ta ? (size_t)lo : (size_t)lo * g->lda;
		C += (size_t)lo * g->ldc;
		M = hi - lo;
	}
	cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
	            M, N, g->K, g->alpha, A, g->lda, B, g->ldb, g->beta, C, g->ldc);
}

int blas_band(int len)
{
	int n = len / 1024;
	if (n < 2) n = 2;
	if (n > len / 64) n = len / 64;
	return n < 2 ? 0 : (len + n - 1) / n;
}

/* A large product in bands of the longer side of C (blas_band: about 1024 wide, at
 * least 2 and at least 64 wide, since each band packs the whole other operand again),
 * on the pool's threads when there is a pool, else one after the other: the bands
 * depend on the shape alone, so the result is the same on any number of threads. */
static int gemm_bands(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc)
{
	if (!one_thread || (double)M * N * K < POOL_MIN_WORK) return 0;
	Band g = { ta, tb, M, N, K, lda, ldb, ldc, N >= M, 0, alpha, beta, A, B, C };
	int len = g.cols ? N : M;
	g.step = blas_band(len);
	if (g.step == 0) return 0;
	blas_parallel((len + g.step - 1) / g.step, band_run, &g);
	return 1;
}

void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc)
{
	if (M == 0 || N == 0) return;
	if (gemm_bands(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
	            M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm1(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
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
	one_thread = n == 1;
}
