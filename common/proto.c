/* proto.c: see proto.h and docs/STAGES.md. */
#include "proto.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PEERS 8
/* seconds a stage may take to exit after answering quit */
#define QUIT_GRACE_S 10.0
/* tensors smaller than this go through the pipe even when shared memory is on */
#define SHM_MIN_BYTES (64 * 1024)
/* the descriptor number under which a stage finds the shared memory */
#define SHM_CHILD_FD 3
static Peer *peers[MAX_PEERS];
static int npeers;
static Peer *decoding;  /* the peer whose response is being decoded */
static double timeout_s;  /* peer_set_timeout; 0: none */

void peer_set_timeout(double seconds)
{
	timeout_s = seconds > 0 ? seconds : 0;
}

/* The child's stdin as a stdio stream over a non-blocking descriptor: a write that
 * cannot proceed waits in poll() until the peer's deadline, then fails (timed_out). */
static ssize_t pipe_write(void *c, const char *buf, size_t n)
{
	Peer *p = c;
	size_t done = 0;
	while (done < n) {
		ssize_t k = write(p->to_fd, buf + done, n - done);
		if (k > 0) { done += (size_t)k; continue; }
		if (k < 0 && errno == EINTR) continue;
		if (k == 0 || errno != EAGAIN) return (ssize_t)done;
		int ms = -1;
		if (p->deadline > 0) {
			double left = p->deadline - now_seconds();
			if (left <= 0) {
				p->timed_out = 1;
				errno = ETIMEDOUT;
				return (ssize_t)done;
			}
			ms = left > 1e6 ? 1000000000 : (int)(left * 1000) + 1;
		}
		struct pollfd pfd = { .fd = p->to_fd, .events = POLLOUT };
		poll(&pfd, 1, ms);
	}
	return (ssize_t)n;
}

static int pipe_close(void *c)
{
	Peer *p = c;
	int r = close(p->to_fd);
	p->to_fd = -1;
	return r;
}

static void kill_peers(void)
{
	for (int i = 0; i < npeers; i++)
		if (peers[i]->pid > 0) kill(peers[i]->pid, SIGTERM);
	for (int i = 0; i < npeers; i++)
		if (peers[i]->pid > 0) {
			waitpid(peers[i]->pid, NULL, 0);
			peers[i]->pid = 0;
		}
}

static void quote_decoding(void)
{
	if (!decoding) return;
	const char *t = peer_stderr_tail(decoding, 3);
	if (*t) fprintf(stderr, "%s: %s stage stderr ends: %s\n", argv0, decoding->name, t);
	decoding = NULL;
}

static void die_hook(void)
{
	quote_decoding();
	kill_peers();
}

void peer_start(Peer *p, const char *name, const char *cmd)
{
	int in[2], out[2];
	memset(p, 0, sizeof *p);
	p->name = xstrdup(name);
	p->cmd = xstrdup(cmd);
	snprintf(p->label, sizeof p->label, "%s", name);
	p->stage_s = -1;
	for (int i = 0; i < 3; i++) p->stage_phase_s[i] = -1;
	/* shared memory for large tensors, offered at init (DAPIPE_SHM=0: pipes only) */
	const char *shm_env = getenv("DAPIPE_SHM");
	p->shm_fd = shm_env && strcmp(shm_env, "0") == 0 ? -1 : memfd_create("dapipe-stage", MFD_CLOEXEC);
	static int hooked;
	if (!hooked) {
		hooked = 1;
		/* the batch tensors (tens of MiB per step) come from the heap and stay there when
		 * freed, instead of being mapped, faulted in page by page and unmapped each step */
		mallopt(M_MMAP_THRESHOLD, 32 << 20);
		mallopt(M_TRIM_THRESHOLD, 256 << 20);
		/* a dead stage must show as a write error, not kill us silently */
		signal(SIGPIPE, SIG_IGN);
		/* the stages' OpenBLAS threads sleep as soon as a product is done, instead of
		 * spinning (sched_yield) for about 0.1 s: between requests, and while a stage
		 * runs its own loops, a spinning thread holds a core that train-step and the
		 * other stages need (they share the cores). Read by each stage's OpenBLAS when
		 * it starts; a value in the environment is kept. */
		setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
		at_die(die_hook);
	}
	ASSERT(npeers < MAX_PEERS);
	peers[npeers++] = p;
	const char *tmpdir = getenv("TMPDIR");
	char *tmpl = xasprintf("%s/dapipe-stage.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	p->errfd = mkostemp(tmpl, O_CLOEXEC);
	if (p->errfd < 0) die("%s: cannot create:", tmpl);
	unlink(tmpl);
	free(tmpl);
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) die("pipe:");
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) die("fork:");
	if (pid == 0) {
		/* dup2 clears close-on-exec on the new descriptors */
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(p->errfd, 2) < 0) _exit(127);
		if (p->shm_fd >= 0) {
			if (p->shm_fd == SHM_CHILD_FD) { if (fcntl(SHM_CHILD_FD, F_SETFD, 0) < 0) _exit(127); }
			else if (dup2(p->shm_fd, SHM_CHILD_FD) < 0) _exit(127);
		}
		signal(SIGPIPE, SIG_DFL);
		/* its own process group, so that a timeout kills what the shell started too */
		setpgid(0, 0);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	/* larger pipes: fewer wake-ups per tensor (best effort; the default is 64 KiB) */
	fcntl(in[1], F_SETPIPE_SZ, 1 << 20);
	fcntl(out[0], F_SETPIPE_SZ, 1 << 20);
	p->pid = pid;
	p->to_fd = in[1];
	if (fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK) != 0) die("fcntl:");
	p->to = fopencookie(p, "wb", (cookie_io_functions_t){ .write = pipe_write, .close = pipe_close });
	if (!p->to) die("fopencookie:");
	sw_init(&p->w, p->to, name);
	char *rname = xasprintf("%s stage", name);
	sr_open_fd(&p->from, out[0], rname);
	p->from.own_fd = 1;
	free(rname);
}

const char *peer_stderr_tail(Peer *p, int maxlines)
{
	static char out[1024];
	char buf[4096];
	out[0] = 0;
	off_t end = lseek(p->errfd, 0, SEEK_END);
	if (end <= 0) return out;
	off_t start = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
	ssize_t n = pread(p->errfd, buf, (size_t)(end - start), start);
	if (n <= 0) return out;
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
	/* start of the last maxlines lines */
	char *s = buf + n;
	int lines = 0;
	while (s > buf) {
		if (s[-1] == '\n' && ++lines == maxlines) break;
		s--;
	}
	size_t o = 0;
	for (; *s && o + 4 < sizeof out; s++) {
		if (*s == '\n') {
			if (o + 4 >= sizeof out) break;
			memcpy(out + o, " | ", 3);
			o += 3;
		} else if ((unsigned char)*s >= 32 || *s == '\t') {
			out[o++] = *s;
		}
	}
	out[o] = 0;
	return out;
}

/* Why the child is gone (or "closed its output" if it still runs). */
static void child_state(Peer *p, char *buf, size_t n)
{
	int st;
	pid_t r = 0;
	if (p->pid > 0) {
		/* give it a moment to finish exiting after closing its pipe */
		for (int i = 0; i < 50; i++) {
			r = waitpid(p->pid, &st, WNOHANG);
			if (r != 0) break;
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
	if (r == p->pid && p->pid > 0) {
		p->pid = 0;
		if (WIFSIGNALED(st)) snprintf(buf, n, "died (killed by signal %d)", WTERMSIG(st));
		else if (WEXITSTATUS(st) == 127) snprintf(buf, n, "could not be started (exit status 127)");
		else if (WEXITSTATUS(st) > 128 && WEXITSTATUS(st) < 160)
			snprintf(buf, n, "died (exit status %d: killed by signal %d)", WEXITSTATUS(st), WEXITSTATUS(st) - 128);
		else snprintf(buf, n, "died (exit status %d)", WEXITSTATUS(st));
	} else {
		snprintf(buf, n, "closed its output");
	}
}

static _Noreturn void peer_die(Peer *p, const char *what)
{
	if (p->timed_out && p->pid > 0) {
		/* it may ignore SIGTERM: make sure it (and what its shell started) is gone
		 * before the others are reaped */
		kill(-p->pid, SIGKILL);
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
	const char *tail = peer_stderr_tail(p, 3);
	decoding = NULL;
	if (*tail) die("%s stage (%s) %s; its stderr ends: %s", p->name, p->cmd, what, tail);
	die("%s stage (%s) %s (no stderr output)", p->name, p->cmd, what);
}

void peer_fail(Peer *p, const char *fmt, ...)
{
	char msg[512], full[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(full, sizeof full, "answered garbage: %s", msg);
	peer_die(p, full);
}

static double thread_cpu_seconds(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

SWriter *peer_request(Peer *p, const char *type, size_t n)
{
	p->deadline = timeout_s > 0 ? now_seconds() + timeout_s : 0;
	p->t_req = now_seconds();
	p->t_req_cpu = thread_cpu_seconds();
	/* init offers the shared memory: shm_fd names the descriptor the child holds it
	 * under; a stage that maps it answers shm: true, any other ignores the key */
	int offer = p->shm_fd >= 0 && strcmp(type, "init") == 0;
	sw_map(&p->w, n + (offer ? 1 : 0));
	sw_key(&p->w, "type");
	sw_str(&p->w, type);
	if (offer) {
		sw_key(&p->w, "shm_fd");
		sw_int(&p->w, SHM_CHILD_FD);
		p->shm_init = p->requests + 1;
	}
	return &p->w;
}

void peer_send(Peer *p)
{
	p->w.frames++;
	p->requests++;
	if (fflush(p->to) != 0 || ferror(p->to)) {
		char st[128];
		if (p->timed_out) {
			snprintf(st, sizeof st, "did not read request %ld within %g s (killed)", p->requests, timeout_s);
			peer_die(p, st);
		}
		if (errno == EPIPE) {
			child_state(p, st, sizeof st);
			peer_die(p, st);
		}
		snprintf(st, sizeof st, "cannot be written to: %s", strerror(errno));
		peer_die(p, st);
	}
	p->pending++;
	p->send_s += now_seconds() - p->t_req;
	p->send_cpu_s += thread_cpu_seconds() - p->t_req_cpu;
}

/* The shared region is mapped at one address for the peer's life: a reservation of
 * address space (no memory) into which the file is mapped as it grows, so that pointers
 * into it (the stream reader's buffer) stay valid. Where the reservation cannot be had
 * (a small address space), the region is mapped anew as it grows and holds no reader. */
#define SHM_RESERVE ((size_t)64 << 30)

/* the file grown to, and mapped for, at least len bytes; 0 if it cannot (the caller
 * uses the pipe) */
static int shm_map(Peer *p, size_t len)
{
	if (len <= p->shm_len) return 1;
	len = (len + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);
	if (p->shm_res == 0) {
		/* shm_res: 0 not tried yet, 1 no reservation, else its size */
		void *a = mmap(NULL, SHM_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		p->shm_res = 1;
		if (a != MAP_FAILED) {
			if (p->shm) munmap(p->shm, p->shm_len);
			p->shm = a;
			p->shm_len = 0;
			p->shm_res = SHM_RESERVE;
		}
	}
	if (p->shm_res > 1 && len > p->shm_res) return 0;
	if (ftruncate(p->shm_fd, (off_t)len) != 0) return 0;
	if (p->shm_res > 1) {
		/* the same address: what the region held stays where it was */
		void *a = mmap(p->shm, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, p->shm_fd, 0);
		if (a == MAP_FAILED) return 0;
		p->shm_len = len;
		return 1;
	}
	if (p->shm) munmap(p->shm, p->shm_len);
	p->shm = NULL;
	p->shm_len = 0;
	void *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, p->shm_fd, 0);
	if (a == MAP_FAILED) return 0;
	p->shm = a;
	p->shm_len = len;
	return 1;
}

/* the reader's buffer: the first cap bytes of the region (the scratch after it moves) */
static char *reader_grow(void *ctx, size_t cap)
{
	Peer *p = ctx;
	size_t rcap = (cap + 4095) & ~(size_t)4095;
	size_t scratch = p->shm_len > p->shm_rcap ? p->shm_len - p->shm_rcap : 0;
	if (p->shm_res <= 1 || !shm_map(p, rcap + scratch)) return NULL;
	p->shm_rcap = rcap;
	return p->shm;
}

void peer_shm_reader(Peer *p, SReader *r)
{
	if (!p->shm_ok || p->shm_fd < 0 || !shm_map(p, 1) || p->shm_res <= 1) return;
	sr_set_buffer(r, reader_grow, p);
}

/* room for bytes in the scratch part of the region (after the reader's buffer) */
static char *shm_scratch(Peer *p, size_t bytes)
{
	if (!shm_map(p, p->shm_rcap + bytes)) return NULL;
	return p->shm + p->shm_rcap;
}

float *peer_shm_f32(Peer *p, int64_t rows, int64_t cols)
{
	size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
	/* the stage reads the region before it answers, so it is free when nothing is pending */
	if (!p->shm_ok || p->pending != 0 || bytes < SHM_MIN_BYTES) return NULL;
	return (float *)shm_scratch(p, bytes);
}

/* offset of [q, q + n) in the mapped region, -1 if it is not all inside */
static long long in_region(const Peer *p, const void *q, size_t n)
{
	uintptr_t a = (uintptr_t)q, lo = (uintptr_t)p->shm;
	if (!p->shm || a < lo || a - lo > p->shm_len || n > p->shm_len - (a - lo)) return -1;
	return (long long)(a - lo);
}

void peer_tensor_f32(Peer *p, int64_t rows, int64_t cols, int nparts, const float *const *part, const int64_t *part_rows)
{
	SWriter *w = &p->w;
	size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
	int64_t total = 0;
	for (int i = 0; i < nparts; i++) total += part_rows[i];
	ASSERT(total == rows);
	sw_map(w, 3);
	sw_key(w, "dtype"); sw_str(w, "f32");
	sw_key(w, "shape"); sw_array(w, 2); sw_int(w, rows); sw_int(w, cols);
	if (p->shm_ok && bytes >= SHM_MIN_BYTES) {
		/* parts that lie in the region already (read there, or built in place): their
		 * offsets, nothing copied */
		long long off[64];
		int inside = nparts >= 1 && nparts <= 64;
		for (int i = 0; inside && i < nparts; i++) {
			off[i] = in_region(p, part[i], (size_t)part_rows[i] * (size_t)cols * sizeof(float));
			inside = off[i] >= 0;
		}
		if (inside) {
			sw_key(w, "shm");
			sw_map(w, nparts > 1 ? 3 : 2);
			sw_key(w, "offset"); sw_int(w, off[0]);
			sw_key(w, "size"); sw_int(w, (int64_t)p->shm_len);
			if (nparts > 1) {
				sw_key(w, "parts");
				sw_array(w, (size_t)nparts);
				for (int i = 0; i < nparts; i++) {
					sw_array(w, 2);
					sw_int(w, off[i]);
					sw_int(w, part_rows[i]);
				}
			}
			p->shm_bytes += (long)bytes;
			return;
		}
		/* copied in: the stage reads the region before it answers, so the scratch is
		 * free when nothing is pending */
		char *o = p->pending == 0 ? shm_scratch(p, bytes) : NULL;
		if (o) {
			for (int i = 0; i < nparts; i++) {
				size_t b = (size_t)part_rows[i] * (size_t)cols * sizeof(float);
				memcpy(o, part[i], b);
				o += b;
			}
			sw_key(w, "shm");
			sw_map(w, 2);
			sw_key(w, "offset"); sw_int(w, (int64_t)p->shm_rcap);
			sw_key(w, "size"); sw_int(w, (int64_t)p->shm_len);
			p->shm_bytes += (long)bytes;
			p->shm_copied += (long)bytes;
			return;
		}
	}
	sw_key(w, "data");
	ASSERT(bytes <= UINT32_MAX);
	msgpack_pack_bin(&w->pk, bytes);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "peer_tensor_f32 writes host-order floats: add a byte swap for big-endian hosts"
#endif
	for (int i = 0; i < nparts; i++)
		msgpack_pack_bin_body(&w->pk, part[i], (size_t)part_rows[i] * (size_t)cols * sizeof(float));
	p->pipe_bytes += (long)bytes;
}

void peer_report(Peer *p, int n, double total_s)
{
	if (!getenv("DAPIPE_STAGE_STATS")) return;
	for (int i = 0; i < n; i++) {
		Peer *q = &p[i];
		double tr = q->send_s + (q->stage_s >= 0 ? q->stage_decode_s : 0);
		char ph[128] = "";
		/* the passes of a stage served by stage_serve's own forward/backward (the heads'
		 * loss requests run theirs in their own handlers) */
		if (q->stage_s >= 0 && q->stage_phase_s[0] >= 0 && q->stage_phase_s[1] >= 0 && q->stage_phase_s[2] >= 0 &&
		    q->stage_phase_s[0] + q->stage_phase_s[1] > 0)
			snprintf(ph, sizeof ph, " (forward %.3f s, backward %.3f s, optimiser %.3f s)", q->stage_phase_s[0],
			         q->stage_phase_s[1], q->stage_phase_s[2]);
		fprintf(stderr, "%s: stage %s: %ld requests; sending %.3f s (on the CPU %.3f s), waiting %.3f s; stage compute %s%.3f s%s, "
		        "decoding %.3f s; transport %.3f s = %.2f%% of %.3f s; %s (tensor MiB: shm %.1f, pipe %.1f; copied in %.1f)\n",
		        argv0, q->label, q->requests, q->send_s, q->send_cpu_s, q->wait_s, q->stage_s >= 0 ? "" : "(not reported) ",
		        q->stage_s >= 0 ? q->stage_s : 0.0, ph, q->stage_s >= 0 ? q->stage_decode_s : 0.0, tr,
		        total_s > 0 ? 100 * tr / total_s : 0.0, total_s, q->shm_ok ? "shared memory" : "pipes",
		        q->shm_bytes / 1048576.0, q->pipe_bytes / 1048576.0, q->shm_copied / 1048576.0);
	}
}

const msgpack_object *peer_recv(Peer *p)
{
	const msgpack_object *f;
	const char *why;
	char st[160];
	ASSERT(p->pending > 0);
	double t0 = now_seconds();
	p->from.deadline = timeout_s > 0 ? t0 + timeout_s : 0;
	int k = sr_try_next(&p->from, &f, &why);
	p->from.deadline = 0;
	p->wait_s += now_seconds() - t0;
	p->pending--;
	p->responses++;
	if (k == 0) {
		child_state(p, st, sizeof st);
		peer_die(p, st);
	}
	if (k == -2) {
		p->timed_out = 1;
		snprintf(st, sizeof st, "did not answer request %ld within %g s (killed)", p->responses, timeout_s);
		peer_die(p, st);
	}
	if (k < 0) {
		snprintf(st, sizeof st, "answered garbage (response %ld: %s)", p->from.frame, why);
		peer_die(p, st);
	}
	const msgpack_object *t = obj_get(f, "type");
	if (obj_is_str(t, "error")) {
		const msgpack_object *m = obj_get(f, "message");
		char msg[400] = "(no message)";
		if (m && m->type == MSGPACK_OBJECT_STR) {
			size_t n = m->via.str.size < sizeof msg - 1 ? m->via.str.size : sizeof msg - 1;
			memcpy(msg, m->via.str.ptr, n);
			msg[n] = 0;
		}
		decoding = NULL;
		die("%s stage (%s) reported an error: %s", p->name, p->cmd, msg);
	}
	if (!obj_is_str(t, "ok")) {
		snprintf(st, sizeof st, "answered garbage (response %ld is not {type: \"ok\"} or {type: \"error\"})", p->from.frame);
		peer_die(p, st);
	}
	if (p->responses == p->shm_init) {
		const msgpack_object *o = obj_get(f, "shm");
		p->shm_ok = o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
	}
	decoding = p;
	return f;
}

void peer_quit(Peer *p)
{
	char st[160];
	while (p->pending) peer_recv(p);
	/* stats: a stage that keeps them answers compute_s (others ignore the key) */
	SWriter *w = peer_request(p, "quit", 2);
	sw_key(w, "stats"); sw_bool(w, 1);
	peer_send(p);
	const msgpack_object *f = peer_recv(p);
	const msgpack_object *cs = obj_get(f, "compute_s");
	const msgpack_object *ds = obj_get(f, "decode_s");
	if (cs && (cs->type == MSGPACK_OBJECT_FLOAT64 || cs->type == MSGPACK_OBJECT_FLOAT32)) p->stage_s = cs->via.f64;
	if (ds && (ds->type == MSGPACK_OBJECT_FLOAT64 || ds->type == MSGPACK_OBJECT_FLOAT32)) p->stage_decode_s = ds->via.f64;
	static const char *phase[3] = { "forward_s", "backward_s", "optimizer_s" };
	for (int i = 0; i < 3; i++) {
		const msgpack_object *o = obj_get(f, phase[i]);
		p->stage_phase_s[i] = o && (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32) ? o->via.f64 : -1;
	}
	decoding = NULL;
	fclose(p->to);
	p->to = NULL;
	sr_close(&p->from);
	int status;
	/* it answered quit: it should be gone at once. One that lingers (a shell that runs
	 * something after the stage, a stage that hangs in its exit) is given QUIT_GRACE_S
	 * (or the stage timeout, if shorter), then killed with what its shell started;
	 * its work is done, so that is a warning, not an error. */
	double grace = timeout_s > 0 && timeout_s < QUIT_GRACE_S ? timeout_s : QUIT_GRACE_S;
	double t_end = now_seconds() + grace;
	pid_t wp = 0;
	while (p->pid > 0 && ((wp = waitpid(p->pid, &status, WNOHANG)) == 0 || (wp < 0 && errno == EINTR)) &&
	       now_seconds() < t_end) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (p->pid > 0 && wp == 0) {
		warnx("%s stage (%s) did not exit within %g s of answering quit; killed", p->name, p->cmd, grace);
		kill(-p->pid, SIGKILL);
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
	if (p->pid > 0 && wp == p->pid) {
		p->pid = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			if (WIFSIGNALED(status)) snprintf(st, sizeof st, "died at quit (killed by signal %d)", WTERMSIG(status));
			else snprintf(st, sizeof st, "exited with status %d at quit", WEXITSTATUS(status));
			peer_die(p, st);
		}
	}
	p->pid = 0;
	close(p->errfd);
	p->errfd = -1;
	if (p->shm) munmap(p->shm, p->shm_res > 1 ? p->shm_res : p->shm_len);
	if (p->shm_fd >= 0) close(p->shm_fd);
	p->shm = NULL;
	p->shm_len = 0;
	p->shm_rcap = 0;
	p->shm_res = 0;
	p->shm_fd = -1;
	for (int i = 0; i < npeers; i++)
		if (peers[i] == p) {
			peers[i] = peers[--npeers];
			break;
		}
	free(p->name);
	free(p->cmd);
	p->name = p->cmd = NULL;
}

/* ---- commands for /bin/sh -c ---- */

char *shell_quote(const char *s)
{
	size_t n = 3;
	for (const char *c = s; *c; c++) n += *c == '\'' ? 4 : 1;
	char *q = xmalloc(n), *o = q;
	*o++ = '\'';
	for (const char *c = s; *c; c++) {
		if (*c == '\'') { memcpy(o, "'\\''", 4); o += 4; } else *o++ = *c;
	}
	*o++ = '\'';
	*o = 0;
	return q;
}

char *sibling_command(const char *name)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) die("/proc/self/exe: cannot read:");
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (slash) *slash = 0;
	char *path = xasprintf("%s/%s", self, name);
	char *q = shell_quote(path);
	free(path);
	return q;
}
