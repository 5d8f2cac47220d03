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

# ---- perf-5: the batches are read into the encoder's shared memory and sent by
# offset (row blocks), never copied in; only validation rows are ----
run "perf-5.stats" 0 env DAPIPE_STAGE_STATS=1 train-step --quiet --method dann --out ref.mpk --seed 2 b.mpk
sed -n 's/.*stage encoder:.*(tensor MiB: shm \([0-9.]*\), pipe [0-9.]*; copied in \([0-9.]*\)).*/\1 \2/p' "$ERR" > mib
ok "perf-5.batches-by-reference" awk '{ n++; r = $1 > 0 && $2 < $1 / 2 } END { exit !(n == 1 && r) }' mib
ok "perf-5.cpu-time-shown" grep -q "stage encoder:.*sending [0-9.]* s (on the CPU [0-9.]* s)" "$ERR"
ok "perf-5.phases-shown" grep -q "stage encoder:.*stage compute [0-9.]* s (forward [0-9.]* s, backward [0-9.]* s, optimiser [0-9.]* s)" "$ERR"
# the input read through a pipe (no regular file behind the reader) gives the same model
run "perf-5.from-a-pipe" 0 sh -c "cat b.mpk | train-step --quiet --method dann --out piped.mpk --seed 2"
ok "perf-5.same-model-from-a-pipe" cmp shm.mpk piped.mpk
if [ -n "$PY" ]; then
	# row blocks in the region (shm parts, at unaligned offsets) give what the same
	# rows in the frame give; blocks that do not add up or do not fit are refused
	cat > parts.py <<'EOF'
import os, subprocess, sys, msgpack, struct
cmd, case = sys.argv[1:-1], sys.argv[-1]
fd = os.memfd_create("t")
F, rows = 5, [2, 3]
xs = [[(i * F + j) * 0.25 - 1.0 for j in range(F)] for i in range(sum(rows))]
blob = b"".join(struct.pack("<%df" % F, *r) for r in xs)
offs = [3, 3 + 4 * F * rows[0] + 9]   # unaligned, with a gap
size = 4096
os.ftruncate(fd, size)
os.pwrite(fd, blob[:4 * F * rows[0]], offs[0])
os.pwrite(fd, blob[4 * F * rows[0]:], offs[1])
parts = [[offs[0], rows[0]], [offs[1], rows[1]]]
if case == "bad-rows": parts[1][1] = 2
if case == "bad-offset": parts[1][0] = 4090
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     preexec_fn=lambda: os.dup2(fd, 3), pass_fds=(3,))
reqs = [{"type": "init", "in": F, "seed": 1, "shm_fd": 3},
        {"type": "forward", "train": False, "x": {"dtype": "f32", "shape": [5, F],
         "shm": {"offset": offs[0], "size": size, "parts": parts}}},
        {"type": "forward", "train": False, "x": {"dtype": "f32", "shape": [5, F], "data": blob}},
        {"type": "quit"}]
out, err = p.communicate(b"".join(msgpack.packb(r, use_bin_type=True) for r in reqs))
sys.stderr.write(err.decode())
up = msgpack.Unpacker(raw=False)
up.feed(out)
ans = list(up)
if case == "ok":
    assert ans[0].get("shm") is True, ans[0]
    assert ans[1]["type"] == "ok" and ans[2]["type"] == "ok", ans[1]
    assert ans[1]["y"]["data"] == ans[2]["y"]["data"], "blocks and frame differ"
    print("same")
else:
    sys.stderr.write(str(ans[1].get("message", "")) + "\n")
    sys.exit(1 if ans[1]["type"] == "error" else 0)
EOF
	run "perf-5.parts" 0 "$PY" parts.py encode --stage --layers 4 ok
	out_has "same"
	run "perf-5.parts-bad-rows" 1 "$PY" parts.py encode --stage --layers 4 bad-rows
	err_has "x: shm.parts: the blocks' rows do not add up to shape[0] = 5"
	run "perf-5.parts-bad-offset" 1 "$PY" parts.py encode --stage --layers 4 bad-offset
	err_has "do not fit the shared region of 4096 bytes"
fi
