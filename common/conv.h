/* conv.h: convolutional layers and a ResNet-18-style encoder for image tiles.
 *
 * Layout: activations are NHWC, (B,H,W,C) row-major, so that
 *  - a convolution is one im2col of the whole batch into (B*OH*OW, K*K*C) rows and
 *    one gemm with the weight (OC, K,K,C): out (B*OH*OW, OC) is already NHWC;
 *  - BatchNorm2d is batchnorm_forward/backward of nn.h over B*H*W rows of C channels
 *    (PyTorch's BatchNorm2d statistics: biased variance over B*H*W values for
 *    normalising, unbiased for the running update);
 *  - image tiles (H,W,3) from an image stream are the input without a transpose.
 * Weights are (OC,K,K,C); torchvision's (OC,C,K,K) converts by a permutation
 * (tools/convert-torchvision.py).
 *
 * Layer functions come in forward/backward pairs in llm.c's shape (outputs, caches,
 * inputs, weights, sizes); backward ADDS into its gradients. The ResNet keeps all
 * parameters in one allocation (gradients and buffers in two more), its activations
 * in an arena that grows with the batch, and one im2col scratch shared by all its
 * convolutions: no allocation per call once the arena holds the batch. */
#ifndef DAPIPE_CONV_H
#define DAPIPE_CONV_H

#include <stddef.h>
#include <stdint.h>

/* output side of a convolution or pooling window: (n + 2 pad - k) / stride + 1 */
int conv_out_size(int n, int k, int stride, int pad);

/* im2col: inp (B,H,W,C) -> col (B*OH*OW, K*K*C), column order (ky,kx,c); zero padding */
void im2col(float *col, const float *inp, int B, int H, int W, int C, int K, int stride, int pad);
/* the adjoint: dinp (B,H,W,C) += the columns of dcol scattered back */
void col2im_add(float *dinp, const float *dcol, int B, int H, int W, int C, int K, int stride, int pad);

/* conv2d: inp (B,H,W,C), w (OC,K,K,C), b (OC) or NULL, out (B,OH,OW,OC).
 * col: scratch of B*OH*OW*K*K*C floats (unused, may be NULL, for a 1x1 stride-1
 * unpadded convolution, which is a plain matmul). */
void conv2d_forward(float *out, float *col, const float *inp, const float *w, const float *b,
                    int B, int H, int W, int C, int OC, int K, int stride, int pad);
/* dinp (B,H,W,C) or NULL, dw (OC,K,K,C), db (OC) or NULL, dout (B,OH,OW,OC);
 * col: scratch as in forward (the columns are recomputed from inp, then the same
 * buffer receives the column gradient). */
void conv2d_backward(float *dinp, float *dw, float *db, float *col, const float *dout, const float *inp,
                     const float *w, int B, int H, int W, int C, int OC, int K, int stride, int pad);

/* max pooling over K x K windows (padding never wins: it is -inf, as PyTorch's):
 * inp (B,H,W,C), out (B,OH,OW,C), idx (B,OH,OW,C) the flat input index of each max */
void maxpool2d_forward(float *out, int32_t *idx, const float *inp, int B, int H, int W, int C, int K, int stride, int pad);
/* dinp (B,H,W,C) += dout routed to the argmax; n = B*OH*OW*C */
void maxpool2d_backward(float *dinp, const float *dout, const int32_t *idx, long n);
/* average pooling; padding counts in the divisor (PyTorch's count_include_pad=True) */
void avgpool2d_forward(float *out, const float *inp, int B, int H, int W, int C, int K, int stride, int pad);
void avgpool2d_backward(float *dinp, const float *dout, int B, int H, int W, int C, int K, int stride, int pad);
/* global average pooling: inp (B,HW,C) -> out (B,C) */
void global_avgpool_forward(float *out, const float *inp, int B, int HW, int C);
void global_avgpool_backward(float *dinp, const float *dout, int B, int HW, int C);
/* BatchNorm2d in inference mode, backward (statistics constant): x (N,C) rows,
 * dinp += gamma*rstd*dout; dgamma += dout*(x-mean)*rstd; dbeta += dout */
void batchnorm_eval_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                             const float *mean, const float *rstd, const float *gamma, int N, int C);

/* ---- ResNet ---- */
#define RESNET_MAXSTAGES 6
enum { STEM_SMALL, STEM_IMAGENET, STEM_COUNT };
extern const char *stem_names[STEM_COUNT];

typedef struct {
	int h, w;                          /* input tile size */
	int width;                         /* channels of the stem and the first stage; stage s has width << s */
	int nstages;
	int blocks[RESNET_MAXSTAGES];      /* basic blocks per stage (ResNet-18: 2,2,2,2) */
	int stem;                          /* STEM_SMALL: conv 3x3 s1; STEM_IMAGENET: conv 7x7 s2 + maxpool 3x3 s2 */
	float mean[3], std[3];             /* input normalisation per channel: (x - mean) / std */
	float bn_momentum, eps;            /* 0.1, 1e-5 */
} ResNetSpec;
/* defaults: 32x32, width 16, blocks 1,1,1,1, stem small, ImageNet mean/std */
void resnet_spec_init(ResNetSpec *s);
/* "" if the spec is usable, else a reason (static) */
const char *resnet_spec_check(const ResNetSpec *s);

typedef struct ResNet ResNet;
/* torchvision's init: conv weights N(0, 2/fan_out), BN gamma 1, beta 0 */
ResNet *resnet_new(const ResNetSpec *spec, uint64_t seed);
void resnet_free(ResNet *m);
const ResNetSpec *resnet_spec(const ResNet *m);
int resnet_in(const ResNet *m);    /* h * w * 3 */
int resnet_out(const ResNet *m);   /* latent width: width << (nstages - 1) */
/* x (B,h,w,3) in [0,1] (pixels / 255) -> (B,out), owned by m, valid until the next
 * forward. train: batch statistics (running statistics updated). In evaluation mode a
 * batch larger than RESNET_EVAL_CHUNK is run in chunks, and backward is then not
 * available for it. */
#define RESNET_EVAL_CHUNK 32
const float *resnet_forward(ResNet *m, const float *x, int B, int train);
/* 1 if backward may follow the last forward */
int resnet_can_backward(const ResNet *m);
/* dout (B,out) of the last forward; ADDS parameter gradients; dx (B,in) written when
 * non-NULL (NULL skips the stem's input gradient). After an evaluation forward the
 * BatchNorms are differentiated with their running statistics as constants. */
void resnet_backward(ResNet *m, const float *dout, float *dx);
void resnet_zero_grad(ResNet *m);
size_t resnet_nparams(const ResNet *m);
float *resnet_params(ResNet *m);
float *resnet_grads(ResNet *m);
/* named tensors (parameters first, then BatchNorm buffers), torchvision's names with
 * our suffixes: "conv1.w" (OC,K,K,C), "bn1.gamma", "bn1.beta", "bn1.running_mean",
 * "layer2.0.conv1.w", "layer2.0.down.conv.w", "layer2.0.down.bn.gamma", ... */
int resnet_ntensors(const ResNet *m);
const char *resnet_tensor(ResNet *m, int i, int *ndim, int64_t shape[4], float **data);
float *resnet_tensor_grad(ResNet *m, int i);   /* NULL for buffers */
int resnet_find_tensor(const ResNet *m, const char *name);
/* multiply-adds of one forward per image (convolutions only) */
double resnet_flops(const ResNet *m);

#endif
