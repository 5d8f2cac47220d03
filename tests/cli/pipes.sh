#!/bin/sh
# tests/cli/pipes.sh: broken pipes, producers killed mid-stream, full disks.
# - `filter | head -c 10`: the filter dies of SIGPIPE quietly (stderr empty, no
#   "write error" spam): filters keep SIGPIPE default.
# - a producer killed mid-stream: the consumer sees no end frame and exits 1 with
#   "stream ends without an end frame" or "truncated frame".
# - stdout on /dev/full: exit 1 with one "write error" message.
# Filters that are not built are skipped; every command runs under timeout 20.
. "$(dirname "$0")/../lib.sh"
have() { [ -x "$BIN/$1" ]; }
T="timeout 20"
cd "$TMP" || exit 1

PY=python3
if ! "$PY" -c 'import msgpack' 2>/dev/null; then PY=/usr/bin/python3; fi
"$PY" - <<'PYEOF'
import random
random.seed(2)
for name, n in (("src", 3000, ), ("tgt", 400)):
    with open(name + ".csv", "w") as f:
        f.write("id,label," + ",".join("g%d" % j for j in range(50)) + "\n")
        for i in range(n):
            f.write("%s%d,%s," % (name, i, "AB"[i % 2]) + ",".join("%.3f" % (random.random() * 9) for j in range(50)) + "\n")
PYEOF
have normalize || exit 0
normalize --quiet --label-column label --log2 src.csv >src.mpk || fail pipes-0 "fixture: normalize"
normalize --quiet --label-column label --log2 tgt.csv >tgt.mpk || fail pipes-0 "fixture: normalize"

# sigpipe NAME CMD: CMD | head -c 10; CMD must end by SIGPIPE (or 0) with stderr empty
sigpipe() {
	name=$1; shift
	# shellcheck disable=SC2016
	rc=$($T sh -c '"$@" 2>"$0"; echo $? >"$0.rc"' "$TMP/sp.err" "$@" | head -c 10 | wc -c)
	src=$(cat "$TMP/sp.err.rc" 2>/dev/null || echo "?")
	if [ "$rc" -ne 10 ]; then
		fail "$name" "got $rc bytes, expected 10"
	elif [ -s "$TMP/sp.err" ]; then
		fail "$name" "stderr not empty (exit $src): $(head -c 200 "$TMP/sp.err")"
	elif [ "$src" != 141 ] && [ "$src" != 0 ]; then
		fail "$name" "exit $src, expected death by SIGPIPE (141)"
	else
		pass "$name"
	fi
}
sigpipe pipes-1.1 normalize --quiet --label-column label --log2 src.csv
sigpipe pipes-1.2 normalize --quiet --format stream src.mpk
sigpipe pipes-1.3 normalize --show csv src.mpk
if have batch && have train-step && have encode && have predict && have discriminate; then
	sigpipe pipes-1.4 batch --quiet --source src.mpk --target tgt.mpk --epochs 20
	batch --quiet --source src.mpk --target tgt.mpk --epochs 1 --batch-size 16 >b.mpk
	train-step --quiet --method dann --out model.mpk --encoder-layers 8 --classifier-layers 4 \
		--discriminator-layers 4 b.mpk ||
		fail pipes-0 "fixture: train-step"
	sigpipe pipes-1.5 encode --model model.mpk src.mpk
	encode --model model.mpk src.mpk >z.mpk
	sigpipe pipes-1.6 predict --model model.mpk z.mpk
	sigpipe pipes-1.7 predict --model model.mpk --format stream z.mpk
fi

# killed producers: the consumer reads a stream that stops mid-frame or between frames
# (a producer killed by a signal writes no end frame)
cut_at() { head -c "$1" "$2"; }
size=$(wc -c <src.mpk)
# shellcheck disable=SC2016
run pipes-2.1 1 $T sh -c 'head -c '"$((size / 2))"' src.mpk | normalize --quiet --format stream -'
err_has "<stdin>: frame "
if grep -q "truncated frame" "$ERR" || grep -q "stream ends without an end frame" "$ERR"; then pass "pipes-2.1 (truncation named)"; else fail "pipes-2.1 (truncation named)" "$(cat "$ERR")"; fi
# a real producer killed while writing: a slow writer, killed after the first bytes
cat >slow.sh <<'SHEOF'
# write the stream in 4 KB pieces, slowly, forever-ish; killed from outside
f=$1; n=$(wc -c <"$f"); k=0
while [ "$k" -lt "$n" ]; do dd if="$f" bs=4096 skip=$((k / 4096)) count=1 2>/dev/null; k=$((k + 4096)); sleep 0.05; done
SHEOF
{ sh slow.sh src.mpk & echo $! >slow.pid; wait; } | { $T normalize --quiet --format stream - >/dev/null 2>kill.err; echo $? >kill.rc; } &
reader=$!
sleep 0.3
kill "$(cat slow.pid)" 2>/dev/null
wait "$reader"
if [ "$(cat kill.rc)" = 1 ] && grep -qE "truncated frame|stream ends without an end frame" kill.err; then
	pass "pipes-2.2 killed producer detected"
else
	fail "pipes-2.2 killed producer detected" "exit $(cat kill.rc): $(head -c 200 kill.err)"
fi
if have encode && [ -f model.mpk ]; then
	run pipes-2.3 1 $T sh -c 'head -c '"$((size - 1))"' src.mpk | encode --model model.mpk'
	err_has "<stdin>: frame "
	run pipes-2.4 1 $T sh -c 'normalize --quiet --format stream nosuch.mpk | encode --model model.mpk'
	err_has "encode: <stdin>: empty stream (no header frame)"
	zs=$(wc -c <z.mpk)
	run pipes-2.5 1 $T sh -c 'head -c '"$((zs / 3))"' z.mpk | predict --model model.mpk'
	err_has "predict: <stdin>: frame "
	bs=$(wc -c <b.mpk)
	cp model.mpk keep.mpk
	run pipes-2.7 1 $T sh -c 'head -c '"$((bs / 2))"' b.mpk | train-step --quiet --method source-only --out keep.mpk --encoder-layers 8 --classifier-layers 4'
	err_has "train-step: <stdin>: frame "
	ok "pipes-2.7 previous model kept" cmp model.mpk keep.mpk
fi

# /dev/full: one write error, exit 1
full() {
	name=$1; shift
	run "$name" 1 $T sh -c '"$@" >/dev/full' sh "$@"
	err_has "write error"
	n=$(grep -c "write error" "$ERR")
	if [ "$n" -eq 1 ]; then pass "$name (one message)"; else fail "$name (one message)" "$n write error lines: $(head -c 300 "$ERR")"; fi
}
full pipes-3.1 normalize --quiet --label-column label --log2 src.csv
full pipes-3.2 normalize --show csv src.mpk
full pipes-3.3 normalize --quiet --format stream src.mpk
if have batch && [ -f model.mpk ]; then
	full pipes-3.4 batch --quiet --source src.mpk --target tgt.mpk --epochs 1
	full pipes-3.5 encode --model model.mpk src.mpk
	full pipes-3.6 predict --model model.mpk z.mpk
	full pipes-3.7 discriminate --model model.mpk z.mpk
	run pipes-3.8 1 $T normalize --quiet --label-column label --log2 --fit-stats /dev/full/x.stats src.csv
	err_has "/dev/full/x.stats"
fi
