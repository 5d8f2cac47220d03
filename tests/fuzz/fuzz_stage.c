/* fuzz_stage.c: the stage side of the training protocol (common/stage.c) over
 * arbitrary request bytes.
 *
 * The first two bytes pick the stage: role (encoder, classifier, discriminator; the
 * heads' own loss requests live in their filters and answer "unknown request"
 * here), hidden widths 1 to 4, activation, normalisation and dropout. The rest is
 * the request stream that stage_serve() reads on stdin (init, forward, backward,
 * step, save, load with params frames, quit, anything else); its answers go to
 * memory.
 * Properties: no crash or sanitizer report; a malformed request ends in die() with
 * exit status 1; a stream that ends (or says quit) ends in exit(0) with nothing
 * leaked; everything written is a sequence of whole frames {type: "ok"|"error"}
 * (an error with a message string) that train-step's reader accepts (at the default
 * frame limit: the 1 MiB DAPIPE_MAX_FRAME set here bounds the requests, not the answers).
 * Models: init takes "in" up to 2^24 from the request; __wrap_mlp_new refuses
 * architectures above 2^22 weights with die() (the path a failed allocation
 * takes), so that a run is not spent initialising gigabytes. Linked with
 * -Wl,--wrap=mlp_new (tests/fuzz/fuzz_stage.ldflags). */
#include "fuzz.h"
#include "nn.h"
#include "stage.h"
#include "stream.h"

#include <sys/mman.h>

Mlp *__real_mlp_new(const MlpSpec *spec, uint64_t seed);
Mlp *__wrap_mlp_new(const MlpSpec *spec, uint64_t seed)
{
	uint64_t w = 0;
	for (int i = 0, prev = spec->in; i < spec->nlayers; prev = spec->widths[i], i++)
		w += (uint64_t)prev * (uint64_t)spec->widths[i];
	if (w > (1u << 22)) die("fuzz: an architecture of %llu weights", (unsigned long long)w);
	return __real_mlp_new(spec, seed);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	setenv("DAPIPE_MAX_FRAME", "1048576", 1);
	return 0;
}

/* static, so that the reader's msgpack zone (allocated inside libmsgpackc, not
 * recorded by fuzz.h) and a shared-memory mapping can be released after a die() */
static Stage st;

/* b0: bits 0-1 role (3: encoder), bit 2 two hidden layers, bits 3-4 first width - 1,
 * bit 5 dropout 0.5, bit 6 wgan-gp; b1: activation (b1 % 3), normalisation (b1 / 3 % 3) */
static void stage_setup(uint8_t b0, uint8_t b1)
{
	static const char *roles[3] = { "encoder", "classifier", "discriminator" };
	memset(&st, 0, sizeof st);
	int role = (b0 & 3) % 3;
	st.role = roles[role];
	st.method = role == 2 ? ((b0 >> 6) & 1 ? "wgan-gp" : "dann") : NULL;
	st.arch.nhidden = 1 + ((b0 >> 2) & 1);
	st.arch.hidden[0] = 1 + ((b0 >> 3) & 3);
	st.arch.hidden[1] = 2;
	st.arch.act = (Act)(b1 % ACT_COUNT);
	st.arch.slope = 0.2f;
	st.arch.norm = (Norm)(b1 / ACT_COUNT % NORM_COUNT);
	st.arch.dropout = (b0 >> 5) & 1 ? 0.5f : 0;
	st.arch.head = role > 0;
	st.arch.fixed_out = role == 2 ? 1 : 0;
	st.shm_fd = -1;
}

/* every answer a frame {type: ok|error}; returns the count */
static long check_answers(const char *buf, size_t len)
{
	int fd = fuzz_fd((const uint8_t *)buf, len);
	SReader r;
	sr_open_fd(&r, fd, "answers");
	r.own_fd = 1;
	/* DAPIPE_MAX_FRAME (1 MiB here) bounds the requests; an answer may be larger (the
	 * params of a model the request built): check it against the default limit */
	r.max_frame = (size_t)2 << 30;
	const msgpack_object *f;
	const char *why;
	long n = 0;
	int k;
	while ((k = sr_try_next(&r, &f, &why)) > 0) {
		const msgpack_object *t = obj_get(f, "type");
		if (!obj_is_str(t, "ok") && !obj_is_str(t, "error")) abort();
		if (obj_is_str(t, "error")) {
			const msgpack_object *m = obj_get(f, "message");
			if (!m || m->type != MSGPACK_OBJECT_STR) abort();
		}
		n++;
	}
	if (k < 0) {  /* the stage wrote something that is not a frame */
		dprintf(2, "fuzz_stage: answer %ld is not a frame: %s\n", n + 1, why);
		abort();
	}
	sr_close(&r);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2) return 0;
	int fd = fuzz_fd(data + 2, size - 2);
	int saved0 = dup(0);
	if (saved0 < 0 || dup2(fd, 0) < 0) abort();
	close(fd);
	char *out = NULL;
	size_t outlen = 0;
	FILE *saved_stdout = stdout;
	stdout = open_memstream(&out, &outlen);
	if (!stdout) abort();

	fuzz_begin();
	stage_setup(data[0], data[1]);
	int died;
	FUZZ_TRY(died, stage_serve(&st));
	/* stage_serve never returns: it ends in exit(0) (served to the end or quit) or a die() */
	if (!died) abort();
	int clean = fuzz_exit_code == 0;
	if (!clean && fuzz_exit_code != 1) abort();
	if (clean) {
		fuzz_died--;  /* exit(0) is stage_serve's normal end: leak checking applies */
	} else {
		msgpack_unpacked_destroy(&st.in.res);
		if (st.shm) munmap((void *)st.shm, st.shm_len);
	}
	fclose(stdout);
	stdout = saved_stdout;
	if (dup2(saved0, 0) < 0) abort();
	close(saved0);
	fuzz_end();
	/* answers are checked outside the tracked region (the reader allocates) */
	if (outlen) check_answers(out, outlen);
	free(out);
	return 0;
}
