/* discriminate: the domain head, as an inference filter and as a training stage.
 *
 *   discriminate --model MODEL.mpk [FILE]
 *     Reads a latent data stream (encode --model) and writes CSV
 *     "id,domain,p_target" (DANN: the domain classifier's probability that the row
 *     comes from the target domain) or "id,domain,score" (WGAN-GP: the critic's score,
 *     high for source-like rows). A conditional domain head (train-step --align
 *     conditional) reads the map p (x) z of the classifier's probabilities and the
 *     latent row (common/cond.h): computed here with the bundle's classifier.
 *     Frames read: header, data, end.
 *
 *   discriminate --alignment [--seed 1] [--source NAME] [--target NAME] [--max-rows 2000]
 *                [--format json|csv] [--name TEXT] [LATENT | SOURCE_LATENT TARGET_LATENT]
 *     Domain-alignment metrics between source and target features (common/align.h,
 *     docs/EXPLAIN.md): the proxy A-distance of a fresh linear domain classifier
 *     (trained on a seeded half, balanced error on the other half, PAD = 2(1 - 2 err))
 *     and the unbiased RBF-kernel MMD^2 with the median-heuristic bandwidth. One
 *     stream (stdin by default): its domains named by --source/--target (default the
 *     domains "source" and "target", or the first two of the header); two streams:
 *     every row of the first is source, of the second target. Writes one JSON object
 *     (or a CSV header and row) on stdout. Frames read: header, data, end.
 *
 *   discriminate --stage --method dann|wgan-gp [--layers 256,128,64] [--act A] [--norm none]
 *     Serves the domain stage of docs/STAGES.md: hidden blocks then a Linear of width 1.
 *     dann: the gradient reversal layer and a binary domain classifier (request
 *       "dann": BCE with the domain labels, an optimiser step, dz reversed and scaled
 *       by lambda); default act relu.
 *     wgan-gp: the critic (request "critic_step": -mean softplus(D(zs)) +
 *       mean softplus(D(zt)) + gp_weight * GP on random interpolates, optimiser step,
 *       repeated "iters" times on the same z, the source term weighted by "ws" when
 *       given, optionally followed by the encoder's adversarial gradient; request "gen_loss":
 *       -mean softplus(D(zt)) and its dz, no critic update); default act leaky-relu
 *       with slope 0.2; BatchNorm is refused (the gradient penalty is per sample).
 *
 * Exit codes: 0 ok, 1 data or runtime error, 2 usage error. */
#include "align.h"
#include "cond.h"
#include "stage.h"
#include "stream.h"
#include "util.h"
#include "validate.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void usage(void)
{
	printf("Usage: discriminate --model MODEL.mpk [FILE]\n"
	       "       discriminate --alignment [OPTIONS] [LATENT | SOURCE_LATENT TARGET_LATENT]\n"
	       "       discriminate --stage --method dann|wgan-gp [OPTIONS]\n"
	       "Score the domain of a latent stream (encode --model), measure how well source\n"
	       "and target features are aligned, or serve the domain stage of train-step\n"
	       "(protocol: docs/STAGES.md).\n"
	       "\n"
	       "  --model FILE       model bundle written by train-step (inference)\n"
	       "  --alignment        proxy A-distance and MMD between source and target rows\n"
	       "                     (JSON on stdout)\n"
	       "  --seed N           alignment: seed of the split and subsample (default 1)\n"
	       "  --source NAME      alignment: the source domain of a single stream (default\n"
	       "                     \"source\", else the header's first domain)\n"
	       "  --target NAME      alignment: the target domain (default \"target\", else the\n"
	       "                     header's second domain)\n"
	       "  --max-rows N       alignment: rows per domain entering MMD, a seeded\n"
	       "                     subsample (default 2000)\n"
	       "  --format F         alignment: json or csv (default json)\n"
	       "  --name TEXT        alignment: a name field for the result, e.g. before/after\n"
	       "                     (default none)\n"
	       "  --stage            serve the training stage on stdin/stdout\n"
	       "  --method M         dann or wgan-gp (default dann)\n"
	       "  --layers LIST      hidden widths before the 1-wide output (default 256,128,64)\n"
	       "  --act NAME         relu, leaky-relu or tanh (default relu for dann,\n"
	       "                     leaky-relu for wgan-gp)\n"
	       "  --slope S          LeakyReLU slope (default 0.2)\n"
	       "  --norm NAME        batch, layer or none (default none; wgan-gp refuses batch)\n"
	       "  --dropout P        dropout probability (default 0; wgan-gp needs 0)\n"
	       "  -q, --quiet        no messages but errors\n"
	       "  -h, --help         this help\n");
	exit(0);
}

/* ---- the stage ---- */

/* optional row weights KEY f32 (n), each finite and >= 0 (importance-weighted
 * alignment): 1 with *w NULL when absent, 1 with *w set when good, 0 (a stage
 * error answered) when bad */
static int req_weights(Stage *s, const msgpack_object *req, const char *key, int n, Tensor *t, const float **w)
{
	*w = NULL;
	memset(t, 0, sizeof *t);
	if (!obj_get(req, key)) return 1;
	get_tensor(&s->in, req, key, DT_F32, 1, t);
	if (t->shape[0] != n) {
		stage_error(s, "%s has %lld rows, expected %d", key, (long long)t->shape[0], n);
		return 0;
	}
	const float *v = t->data;
	for (int i = 0; i < n; i++)
		if (!(v[i] >= 0 && isfinite(v[i]))) {
			stage_error(s, "%s[%d] = %g: a weight must be finite and at least 0", key, i, v[i]);
			return 0;
		}
	*w = v;
	return 1;
}

static int dann(Stage *s, const msgpack_object *req)
{
	Tensor z, d, wt;
	int in = mlp_spec(s->m)->in;
	int B = req_matrix(s, req, "z", in, &z);
	get_tensor(&s->in, req, "d", DT_I32, 1, &d);
	const float *rw = NULL;
	memset(&wt, 0, sizeof wt);
	double lambda = get_num(&s->in, req, "lambda");
	int train = req_bool(&s->in, req, "train", 1);
	const msgpack_object *lr = obj_get(req, "lr");
	const int32_t *dd = d.data;
	if (d.shape[0] != B || B < 1) {
		stage_error(s, "dann: z has %d rows, d has %lld (need the same, at least 1)", B, (long long)d.shape[0]);
		goto out;
	}
	if (train && B < 2 && mlp_spec(s->m)->norm == NORM_BATCH) {
		stage_error(s, "dann: a training batch of 1 row would reach BatchNorm");
		goto out;
	}
	if (!req_weights(s, req, "w", B, &wt, &rw)) goto out;
	float *t = xmallocarray((size_t)B, sizeof(float)), *dl = xmallocarray((size_t)B, sizeof(float));
	for (int i = 0; i < B; i++) {
		if (dd[i] != 0 && dd[i] != 1) {
			free(t); free(dl);
			stage_error(s, "dann: row %d: domain %d is not 0 (source) or 1 (target)", i, dd[i]);
			goto out;
		}
		t[i] = (float)dd[i];
	}
	const float *logit = mlp_forward(s->m, z.data, B, train);
	/* with w: (1/B) sum_i w_i BCE_i, the importance-weighted domain loss */
	float loss = bce_logits_w(dl, logit, t, rw, B);
	int correct = 0;
	for (int i = 0; i < B; i++) correct += (logit[i] > 0) == (dd[i] == 1);
	float *dz = NULL;
	if (train) {
		float *dx = xmallocarray((size_t)B * in, sizeof(float));
		dz = xcalloc((size_t)B * in, sizeof(float));
		/* the discriminator descends its BCE; the encoder receives the gradient
		 * through the gradient reversal layer: dz = -lambda * dBCE/dz */
		mlp_backward(s->m, dl, dx);
		grl_backward(dz, dx, (float)lambda, (long)B * in);
		free(dx);
		if (lr) stage_step(s, obj_num(&s->in, lr, "lr"));
	}
	int64_t sh[2] = { B, in };
	stage_ok(s, dz ? 3 : 2);
	sw_key(&s->out, "loss"); sw_double(&s->out, loss);
	sw_key(&s->out, "acc"); sw_double(&s->out, (double)correct / B);
	if (dz) { sw_key(&s->out, "dz"); sw_tensor(&s->out, DT_F32, 2, sh, dz); }
	free(dz);
	free(t);
	free(dl);
out:
	tensor_free(&z);
	tensor_free(&d);
	tensor_free(&wt);
	return 1;
}

/* -mean softplus(D(zt)) and its gradient w.r.t. zt into dzt (B,in); no critic update */
static float gen_loss(Stage *s, const float *zt, int B, float *dzt)
{
	const float *sc = mlp_forward(s->m, zt, B, 1);
	float *ds = xmallocarray((size_t)B, sizeof(float));
	float l = -mean_softplus(ds, sc, 1.0f, B);
	for (int i = 0; i < B; i++) ds[i] = -ds[i];
	mlp_backward(s->m, ds, dzt);
	mlp_zero_grad(s->m);  /* the encoder's turn: the critic keeps its parameters */
	free(ds);
	return l;
}

static int critic(Stage *s, const msgpack_object *req, int step)
{
	Tensor zs, zt, wt;
	int in = mlp_spec(s->m)->in;
	int Bs = 0, Bt = req_matrix(s, req, "zt", in, &zt);
	const float *ws = NULL;
	memset(&zs, 0, sizeof zs);
	memset(&wt, 0, sizeof wt);
	if (step) Bs = req_matrix(s, req, "zs", in, &zs);
	if (Bt < 1 || (step && Bs < 1)) {
		stage_error(s, "%s: needs at least one source and one target row", step ? "critic_step" : "gen_loss");
		goto out;
	}
	float loss = 0, gap = 0, gp = 0, gl = 0;
	int gen = !step || req_bool(&s->in, req, "gen", 0);
	if (step) {
		if (!req_weights(s, req, "ws", Bs, &wt, &ws)) goto out;
		double gpw = opt_num(&s->in, req, "gp_weight", 10);
		double lr = get_num(&s->in, req, "lr");
		/* iters critic updates on these z (WDGRL's inner loop: n critic steps per
		 * encoder step), each with fresh interpolates; the answer reports the last */
		double it = opt_num(&s->in, req, "iters", 1);
		if (!(it >= 1 && it <= 1000) || it != floor(it)) {
			stage_error(s, "critic_step: iters %g is not an integer from 1 to 1000", it);
			goto out;
		}
		int iters = (int)it;
		int B = Bs + Bt, n = Bs > Bt ? Bs : Bt;
		float *cat = xmallocarray((size_t)B * in, sizeof(float));
		memcpy(cat, zs.data, zs.nbytes);
		memcpy(cat + (size_t)Bs * in, zt.data, zt.nbytes);
		float *ds = xmallocarray((size_t)B, sizeof(float));
		float *xh = xmallocarray((size_t)n * in, sizeof(float));
		for (int iter = 0; iter < iters; iter++) {
			mlp_zero_grad(s->m);
			/* one forward of [zs; zt]: the critic has no BatchNorm, rows are independent.
			 * zs and zt are detached copies of the encoder output: nothing flows back. */
			const float *sc = mlp_forward(s->m, cat, B, 1);
			/* with ws: the source term weighted, (1/Bs) sum_i ws_i softplus(D(zs_i)) */
			float ls = mean_softplus_w(ds, sc, ws, 1.0f, Bs);
			float lt = mean_softplus(ds + Bs, sc + Bs, 1.0f, Bt);
			double ms = 0, mt = 0;
			for (int i = 0; i < Bs; i++) ms += sc[i];
			for (int i = 0; i < Bt; i++) mt += sc[Bs + i];
			gap = (float)(ms / Bs - mt / Bt);
			/* critic loss = -mean softplus(D(zs)) + mean softplus(D(zt)) */
			for (int i = 0; i < Bs; i++) ds[i] = -ds[i];
			mlp_backward(s->m, ds, NULL);
			/* gradient penalty on interpolates xhat = a zs + (1 - a) zt, a ~ U(0,1) per row */
			const float *ps = zs.data, *pt = zt.data;
			Rng *rng = mlp_rng(s->m);
			for (int i = 0; i < n; i++) {
				float a = (float)rng_uniform(rng);
				const float *u = ps + (size_t)(i % Bs) * in, *v = pt + (size_t)(i % Bt) * in;
				for (int j = 0; j < in; j++) xh[(size_t)i * in + j] = a * u[j] + (1 - a) * v[j];
			}
			gp = mlp_gradient_penalty(s->m, xh, n, (float)gpw);
			if (isnan(gp)) break;
			loss = -ls + lt + gp;
			stage_step(s, lr);
		}
		free(xh);
		free(ds);
		free(cat);
		if (isnan(gp)) {
			mlp_zero_grad(s->m);
			stage_error(s, "critic_step: the gradient penalty needs a critic without norm and dropout");
			goto out;
		}
	}
	float *dzt = NULL;
	if (gen) {
		dzt = xmallocarray((size_t)Bt * in, sizeof(float));
		gl = gen_loss(s, zt.data, Bt, dzt);
	}
	int64_t sh[2] = { Bt, in };
	if (step) {
		stage_ok(s, gen ? 5 : 3);
		sw_key(&s->out, "loss"); sw_double(&s->out, loss);
		sw_key(&s->out, "gap"); sw_double(&s->out, gap);
		sw_key(&s->out, "gp"); sw_double(&s->out, gp);
		if (gen) {
			sw_key(&s->out, "gen_loss"); sw_double(&s->out, gl);
			sw_key(&s->out, "dzt"); sw_tensor(&s->out, DT_F32, 2, sh, dzt);
		}
	} else {
		stage_ok(s, 2);
		sw_key(&s->out, "loss"); sw_double(&s->out, gl);
		sw_key(&s->out, "dzt"); sw_tensor(&s->out, DT_F32, 2, sh, dzt);
	}
	free(dzt);
out:
	tensor_free(&zs);
	tensor_free(&zt);
	tensor_free(&wt);
	return 1;
}

static int handle(Stage *s, const char *type, const msgpack_object *req)
{
	int is_dann = strcmp(s->method, "dann") == 0;
	if (strcmp(type, "dann") == 0) {
		if (!is_dann) { stage_error(s, "dann: this stage runs %s", s->method); return 1; }
		return dann(s, req);
	}
	if (strcmp(type, "critic_step") == 0 || strcmp(type, "gen_loss") == 0) {
		if (is_dann) { stage_error(s, "%s: this stage runs dann", type); return 1; }
		return critic(s, req, type[0] == 'c');
	}
	return 0;
}

/* ---- inference ---- */

static void run_model(const char *model, const char *path)
{
	Bundle b;
	bundle_read(&b, model);
	char *method = NULL;
	Mlp *m = bundle_mlp(&b, "discriminator", &method);
	int in = mlp_spec(m)->in, critic = method && strcmp(method, "wgan-gp") == 0;
	if (mlp_out(m) != 1) die("%s: the discriminator has %d outputs, expected 1", model, mlp_out(m));
	DataIn d;
	data_open(&d, path);
	/* a conditional domain head (train-step --align conditional) reads the map p (x) z
	 * of the classifier's probabilities and the latent row: computed here with the
	 * bundle's classifier */
	Mlp *cls = NULL;
	int K = 0, H = d.h.nfeat;
	if (H != in) {
		Mlp *c = bundle_mlp(&b, "classifier", NULL);
		if (mlp_spec(c)->in == H && (long)H * mlp_out(c) == in) { cls = c; K = mlp_out(c); }
		else mlp_free(c);
	}
	if (H != in && !cls)
		die("%s: %d features, the discriminator of %s takes %d (pipe the data through encode --model %s first)",
		    d.r.name, d.h.nfeat, model, in, model);
	printf("id,domain,%s\n", critic ? "score" : "p_target");
	Block blk;
	block_init(&blk, H, 256);
	float *P = NULL, *Tm = NULL;
	if (cls) {
		P = xmallocarray((size_t)256 * K, sizeof(float));
		Tm = xmallocarray((size_t)256 * in, sizeof(float));
	}
	while (data_next(&d, &blk)) {
		const float *x = blk.x;
		if (cls && blk.n) {
			memcpy(P, mlp_forward(cls, blk.x, blk.n, 0), sizeof(float) * (size_t)blk.n * K);
			val_softmax(P, blk.n, K);
			cond_map(Tm, P, blk.x, blk.n, K, H);
			x = Tm;
		}
		const float *o = blk.n ? mlp_forward(m, x, blk.n, 0) : NULL;
		for (int i = 0; i < blk.n; i++) {
			const char *id = blk.ids[i], *dom = d.h.domains[blk.d[i]];
			int q = strpbrk(id, ",\"\n") != NULL, qd = strpbrk(dom, ",\"\n") != NULL;
			if (q || qd) {
				/* rare: quote both fields, doubling quotes */
				const char *f[2] = { id, dom };
				for (int k = 0; k < 2; k++) {
					putchar('"');
					for (const char *c = f[k]; *c; c++) { if (*c == '"') putchar('"'); putchar(*c); }
					putchar('"');
					putchar(',');
				}
			} else {
				printf("%s,%s,", id, dom);
			}
			double v = critic ? o[i] : 1 / (1 + exp(-(double)o[i]));
			printf("%.6g\n", v);
		}
	}
	block_free(&blk);
	data_close(&d);
	free(method);
	free(P);
	free(Tm);
	if (cls) mlp_free(cls);
	mlp_free(m);
	bundle_free(&b);
}

/* ---- alignment metrics ---- */

typedef struct {
	uint64_t seed;
	const char *source, *target, *name;
	int max_rows, csv, nfiles;
	char **files;
} AlignArgs;

typedef struct { float *x; long n, cap; } Rows;

static void rows_push(Rows *r, const float *x, int H)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 256;
		r->x = xrealloc(r->x, sizeof(float) * (size_t)r->cap * H);
	}
	memcpy(r->x + (size_t)r->n * H, x, sizeof(float) * H);
	r->n++;
}

static int find_domain(const Header *h, const char *name)
{
	for (int i = 0; i < h->ndom; i++)
		if (strcmp(h->domains[i], name) == 0) return i;
	return -1;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\') printf("\\%c", *s);
		else if ((unsigned char)*s < 32) printf("\\u%04x", *s);
		else putchar(*s);
	}
	putchar('"');
}

static void run_alignment(const AlignArgs *a)
{
	Rows rs = { 0 }, rt = { 0 };
	int H = -1;
	char **feat = NULL;
	const char *first = NULL;
	int nf = a->nfiles ? a->nfiles : 1;
	for (int f = 0; f < nf; f++) {
		DataIn d;
		data_open(&d, a->nfiles ? a->files[f] : "-");
		if (H < 0) {
			H = d.h.nfeat;
			if (H < 1) die("%s: no features", d.r.name);
			feat = xmallocarray((size_t)H, sizeof(char *));
			for (int j = 0; j < H; j++) feat[j] = xstrdup(d.h.features[j]);
			first = xstrdup(d.r.name);
		} else {
			if (d.h.nfeat != H)
				die("%s: %d features, %s has %d (encode both with the same model)", d.r.name, d.h.nfeat, first, H);
			for (int j = 0; j < H; j++)
				if (strcmp(d.h.features[j], feat[j]) != 0)
					die("%s: feature %d is %s, %s has %s there", d.r.name, j + 1, d.h.features[j], first, feat[j]);
		}
		int ds = -1, dt = -1;
		if (nf == 1) {
			ds = a->source ? find_domain(&d.h, a->source) : find_domain(&d.h, "source");
			dt = a->target ? find_domain(&d.h, a->target) : find_domain(&d.h, "target");
			if (a->source && ds < 0) die("%s: no domain \"%s\" in the header", d.r.name, a->source);
			if (a->target && dt < 0) die("%s: no domain \"%s\" in the header", d.r.name, a->target);
			if (!a->source && !a->target && (ds < 0 || dt < 0)) {
				if (d.h.ndom < 2)
					die("%s: %d domain%s in the header: alignment needs source and target rows "
					    "(one stream with two domains, or two streams)", d.r.name, d.h.ndom, d.h.ndom == 1 ? "" : "s");
				ds = 0;
				dt = 1;
			}
			if (ds < 0) ds = dt == 0 ? 1 : 0;
			if (dt < 0) dt = ds == 0 ? 1 : 0;
			if (ds == dt) usage_error("--source and --target name the same domain");
			if (dt >= d.h.ndom) die("%s: one domain in the header: alignment needs a second", d.r.name);
		}
		Block blk;
		block_init(&blk, H, 256);
		while (data_next(&d, &blk))
			for (int i = 0; i < blk.n; i++) {
				const float *x = blk.x + (size_t)i * H;
				for (int j = 0; j < H; j++)
					if (!isfinite(x[j])) die("%s: row %s: feature %d is not finite", d.r.name, blk.ids[i], j + 1);
				if (nf == 2) rows_push(f == 0 ? &rs : &rt, x, H);
				else if (blk.d[i] == ds) rows_push(&rs, x, H);
				else if (blk.d[i] == dt) rows_push(&rt, x, H);
			}
		block_free(&blk);
		data_close(&d);
	}
	if (rs.n < 2 || rt.n < 2)
		die("%s: %ld source and %ld target rows: alignment needs at least 2 of each", first, rs.n, rt.n);
	if (rs.n > (1L << 24) || rt.n > (1L << 24)) die("%s: too many rows", first);
	PadResult pr;
	MmdResult mr;
	align_pad(rs.x, (int)rs.n, rt.x, (int)rt.n, H, a->seed, &pr);
	align_mmd(rs.x, (int)rs.n, rt.x, (int)rt.n, H, a->seed, a->max_rows, &mr);
	if (a->csv) {
		printf("%spad,pad_error,mmd2,mmd,sigma2,n_source,n_target,features\n", a->name ? "name," : "");
		if (a->name) {
			if (strpbrk(a->name, ",\"\n\r")) usage_error("--name: %s: no commas, quotes or newlines in CSV", a->name);
			printf("%s,", a->name);
		}
		printf("%.6g,%.6g,%.6g,%.6g,%.6g,%ld,%ld,%d\n", pr.pad, pr.err, mr.mmd2, mr.mmd, mr.sigma2, rs.n, rt.n, H);
	} else {
		printf("{");
		if (a->name) { printf("\"name\": "); json_str(a->name); printf(", "); }
		printf("\"pad\": %.6g, \"pad_error\": %.6g, \"pad_error_source\": %.6g, \"pad_error_target\": %.6g, "
		       "\"pad_train_rows\": %d, \"pad_test_rows\": %d, \"mmd2\": %.6g, \"mmd\": %.6g, \"sigma2\": %.6g, "
		       "\"mmd_rows_source\": %d, \"mmd_rows_target\": %d, \"n_source\": %ld, \"n_target\": %ld, "
		       "\"features\": %d, \"seed\": %llu}\n",
		       pr.pad, pr.err, pr.err_source, pr.err_target, pr.n_train, pr.n_test, mr.mmd2, mr.mmd, mr.sigma2,
		       mr.ns, mr.nt, rs.n, rt.n, H, (unsigned long long)a->seed);
	}
	for (int j = 0; j < H; j++) free(feat[j]);
	free(feat);
	free((char *)first);
	free(rs.x);
	free(rt.x);
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	enum { O_MODEL = 256, O_STAGE, O_LAYERS, O_ACT, O_SLOPE, O_NORM, O_DROPOUT, O_QUIET, O_METHOD,
	       O_ALIGN, O_SEED, O_SOURCE, O_TARGET, O_MAXROWS, O_FORMAT, O_NAME };
	static const struct option opts[] = {
		{ "model", required_argument, 0, O_MODEL }, { "stage", no_argument, 0, O_STAGE },
		{ "layers", required_argument, 0, O_LAYERS }, { "act", required_argument, 0, O_ACT },
		{ "slope", required_argument, 0, O_SLOPE }, { "norm", required_argument, 0, O_NORM },
		{ "dropout", required_argument, 0, O_DROPOUT }, { "quiet", no_argument, 0, O_QUIET },
		{ "method", required_argument, 0, O_METHOD }, { "critic", required_argument, 0, O_METHOD },
		{ "alignment", no_argument, 0, O_ALIGN }, { "seed", required_argument, 0, O_SEED },
		{ "source", required_argument, 0, O_SOURCE }, { "target", required_argument, 0, O_TARGET },
		{ "max-rows", required_argument, 0, O_MAXROWS }, { "format", required_argument, 0, O_FORMAT },
		{ "name", required_argument, 0, O_NAME },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
	};
	Stage s;
	memset(&s, 0, sizeof s);
	s.role = "discriminator";
	s.handle = handle;
	s.method = "dann";
	s.arch.nhidden = 3;
	s.arch.hidden[0] = 256;
	s.arch.hidden[1] = 128;
	s.arch.hidden[2] = 64;
	s.arch.slope = 0.2f;
	s.arch.norm = NORM_NONE;
	s.arch.head = 1;
	s.arch.fixed_out = 1;
	const char *model = NULL;
	int stage = 0, archopt = 0, act = -1, c;
	AlignArgs al = { .seed = 1, .max_rows = 2000 };
	int align = 0, alignopt = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hq", opts, NULL)) != -1) {
		switch (c) {
		case O_MODEL: model = optarg; break;
		case O_STAGE: stage = 1; break;
		case O_LAYERS:
			if (strcmp(optarg, "none") == 0 || !*optarg) s.arch.nhidden = 0;
			else parse_layers(&s.arch, "--layers", optarg);
			archopt = 1;
			break;
		case O_ACT: act = parse_act("--act", optarg); archopt = 1; break;
		case O_SLOPE: s.arch.slope = (float)parse_double("--slope", optarg, 0, 1); archopt = 1; break;
		case O_NORM: s.arch.norm = parse_norm("--norm", optarg); archopt = 1; break;
		case O_DROPOUT: s.arch.dropout = (float)parse_double("--dropout", optarg, 0, 0.99); archopt = 1; break;
		case 'q':
		case O_QUIET: quiet = 1; break;
		case O_METHOD:
			if (strcmp(optarg, "dann") == 0) s.method = "dann";
			else if (strcmp(optarg, "wgan-gp") == 0) s.method = "wgan-gp";
			else usage_error("--method: %s: expected dann or wgan-gp", optarg);
			archopt = 1;
			break;
		case O_ALIGN: align = 1; break;
		case O_SEED: al.seed = (uint64_t)parse_long("--seed", optarg, 0, 2147483647L); alignopt = 1; break;
		case O_SOURCE: al.source = optarg; alignopt = 1; break;
		case O_TARGET: al.target = optarg; alignopt = 1; break;
		case O_MAXROWS: al.max_rows = (int)parse_long("--max-rows", optarg, 2, 100000); alignopt = 1; break;
		case O_FORMAT:
			if (strcmp(optarg, "json") == 0) al.csv = 0;
			else if (strcmp(optarg, "csv") == 0) al.csv = 1;
			else usage_error("--format: %s: expected json or csv", optarg);
			alignopt = 1;
			break;
		case O_NAME: al.name = optarg; alignopt = 1; break;
		case 'h': usage();
		case ':': usage_error("%s: needs a value", argv[optind - 1]);
		default: usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	int wgan = strcmp(s.method, "wgan-gp") == 0;
	s.arch.act = act >= 0 ? (Act)act : wgan ? ACT_LEAKY_RELU : ACT_RELU;
	if (alignopt && !align) usage_error("--seed, --source, --target, --max-rows, --format and --name apply to --alignment");
	if (align) {
		if (stage || model) usage_error("--alignment excludes --stage and --model");
		if (archopt) usage_error("--method, --layers, --act, --slope, --norm and --dropout apply to --stage");
		if (argc - optind > 2) usage_error("--alignment reads one stream or two (source, then target)");
		if (argc - optind == 2 && (al.source || al.target))
			usage_error("--source and --target name the domains of a single stream (with two, the first is the source)");
		al.nfiles = argc - optind;
		al.files = argv + optind;
		run_alignment(&al);
		return 0;
	}
	if (stage && model) usage_error("--stage and --model exclude each other");
	if (!stage && !model) usage_error("needs --model FILE (inference) or --stage (training)");
	if (stage) {
		if (optind < argc) usage_error("--stage takes no file argument");
		if (wgan && s.arch.norm == NORM_BATCH) usage_error("--norm batch: the WGAN-GP critic takes no BatchNorm (the gradient penalty is per sample)");
		if (wgan && s.arch.norm != NORM_NONE) usage_error("--norm %s: the gradient penalty supports critics without norm only", norm_names[s.arch.norm]);
		if (wgan && s.arch.dropout > 0) usage_error("--dropout: the WGAN-GP critic takes no dropout");
		/* the domain head works while train-step and the encoder wait (the critic's
		 * n-critic updates, DANN's pass beside the small classifier): its products
		 * take the cores (the thread pool) */
		s.pool = 1;
		stage_serve(&s);
	}
	if (archopt) usage_error("--method, --layers, --act, --slope, --norm and --dropout apply to --stage (the model has its architecture)");
	if (argc - optind > 1) usage_error("at most one input file");
	run_model(model, optind < argc ? argv[optind] : "-");
	return 0;
}
