/* fuzz.h: shared support for the libFuzzer harnesses in tests/fuzz/fuzz_*.c.
 *
 * Catching die(): the readers report bad input through die(), which ends in exit(1).
 * Inside libFuzzer an exit is reported as "fuzz target exited", so the harnesses are
 * linked with -Wl,--wrap=exit (tests/fuzz/run.sh does it): while FUZZ_TRY is armed,
 * exit() longjmps back to the harness instead of ending the process. (An at_die()
 * hook cannot do this: die() runs its hooks only the first time it is called.)
 * abort(), ASSERT failures, signals and sanitizer reports are still crashes.
 *
 * Memory: a die() in the middle of a reader leaves its partial allocations behind.
 * The harnesses are also linked with --wrap=malloc,calloc,realloc,free: while an
 * input runs, every block the project allocates is recorded. fuzz_end() frees what
 * is left after a die() (so nothing piles up over millions of runs) and, after a
 * clean run, treats anything left as a leak: it prints the count and aborts.
 *
 * stderr: die() messages are sent to /dev/null unless FUZZ_VERBOSE is set; the
 * sanitizers and libFuzzer write to file descriptor 2 directly and are not affected. */
#ifndef DAPIPE_FUZZ_H
#define DAPIPE_FUZZ_H

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

static jmp_buf fuzz_jb;
static volatile int fuzz_armed;
static volatile int fuzz_exit_code;
static volatile int fuzz_died;      /* die() calls caught since fuzz_begin() */

void __real_exit(int code);
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

void __wrap_exit(int code)
{
	if (fuzz_armed) {
		fuzz_armed = 0;
		fuzz_exit_code = code;
		fuzz_died++;
		longjmp(fuzz_jb, 1);
	}
	__real_exit(code);
}

/* ---- allocation tracking (only on the thread running the input) ---- */
static __thread int fuzz_tracking;
static void **fuzz_tab;      /* open addressing; NULL empty, (void *)1 deleted */
static size_t fuzz_tab_cap, fuzz_tab_used, fuzz_tab_live;
#define FUZZ_DEL ((void *)1)

static size_t fuzz_hash(void *p) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull); }

static void fuzz_track_add(void *p);
static void fuzz_grow(void)
{
	void **old = fuzz_tab;
	size_t oc = fuzz_tab_cap;
	fuzz_tab_cap = oc ? oc * 2 : 4096;
	if (fuzz_tab_live * 4 < oc) fuzz_tab_cap = oc; /* just clear deleted slots */
	fuzz_tab = __real_calloc(fuzz_tab_cap, sizeof *fuzz_tab);
	if (!fuzz_tab) abort();
	fuzz_tab_used = fuzz_tab_live = 0;
	for (size_t i = 0; i < oc; i++)
		if (old[i] && old[i] != FUZZ_DEL) fuzz_track_add(old[i]);
	__real_free(old);
}

static void fuzz_track_add(void *p)
{
	if (!p) return;
	if ((fuzz_tab_used + 1) * 2 > fuzz_tab_cap) fuzz_grow();
	size_t m = fuzz_tab_cap - 1, i = fuzz_hash(p) & m;
	while (fuzz_tab[i] && fuzz_tab[i] != FUZZ_DEL) i = (i + 1) & m;
	if (!fuzz_tab[i]) fuzz_tab_used++;
	fuzz_tab[i] = p;
	fuzz_tab_live++;
}

static void fuzz_track_del(void *p)
{
	if (!p || !fuzz_tab_cap) return;
	size_t m = fuzz_tab_cap - 1, i = fuzz_hash(p) & m;
	while (fuzz_tab[i]) {
		if (fuzz_tab[i] == p) { fuzz_tab[i] = FUZZ_DEL; fuzz_tab_live--; return; }
		i = (i + 1) & m;
	}
}

void *__wrap_malloc(size_t n)
{
	void *p = __real_malloc(n);
	if (fuzz_tracking) fuzz_track_add(p);
	return p;
}

void *__wrap_calloc(size_t n, size_t s)
{
	void *p = __real_calloc(n, s);
	if (fuzz_tracking) fuzz_track_add(p);
	return p;
}

void *__wrap_realloc(void *q, size_t n)
{
	void *p = __real_realloc(q, n);
	if (fuzz_tracking && p) {
		fuzz_track_del(q);
		fuzz_track_add(p);
	}
	return p;
}

void __wrap_free(void *p)
{
	if (fuzz_tracking) fuzz_track_del(p);
	__real_free(p);
}

/* Begin an input: track allocations from here on. */
static void fuzz_begin(void)
{
	fuzz_died = 0;
	fuzz_tracking = 1;
}

/* End an input. If a die() was caught, free what it left. Otherwise anything still
 * recorded is a leak on a clean path: report and abort. */
static void fuzz_end(void)
{
	int died = fuzz_died;
	fuzz_tracking = 0;
	size_t left = fuzz_tab_live;
	for (size_t i = 0; i < fuzz_tab_cap; i++) {
		if (fuzz_tab[i] && fuzz_tab[i] != FUZZ_DEL) __real_free(fuzz_tab[i]);
		fuzz_tab[i] = NULL;
	}
	fuzz_tab_used = fuzz_tab_live = 0;
	if (left && !died) {
		fprintf(stdout, "fuzz: %zu allocations leaked on a path without an error\n", left);
		fflush(stdout);
		abort();
	}
}

/* Run BODY; die() inside it jumps to the end. Evaluates to 1 if it died. */
#define FUZZ_TRY(died, BODY) do { \
	fuzz_armed = 1; \
	if (setjmp(fuzz_jb) == 0) { BODY; fuzz_armed = 0; (died) = 0; } \
	else { (died) = 1; } \
} while (0)

/* A readable file descriptor holding the bytes (memfd: no size limit, no blocking). */
static __attribute__((unused)) int fuzz_fd(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz", 0);
	if (fd < 0) { perror("memfd_create"); abort(); }
	size_t off = 0;
	while (off < size) {
		ssize_t k = write(fd, data + off, size - off);
		if (k <= 0) { perror("write"); abort(); }
		off += (size_t)k;
	}
	if (lseek(fd, 0, SEEK_SET) != 0) abort();
	return fd;
}

/* Silence die() messages (they go to the C stderr stream) unless FUZZ_VERBOSE. */
static void fuzz_quiet(void)
{
	argv0 = "fuzz";
	if (!getenv("FUZZ_VERBOSE")) {
		FILE *n = fopen("/dev/null", "w");
		if (n) stderr = n;
	}
}

#endif
