/* proto.c: see proto.h and docs/STAGES.md. */
#include "proto.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PEERS 8
static Peer *peers[MAX_PEERS];
static int npeers;
static Peer *decoding;  /* the peer whose response is being decoded */

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
	static int hooked;
	if (!hooked) {
		hooked = 1;
		/* a dead stage must show as a write error, not kill us silently */
		signal(SIGPIPE, SIG_IGN);
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
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->pid = pid;
	p->to = fdopen(in[1], "wb");
	if (!p->to) die("fdopen:");
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

SWriter *peer_request(Peer *p, const char *type, size_t n)
{
	sw_map(&p->w, n);
	sw_key(&p->w, "type");
	sw_str(&p->w, type);
	return &p->w;
}

void peer_send(Peer *p)
{
	p->w.frames++;
	p->requests++;
	if (fflush(p->to) != 0 || ferror(p->to)) {
		char st[128];
		if (errno == EPIPE) {
			child_state(p, st, sizeof st);
			peer_die(p, st);
		}
		snprintf(st, sizeof st, "cannot be written to: %s", strerror(errno));
		peer_die(p, st);
	}
	p->pending++;
}

const msgpack_object *peer_recv(Peer *p)
{
	const msgpack_object *f;
	const char *why;
	char st[160];
	ASSERT(p->pending > 0);
	double t0 = now_seconds();
	int k = sr_try_next(&p->from, &f, &why);
	p->wait_s += now_seconds() - t0;
	p->pending--;
	if (k == 0) {
		child_state(p, st, sizeof st);
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
	decoding = p;
	return f;
}

void peer_quit(Peer *p)
{
	char st[160];
	while (p->pending) peer_recv(p);
	peer_request(p, "quit", 1);
	peer_send(p);
	peer_recv(p);
	decoding = NULL;
	fclose(p->to);
	p->to = NULL;
	sr_close(&p->from);
	int status;
	if (p->pid > 0 && waitpid(p->pid, &status, 0) == p->pid) {
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
	for (int i = 0; i < npeers; i++)
		if (peers[i] == p) {
			peers[i] = peers[--npeers];
			break;
		}
	free(p->name);
	free(p->cmd);
	p->name = p->cmd = NULL;
}
