/* encode: the feature extractor (encoder MLP), as an inference filter and as a
 * training stage.
 *
 *   encode --model MODEL.mpk [FILE]
 *     Reads a data stream (FILE or stdin), whose features must be the model's
 *     features in the model's order (prepare raw data with normalize --like MODEL),
 *     and writes the latent data stream on stdout: features "z0".."zH-1", with ids,
 *     labels y, domains d, classes, domains and the other header keys carried over.
 *     Frames read: header, data, end. Frames written: header, data, end.
 *
 *     An image stream (header kind "images", frames {type:"images", ids, x u8
 *     (N,H,W,3), y, d}, see docs/HISTO.md) is read too: each tile becomes the row
 *     pixels / 255 in (H,W,3) order, the layout batch writes for images; its size
 *     must be the model's.
 *
 *   encode --stage [--arch mlp] [--layers 256,256,256] [--act relu] [--norm batch] [--dropout 0.5]
 *     Serves the stage protocol of docs/STAGES.md on stdin/stdout for train-step
 *     (requests init, forward, backward, step, save, load, quit). Each hidden block
 *     is Linear -> activation -> norm -> dropout; the latent width is the last width.
 *
 *   encode --stage --arch resnet [--width 16] [--blocks 1,1,1,1] [--stem small]
 *          [--input-size S|HxW] [--init PARAMS.mpk]
 *     The same protocol for a ResNet-18-style convolutional encoder (common/conv.h) on
 *     image rows (H*W*3 pixels / 255 in (H,W,3) order, as batch writes them): stem,
 *     stages of basic blocks (stage s has width << s channels, stride 2 from the
 *     second stage), global average pooling; the latent width is width << (stages-1).
 *     Its params frame has arch {kind:"resnet", in, input:[h,w], width, blocks, stem,
 *     mean, std, out}. --init starts from the encoder params of a file (a params frame,
 *     e.g. tools/convert-torchvision.py's, or a model bundle) instead of a random init.
 *
 * Exit codes: 0 ok, 1 data or runtime error, 2 usage error. */
#include "conv.h"
#include "image.h"
#include "stage.h"
#include "stream.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void usage(void)
{
	printf("Usage: encode --model MODEL.mpk [FILE]\n"
	       "       encode --stage [OPTIONS]\n"
	       "Encode a data stream into the model's latent space, or serve the encoder\n"
	       "stage of train-step (protocol: docs/STAGES.md).\n"
	       "\n"
	       "  --model FILE       model bundle written by train-step (inference); FILE may\n"
	       "                     be a data stream or an image stream\n"
	       "  --stage            serve the training stage on stdin/stdout\n"
	       "  --arch NAME        mlp or resnet (default mlp)\n"
	       "MLP (--arch mlp):\n"
	       "  --layers LIST      hidden widths (default 256,256,256)\n"
	       "  --act NAME         relu, leaky-relu or tanh (default relu)\n"
	       "  --slope S          LeakyReLU slope (default 0.2)\n"
	       "  --norm NAME        batch, layer or none (default batch)\n"
	       "  --dropout P        dropout probability after each block (default 0.5)\n"
	       "ResNet (--arch resnet; input rows are H*W*3 pixels / 255, as batch writes tiles):\n"
	       "  --width N          channels of the stem and first stage (default 16; ResNet-18: 64)\n"
	       "  --blocks LIST      basic blocks per stage (default 1,1,1,1; ResNet-18: 2,2,2,2)\n"
	       "  --stem NAME        small (conv 3x3 stride 1) or imagenet (conv 7x7 stride 2 +\n"
	       "                     max pool 3x3 stride 2) (default small)\n"
	       "  --input-size S     tile size S or HxW (default: square, from the input width)\n"
	       "  --init FILE        start from the encoder params in FILE (default: random init)\n"
	       "  -q, --quiet        no messages but errors\n"
	       "  -h, --help         this help\n");
	exit(0);
}

/* ---- the ResNet's params frames ---- */

static void pack_floats(SWriter *w, const float *v, int n)
{
	sw_array(w, (size_t)n);
	for (int i = 0; i < n; i++) sw_double(w, v[i]);
}

static void resnet_params_write(SWriter *w, ResNet *m, const Optim *opt)
{
	const ResNetSpec *sp = resnet_spec(m);
	sw_map(w, opt ? 5 : 4);
	sw_key(w, "type"); sw_str(w, "params");
	sw_key(w, "stage"); sw_str(w, "encoder");
	sw_key(w, "arch");
	sw_map(w, 9);
	sw_key(w, "kind"); sw_str(w, "resnet");
	sw_key(w, "in"); sw_int(w, resnet_in(m));
	sw_key(w, "input"); sw_array(w, 2); sw_int(w, sp->h); sw_int(w, sp->w);
	sw_key(w, "width"); sw_int(w, sp->width);
	sw_key(w, "blocks"); sw_array(w, (size_t)sp->nstages);
	for (int i = 0; i < sp->nstages; i++) sw_int(w, sp->blocks[i]);
	sw_key(w, "stem"); sw_str(w, stem_names[sp->stem]);
	sw_key(w, "mean"); pack_floats(w, sp->mean, 3);
	sw_key(w, "std"); pack_floats(w, sp->std, 3);
	sw_key(w, "out"); sw_int(w, resnet_out(m));
	int nt = resnet_ntensors(m);
	sw_key(w, "tensors");
	sw_map(w, (size_t)nt);
	for (int i = 0; i < nt; i++) {
		int nd;
		int64_t sh[4];
		float *d;
		const char *name = resnet_tensor(m, i, &nd, sh, &d);
		sw_key(w, name);
		sw_tensor(w, DT_F32, nd, sh, d);
	}
	if (opt) {
		sw_key(w, "state");
		sw_map(w, 1);
		optim_state_write(w, opt);
	}
}

static int arch_is_resnet(const msgpack_object *p)
{
	const msgpack_object *a = p ? obj_get(p, "arch") : NULL;
	return a && a->type == MSGPACK_OBJECT_MAP && obj_is_str(obj_get(a, "kind"), "resnet");
}

static void read_floats(const SReader *r, const msgpack_object *a, const char *key, float *out, int n)
{
	const msgpack_object *o = obj_get(a, key);
	if (!o) return;  /* default kept */
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != (uint32_t)n) sr_fail(r, "arch.%s: expected %d numbers", key, n);
	for (int i = 0; i < n; i++) {
		double v = obj_num(r, &o->via.array.ptr[i], key);
		if (!isfinite(v)) sr_fail(r, "arch.%s: not finite", key);
		out[i] = (float)v;
	}
}

/* The ResNet of a params map (arch and every tensor checked); with opt and a state,
 * the optimiser too (*has_state = 1). */
static ResNet *resnet_params_read(const SReader *r, const msgpack_object *p, Optim *opt, int *has_state)
{
	if (has_state) *has_state = 0;
	if (!p || p->type != MSGPACK_OBJECT_MAP) sr_fail(r, "params: not a map");
	char *st = get_str(r, p, "stage");
	if (strcmp(st, "encoder") != 0) {
		char msg[160];
		snprintf(msg, sizeof msg, "params are for the %s stage, not the encoder", st);
		free(st);
		sr_fail(r, "%s", msg);
	}
	free(st);
	const msgpack_object *a = obj_get(p, "arch");
	if (!a || a->type != MSGPACK_OBJECT_MAP) sr_fail(r, "params: no arch map");
	ResNetSpec sp;
	resnet_spec_init(&sp);
	const msgpack_object *in = obj_get(a, "input");
	if (!in || in->type != MSGPACK_OBJECT_ARRAY || in->via.array.size != 2) sr_fail(r, "arch.input: expected [height, width]");
	int64_t h = obj_int(r, &in->via.array.ptr[0], "arch.input"), w = obj_int(r, &in->via.array.ptr[1], "arch.input");
	int64_t width = get_int(r, a, "width");
	if (h < 1 || h > 4096 || w < 1 || w > 4096 || width < 1 || width > 4096) sr_fail(r, "arch: input or width out of range");
	sp.h = (int)h; sp.w = (int)w; sp.width = (int)width;
	const msgpack_object *bl = obj_get(a, "blocks");
	if (!bl || bl->type != MSGPACK_OBJECT_ARRAY || bl->via.array.size < 1 || bl->via.array.size > RESNET_MAXSTAGES)
		sr_fail(r, "arch.blocks: expected 1 to %d counts", RESNET_MAXSTAGES);
	sp.nstages = (int)bl->via.array.size;
	for (int i = 0; i < sp.nstages; i++) {
		int64_t v = obj_int(r, &bl->via.array.ptr[i], "arch.blocks");
		if (v < 1 || v > 64) sr_fail(r, "arch.blocks[%d] = %lld is out of range", i, (long long)v);
		sp.blocks[i] = (int)v;
	}
	char *stem = get_str(r, a, "stem");
	sp.stem = -1;
	for (int i = 0; i < STEM_COUNT; i++) if (strcmp(stem, stem_names[i]) == 0) sp.stem = i;
	free(stem);
	if (sp.stem < 0) sr_fail(r, "arch.stem: unknown stem");
	read_floats(r, a, "mean", sp.mean, 3);
	read_floats(r, a, "std", sp.std, 3);
	const char *why = resnet_spec_check(&sp);
	if (why[0]) sr_fail(r, "arch: %s", why);
	ResNet *m = resnet_new(&sp, 0);
	if (opt_int(r, a, "in", resnet_in(m)) != resnet_in(m)) sr_fail(r, "arch.in does not match arch.input");
	const msgpack_object *ts = obj_get(p, "tensors");
	if (!ts || ts->type != MSGPACK_OBJECT_MAP) sr_fail(r, "params: no tensors map");
	int nt = resnet_ntensors(m);
	for (int i = 0; i < nt; i++) {
		int nd;
		int64_t sh[4];
		float *d;
		const char *name = resnet_tensor(m, i, &nd, sh, &d);
		Tensor t;
		obj_tensor(r, obj_get(ts, name), name, DT_F32, nd, &t);
		for (int k = 0; k < nd; k++)
			if (t.shape[k] != sh[k])
				sr_fail(r, "tensor %s: shape[%d] is %lld, the architecture needs %lld", name, k, (long long)t.shape[k], (long long)sh[k]);
		const float *src = t.data;
		for (int64_t k = 0; k < tensor_numel(&t); k++)
			if (!isfinite(src[k])) sr_fail(r, "tensor %s: element %lld is not finite", name, (long long)k);
		memcpy(d, t.data, t.nbytes);
		tensor_free(&t);
	}
	if (ts->via.map.size != (uint32_t)nt) sr_fail(r, "params: %u tensors, the architecture has %d", ts->via.map.size, nt);
	const msgpack_object *state = obj_get(p, "state");
	if (opt && state && state->type == MSGPACK_OBJECT_MAP) {
		optim_state_read(r, state, opt, resnet_nparams(m));
		if (has_state) *has_state = 1;
	}
	return m;
}

/* ---- the ResNet stage ---- */

static struct {
	ResNetSpec spec;
	int size_given;
	const char *init;
	ResNet *m;
	Optim opt;
	int last_b;
} R;

/* the encoder params of FILE: a params frame (first frame) or a model bundle */
static ResNet *load_init(const char *path)
{
	SReader r;
	sr_open(&r, path);
	ResNet *m = NULL;
	const msgpack_object *f;
	while (!m && (f = sr_next(&r))) {
		const char *t = frame_type(&r, f);
		if (strcmp(t, "params") == 0 && obj_is_str(obj_get(f, "stage"), "encoder")) {
			if (!arch_is_resnet(f)) sr_fail(&r, "the encoder params are not a resnet's");
			m = resnet_params_read(&r, f, NULL, NULL);
		}
	}
	if (!m) {
		r.frame++;
		sr_fail(&r, "no encoder params frame");
	}
	sr_close(&r);
	return m;
}

static void r_reply_arch(Stage *s)
{
	stage_ok(s, 2);
	sw_key(&s->out, "out"); sw_int(&s->out, resnet_out(R.m));
	sw_key(&s->out, "nparams"); sw_int(&s->out, (int64_t)resnet_nparams(R.m));
}

static void r_init(Stage *s, const msgpack_object *req)
{
	int64_t in = get_int(&s->in, req, "in");
	int64_t seed = opt_int(&s->in, req, "seed", 1);
	ResNetSpec sp = R.spec;
	if (!R.size_given) {
		long side = in > 0 && in % 3 == 0 ? lround(sqrt((double)(in / 3))) : 0;
		if (side < 1 || side * side * 3 != in) {
			stage_error(s, "init: %lld inputs are not a square RGB tile (side*side*3); give --input-size HxW", (long long)in);
			return;
		}
		sp.h = sp.w = (int)side;
	}
	if ((int64_t)sp.h * sp.w * 3 != in) {
		stage_error(s, "init: %lld inputs, a %dx%d RGB tile has %d", (long long)in, sp.h, sp.w, sp.h * sp.w * 3);
		return;
	}
	const char *why = resnet_spec_check(&sp);
	if (why[0]) { stage_error(s, "init: %s", why); return; }
	if (R.m) { resnet_free(R.m); optim_free(&R.opt); }
	if (R.init) {
		R.m = load_init(R.init);
		const ResNetSpec *ip = resnet_spec(R.m);
		if (ip->h != sp.h || ip->w != sp.w) {
			stage_error(s, "init: %s holds a %dx%d encoder, the tiles are %dx%d", R.init, ip->h, ip->w, sp.h, sp.w);
			resnet_free(R.m);
			R.m = NULL;
			return;
		}
	} else {
		R.m = resnet_new(&sp, (uint64_t)seed);
	}
	optim_from_request(&s->in, req, &R.opt, resnet_nparams(R.m));
	R.last_b = 0;
	r_reply_arch(s);
}

static void r_forward(Stage *s, const msgpack_object *req)
{
	Tensor x;
	int train = req_bool(&s->in, req, "train", 0);
	int b = req_matrix(s, req, "x", resnet_in(R.m), &x);
	if (train && b < 2) {
		tensor_free(&x);
		stage_error(s, "forward: a training batch of %d row%s would reach BatchNorm", b, b == 1 ? "" : "s");
		return;
	}
	const float *y = b ? resnet_forward(R.m, x.data, b, train) : NULL;
	R.last_b = b && resnet_can_backward(R.m) ? b : 0;
	int64_t sh[2] = { b, resnet_out(R.m) };
	static const float none[1];
	stage_ok(s, 1);
	sw_key(&s->out, "y");
	sw_tensor(&s->out, DT_F32, 2, sh, y ? y : none);
	tensor_free(&x);
}

static void r_step(double lr)
{
	optim_step(&R.opt, resnet_params(R.m), resnet_grads(R.m), (float)lr);
	resnet_zero_grad(R.m);
}

static void r_backward(Stage *s, const msgpack_object *req)
{
	Tensor dy;
	int b = req_matrix(s, req, "dy", resnet_out(R.m), &dy);
	if (b != R.last_b || b == 0) {
		tensor_free(&dy);
		stage_error(s, "backward: dy has %d rows, the last forward that backward can follow had %d (evaluation batches over %d rows cannot be differentiated)",
		            b, R.last_b, RESNET_EVAL_CHUNK);
		return;
	}
	int want = req_bool(&s->in, req, "want_dx", 0);
	const msgpack_object *lr = obj_get(req, "lr");
	float *dx = want ? xmallocarray((size_t)b * resnet_in(R.m), sizeof(float)) : NULL;
	resnet_backward(R.m, dy.data, dx);
	if (lr) r_step(obj_num(&s->in, lr, "lr"));
	if (want) {
		int64_t sh[2] = { b, resnet_in(R.m) };
		stage_ok(s, 1);
		sw_key(&s->out, "dx");
		sw_tensor(&s->out, DT_F32, 2, sh, dx);
	} else {
		stage_ok(s, 0);
	}
	free(dx);
	tensor_free(&dy);
}

static void r_load(Stage *s, const msgpack_object *req)
{
	const msgpack_object *p = obj_get(req, "params");
	if (!arch_is_resnet(p)) {
		stage_error(s, "load: the params are not a resnet encoder's (arch.kind)");
		return;
	}
	Optim opt;
	int has_state;
	memset(&opt, 0, sizeof opt);
	ResNet *m = resnet_params_read(&s->in, p, &opt, &has_state);
	if (R.m) {
		resnet_free(R.m);
		if (has_state || R.opt.n != resnet_nparams(m)) optim_free(&R.opt);
	}
	R.m = m;
	if (has_state) R.opt = opt;
	else if (!R.opt.m || R.opt.n != resnet_nparams(m)) optim_from_request(&s->in, req, &R.opt, resnet_nparams(R.m));
	R.last_b = 0;
	r_reply_arch(s);
}

static _Noreturn void resnet_serve(Stage *s)
{
	sr_open_fd(&s->in, 0, "<requests>");
	sw_init(&s->out, stdout, "<stdout>");
	for (;;) {
		const msgpack_object *req = sr_next(&s->in);
		if (!req) break;
		char type[64];
		snprintf(type, sizeof type, "%s", frame_type(&s->in, req));
		if (strcmp(type, "quit") == 0) {
			stage_ok(s, 0);
			sw_flush(&s->out);
			break;
		}
		if (strcmp(type, "init") == 0) r_init(s, req);
		else if (!R.m && strcmp(type, "load") != 0) stage_error(s, "%s: the stage is not initialised (send init or load first)", type);
		else if (strcmp(type, "forward") == 0) r_forward(s, req);
		else if (strcmp(type, "backward") == 0) r_backward(s, req);
		else if (strcmp(type, "step") == 0) {
			r_step(get_num(&s->in, req, "lr"));
			stage_ok(s, 0);
		} else if (strcmp(type, "save") == 0) {
			int state = req_bool(&s->in, req, "state", 0);
			stage_ok(s, 1);
			sw_key(&s->out, "params");
			resnet_params_write(&s->out, R.m, state ? &R.opt : NULL);
		} else if (strcmp(type, "load") == 0) r_load(s, req);
		else stage_error(s, "unknown request \"%s\" for the encoder stage", type);
		sw_flush(&s->out);
	}
	if (R.m) {
		resnet_free(R.m);
		optim_free(&R.opt);
	}
	sr_close(&s->in);
	exit(0);
}

/* ---- inference ---- */

typedef struct {
	Mlp *mlp;
	ResNet *res;
} Enc;

static int enc_in(const Enc *e) { return e->res ? resnet_in(e->res) : mlp_spec(e->mlp)->in; }
static int enc_out(const Enc *e) { return e->res ? resnet_out(e->res) : mlp_out(e->mlp); }
static const float *enc_forward(Enc *e, const float *x, int n)
{
	return e->res ? resnet_forward(e->res, x, n, 0) : mlp_forward(e->mlp, x, n, 0);
}

static void write_rows(SWriter *w, Block *out, Enc *e, char **ids, const float *x, const int32_t *y, const int32_t *d, int n, int H)
{
	const float *z = n ? enc_forward(e, x, n) : NULL;
	block_clear(out);
	for (int i = 0; i < n; i++) block_push(out, ids[i], z + (size_t)i * H, y[i], d[i]);
	sw_block(w, out);
}

static void run_model(const char *model, const char *path)
{
	Bundle b;
	bundle_read(&b, model);
	Enc e = { 0 };
	for (int i = 0; i < b.n && !e.res; i++) {
		if (strcmp(b.stage[i], "encoder") != 0) continue;
		msgpack_unpacked up;
		const msgpack_object *o = blob_object(&b.params[i], &up);
		if (arch_is_resnet(o)) {
			SReader r;
			memset(&r, 0, sizeof r);
			r.name = b.path;
			r.frame = b.frame[i];
			e.res = resnet_params_read(&r, o, NULL, NULL);
		}
		msgpack_unpacked_destroy(&up);
	}
	if (!e.res) e.mlp = bundle_mlp(&b, "encoder", NULL);
	int F = enc_in(&e), H = enc_out(&e);
	if (F != b.h.nfeat)
		die("%s: the encoder takes %d inputs, the bundle lists %d features", model, F, b.h.nfeat);

	SReader r;
	sr_open(&r, path);
	const msgpack_object *f = sr_next(&r);
	if (!f) sr_fail(&r, "empty stream (no header frame)");
	Header ih;
	header_parse(&r, f, &ih);
	int images = strcmp(ih.kind, "images") == 0;
	DataIn din;
	ImgIn iin;
	if (images) {
		memset(&iin, 0, sizeof iin);
		const msgpack_object *t = obj_get(f, "tile");
		if (!t || t->type != MSGPACK_OBJECT_MAP) sr_fail(&r, "header has no \"tile\" map {h, w}");
		int64_t th = get_int(&r, t, "h"), tw = get_int(&r, t, "w");
		if (th < 1 || tw < 1 || th > IMAGE_MAX_SIDE || tw > IMAGE_MAX_SIDE) sr_fail(&r, "tile %lldx%lld is not a valid image size", (long long)tw, (long long)th);
		if (th * tw * 3 != F || (e.res && (th != resnet_spec(e.res)->h || tw != resnet_spec(e.res)->w)))
			die("%s: %lldx%lld tiles, the model %s takes %s (tile the images to the model's size)", r.name,
			    (long long)tw, (long long)th, model,
			    e.res ? xasprintf("%dx%d", resnet_spec(e.res)->w, resnet_spec(e.res)->h) : xasprintf("%d values", F));
		iin.r = r;
		iin.h = ih;
		iin.th = (int)th;
		iin.tw = (int)tw;
	} else {
		if (strcmp(ih.kind, "data") != 0) sr_fail(&r, "header kind is \"%s\", expected \"data\" or \"images\"", ih.kind);
		if (ih.nfeat != b.h.nfeat)
			die("%s: %d features, the model %s expects %d (prepare the data with normalize --like %s)",
			    r.name, ih.nfeat, model, b.h.nfeat, model);
		for (int i = 0; i < ih.nfeat; i++)
			if (strcmp(ih.features[i], b.h.features[i]) != 0)
				die("%s: feature %d is \"%s\", the model %s expects \"%s\" (prepare the data with normalize --like %s)",
				    r.name, i + 1, ih.features[i], model, b.h.features[i], model);
		memset(&din, 0, sizeof din);
		din.r = r;
		din.h = ih;
	}
	Header oh;
	header_copy(&oh, &ih);
	free(oh.kind);
	oh.kind = xstrdup("data");
	if (images) header_del(&oh, "tile");
	for (int i = 0; i < oh.nfeat; i++) free(oh.features[i]);
	free(oh.features);
	oh.nfeat = H;
	oh.features = xmallocarray((size_t)H, sizeof(char *));
	for (int i = 0; i < H; i++) oh.features[i] = xasprintf("z%d", i);
	SWriter w;
	sw_init(&w, stdout, "<stdout>");
	sw_header(&w, &oh);
	Block out;
	block_init(&out, H, 256);
	long rows = 0, frames = 0;
	if (images) {
		ImgBlock ib;
		memset(&ib, 0, sizeof ib);
		float *x = NULL;
		size_t xcap = 0;
		while (imgin_next(&iin, &ib)) {
			size_t n = (size_t)ib.n * F;
			if (n > xcap) { free(x); x = xmallocarray(n, sizeof(float)); xcap = n; }
			for (size_t k = 0; k < n; k++) x[k] = (float)ib.x[k] * (1.0f / 255.0f);
			write_rows(&w, &out, &e, ib.ids, x, ib.y, ib.d, ib.n, H);
			rows += ib.n;
			frames++;
		}
		free(x);
		imgblock_free(&ib);
		imgin_close(&iin);
	} else {
		Block blk;
		block_init(&blk, din.h.nfeat, 256);
		while (data_next(&din, &blk)) {
			write_rows(&w, &out, &e, blk.ids, blk.x, blk.y, blk.d, blk.n, H);
			rows += blk.n;
			frames++;
		}
		block_free(&blk);
		data_close(&din);
	}
	sw_end(&w, rows, frames);
	sw_flush(&w);
	block_free(&out);
	header_free(&oh);
	if (e.res) resnet_free(e.res);
	else mlp_free(e.mlp);
	bundle_free(&b);
}

static void parse_size(const char *s, ResNetSpec *sp)
{
	char *x = strchr(s, 'x');
	if (!x) {
		sp->h = sp->w = (int)parse_long("--input-size", s, 4, 4096);
		return;
	}
	char *a = xstrdup(s);
	a[x - s] = 0;
	sp->h = (int)parse_long("--input-size", a, 4, 4096);
	sp->w = (int)parse_long("--input-size", a + (x - s) + 1, 4, 4096);
	free(a);
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	enum { O_MODEL = 256, O_STAGE, O_LAYERS, O_ACT, O_SLOPE, O_NORM, O_DROPOUT, O_QUIET,
	       O_ARCH, O_WIDTH, O_BLOCKS, O_STEM, O_SIZE, O_INIT };
	static const struct option opts[] = {
		{ "model", required_argument, 0, O_MODEL }, { "stage", no_argument, 0, O_STAGE },
		{ "layers", required_argument, 0, O_LAYERS }, { "act", required_argument, 0, O_ACT },
		{ "slope", required_argument, 0, O_SLOPE }, { "norm", required_argument, 0, O_NORM },
		{ "dropout", required_argument, 0, O_DROPOUT }, { "quiet", no_argument, 0, O_QUIET },
		{ "arch", required_argument, 0, O_ARCH }, { "width", required_argument, 0, O_WIDTH },
		{ "blocks", required_argument, 0, O_BLOCKS }, { "stem", required_argument, 0, O_STEM },
		{ "input-size", required_argument, 0, O_SIZE }, { "init", required_argument, 0, O_INIT },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
	};
	Stage s;
	memset(&s, 0, sizeof s);
	s.role = "encoder";
	s.arch.nhidden = 3;
	s.arch.hidden[0] = s.arch.hidden[1] = s.arch.hidden[2] = 256;
	s.arch.act = ACT_RELU;
	s.arch.slope = 0.2f;
	s.arch.norm = NORM_BATCH;
	s.arch.dropout = 0.5f;
	resnet_spec_init(&R.spec);
	const char *model = NULL;
	int stage = 0, archopt = 0, resopt = 0, resnet = 0, c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hq", opts, NULL)) != -1) {
		switch (c) {
		case O_MODEL: model = optarg; break;
		case O_STAGE: stage = 1; break;
		case O_LAYERS: parse_layers(&s.arch, "--layers", optarg); archopt = 1; break;
		case O_ACT: s.arch.act = parse_act("--act", optarg); archopt = 1; break;
		case O_SLOPE: s.arch.slope = (float)parse_double("--slope", optarg, 0, 1); archopt = 1; break;
		case O_NORM: s.arch.norm = parse_norm("--norm", optarg); archopt = 1; break;
		case O_DROPOUT: s.arch.dropout = (float)parse_double("--dropout", optarg, 0, 0.99); archopt = 1; break;
		case 'q':
		case O_QUIET: quiet = 1; break;
		case O_ARCH:
			if (strcmp(optarg, "resnet") == 0) resnet = 1;
			else if (strcmp(optarg, "mlp") == 0) resnet = 0;
			else usage_error("--arch: %s: expected mlp or resnet", optarg);
			break;
		case O_WIDTH: R.spec.width = (int)parse_long("--width", optarg, 1, 4096); resopt = 1; break;
		case O_BLOCKS:
			R.spec.nstages = parse_int_list("--blocks", optarg, R.spec.blocks, RESNET_MAXSTAGES, 1, 64);
			if (R.spec.nstages < 1) usage_error("--blocks: needs at least one stage");
			resopt = 1;
			break;
		case O_STEM:
			R.spec.stem = -1;
			for (int i = 0; i < STEM_COUNT; i++) if (strcmp(optarg, stem_names[i]) == 0) R.spec.stem = i;
			if (R.spec.stem < 0) usage_error("--stem: %s: expected small or imagenet", optarg);
			resopt = 1;
			break;
		case O_SIZE: parse_size(optarg, &R.spec); R.size_given = 1; resopt = 1; break;
		case O_INIT: R.init = optarg; resopt = 1; break;
		case 'h': usage();
		case ':': usage_error("%s: needs a value", argv[optind - 1]);
		default: usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (stage && model) usage_error("--stage and --model exclude each other");
	if (!stage && !model) usage_error("needs --model FILE (inference) or --stage (training)");
	if (stage) {
		if (optind < argc) usage_error("--stage takes no file argument");
		if (resnet && archopt) usage_error("--layers, --act, --slope, --norm and --dropout are MLP options (--arch mlp)");
		if (!resnet && resopt) usage_error("--width, --blocks, --stem, --input-size and --init are ResNet options (--arch resnet)");
		if (resnet) {
			if (R.size_given) {
				const char *why = resnet_spec_check(&R.spec);
				if (why[0]) usage_error("--input-size, --width, --blocks, --stem: %s", why);
			}
			resnet_serve(&s);
		}
		stage_serve(&s);
	}
	if (archopt || resopt || resnet) usage_error("--arch and the architecture options apply to --stage (the model has its architecture)");
	if (argc - optind > 1) usage_error("at most one input file");
	run_model(model, optind < argc ? argv[optind] : "-");
	return 0;
}
