/* test_pool.c: the banded products and the thread pool of blas.c (gemm in bands,
 * blas_pool, blas_parallel), nn_alloc, and mlp_backward_step against mlp_backward then
 * optim_step_zero. The results must be the same bits on any number of threads. */
#include "blas.h"
#include "check.h"
#include "nn.h"
#include "rng.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fill(float *a, long n, uint64_t seed)
{
	Rng r;
	rng_seed(&r, seed);
	for (long i = 0; i < n; i++) a[i] = (float)(2.0 * rng_uniform(&r) - 1.0);
}

/* C (M,N) = op(A) op(B) in double, row-major */
static void ref_gemm(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C)
{
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double s = 0;
			for (int k = 0; k < K; k++) {
				double a = ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k];
				double b = tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j];
				s += a * b;
			}
			C[(size_t)i * N + j] = (float)s;
		}
}

#define NCHUNK 37
static atomic_int hits[NCHUNK];

static void count_chunk(void *ctx, int c)
{
	(void)ctx;
	atomic_fetch_add(&hits[c], 1);
}

static int each_once(int jobs)
{
	for (int c = 0; c < NCHUNK; c++) atomic_store(&hits[c], 0);
	for (int j = 0; j < jobs; j++) blas_parallel(NCHUNK, count_chunk, NULL);
	for (int c = 0; c < NCHUNK; c++)
		if (atomic_load(&hits[c]) != jobs) return 0;
	return 1;
}

/* the shapes: the encoder's forward and weight gradient, shrunk; a tall one (bands of rows) */
static const int shapes[][5] = {
	{ 0, 1, 64, 256, 2000 },   /* x W^T */
	{ 1, 0, 256, 3000, 64 },   /* dW = dout^T x */
	{ 0, 0, 2000, 64, 48 },    /* bands of rows */
};
#define NSHAPES 3

static float *products(void)
{
	size_t total = 0;
	for (int s = 0; s < NSHAPES; s++) total += (size_t)shapes[s][2] * shapes[s][3];
	float *out = calloc(total, sizeof(float));
	float *o = out;
	for (int s = 0; s < NSHAPES; s++) {
		int ta = shapes[s][0], tb = shapes[s][1], M = shapes[s][2], N = shapes[s][3], K = shapes[s][4];
		float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
		fill(A, (long)M * K, 11 + s);
		fill(B, (long)K * N, 23 + s);
		gemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, o, N);
		free(A);
		free(B);
		o += (size_t)M * N;
	}
	return out;
}

/* two identical MLPs with a large first layer: one trained by mlp_backward +
 * optim_step_zero, one by mlp_backward_step; the parameters must agree bit for bit */
static void fused_case(const char *name, OptKind kind, float wd, float mom)
{
	MlpSpec sp;
	mlp_spec_init(&sp);
	sp.in = 4100;
	sp.nlayers = 2;
	sp.widths[0] = 256;
	sp.widths[1] = 32;
	sp.norm = NORM_BATCH;
	sp.dropout = 0.25f;
	Mlp *a = mlp_new(&sp, 5), *b = mlp_new(&sp, 5);
	Optim oa, ob;
	optim_init(&oa, kind, mlp_nparams(a));
	optim_init(&ob, kind, mlp_nparams(b));
	oa.weight_decay = ob.weight_decay = wd;
	oa.momentum = ob.momentum = mom;
	int B = 12;
	float *x = malloc(sizeof(float) * B * sp.in), *dy = malloc(sizeof(float) * B * 32);
	for (int step = 0; step < 3; step++) {
		fill(x, (long)B * sp.in, 100 + step);
		fill(dy, (long)B * 32, 200 + step);
		mlp_forward(a, x, B, 1);
		mlp_backward(a, dy, NULL);
		optim_step_zero(&oa, mlp_params(a), mlp_grads(a), 1e-3f);
		mlp_forward(b, x, B, 1);
		mlp_backward_step(b, dy, NULL, &ob, 1e-3f);
	}
	size_t n = mlp_nparams(a);
	char msg[128];
	snprintf(msg, sizeof msg, "%s: parameters bit for bit", name);
	CHECK(msg, memcmp(mlp_params(a), mlp_params(b), n * sizeof(float)) == 0);
	int zero = 1;
	for (size_t i = 0; i < n; i++) zero &= mlp_grads(b)[i] == 0.0f;
	snprintf(msg, sizeof msg, "%s: gradients zeroed", name);
	CHECK(msg, zero);
	snprintf(msg, sizeof msg, "%s: step count", name);
	CHECK(msg, oa.t == 3 && ob.t == 3);
	free(x);
	free(dy);
	optim_free(&oa);
	optim_free(&ob);
	mlp_free(a);
	mlp_free(b);
}

int main(void)
{
	/* as in the training stages: OpenBLAS on one thread, products in bands */
	blas_threads(1);
	/* nn_alloc: large buffers zeroed and aligned, small ones too */
	float *big = nn_alloc((size_t)3 << 20, sizeof(float), 1), *small = nn_alloc(10, sizeof(float), 1);
	int z = 1;
	for (size_t i = 0; i < ((size_t)3 << 20); i += 4093) z &= big[i] == 0.0f;
	for (int i = 0; i < 10; i++) z &= small[i] == 0.0f;
	CHECK("nn_alloc zeroes", z);
	CHECK("nn_alloc aligns a large buffer to 2 MiB", ((uintptr_t)big & ((2u << 20) - 1)) == 0);
	free(big);
	free(small);

	CHECK("blas_band: long sides cut about 1024 wide", blas_band(20000) == 1053 && blas_band(256) == 128 && blas_band(128) == 64);
	CHECK("blas_band: short sides not cut", blas_band(100) == 0);

	/* without a pool: serial bands, each chunk once */
	CHECK("blas_parallel without threads runs each chunk once", each_once(3));
	float *serial = products();
	int ok = 1;
	float *o = serial;
	for (int s = 0; s < NSHAPES; s++) {
		int ta = shapes[s][0], tb = shapes[s][1], M = shapes[s][2], N = shapes[s][3], K = shapes[s][4];
		float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *R = malloc(sizeof(float) * M * N);
		fill(A, (long)M * K, 11 + s);
		fill(B, (long)K * N, 23 + s);
		ref_gemm(ta, tb, M, N, K, A, B, R);
		char name[64];
		snprintf(name, sizeof name, "banded gemm %d matches the reference", s);
		ok &= check_close(name, o, R, (long)M * N, 1e-3, 1e-4);
		free(A);
		free(B);
		free(R);
		o += (size_t)M * N;
	}
	fused_case("fused step, one thread, adam", OPT_ADAM, 1e-4f, 0);

	/* with the pool: the same bits, each chunk once over many jobs */
	int n = blas_pool(3);
	CHECK("blas_pool starts threads", n == 3 && blas_pool_threads() == 3);
	CHECK("blas_parallel on 3 threads runs each chunk once (500 jobs)", each_once(500));
	float *pooled = products();
	size_t total = 0;
	for (int s = 0; s < NSHAPES; s++) total += (size_t)shapes[s][2] * shapes[s][3];
	CHECK("banded gemm: the same bits on 1 and 3 threads", memcmp(serial, pooled, total * sizeof(float)) == 0);
	free(serial);
	free(pooled);
	fused_case("fused step, 3 threads, adam", OPT_ADAM, 1e-4f, 0);
	fused_case("fused step, 3 threads, adamw", OPT_ADAMW, 1e-2f, 0);
	fused_case("fused step, 3 threads, sgd momentum", OPT_SGD, 1e-4f, 0.9f);
	(void)ok;
	return check_status();
}
