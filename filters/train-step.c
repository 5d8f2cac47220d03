/* train-step: trains a domain-adaptation model from a minibatch stream by driving
 * the training stages (encoder, classifier, domain head) as child processes.
 *
 * Reads the minibatch stream written by batch (stdin or FILE): header kind
 * "batches", val frames, per epoch batch frames and an epoch_end, then end (see
 * docs/BATCH.md). Starts the stages (default: the sibling binaries encode --stage,
 * predict --stage and discriminate --stage --method M; --encoder/--classifier/
 * --discriminator CMD replace one, run through /bin/sh -c) and talks to each over its
 * stdin/stdout with the protocol of docs/STAGES.md. Per batch:
 *   encoder forward of [xs; xt] (one concatenated batch: BatchNorm normalises source
 *   and target rows together) -> z;
 *   classifier "loss" on the labelled rows of z (source rows; labelled target rows
 *   too in supervised mode) with an optimiser step, and, at the same time, the domain
 *   head: "dann" (gradient reversal + domain BCE) or "critic_step" (WGAN-GP critic
 *   updates, n-critic of them on the batch's detached z, then the encoder's
 *   adversarial gradient; with --align weighted the source rows weighted by
 *   p_T(c)/p_S(c), estimated each epoch by EM); with --align conditional (CDAN) the
 *   classifier first, on every row, and the domain head on the map p (x) z of its
 *   probabilities and z (common/cond.h);
 *   encoder backward of the summed dz with an optimiser step.
 * After each epoch: accuracy on the selected validation set, early stopping with
 * --patience/--min-delta, the best epoch's parameters kept, --metrics CSV and
 * --checkpoint rewritten atomically. At the end the model bundle (header kind
 * "model": features, classes, domains, preprocessing, config, metrics; one params
 * frame per stage; end) is written atomically to --out.
 *
 * Options: see usage(), every option with its default.
 * Exit codes: 0 ok; 1 bad input, a stage that failed or did not answer within
 * --stage-timeout, or a NaN loss (the model of the last good epoch is kept in --out);
 * 2 usage error. */
#include "cond.h"
#include "nn.h"
#include "proto.h"
#include "stream.h"
#include "util.h"
#include "validate.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { M_SOURCE_ONLY, M_TARGET_ONLY, M_DANN, M_WGAN, M_COUNT };
static const char *method_names[M_COUNT] = { "source-only", "target-only", "dann", "wgan-gp" };
/* model selection: target-val, last, or a validator of validate.h (SEL_V + VAL_...;
 * source-val is the validator VAL_SOURCE_ACC) */
enum { SEL_DEFAULT = -1, SEL_TARGET_VAL, SEL_LAST, SEL_V };
#define SEL_SOURCE_VAL (SEL_V + VAL_SOURCE_ACC)
#define NSEL (SEL_V + VAL_COUNT)
static const char *select_name(int s) { return s == SEL_TARGET_VAL ? "target-val" : s == SEL_LAST ? "last" : val_names[s - SEL_V]; }
#define POOL_MAX 2048
static const char *optim_names[3] = { "adam", "adamw", "sgd" };
/* --align: what the domain head aligns. marginal: p(z) of source and target (DANN,
 * WDGRL); weighted: the source rows weighted by w_c = p_T(c)/p_S(c), p_T estimated
 * each epoch from the classifier's predictions on the unlabelled target rows
 * (IWDAN / IWWD, Combes et al. 2020; docs/MATH.md); conditional: the joint
 * distribution of z and the classifier's probabilities p, through the map p (x) z
 * (CDAN, Long et al. 2018; common/cond.h); conditional-entropy: the same with each
 * row's domain loss weighted by 1 + exp(-entropy(p)) (CDAN+E, dann only) */
enum { AL_MARGINAL, AL_WEIGHTED, AL_CONDITIONAL, AL_CONDITIONAL_E, AL_COUNT };
static const char *align_names[AL_COUNT] = { "marginal", "weighted", "conditional", "conditional-entropy" };

/* rows per evaluation request: the training batch's order of size, so that neither the
 * encoder's activation arena nor the shared scratch grows (and is faulted in) for it */
#define VAL_CHUNK 256

typedef struct {
	int n, cap;
	float *x;
	int32_t *y;
} ValSet;

typedef struct {
	/* options */
	int method;
	const char *out, *metrics, *checkpoint, *resume, *input;
	long epochs_max;
	double lr, wd, adapt_w, gp_weight, min_delta, critic_lr;
	int optim, wsched_ganin, lrsched_ganin, select, align;
	long n_critic, patience;
	long long seed;
	char *cmd[3];
	/* the stream */
	SReader r;
	Header h;
	int F, K, H;
	long spe, epochs;
	int supervised;
	ValSet val[2];    /* [0] target, [1] source */
	ValSet pool;      /* unlabelled target rows for the validators (labels never kept) */
	long pool_want, batch_tl;
	double score[VAL_COUNT], tval;  /* this epoch's validator values and target-val accuracy */
	double best_score[VAL_COUNT], best_tval;
	const char *scores;
	/* stages */
	Peer st[3];
	int nst;
	/* state */
	long gstep;
	long start_epoch;
	int best_epoch, bad;
	double best_acc;
	double *src_count;  /* (K) source training labels seen (class priors p_S) */
	double *cw;         /* (K) --align weighted: the class weights w_c of the domain loss */
	float *cond_buf;    /* --align conditional: the map's rows of a batch */
	size_t cond_cap;
	int have_cw;
	Blob best[3];
	int have_best;
	char *csv;        /* metrics rows so far */
	size_t csv_len;
	/* per-epoch tallies */
	double closs, dloss, dmetric;
	long nsteps, nskipped, ncorrect_s, nsrc, ncorrect_all, nlab;
	double lambda_now, lr_now;
	double t_epoch, t_start, t_steps;
	long steps_total;
	int stop_reason;  /* 0 end of stream, 1 early stop, 2 epochs-max */
} T;

static _Noreturn void usage(void)
{
	printf("Usage: train-step --method M --out MODEL.mpk [OPTIONS] [BATCHES.mpk]\n"
	       "Train a model from a minibatch stream (batch) by driving the stages encode,\n"
	       "predict and discriminate as child processes (protocol: docs/STAGES.md).\n"
	       "\n"
	       "  --method M              source-only, target-only, dann or wgan-gp (required)\n"
	       "  --out FILE              model bundle to write (required)\n"
	       "  --metrics FILE          per-epoch CSV (default none)\n"
	       "  --epochs-max N          stop after N epochs (default: all epochs of the stream)\n"
	       "  --lr X                  learning rate (default 1e-4)\n"
	       "  --weight-decay X        weight decay (default 1e-4)\n"
	       "  --optimizer O           adam, adamw or sgd (default adam)\n"
	       "  --adapt-weight W        weight of the adaptation term (default 1)\n"
	       "  --weight-schedule S     constant or ganin: W * (2/(1+exp(-10p)) - 1) (default constant)\n"
	       "  --lr-schedule S         constant or ganin: lr / (1+10p)^0.75 (default constant)\n"
	       "  --n-critic N            wgan-gp: critic updates per encoder update, on each batch (default 5)\n"
	       "  --gp-weight X           wgan-gp: gradient penalty weight (default 10)\n"
	       "  --critic-lr X           wgan-gp: the critic's learning rate (default: --lr, as in the\n"
	       "                          published code; with --lr-schedule ganin it decays the same way)\n"
	       "  --align A               dann and wgan-gp: marginal (source and target latent\n"
	       "                          distributions) or weighted (source rows of class c weighted\n"
	       "                          by p_T(c)/p_S(c), target proportions re-estimated every epoch\n"
	       "                          from the predictions on the unlabelled target rows),\n"
	       "                          conditional (CDAN: the domain head reads the classifier's\n"
	       "                          probabilities p (x) z; the classifier sees every row) or\n"
	       "                          conditional-entropy (CDAN+E, dann: rows weighted by\n"
	       "                          1 + exp(-entropy of p)) (default marginal)\n"
	       "  --patience N            early stopping: epochs without improvement (default 10)\n"
	       "  --min-delta X           early stopping: smallest improvement of accuracy (default 0)\n"
	       "  --select S              the model kept and early stopping: target-val, last, or a\n"
	       "                          validator that needs no target labels: source-val, entropy,\n"
	       "                          im, snd, dev, reverse (docs/VALIDATION.md) (default target-val\n"
	       "                          when the stream has a target validation set and is supervised,\n"
	       "                          else source-val, else last)\n"
	       "  --scores FILE           CSV row of every validator at the kept epoch (default none)\n"
	       "  --checkpoint FILE       write the full training state every epoch (default none)\n"
	       "  --resume FILE           continue from a checkpoint (default none)\n"
	       "  --seed N                seed of the stages' initialisation and dropout (default 1)\n"
	       "  --encoder CMD           encoder stage command (default: encode --stage)\n"
	       "  --classifier CMD        classifier stage command (default: predict --stage)\n"
	       "  --discriminator CMD     domain stage command (default: discriminate --stage --method M)\n"
	       "  --encoder-layers L      widths for the default encoder (default 256,256,256)\n"
	       "  --encoder-dropout P     dropout of the default encoder (default 0.5)\n"
	       "  --classifier-layers L   hidden widths of the default classifier (default 128,64)\n"
	       "  --discriminator-layers L hidden widths of the default domain head (default 256,128,64)\n"
	       "  --stage-timeout S       seconds a stage may take to answer one request; a stage that\n"
	       "                          takes longer is killed and train-step exits 1 (default 600,\n"
	       "                          0: no limit)\n"
	       "  --progress              progress on stderr even when it is not a terminal\n"
	       "  -q, --quiet             no messages but errors\n"
	       "  -h, --help              this help\n"
	       "p is the training progress, step / (steps_per_epoch * epochs of the stream).\n");
	exit(0);
}

/* ---- small helpers ---- */

typedef struct { char *buf; size_t len; FILE *fp; SWriter w; } MemW;
static SWriter *mem_begin(MemW *m)
{
	m->fp = open_memstream(&m->buf, &m->len);
	if (!m->fp) die("open_memstream:");
	sw_init(&m->w, m->fp, "<memory>");
	return &m->w;
}
static void mem_end(MemW *m, Blob *b)
{
	if (fclose(m->fp) != 0) die("out of memory");
	b->data = m->buf;
	b->len = m->len;
}


static const float *resp_matrix(Peer *p, const msgpack_object *f, const char *key, int rows, int cols, Tensor *t)
{
	get_tensor(&p->from, f, key, DT_F32, 2, t);
	if (t->shape[0] != rows || t->shape[1] != cols)
		peer_fail(p, "%s has shape (%lld,%lld), expected (%d,%d)", key, (long long)t->shape[0],
		          (long long)t->shape[1], rows, cols);
	return t->data;
}

static void send_optimizer(T *t, SWriter *w)
{
	sw_key(w, "optimizer");
	sw_map(w, 2);
	sw_key(w, "kind"); sw_str(w, optim_names[t->optim]);
	sw_key(w, "weight_decay"); sw_double(w, t->wd);
}

/* ---- the stages ---- */

static void start_stages(T *t)
{
	static const char *roles[3] = { "encoder", "classifier", "discriminator" };
	t->nst = t->method == M_DANN || t->method == M_WGAN ? 3 : 2;
	for (int i = 0; i < t->nst; i++) peer_start(&t->st[i], roles[i], t->cmd[i]);
	/* init all, then read the answers (the stages start in parallel) */
	SWriter *w = peer_request(&t->st[0], "init", 4);
	sw_key(w, "in"); sw_int(w, t->F);
	sw_key(w, "seed"); sw_int(w, t->seed * 3 + 1);
	send_optimizer(t, w);
	peer_send(&t->st[0]);
	const msgpack_object *f = peer_recv(&t->st[0]);
	int64_t H = get_int(&t->st[0].from, f, "out");
	if (H < 1 || H > (1 << 24)) peer_fail(&t->st[0], "init: latent width %lld", (long long)H);
	t->H = (int)H;
	int cond = t->align == AL_CONDITIONAL || t->align == AL_CONDITIONAL_E;
	if (cond && (int64_t)t->H * t->K > (1 << 24)) die("--align %s: the map p (x) z has %lld columns (latent %d x %d classes), more than %d",
		align_names[t->align], (long long)t->H * t->K, t->H, t->K, 1 << 24);
	for (int i = 1; i < t->nst; i++) {
		w = peer_request(&t->st[i], "init", i == 1 ? 5 : 4);
		sw_key(w, "in"); sw_int(w, i == 2 && cond ? t->H * t->K : t->H);
		if (i == 1) { sw_key(w, "out"); sw_int(w, t->K); }
		sw_key(w, "seed"); sw_int(w, t->seed * 3 + 1 + i);
		send_optimizer(t, w);
		peer_send(&t->st[i]);
	}
	for (int i = 1; i < t->nst; i++) {
		f = peer_recv(&t->st[i]);
		int64_t o = get_int(&t->st[i].from, f, "out");
		if (i == 1 && o != t->K) peer_fail(&t->st[i], "init: %lld outputs for %d classes", (long long)o, t->K);
		if (i == 2 && o != 1) peer_fail(&t->st[i], "init: %lld outputs, a domain head has 1", (long long)o);
	}
}

/* params of every stage; state: with optimiser and rng state (checkpoints) */
static void save_all(T *t, Blob *out, int state)
{
	for (int i = 0; i < t->nst; i++) {
		SWriter *w = peer_request(&t->st[i], "save", 2);
		sw_key(w, "state"); sw_bool(w, state);
		peer_send(&t->st[i]);
	}
	for (int i = 0; i < t->nst; i++) {
		const msgpack_object *f = peer_recv(&t->st[i]);
		const msgpack_object *p = obj_get(f, "params");
		if (!p || p->type != MSGPACK_OBJECT_MAP || !obj_is_str(obj_get(p, "type"), "params"))
			peer_fail(&t->st[i], "save: no params frame in the answer");
		blob_free(&out[i]);
		blob_from_object(&out[i], p);
	}
}

static void drain(T *t)
{
	for (int i = 0; i < t->nst; i++)
		while (t->st[i].pending) peer_recv(&t->st[i]);
}

/* ---- writing the bundle and checkpoints ---- */

static void pack_config(T *t, SWriter *w)
{
	sw_map(w, 21);
	sw_key(w, "method"); sw_str(w, method_names[t->method]);
	sw_key(w, "align"); sw_str(w, align_names[t->align]);
	sw_key(w, "critic_lr"); sw_double(w, t->critic_lr);
	sw_key(w, "mode"); sw_str(w, t->supervised ? "supervised" : "unsupervised");
	sw_key(w, "optimizer"); sw_str(w, optim_names[t->optim]);
	sw_key(w, "lr"); sw_double(w, t->lr);
	sw_key(w, "weight_decay"); sw_double(w, t->wd);
	sw_key(w, "adapt_weight"); sw_double(w, t->adapt_w);
	sw_key(w, "weight_schedule"); sw_str(w, t->wsched_ganin ? "ganin" : "constant");
	sw_key(w, "lr_schedule"); sw_str(w, t->lrsched_ganin ? "ganin" : "constant");
	sw_key(w, "n_critic"); sw_int(w, t->n_critic);
	sw_key(w, "gp_weight"); sw_double(w, t->gp_weight);
	sw_key(w, "patience"); sw_int(w, t->patience);
	sw_key(w, "min_delta"); sw_double(w, t->min_delta);
	sw_key(w, "select"); sw_str(w, select_name(t->select));
	sw_key(w, "seed"); sw_int(w, t->seed);
	sw_key(w, "epochs_max"); sw_int(w, t->epochs_max);
	sw_key(w, "steps_per_epoch"); sw_int(w, t->spe);
	sw_key(w, "epochs"); sw_int(w, t->epochs);
	sw_key(w, "latent"); sw_int(w, t->H);
	sw_key(w, "stages");
	sw_array(w, (size_t)t->nst);
	for (int i = 0; i < t->nst; i++) sw_str(w, t->cmd[i]);
}

static void write_bundle(T *t, const char *why)
{
	Header h;
	header_copy(&h, &t->h);
	free(h.kind);
	h.kind = xstrdup("model");
	/* keep only preprocessing of the batch header's extra keys */
	for (int i = h.nextra - 1; i >= 0; i--)
		if (strcmp(h.extra_keys[i], "preprocessing") != 0) header_del(&h, h.extra_keys[i]);
	MemW m;
	Blob b;
	pack_config(t, mem_begin(&m));
	mem_end(&m, &b);
	header_set(&h, "config", &b);
	blob_free(&b);
	SWriter *w = mem_begin(&m);
	sw_map(w, 7);
	sw_key(w, "best_epoch"); sw_int(w, t->best_epoch);
	sw_key(w, "val_accuracy");
	if (isnan(t->best_acc)) sw_nil(w); else sw_double(w, t->best_acc);
	sw_key(w, "selected_on"); sw_str(w, select_name(t->select));
	sw_key(w, "target_val_accuracy");
	if (isnan(t->best_tval)) sw_nil(w); else sw_double(w, t->best_tval);
	sw_key(w, "validators");
	sw_map(w, VAL_COUNT);
	for (int v = 0; v < VAL_COUNT; v++) {
		sw_key(w, val_names[v]);
		if (isnan(t->best_score[v])) sw_nil(w); else sw_double(w, t->best_score[v]);
	}
	sw_key(w, "stopped"); sw_str(w, why);
	sw_key(w, "steps"); sw_int(w, t->gstep);
	mem_end(&m, &b);
	header_set(&h, "metrics", &b);
	blob_free(&b);
	AtomicFile af;
	FILE *fp = atomic_open(&af, t->out);
	SWriter fw;
	sw_init(&fw, fp, t->out);
	sw_header(&fw, &h);
	for (int i = 0; i < t->nst; i++) sw_blob(&fw, &t->best[i]);
	sw_end(&fw, 0, t->nst);
	atomic_commit(&af);
	header_free(&h);
}

static void write_metrics(T *t)
{
	if (!t->metrics) return;
	AtomicFile af;
	FILE *fp = atomic_open(&af, t->metrics);
	fputs("epoch,class_loss,domain_loss,source_acc,train_acc,val_acc,domain_acc,critic_gap,lambda,lr,seconds,"
	      "target_val_acc,source_val_acc,entropy,im,snd,dev,reverse_acc\n", fp);
	if (t->csv_len) fwrite(t->csv, 1, t->csv_len, fp);
	atomic_commit(&af);
}

/* --scores: the kept epoch's validators, one CSV row */
static void write_scores(T *t)
{
	if (!t->scores) return;
	AtomicFile af;
	FILE *fp = atomic_open(&af, t->scores);
	fputs("best_epoch,selected_on,target_val_acc", fp);
	for (int v = 0; v < VAL_COUNT; v++) fprintf(fp, ",%s", val_names[v]);
	fprintf(fp, "\n%d,%s,", t->best_epoch, select_name(t->select));
	if (!isnan(t->best_tval)) fprintf(fp, "%.6g", t->best_tval);
	for (int v = 0; v < VAL_COUNT; v++) {
		if (isnan(t->best_score[v])) fputs(",", fp);
		else fprintf(fp, ",%.6g", t->best_score[v]);
	}
	fputs("\n", fp);
	atomic_commit(&af);
}

static void write_checkpoint(T *t, long epoch)
{
	if (!t->checkpoint) return;
	Blob cur[3] = { { 0 } };
	save_all(t, cur, 1);
	Header h;
	header_copy(&h, &t->h);
	free(h.kind);
	h.kind = xstrdup("checkpoint");
	for (int i = h.nextra - 1; i >= 0; i--) header_del(&h, h.extra_keys[i]);
	MemW m;
	Blob b;
	SWriter *w = mem_begin(&m);
	sw_map(w, 11);
	sw_key(w, "method"); sw_str(w, method_names[t->method]);
	sw_key(w, "align"); sw_str(w, align_names[t->align]);
	sw_key(w, "best_tval"); sw_double(w, t->best_tval);
	sw_key(w, "best_scores");
	sw_array(w, VAL_COUNT);
	for (int v = 0; v < VAL_COUNT; v++) sw_double(w, t->best_score[v]);
	sw_key(w, "epoch"); sw_int(w, epoch);
	sw_key(w, "gstep"); sw_int(w, t->gstep);
	sw_key(w, "best_epoch"); sw_int(w, t->best_epoch);
	sw_key(w, "best_acc"); sw_double(w, t->best_acc);
	sw_key(w, "bad"); sw_int(w, t->bad);
	sw_key(w, "nstages"); sw_int(w, t->nst);
	sw_key(w, "metrics_csv");
	msgpack_pack_str(&w->pk, t->csv_len);
	msgpack_pack_str_body(&w->pk, t->csv ? t->csv : "", t->csv_len);
	mem_end(&m, &b);
	header_set(&h, "trainer", &b);
	blob_free(&b);
	AtomicFile af;
	FILE *fp = atomic_open(&af, t->checkpoint);
	SWriter fw;
	sw_init(&fw, fp, t->checkpoint);
	sw_header(&fw, &h);
	for (int i = 0; i < t->nst; i++) sw_blob(&fw, &cur[i]);
	for (int i = 0; i < t->nst && t->have_best; i++) {
		sw_map(&fw, 2);
		sw_key(&fw, "type"); sw_str(&fw, "best");
		sw_key(&fw, "params"); sw_blob(&fw, &t->best[i]);
	}
	sw_end(&fw, 0, t->nst * (t->have_best ? 2 : 1));
	atomic_commit(&af);
	header_free(&h);
	for (int i = 0; i < t->nst; i++) blob_free(&cur[i]);
}

static void load_checkpoint(T *t)
{
	SReader r;
	sr_open(&r, t->resume);
	const msgpack_object *f = sr_next(&r);
	if (!f) sr_fail(&r, "empty file (no header frame)");
	Header h;
	header_parse(&r, f, &h);
	if (strcmp(h.kind, "checkpoint") != 0) sr_fail(&r, "kind \"%s\", expected a checkpoint", h.kind);
	if (h.nfeat != t->F || h.nclass != t->K) sr_fail(&r, "the checkpoint has %d features and %d classes, the batch stream %d and %d", h.nfeat, h.nclass, t->F, t->K);
	for (int i = 0; i < h.nfeat; i++)
		if (strcmp(h.features[i], t->h.features[i]) != 0) sr_fail(&r, "feature %d differs from the batch stream's", i + 1);
	for (int i = 0; i < h.nclass; i++)
		if (strcmp(h.classes[i], t->h.classes[i]) != 0) sr_fail(&r, "class %d differs from the batch stream's", i + 1);
	const Blob *tb = header_get(&h, "trainer");
	if (!tb) sr_fail(&r, "header has no \"trainer\"");
	msgpack_unpacked up;
	const msgpack_object *tr = blob_object(tb, &up);
	char *meth = get_str(&r, tr, "method");
	if (strcmp(meth, method_names[t->method]) != 0) sr_fail(&r, "a %s checkpoint, this run is %s", meth, method_names[t->method]);
	free(meth);
	if (obj_get(tr, "align")) {
		char *al = get_str(&r, tr, "align");
		if (strcmp(al, align_names[t->align]) != 0)
			sr_fail(&r, "a checkpoint of --align %s, this run is --align %s", al, align_names[t->align]);
		free(al);
	}
	t->start_epoch = get_int(&r, tr, "epoch") + 1;
	t->gstep = get_int(&r, tr, "gstep");
	t->best_epoch = (int)get_int(&r, tr, "best_epoch");
	t->best_acc = get_num(&r, tr, "best_acc");
	t->bad = (int)get_int(&r, tr, "bad");
	t->best_tval = get_num(&r, tr, "best_tval");
	const msgpack_object *bs = obj_get(tr, "best_scores");
	if (!bs || bs->type != MSGPACK_OBJECT_ARRAY || bs->via.array.size != VAL_COUNT)
		sr_fail(&r, "trainer.best_scores: expected an array of %d numbers", VAL_COUNT);
	for (int v = 0; v < VAL_COUNT; v++) t->best_score[v] = obj_num(&r, &bs->via.array.ptr[v], "best_scores");
	const msgpack_object *cs = obj_get(tr, "metrics_csv");
	if (!cs || cs->type != MSGPACK_OBJECT_STR) sr_fail(&r, "trainer.metrics_csv: expected a string");
	t->csv = xmalloc(cs->via.str.size + 1);
	memcpy(t->csv, cs->via.str.ptr, cs->via.str.size);
	t->csv_len = cs->via.str.size;
	msgpack_unpacked_destroy(&up);
	int ncur = 0, nbest = 0;
	for (;;) {
		f = sr_next(&r);
		if (!f) { r.frame++; sr_fail(&r, "checkpoint ends without an end frame (truncated?)"); }
		const char *type = frame_type(&r, f);
		if (strcmp(type, "end") == 0) break;
		if (strcmp(type, "params") == 0) {
			if (ncur >= t->nst) sr_fail(&r, "more params frames than stages");
			SWriter *w = peer_request(&t->st[ncur], "load", 2);
			sw_key(w, "params"); sw_object(w, f);
			peer_send(&t->st[ncur]);
			peer_recv(&t->st[ncur]);
			ncur++;
		} else if (strcmp(type, "best") == 0) {
			if (nbest >= t->nst) sr_fail(&r, "more best frames than stages");
			const msgpack_object *p = obj_get(f, "params");
			if (!p || p->type != MSGPACK_OBJECT_MAP) sr_fail(&r, "best: no params map");
			blob_from_object(&t->best[nbest++], p);
		}
	}
	if (ncur != t->nst) sr_fail(&r, "%d params frames for %d stages", ncur, t->nst);
	if (nbest != 0 && nbest != t->nst) sr_fail(&r, "%d best frames for %d stages", nbest, t->nst);
	t->have_best = nbest > 0;
	header_free(&h);
	sr_close(&r);
	info("resuming %s after epoch %ld", t->resume, t->start_epoch - 1);
}

/* ---- training ---- */

static _Noreturn void nan_stop(T *t, long epoch, long step, const char *what, double v)
{
	drain(t);
	if (t->have_best) {
		write_bundle(t, "nan");
		die("epoch %ld step %ld: the %s loss is %g; stopped (the model of epoch %d is kept in %s)",
		    epoch, step, what, v, t->best_epoch, t->out);
	}
	die("epoch %ld step %ld: the %s loss is %g; stopped (no epoch finished: no model written)", epoch, step, what, v);
}

/* the domain head's requests (sent by the caller): "dann" on the B rows of Z (B, cols),
 * rows [0, ns) source; "critic_step" on its source and target rows; RW (B or ns) the
 * per-row weights of the domain loss, or NULL */
static void request_dann(Peer *dis, const float *Z, int B, int cols, int ns, double lam, double lr, const float *RW)
{
	int32_t *D = xmallocarray((size_t)B, sizeof(int32_t));
	for (int i = 0; i < B; i++) D[i] = i >= ns;
	int64_t shz[2] = { B, cols }, shd[1] = { B };
	SWriter *w = peer_request(dis, "dann", RW ? 6 : 5);
	sw_key(w, "z"); sw_tensor(w, DT_F32, 2, shz, Z);
	sw_key(w, "d"); sw_tensor(w, DT_I32, 1, shd, D);
	sw_key(w, "lambda"); sw_double(w, lam);
	sw_key(w, "lr"); sw_double(w, lr);
	if (RW) { sw_key(w, "w"); sw_tensor(w, DT_F32, 1, shd, RW); }
	free(D);
}

/* WDGRL (Shen et al. 2018), WGAN-GP (Gulrajani et al. 2017): n_critic critic updates per
 * encoder update, on this batch's detached rows; then the encoder's adversarial
 * gradient, every batch, beside its class loss */
static void request_critic(T *t, Peer *dis, const float *Z, int B, int cols, int ns, double lr, const float *RW)
{
	int64_t shs[2] = { ns, cols }, sht[2] = { B - ns, cols }, shw[1] = { ns };
	SWriter *w = peer_request(dis, "critic_step", RW ? 8 : 7);
	sw_key(w, "iters"); sw_int(w, t->n_critic);
	sw_key(w, "zs"); sw_tensor(w, DT_F32, 2, shs, Z);
	sw_key(w, "zt"); sw_tensor(w, DT_F32, 2, sht, Z + (size_t)ns * cols);
	sw_key(w, "gp_weight"); sw_double(w, t->gp_weight);
	/* the critic's own rate, decayed like the encoder's */
	sw_key(w, "lr"); sw_double(w, t->critic_lr * (lr / t->lr));
	sw_key(w, "gen"); sw_bool(w, 1);
	if (RW) { sw_key(w, "ws"); sw_tensor(w, DT_F32, 1, shw, RW); }
}

/* --align conditional / conditional-entropy: the classifier on every row of z (the
 * unlabelled rows with y = -1: no loss, but their probabilities), then the domain head
 * on T = p (x) z (common/cond.h), p held constant; returns dz (B,H), the classifier's
 * and the domain head's gradients summed */
static float *heads_conditional(T *t, const float *Z, const int32_t *Y, int B, int ns, double lr, double lam,
                                long epoch, long step)
{
	Peer *cls = &t->st[1], *dis = &t->st[2];
	int H = t->H, K = t->K, nl = 0;
	for (int i = 0; i < B; i++) nl += Y[i] >= 0;
	int64_t shz[2] = { B, H }, shy[1] = { B };
	SWriter *w = peer_request(cls, "loss", 7);
	sw_key(w, "z"); sw_tensor(w, DT_F32, 2, shz, Z);
	sw_key(w, "y"); sw_tensor(w, DT_I32, 1, shy, Y);
	sw_key(w, "train"); sw_bool(w, nl > 0);
	sw_key(w, "lr"); sw_double(w, lr);
	sw_key(w, "want_probs"); sw_bool(w, 1);
	sw_key(w, "want_dz"); sw_bool(w, 1);
	peer_send(cls);
	const msgpack_object *ans = peer_recv(cls);
	float *dZ = xcalloc((size_t)B * H, sizeof(float));
	Tensor pr, dz, pp;
	const float *P = resp_matrix(cls, ans, "probs", B, K, &pp);
	get_tensor(&cls->from, ans, "pred", DT_I32, 1, &pr);
	if (pr.shape[0] != B) peer_fail(cls, "pred has %lld rows, expected %d", (long long)pr.shape[0], B);
	if (nl > 0) {
		double loss = get_num(&cls->from, ans, "loss");
		if (!isfinite(loss)) nan_stop(t, epoch, step, "class", loss);
		const float *d = resp_matrix(cls, ans, "dz", B, H, &dz);
		memcpy(dZ, d, sizeof(float) * (size_t)B * H);
		tensor_free(&dz);
		const int32_t *pv = pr.data;
		for (int i = 0; i < B; i++) {
			if (Y[i] < 0) continue;
			int c = pv[i] == Y[i];
			t->ncorrect_all += c;
			if (i < ns) { t->ncorrect_s += c; t->nsrc++; }
		}
		t->nlab += nl;
		t->closs += loss;
	}
	/* the domain head on the map */
	int KH = K * H;
	/* the map's rows (4 MiB for 256 rows of 4,096): kept from batch to batch */
	size_t need = (size_t)B * KH + 1;
	if (need > t->cond_cap) {
		free(t->cond_buf);
		t->cond_buf = xmallocarray(need, sizeof(float));
		t->cond_cap = need;
	}
	float *Tm = t->cond_buf;
	cond_map(Tm, P, Z, B, K, H);
	if (t->method == M_DANN) {
		float *RW = NULL;
		if (t->align == AL_CONDITIONAL_E) {
			RW = xmallocarray((size_t)B, sizeof(float));
			cond_entropy_weights(RW, P, B, ns, K);
		}
		request_dann(dis, Tm, B, KH, ns, lam, lr, RW);
		free(RW);
	} else {
		request_critic(t, dis, Tm, B, KH, ns, lr, NULL);
	}
	peer_send(dis);
	ans = peer_recv(dis);
	double loss = get_num(&dis->from, ans, "loss");
	if (!isfinite(loss)) nan_stop(t, epoch, step, "domain", loss);
	t->dloss += loss;
	if (t->method == M_DANN) {
		t->dmetric += get_num(&dis->from, ans, "acc");
		const float *d = resp_matrix(dis, ans, "dz", B, KH, &dz);
		cond_map_backward(dZ, P, d, 1.0f, B, K, H);
	} else {
		t->dmetric += get_num(&dis->from, ans, "gap");
		const float *d = resp_matrix(dis, ans, "dzt", B - ns, KH, &dz);
		/* the critic's gradient on the target rows, times the adaptation weight */
		cond_map_backward(dZ + (size_t)ns * H, P + (size_t)ns * K, d, (float)lam, B - ns, K, H);
	}
	tensor_free(&dz);
	tensor_free(&pr);
	tensor_free(&pp);
	return dZ;
}

static void train_batch(T *t, const msgpack_object *f, long epoch, long step)
{
	SReader *r = &t->r;
	/* the rows stay where the reader put them (in the encoder's shared memory when it
	 * took it): they are sent by reference or copied once, never copied out first */
	TensorView xs, xt;
	Tensor ys, yt;
	get_tensor_view(r, f, "xs", DT_F32, 2, &xs);
	get_tensor(r, f, "ys", DT_I32, 1, &ys);
	get_tensor_view(r, f, "xt", DT_F32, 2, &xt);
	get_tensor(r, f, "yt", DT_I32, 1, &yt);
	int Bs = (int)xs.shape[0], Bt = (int)xt.shape[0], F = t->F, H = t->H;
	if (xs.shape[1] != F || xt.shape[1] != F) sr_fail(r, "batch: x has the wrong number of columns (expected %d)", F);
	if (ys.shape[0] != Bs || yt.shape[0] != Bt) sr_fail(r, "batch: labels and rows disagree");
	const int32_t *ysv = ys.data, *ytv = yt.data;
	for (int i = 0; i < Bs; i++) if (ysv[i] < -1 || ysv[i] >= t->K) sr_fail(r, "batch: ys[%d] = %d is not a class", i, ysv[i]);
	for (int i = 0; i < Bt; i++) if (ytv[i] < -1 || ytv[i] >= t->K) sr_fail(r, "batch: yt[%d] = %d is not a class", i, ytv[i]);
	double t0 = now_seconds();
	drain(t);  /* the encoder's last backward answer, read after parsing this batch */

	double p = t->steps_total > 0 ? (double)t->gstep / (double)t->steps_total : 0;
	if (p > 1) p = 1;
	double lr = t->lrsched_ganin ? sched_lr_ganin((float)t->lr, (float)p) : t->lr;
	double lam = t->adapt_w * (t->wsched_ganin ? sched_lambda_ganin((float)p) : 1.0);
	int adapt = t->method == M_DANN || t->method == M_WGAN;
	t->lr_now = lr;
	t->lambda_now = adapt ? lam : 0;

	/* the rows to encode: X (B,F) = [xs; xt] as row blocks (src rows first), or the
	 * labelled target rows gathered (target-only) */
	int B = 0, ns = 0, nparts = 0;
	const float *part[2];
	int64_t part_rows[2];
	float *Xheap = NULL;
	int32_t *Y = xmallocarray((size_t)(Bs + Bt) + 1, sizeof(int32_t));
	if (t->method != M_TARGET_ONLY) {
		part[nparts] = xs.data;
		part_rows[nparts++] = Bs;
		memcpy(Y, ysv, ys.nbytes);
		B = ns = Bs;
		for (int i = 0; i < Bs; i++) if (ysv[i] >= 0) t->src_count[ysv[i]]++;
	}
	if (adapt) {
		if (Bt < 1) sr_fail(r, "batch: no target rows; %s needs target rows", method_names[t->method]);
		part[nparts] = xt.data;
		part_rows[nparts++] = Bt;
		memcpy(Y + B, ytv, yt.nbytes);
		B += Bt;
	} else if (t->method == M_TARGET_ONLY) {
		/* built in place in the encoder's shared memory when it can be (no copy to send it) */
		float *X = peer_shm_f32(&t->st[0], Bt, F);
		if (!X) X = Xheap = xmallocarray((size_t)Bt * F + 1, sizeof(float));
		for (int i = 0; i < Bt; i++)
			if (ytv[i] >= 0) {
				memcpy(X + (size_t)B * F, (const char *)xt.data + sizeof(float) * (size_t)i * F, sizeof(float) * F);
				Y[B++] = ytv[i];
			}
		part[nparts] = X;
		part_rows[nparts++] = B;
	}
	tensor_free(&ys); tensor_free(&yt);
	if (B < 2) {
		t->nskipped++;
		free(Xheap); free(Y);
		t->gstep++;
		return;
	}
	/* encoder forward (training mode) */
	Peer *enc = &t->st[0], *cls = &t->st[1], *dis = &t->st[2];
	SWriter *w = peer_request(enc, "forward", 3);
	sw_key(w, "x"); peer_tensor_f32(enc, B, F, nparts, part, part_rows);
	sw_key(w, "train"); sw_bool(w, 1);
	peer_send(enc);
	Tensor zt_;
	const msgpack_object *ans = peer_recv(enc);
	const float *Z = resp_matrix(enc, ans, "y", B, H, &zt_);
	float *dZ;
	if (adapt && (t->align == AL_CONDITIONAL || t->align == AL_CONDITIONAL_E)) {
		dZ = heads_conditional(t, Z, Y, B, ns, lr, lam, epoch, step);
		goto backward;
	}
	/* gather the labelled rows for the classifier */
	int nl = 0;
	int *idx = xmallocarray((size_t)B, sizeof(int));
	float *ZL = xmallocarray((size_t)B * H, sizeof(float));
	int32_t *YL = xmallocarray((size_t)B, sizeof(int32_t));
	for (int i = 0; i < B; i++)
		if (Y[i] >= 0) {
			idx[nl] = i;
			memcpy(ZL + (size_t)nl * H, Z + (size_t)i * H, sizeof(float) * H);
			YL[nl++] = Y[i];
		}
	if (nl > 0) {
		int64_t shz[2] = { nl, H }, shy[1] = { nl };
		w = peer_request(cls, "loss", 5);
		sw_key(w, "z"); sw_tensor(w, DT_F32, 2, shz, ZL);
		sw_key(w, "y"); sw_tensor(w, DT_I32, 1, shy, YL);
		sw_key(w, "train"); sw_bool(w, 1);
		sw_key(w, "lr"); sw_double(w, lr);
		peer_send(cls);
	}
	int gen = 0;
	if (adapt) {
		/* --align weighted: source row i weighted by w_{y_i} in the domain loss
		 * (weight 1 until the first estimate, after epoch 0, and for unlabelled rows) */
		float *RW = NULL;
		if (t->align == AL_WEIGHTED && t->have_cw) {
			RW = xmallocarray((size_t)B, sizeof(float));
			for (int i = 0; i < B; i++) RW[i] = i < ns && Y[i] >= 0 ? (float)t->cw[Y[i]] : 1.0f;
		}
		if (t->method == M_DANN) {
			request_dann(dis, Z, B, H, ns, lam, lr, RW);
		} else {
			gen = 1;
			request_critic(t, dis, Z, B, H, ns, lr, RW);
		}
		free(RW);
		peer_send(dis);
	}
	dZ = xcalloc((size_t)B * H, sizeof(float));
	if (nl > 0) {
		ans = peer_recv(cls);
		double loss = get_num(&cls->from, ans, "loss");
		if (!isfinite(loss)) nan_stop(t, epoch, step, "class", loss);
		Tensor dz, pr;
		const float *d = resp_matrix(cls, ans, "dz", nl, H, &dz);
		get_tensor(&cls->from, ans, "pred", DT_I32, 1, &pr);
		if (pr.shape[0] != nl) peer_fail(cls, "pred has %lld rows, expected %d", (long long)pr.shape[0], nl);
		const int32_t *pv = pr.data;
		for (int k = 0; k < nl; k++) {
			int i = idx[k];
			memcpy(dZ + (size_t)i * H, d + (size_t)k * H, sizeof(float) * H);
			int c = pv[k] == YL[k];
			t->ncorrect_all += c;
			if (i < ns) { t->ncorrect_s += c; t->nsrc++; }
		}
		t->nlab += nl;
		t->closs += loss;
		tensor_free(&dz);
		tensor_free(&pr);
	}
	if (adapt) {
		ans = peer_recv(dis);
		double loss = get_num(&dis->from, ans, "loss");
		if (!isfinite(loss)) nan_stop(t, epoch, step, "domain", loss);
		t->dloss += loss;
		Tensor dz;
		if (t->method == M_DANN) {
			t->dmetric += get_num(&dis->from, ans, "acc");
			const float *d = resp_matrix(dis, ans, "dz", B, H, &dz);
			for (size_t k = 0; k < (size_t)B * H; k++) dZ[k] += d[k];
			tensor_free(&dz);
		} else {
			t->dmetric += get_num(&dis->from, ans, "gap");
			if (gen) {
				const float *d = resp_matrix(dis, ans, "dzt", B - ns, H, &dz);
				float *o = dZ + (size_t)ns * H;
				for (size_t k = 0; k < (size_t)(B - ns) * H; k++) o[k] += (float)lam * d[k];
				tensor_free(&dz);
			}
		}
	}
	free(idx); free(ZL); free(YL);
backward:
	/* encoder backward with the summed gradient, then its optimiser step;
	 * the answer is read at the next batch */
	w = peer_request(enc, "backward", 4);
	sw_key(w, "dy"); sw_tensor(w, DT_F32, 2, (int64_t[2]){ B, H }, dZ);
	sw_key(w, "want_dx"); sw_bool(w, 0);
	sw_key(w, "lr"); sw_double(w, lr);
	peer_send(enc);
	tensor_free(&zt_);
	free(dZ); free(Xheap); free(Y);
	t->nsteps++;
	t->gstep++;
	t->t_steps += now_seconds() - t0;
	progress("epoch %ld/%ld step %ld/%ld class loss %.4f", epoch + 1, t->epochs_max, step + 1, t->spe,
	         t->nsteps ? t->closs / t->nsteps : 0.0);
}

/* accuracy of the current model on a validation set (eval mode) */
static double evaluate(T *t, const ValSet *v)
{
	Peer *enc = &t->st[0], *cls = &t->st[1];
	long correct = 0;
	drain(t);
	for (int s = 0; s < v->n; s += VAL_CHUNK) {
		int n = v->n - s < VAL_CHUNK ? v->n - s : VAL_CHUNK;
		SWriter *w = peer_request(enc, "forward", 3);
		sw_key(w, "x"); peer_tensor_f32(enc, n, t->F, 1, (const float *const[1]){ v->x + (size_t)s * t->F }, (int64_t[1]){ n });
		sw_key(w, "train"); sw_bool(w, 0);
		peer_send(enc);
		Tensor z;
		const float *Z = resp_matrix(enc, peer_recv(enc), "y", n, t->H, &z);
		w = peer_request(cls, "loss", 5);
		sw_key(w, "z"); sw_tensor(w, DT_F32, 2, (int64_t[2]){ n, t->H }, Z);
		sw_key(w, "y"); sw_tensor(w, DT_I32, 1, (int64_t[1]){ n }, v->y + s);
		sw_key(w, "train"); sw_bool(w, 0);
		sw_key(w, "want_dz"); sw_bool(w, 0);
		peer_send(cls);
		tensor_free(&z);
		correct += get_int(&cls->from, peer_recv(cls), "correct");
	}
	return v->n ? (double)correct / v->n : NAN;
}

/* the current model in evaluation mode on n rows X (n,F): latent Z (n,H) and class
 * probabilities P (n,K), both allocated */
static void infer(T *t, const float *X, int n, float **Zo, float **Po)
{
	Peer *enc = &t->st[0], *cls = &t->st[1];
	float *Zall = xmallocarray((size_t)n * t->H + 1, sizeof(float));
	float *Pall = xmallocarray((size_t)n * t->K + 1, sizeof(float));
	drain(t);
	for (int s = 0; s < n; s += VAL_CHUNK) {
		int m = n - s < VAL_CHUNK ? n - s : VAL_CHUNK;
		SWriter *w = peer_request(enc, "forward", 3);
		sw_key(w, "x"); peer_tensor_f32(enc, m, t->F, 1, (const float *const[1]){ X + (size_t)s * t->F }, (int64_t[1]){ m });
		sw_key(w, "train"); sw_bool(w, 0);
		peer_send(enc);
		Tensor z, l;
		const float *Z = resp_matrix(enc, peer_recv(enc), "y", m, t->H, &z);
		memcpy(Zall + (size_t)s * t->H, Z, sizeof(float) * (size_t)m * t->H);
		w = peer_request(cls, "forward", 3);
		sw_key(w, "x"); sw_tensor(w, DT_F32, 2, (int64_t[2]){ m, t->H }, Z);
		sw_key(w, "train"); sw_bool(w, 0);
		peer_send(cls);
		tensor_free(&z);
		const float *L = resp_matrix(cls, peer_recv(cls), "y", m, t->K, &l);
		memcpy(Pall + (size_t)s * t->K, L, sizeof(float) * (size_t)m * t->K);
		tensor_free(&l);
	}
	val_softmax(Pall, n, t->K);
	*Zo = Zall;
	*Po = Pall;
}

static int argmax(const float *p, int K)
{
	int b = 0;
	for (int k = 1; k < K; k++) if (p[k] > p[b]) b = k;
	return b;
}

/* --align weighted: the class weights w_c = q_c / p_c of the domain loss, with p the
 * source class proportions seen in training and q the target class proportions,
 * estimated from the current classifier's probabilities P (n,K) on the unlabelled
 * target rows by EM (prior_shift_em, nn.h). A class absent from the source keeps
 * weight 1. */
static void estimate_weights(T *t, const float *P, int n)
{
	int K = t->K;
	double tot = 0;
	for (int c = 0; c < K; c++) tot += t->src_count[c];
	if (n < 1 || tot <= 0) return;
	double *p = xcalloc((size_t)K, sizeof(double)), *q = xcalloc((size_t)K, sizeof(double));
	for (int c = 0; c < K; c++) p[c] = t->src_count[c] / tot;
	prior_shift_em(q, P, n, K, p, 1000, 1e-6);
	for (int c = 0; c < K; c++) t->cw[c] = p[c] > 0 ? q[c] / p[c] : 1;
	t->have_cw = 1;
	if (progress_on) {
		char buf[4096];
		size_t o = 0;
		for (int c = 0; c < K && o + 32 < sizeof buf; c++)
			o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%.3f", c ? " " : "", q[c]);
		info("target class proportions (EM): %s", buf);
	}
	free(p);
	free(q);
}

/* every validator on the current model: t->score[] (raw values, NAN where the data
 * is missing) and t->tval (target validation accuracy) */
static void validate_epoch(T *t, long e)
{
	for (int v = 0; v < VAL_COUNT; v++) t->score[v] = NAN;
	t->tval = t->val[0].n ? evaluate(t, &t->val[0]) : NAN;
	const ValSet *sv = &t->val[1], *tp = &t->pool;
	float *Zs = NULL, *Ps = NULL, *Zt = NULL, *Pt = NULL, *loss = NULL;
	int32_t *pl = NULL;
	if (sv->n) {
		infer(t, sv->x, sv->n, &Zs, &Ps);
		loss = xmallocarray((size_t)sv->n, sizeof(float));
		long correct = 0;
		for (int i = 0; i < sv->n; i++) {
			const float *p = Ps + (size_t)i * t->K;
			correct += argmax(p, t->K) == sv->y[i];
			loss[i] = -logf(p[sv->y[i]] > 1e-12f ? p[sv->y[i]] : 1e-12f);
		}
		t->score[VAL_SOURCE_ACC] = (double)correct / sv->n;
	}
	if (tp->n) {
		infer(t, tp->x, tp->n, &Zt, &Pt);
		if (t->align == AL_WEIGHTED) estimate_weights(t, Pt, tp->n);
		t->score[VAL_ENTROPY] = val_entropy(Pt, tp->n, t->K);
		t->score[VAL_IM] = val_im(Pt, tp->n, t->K);
		t->score[VAL_SND] = val_snd(Pt, tp->n, t->K, 0.05);
		pl = xmallocarray((size_t)tp->n, sizeof(int32_t));
		for (int i = 0; i < tp->n; i++) pl[i] = argmax(Pt + (size_t)i * t->K, t->K);
	}
	if (sv->n && tp->n) {
		t->score[VAL_DEV] = val_dev(Zs, loss, sv->n, Zt, tp->n, t->H, (uint64_t)t->seed * 1000003u + (uint64_t)e);
		t->score[VAL_REVERSE] = val_reverse(Zt, pl, tp->n, Zs, sv->y, sv->n, t->H, t->K);
	}
	free(Zs); free(Ps); free(Zt); free(Pt); free(loss); free(pl);
}

/* unlabelled target rows of a batch into the validators' pool: the rows after the
 * labelled ones (or, when the batch holds labelled rows only, those, labels dropped);
 * batch draws each pool as cycles of permutations, so the first rows drawn are
 * distinct */
static void pool_add(T *t, const Tensor *xt)
{
	int Bt = (int)xt->shape[0];
	long from = t->batch_tl < Bt ? t->batch_tl : 0;
	ValSet *p = &t->pool;
	for (long i = from; i < Bt && p->n < t->pool_want; i++) {
		if (p->n == p->cap) {
			/* room for the whole pool at once (pages are only touched as rows come),
			 * so that the rows are never copied by a growing realloc */
			p->cap = (int)t->pool_want;
			p->x = xrealloc(p->x, sizeof(float) * (size_t)p->cap * t->F);
		}
		memcpy(p->x + (size_t)p->n * t->F, (const float *)xt->data + (size_t)i * t->F, sizeof(float) * t->F);
		p->n++;
	}
}

static void csv_num(char **buf, size_t *len, double v, int last)
{
	char tmp[64];
	if (isnan(v)) snprintf(tmp, sizeof tmp, "%s", last ? "\n" : ",");
	else snprintf(tmp, sizeof tmp, "%.6g%s", v, last ? "\n" : ",");
	size_t n = strlen(tmp);
	*buf = xrealloc(*buf, *len + n + 1);
	memcpy(*buf + *len, tmp, n + 1);
	*len += n;
}

/* returns 1 to stop */
static int end_epoch(T *t, long e)
{
	drain(t);
	validate_epoch(t, e);
	/* acc: the selection score of this epoch (higher is better) */
	double acc = t->select == SEL_TARGET_VAL ? t->tval
	           : t->select == SEL_LAST ? (t->val[1].n ? t->score[VAL_SOURCE_ACC] : NAN)
	           : val_score(t->select - SEL_V, t->score[t->select - SEL_V]);
	int improved = t->select == SEL_LAST || t->best_epoch < 0 || (isnan(t->best_acc) && !isnan(acc))
	               || acc > t->best_acc + t->min_delta;
	if (improved) {
		save_all(t, t->best, 0);
		t->have_best = 1;
		t->best_epoch = (int)e;
		t->best_acc = acc;
		t->best_tval = t->tval;
		memcpy(t->best_score, t->score, sizeof t->score);
		t->bad = 0;
	} else {
		t->bad++;
	}
	double n = t->nsteps ? (double)t->nsteps : NAN;
	int adapt = t->method == M_DANN || t->method == M_WGAN;
	csv_num(&t->csv, &t->csv_len, (double)e, 0);
	csv_num(&t->csv, &t->csv_len, t->closs / n, 0);
	csv_num(&t->csv, &t->csv_len, adapt ? t->dloss / n : NAN, 0);
	csv_num(&t->csv, &t->csv_len, t->nsrc ? (double)t->ncorrect_s / t->nsrc : NAN, 0);
	csv_num(&t->csv, &t->csv_len, t->nlab ? (double)t->ncorrect_all / t->nlab : NAN, 0);
	csv_num(&t->csv, &t->csv_len, t->select == SEL_TARGET_VAL ? t->tval : t->score[VAL_SOURCE_ACC], 0);
	csv_num(&t->csv, &t->csv_len, t->method == M_DANN ? t->dmetric / n : NAN, 0);
	csv_num(&t->csv, &t->csv_len, t->method == M_WGAN ? t->dmetric / n : NAN, 0);
	csv_num(&t->csv, &t->csv_len, t->lambda_now, 0);
	csv_num(&t->csv, &t->csv_len, t->lr_now, 0);
	csv_num(&t->csv, &t->csv_len, now_seconds() - t->t_epoch, 0);
	csv_num(&t->csv, &t->csv_len, t->tval, 0);
	for (int k = 0; k < VAL_COUNT; k++) csv_num(&t->csv, &t->csv_len, t->score[k], k == VAL_COUNT - 1);
	write_metrics(t);
	write_checkpoint(t, e);
	if (t->nsteps == 0)
		warnx("epoch %ld: no training step (%ld batches without 2 labelled rows)", e, t->nskipped);
	if (progress_on)
		info("epoch %ld: class loss %.4f, %s %.4f%s", e, t->closs / n, select_name(t->select), acc, improved ? " *" : "");
	t->closs = t->dloss = t->dmetric = 0;
	t->nsteps = t->nskipped = t->ncorrect_s = t->nsrc = t->ncorrect_all = t->nlab = 0;
	t->t_epoch = now_seconds();
	if (t->select != SEL_LAST && t->bad >= t->patience) {
		t->stop_reason = 1;
		return 1;
	}
	if (e + 1 >= t->epochs_max) {
		t->stop_reason = 2;
		return 1;
	}
	return 0;
}

static void read_val(T *t, const msgpack_object *f)
{
	SReader *r = &t->r;
	char *set = get_str(r, f, "set");
	int k = strcmp(set, "target") == 0 ? 0 : strcmp(set, "source") == 0 ? 1 : -1;
	if (k < 0) sr_fail(r, "val: set \"%s\" is not target or source", set);
	free(set);
	Tensor x, y;
	get_tensor(r, f, "x", DT_F32, 2, &x);
	get_tensor(r, f, "y", DT_I32, 1, &y);
	if (x.shape[1] != t->F) sr_fail(r, "val: x has %lld columns, expected %d", (long long)x.shape[1], t->F);
	int n = (int)x.shape[0];
	if (y.shape[0] != n) sr_fail(r, "val: x and y disagree on the number of rows");
	const int32_t *yy = y.data;
	for (int i = 0; i < n; i++)
		if (yy[i] < -1 || yy[i] >= t->K) sr_fail(r, "val: y[%d] = %d is not a class", i, yy[i]);
	ValSet *v = &t->val[k];
	v->x = xrealloc(v->x, sizeof(float) * ((size_t)(v->n + n) * t->F + 1));
	v->y = xrealloc(v->y, sizeof(int32_t) * ((size_t)(v->n + n) + 1));
	memcpy(v->x + (size_t)v->n * t->F, x.data, x.nbytes);
	memcpy(v->y + v->n, y.data, y.nbytes);
	v->n += n;
	tensor_free(&x);
	tensor_free(&y);
}

static void choose_select(T *t, int user)
{
	int tv = t->val[0].n > 0, sv = t->val[1].n > 0;
	if (user == SEL_DEFAULT) {
		t->select = tv && t->supervised ? SEL_TARGET_VAL : sv ? SEL_SOURCE_VAL : SEL_LAST;
		return;
	}
	t->select = user;
	if (user == SEL_TARGET_VAL && !tv)
		die("--select target-val: %s has no target validation set (batch --labeled-... --val-fraction)", t->r.name);
	int needs_sv = user == SEL_SOURCE_VAL || user == SEL_V + VAL_DEV || user == SEL_V + VAL_REVERSE;
	int needs_tp = user >= SEL_V && user != SEL_SOURCE_VAL;
	if (needs_sv && !sv)
		die("--select %s: %s has no source validation set (batch --source-val-fraction)", select_name(user), t->r.name);
	if (needs_tp && t->pool_want < 1)
		die("--select %s: %s has no target rows to score", select_name(user), t->r.name);
	if (user == SEL_TARGET_VAL && !t->supervised)
		warnx("warning: --select target-val picks the model of an unsupervised run with labelled target data");
}

static long header_long(T *t, const char *key, long def)
{
	const Blob *b = header_get(&t->h, key);
	if (!b) return def;
	msgpack_unpacked up;
	const msgpack_object *o = blob_object(b, &up);
	long v = (long)obj_int(&t->r, o, key);
	msgpack_unpacked_destroy(&up);
	return v;
}

int main(int argc, char **argv)
{
	util_init(argv[0]);
	enum {
		O_METHOD = 256, O_OUT, O_METRICS, O_EPOCHS, O_LR, O_WD, O_OPTIM, O_AW, O_WS, O_LS, O_NC, O_GP,
		O_CLR, O_ALIGN, O_PAT, O_MD, O_SEL, O_SCORES, O_CK, O_RES, O_SEED, O_ENC, O_CLS, O_DIS, O_EL, O_ED, O_CL, O_DL, O_PROG, O_QUIET, O_STO
	};
	static const struct option opts[] = {
		{ "method", required_argument, 0, O_METHOD }, { "out", required_argument, 0, O_OUT },
		{ "metrics", required_argument, 0, O_METRICS }, { "epochs-max", required_argument, 0, O_EPOCHS },
		{ "lr", required_argument, 0, O_LR }, { "weight-decay", required_argument, 0, O_WD },
		{ "optimizer", required_argument, 0, O_OPTIM }, { "adapt-weight", required_argument, 0, O_AW },
		{ "weight-schedule", required_argument, 0, O_WS }, { "lr-schedule", required_argument, 0, O_LS },
		{ "n-critic", required_argument, 0, O_NC }, { "gp-weight", required_argument, 0, O_GP },
		{ "critic-lr", required_argument, 0, O_CLR }, { "align", required_argument, 0, O_ALIGN },
		{ "patience", required_argument, 0, O_PAT }, { "min-delta", required_argument, 0, O_MD },
		{ "select", required_argument, 0, O_SEL }, { "checkpoint", required_argument, 0, O_CK },
		{ "scores", required_argument, 0, O_SCORES },
		{ "resume", required_argument, 0, O_RES }, { "seed", required_argument, 0, O_SEED },
		{ "encoder", required_argument, 0, O_ENC }, { "classifier", required_argument, 0, O_CLS },
		{ "discriminator", required_argument, 0, O_DIS }, { "encoder-layers", required_argument, 0, O_EL },
		{ "encoder-dropout", required_argument, 0, O_ED }, { "classifier-layers", required_argument, 0, O_CL },
		{ "discriminator-layers", required_argument, 0, O_DL }, { "progress", no_argument, 0, O_PROG },
		{ "quiet", no_argument, 0, O_QUIET }, { "stage-timeout", required_argument, 0, O_STO },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
	};
	static T t;
	t.method = -1;
	t.epochs_max = LONG_MAX;
	t.lr = 1e-4;
	t.wd = 1e-4;
	t.adapt_w = 1;
	t.gp_weight = 10;
	t.n_critic = 5;
	t.patience = 10;
	t.seed = 1;
	t.best_epoch = -1;
	t.best_acc = NAN;
	t.best_tval = NAN;
	for (int v = 0; v < VAL_COUNT; v++) t.best_score[v] = NAN;
	int user_select = SEL_DEFAULT, prog = 0, c;
	double stage_timeout = 600;
	const char *el = NULL, *ed = NULL, *cl = NULL, *dl = NULL;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hq", opts, NULL)) != -1) {
		switch (c) {
		case O_METHOD:
			for (int i = 0; i < M_COUNT; i++) if (strcmp(optarg, method_names[i]) == 0) t.method = i;
			if (t.method < 0) usage_error("--method: %s: expected source-only, target-only, dann or wgan-gp", optarg);
			break;
		case O_OUT: t.out = optarg; break;
		case O_METRICS: t.metrics = optarg; break;
		case O_EPOCHS: t.epochs_max = parse_long("--epochs-max", optarg, 1, 1000000000L); break;
		case O_LR: t.lr = parse_double("--lr", optarg, 1e-12, 1e3); break;
		case O_WD: t.wd = parse_double("--weight-decay", optarg, 0, 10); break;
		case O_OPTIM:
			t.optim = -1;
			for (int i = 0; i < 3; i++) if (strcmp(optarg, optim_names[i]) == 0) t.optim = i;
			if (t.optim < 0) usage_error("--optimizer: %s: expected adam, adamw or sgd", optarg);
			break;
		case O_AW: t.adapt_w = parse_double("--adapt-weight", optarg, 0, 1e6); break;
		case O_WS: case O_LS: {
			int g = strcmp(optarg, "ganin") == 0;
			if (!g && strcmp(optarg, "constant") != 0)
				usage_error("%s: %s: expected constant or ganin", c == O_WS ? "--weight-schedule" : "--lr-schedule", optarg);
			if (c == O_WS) t.wsched_ganin = g; else t.lrsched_ganin = g;
			break;
		}
		case O_NC: t.n_critic = parse_long("--n-critic", optarg, 1, 1000); break;
		case O_GP: t.gp_weight = parse_double("--gp-weight", optarg, 0, 1e6); break;
		case O_CLR: t.critic_lr = parse_double("--critic-lr", optarg, 1e-12, 1e3); break;
		case O_ALIGN:
			t.align = -1;
			for (int i = 0; i < AL_COUNT; i++) if (strcmp(optarg, align_names[i]) == 0) t.align = i;
			if (t.align < 0) usage_error("--align: %s: expected marginal, weighted, conditional or conditional-entropy", optarg);
			break;
		case O_PAT: t.patience = parse_long("--patience", optarg, 1, 1000000000L); break;
		case O_MD: t.min_delta = parse_double("--min-delta", optarg, 0, 1); break;
		case O_SEL:
			user_select = -2;
			for (int i = 0; i < NSEL; i++) if (strcmp(optarg, select_name(i)) == 0) user_select = i;
			if (user_select == -2)
				usage_error("--select: %s: expected target-val, source-val, last, entropy, im, snd, dev or reverse", optarg);
			break;
		case O_SCORES: t.scores = optarg; break;
		case O_CK: t.checkpoint = optarg; break;
		case O_RES: t.resume = optarg; break;
		case O_SEED: t.seed = parse_long("--seed", optarg, 0, 1L << 40); break;
		case O_ENC: t.cmd[0] = xstrdup(optarg); break;
		case O_CLS: t.cmd[1] = xstrdup(optarg); break;
		case O_DIS: t.cmd[2] = xstrdup(optarg); break;
		case O_EL: { int tmp[16]; parse_int_list("--encoder-layers", optarg, tmp, 15, 1, 1 << 20); el = optarg; break; }
		case O_ED: parse_double("--encoder-dropout", optarg, 0, 0.99); ed = optarg; break;
		case O_CL: { int tmp[16]; parse_int_list("--classifier-layers", optarg, tmp, 15, 1, 1 << 20); cl = optarg; break; }
		case O_DL: { int tmp[16]; parse_int_list("--discriminator-layers", optarg, tmp, 15, 1, 1 << 20); dl = optarg; break; }
		case O_PROG: prog = 1; break;
		case 'q':
		case O_QUIET: quiet = 1; break;
		case O_STO: stage_timeout = parse_double("--stage-timeout", optarg, 0, 1e7); break;
		case 'h': usage();
		case ':': usage_error("%s: needs a value", argv[optind - 1]);
		default: usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	progress_setup(prog, quiet);
	peer_set_timeout(stage_timeout);
	if (t.method < 0) usage_error("--method is required");
	if (t.critic_lr == 0) t.critic_lr = t.lr;
	if (!t.out) usage_error("--out is required");
	if (argc - optind > 1) usage_error("at most one input file");
	if ((el || ed) && t.cmd[0]) usage_error("--encoder-layers and --encoder-dropout apply to the default encoder, not to --encoder");
	if (cl && t.cmd[1]) usage_error("--classifier-layers applies to the default classifier, not to --classifier");
	if (dl && t.cmd[2]) usage_error("--discriminator-layers applies to the default domain head, not to --discriminator");
	int adapt = t.method == M_DANN || t.method == M_WGAN;
	if (t.cmd[2] && !adapt) usage_error("--discriminator: %s uses no domain head", method_names[t.method]);
	if (t.align != AL_MARGINAL && !adapt) usage_error("--align: %s uses no domain head", method_names[t.method]);
	if (t.align == AL_CONDITIONAL_E && t.method != M_DANN) usage_error("--align: conditional-entropy weights the domain classifier's loss: dann only (wgan-gp: conditional)");
	if (!t.cmd[0]) {
		char *b = sibling_command("encode");
		t.cmd[0] = xasprintf("%s --stage%s%s%s%s", b, el ? " --layers " : "", el ? el : "", ed ? " --dropout " : "", ed ? ed : "");
		free(b);
	}
	if (!t.cmd[1]) {
		char *b = sibling_command("predict");
		t.cmd[1] = xasprintf("%s --stage%s%s", b, cl ? " --layers " : "", cl ? cl : "");
		free(b);
	}
	if (!t.cmd[2] && adapt) {
		char *b = sibling_command("discriminate");
		t.cmd[2] = xasprintf("%s --stage --method %s%s%s", b, method_names[t.method], dl ? " --layers " : "", dl ? dl : "");
		free(b);
	}

	/* the batch stream header */
	t.input = optind < argc ? argv[optind] : "-";
	sr_open(&t.r, t.input);
	const msgpack_object *f = sr_next(&t.r);
	if (!f) sr_fail(&t.r, "empty stream (no header frame)");
	header_parse(&t.r, f, &t.h);
	if (strcmp(t.h.kind, "batches") != 0) sr_fail(&t.r, "kind \"%s\", expected a minibatch stream (kind \"batches\", written by batch)", t.h.kind);
	t.F = t.h.nfeat;
	t.K = t.h.nclass;
	t.src_count = xcalloc((size_t)t.K + 1, sizeof(double));
	t.cw = xcalloc((size_t)t.K + 1, sizeof(double));
	if (t.F < 1) sr_fail(&t.r, "the header lists no features");
	if (t.K < 2) sr_fail(&t.r, "the header lists %d class%s; a classifier needs at least 2", t.K, t.K == 1 ? "" : "es");
	t.spe = header_long(&t, "steps_per_epoch", 0);
	t.epochs = header_long(&t, "epochs", 0);
	if (t.spe < 1 || t.epochs < 1) sr_fail(&t.r, "header: steps_per_epoch and epochs must be at least 1");
	t.steps_total = t.spe * t.epochs;
	if (t.epochs_max > t.epochs) t.epochs_max = t.epochs;
	if (header_long(&t, "batch_target", 0) > 0) {
		long nu = header_long(&t, "n_unlabeled_target", 0), nl = header_long(&t, "n_labeled_target", 0);
		t.pool_want = nu > 0 ? nu : nl;
		if (t.pool_want > POOL_MAX) t.pool_want = POOL_MAX;
		t.batch_tl = nu > 0 ? header_long(&t, "batch_target_labeled", 0) : 0;
	}
	const Blob *mb = header_get(&t.h, "mode");
	if (mb) {
		msgpack_unpacked up;
		t.supervised = obj_is_str(blob_object(mb, &up), "supervised");
		msgpack_unpacked_destroy(&up);
	}
	if (t.method == M_TARGET_ONLY && !t.supervised)
		die("%s: target-only needs labelled target rows (an unsupervised stream; use batch --labeled-per-class or --labeled-fraction)", t.r.name);

	start_stages(&t);
	/* the batches' rows read straight into the encoder's shared memory */
	peer_shm_reader(&t.st[0], &t.r);
	if (t.resume) load_checkpoint(&t);
	t.t_start = t.t_epoch = now_seconds();
	int ready = 0, done = 0;
	long frames = 0, rows = 0, last_epoch = -1;
	for (;;) {
		f = sr_next(&t.r);
		if (!f) {
			t.r.frame++;
			sr_fail(&t.r, "stream ends without an end frame (did batch fail?)");
		}
		const char *type = frame_type(&t.r, f);
		if (strcmp(type, "val") == 0) {
			if (ready) sr_fail(&t.r, "a val frame after the first batch");
			read_val(&t, f);
			continue;
		}
		if (strcmp(type, "end") == 0) { done = 1; break; }
		if (strcmp(type, "header") == 0) sr_fail(&t.r, "a second header frame");
		if (strcmp(type, "batch") != 0 && strcmp(type, "epoch_end") != 0) continue;
		if (!ready) {
			choose_select(&t, user_select);
			ready = 1;
		}
		long e = (long)get_int(&t.r, f, "epoch");
		if (e < last_epoch) sr_fail(&t.r, "epoch %ld after epoch %ld", e, last_epoch);
		last_epoch = e;
		if (type[0] == 'b' && t.pool.n < t.pool_want) {
			Tensor xt;
			get_tensor(&t.r, f, "xt", DT_F32, 2, &xt);
			if (xt.shape[1] != t.F) sr_fail(&t.r, "batch: x has the wrong number of columns (expected %d)", t.F);
			pool_add(&t, &xt);
			tensor_free(&xt);
		}
		if (e < t.start_epoch) continue;  /* finished before the checkpoint */
		if (type[0] == 'b') {
			long s = (long)get_int(&t.r, f, "step");
			frames++;
			train_batch(&t, f, e, s);
			rows++;
		} else if (end_epoch(&t, e)) {
			break;
		}
	}
	(void)rows;
	(void)frames;
	if (!done) {
		/* stopped early or at --epochs-max: read the rest of the stream (without
		 * training) so that a producer that died before its end frame is reported */
		for (;;) {
			f = sr_next(&t.r);
			if (!f) {
				t.r.frame++;
				sr_fail(&t.r, "stream ends without an end frame (did batch fail?)");
			}
			const char *type = frame_type(&t.r, f);
			if (strcmp(type, "end") == 0) break;
			if (strcmp(type, "header") == 0) sr_fail(&t.r, "a second header frame");
		}
		done = 1;
	}
	if (done && sr_next(&t.r)) sr_fail(&t.r, "data after the end frame");
	progress_done();
	if (!ready) choose_select(&t, user_select);
	drain(&t);
	if (!t.have_best) {
		if (t.resume && t.start_epoch >= t.epochs_max)
			die("%s: the checkpoint has finished every epoch and no model to keep", t.resume);
		die("%s: no epoch was completed (no epoch_end frame)", t.r.name);
	}
	const char *why = t.stop_reason == 1 ? "early" : t.stop_reason == 2 && t.epochs_max < t.epochs ? "epochs-max" : "end";
	(void)done;
	write_bundle(&t, why);
	double wait = 0;
	for (int i = 0; i < t.nst; i++) wait += t.st[i].wait_s;
	double total = now_seconds() - t.t_start;
	write_scores(&t);
	info("best epoch %d (selected on %s, score %s%.4f), stopped: %s; %ld steps in %.2f s (%.3f ms/step); model in %s",
	     t.best_epoch, select_name(t.select), isnan(t.best_acc) ? "n/a " : "", isnan(t.best_acc) ? 0.0 : t.best_acc,
	     why, t.gstep, total, t.gstep ? 1000 * t.t_steps / (double)t.gstep : 0.0, t.out);
	(void)wait;
	for (int i = 0; i < t.nst; i++) peer_quit(&t.st[i]);
	peer_report(t.st, t.nst, total);  /* with $DAPIPE_STAGE_STATS: transport overhead per stage */
	for (int i = 0; i < 3; i++) { free(t.cmd[i]); blob_free(&t.best[i]); }
	for (int i = 0; i < 2; i++) { free(t.val[i].x); free(t.val[i].y); }
	free(t.pool.x);
	free(t.cond_buf);
	free(t.csv);
	header_free(&t.h);
	sr_close(&t.r);
	return 0;
}
