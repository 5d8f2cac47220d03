/* util.c: see util.h. */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

const char *argv0 = "dapipe";
int progress_on = 0;
int quiet = 0;
static int progress_tty;

static void (*die_hooks[16])(void);
static int ndie_hooks;

#define MAX_TMP 16
static char *pending_tmp[MAX_TMP];

static int dying; /* die() has reported; the exit path stays quiet */

static void close_stdout(void)
{
	/* One exit path: a write error on stdout is an error, not silence. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		int e = errno;
		if (!dying)
			fprintf(stderr, "%s: write error: %s\n", argv0, strerror(e ? e : EIO));
		for (int i = 0; i < MAX_TMP; i++)
			if (pending_tmp[i]) unlink(pending_tmp[i]);
		_exit(1);
	}
	if (fclose(stdout) != 0 && errno != EBADF && !dying) {
		fprintf(stderr, "%s: write error: %s\n", argv0, strerror(errno));
		_exit(1);
	}
}

void util_init(const char *prog)
{
	const char *s = strrchr(prog, '/');
	argv0 = s ? s + 1 : prog;
	atexit(close_stdout);
}

void at_die(void (*fn)(void))
{
	ASSERT(ndie_hooks < 16);
	die_hooks[ndie_hooks++] = fn;
}

static void vmsg(const char *fmt, va_list ap)
{
	int e = errno;
	fprintf(stderr, "%s: ", argv0);
	vfprintf(stderr, fmt, ap);
	size_t n = strlen(fmt);
	if (n && fmt[n - 1] == ':')
		fprintf(stderr, " %s", strerror(e));
	fputc('\n', stderr);
}

static void run_die_hooks(void)
{
	static int running;
	if (running) return;
	running = 1;
	for (int i = 0; i < ndie_hooks; i++) die_hooks[i]();
	for (int i = 0; i < MAX_TMP; i++)
		if (pending_tmp[i]) unlink(pending_tmp[i]);
}

void die(const char *fmt, ...)
{
	va_list ap;
	progress_done();
	dying = 1;
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	run_die_hooks();
	exit(1);
}

void usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try '%s --help' for more information.\n", argv0);
	run_die_hooks();
	exit(2);
}

void warnx(const char *fmt, ...)
{
	va_list ap;
	progress_done();
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
}

void info(const char *fmt, ...)
{
	if (quiet) return;
	va_list ap;
	progress_done();
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
}

void assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "%s: internal error: %s:%d: assertion '%s' failed\n", argv0, file, line, expr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) die("out of memory allocating %zu bytes", n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p) die("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) die("out of memory allocating %zu bytes", n);
	return p;
}

void *xmallocarray(size_t n, size_t size)
{
	size_t t;
	if (__builtin_mul_overflow(n, size, &t)) die("allocation of %zu x %zu bytes overflows", n, size);
	return xmalloc(t);
}

char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);
	memcpy(p, s, n);
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) die("out of memory");
	va_end(ap);
	return s;
}

long parse_long(const char *opt, const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno == ERANGE)
		usage_error("%s: %s: not an integer", opt, s);
	if (v < min) usage_error("%s: %s: must be at least %ld", opt, s, min);
	if (v > max) usage_error("%s: %s: must be at most %ld", opt, s, max);
	return v;
}

double parse_double(const char *opt, const char *s, double min, double max)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno == ERANGE || !isfinite(v))
		usage_error("%s: %s: not a number", opt, s);
	if (v < min) usage_error("%s: %s: must be at least %g", opt, s, min);
	if (v > max) usage_error("%s: %s: must be at most %g", opt, s, max);
	return v;
}

int parse_int_list(const char *opt, const char *s, int *out, int max, long min, long maxv)
{
	int n = 0;
	if (!*s) return 0;
	char *copy = xstrdup(s), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == max) usage_error("%s: %s: at most %d values", opt, s, max);
		out[n++] = (int)parse_long(opt, tok, min, maxv);
	}
	free(copy);
	return n;
}

FILE *atomic_open(AtomicFile *af, const char *path)
{
	struct stat st;
	af->path = xstrdup(path);
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		/* a device or a pipe (/dev/stdout, a fifo): write through, nothing to rename */
		af->tmp = NULL;
		af->fp = fopen(path, "wb");
		if (!af->fp) die("%s: cannot open:", path);
		return af->fp;
	}
	af->tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	af->fp = fopen(af->tmp, "wb");
	if (!af->fp) die("%s: cannot create:", af->tmp);
	for (int i = 0; i < MAX_TMP; i++)
		if (!pending_tmp[i]) { pending_tmp[i] = af->tmp; break; }
	return af->fp;
}

static void forget_tmp(AtomicFile *af)
{
	for (int i = 0; i < MAX_TMP; i++)
		if (pending_tmp[i] == af->tmp) pending_tmp[i] = NULL;
}

void atomic_commit(AtomicFile *af)
{
	if (fflush(af->fp) != 0 || ferror(af->fp) || (af->tmp && fsync(fileno(af->fp)) != 0)) {
		int e = errno;
		fclose(af->fp);
		errno = e;
		die("%s: write error:", af->path);
	}
	if (fclose(af->fp) != 0) die("%s: write error:", af->path);
	af->fp = NULL;
	if (!af->tmp) { free(af->path); af->path = NULL; return; }
	if (rename(af->tmp, af->path) != 0) die("%s: cannot rename into place:", af->path);
	forget_tmp(af);
	free(af->tmp);
	free(af->path);
	af->tmp = af->path = NULL;
}

void atomic_abort(AtomicFile *af)
{
	if (af->fp) fclose(af->fp);
	af->fp = NULL;
	if (af->tmp) unlink(af->tmp);
	forget_tmp(af);
	free(af->tmp);
	free(af->path);
	af->tmp = af->path = NULL;
}

void progress_setup(int force, int quiet_flag)
{
	quiet = quiet_flag;
	progress_tty = isatty(2);
	progress_on = !quiet_flag && (force || progress_tty);
}

static int progress_dirty;

/* Rate-limited: a terminal gets an updating line at most 5 times a second, a file or
 * pipe (--progress) a plain line at most every 2 seconds. */
void progress(const char *fmt, ...)
{
	static double last;
	if (!progress_on) return;
	double t = now_seconds();
	if (t - last < (progress_tty ? 0.2 : 2.0)) return;
	last = t;
	va_list ap;
	fprintf(stderr, progress_tty ? "\r%s: " : "%s: ", argv0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (progress_tty) {
		fputs("\033[K", stderr);
		progress_dirty = 1;
	} else {
		fputc('\n', stderr);
	}
}

void progress_done(void)
{
	if (progress_dirty) fputc('\n', stderr);
	progress_dirty = 0;
}

double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int str_endswith(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

int str_ieq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}
