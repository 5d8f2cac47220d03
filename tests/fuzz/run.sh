#!/bin/sh
# tests/fuzz/run.sh [SECONDS] [HARNESS...]: build the libFuzzer harnesses and run each
# for SECONDS (default 60). Fails on any crash, sanitizer report, leak or timeout.
#
# Every harness tests/fuzz/fuzz_*.c (or only the named ones, e.g. fuzz_stream) is built
# with clang -fsanitize=fuzzer,address,undefined against common/*.c compiled with the
# same sanitizers (and fuzzer-no-link coverage), linked with --wrap for exit and the
# allocator (see tests/fuzz/fuzz.h: that is how a die() inside a reader returns to the
# harness). Seeds come from tests/fuzz/corpus/<harness>/ (committed, read only); what
# the fuzzer learns goes to tests/fuzz/corpus-work/<harness>/ (ignored by git), crash
# inputs to $FUZZ_BUILD/crash-<harness>-*; tests/fuzz/<harness>.flags holds extra
# libFuzzer flags for one harness, tests/fuzz/<harness>.dict its dictionary,
# tests/fuzz/<harness>.ldflags extra linker flags (e.g. another --wrap). Prints one line per harness:
#   PASS fuzz_stream: 812345 runs in 60 s (13539/s), 0 crashes
# Environment: FUZZ_BUILD (default build-fuzz), FUZZ_CC (default clang),
# FUZZ_FLAGS (extra libFuzzer flags, e.g. "-jobs=2"), FUZZ_CFLAGS (extra compiler
# flags, e.g. "-fno-sanitize=nonnull-attribute" to look past a known report).
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
case "$secs" in *[!0-9]* | "") echo "run.sh: SECONDS: $secs: not a number" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${FUZZ_BUILD:-build-fuzz}
cc=${FUZZ_CC:-clang}
command -v "$cc" >/dev/null 2>&1 || { echo "run.sh: $cc not found (apt-get install clang)" >&2; exit 1; }

blas_cflags=$(pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
blas_libs=$(pkg-config --libs openblas 2>/dev/null || echo "-L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas")
blas_dir=$(echo "$blas_libs" | tr ' ' '\n' | sed -n 's/^-L//p' | head -n 1)
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cflags="-O1 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Icommon -Itests/fuzz $blas_cflags $san ${FUZZ_CFLAGS:-}"
wrap="-Wl,--wrap=exit,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free"
libs="$blas_libs ${blas_dir:+-Wl,-rpath,$blas_dir} -lcsv -lmsgpackc -lz -lpthread -lm"
# optional image libraries, when a common/ file needs them
grep -l 'png.h' common/*.c >/dev/null 2>&1 && libs="$libs -lpng"
grep -l 'jpeglib.h' common/*.c >/dev/null 2>&1 && libs="$libs -ljpeg"

mkdir -p "$build/obj"
objs=""
for c in common/*.c; do
	o="$build/obj/$(basename "$c" .c).o"
	if [ ! -f "$o" ] || [ "$c" -nt "$o" ] || [ -n "$(find common -name '*.h' -newer "$o" 2>/dev/null)" ] ||
	   [ "$(cat "$build/flags" 2>/dev/null)" != "$cflags" ]; then
		# shellcheck disable=SC2086
		$cc $cflags -fsanitize=fuzzer-no-link -c "$c" -o "$o" || { echo "run.sh: cannot compile $c" >&2; exit 1; }
	fi
	objs="$objs $o"
done
echo "$cflags" >"$build/flags"

if [ $# -eq 0 ]; then
	set -- $(for h in tests/fuzz/fuzz_*.c; do basename "$h" .c; done)
fi
status=0
for name in "$@"; do
	src="tests/fuzz/$name.c"
	[ -f "$src" ] || { echo "FAIL $name: no $src"; status=1; continue; }
	exe="$build/$name"
	# shellcheck disable=SC2086
	ldextra=""
	[ -f "tests/fuzz/$name.ldflags" ] && ldextra=$(grep -v '^#' "tests/fuzz/$name.ldflags")
	# shellcheck disable=SC2086
	if ! $cc $cflags -fsanitize=fuzzer "$src" $objs -o "$exe" $wrap $ldextra $libs; then
		echo "FAIL $name: does not build"
		status=1
		continue
	fi
	work="tests/fuzz/corpus-work/$name"
	seeds="tests/fuzz/corpus/$name"
	mkdir -p "$work"
	[ -d "$seeds" ] || seeds=""
	dict=""
	[ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
	[ -z "$dict" ] && [ -f tests/fuzz/stream.dict ] && case "$name" in fuzz_stream | fuzz_datain) dict="-dict=tests/fuzz/stream.dict" ;; esac
	flags=""
	[ -f "tests/fuzz/$name.flags" ] && flags=$(grep -v '^#' "tests/fuzz/$name.flags")
	log="$build/$name.log"
	rm -f "$build"/crash-"$name"-*
	# shellcheck disable=SC2086
	leaks=1
	case "$flags" in *-detect_leaks=0*) leaks=0 ;; esac
	OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=$leaks} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
	"$exe" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
		-print_final_stats=1 -artifact_prefix="$build/crash-$name-" $dict $flags ${FUZZ_FLAGS:-} \
		"$work" $seeds >"$log" 2>&1 && rc=0 || rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	crashes=$(ls "$build"/crash-"$name"-* 2>/dev/null | wc -l)
	if [ "$rc" -eq 0 ]; then
		echo "PASS $name: ${runs:-?} runs in $secs s (${rate:-?}/s), corpus $(ls "$work" | wc -l) inputs"
	else
		echo "FAIL $name: exit $rc after ${runs:-?} runs; $crashes crash input(s) in $build/; log $log:"
		grep -E 'ERROR|SUMMARY|runtime error|leaked|deadly signal|Test unit written' "$log" | head -n 8 | sed 's/^/    /'
		status=1
	fi
done
exit "$status"
