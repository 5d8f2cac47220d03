/* predict: the classifier head, as an inference filter and as a training stage.
 *
 *   predict --model MODEL.mpk [--eval] [--metrics-json FILE] [--format csv|stream] [FILE]
 *     Reads a latent data stream (the output of encode --model) and writes, per row,
 *     CSV "id,predicted,p_<class1>,p_<class2>,..." (softmax probabilities, classes in
 *     the model's order) or, with --format stream, a data stream whose features are
 *     p_<class>. With --eval, labelled rows (y >= 0) are compared with the
 *     predictions: accuracy, balanced accuracy, macro-F1, per-class precision,
 *     recall, F1 and the confusion matrix go to stderr as text and to --metrics-json
 *     as JSON. Labels are matched to the model's classes BY NAME; a true class the
 *     model does not know is kept as its own row of the confusion matrix.
 *     Frames read: header, data, end.
 *
 *   predict --explain --model MODEL.mpk [--class predicted|label|NAME]
 *           [--baseline zeros|source-mean|FILE] [--steps 50] [--rule trapezoid|gauss-legendre]
 *           [--attribute probability|logit] [--out-stream FILE] [--ranking FILE.csv]
 *           [--rank-by signed|abs] [--top N] [--completeness FILE] [--batch-rows 2048]
 *           [--encoder CMD] [--classifier CMD] [--progress] [FILE]
 *           tiles: [--baseline blur] [--blur-sigma 4] [--heatmaps DIR]
 *           [--heatmap-mode abs|signed] [--heatmap-smooth 1] [--heatmap-clip 99]
 *           [--heatmap-max V] [--heatmap-alpha 0.75] [--heatmap-scale 1] [--heatmap-panel]
 *     Integrated Gradients (common/explain.h, docs/EXPLAIN.md) on a PREPARED data
 *     stream (the model's input features, e.g. from normalize --like MODEL.mpk) or,
 *     for an image model (ResNet encoder), an image stream of tiles of its size,
 *     computed through the encoder and classifier stages started as child processes
 *     and loaded with the bundle's params. Writes the completeness CSV
 *     "id,class,f_x,f_baseline,sum_attr,gap" on stdout (or --completeness FILE);
 *     --out-stream a data stream whose x are the attributions; --ranking the
 *     per-class gene ranking "class,gene,mean_attribution,mean_abs_attribution,
 *     rank,samples"; --heatmaps one PNG per tile (DIR/ID.png, the attribution map
 *     blended over the tile) and DIR/heatmaps.csv "id,file,class,f_x,scale".
 *     Frames read: header, data (or images), end.
 *
 *   predict --stage [--layers 128,64] [--act relu] [--norm none] [--dropout 0]
 *     Serves the classifier stage of docs/STAGES.md (hidden blocks, then a Linear of
 *     width "out" = number of classes giving logits). Besides the common requests it
 *     answers "loss": softmax cross-entropy on the logits with labels, returning the
 *     loss, the number correct, the predictions and dz in one round trip (and, with
 *     want_probs, the softmax probabilities of every row: --align conditional).
 *
 * Exit codes: 0 ok, 1 data or runtime error, 2 usage error. */
#include "explain.h"
#include "metrics.h"
#include "stage.h"
#include "stream.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static _Noreturn void usage(void)
{
	printf("Usage: predict --model MODEL.mpk [--eval] [--metrics-json FILE] [--format csv|stream] [FILE]\n"
	       "       predict --explain --model MODEL.mpk [EXPLAIN OPTIONS] [FILE]\n"
	       "       predict --stage [OPTIONS]\n"
	       "Predict class probabilities from a latent stream (encode --model), explain\n"
	       "the predictions on a prepared data stream with Integrated Gradients, or serve\n"
	       "the classifier stage of train-step (protocol: docs/STAGES.md).\n"
	       "\n"
	       "  --model FILE         model bundle written by train-step (inference)\n"
	       "  --eval               compare with the labels: metrics on stderr (default off)\n"
	       "  --metrics-json FILE  also write the metrics as JSON (implies --eval)\n"
	       "  --format F           csv (id,predicted,p_<class>...) or stream (default csv)\n"
	       "  --explain            Integrated Gradients on a prepared data stream (the\n"
	       "                       model's input features, e.g. normalize --like MODEL.mpk):\n"
	       "                       CSV id,class,f_x,f_baseline,sum_attr,gap on stdout\n"
	       "  --class C            explain: the class attributed: predicted, label (the row's\n"
	       "                       label; unlabelled rows use the predicted class) or a\n"
	       "                       class name (default predicted)\n"
	       "  --baseline B         explain: zeros, source-mean (from the bundle's\n"
	       "                       preprocessing statistics), blur (tiles: each tile\n"
	       "                       Gaussian-blurred) or FILE, a data stream whose mean row\n"
	       "                       (or an image stream whose mean tile) is the baseline\n"
	       "                       (default: blur for an image model, else zeros)\n"
	       "  --blur-sigma S       explain: blur baseline sigma in pixels, 0.1..100 (default 4)\n"
	       "  --steps N            explain: quadrature steps, 1..10000 (default 50)\n"
	       "  --rule R             explain: trapezoid or gauss-legendre (default trapezoid)\n"
	       "  --attribute A        explain: probability (softmax) or logit (default probability)\n"
	       "  --out-stream FILE    explain: data stream of the attributions (x), ids, labels\n"
	       "  --ranking FILE       explain: per-class gene ranking CSV (aggregated over the\n"
	       "                       samples attributed to each class)\n"
	       "  --rank-by K          explain: signed (mean attribution) or abs (mean |attribution|)\n"
	       "                       (default signed)\n"
	       "  --top N              explain: genes per class in the ranking, 0 = all (default 0)\n"
	       "  --completeness FILE  explain: the completeness CSV to FILE instead of stdout\n"
	       "  --heatmaps DIR       explain, tiles: one PNG per tile, DIR/ID.png (the attribution\n"
	       "                       map over the tile), and DIR/heatmaps.csv (default none)\n"
	       "  --heatmap-mode M     abs (sum over channels of |attribution|: yellow to red) or\n"
	       "                       signed (sum of attributions: red for the class, blue\n"
	       "                       against it) (default abs)\n"
	       "  --heatmap-smooth S   Gaussian sigma in pixels applied to the map, 0 = none\n"
	       "                       (default 1)\n"
	       "  --heatmap-clip P     percentile of |map| shown at full colour, 50..100 (default 99)\n"
	       "  --heatmap-max V      the map value shown at full colour on every tile, so that\n"
	       "                       tiles compare (default: each tile's own clip percentile,\n"
	       "                       listed in DIR/heatmaps.csv as scale)\n"
	       "  --heatmap-alpha A    opacity of the colour at full scale, 0..1 (default 0.75)\n"
	       "  --heatmap-scale N    enlarge each PNG N times (nearest neighbour), 1..64 (default 1)\n"
	       "  --heatmap-panel      the tile and its overlay side by side (default overlay only)\n"
	       "  --batch-rows N       explain: interpolated rows per stage request (default 2048)\n"
	       "  --encoder CMD        explain: encoder stage command (default: encode --stage\n"
	       "                       next to this program)\n"
	       "  --classifier CMD     explain: classifier stage command (default: predict --stage)\n"
	       "  --progress           explain: progress on stderr even when it is not a terminal\n"
	       "  --stage              serve the training stage on stdin/stdout\n"
	       "  --layers LIST        hidden widths before the output layer (default 128,64)\n"
	       "  --act NAME           relu, leaky-relu or tanh (default relu)\n"
	       "  --slope S            LeakyReLU slope (default 0.2)\n"
	       "  --norm NAME          batch, layer or none (default none)\n"
	       "  --dropout P          dropout probability (default 0)\n"
	       "  -q, --quiet          no messages but errors\n"
	       "  -h, --help           this help\n");
	exit(0);
}

/* ---- the stage ---- */

static int handle(Stage *s, const char *type, const msgpack_object *req)
{
	if (strcmp(type, "loss") != 0) return 0;
	Tensor z, y;
	int K = mlp_out(s->m), in = mlp_spec(s->m)->in;
	int B = req_matrix(s, req, "z", in, &z);
	get_tensor(&s->in, req, "y", DT_I32, 1, &y);
	int train = req_bool(&s->in, req, "train", 1);
	int want = req_bool(&s->in, req, "want_dz", 1);
	int want_probs = req_bool(&s->in, req, "want_probs", 0);
	const msgpack_object *lr = obj_get(req, "lr");
	const int32_t *yy = y.data;
	int nlab = 0;
	if (y.shape[0] != B) {
		stage_error(s, "loss: z has %d rows, y has %lld", B, (long long)y.shape[0]);
		goto out;
	}
	for (int i = 0; i < B; i++) {
		if (yy[i] >= K || yy[i] < -1) {
			stage_error(s, "loss: row %d: label %d is not one of the %d classes", i, yy[i], K);
			goto out;
		}
		nlab += yy[i] >= 0;
	}
	if (train && B < 2 && mlp_spec(s->m)->norm == NORM_BATCH) {
		stage_error(s, "loss: a training batch of %d row would reach BatchNorm", B);
		goto out;
	}
	const float *logits = B ? mlp_forward(s->m, z.data, B, train) : NULL;
	float *dl = xmallocarray((size_t)B * K + 1, sizeof(float));
	int32_t *pred = xmallocarray((size_t)B + 1, sizeof(int32_t));
	float *probs = want_probs ? xmallocarray((size_t)B * K + 1, sizeof(float)) : NULL;
	int nc = 0;
	float loss = B ? softmax_xent(train ? dl : NULL, probs, &nc, logits, yy, NULL, 0, B, K) : 0;
	for (int i = 0; i < B; i++) {
		int best = 0;
		for (int k = 1; k < K; k++)
			if (logits[(size_t)i * K + k] > logits[(size_t)i * K + best]) best = k;
		pred[i] = best;
	}
	float *dz = NULL;
	if (train && B) {
		dz = want ? xmallocarray((size_t)B * in, sizeof(float)) : NULL;
		mlp_backward(s->m, dl, dz);
		if (lr) stage_step(s, obj_num(&s->in, lr, "lr"));
	}
	int64_t sh1[1] = { B }, sh2[2] = { B, in }, shp[2] = { B, K };
	stage_ok(s, 4 + (dz != NULL) + (probs != NULL));
	sw_key(&s->out, "loss"); sw_double(&s->out, loss);
	sw_key(&s->out, "correct"); sw_int(&s->out, nc);
	sw_key(&s->out, "n"); sw_int(&s->out, nlab);
	sw_key(&s->out, "pred"); sw_tensor(&s->out, DT_I32, 1, sh1, pred);
	if (dz) { sw_key(&s->out, "dz"); sw_tensor(&s->out, DT_F32, 2, sh2, dz); }
	if (probs) { sw_key(&s->out, "probs"); sw_tensor(&s->out, DT_F32, 2, shp, probs); }
	free(dz);
	free(dl);
	free(pred);
	free(probs);
out:
	tensor_free(&z);
	tensor_free(&y);
	return 1;
}

/* ---- inference ---- */

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

static void run_model(const char *model, const char *path, int eval, const char *json, int stream)
{
	Bundle b;
	bundle_read(&b, model);
	Mlp *m = bundle_mlp(&b, "classifier", NULL);
	int K = mlp_out(m), in = mlp_spec(m)->in;
	if (K != b.h.nclass) die("%s: the classifier has %d outputs, the bundle lists %d classes", model, K, b.h.nclass);
	DataIn d;
	data_open(&d, path);
	if (d.h.nfeat != in)
		die("%s: %d features, the classifier of %s takes %d (pipe the data through encode --model %s first)",
		    d.r.name, d.h.nfeat, model, in, model);
	/* merged class list: the model's, then true classes it does not know */
	Header oh;
	header_copy(&oh, &d.h);
	for (int i = 0; i < oh.nclass; i++) free(oh.classes[i]);
	oh.nclass = 0;
	for (int i = 0; i < K; i++) header_add_class(&oh, b.h.classes[i]);
	int *map = xmallocarray((size_t)d.h.nclass + 1, sizeof(int));
	for (int i = 0; i < d.h.nclass; i++) map[i] = header_add_class(&oh, d.h.classes[i]);
	SWriter w;
	sw_init(&w, stdout, "<stdout>");
	if (stream) {
		for (int i = 0; i < oh.nfeat; i++) free(oh.features[i]);
		free(oh.features);
		oh.nfeat = K;
		oh.features = xmallocarray((size_t)K, sizeof(char *));
		for (int i = 0; i < K; i++) oh.features[i] = xasprintf("p_%s", b.h.classes[i]);
		sw_header(&w, &oh);
	} else {
		fputs("id,predicted", stdout);
		for (int k = 0; k < K; k++) {
			char *h = xasprintf("p_%s", b.h.classes[k]);
			fputc(',', stdout);
			csv_field(stdout, h);
			free(h);
		}
		fputc('\n', stdout);
	}
	Confusion conf;
	confusion_init(&conf, oh.nclass);
	Block blk, out;
	block_init(&blk, d.h.nfeat, 256);
	block_init(&out, K, 256);
	float *p = xmallocarray((size_t)K, sizeof(float));
	long rows = 0, frames = 0, labelled = 0;
	while (data_next(&d, &blk)) {
		const float *lg = blk.n ? mlp_forward(m, blk.x, blk.n, 0) : NULL;
		block_clear(&out);
		for (int i = 0; i < blk.n; i++) {
			const float *l = lg + (size_t)i * K;
			int best = 0;
			float mx = l[0];
			for (int k = 1; k < K; k++)
				if (l[k] > mx) { mx = l[k]; best = k; }
			double sum = 0;
			for (int k = 0; k < K; k++) sum += exp((double)l[k] - mx);
			for (int k = 0; k < K; k++) p[k] = (float)(exp((double)l[k] - mx) / sum);
			int truth = blk.y[i] >= 0 ? map[blk.y[i]] : -1;
			if (truth >= 0) {
				confusion_add(&conf, truth, best);
				labelled++;
			}
			if (stream) {
				block_push(&out, blk.ids[i], p, truth, blk.d[i]);
			} else {
				csv_field(stdout, blk.ids[i]);
				fputc(',', stdout);
				csv_field(stdout, b.h.classes[best]);
				for (int k = 0; k < K; k++) printf(",%.6g", p[k]);
				fputc('\n', stdout);
			}
		}
		if (stream) {
			sw_block(&w, &out);
			frames++;
			rows += out.n;
		}
	}
	if (stream) sw_end(&w, rows, frames);
	if (ferror(stdout) || fflush(stdout) != 0) die("write error:");
	if (eval) {
		if (labelled == 0) {
			warnx("%s: no labelled rows: no metrics", d.r.name);
		} else {
			metrics_print_text(stderr, &conf, oh.classes);
		}
		if (json) {
			struct stat sb;
			if (stat(json, &sb) == 0 && !S_ISREG(sb.st_mode)) {
				/* a pipe or a device (/dev/stdout): written in place */
				FILE *fp = fopen(json, "w");
				if (!fp) die("%s: cannot open:", json);
				metrics_write_json(fp, &conf, oh.classes);
				if (fclose(fp) != 0) die("%s: write error:", json);
			} else {
				AtomicFile af;
				FILE *fp = atomic_open(&af, json);
				metrics_write_json(fp, &conf, oh.classes);
				atomic_commit(&af);
			}
		}
	}
	free(p);
	free(map);
	confusion_free(&conf);
	block_free(&blk);
	block_free(&out);
	header_free(&oh);
	data_close(&d);
	mlp_free(m);
	bundle_free(&b);
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	enum { O_MODEL = 256, O_STAGE, O_LAYERS, O_ACT, O_SLOPE, O_NORM, O_DROPOUT, O_QUIET, O_EVAL, O_JSON, O_FORMAT,
	       O_EXPLAIN, O_CLASS, O_BASELINE, O_STEPS, O_RULE, O_ATTRIBUTE, O_OUTSTREAM, O_RANKING, O_RANKBY,
	       O_TOP, O_COMPLETENESS, O_BATCHROWS, O_ENCODER, O_CLASSIFIER, O_PROGRESS,
	       O_BLURSIGMA, O_HEATMAPS, O_HMODE, O_HSMOOTH, O_HCLIP, O_HALPHA, O_HSCALE, O_HPANEL, O_HMAX };
	static const struct option opts[] = {
		{ "model", required_argument, 0, O_MODEL }, { "stage", no_argument, 0, O_STAGE },
		{ "layers", required_argument, 0, O_LAYERS }, { "act", required_argument, 0, O_ACT },
		{ "slope", required_argument, 0, O_SLOPE }, { "norm", required_argument, 0, O_NORM },
		{ "dropout", required_argument, 0, O_DROPOUT }, { "quiet", no_argument, 0, O_QUIET },
		{ "eval", no_argument, 0, O_EVAL }, { "metrics-json", required_argument, 0, O_JSON },
		{ "format", required_argument, 0, O_FORMAT },
		{ "explain", no_argument, 0, O_EXPLAIN }, { "class", required_argument, 0, O_CLASS },
		{ "baseline", required_argument, 0, O_BASELINE }, { "steps", required_argument, 0, O_STEPS },
		{ "rule", required_argument, 0, O_RULE }, { "attribute", required_argument, 0, O_ATTRIBUTE },
		{ "out-stream", required_argument, 0, O_OUTSTREAM }, { "ranking", required_argument, 0, O_RANKING },
		{ "rank-by", required_argument, 0, O_RANKBY }, { "top", required_argument, 0, O_TOP },
		{ "completeness", required_argument, 0, O_COMPLETENESS }, { "batch-rows", required_argument, 0, O_BATCHROWS },
		{ "encoder", required_argument, 0, O_ENCODER }, { "classifier", required_argument, 0, O_CLASSIFIER },
		{ "progress", no_argument, 0, O_PROGRESS },
		{ "blur-sigma", required_argument, 0, O_BLURSIGMA }, { "heatmaps", required_argument, 0, O_HEATMAPS },
		{ "heatmap-mode", required_argument, 0, O_HMODE }, { "heatmap-smooth", required_argument, 0, O_HSMOOTH },
		{ "heatmap-clip", required_argument, 0, O_HCLIP }, { "heatmap-alpha", required_argument, 0, O_HALPHA },
		{ "heatmap-scale", required_argument, 0, O_HSCALE }, { "heatmap-panel", no_argument, 0, O_HPANEL },
		{ "heatmap-max", required_argument, 0, O_HMAX },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
	};
	Stage s;
	memset(&s, 0, sizeof s);
	s.role = "classifier";
	s.handle = handle;
	s.arch.nhidden = 2;
	s.arch.hidden[0] = 128;
	s.arch.hidden[1] = 64;
	s.arch.act = ACT_RELU;
	s.arch.slope = 0.2f;
	s.arch.norm = NORM_NONE;
	s.arch.dropout = 0;
	s.arch.head = 1;
	const char *model = NULL, *json = NULL;
	int stage = 0, archopt = 0, eval = 0, stream = 0, c;
	int explain = 0, explainopt = 0, formatopt = 0, progress_flag = 0, heatopt = 0, blursigma = 0;
	ExplainArgs ex;
	explain_args_init(&ex);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hq", opts, NULL)) != -1) {
		switch (c) {
		case O_MODEL: model = optarg; break;
		case O_STAGE: stage = 1; break;
		case O_LAYERS:
			/* "none" or "" : a linear head */
			if (strcmp(optarg, "none") == 0 || !*optarg) s.arch.nhidden = 0;
			else parse_layers(&s.arch, "--layers", optarg);
			archopt = 1;
			break;
		case O_ACT: s.arch.act = parse_act("--act", optarg); archopt = 1; break;
		case O_SLOPE: s.arch.slope = (float)parse_double("--slope", optarg, 0, 1); archopt = 1; break;
		case O_NORM: s.arch.norm = parse_norm("--norm", optarg); archopt = 1; break;
		case O_DROPOUT: s.arch.dropout = (float)parse_double("--dropout", optarg, 0, 0.99); archopt = 1; break;
		case 'q':
		case O_QUIET: quiet = 1; break;
		case O_EVAL: eval = 1; break;
		case O_JSON: json = optarg; eval = 1; break;
		case O_FORMAT:
			formatopt = 1;
			if (strcmp(optarg, "csv") == 0) stream = 0;
			else if (strcmp(optarg, "stream") == 0) stream = 1;
			else usage_error("--format: %s: expected csv or stream", optarg);
			break;
		case O_EXPLAIN: explain = 1; break;
		case O_CLASS:
			explainopt = 1;
			if (strcmp(optarg, "predicted") == 0) ex.class_mode = IG_CLASS_PREDICTED;
			else if (strcmp(optarg, "label") == 0) ex.class_mode = IG_CLASS_LABEL;
			else if (!*optarg) usage_error("--class: needs a class name, predicted or label");
			else { ex.class_mode = IG_CLASS_NAMED; ex.class_name = optarg; }
			break;
		case O_BASELINE:
			explainopt = 1;
			if (!*optarg) usage_error("--baseline: expected zeros, source-mean, blur or a file");
			ex.baseline = optarg;
			break;
		case O_STEPS: ex.ig.steps = (int)parse_long("--steps", optarg, 1, 10000); explainopt = 1; break;
		case O_RULE:
			explainopt = 1;
			if (strcmp(optarg, "trapezoid") == 0) ex.ig.rule = IG_TRAPEZOID;
			else if (strcmp(optarg, "gauss-legendre") == 0 || strcmp(optarg, "gauss") == 0) ex.ig.rule = IG_GAUSS;
			else usage_error("--rule: %s: expected trapezoid or gauss-legendre", optarg);
			break;
		case O_ATTRIBUTE:
			explainopt = 1;
			if (strcmp(optarg, "probability") == 0 || strcmp(optarg, "prob") == 0) ex.ig.output = IG_PROB;
			else if (strcmp(optarg, "logit") == 0) ex.ig.output = IG_LOGIT;
			else usage_error("--attribute: %s: expected probability or logit", optarg);
			break;
		case O_OUTSTREAM: ex.out_stream = optarg; explainopt = 1; break;
		case O_RANKING: ex.ranking = optarg; explainopt = 1; break;
		case O_RANKBY:
			explainopt = 1;
			if (strcmp(optarg, "signed") == 0) ex.rank_abs = 0;
			else if (strcmp(optarg, "abs") == 0) ex.rank_abs = 1;
			else usage_error("--rank-by: %s: expected signed or abs", optarg);
			break;
		case O_TOP: ex.top = (int)parse_long("--top", optarg, 0, 1 << 24); explainopt = 1; break;
		case O_COMPLETENESS: ex.completeness = optarg; explainopt = 1; break;
		case O_BATCHROWS: ex.ig.max_rows = (int)parse_long("--batch-rows", optarg, 1, 1 << 20); explainopt = 1; break;
		case O_ENCODER: ex.encoder = optarg; explainopt = 1; break;
		case O_CLASSIFIER: ex.classifier = optarg; explainopt = 1; break;
		case O_PROGRESS: progress_flag = 1; explainopt = 1; break;
		case O_BLURSIGMA: ex.blur_sigma = parse_double("--blur-sigma", optarg, 0.1, 100); blursigma = 1; explainopt = 1; break;
		case O_HEATMAPS:
			if (!*optarg) usage_error("--heatmaps: needs a folder");
			ex.heatmaps = optarg;
			explainopt = 1;
			break;
		case O_HMODE:
			heatopt = explainopt = 1;
			if (strcmp(optarg, "abs") == 0) ex.heat.mode = HEAT_ABS;
			else if (strcmp(optarg, "signed") == 0) ex.heat.mode = HEAT_SIGNED;
			else usage_error("--heatmap-mode: %s: expected abs or signed", optarg);
			break;
		case O_HSMOOTH: ex.heat.smooth = parse_double("--heatmap-smooth", optarg, 0, 100); heatopt = explainopt = 1; break;
		case O_HCLIP: ex.heat.clip = parse_double("--heatmap-clip", optarg, 50, 100); heatopt = explainopt = 1; break;
		case O_HALPHA: ex.heat.alpha = parse_double("--heatmap-alpha", optarg, 0, 1); heatopt = explainopt = 1; break;
		case O_HSCALE: ex.heat.scale = (int)parse_long("--heatmap-scale", optarg, 1, 64); heatopt = explainopt = 1; break;
		case O_HPANEL: ex.heat.panel = 1; heatopt = explainopt = 1; break;
		case O_HMAX: ex.heat.max = parse_double("--heatmap-max", optarg, 1e-30, 1e30); heatopt = explainopt = 1; break;
		case 'h': usage();
		case ':': usage_error("%s: needs a value", argv[optind - 1]);
		default: usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (stage && model) usage_error("--stage and --model exclude each other");
	if (explainopt && !explain) usage_error("--class, --baseline, --steps, --rule, --attribute, --out-stream, --ranking, "
	                                        "--rank-by, --top, --completeness, --batch-rows, --encoder, --classifier, "
	                                        "--progress, --blur-sigma and the --heatmap options apply to --explain");
	if (explain) {
		if (stage) usage_error("--explain and --stage exclude each other");
		if (!model) usage_error("--explain needs --model FILE");
		if (eval || formatopt) usage_error("--eval, --metrics-json and --format do not apply to --explain");
		if (archopt) usage_error("--layers, --act, --slope, --norm and --dropout apply to --stage");
		if (argc - optind > 1) usage_error("at most one input file");
		if (ex.rank_abs && !ex.ranking) usage_error("--rank-by needs --ranking FILE");
		if (ex.top && !ex.ranking) usage_error("--top needs --ranking FILE");
		if (heatopt && !ex.heatmaps) usage_error("--heatmap-mode, --heatmap-smooth, --heatmap-clip, --heatmap-max, "
		                                         "--heatmap-alpha, --heatmap-scale and --heatmap-panel need --heatmaps DIR");
		if (blursigma && ex.baseline && strcmp(ex.baseline, "blur") != 0) usage_error("--blur-sigma needs --baseline blur");
		progress_setup(progress_flag, quiet);
		ex.model = model;
		ex.input = optind < argc ? argv[optind] : "-";
		explain_run(&ex);
		return 0;
	}
	if (!stage && !model) usage_error("needs --model FILE (inference) or --stage (training)");
	if (stage) {
		if (optind < argc) usage_error("--stage takes no file argument");
		if (eval) usage_error("--eval and --metrics-json apply to --model");
		stage_serve(&s);
	}
	if (archopt) usage_error("--layers, --act, --slope, --norm and --dropout apply to --stage (the model has its architecture)");
	if (argc - optind > 1) usage_error("at most one input file");
	run_model(model, optind < argc ? argv[optind] : "-", eval, json, stream);
	return 0;
}
