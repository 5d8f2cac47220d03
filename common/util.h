/* util.h: errors, checked allocation, command-line numbers, atomic files, progress.
 *
 * Messages are "prog: message"; a format ending in ':' appends strerror(errno).
 * die() exits 1 (data or runtime error), usage() exits 2 (usage error). Every exit
 * flushes and checks stdout (util_init registers that), so a full disk is reported.
 * Files that matter are written through atomic_open()/atomic_commit(): a temporary
 * name in the same folder, renamed on success, removed by die() on failure. */
#ifndef DAPIPE_UTIL_H
#define DAPIPE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern const char *argv0;

void util_init(const char *prog);
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs at die(): remove temporaries, kill children. At most 16 hooks. */
void at_die(void (*fn)(void));

/* Always-on invariant check (a bug, never bad input). */
#define ASSERT(c) do { if (!(c)) assert_fail(#c, __FILE__, __LINE__); } while (0)
_Noreturn void assert_fail(const char *expr, const char *file, int line);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
void *xmallocarray(size_t n, size_t size);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Checked numbers from the command line: "prog: --opt: VALUE: reason", exit 2. */
long parse_long(const char *opt, const char *s, long min, long max);
double parse_double(const char *opt, const char *s, double min, double max);
/* comma-separated list of ints, e.g. "256,256,256"; returns count, dies past max */
int parse_int_list(const char *opt, const char *s, int *out, int max, long min, long maxv);

/* Atomic output files. */
typedef struct {
	char *path;   /* final name */
	char *tmp;    /* temporary name in the same folder */
	FILE *fp;
} AtomicFile;
FILE *atomic_open(AtomicFile *af, const char *path);
void atomic_commit(AtomicFile *af);  /* flush, fsync, rename; dies on error */
void atomic_abort(AtomicFile *af);   /* close and remove the temporary */

/* Progress on stderr: on when stderr is a terminal, forced by --progress,
 * off with --quiet. */
extern int progress_on;
extern int quiet;
void progress_setup(int force, int quiet_flag);
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void progress_done(void);
/* info(): a message on stderr unless --quiet */
void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

double now_seconds(void);
int str_endswith(const char *s, const char *suffix);
int str_ieq(const char *a, const char *b);

#endif
