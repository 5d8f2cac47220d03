#!/bin/sh
# tests/bench_train.sh: train-step against PyTorch on the CPU and against the
# cblas_sgemm peak, on 20,000 genes with 5,000 source and 1,000 target samples
# (synthetic data streams: class means on 10% of the genes), the published
# architecture, batches of 32 + 32 and 128 + 128, DANN and WGAN-GP. Prints Markdown.
#   BIN=bin sh tests/bench_train.sh
# Environment: GENES (20000), SOURCE (5000), TARGET (1000), STEPS (20: steps timed per
# run; the batch stream is cut to that many steps), THREADS (the number of cores),
# REPS (3: dapipe and PyTorch runs per figure, the median is shown), BEFORE_BIN=DIR (and BEFORE_NAME)
# times the train-step of an older build too, interleaved run by run, for a before/after
# table; KEEP=1 keeps the temporary folder, NO_TORCH=1 skips PyTorch, NO_SHM_TABLE=1
# skips the shared memory / pipes comparison.
# What is measured:
#   ms/step     train-step's own mean step time (median over REPS runs) (its "ms/step" line: from the batch
#               parsed to the encoder's backward sent, including waiting for the
#               previous backward); PyTorch: the same span (forward, losses, backward,
#               optimiser steps) in tests/torch_bench.py.
#   GFLOP/s     2*B*in*out per Linear forward, 4*B*in*out backward with the input
#               gradient, 2*B*in*out without (the encoder's first layer), over the
#               encoder, classifier and domain head (WGAN-GP: the critic's N_CRITIC (5)
#               updates on the B rows and the encoder's adversarial pass on the target
#               rows; the penalty's double-backward passes are not counted), divided
#               by ms/step.
#   transport % also on the CPU: the same with train-step's CPU time for sending (the
#               wall clock also holds waiting for a core after waking a stage).
#   roofline    GFLOP/s / the cblas_sgemm peak measured in this run (2048^3, the better
#               of a measurement before and one after the training runs).
#   paired      the same per run, against a 2048^3 peak measured (0.3 s) right before
#               that run, median over the REPS runs: on a machine that other work
#               loads in bursts, a run and its own peak share the conditions.
#   transport   with DAPIPE_STAGE_STATS=1 train-step reports, per stage, the time
#               spent packing and sending requests plus the stage's time decoding
#               them; its sum over the stages as a share of the run's time.
#   peak RSS    /usr/bin/time -v, largest process of the run (train-step or a stage).
set -eu
: "${BIN:=bin}"
BIN=$(cd "$BIN" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
GENES=${GENES:-20000}
SOURCE=${SOURCE:-5000}
TARGET=${TARGET:-1000}
STEPS=${STEPS:-20}
THREADS=${THREADS:-$(nproc)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dapipe-bench-train.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "bench_train: keeping $TMP" >&2; else trap 'rm -rf "$TMP"' EXIT; fi
[ -x /usr/bin/time ] || { echo "bench_train: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

PY=
for p in python3 /usr/bin/python3; do
	if "$p" -c 'import msgpack, numpy' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "bench_train: needs python3 with msgpack and numpy (apt-get install python3-msgpack python3-numpy)" >&2; exit 1; }
TORCH=
[ "${NO_TORCH:-0}" = 1 ] || for p in "$PY" /usr/bin/python3; do
	if "$p" -c 'import torch' 2>/dev/null; then TORCH=$p; break; fi
done
if [ -z "$TORCH" ] && [ "${NO_TORCH:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "bench_train: installing python3-torch" >&2
	apt-get install -y -q python3-torch >&2 || true
	/usr/bin/python3 -c 'import torch' 2>/dev/null && TORCH=/usr/bin/python3
fi
TORCH_WHY="python3-torch is not installed and could not be installed (apt-get install python3-torch as root)"
[ "${NO_TORCH:-0}" = 1 ] && TORCH_WHY="not run (NO_TORCH=1)"

# ---- data: source and target data streams; class means on 10% of the genes, a
# cohort shift on the target ----
cat >"$TMP/gen.py" <<'EOF'
import sys, msgpack, numpy as np
def tensor(a, dt):
    a = np.ascontiguousarray(a, "<f4" if dt == "f32" else "<i4")
    return {"dtype": dt, "shape": list(a.shape), "data": a.tobytes()}
def write(path, n, F, K, dom, shift, seed):
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(7)
    means = (base.normal(0, 2, (K, F)) * (base.random(F) < 0.1)).astype(np.float32)
    off = np.random.default_rng(11).normal(0, shift, F).astype(np.float32)
    with open(path, "wb") as f:
        f.write(msgpack.packb({"type": "header", "version": 1, "kind": "data",
            "features": ["G%d" % j for j in range(F)], "classes": ["c%d" % k for k in range(K)],
            "domains": [dom]}, use_bin_type=True))
        frames = 0
        for s in range(0, n, 256):
            b = min(256, n - s)
            y = rng.integers(0, K, b)
            x = rng.standard_normal((b, F), dtype=np.float32) + means[y] + off
            f.write(msgpack.packb({"type": "data", "ids": ["%s%d" % (dom, s + i) for i in range(b)],
                "x": tensor(x, "f32"), "y": tensor(y, "i32"), "d": tensor(np.zeros(b), "i32")}, use_bin_type=True))
            frames += 1
        f.write(msgpack.packb({"type": "end", "rows": n, "frames": frames}, use_bin_type=True))
F, K = int(sys.argv[3]), 4
write(sys.argv[1], int(sys.argv[4]), F, K, "source", 0.0, 1)
write(sys.argv[2], int(sys.argv[5]), F, K, "target", 0.3, 2)
EOF
# keep the first STEPS batches of epoch 0 (and the val frames), as one epoch
cat >"$TMP/cut.py" <<'EOF'
import sys, msgpack
steps = int(sys.argv[3])
out = open(sys.argv[2], "wb")
up = msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=2**31 - 1)
h = next(up)
h["steps_per_epoch"] = min(steps, h["steps_per_epoch"]); h["epochs"] = 1
out.write(msgpack.packb(h, use_bin_type=True))
n = 0
for fr in up:
    if fr["type"] == "val":
        out.write(msgpack.packb(fr, use_bin_type=True))
    elif fr["type"] == "batch" and n < h["steps_per_epoch"]:
        out.write(msgpack.packb(fr, use_bin_type=True)); n += 1
    elif n >= h["steps_per_epoch"] or fr["type"] in ("epoch_end", "end"):
        break
out.write(msgpack.packb({"type": "epoch_end", "epoch": 0}, use_bin_type=True))
out.write(msgpack.packb({"type": "end", "rows": n, "frames": n + 1}, use_bin_type=True))
EOF
"$PY" "$TMP/gen.py" "$TMP/src.mpk" "$TMP/tgt.mpk" "$GENES" "$SOURCE" "$TARGET"
for b in 32 128; do
	"$BIN/batch" --quiet --source "$TMP/src.mpk" --target "$TMP/tgt.mpk" --epochs 1 --batch-size "$b" >"$TMP/full.mpk"
	"$PY" "$TMP/cut.py" "$TMP/full.mpk" "$TMP/b$b.mpk" "$STEPS"
done
rm -f "$TMP/full.mpk" "$TMP/src.mpk" "$TMP/tgt.mpk"

# ---- the sgemm peak: the step's shapes and a large square, same threads ----
cat >"$TMP/sgemm.c" <<'EOF'
/* sgemm GFLOP/s at M N K ta tb [seconds] (row-major), best of a loop of that many
 * seconds (default 1) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv)
{
	if (argc != 6 && argc != 7) return 2;
	double secs = argc == 7 ? atof(argv[6]) : 1.0;
	int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]), ta = atoi(argv[4]), tb = atoi(argv[5]);
	float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = calloc((size_t)M * N, sizeof(float));
	for (long i = 0; i < (long)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
	for (long i = 0; i < (long)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
	double best = 0, t0 = now();
	do {
		double t = now();
		cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
		            1.0f, A, ta ? M : K, B, tb ? K : N, 1.0f, C, N);
		t = now() - t;
		if (2.0 * M * N * K / t > best) best = 2.0 * M * N * K / t;
	} while (now() - t0 < secs);
	printf("%.1f\n", best / 1e9);
	return 0;
}
EOF
BLAS_CFLAGS=$(pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
BLAS_LIBS=$(pkg-config --libs openblas 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas)
BLAS_DIR=$(echo "$BLAS_LIBS" | tr ' ' '\n' | sed -n 's/^-L//p' | head -n 1)
# shellcheck disable=SC2086
${CC:-cc} -O2 $BLAS_CFLAGS "$TMP/sgemm.c" -o "$TMP/sgemm" $BLAS_LIBS ${BLAS_DIR:+-Wl,-rpath,$BLAS_DIR}
export OPENBLAS_NUM_THREADS="$THREADS"
PEAK0=$("$TMP/sgemm" 2048 2048 2048 0 0)
PEAK=$PEAK0
FWD64=$("$TMP/sgemm" 64 256 "$GENES" 0 1)
DW64=$("$TMP/sgemm" 256 "$GENES" 64 1 0)
FWD256=$("$TMP/sgemm" 256 256 "$GENES" 0 1)
DW256=$("$TMP/sgemm" 256 "$GENES" 256 1 0)

# measure NAME CMD...: runs CMD under /usr/bin/time -v; sets RSS (MiB) and leaves
# stderr in $TMP/NAME.err
measure() {
	name=$1
	shift
	/usr/bin/time -v "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || { tail -n 20 "$TMP/$name.err" >&2; exit 1; }
	RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$TMP/$name.err")
}
# flops METHOD BS BT: FLOPs of one step (see the header)
N_CRITIC=5
flops() {
	awk -v m="$1" -v bs="$2" -v bt="$3" -v F="$GENES" -v K=4 -v nc="$N_CRITIC" 'BEGIN {
		B = bs + bt; H = 256
		enc = 2 * B * (F * H + 2 * H * H) + 2 * B * F * H + 4 * B * 2 * H * H
		sc = H * 128 + 128 * 64 + 64 * K; cls = 6 * bs * sc
		sd = H * 256 + 256 * 128 + 128 * 64 + 64; dis = 6 * B * sd
		if (m == "wgan-gp") dis = nc * 6 * B * sd + 6 * bt * sd
		printf "%.0f", enc + cls + dis }'
}

# ts NAME BINDIR [VAR=VALUE...]: one train-step run (DANN or $M, batch $B) with stats;
# appends its ms/step to $TMP/NAME.ms and its transport share to $TMP/NAME.tr
ts() {
	name=$1
	dir=$2
	shift 2
	measure "$name" env DAPIPE_STAGE_STATS=1 "$@" "$dir/train-step" --method "$M" --out "$TMP/m.mpk" "$TMP/b$B.mpk"
	sed -n 's/.*(\([0-9.]*\) ms\/step).*/\1/p' "$TMP/$name.err" >>"$TMP/$name.ms"
	awk '/: stage .*transport/ { for (i = 1; i <= NF; i++) if ($i == "transport") { s += $(i + 1); tot = $(i + 6) } }
		END { if (tot > 0) printf "%.1f\n", 100 * s / tot }' "$TMP/$name.err" >>"$TMP/$name.tr"
	# the same with the CPU seconds of sending: "sending W s (on the CPU C s)", "decoding D s"
	awk '/: stage .*transport/ { for (i = 1; i <= NF; i++) { if ($i == "CPU") c += $(i + 1); if ($i == "decoding") c += $(i + 1)
		if ($i == "transport") tot = $(i + 6) } }
		END { if (tot > 0) printf "%.1f\n", 100 * c / tot }' "$TMP/$name.err" >>"$TMP/$name.trc"
}
# median of the numbers in FILE ("n/a" when none)
median() {
	sort -n "$1" | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
REPS=${REPS:-3}

echo "train-step: $GENES genes, $SOURCE source + $TARGET target samples (synthetic, 4 classes), the"
echo "published architecture (encoder 3 x (Linear 256, ReLU, BatchNorm, Dropout 0.5),"
echo "classifier 128-64-4, domain head 256-128-64-1), Adam; $STEPS steps per run, $THREADS threads"
echo "(OPENBLAS_NUM_THREADS: the thread pools of the encoder and the domain head, docs/STAGES.md \"Threads\";"
echo "torch.set_num_threads for PyTorch). dapipe figures are"
echo "medians of $REPS runs${BEFORE_BIN:+, interleaved with the runs of the older build}; PyTorch: medians of $REPS runs."
echo
echo "| method | batch | dapipe ms/step | samples/s | GFLOP/s | % of sgemm peak | % of peak, paired | transport % | transport % (CPU) | peak RSS MiB | val acc | PyTorch ms/step | samples/s | peak RSS MiB | val acc | PyTorch / dapipe |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
: >"$TMP/rows.md"
: >"$TMP/before.md"
for M in dann wgan-gp; do
	for B in 32 128; do
		r=0
		FL=$(flops "$M" "$B" "$B")
		while [ "$r" -lt "$REPS" ]; do
			PK=$("$TMP/sgemm" 2048 2048 2048 0 0 0.3)
			ts "ts-$M-$B" "$BIN"
			awk -v fl="$FL" -v pk="$PK" -v ms="$(tail -n 1 "$TMP/ts-$M-$B.ms")" 'BEGIN { printf "%.1f\n", 100 * fl / (ms / 1000) / 1e9 / pk }' >>"$TMP/fr-$M-$B"
			RSSD=$RSS
			[ -z "${BEFORE_BIN:-}" ] || ts "bf-$M-$B" "$BEFORE_BIN"
			r=$((r + 1))
		done
		MS=$(median "$TMP/ts-$M-$B.ms")
		TR=$(median "$TMP/ts-$M-$B.tr")
		TRC=$(median "$TMP/ts-$M-$B.trc")
		ACC=$(sed -n 's/.*score \([0-9.]*\)).*/\1/p' "$TMP/ts-$M-$B.err")
		FR=$(median "$TMP/fr-$M-$B")
		if [ -n "$TORCH" ]; then
			# REPS runs too (median): one run is at the mercy of whatever else the machine does
			r=0
			: >"$TMP/pt-$M-$B.ms"
			while [ "$r" -lt "$REPS" ]; do
				measure "pt-$M-$B" "$TORCH" "$HERE/torch_bench.py" --method "$M" --threads "$THREADS" "$TMP/b$B.mpk"
				sed -n 's/.*ms_per_step=\([0-9.]*\).*/\1/p' "$TMP/pt-$M-$B.out" >>"$TMP/pt-$M-$B.ms"
				r=$((r + 1))
			done
			PT=$(median "$TMP/pt-$M-$B.ms")
			PACC=$(sed -n 's/.*val_acc=\([0-9.a-z]*\).*/\1/p' "$TMP/pt-$M-$B.out")
			PRSS=$RSS
		else
			PT=; PACC=; PRSS=
		fi
		echo "$M $B $MS $FL $TR $TRC $RSSD $ACC ${PT:--} ${PACC:--} ${PRSS:--} $FR" >>"$TMP/rows.md"
		[ -z "${BEFORE_BIN:-}" ] || echo "$M $B $(median "$TMP/bf-$M-$B.ms") $MS" >>"$TMP/before.md"
	done
done
# the peak: the better of a measurement before and one after the training runs
PEAK1=$("$TMP/sgemm" 2048 2048 2048 0 0)
PEAK=$(awk -v a="$PEAK" -v b="$PEAK1" 'BEGIN { print (a > b ? a : b) }')
while read -r m b ms fl tr trc rss acc pt pacc prss fr; do
	awk -v m="$m" -v b="$b" -v ms="$ms" -v fl="$fl" -v pk="$PEAK" -v tr="$tr" -v trc="$trc" -v rss="$rss" -v acc="$acc" -v fr="$fr" \
	    -v pt="$pt" -v pacc="$pacc" -v prss="$prss" -v why="$TORCH_WHY" 'BEGIN {
		n = 2 * b
		g = fl / (ms / 1000) / 1e9
		printf "| %s | %d+%d | %.1f | %.0f | %.1f | %.1f %% | %s %% | %s %% | %s %% | %s | %s |", m, b, b, ms, n / (ms / 1000), g, 100 * g / pk, fr, tr, trc, rss, acc
		if (pt != "-") printf " %.1f | %.0f | %s | %s | %.2fx |\n", pt, n / (pt / 1000), prss, pacc, pt / ms
		else printf " %s | | | | |\n", why }'
done <"$TMP/rows.md"
echo
echo "cblas_sgemm in the same run (best of a 1 s loop, OPENBLAS_NUM_THREADS=$THREADS): 2048^3"
echo "${PEAK0} GFLOP/s before the training runs, ${PEAK1} after; the peak above is the better"
echo "of the two. At the step's shapes: x W^T (64 x $GENES x 256) ${FWD64}, dW (256 x 64 x $GENES)"
echo "${DW64}, x W^T (256 x $GENES x 256) ${FWD256}, dW (256 x 256 x $GENES) ${DW256} GFLOP/s."
if [ -n "${BEFORE_BIN:-}" ]; then
	echo
	echo "Before / after: ${BEFORE_NAME:-$BEFORE_BIN} against this build, median ms/step of $REPS interleaved runs each:"
	echo
	echo "| method | batch | before ms/step | after ms/step | speed-up |"
	echo "|---|---|---|---|---|"
	while read -r m b bms ams; do
		awk -v m="$m" -v b="$b" -v x="$bms" -v y="$ams" 'BEGIN { printf "| %s | %d+%d | %.1f | %.1f | %.2fx |\n", m, b, b, x, y, x / y }'
	done <"$TMP/before.md"
fi
[ "${NO_SHM_TABLE:-0}" = 1 ] && exit 0
# the same DANN runs with DAPIPE_SHM=0: the tensors through the pipes, interleaved
echo
echo "Transport, DANN: shared memory (default) against pipes only (DAPIPE_SHM=0), medians of $REPS"
echo "interleaved runs:"
echo
echo "| batch | transport | ms/step | transport % of the run |"
echo "|---|---|---|---|"
M=dann
for B in 32 128; do
	r=0
	while [ "$r" -lt "$REPS" ]; do
		ts "shm1-$B" "$BIN" DAPIPE_SHM=1
		ts "shm0-$B" "$BIN" DAPIPE_SHM=0
		r=$((r + 1))
	done
	echo "| $B+$B | shared memory | $(median "$TMP/shm1-$B.ms") | $(median "$TMP/shm1-$B.tr") % |"
	echo "| $B+$B | pipes | $(median "$TMP/shm0-$B.ms") | $(median "$TMP/shm0-$B.tr") % |"
done
echo
echo "Per-stage lines of the last DANN 128+128 run with shared memory (DAPIPE_STAGE_STATS=1):"
echo
echo '```'
grep ': stage ' "$TMP/shm1-128.err" || true
echo '```'
echo
echo "and of the last WGAN-GP 128+128 run of the main table:"
echo
echo '```'
grep ': stage ' "$TMP/ts-wgan-gp-128.err" || true
echo '```'
