#!/bin/sh
# tests/bench_normalize.sh: normalize throughput and peak memory on a generated
# 2,000 x 20,000 samples-as-rows count table (CSV, plain and gzip): read + log2(x+1) +
# applying saved z-score statistics. Where python3 has pandas, the same work in pandas
# (read_csv, log2(x+1), z-score) side by side. Prints a Markdown table.
#   BIN=bin sh tests/bench_normalize.sh        (ROWS=, COLS= to change the size)
set -eu
: "${BIN:=bin}"
BIN=$(cd "$BIN" && pwd)
ROWS=${ROWS:-2000}
COLS=${COLS:-20000}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dapipe-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
[ -x /usr/bin/time ] || { echo "bench_normalize: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

awk -v r="$ROWS" -v c="$COLS" 'BEGIN {
	srand(1)
	printf "id"; for (j = 1; j <= c; j++) printf ",G%d", j; printf "\n"
	for (i = 1; i <= r; i++) {
		printf "S%d", i
		for (j = 1; j <= c; j++) printf ",%d", int(rand() * rand() * 2000)
		printf "\n"
	}
}' >"$TMP/data.csv"
gzip -1 -c "$TMP/data.csv" >"$TMP/data.csv.gz"
head -n 201 "$TMP/data.csv" >"$TMP/fit.csv"
"$BIN/normalize" -q --log2 --zscore --fit-stats "$TMP/s.mpk" "$TMP/fit.csv" >/dev/null

# measure CMD...: sets WALL (s) and RSS (MiB)
measure() {
	/usr/bin/time -v "$@" >/dev/null 2>"$TMP/time.txt" || { cat "$TMP/time.txt" >&2; exit 1; }
	WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$TMP/time.txt")
	RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$TMP/time.txt")
}
row() { # name file
	size=$(wc -c <"$2")
	awk -v n="$1" -v s="$size" -v w="$WALL" -v r="$ROWS" -v m="$RSS" -v base="${3:-}" 'BEGIN {
		ratio = base != "" && w > 0 ? sprintf("%.1fx", w / base) : ""
		printf "| %s | %.1f | %.2f | %.0f | %.0f | %s | %s |\n", n, s / 1048576, w, s / 1048576 / w, r / w, m, ratio }'
}

echo "normalize: $ROWS samples x $COLS genes, read + log2(x+1) + saved z-score statistics"
echo
echo "| run | input MiB | wall s | MB/s | rows/s | peak RSS MiB | pandas / normalize |"
echo "|---|---|---|---|---|---|---|"
measure "$BIN/normalize" -q --stats "$TMP/s.mpk" "$TMP/data.csv"
row "normalize, CSV" "$TMP/data.csv"
NW=$WALL
measure "$BIN/normalize" -q --stats "$TMP/s.mpk" "$TMP/data.csv.gz"
row "normalize, CSV gzip" "$TMP/data.csv.gz"
NWZ=$WALL
measure "$BIN/normalize" -q --log2 --zscore "$TMP/data.csv"
row "normalize, fit z-score on the input (whole)" "$TMP/data.csv"
PY=
for p in python3 /usr/bin/python3; do
	if "$p" -c 'import pandas, numpy' 2>/dev/null; then PY=$p; break; fi
done
if [ -n "$PY" ]; then
	cat >"$TMP/p.py" <<'PY'
import sys, numpy as np, pandas as pd
df = pd.read_csv(sys.argv[1], index_col=0)
x = np.log2(df.to_numpy(dtype=np.float32) + 1)
x = (x - x.mean(axis=0)) / x.std(axis=0)
PY
	measure "$PY" "$TMP/p.py" "$TMP/data.csv"
	row "pandas, CSV" "$TMP/data.csv" "$NW"
	measure "$PY" "$TMP/p.py" "$TMP/data.csv.gz"
	row "pandas, CSV gzip" "$TMP/data.csv.gz" "$NWZ"
else
	echo
	echo "(pandas not installed: no comparison)"
fi
