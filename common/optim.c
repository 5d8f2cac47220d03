/* optim.c: optimisers (Adam, AdamW, SGD with momentum; PyTorch semantics) and the
 * schedules of Ganin & Lempitsky (2016). One flat parameter vector, one gradient vector. */
#include "nn.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>

const char *opt_names[OPT_COUNT] = { "adam", "adamw", "sgd" };

void optim_init(Optim *o, OptKind kind, size_t n)
{
	o->kind = kind;
	o->beta1 = 0.9f;
	o->beta2 = 0.999f;
	o->eps = 1e-8f;
	o->weight_decay = 0.0f;
	o->momentum = 0.0f;
	o->t = 0;
	o->n = n;
	o->m = xcalloc(n ? n : 1, sizeof(float));
	o->v = kind == OPT_SGD ? NULL : xcalloc(n ? n : 1, sizeof(float));
}

void optim_free(Optim *o)
{
	free(o->m);
	free(o->v);
	o->m = o->v = NULL;
	o->n = 0;
}

void optim_step(Optim *o, float *params, const float *grads, float lr)
{
	o->t++;
	size_t n = o->n;
	float wd = o->weight_decay;
	if (o->kind == OPT_SGD) {
		/* torch.optim.SGD (dampening 0, no Nesterov):
		 *   g = grad + wd * p;  buf = momentum * buf + g (buf = g at the first step);  p -= lr * buf
		 * buf starts at zero, so the first step gives buf = g as well. */
		float mu = o->momentum;
		float *buf = o->m;
		for (size_t i = 0; i < n; i++) {
			float g = grads[i] + wd * params[i];
			if (mu != 0.0f) {
				buf[i] = mu * buf[i] + g;
				g = buf[i];
			}
			params[i] -= lr * g;
		}
		return;
	}
	/* torch.optim.Adam / AdamW (single-tensor path):
	 *   AdamW: p *= 1 - lr * wd            Adam: g = grad + wd * p
	 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
	 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
	float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
	float bc1 = 1.0f - powf(b1, (float)o->t);
	float bc2_sqrt = sqrtf(1.0f - powf(b2, (float)o->t));
	float step_size = lr / bc1;
	int decoupled = o->kind == OPT_ADAMW;
	float *m = o->m, *v = o->v;
	for (size_t i = 0; i < n; i++) {
		float p = params[i];
		float g = grads[i];
		if (decoupled) p *= 1.0f - lr * wd;
		else g += wd * p;
		m[i] += (g - m[i]) * (1.0f - b1);  /* PyTorch: exp_avg.lerp_(grad, 1 - beta1) */
		v[i] = b2 * v[i] + (1.0f - b2) * g * g;
		float denom = sqrtf(v[i]) / bc2_sqrt + eps;
		params[i] = p - step_size * (m[i] / denom);
	}
}

float sched_lr_ganin(float lr0, float p)
{
	/* lr_p = lr0 / (1 + alpha p)^beta, alpha = 10, beta = 0.75 */
	return lr0 / powf(1.0f + 10.0f * p, 0.75f);
}

float sched_lambda_ganin(float p)
{
	/* lambda_p = 2 / (1 + exp(-gamma p)) - 1, gamma = 10 */
	return 2.0f / (1.0f + expf(-10.0f * p)) - 1.0f;
}
