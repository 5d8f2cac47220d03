#!/bin/sh
# tests/cli/batch_large.sh: batch's file-backed rows (--spill DIR, --memory-limit MB).
# Inputs from tests/tools/gen-rows (built here against the suite's library). The same
# seed gives the same bytes (batches, --split, --test-out) in memory, spilled, and with
# only one input spilled; the spill file leaves nothing behind; peak RSS of a spilled
# run stays below the in-memory run's by most of the input's size; errors.
# shellcheck disable=SC1091,SC2015,SC2086
. "$(dirname "$0")/../lib.sh"
cd "$TMP" || exit 1

CC=${CC:-cc}
LIB=${UNITS:-$ROOT/build/tests}/../libdapipe.a
SAN=""
[ -n "${SANITIZE:-}" ] && SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
ok "batch_large-0.1 build gen-rows" $CC -std=c11 -D_GNU_SOURCE -O2 -g $SAN -I"$ROOT/common" \
	"$ROOT/tests/tools/gen-rows.c" -o gen-rows "$LIB" -lmsgpackc -lz -lm
[ -x gen-rows ] || exit 1

./gen-rows --rows 3000 --features 300 --classes 5 --domain src --prefix s >S.mpk
./gen-rows --rows 400 --features 300 --classes 5 --seed 2 --domain tgt --prefix t >T.mpk
mkdir spill

same() { # NAME FILE FILE
	if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$(cmp "$2" "$3" 2>&1 | head -n 1)"; fi
}

# ---- the same bytes (batch_large-1.x)
n=0
for o in "" "--labeled-fraction 0.2" "--balance-classes --labeled-per-class 3" "--batch-size 7 --target-batch-size 5 --seed 9"; do
	n=$((n + 1))
	run "batch_large-1.$n.1 in memory: $o" 0 batch --source S.mpk --target T.mpk --epochs 3 --split mem.csv --test-out mem-test.mpk $o
	mv "$OUT" mem.mpk
	run "batch_large-1.$n.2 --spill DIR: $o" 0 batch --source S.mpk --target T.mpk --epochs 3 --split sp.csv --test-out sp-test.mpk --spill spill $o
	err_has "S.mpk: 3000 rows x 300 features (3.4 MiB) spilled to a temporary file in spill"
	same "batch_large-1.$n.3 batches" mem.mpk "$OUT"
	same "batch_large-1.$n.4 split" mem.csv sp.csv
	same "batch_large-1.$n.5 test rows" mem-test.mpk sp-test.mpk
	run "batch_large-1.$n.6 --memory-limit 2: the source spilled, not the target" 0 batch --source S.mpk --target T.mpk --epochs 3 --memory-limit 2 $o
	err_has "S.mpk: 3000 rows"
	if grep -q "T.mpk: 400 rows x" "$ERR"; then fail "batch_large-1.$n.7 target in memory" "$(cat "$ERR")"; else pass "batch_large-1.$n.7 target in memory"; fi
	same "batch_large-1.$n.8 batches" mem.mpk "$OUT"
done
run "batch_large-1.9 --memory-limit 0 --spill DIR with --test" 0 batch --source S.mpk --target T.mpk --test T.mpk --test-out a.mpk --memory-limit 0 --spill spill --epochs 2
err_has "T.mpk: 400 rows x 300 features (0.5 MiB) spilled"
mv "$OUT" spilled.mpk
run "batch_large-1.10 the same in memory" 0 batch --source S.mpk --target T.mpk --test T.mpk --test-out b.mpk --epochs 2
same "batch_large-1.11 batches" spilled.mpk "$OUT"
same "batch_large-1.12 test rows" a.mpk b.mpk
left=$(find spill -type f | wc -l)
[ "$left" -eq 0 ] && pass "batch_large-1.13 no spill file left" || fail "batch_large-1.13 no spill file left" "$left files in spill/"
run_in "batch_large-1.14 stdin source spilled" 0 S.mpk batch --source - --target T.mpk --spill spill --epochs 2 --quiet
run "batch_large-1.15 the same from a file" 0 batch --source S.mpk --target T.mpk --epochs 2 --quiet
cp "$OUT" f.mpk
batch --source - --target T.mpk --spill spill --epochs 2 --quiet <S.mpk >s.mpk 2>/dev/null
same "batch_large-1.16 stdin spilled equals file in memory" f.mpk s.mpk

# ---- errors (batch_large-2.x)
run "batch_large-2.1 --spill to a missing folder" 1 batch --source S.mpk --target T.mpk --spill "$TMP/none"
err_has "batch: --spill $TMP/none: No such file or directory"
run "batch_large-2.2 --memory-limit -1" 2 batch --source S.mpk --target T.mpk --memory-limit -1
err_has "--memory-limit: -1"
run "batch_large-2.3 --spill ''" 2 batch --source S.mpk --target T.mpk --spill ""
err_has "--spill: empty folder name"
head -c 1000000 S.mpk >cut.mpk
run "batch_large-2.4 truncated source while spilling" 1 batch --source cut.mpk --target T.mpk --spill spill
left=$(find spill -type f | wc -l)
[ "$left" -eq 0 ] && pass "batch_large-2.5 no spill file left after an error" || fail "batch_large-2.5 no spill file left after an error" "$left files"

# ---- memory (batch_large-3.x): 20,000 x 1,000 source rows (80 MB)
if [ -x /usr/bin/time ] && [ -z "${SANITIZE:-}" ]; then
	./gen-rows --rows 20000 --features 1000 --prefix b >B.mpk
	rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
	./gen-rows --rows 200 --features 1000 --seed 3 --prefix u >T2.mpk
	m=$(rss batch --source B.mpk --target T2.mpk --epochs 1 --quiet)
	s=$(rss batch --source B.mpk --target T2.mpk --epochs 1 --quiet --spill spill)
	# in memory holds the 76 MiB of rows; spilled holds a validation frame (7.6 MiB) and
	# one input frame (1 MiB)
	if [ -n "$m" ] && [ -n "$s" ] && [ "$s" -lt $((m - 50000)) ]; then
		pass "batch_large-3.1 spilled peak RSS ${s} kB, in memory ${m} kB"
	else
		fail "batch_large-3.1 spilled peak RSS" "spilled '${s}' kB, in memory '${m}' kB"
	fi
fi
