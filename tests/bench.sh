#!/bin/sh
# tests/bench.sh: `make bench`. Runs the benchmarks side by side in one run and writes
# BENCHMARKS.md (machine, exact commands, tables):
#   tests/bench_train.sh      train-step against PyTorch (CPU, same threads) and the
#                             cblas_sgemm peak; transport overhead; peak RSS
#   tests/bench_normalize.sh  normalize against pandas; peak RSS
# Installs python3-torch and python3-pandas with apt-get when run as root and they are
# missing (the table says so when they cannot be had). No timed assertions: figures only.
#   BIN=bin sh tests/bench.sh [OUT.md]     (default OUT: BENCHMARKS.md)
# Environment: see the two scripts (STEPS, GENES, SOURCE, TARGET, THREADS, ROWS, COLS);
# BEFORE_BIN=DIR (and BEFORE_NAME=text) also times the train-step of an older build in
# DIR, interleaved with this build's runs, for a before/after table.
set -eu
: "${BIN:=bin}"
OUT=${1:-BENCHMARKS.md}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dapipe-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	for pk in python3-torch:torch python3-pandas:pandas; do
		if ! /usr/bin/python3 -c "import ${pk#*:}" 2>/dev/null; then
			echo "bench: installing ${pk%%:*}" >&2
			apt-get install -y -q "${pk%%:*}" >&2 || echo "bench: could not install ${pk%%:*}" >&2
		fi
	done
fi

START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: train-step (a few minutes)" >&2
BIN=$BIN sh "$HERE/bench_train.sh" >"$TMP/train.md"
echo "bench: normalize" >&2
BIN=$BIN sh "$HERE/bench_normalize.sh" >"$TMP/norm.md"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
CORES=$(nproc)
OB=$(dpkg-query -W -f '${Version}' libopenblas0-pthread 2>/dev/null || dpkg-query -W -f '${Version}' libopenblas0 2>/dev/null || echo unknown)
OBCORE=$(OPENBLAS_VERBOSE=2 "$BIN/train-step" --help 2>&1 >/dev/null | sed -n 's/^Core: *//p' | head -n 1)
TV=$(/usr/bin/python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "not installed")
PV=$(/usr/bin/python3 -c 'import pandas; print(pandas.__version__)' 2>/dev/null || echo "not installed")
{
	echo "# Benchmarks"
	echo
	echo "Written by \`make bench\` (tests/bench.sh) on $START. Every ratio below comes from this one"
	echo "run on this machine; the figures are not checked by any test."
	echo
	echo "## Machine"
	echo
	echo "- CPU: ${CPU:-unknown}, $CORES cores (nproc)"
	echo "- OpenBLAS: $OB${OBCORE:+ (kernel: $OBCORE)}; PyTorch: $TV; pandas: $PV"
	echo "- compiler: $(${CC:-cc} --version | head -n 1)"
	echo "- load average at start / end: $LOAD0 / $LOAD1 (other work on the machine slows every column alike)"
	echo
	echo "## Commands"
	echo
	echo '```'
	if [ -n "${BEFORE_BIN:-}" ]; then
		echo "BEFORE_BIN=DIR make bench         # DIR: bin/ of a build of ${BEFORE_NAME:-$BEFORE_BIN}"
		echo "                                  # (git worktree add W COMMIT; make -C W BIN=DIR)"
	else
		echo "make bench                        # = BIN=$BIN sh tests/bench.sh"
	fi
	echo "BIN=$BIN sh tests/bench_train.sh       # STEPS=${STEPS:-20} GENES=${GENES:-20000} SOURCE=${SOURCE:-5000} TARGET=${TARGET:-1000}"
	echo "  batch --source S.mpk --target T.mpk --epochs 1 --batch-size 32|128   (cut to STEPS steps)"
	echo "  DAPIPE_STAGE_STATS=1 train-step --method dann|wgan-gp --out m.mpk b.mpk"
	echo "  python3 tests/torch_bench.py --method dann|wgan-gp --threads $CORES b.mpk"
	echo "BIN=$BIN sh tests/bench_normalize.sh   # ROWS=${ROWS:-2000} COLS=${COLS:-20000}"
	echo '```'
	echo
	echo "## Training step"
	echo
	cat "$TMP/train.md"
	echo
	echo "## normalize"
	echo
	cat "$TMP/norm.md"
} >"$TMP/out.md"
mv "$TMP/out.md" "$OUT"
echo "bench: wrote $OUT" >&2
