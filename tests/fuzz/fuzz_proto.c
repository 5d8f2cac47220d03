/* fuzz_proto.c: train-step's side of the stage protocol (common/proto.c) over
 * arbitrary response bytes.
 *
 * Input: byte 0 chooses the expected shapes (rows 1 to 8, columns 1 to 4) and where
 * the cycle of requests starts; byte 1 is the length L of what the stage wrote on
 * stderr, the next L bytes; the rest is what the stage answered on stdout. A Peer
 * is set up on those bytes as peer_start would leave it (no child process), with as
 * many requests pending as the input may hold answers, and each answer is read with
 * peer_recv and decoded the way train-step decodes the answer to a request of the
 * cycle: init ("out"), forward ("y", a (rows, cols) matrix), loss ("loss", "dz",
 * "pred"), critic ("loss", "gap", "dzt"), save ("params", checked and built through
 * params_read), eval ("correct").
 * Properties: no crash, no sanitizer report, a decode that succeeds leaves no
 * allocation behind (the input itself always ends in a die: the stage's output runs
 * out before the pending requests are answered); every failure
 * (the stage "closed its output", answered garbage or {type: "error"}, a field of
 * the wrong type or shape, params that do not fit) ends in die() with exit status
 * 1; the quoted stderr tail is bounded whatever the stage wrote. */
#include "fuzz.h"
#include "nn.h"
#include "proto.h"
#include "stage.h"
#include "stream.h"

Mlp *__real_mlp_new(const MlpSpec *spec, uint64_t seed);
Mlp *__wrap_mlp_new(const MlpSpec *spec, uint64_t seed)
{
	uint64_t w = 0;
	for (int i = 0, prev = spec->in; i < spec->nlayers; prev = spec->widths[i], i++)
		w += (uint64_t)prev * (uint64_t)spec->widths[i];
	/* params_read checks the weights against the bytes present first: this must not fire */
	if (w > (1u << 22)) abort();
	return __real_mlp_new(spec, seed);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	setenv("DAPIPE_MAX_FRAME", "1048576", 1);
	return 0;
}

/* static, so that the msgpack zones (the reader's, and that of the params blob
 * being built) can be released after a die() */
static Peer p;
static msgpack_unpacked up;
static int up_live;

static void decode(int kind, const msgpack_object *f, int rows, int cols)
{
	Tensor t;
	memset(&t, 0, sizeof t);
	switch (kind) {
	case 0: {  /* init */
		int64_t o = get_int(&p.from, f, "out");
		if (o < 1 || o > (1 << 24)) peer_fail(&p, "init: latent width %lld", (long long)o);
		break;
	}
	case 1:  /* forward */
		get_tensor(&p.from, f, "y", DT_F32, 2, &t);
		if (t.shape[0] != rows || t.shape[1] != cols)
			peer_fail(&p, "y has shape (%lld,%lld), expected (%d,%d)", (long long)t.shape[0],
			          (long long)t.shape[1], rows, cols);
		tensor_free(&t);
		break;
	case 2: {  /* classifier loss */
		double loss = get_num(&p.from, f, "loss");
		if (loss != loss) peer_fail(&p, "loss is NaN");
		get_tensor(&p.from, f, "dz", DT_F32, 2, &t);
		if (t.shape[0] != rows || t.shape[1] != cols) peer_fail(&p, "dz has the wrong shape");
		tensor_free(&t);
		get_tensor(&p.from, f, "pred", DT_I32, 1, &t);
		if (t.shape[0] != rows) peer_fail(&p, "pred has %lld rows, expected %d", (long long)t.shape[0], rows);
		tensor_free(&t);
		break;
	}
	case 3: {  /* critic step */
		get_num(&p.from, f, "loss");
		get_num(&p.from, f, "gap");
		if (obj_get(f, "dzt")) {
			get_tensor(&p.from, f, "dzt", DT_F32, 2, &t);
			if (t.shape[0] != rows || t.shape[1] != cols) peer_fail(&p, "dzt has the wrong shape");
			tensor_free(&t);
		}
		break;
	}
	case 4: {  /* save, then the params built as --resume and the bundle readers do */
		const msgpack_object *pp = obj_get(f, "params");
		if (!pp || pp->type != MSGPACK_OBJECT_MAP || !obj_is_str(obj_get(pp, "type"), "params"))
			peer_fail(&p, "save: no params frame in the answer");
		Blob b;
		blob_from_object(&b, pp);
		const msgpack_object *o = blob_object(&b, &up);
		up_live = 1;
		char *method = NULL;
		Optim opt;
		int has_state = 0;
		memset(&opt, 0, sizeof opt);
		Mlp *m = params_read(&p.from, o, NULL, &method, &opt, &has_state);
		mlp_free(m);
		if (has_state) optim_free(&opt);
		free(method);
		msgpack_unpacked_destroy(&up);
		up_live = 0;
		blob_free(&b);
		break;
	}
	default:  /* eval */
		get_int(&p.from, f, "correct");
		break;
	}
}

static void run(const uint8_t *data, size_t size, int errfd, int outfd)
{
	int rows = 1 + (data[0] & 7), cols = 1 + ((data[0] >> 3) & 3), start = data[0] >> 5;
	memset(&p, 0, sizeof p);
	p.name = xstrdup("encoder");
	p.cmd = xstrdup("fuzz stage");
	p.errfd = errfd;
	p.shm_fd = -1;
	p.to_fd = -1;
	sr_open_fd(&p.from, outfd, "encoder stage");
	/* an answer takes at least 7 bytes ({type:"ok"}); one more request reads the end */
	p.pending = (int)(size / 7) + 1;
	for (int i = 0; p.pending > 0; i++) {
		const msgpack_object *f = peer_recv(&p);
		size_t live = fuzz_tab_live;
		decode((start + i) % 6, f, rows, cols);
		/* a decode that succeeds frees what it took */
		if (fuzz_tab_live != live) {
			fprintf(stdout, "fuzz: decoding answer %d (kind %d) leaked %zu allocations\n", i, (start + i) % 6, fuzz_tab_live - live);
			fflush(stdout);
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2) return 0;
	size_t elen = data[1] < size - 2 ? data[1] : size - 2;
	int errfd = fuzz_fd(data + 2, elen);
	int outfd = fuzz_fd(data + 2 + elen, size - 2 - elen);
	fuzz_begin();
	int died;
	FUZZ_TRY(died, run(data, size, errfd, outfd));
	/* the last peer_recv finds the end of the answers: "closed its output", a die */
	if (!died) abort();
	if (fuzz_exit_code != 1) abort();
	msgpack_unpacked_destroy(&p.from.res);
	if (up_live) msgpack_unpacked_destroy(&up);
	up_live = 0;
	close(errfd);
	close(outfd);
	fuzz_end();
	return 0;
}
