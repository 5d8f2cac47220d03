#!/bin/sh
# tests/cli/perf.sh: the transport between train-step and its stages (docs/STAGES.md,
# "Shared memory"): large tensors through shared memory when the stage accepts it,
# pipes otherwise (DAPIPE_SHM=0, a stage without the descriptor, a Python stage), the
# same model either way; DAPIPE_STAGE_STATS figures; the bench scripts parse.
. "$(dirname "$0")/../lib.sh"
cd "$TMP" || exit 1

# 400 genes, so that a batch of 32 + 32 rows (100 KiB) goes through shared memory
awk -v n=160 -v g=400 -v seed=3 -v dom=s 'BEGIN {
	srand(seed); printf "id,label"; for (j = 0; j < g; j++) printf ",g%d", j; printf "\n"
	for (i = 0; i < n; i++) { c = i % 2; printf "%s%d,%s", dom, i, c ? "b" : "a"
		for (j = 0; j < g; j++) printf ",%.3f", rand() + (j < 20 ? c : 0); printf "\n" } }' > s.csv
awk -v n=80 -v g=400 -v seed=4 -v dom=t 'BEGIN {
	srand(seed); printf "id,label"; for (j = 0; j < g; j++) printf ",g%d", j; printf "\n"
	for (i = 0; i < n; i++) { c = i % 2; printf "%s%d,%s", dom, i, c ? "b" : "a"
		for (j = 0; j < g; j++) printf ",%.3f", rand() + 0.2 + (j < 20 ? c : 0); printf "\n" } }' > t.csv
normalize --quiet --label-column label --domain source s.csv > s.mpk
normalize --quiet --label-column label --domain target t.csv > t.mpk
batch --quiet --source s.mpk --target t.mpk --epochs 3 --batch-size 32 --seed 1 > b.mpk

# ---- perf-1: shared memory by default, the same model through pipes ----
run "perf-1.shm" 0 env DAPIPE_STAGE_STATS=1 train-step --quiet --method dann --out shm.mpk --seed 2 b.mpk
err_has "train-step: stage encoder:"
ok "perf-1.encoder-uses-shm" grep -q "stage encoder:.*shared memory (tensor MiB: shm [0-9.]*[1-9]" "$ERR"
ok "perf-1.stage-compute-reported" sh -c "grep 'stage encoder:' '$ERR' | grep -qv 'not reported'"
run "perf-1.pipes" 0 env DAPIPE_SHM=0 DAPIPE_STAGE_STATS=1 train-step --quiet --method dann --out pipe.mpk --seed 2 b.mpk
ok "perf-1.encoder-uses-pipes" grep -q "stage encoder:.*pipes (tensor MiB: shm 0.0, pipe [0-9.]*[1-9]" "$ERR"
ok "perf-1.same-model" cmp shm.mpk pipe.mpk
run "perf-1.quiet-without-stats" 0 train-step --quiet --method dann --out q.mpk --seed 2 b.mpk
ok "perf-1.no-stats-lines" test ! -s "$ERR"

# ---- perf-2: a stage that lacks the descriptor (as over ssh) keeps the pipes ----
run "perf-2.closed-descriptor" 0 env DAPIPE_STAGE_STATS=1 train-step --quiet --method dann --out closed.mpk --seed 2 \
	--encoder "exec 3>&-; exec '$BIN/encode' --stage" b.mpk
ok "perf-2.encoder-falls-back" grep -q "stage encoder:.*pipes" "$ERR"
# the bundles differ in the encoder command they record: compare what they predict
encode --model shm.mpk t.mpk | predict --model shm.mpk > shm.csv
encode --model closed.mpk t.mpk | predict --model closed.mpk > closed.csv
ok "perf-2.same-predictions" cmp shm.csv closed.csv

# ---- perf-3: a Python stage (it ignores the offer) beside C stages that take it ----
PY=""
for py in python3 /usr/bin/python3; do
	if "$py" -c 'import msgpack, numpy' 2>/dev/null; then PY=$py; break; fi
done
if [ -n "$PY" ]; then
	run "perf-3.python-classifier" 0 env DAPIPE_STAGE_STATS=1 train-step --quiet --method source-only --out py.mpk \
		--lr 0.1 --classifier "$PY $ROOT/tests/python_stage.py" b.mpk
	ok "perf-3.python-on-pipes" grep -q "stage classifier:.*compute (not reported).*pipes" "$ERR"
	ok "perf-3.encoder-on-shm" grep -q "stage encoder:.*shared memory" "$ERR"
	# a tensor in shared memory that init never set up: the stage refuses it
	cat > shm_req.py <<'EOF'
import subprocess, sys, msgpack
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
reqs = [{"type": "init", "in": 5, "seed": 1},
        {"type": "forward", "train": False, "x": {"dtype": "f32", "shape": [2, 5], "shm": {"offset": 0, "size": 40}}}]
out, err = p.communicate(b"".join(msgpack.packb(r, use_bin_type=True) for r in reqs))
sys.stderr.write(err.decode())
sys.exit(p.returncode)
EOF
	run "perf-3.shm-not-set-up" 1 "$PY" shm_req.py encode --stage --layers 4
	err_has "x: a tensor in shared memory, but none was set up at init"
else
	echo "# perf-3: python3 with msgpack and numpy not found: skipped"
fi

# ---- perf-4: the bench scripts are valid sh ----
for f in bench.sh bench_train.sh bench_normalize.sh; do
	ok "perf-4.$f-parses" sh -n "$ROOT/tests/$f"
done
if command -v shellcheck >/dev/null; then
	ok "perf-4.shellcheck" shellcheck "$ROOT/tests/bench.sh" "$ROOT/tests/bench_train.sh"
fi
