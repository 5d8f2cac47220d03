/* bench_conv: images per second of the ResNet encoder's training step (forward in
 * training mode + backward with the parameter gradients, no input gradient).
 * Usage: bench_conv SIZE WIDTH BLOCKS STEM BATCH SECONDS   (e.g. 32 16 1,1,1,1 small 32 3)
 * Prints one line: size, width, blocks, stem, batch, params, GFLOP per image (forward
 * multiply-adds x 2), images/s, and the GFLOP/s of forward + backward (x3 the forward). */
#include "conv.h"
#include "rng.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	util_init(argv[0]);
	if (argc != 7) usage_error("usage: bench_conv SIZE WIDTH BLOCKS STEM BATCH SECONDS");
	ResNetSpec sp;
	resnet_spec_init(&sp);
	sp.h = sp.w = (int)parse_long("SIZE", argv[1], 4, 4096);
	sp.width = (int)parse_long("WIDTH", argv[2], 1, 4096);
	sp.nstages = parse_int_list("BLOCKS", argv[3], sp.blocks, RESNET_MAXSTAGES, 1, 64);
	sp.stem = strcmp(argv[4], "imagenet") == 0 ? STEM_IMAGENET : STEM_SMALL;
	int B = (int)parse_long("BATCH", argv[5], 2, 4096);
	double secs = parse_double("SECONDS", argv[6], 0.01, 3600);
	const char *why = resnet_spec_check(&sp);
	if (why[0]) usage_error("%s", why);
	ResNet *m = resnet_new(&sp, 1);
	int in = resnet_in(m), H = resnet_out(m);
	float *x = xmallocarray((size_t)B * in, sizeof(float)), *dz = xmallocarray((size_t)B * H, sizeof(float));
	Rng r;
	rng_seed(&r, 1);
	for (size_t i = 0; i < (size_t)B * in; i++) x[i] = (float)rng_uniform(&r);
	for (size_t i = 0; i < (size_t)B * H; i++) dz[i] = (float)rng_normal(&r) / B;
	/* warm-up (allocates the arena) */
	resnet_forward(m, x, B, 1);
	resnet_backward(m, dz, NULL);
	long n = 0;
	double t0 = now_seconds(), t;
	do {
		resnet_forward(m, x, B, 1);
		resnet_backward(m, dz, NULL);
		n++;
		t = now_seconds() - t0;
	} while (t < secs);
	double ips = (double)n * B / t, gf = 2 * resnet_flops(m) / 1e9;
	printf("%dx%d width %d blocks %s stem %s batch %d: %zu params, %.3f GFLOP/image forward, %.1f images/s forward+backward (%.1f GFLOP/s)\n",
	       sp.h, sp.w, sp.width, argv[3], argv[4], B, resnet_nparams(m), gf, ips, ips * 3 * gf);
	free(x);
	free(dz);
	resnet_free(m);
	return 0;
}
