#!/bin/sh
# tests/cli/faults.sh: kill -9 of each training stage in the middle of a run.
# train-step must exit 1 naming the stage, leave the last checkpoint whole (no temporary
# files), and --resume from that checkpoint must reach the very model an uninterrupted
# run writes. The run is held between epochs (its input paused) while the stage is
# killed, so the test does not race the training.
. "$(dirname "$0")/../lib.sh"
cd "$TMP" || exit 1
PY=""
for py in python3 /usr/bin/python3; do
	if "$py" -c 'import msgpack' 2>/dev/null; then PY=$py; break; fi
done
[ -n "$PY" ] || exit 0

awk -v n=100 -v noise=0.1 -v deg=0 -v s=1 -v p=s -f "$ROOT/tests/moons.awk" > source.csv
awk -v n=100 -v noise=0.1 -v deg=35 -v s=2 -v p=t -f "$ROOT/tests/moons.awk" > target.csv
normalize --quiet --label-column label --domain source source.csv > s.mpk
normalize --quiet --label-column label --domain target target.csv > t.mpk
batch --quiet --source s.mpk --target t.mpk --epochs 5 --batch-size 32 --seed 1 > b.mpk
# cut the batch stream after the epoch_end frame of epoch 1: part1 = epochs 0-1
"$PY" - b.mpk <<'PYEOF'
import sys, msgpack
data = open(sys.argv[1], "rb").read()
u = msgpack.Unpacker(raw=False)
u.feed(data)
for fr in u:
    if fr.get("type") == "epoch_end" and fr.get("epoch") == 1:
        cut = u.tell()
        break
open("part1.mpk", "wb").write(data[:cut])
open("part2.mpk", "wb").write(data[cut:])
PYEOF

E="encode --stage --layers 16,16"
C="predict --stage --layers 16"
D="discriminate --stage --method dann --layers 16"
common="--quiet --method dann --lr 1e-3 --patience 100 --seed 7"
# shellcheck disable=SC2086
run faults-1.full 0 train-step $common --encoder "$E" --classifier "$C" --discriminator "$D" --out full.mpk b.mpk

n=1
for st in encoder classifier discriminator; do
	case $st in
	encoder) cmd=$E ;;
	classifier) cmd=$C ;;
	discriminator) cmd=$D ;;
	esac
	wrapped="echo \$\$ > $st.pid; exec $cmd"
	e=$E c=$C d=$D
	case $st in
	encoder) e=$wrapped ;;
	classifier) c=$wrapped ;;
	discriminator) d=$wrapped ;;
	esac
	n=$((n + 1))
	rm -f ck.mpk killed "$st.pid"
	# epochs 0-1 flow at once; the rest waits until the stage has been killed
	# shellcheck disable=SC2086
	{ cat part1.mpk; while [ ! -e killed ]; do sleep 0.1; done; cat part2.mpk; } |
		train-step $common --encoder "$e" --classifier "$c" --discriminator "$d" \
			--checkpoint ck.mpk --out "m-$st.mpk" >/dev/null 2>"err-$st" &
	tp=$!
	# wait for the checkpoint of epoch 1 (the run then waits for input)
	i=0
	while [ $i -lt 300 ]; do
		if [ -s "$st.pid" ] && [ -s ck.mpk ] && "$PY" -c '
import sys, msgpack
h = next(msgpack.Unpacker(open("ck.mpk", "rb"), raw=False))
sys.exit(0 if h.get("trainer", {}).get("epoch") == 1 else 1)
' 2>/dev/null; then break; fi
		sleep 0.1
		i=$((i + 1))
	done
	sleep 0.5
	cp ck.mpk "ck-before-$st.mpk"
	kill -9 "$(cat "$st.pid")"
	touch killed
	wait $tp
	rc=$?
	if [ "$rc" -eq 1 ]; then pass "faults-$n.1 kill -9 $st: exit 1"; else fail "faults-$n.1 kill -9 $st: exit 1" "exit $rc: $(cat "err-$st")"; fi
	if grep -q "^train-step: $st stage (.*) died (.*killed by signal 9)" "err-$st"; then
		pass "faults-$n.2 the message names the $st stage"
	else
		fail "faults-$n.2 the message names the $st stage" "$(cat "err-$st")"
	fi
	ok "faults-$n.3 no model written" test ! -e "m-$st.mpk"
	ok "faults-$n.4 the checkpoint is the one of epoch 1, whole" cmp ck.mpk "ck-before-$st.mpk"
	ok "faults-$n.5 no temporary files" sh -c '! ls | grep -q "\.tmp\."'
	# shellcheck disable=SC2086
	run "faults-$n.6 resume after the $st was killed" 0 train-step $common --encoder "$E" --classifier "$C" \
		--discriminator "$D" --resume ck.mpk --out "r-$st.mpk" b.mpk
	ok "faults-$n.7 the resumed model equals the uninterrupted one" cmp full.mpk "r-$st.mpk"
done
