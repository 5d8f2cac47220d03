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
 *   encode --stage [--layers 256,256,256] [--act relu] [--norm batch] [--dropout 0.5]
 *     Serves the stage protocol of docs/STAGES.md on stdin/stdout for train-step
 *     (requests init, forward, backward, step, save, load, quit). Each hidden block
 *     is Linear -> activation -> norm -> dropout; the latent width is the last width.
 *
 * Exit codes: 0 ok, 1 data or runtime error, 2 usage error. */
#include "stage.h"
#include "stream.h"
#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void usage(void)
{
	printf("Usage: encode --model MODEL.mpk [FILE]\n"
	       "       encode --stage [OPTIONS]\n"
	       "Encode a data stream into the model's latent space, or serve the encoder\n"
	       "stage of train-step (protocol: docs/STAGES.md).\n"
	       "\n"
	       "  --model FILE       model bundle written by train-step (inference)\n"
	       "  --stage            serve the training stage on stdin/stdout\n"
	       "  --layers LIST      hidden widths (default 256,256,256)\n"
	       "  --act NAME         relu, leaky-relu or tanh (default relu)\n"
	       "  --slope S          LeakyReLU slope (default 0.2)\n"
	       "  --norm NAME        batch, layer or none (default batch)\n"
	       "  --dropout P        dropout probability after each block (default 0.5)\n"
	       "  --quiet            no messages but errors\n"
	       "  -h, --help         this help\n");
	exit(0);
}

static void run_model(const char *model, const char *path)
{
	Bundle b;
	bundle_read(&b, model);
	Mlp *m = bundle_mlp(&b, "encoder", NULL);
	DataIn in;
	data_open(&in, path);
	if (in.h.nfeat != b.h.nfeat)
		die("%s: %d features, the model %s expects %d (prepare the data with normalize --like %s)",
		    in.r.name, in.h.nfeat, model, b.h.nfeat, model);
	for (int i = 0; i < in.h.nfeat; i++)
		if (strcmp(in.h.features[i], b.h.features[i]) != 0)
			die("%s: feature %d is \"%s\", the model %s expects \"%s\" (prepare the data with normalize --like %s)",
			    in.r.name, i + 1, in.h.features[i], model, b.h.features[i], model);
	if (mlp_spec(m)->in != in.h.nfeat)
		die("%s: the encoder takes %d inputs, the bundle lists %d features", model, mlp_spec(m)->in, b.h.nfeat);
	int H = mlp_out(m);
	Header oh;
	header_copy(&oh, &in.h);
	free(oh.kind);
	oh.kind = xstrdup("data");
	for (int i = 0; i < oh.nfeat; i++) free(oh.features[i]);
	free(oh.features);
	oh.nfeat = H;
	oh.features = xmallocarray((size_t)H, sizeof(char *));
	for (int i = 0; i < H; i++) oh.features[i] = xasprintf("z%d", i);
	SWriter w;
	sw_init(&w, stdout, "<stdout>");
	sw_header(&w, &oh);
	Block blk, out;
	block_init(&blk, in.h.nfeat, 256);
	block_init(&out, H, 256);
	long rows = 0, frames = 0;
	while (data_next(&in, &blk)) {
		const float *z = blk.n ? mlp_forward(m, blk.x, blk.n, 0) : NULL;
		block_clear(&out);
		for (int i = 0; i < blk.n; i++) block_push(&out, blk.ids[i], z + (size_t)i * H, blk.y[i], blk.d[i]);
		sw_block(&w, &out);
		rows += out.n;
		frames++;
	}
	sw_end(&w, rows, frames);
	sw_flush(&w);
	block_free(&blk);
	block_free(&out);
	header_free(&oh);
	data_close(&in);
	mlp_free(m);
	bundle_free(&b);
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	enum { O_MODEL = 256, O_STAGE, O_LAYERS, O_ACT, O_SLOPE, O_NORM, O_DROPOUT, O_QUIET };
	static const struct option opts[] = {
		{ "model", required_argument, 0, O_MODEL }, { "stage", no_argument, 0, O_STAGE },
		{ "layers", required_argument, 0, O_LAYERS }, { "act", required_argument, 0, O_ACT },
		{ "slope", required_argument, 0, O_SLOPE }, { "norm", required_argument, 0, O_NORM },
		{ "dropout", required_argument, 0, O_DROPOUT }, { "quiet", no_argument, 0, O_QUIET },
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
	const char *model = NULL;
	int stage = 0, archopt = 0, c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case O_MODEL: model = optarg; break;
		case O_STAGE: stage = 1; break;
		case O_LAYERS: parse_layers(&s.arch, "--layers", optarg); archopt = 1; break;
		case O_ACT: s.arch.act = parse_act("--act", optarg); archopt = 1; break;
		case O_SLOPE: s.arch.slope = (float)parse_double("--slope", optarg, 0, 1); archopt = 1; break;
		case O_NORM: s.arch.norm = parse_norm("--norm", optarg); archopt = 1; break;
		case O_DROPOUT: s.arch.dropout = (float)parse_double("--dropout", optarg, 0, 0.99); archopt = 1; break;
		case O_QUIET: quiet = 1; break;
		case 'h': usage();
		case ':': usage_error("%s: needs a value", argv[optind - 1]);
		default: usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (stage && model) usage_error("--stage and --model exclude each other");
	if (!stage && !model) usage_error("needs --model FILE (inference) or --stage (training)");
	if (stage) {
		if (optind < argc) usage_error("--stage takes no file argument");
		stage_serve(&s);
	}
	if (archopt) usage_error("--layers, --act, --slope, --norm and --dropout apply to --stage (the model has its architecture)");
	if (argc - optind > 1) usage_error("at most one input file");
	run_model(model, optind < argc ? argv[optind] : "-");
	return 0;
}
