#!/bin/sh
# tests/bench_stain.sh: stain-norm throughput, in images (tiles) per second, for Macenko
# and Reinhard on 256x256 and 1024x1024 synthetic H&E images (gen-tiles), one process
# over all files. Two outputs: an image stream to /dev/null (decode + normalise) and PNG
# files (decode + normalise + PNG encode + atomic write with fsync). Wall time and CPU time
# (user + system, from /usr/bin/time: robust on a busy machine). Prints a Markdown table.
#   BIN=bin sh tests/bench_stain.sh        (N256=, N1024= to change the counts)
set -eu
: "${BIN:=bin}"
BIN=$(cd "$BIN" && pwd)
N256=${N256:-100}
N1024=${N1024:-12}
[ -x /usr/bin/time ] || { echo "bench_stain: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dapipe-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

"$BIN/gen-tiles" -q -o "$TMP/t256" --size 256 -n "$N256" --organs colon --seed 1
"$BIN/gen-tiles" -q -o "$TMP/t1024" --size 1024 -n "$N1024" --organs lung --seed 1
"$BIN/stain-norm" -q --fit "$TMP/t256/colon_benign/colon_benign_0000.png" --fit-out "$TMP/p.mpk"

now() { date +%s.%N; }
# bench NAME METHOD DIR OUTPUT(stream|png)
bench() {
	n=$(find "$3" -name '*.png' | wc -l)
	rm -rf "$TMP/out"
	find "$3" -name '*.png' | sort >"$TMP/list"
	t0=$(now)
	if [ "$4" = stream ]; then
		/usr/bin/time -f "%U %S" -o "$TMP/cpu" xargs "$BIN/stain-norm" -q -m "$2" --params "$TMP/p.mpk" --to-stream <"$TMP/list" >/dev/null
	else
		/usr/bin/time -f "%U %S" -o "$TMP/cpu" xargs "$BIN/stain-norm" -q -m "$2" --params "$TMP/p.mpk" --out-dir "$TMP/out" <"$TMP/list"
	fi
	t1=$(now)
	awk -v name="$1" -v n="$n" -v a="$t0" -v b="$t1" -v o="$4" '{ c = $1 + $2 } END {
		w = b - a; k = name ~ /1024/ ? 16 : 1
		printf "| %s | %s | %d | %.2f | %.1f | %.2f | %.1f |\n", name, o, n, w, n / w, c, n / c * k }' "$TMP/cpu"
}

echo "stain-norm: one process, synthetic H&E from gen-tiles ($(nproc) CPUs)"
echo
echo "| images | output | count | wall s | images/s (wall) | CPU s | 256x256-equivalent tiles per CPU s |"
echo "|---|---|---|---|---|---|---|"
for m in none macenko reinhard; do
	bench "$m 256x256" "$m" "$TMP/t256" stream
	bench "$m 256x256" "$m" "$TMP/t256" png
	bench "$m 1024x1024" "$m" "$TMP/t1024" stream
	bench "$m 1024x1024" "$m" "$TMP/t1024" png
done
