/* proto.h: the stage request/response protocol (docs/STAGES.md) and the child
 * process plumbing that train-step uses to drive the stages.
 *
 * A stage is a child process started with /bin/sh -c CMD. train-step writes request
 * frames (msgpack maps, the stream format) to its stdin and reads one response frame
 * per request from its stdout: {type:"ok", ...} or {type:"error", message}. The
 * child's stderr goes to an unlinked temporary file, so that when a stage dies or
 * answers garbage the error names the stage and quotes the end of its stderr.
 * Every started child is killed and reaped when the parent dies (at_die). */
#ifndef DAPIPE_PROTO_H
#define DAPIPE_PROTO_H

#include <sys/types.h>
#include "stream.h"

typedef struct {
	char *name;        /* "encoder", "classifier", "discriminator" */
	char *cmd;         /* the shell command */
	pid_t pid;         /* 0 once reaped */
	FILE *to;          /* the child's stdin */
	SWriter w;         /* packs requests onto to */
	SReader from;      /* the child's stdout */
	int errfd;         /* unlinked temporary file holding the child's stderr */
	int pending;       /* requests sent whose response is not read yet */
	long requests;     /* requests sent so far */
	double wait_s;     /* seconds spent waiting for responses */
	/* shared memory for large tensors (docs/STAGES.md, "Shared memory") */
	int shm_fd;        /* memfd given to the child as descriptor 3, -1 if none */
	int shm_ok;        /* the stage accepted it in its init answer */
	char *shm;         /* mapping of shm_len bytes (grown on demand) */
	size_t shm_len;
	long shm_init;     /* number of the init request whose answer says shm, 0 if none */
	long responses;    /* answers read so far */
	/* timing (DAPIPE_STAGE_STATS) */
	double t_req;      /* when the request being packed was begun */
	double t_req_cpu;  /* this thread's CPU time then */
	double send_s;     /* seconds spent packing and writing requests */
	char label[32];    /* the name, kept after peer_quit for peer_report */
	double stage_s;    /* compute seconds the stage reported at quit, -1 if it did not */
	double stage_decode_s;  /* seconds the stage reported decoding request tensors */
	double stage_phase_s[3]; /* of its compute: forward, backward, optimiser passes; -1: not reported */
	long shm_bytes, pipe_bytes;  /* tensor bytes sent through each transport */
	double send_cpu_s;  /* the part of send_s this process spent on the CPU */
	long shm_copied;    /* tensor bytes copied into the region (the rest lay there already) */
	/* the region as [reader's buffer (peer_shm_reader) | scratch], mapped at a fixed
	 * address inside a reservation of shm_res bytes (0: plain mapping) */
	size_t shm_rcap;   /* bytes of the region that are the reader's buffer (0: none) */
	size_t shm_res;
	/* response timeout (peer_set_timeout) */
	int to_fd;         /* the write end of the child's stdin (non-blocking) */
	double deadline;   /* now_seconds() by which the pending request must be sent and answered; 0: none */
	int timed_out;     /* a write waited past the deadline */
} Peer;

/* Seconds a stage may take to read a request and answer it (0: no limit, the
 * default). A stage that takes longer is killed and the caller dies naming it. */
void peer_set_timeout(double seconds);
/* Start CMD through /bin/sh -c with pipes on stdin/stdout and stderr captured. */
void peer_start(Peer *p, const char *name, const char *cmd);
/* Begin a request map of n entries whose first entry is type: the caller packs
 * the remaining n-1 key/value pairs through p->w, then calls peer_send. */
SWriter *peer_request(Peer *p, const char *type, size_t n);
void peer_send(Peer *p);
/* The next response; dies if the stage died, closed its output, answered
 * something that is not a frame, or answered {type:"error"} (its message is quoted).
 * Valid until the next peer_recv on this peer. Field errors inside the response
 * (decoded through stream.h's getters) name the stage and quote its stderr too. */
const msgpack_object *peer_recv(Peer *p);
/* A response whose fields are wrong (e.g. a tensor of the wrong shape). */
_Noreturn void peer_fail(Peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Pack a 2-D f32 tensor (rows, cols), given as nparts consecutive row blocks
 * (part[i] holds part_rows[i] rows), as the value of the key just packed: through the
 * peer's shared memory when the stage accepted it at init and the tensor is large:
 * parts that lie in the region already (peer_shm_reader, peer_shm_f32) by their
 * offsets, others copied in when no answer is pending (the stage reads them before it
 * answers); else as msgpack bin data. */
void peer_tensor_f32(Peer *p, int64_t rows, int64_t cols, int nparts, const float *const *part, const int64_t *part_rows);
/* Read the stream r into the peer's shared region (after the init answer accepted it;
 * otherwise nothing changes): the frames' tensors then lie where the stage can read
 * them, and peer_tensor_f32 of parts that point into the last frame sends their
 * offsets instead of copying them. Such a request's answer must be read before the
 * next frame of r. */
void peer_shm_reader(Peer *p, SReader *r);
/* Room for a (rows, cols) f32 tensor in the peer's shared memory, where the caller can
 * build the next request's tensor in place (peer_tensor_f32 of exactly this pointer,
 * as one part, then copies nothing); NULL when shared memory cannot take it now (not
 * accepted, too small a tensor, or an answer pending): build it elsewhere. */
float *peer_shm_f32(Peer *p, int64_t rows, int64_t cols);
/* With $DAPIPE_STAGE_STATS set, one line on stderr per stage (after peer_quit):
 * requests, seconds packing/sending and waiting, the compute and decoding seconds
 * the stage reported, and the transport time (packing and sending the requests plus
 * the stage's decoding of them) as a share of total_s. */
void peer_report(Peer *p, int n, double total_s);
/* Send quit, read the answer, close the pipes, wait for a zero exit status. */
void peer_quit(Peer *p);
/* The last lines of the stage's stderr, joined with " | " (static buffer). */
const char *peer_stderr_tail(Peer *p, int maxlines);

/* s quoted for /bin/sh -c (newly allocated) */
char *shell_quote(const char *s);
/* the quoted path of the executable NAME in this program's own folder */
char *sibling_command(const char *name);

#endif
