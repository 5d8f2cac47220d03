/* explain.c: see explain.h and docs/EXPLAIN.md. */
#include "explain.h"
#include "conv.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *ig_rule_names[IG_RULE_COUNT] = { "trapezoid", "gauss-legendre" };
const char *ig_output_names[IG_OUTPUT_COUNT] = { "probability", "logit" };
const char *heat_mode_names[HEAT_MODE_COUNT] = { "abs", "signed" };

void ig_options_init(IgOptions *o)
{
	o->steps = 50;
	o->rule = IG_TRAPEZOID;
	o->output = IG_PROB;
	o->max_rows = 2048;
}

void explain_args_init(ExplainArgs *a)
{
	memset(a, 0, sizeof *a);
	a->input = "-";
	ig_options_init(&a->ig);
	a->class_mode = IG_CLASS_PREDICTED;
	a->baseline = NULL;   /* zeros, or blur for an image model */
	a->blur_sigma = 4;
	heat_options_init(&a->heat);
}

void heat_options_init(HeatOptions *o)
{
	o->mode = HEAT_ABS;
	o->smooth = 1;
	o->clip = 99;
	o->max = 0;
	o->alpha = 0.75;
	o->scale = 1;
	o->panel = 0;
}

/* ---- quadrature ---- */

int ig_nodes(IgRule rule, int steps, double *alpha, double *w)
{
	ASSERT(steps >= 1);
	if (rule == IG_TRAPEZOID) {
		for (int k = 0; k <= steps; k++) {
			alpha[k] = (double)k / steps;
			w[k] = (k == 0 || k == steps ? 0.5 : 1.0) / steps;
		}
		return steps + 1;
	}
	/* Gauss-Legendre on [-1,1] by Newton's method on P_n, mapped to [0,1] */
	int n = steps;
	for (int i = 0; i < (n + 1) / 2; i++) {
		double t = cos(M_PI * (i + 0.75) / (n + 0.5)), dp = 1;
		for (int it = 0; it < 100; it++) {
			double p0 = 1, p1 = t;
			for (int k = 2; k <= n; k++) {
				double p2 = ((2.0 * k - 1) * t * p1 - (k - 1.0) * p0) / k;
				p0 = p1;
				p1 = p2;
			}
			if (n == 1) { p1 = t; p0 = 1; }
			/* P_n = p1, P_{n-1} = p0 */
			dp = n * (t * p1 - p0) / (t * t - 1);
			double dt = p1 / dp;
			t -= dt;
			if (fabs(dt) < 1e-15) break;
		}
		double wt = 2 / ((1 - t * t) * dp * dp);
		/* t is the i-th largest root: nodes ascending in alpha */
		alpha[n - 1 - i] = (1 + t) / 2;
		alpha[i] = (1 - t) / 2;
		w[n - 1 - i] = w[i] = wt / 2;
	}
	return n;
}

/* ---- the stages ---- */

static char *sibling_stage(const char *name, const char *extra)
{
	char *q = sibling_command(name);
	char *cmd = xasprintf("%s --stage%s", q, extra);
	free(q);
	return cmd;
}

static int load_stage(Peer *p, const Bundle *b, const char *stage)
{
	int i;
	for (i = 0; i < b->n; i++)
		if (strcmp(b->stage[i], stage) == 0) break;
	if (i == b->n) die("%s: the bundle has no %s (params frame with stage \"%s\")", b->path, stage, stage);
	SWriter *w = peer_request(p, "load", 2);
	sw_key(w, "params");
	sw_blob(w, &b->params[i]);
	peer_send(p);
	const msgpack_object *f = peer_recv(p);
	int64_t out = get_int(&p->from, f, "out");
	if (out < 1 || out > (1 << 24)) peer_fail(p, "load: output width %lld", (long long)out);
	return (int)out;
}

/* is the bundle's encoder a ResNet? its input tile in *th, *tw */
static int bundle_resnet(const Bundle *b, int *th, int *tw)
{
	int found = 0;
	for (int i = 0; i < b->n && !found; i++) {
		if (strcmp(b->stage[i], "encoder") != 0) continue;
		msgpack_unpacked up;
		const msgpack_object *p = blob_object(&b->params[i], &up);
		const msgpack_object *a = obj_get(p, "arch");
		if (a && a->type == MSGPACK_OBJECT_MAP && obj_is_str(obj_get(a, "kind"), "resnet")) {
			SReader r;
			memset(&r, 0, sizeof r);
			r.name = b->path;
			r.frame = b->frame[i];
			const msgpack_object *in = obj_get(a, "input");
			if (!in || in->type != MSGPACK_OBJECT_ARRAY || in->via.array.size != 2)
				sr_fail(&r, "arch.input: expected [height, width]");
			int64_t h = obj_int(&r, &in->via.array.ptr[0], "arch.input"), w = obj_int(&r, &in->via.array.ptr[1], "arch.input");
			if (h < 1 || w < 1 || h > IMAGE_MAX_SIDE || w > IMAGE_MAX_SIDE || h * w * 3 != b->h.nfeat)
				sr_fail(&r, "arch.input: %lldx%lld tiles for %d features", (long long)w, (long long)h, b->h.nfeat);
			*th = (int)h;
			*tw = (int)w;
			found = 1;
		}
		msgpack_unpacked_destroy(&up);
	}
	return found;
}

void ig_start(IgModel *g, const Bundle *b, const char *enc_cmd, const char *cls_cmd)
{
	memset(g, 0, sizeof *g);
	g->F = b->h.nfeat;
	g->K = b->h.nclass;
	g->resnet = bundle_resnet(b, &g->th, &g->tw);
	/* the ResNet stage refuses backward after an evaluation forward of more rows */
	if (g->resnet) g->max_rows = RESNET_EVAL_CHUNK;
	char *ec = enc_cmd ? xstrdup(enc_cmd) : sibling_stage("encode", g->resnet ? " --arch resnet" : "");
	char *cc = cls_cmd ? xstrdup(cls_cmd) : sibling_stage("predict", "");
	peer_start(&g->enc, "encoder", ec);
	peer_start(&g->cls, "classifier", cc);
	free(ec);
	free(cc);
	g->H = load_stage(&g->enc, b, "encoder");
	int K = load_stage(&g->cls, b, "classifier");
	if (K != g->K)
		die("%s: the classifier has %d outputs, the bundle lists %d classes", b->path, K, g->K);
}

void ig_stop(IgModel *g)
{
	peer_quit(&g->enc);
	peer_quit(&g->cls);
}

/* one request on p with a matrix field and the flag; returns the answer's matrix
 * (rows, cols) in *t */
static const float *ask(Peer *p, const char *type, const char *key, const float *m, int rows, int in,
                        const char *flag, const char *rkey, int cols, Tensor *t)
{
	SWriter *w = peer_request(p, type, 3);
	int64_t sh[2] = { rows, in };
	sw_key(w, key);
	sw_tensor(w, DT_F32, 2, sh, m);
	sw_key(w, flag);
	sw_bool(w, strcmp(flag, "want_dx") == 0);  /* forward: train false; backward: want_dx true */
	peer_send(p);
	const msgpack_object *f = peer_recv(p);
	get_tensor(&p->from, f, rkey, DT_F32, 2, t);
	if (t->shape[0] != rows || t->shape[1] != cols)
		peer_fail(p, "%s: %s has shape (%lld,%lld), expected (%d,%d)", type, rkey,
		          (long long)t->shape[0], (long long)t->shape[1], rows, cols);
	const float *v = t->data;
	for (int64_t i = 0; i < (int64_t)rows * cols; i++)
		if (!isfinite(v[i])) peer_fail(p, "%s: %s has a non-finite value at %lld", type, rkey, (long long)i);
	return v;
}

/* f = softmax(l)_c or l_c; dy (K) its gradient w.r.t. the logits (or NULL) */
static double output_value(IgOutput out, const float *l, int K, int c, float *dy)
{
	if (out == IG_LOGIT) {
		if (dy) {
			memset(dy, 0, sizeof(float) * (size_t)K);
			dy[c] = 1;
		}
		return l[c];
	}
	double mx = l[0], sum = 0;
	for (int k = 1; k < K; k++) if (l[k] > mx) mx = l[k];
	for (int k = 0; k < K; k++) sum += exp((double)l[k] - mx);
	double pc = exp((double)l[c] - mx) / sum;
	/* dp_c/dl_k = p_c ([k = c] - p_k) */
	if (dy)
		for (int k = 0; k < K; k++) {
			double pk = exp((double)l[k] - mx) / sum;
			dy[k] = (float)(pc * ((k == c) - pk));
		}
	return pc;
}

void ig_attribute(IgModel *g, const IgOptions *o, const float *x, int n, const float *base,
                  size_t base_stride, int *cls, float *attr, double *fx, double *fb)
{
	int F = g->F, H = g->H, K = g->K;
	double *na = xmallocarray((size_t)o->steps + 3, sizeof(double));
	double *nw = xmallocarray((size_t)o->steps + 3, sizeof(double));
	/* per sample the rows are: x (alpha 1), the baseline (alpha 0), then the other
	 * nodes, so that the class is known (row 0) before any gradient is asked for */
	double *ra = xmallocarray((size_t)o->steps + 3, sizeof(double));
	double *rw = xmallocarray((size_t)o->steps + 3, sizeof(double));
	int m = ig_nodes(o->rule, o->steps, na, nw), P;
	ra[0] = 1; ra[1] = 0;
	if (o->rule == IG_TRAPEZOID) {
		rw[0] = nw[m - 1];
		rw[1] = nw[0];
		for (int k = 1; k < m - 1; k++) { ra[k + 1] = na[k]; rw[k + 1] = nw[k]; }
		P = m;
	} else {
		rw[0] = rw[1] = 0;
		for (int k = 0; k < m; k++) { ra[k + 2] = na[k]; rw[k + 2] = nw[k]; }
		P = m + 2;
	}
	long T = (long)n * P;
	int R = o->max_rows;
	if (g->max_rows > 0 && g->max_rows < R) R = g->max_rows;
	if (R > T) R = (int)T;
	float *X = xmallocarray((size_t)R * F, sizeof(float));
	float *dy = xmallocarray((size_t)R * K, sizeof(float));
	double *gs = xcalloc((size_t)n * F, sizeof(double));
	for (long r0 = 0; r0 < T; r0 += R) {
		int rows = (int)(T - r0 < R ? T - r0 : R);
		for (int r = 0; r < rows; r++) {
			long s = (r0 + r) / P;
			double a = ra[(r0 + r) % P];
			const float *xs = x + (size_t)s * F, *bs = base + (size_t)s * base_stride;
			float *row = X + (size_t)r * F;
			for (int j = 0; j < F; j++) row[j] = (float)(bs[j] + a * ((double)xs[j] - bs[j]));
		}
		Tensor tz, tl, tdz, tdx;
		const float *z = ask(&g->enc, "forward", "x", X, rows, F, "train", "y", H, &tz);
		const float *lg = ask(&g->cls, "forward", "x", z, rows, H, "train", "y", K, &tl);
		for (int r = 0; r < rows; r++) {
			long s = (r0 + r) / P;
			int p = (int)((r0 + r) % P);
			const float *l = lg + (size_t)r * K;
			if (p == 0 && cls[s] < 0) {
				int best = 0;
				for (int k = 1; k < K; k++) if (l[k] > l[best]) best = k;
				cls[s] = best;
			}
			double v = output_value(o->output, l, K, cls[s], dy + (size_t)r * K);
			if (p == 0) fx[s] = v;
			if (p == 1) fb[s] = v;
		}
		const float *dz = ask(&g->cls, "backward", "dy", dy, rows, K, "want_dx", "dx", H, &tdz);
		const float *dx = ask(&g->enc, "backward", "dy", dz, rows, H, "want_dx", "dx", F, &tdx);
		for (int r = 0; r < rows; r++) {
			long s = (r0 + r) / P;
			double wgt = rw[(r0 + r) % P];
			if (wgt == 0) continue;
			double *acc = gs + (size_t)s * F;
			const float *d = dx + (size_t)r * F;
			for (int j = 0; j < F; j++) acc[j] += wgt * d[j];
		}
		tensor_free(&tz);
		tensor_free(&tl);
		tensor_free(&tdz);
		tensor_free(&tdx);
	}
	for (int s = 0; s < n; s++) {
		const float *bs = base + (size_t)s * base_stride;
		for (int j = 0; j < F; j++)
			attr[(size_t)s * F + j] = (float)(((double)x[(size_t)s * F + j] - bs[j]) * gs[(size_t)s * F + j]);
	}
	free(gs);
	free(dy);
	free(X);
	free(na); free(nw); free(ra); free(rw);
}

/* ---- tiles ---- */

/* half-sample symmetric reflection of i into [0, n) */
static int mirror(int i, int n)
{
	int p = 2 * n;
	i %= p;
	if (i < 0) i += p;
	return i < n ? i : p - 1 - i;
}

void ig_blur(float *out, const float *x, int h, int w, int c, double sigma)
{
	size_t n = (size_t)h * w * c;
	if (sigma <= 0) {
		memcpy(out, x, n * sizeof(float));
		return;
	}
	int rad = (int)ceil(3 * sigma);
	double *k = xmallocarray((size_t)2 * rad + 1, sizeof(double)), ks = 0;
	for (int i = -rad; i <= rad; i++) ks += k[i + rad] = exp(-0.5 * i * i / (sigma * sigma));
	for (int i = 0; i <= 2 * rad; i++) k[i] /= ks;
	float *tmp = xmallocarray(n, sizeof(float));
	/* rows: along x */
	for (int y = 0; y < h; y++)
		for (int xx = 0; xx < w; xx++)
			for (int ch = 0; ch < c; ch++) {
				double acc = 0;
				for (int i = -rad; i <= rad; i++)
					acc += k[i + rad] * x[((size_t)y * w + mirror(xx + i, w)) * c + ch];
				tmp[((size_t)y * w + xx) * c + ch] = (float)acc;
			}
	/* columns: along y */
	for (int y = 0; y < h; y++)
		for (int xx = 0; xx < w; xx++)
			for (int ch = 0; ch < c; ch++) {
				double acc = 0;
				for (int i = -rad; i <= rad; i++)
					acc += k[i + rad] * tmp[((size_t)mirror(y + i, h) * w + xx) * c + ch];
				out[((size_t)y * w + xx) * c + ch] = (float)acc;
			}
	free(tmp);
	free(k);
}

static int cmp_float(const void *a, const void *b)
{
	float u = *(const float *)a, v = *(const float *)b;
	return (u > v) - (u < v);
}

/* colour of v in [0,1] (abs) or [-1,1] (signed), RGB 0..255 */
static void heat_colour(HeatMode mode, double v, double rgb[3])
{
	if (mode == HEAT_SIGNED) {
		/* red for the class, blue against it */
		if (v >= 0) { rgb[0] = 230; rgb[1] = 20; rgb[2] = 20; }
		else { rgb[0] = 20; rgb[1] = 90; rgb[2] = 255; }
		return;
	}
	/* yellow (weak) -> red (strong) */
	rgb[0] = 255;
	rgb[1] = 230 * (1 - v);
	rgb[2] = 0;
}

double ig_heatmap(Image *out, const uint8_t *px, const float *attr, int h, int w, const HeatOptions *o)
{
	size_t np = (size_t)h * w;
	float *m = xmallocarray(np, sizeof(float)), *sm = xmallocarray(np, sizeof(float));
	for (size_t p = 0; p < np; p++) {
		double v = 0;
		for (int c = 0; c < 3; c++) v += o->mode == HEAT_ABS ? fabs(attr[p * 3 + c]) : attr[p * 3 + c];
		m[p] = (float)v;
	}
	ig_blur(sm, m, h, w, 1, o->smooth);
	/* the clip percentile of |map| shows at full colour */
	for (size_t p = 0; p < np; p++) m[p] = fabsf(sm[p]);
	qsort(m, np, sizeof(float), cmp_float);
	size_t q = (size_t)llround(o->clip / 100.0 * (double)(np - 1));
	double scale = o->max > 0 ? o->max : m[q < np ? q : np - 1];
	if (!(scale > 0)) scale = m[np - 1];
	if (!(scale > 0)) scale = 1;   /* an all-zero map: the tile unchanged */
	int S = o->scale, gap = o->panel ? S : 0;
	int ow = w * S * (o->panel ? 2 : 1) + gap, oh = h * S;
	image_alloc(out, oh, ow);
	memset(out->px, 255, (size_t)oh * ow * 3);
	int x0 = o->panel ? w * S + gap : 0;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			size_t p = (size_t)y * w + x;
			double v = sm[p] / scale;
			if (v > 1) v = 1;
			if (v < -1) v = -1;
			if (o->mode == HEAT_ABS && v < 0) v = 0;
			double rgb[3], a = o->alpha * fabs(v), blend[3];
			heat_colour(o->mode, v, rgb);
			for (int c = 0; c < 3; c++) blend[c] = (1 - a) * px[p * 3 + c] + a * rgb[c];
			for (int dy = 0; dy < S; dy++)
				for (int dx = 0; dx < S; dx++) {
					uint8_t *dst = out->px + ((size_t)(y * S + dy) * ow + x0 + x * S + dx) * 3;
					for (int c = 0; c < 3; c++) dst[c] = (uint8_t)lround(blend[c]);
					if (o->panel) {
						uint8_t *t = out->px + ((size_t)(y * S + dy) * ow + x * S + dx) * 3;
						memcpy(t, px + p * 3, 3);
					}
				}
		}
	free(m);
	free(sm);
	return scale;
}

/* ---- the driver ---- */

/* a data stream or an image stream, read as rows of floats (tiles: pixels / 255) */
typedef struct {
	int images, th, tw, F;
	Header *h;
	const char *name;
	DataIn d;
	ImgIn im;
	Block blk;
	ImgBlock ib;
	float *xf;
	size_t xcap;
	/* the current block */
	int n;
	char **ids;
	const float *x;
	const uint8_t *px;   /* tiles only */
	const int32_t *y, *dom;
} RowsIn;

static void rows_open(RowsIn *in, const char *path)
{
	memset(in, 0, sizeof *in);
	SReader r;
	sr_open(&r, path);
	const msgpack_object *f = sr_next(&r);
	if (!f) sr_fail(&r, "empty stream (no header frame)");
	Header h;
	header_parse(&r, f, &h);
	if (h.version != STREAM_VERSION) sr_fail(&r, "version %d, expected %d", h.version, STREAM_VERSION);
	if (strcmp(h.kind, "images") == 0) {
		const msgpack_object *t = obj_get(f, "tile");
		if (!t || t->type != MSGPACK_OBJECT_MAP) sr_fail(&r, "header has no \"tile\" map {h, w}");
		int64_t th = get_int(&r, t, "h"), tw = get_int(&r, t, "w");
		if (th < 1 || tw < 1 || th > IMAGE_MAX_SIDE || tw > IMAGE_MAX_SIDE || th * tw > IMAGE_MAX_PIXELS)
			sr_fail(&r, "tile %lldx%lld is not a valid image size", (long long)tw, (long long)th);
		in->images = 1;
		in->th = in->im.th = (int)th;
		in->tw = in->im.tw = (int)tw;
		in->F = in->th * in->tw * 3;
		in->im.r = r;
		in->im.h = h;
		in->h = &in->im.h;
		in->name = in->im.r.name;
	} else {
		if (strcmp(h.kind, "data") != 0) sr_fail(&r, "header kind is \"%s\", expected \"data\" or \"images\"", h.kind);
		in->d.r = r;
		in->d.h = h;
		in->h = &in->d.h;
		in->name = in->d.r.name;
		in->F = h.nfeat;
		block_init(&in->blk, in->F, 256);
	}
}

static int rows_next(RowsIn *in)
{
	if (!in->images) {
		if (!data_next(&in->d, &in->blk)) return 0;
		in->n = in->blk.n;
		in->ids = in->blk.ids;
		in->x = in->blk.x;
		in->y = in->blk.y;
		in->dom = in->blk.d;
		return 1;
	}
	if (!imgin_next(&in->im, &in->ib)) return 0;
	size_t n = (size_t)in->ib.n * in->F;
	if (n > in->xcap) {
		free(in->xf);
		in->xf = xmallocarray(n, sizeof(float));
		in->xcap = n;
	}
	for (size_t k = 0; k < n; k++) in->xf[k] = (float)in->ib.x[k] * (1.0f / 255.0f);
	in->n = in->ib.n;
	in->ids = in->ib.ids;
	in->x = in->xf;
	in->px = in->ib.x;
	in->y = in->ib.y;
	in->dom = in->ib.d;
	return 1;
}

static void rows_close(RowsIn *in)
{
	if (in->images) {
		imgblock_free(&in->ib);
		imgin_close(&in->im);
	} else {
		block_free(&in->blk);
		data_close(&in->d);
	}
	free(in->xf);
}

static void csv_field(FILE *fp, const char *s)
{
	if (!strpbrk(s, ",\"\n\r")) { fputs(s, fp); return; }
	fputc('"', fp);
	for (; *s; s++) {
		if (*s == '"') fputc('"', fp);
		fputc(*s, fp);
	}
	fputc('"', fp);
}

static void check_features(const Bundle *b, const Header *h, const char *name)
{
	if (h->nfeat != b->h.nfeat)
		die("%s: %d features, the model %s takes %d (prepare the data with normalize --like %s)",
		    name, h->nfeat, b->path, b->h.nfeat, b->path);
	for (int j = 0; j < h->nfeat; j++)
		if (strcmp(h->features[j], b->h.features[j]) != 0)
			die("%s: feature %d is %s, the model %s has %s there (prepare the data with normalize --like %s)",
			    name, j + 1, h->features[j], b->path, b->h.features[j], b->path);
}

/* the input matches the model: tiles of its size (resnet th x tw, else th*tw*3 = F),
 * or a data stream with its features */
static void check_input(const Bundle *b, const RowsIn *in, int resnet, int th, int tw)
{
	if (!in->images) {
		check_features(b, in->h, in->name);
		return;
	}
	if (in->F != b->h.nfeat || (resnet && (in->th != th || in->tw != tw))) {
		if (resnet)
			die("%s: %dx%d tiles, the model %s takes %dx%d (tile the images to the model's size)",
			    in->name, in->tw, in->th, b->path, tw, th);
		die("%s: %dx%d tiles are %d values, the model %s takes %d features",
		    in->name, in->tw, in->th, in->F, b->path, b->h.nfeat);
	}
}

/* the mean row of a prepared source stream (or any data stream with the model's
 * features), or the mean tile of an image stream */
static void baseline_file(const Bundle *b, const char *path, float *base, int resnet, int th, int tw)
{
	RowsIn in;
	rows_open(&in, path);
	check_input(b, &in, resnet, th, tw);
	int F = b->h.nfeat;
	double *sum = xcalloc((size_t)F, sizeof(double));
	long n = 0;
	while (rows_next(&in)) {
		for (int i = 0; i < in.n; i++)
			for (int j = 0; j < F; j++) sum[j] += in.x[(size_t)i * F + j];
		n += in.n;
	}
	if (n == 0) die("%s: no rows: no baseline", in.name);
	for (int j = 0; j < F; j++) base[j] = (float)(sum[j] / n);
	rows_close(&in);
	free(sum);
}

/* the source mean on the model's input scale, from the bundle's preprocessing */
static void baseline_source_mean(const Bundle *b, float *base)
{
	int F = b->h.nfeat;
	const Blob *pb = header_get(&b->h, "preprocessing");
	if (!pb)
		die("%s: the bundle has no preprocessing statistics: no source mean (use --baseline FILE with the prepared source stream)", b->path);
	SReader r;
	memset(&r, 0, sizeof r);
	r.name = b->path;
	r.frame = 1;
	msgpack_unpacked up;
	const msgpack_object *p = blob_object(pb, &up);
	if (p->type != MSGPACK_OBJECT_MAP) sr_fail(&r, "preprocessing: not a map");
	const msgpack_object *steps = obj_get(p, "steps"), *fitted = obj_get(p, "fitted");
	int zscore = 0, other = 0;
	if (steps && steps->type == MSGPACK_OBJECT_ARRAY)
		for (uint32_t i = 0; i < steps->via.array.size; i++) {
			const msgpack_object *s = &steps->via.array.ptr[i];
			if (obj_is_str(s, "zscore")) zscore = 1;
			else if (obj_is_str(s, "combat")) other = 1;
		}
	int is_fitted = fitted && fitted->type == MSGPACK_OBJECT_BOOLEAN && fitted->via.boolean;
	if (zscore && is_fitted) {
		/* z-scored with the fitted means: the fitted data's mean is 0 */
		for (int j = 0; j < F; j++) base[j] = 0;
	} else if (is_fitted && !other && obj_get(p, "sum") && obj_get(p, "count") && obj_get(p, "selected")) {
		Tensor sum, cnt, sel;
		get_tensor(&r, p, "sum", DT_F64, 1, &sum);
		get_tensor(&r, p, "count", DT_F64, 1, &cnt);
		get_tensor(&r, p, "selected", DT_I32, 1, &sel);
		if (sel.shape[0] != F || cnt.shape[0] != sum.shape[0])
			sr_fail(&r, "preprocessing: %lld selected genes for %d features", (long long)sel.shape[0], F);
		const double *sv = sum.data, *cv = cnt.data;
		const int32_t *iv = sel.data;
		for (int j = 0; j < F; j++) {
			if (iv[j] < 0 || iv[j] >= sum.shape[0]) sr_fail(&r, "preprocessing: selected[%d] = %d is out of range", j, iv[j]);
			base[j] = cv[iv[j]] > 0 ? (float)(sv[iv[j]] / cv[iv[j]]) : 0.0f;
		}
		tensor_free(&sum);
		tensor_free(&cnt);
		tensor_free(&sel);
	} else {
		die("%s: the bundle's preprocessing gives no source mean on the model's input scale "
		    "(no fitted z-score or sums); use --baseline FILE with the prepared source stream", b->path);
	}
	msgpack_unpacked_destroy(&up);
}

typedef struct { const double *key; } SortCtx;
static SortCtx sort_ctx;
static int by_key_desc(const void *a, const void *b)
{
	int i = *(const int *)a, j = *(const int *)b;
	double u = sort_ctx.key[i], v = sort_ctx.key[j];
	if (u > v) return -1;
	if (u < v) return 1;
	return i - j;
}

static void write_ranking(const ExplainArgs *a, const Bundle *b, const double *sum, const double *sabs, const long *cnt)
{
	int F = b->h.nfeat, K = b->h.nclass;
	AtomicFile af;
	FILE *fp = atomic_open(&af, a->ranking);
	fputs("class,gene,mean_attribution,mean_abs_attribution,rank,samples\n", fp);
	double *mean = xmallocarray((size_t)F, sizeof(double)), *mabs = xmallocarray((size_t)F, sizeof(double));
	int *idx = xmallocarray((size_t)F, sizeof(int));
	for (int c = 0; c < K; c++) {
		if (cnt[c] == 0) continue;
		for (int j = 0; j < F; j++) {
			mean[j] = sum[(size_t)c * F + j] / cnt[c];
			mabs[j] = sabs[(size_t)c * F + j] / cnt[c];
			idx[j] = j;
		}
		sort_ctx.key = a->rank_abs ? mabs : mean;
		qsort(idx, (size_t)F, sizeof(int), by_key_desc);
		int top = a->top > 0 && a->top < F ? a->top : F;
		for (int r = 0; r < top; r++) {
			int j = idx[r];
			csv_field(fp, b->h.classes[c]);
			fputc(',', fp);
			csv_field(fp, b->h.features[j]);
			fprintf(fp, ",%.6g,%.6g,%d,%ld\n", mean[j], mabs[j], r + 1, cnt[c]);
		}
	}
	atomic_commit(&af);
	free(mean);
	free(mabs);
	free(idx);
}

/* header key "attribution": how the stream was made */
static void attribution_blob(const ExplainArgs *a, const Bundle *b, Blob *out)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	SWriter w;
	memset(&w, 0, sizeof w);
	w.pk = pk;
	w.name = "<attribution>";
	int blur = strcmp(a->baseline, "blur") == 0;
	sw_map(&w, blur ? 8 : 7);
	sw_key(&w, "method"); sw_str(&w, "integrated-gradients");
	sw_key(&w, "model"); sw_str(&w, b->path);
	sw_key(&w, "output"); sw_str(&w, ig_output_names[a->ig.output]);
	sw_key(&w, "class");
	sw_str(&w, a->class_mode == IG_CLASS_NAMED ? a->class_name : a->class_mode == IG_CLASS_LABEL ? "label" : "predicted");
	sw_key(&w, "baseline"); sw_str(&w, a->baseline);
	if (blur) { sw_key(&w, "blur_sigma"); sw_double(&w, a->blur_sigma); }
	sw_key(&w, "steps"); sw_int(&w, a->ig.steps);
	sw_key(&w, "rule"); sw_str(&w, ig_rule_names[a->ig.rule]);
	out->data = xmalloc(sb.size);
	memcpy(out->data, sb.data, sb.size);
	out->len = sb.size;
	msgpack_sbuffer_destroy(&sb);
}

/* a file name from a tile id: [A-Za-z0-9._-] kept, other bytes '_', no leading dot */
static char *safe_name(const char *id)
{
	size_t n = strlen(id);
	char *o = xmalloc(n + 2);
	size_t k = 0;
	if (n == 0 || id[0] == '.') o[k++] = '_';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		o[k++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ? (char)c : '_';
	}
	o[k] = 0;
	return o;
}

void explain_run(const ExplainArgs *args)
{
	ExplainArgs A = *args;
	const ExplainArgs *a = &A;
	Bundle b;
	bundle_read(&b, a->model);
	int F = b.h.nfeat, K = b.h.nclass;
	if (F < 1 || K < 1) die("%s: the bundle lists %d features and %d classes", b.path, F, K);
	int named = -1;
	if (a->class_mode == IG_CLASS_NAMED) {
		named = header_find_class(&b.h, a->class_name);
		if (named < 0) {
			char list[512] = "";
			size_t o = 0;
			for (int k = 0; k < K && o + 2 < sizeof list; k++)
				o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", k ? ", " : "", b.h.classes[k]);
			usage_error("--class %s: not a class of %s (%s)", a->class_name, b.path, list);
		}
	}
	int rth = 0, rtw = 0, resnet = bundle_resnet(&b, &rth, &rtw);
	if (!A.baseline) A.baseline = resnet ? "blur" : "zeros";
	int blur = strcmp(a->baseline, "blur") == 0;
	if (blur && !resnet)
		usage_error("--baseline blur: a blurred-image baseline needs an image model (tiles); "
		            "expression models take zeros, source-mean or FILE");
	if (a->heatmaps && !resnet)
		usage_error("--heatmaps: %s is not an image model (no ResNet encoder): heatmaps are for tiles", b.path);
	if (a->ranking && resnet)
		usage_error("--ranking ranks genes; %s is an image model: use --heatmaps DIR", b.path);
	float *base = xcalloc((size_t)F, sizeof(float));
	if (strcmp(a->baseline, "zeros") == 0 || blur) ;
	else if (strcmp(a->baseline, "source-mean") == 0) baseline_source_mean(&b, base);
	else baseline_file(&b, a->baseline, base, resnet, rth, rtw);

	RowsIn in;
	rows_open(&in, a->input);
	check_input(&b, &in, resnet, rth, rtw);
	/* labels by class name: the model's classes, then the input's others */
	Header oh;
	header_copy(&oh, in.h);
	for (int i = 0; i < oh.nclass; i++) free(oh.classes[i]);
	oh.nclass = 0;
	for (int k = 0; k < K; k++) header_add_class(&oh, b.h.classes[k]);
	int *map = xmallocarray((size_t)in.h->nclass + 1, sizeof(int));
	for (int i = 0; i < in.h->nclass; i++) map[i] = header_add_class(&oh, in.h->classes[i]);
	header_del(&oh, "preprocessing");
	if (in.images) {
		/* the attributions are a data stream with the model's (pixel) features */
		free(oh.kind);
		oh.kind = xstrdup("data");
		header_del(&oh, "tile");
		for (int i = 0; i < oh.nfeat; i++) free(oh.features[i]);
		free(oh.features);
		oh.nfeat = F;
		oh.features = xmallocarray((size_t)F, sizeof(char *));
		for (int j = 0; j < F; j++) oh.features[j] = xstrdup(b.h.features[j]);
	}
	Blob ab;
	attribution_blob(a, &b, &ab);
	header_set(&oh, "attribution", &ab);
	blob_free(&ab);
	if (a->heatmaps && mkdir(a->heatmaps, 0777) != 0 && errno != EEXIST) die("%s: cannot create folder:", a->heatmaps);

	IgModel g;
	ig_start(&g, &b, a->encoder, a->classifier);

	AtomicFile saf, caf, haf;
	SWriter sw;
	if (a->out_stream) {
		FILE *fp = atomic_open(&saf, a->out_stream);
		sw_init(&sw, fp, a->out_stream);
		sw_header(&sw, &oh);
	}
	FILE *cfp = stdout, *hfp = NULL;
	if (a->completeness) cfp = atomic_open(&caf, a->completeness);
	fputs("id,class,f_x,f_baseline,sum_attr,gap\n", cfp);
	char *hindex = NULL;
	if (a->heatmaps) {
		hindex = xasprintf("%s/heatmaps.csv", a->heatmaps);
		hfp = atomic_open(&haf, hindex);
		fputs("id,file,class,f_x,scale\n", hfp);
	}

	double *rsum = a->ranking ? xcalloc((size_t)K * F, sizeof(double)) : NULL;
	double *rabs = a->ranking ? xcalloc((size_t)K * F, sizeof(double)) : NULL;
	long *rcnt = xcalloc((size_t)K, sizeof(long));
	Block ob;
	block_init(&ob, F, 256);
	int cap = 0;
	float *attr = NULL, *bases = NULL;
	uint8_t *tpx = NULL;
	int *cls = NULL;
	double *fx = NULL, *fb = NULL;
	long rows = 0, frames = 0, fallback = 0;
	double gap_sum = 0, gap_max = 0, df_sum = 0;
	/* samples per ig_attribute call: bounded so that the accumulators stay small */
	int sub = (int)((1L << 23) / F);
	if (sub < 1) sub = 1;
	double t0 = now_seconds();
	while (rows_next(&in)) {
		if (in.n > cap) {
			cap = in.n;
			attr = xrealloc(attr, sizeof(float) * (size_t)cap * F);
			if (blur) bases = xrealloc(bases, sizeof(float) * (size_t)cap * F);
			cls = xrealloc(cls, sizeof(int) * (size_t)cap);
			fx = xrealloc(fx, sizeof(double) * (size_t)cap);
			fb = xrealloc(fb, sizeof(double) * (size_t)cap);
		}
		for (int i = 0; i < in.n; i++) {
			int truth = in.y[i] >= 0 ? map[in.y[i]] : -1;
			cls[i] = -1;
			if (a->class_mode == IG_CLASS_NAMED) cls[i] = named;
			else if (a->class_mode == IG_CLASS_LABEL) {
				if (truth >= 0 && truth < K) cls[i] = truth;
				else fallback++;
			}
			if (blur) ig_blur(bases + (size_t)i * F, in.x + (size_t)i * F, rth, rtw, 3, a->blur_sigma);
		}
		for (int s0 = 0; s0 < in.n; s0 += sub) {
			int ns = in.n - s0 < sub ? in.n - s0 : sub;
			ig_attribute(&g, &a->ig, in.x + (size_t)s0 * F, ns, blur ? bases + (size_t)s0 * F : base,
			             blur ? (size_t)F : 0, cls + s0, attr + (size_t)s0 * F, fx + s0, fb + s0);
		}
		block_clear(&ob);
		for (int i = 0; i < in.n; i++) {
			const float *ar = attr + (size_t)i * F;
			double sa = 0;
			for (int j = 0; j < F; j++) sa += ar[j];
			double gap = sa - (fx[i] - fb[i]);
			gap_sum += fabs(gap);
			df_sum += fabs(fx[i] - fb[i]);
			if (fabs(gap) > gap_max) gap_max = fabs(gap);
			csv_field(cfp, in.ids[i]);
			fputc(',', cfp);
			csv_field(cfp, b.h.classes[cls[i]]);
			fprintf(cfp, ",%.9g,%.9g,%.9g,%.9g\n", fx[i], fb[i], sa, gap);
			if (rsum) {
				double *rs = rsum + (size_t)cls[i] * F, *rb = rabs + (size_t)cls[i] * F;
				for (int j = 0; j < F; j++) { rs[j] += ar[j]; rb[j] += fabs(ar[j]); }
			}
			rcnt[cls[i]]++;
			if (a->out_stream) block_push(&ob, in.ids[i], ar, in.y[i] >= 0 ? map[in.y[i]] : -1, in.dom[i]);
			if (a->heatmaps) {
				const uint8_t *px = in.px ? in.px + (size_t)i * F : NULL;
				if (!px) {
					/* a data stream of pixel rows: back to bytes for the overlay */
					if (!tpx) tpx = xmalloc((size_t)F);
					const float *xr = in.x + (size_t)i * F;
					for (int j = 0; j < F; j++) {
						double v = xr[j] * 255.0;
						tpx[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lround(v));
					}
					px = tpx;
				}
				Image im;
				double scale = ig_heatmap(&im, px, ar, rth, rtw, &a->heat);
				char *fname = safe_name(in.ids[i]);
				char *path = xasprintf("%s/%s.png", a->heatmaps, fname);
				image_write_png(path, &im);
				image_free(&im);
				csv_field(hfp, in.ids[i]);
				fputc(',', hfp);
				csv_field(hfp, fname);
				fputs(".png,", hfp);
				csv_field(hfp, b.h.classes[cls[i]]);
				fprintf(hfp, ",%.9g,%.6g\n", fx[i], scale);
				free(path);
				free(fname);
			}
		}
		if (a->out_stream) {
			sw_block(&sw, &ob);
			frames++;
		}
		rows += in.n;
		progress("explained %ld samples", rows);
	}
	progress_done();
	if (a->out_stream) {
		sw_end(&sw, rows, frames);
		atomic_commit(&saf);
	}
	if (a->completeness) atomic_commit(&caf);
	else if (ferror(stdout) || fflush(stdout) != 0) die("write error:");
	if (hfp) atomic_commit(&haf);
	if (a->ranking) write_ranking(a, &b, rsum, rabs, rcnt);
	ig_stop(&g);
	if (fallback)
		warnx("%s: %ld rows without a label the model knows: attributed to their predicted class", in.name, fallback);
	if (rows)
		info("%ld samples, %s of the %s class, baseline %s, %d %s steps: completeness |gap| mean %.3g, max %.3g "
		     "(mean |f(x) - f(baseline)| %.3g); %.1fs",
		     rows, ig_output_names[a->ig.output], a->class_mode == IG_CLASS_NAMED ? a->class_name :
		     a->class_mode == IG_CLASS_LABEL ? "labelled" : "predicted", a->baseline, a->ig.steps,
		     ig_rule_names[a->ig.rule], gap_sum / rows, gap_max, df_sum / rows, now_seconds() - t0);
	else
		warnx("%s: no rows", in.name);
	free(hindex);
	free(rsum);
	free(rabs);
	free(rcnt);
	free(attr);
	free(bases);
	free(tpx);
	free(cls);
	free(fx);
	free(fb);
	free(map);
	free(base);
	block_free(&ob);
	header_free(&oh);
	rows_close(&in);
	bundle_free(&b);
}
