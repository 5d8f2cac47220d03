#!/bin/sh
# samples/shift-experiment.sh: the cohort-shift measurements of docs/PIPELINES.md.
# Builds gen-samples with the given compile-time flags (none: the committed
# samples), writes generator seeds 1-3, prepares five datasets (TCGA-like seeds 1-3
# and ARCHS4-like seeds 1-2, each -> GTEx-like), runs pipelines/adapt on each and
# prints target test accuracy per dataset and the mean.
#   sh samples/shift-experiment.sh [-DNAME=VALUE ...]
#   e.g. sh samples/shift-experiment.sh -DTCGA_TUMOUR=1 -DARCHS4_TUMOUR=0.5
# Environment:
#   OUT       results folder (default a new temporary one; kept); runs already done
#             there are not repeated
#   METHODS   "source-only dann target-only"; METHOD:ALIGN adds adapt's --align
#             (e.g. dann:conditional-entropy); target-only runs with
#             --labeled-fraction 1 unless LABELS is set
#   LABELS    e.g. "--labeled-per-class 5": every run supervised
#   SEEDS     "1": adapt's --seed, which draws the splits and the initialisation; a
#             cell is the mean over the seeds, a last column the sd over seeds of the
#             five-dataset mean
#   EPOCHS (30), JOBS (2; each run uses one BLAS thread), GEN_OPTS (more gen-samples
#   options, e.g. "--genes 500"), BIN (bin), BUILD (build: where libdapipe.a is)
# Needs `make` first, and GNU parallel.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${BIN:-bin}
BUILD=${BUILD:-build}
METHODS=${METHODS:-source-only dann target-only}
LABELS=${LABELS:-}
EPOCHS=${EPOCHS:-30}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-1}
GEN_OPTS=${GEN_OPTS:-}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/dapipe-shift.XXXXXX")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -f "$BUILD/libdapipe.a" ] || { echo "shift-experiment: $BUILD/libdapipe.a missing (run make first)" >&2; exit 1; }
command -v parallel >/dev/null || { echo "shift-experiment: needs GNU parallel" >&2; exit 1; }
[ -x "$BIN/train-step" ] || { echo "shift-experiment: $BIN: no dapipe filters there (run make first)" >&2; exit 1; }
DAPIPE_BIN=$(cd "$BIN" && pwd)
export OPENBLAS_NUM_THREADS=1 DAPIPE_BIN

# the generator variant (the library's link flags, as the Makefile uses them)
LIBS=$(env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make --no-print-directory -s -f - print-libs <<'EOF' 2>/dev/null || true
include Makefile
print-libs:
	@echo $(LDLIBS)
EOF
)
[ -n "$LIBS" ] || LIBS="-lopenblas -lcsv -lmsgpackc -lz -lm"
# shellcheck disable=SC2086
${CC:-cc} -O2 -std=c11 -D_GNU_SOURCE -Icommon "$@" samples/gen-samples.c -o "$OUT/gen-samples" \
	"$BUILD/libdapipe.a" $LIBS
echo "shift-experiment: generator flags: ${*:-(none: the committed samples)}; results in $OUT" >&2

for s in 1 2 3; do
	# shellcheck disable=SC2086
	[ -d "$OUT/g$s" ] || "$OUT/gen-samples" --out "$OUT/g$s" --seed "$s" --quiet $GEN_OPTS
done
DS="T1 T2 T3 A1 A2"
for ds in $DS; do
	s=${ds#?}
	g=$OUT/g$s
	p=$OUT/p$ds
	[ -d "$p" ] && continue
	case $ds in
	T*) src=$g/tcga.csv.gz opts=--zscore ;;
	A*) zcat "$g/archs4.tsv.gz" | cut -f1,2,4- >"$OUT/archs4-$s.tsv"  # the series column cut off
	    src=$OUT/archs4-$s.tsv opts='--cpm --log2 --zscore' ;;
	esac
	pipelines/adapt --prepare-only --out "$p" --source "$src" --label-column tissue \
		--normalize-opts "$opts" --target "$g/gtex.gct.gz" --target-labels "$g/gtex_labels.csv" \
		--target-pre --log2 >/dev/null 2>"$OUT/prepare-$ds.log" ||
		{ cat "$OUT/prepare-$ds.log" >&2; exit 1; }
done
: >"$OUT/jobs.txt"
for ds in $DS; do
	for m in $METHODS; do
		lab=$LABELS
		[ -z "$lab" ] && [ "$m" = target-only ] && lab="--labeled-fraction 1"
		al=""
		case $m in *:*) al="--align ${m#*:}" ;; esac
		for sd in $SEEDS; do
			r=$OUT/r-$ds-$m-seed$sd
			[ ! -s "$r/summary.csv" ] || continue  # done by an earlier call with this OUT
			echo "pipelines/adapt --prepared $OUT/p$ds --epochs $EPOCHS --seed $sd --method ${m%%:*} $al $lab --out $r >/dev/null 2>$r.log" >>"$OUT/jobs.txt"
		done
	done
done
parallel -j "$JOBS" <"$OUT/jobs.txt" || { echo "shift-experiment: a run failed (logs in $OUT)" >&2; exit 1; }

printf '| run |'; for ds in $DS; do printf ' %s |' "$ds"; done; echo ' mean | sd over seeds |'
printf '|---|'; for ds in $DS; do printf -- '---|'; done; echo '---|---|'
for m in $METHODS; do
	for ds in $DS; do
		for sd in $SEEDS; do
			printf '%s %s ' "$ds" "$sd"
			awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "accuracy") c = i; next } { print $c; exit }' \
				"$OUT/r-$ds-$m-seed$sd/summary.csv"
		done
	done | awk -v m="$m" -v dsl="$DS" '
		{ a[$1] += $3; n[$1]++; s[$2] += $3; k[$2]++ }
		END {
			nd = split(dsl, d, " "); printf "| %s |", m; t = 0
			for (i = 1; i <= nd; i++) { printf " %.3f |", a[d[i]] / n[d[i]]; t += a[d[i]] / n[d[i]] }
			ns = 0; sum = 0; sq = 0
			for (e in s) { v = s[e] / k[e]; ns++; sum += v; sq += v * v }
			sdv = ns > 1 ? sqrt((sq - sum * sum / ns) / (ns - 1)) : 0
			printf " %.3f | %s |\n", t / nd, (ns > 1 ? sprintf("%.3f", sdv) : "-") }'
done
