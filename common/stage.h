/* stage.h: shared scaffolding for the training stages (encode, predict and
 * discriminate with --stage) and for their inference mode (--model).
 *
 * A stage serves the request/response protocol of docs/STAGES.md on stdin/stdout:
 * stage_serve() answers the requests every stage knows (init, forward, backward,
 * step, save, load, quit) and passes the others to the stage's own handler (the
 * heads' loss-bearing requests). A stage owns one Mlp and its optimiser.
 *
 * Parameters travel as a params frame:
 *   {type:"params", stage, arch:{in, widths, head, act, norm, dropout, slope, [method]},
 *    tensors:{name: tensor, ...}, [state:{optimizer:{...}, rng: i64 (4)}]}
 * (state only in checkpoints). A model bundle is a stream: header kind "model",
 * one params frame per stage, end. */
#ifndef DAPIPE_STAGE_H
#define DAPIPE_STAGE_H

#include "nn.h"
#include "stream.h"

/* architecture options of a stage command line */
typedef struct {
	int nhidden;
	int hidden[MLP_MAXLAYERS];
	Act act;
	float slope;
	Norm norm;
	float dropout;
	int head;        /* 1: a final Linear (logits / score) after the hidden blocks */
	int fixed_out;   /* head width fixed by the stage (1 for the domain head); 0: from init */
} StageArch;

Act parse_act(const char *opt, const char *s);    /* usage error if unknown */
Norm parse_norm(const char *opt, const char *s);
/* "--layers" value into arch */
void parse_layers(StageArch *a, const char *opt, const char *s);
/* the spec of arch for input width in and head width out */
MlpSpec stage_spec(const StageArch *a, int in, int out);

typedef struct Stage Stage;
struct Stage {
	const char *role;          /* "encoder" | "classifier" | "discriminator" */
	const char *method;        /* discriminator: "dann" | "wgan-gp"; else NULL */
	StageArch arch;
	Mlp *m;                    /* NULL before init */
	Optim opt;
	int last_b;                /* rows of the last forward (either mode), 0 if none */
	SReader in;
	SWriter out;
	/* shared memory offered by train-step at init (docs/STAGES.md) */
	int shm_on, shm_fd;
	const char *shm;           /* read-only mapping of shm_len bytes */
	size_t shm_len;
	/* seconds in request handlers, and the part of it spent decoding tensors */
	double busy_s, decode_s;
	/* of busy_s: the network's forward and backward passes and the optimiser steps
	 * (forward/backward/step requests, and backward's lr) */
	double fwd_s, bwd_s, opt_s;
	/* 1: the products run on the thread pool (blas_pool) even when every layer is
	 * small: the domain head, which works while the encoder and train-step wait */
	int pool;
	/* the role's own requests; returns 0 for a request it does not know */
	int (*handle)(Stage *s, const char *type, const msgpack_object *req);
};
/* Serve requests on stdin until quit or end of input, then exit(0). */
_Noreturn void stage_serve(Stage *s);
/* Responses: stage_ok(s, n) begins {type:"ok"} with n more key/value pairs to pack
 * through s->out; stage_error answers {type:"error", message}. */
void stage_ok(Stage *s, size_t n);
void stage_error(Stage *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* a request's boolean field (default def) */
int req_bool(const SReader *r, const msgpack_object *req, const char *key, int def);
/* A 2-D f32 tensor field with cols columns (dies naming the field otherwise);
 * returns rows, data in *t (copied, also from shared memory). */
int req_matrix(Stage *s, const msgpack_object *req, const char *key, int cols, Tensor *t);
/* The same without a copy when the tensor lies in shared memory: returns rows and
 * sets *data to the values (in the region, valid until the answer is sent, or in
 * *t, which the caller frees with tensor_free either way). */
int req_matrix_view(Stage *s, const msgpack_object *req, const char *key, int cols, const float **data, Tensor *t);
/* A 2-D f32 tensor field as row blocks, without a copy where it can be: a tensor in
 * shared memory may come as several blocks of rows ({shm: {..., parts: [[offset,
 * rows], ...]}}, docs/STAGES.md); one block otherwise. The blocks may be unaligned:
 * read them with memcpy. Returns the rows; free *t with tensor_free either way. */
#define STAGE_MAXPARTS 64
typedef struct {
	int n;
	const float *data[STAGE_MAXPARTS];
	int rows[STAGE_MAXPARTS];
} RowParts;
int req_matrix_parts(Stage *s, const msgpack_object *req, const char *key, int cols, RowParts *rp, Tensor *t);
/* mlp_forward of the rows given as blocks (defined in mlp.c beside mlp_forward; the
 * blocks are copied once, into the cache backward reads) */
const float *mlp_forward_parts(Mlp *m, int nparts, const float *const *part, const int *rows, int train);
/* optimiser step with lr, then zero the gradients */
void stage_step(Stage *s, double lr);

/* params frames */
/* The optimiser: set up from an init request's "optimizer" map (defaults otherwise),
 * and its state (kind, step, moments) written into / read from a params frame's
 * "state" map as the key "optimizer". */
void optim_from_request(const SReader *r, const msgpack_object *req, Optim *opt, size_t nparams);
void optim_state_write(SWriter *w, const Optim *opt);
void optim_state_read(const SReader *r, const msgpack_object *state, Optim *opt, size_t nparams);
void params_write(SWriter *w, const char *role, const char *method, Mlp *m, const Optim *opt);
/* Build the Mlp of a params map (checking arch and every tensor); if opt is
 * non-NULL and the frame has a state, restore the optimiser and rng into *opt and
 * the Mlp (*has_state = 1). *method gets arch.method or NULL (caller frees). */
Mlp *params_read(const SReader *r, const msgpack_object *p, const char *role, char **method, Optim *opt, int *has_state);

/* model bundles (inference) */
typedef struct {
	Header h;
	int n;
	char **stage;
	Blob *params;
	long *frame;     /* frame number of each params frame, for messages */
	char *path;
} Bundle;
/* Reads the whole bundle: header kind "model", params frames, end; dies on
 * anything truncated or malformed with "PATH: frame N: reason". */
void bundle_read(Bundle *b, const char *path);
/* The Mlp of stage (dies if the bundle lacks it); *method as params_read. */
Mlp *bundle_mlp(const Bundle *b, const char *stage, char **method);
void bundle_free(Bundle *b);

#endif
