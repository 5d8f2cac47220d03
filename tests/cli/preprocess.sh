#!/bin/sh
# tests/cli/preprocess.sh: pipelines/preprocess (chunked normalize with GNU parallel)
# and the two normalize modes it uses (--concat, --list-samples).
# The chunked result is compared with one normalize run on the whole input: the same
# bytes when nothing is fitted from sums (CPM, log2; several inputs; HDF5 ranges),
# and with fitted z-score/top-variable statistics the same ids, labels, domains and
# genes with every value within 1e-5 (the merged sums are added in another order).
# shellcheck disable=SC1091,SC2015,SC2012,SC2086
. "$(dirname "$0")/../lib.sh"
P="$ROOT/pipelines/preprocess"
S=$ROOT/samples
export DAPIPE_BIN="$BIN"
cd "$TMP" || exit 1

if ! command -v parallel >/dev/null 2>&1; then
	echo "# GNU parallel missing: preprocess tests skipped"
	exit 0
fi

# same_values NAME A.mpk B.mpk TOL: ids, domains, labels and genes equal, numbers within TOL
same_values() {
	name=$1
	normalize --show csv "$2" >"$TMP/a.csv" 2>/dev/null && normalize --show csv "$3" >"$TMP/b.csv" 2>/dev/null ||
		{ fail "$name" "cannot read the streams"; return; }
	r=$(awk -F, -v tol="$4" 'NR == FNR { a[FNR] = $0; n = FNR; next }
		{
			if (FNR > n) { print "more rows"; exit }
			m = split(a[FNR], r, ",")
			if (m != NF) { print "line " FNR ": " m " and " NF " fields"; exit }
			for (i = 1; i <= NF; i++) {
				if (FNR == 1 || i <= 3) { if ($i != r[i]) { print "line " FNR " field " i ": " r[i] " and " $i; exit } }
				else { d = $i - r[i]; if (d < 0) d = -d; if (d > big) big = d }
			}
			rows = FNR
		}
		END { if (rows != n) print "rows " n " and " rows; else if (big > tol) print "max difference " big " above " tol }' \
		"$TMP/a.csv" "$TMP/b.csv")
	if [ -z "$r" ] && [ "$(wc -l <"$TMP/a.csv")" -gt 1 ]; then pass "$name"; else fail "$name" "${r:-no rows}"; fi
}

# the bytes of two files are the same
same_bytes() {
	if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$(cmp "$2" "$3" 2>&1 | head -n 1)"; fi
}

# ---- usage (preprocess-1.x)
run "preprocess-1.1 --help" 0 sh "$P" --help
out_has "Usage: pipelines/preprocess"
run "preprocess-1.2 no --out" 2 sh "$P" "$S/archs4.tsv.gz"
err_is "preprocess: --out DIR is required
Try 'preprocess --help' for more information."
run "preprocess-1.3 --chunks 0" 2 sh "$P" --out o --chunks 0 "$S/archs4.tsv.gz"
err_has "preprocess: --chunks: 0: must be at least 1"
run "preprocess-1.4 --chunks and --chunk-rows" 2 sh "$P" --out o --chunks 2 --chunk-rows 5 "$S/archs4.tsv.gz"
err_has "--chunks and --chunk-rows exclude each other"
run "preprocess-1.5 ComBat refused" 2 sh "$P" --out o --log2 --combat series "$S/archs4.tsv.gz"
err_has "preprocess: --combat: ComBat statistics cannot be merged from chunks"
run "preprocess-1.6 quantile with z-score refused" 2 sh "$P" --out o --quantile --zscore "$S/archs4.tsv.gz"
err_has "preprocess: --quantile with --zscore: statistics merged from chunks would not equal"
run "preprocess-1.7 missing input" 1 sh "$P" --out o "$TMP/nothing.csv"
err_has "nothing.csv: cannot read"
run "preprocess-1.8 stdin refused" 2 sh "$P" --out o -
err_has "the inputs must be files"
run "preprocess-1.9 transforms with --stats" 2 sh "$P" --out o --stats "$S/genes.tsv" --log2 "$S/archs4.tsv.gz"
err_has "transform options with --stats/--like"

# ---- rows of a gzip TSV (preprocess-2.x)
A="--label-column tissue --ignore-column series"
# shellcheck disable=SC2086
normalize --quiet $A --cpm --log2 "$S/archs4.tsv.gz" >ref1.mpk
# shellcheck disable=SC2086
run "preprocess-2.1 cpm log2 in 3 chunks" 0 sh "$P" --quiet --out p1 --chunks 3 $A --cpm --log2 "$S/archs4.tsv.gz"
same_bytes "preprocess-2.2 the same bytes as one normalize run" ref1.mpk p1/data.mpk
[ ! -d p1/chunks ] && pass "preprocess-2.3 chunks removed" || fail "preprocess-2.3 chunks removed" "p1/chunks is there"
# shellcheck disable=SC2086
run "preprocess-2.4 chunks of 50 rows, 2 jobs, --sshlogin :" 0 sh "$P" --quiet --out p1b --chunk-rows 50 --jobs 2 --sshlogin : --keep-chunks $A --cpm --log2 "$S/archs4.tsv.gz"
same_bytes "preprocess-2.5 the same bytes" ref1.mpk p1b/data.mpk
n=$(ls p1b/chunks/*.mpk 2>/dev/null | wc -l)
[ "$n" -eq 24 ] && pass "preprocess-2.6 24 chunks of 50 rows" || fail "preprocess-2.6 24 chunks of 50 rows" "$n chunk streams"

FIT="--drop-zero --cpm --log2 --top-variable 400 --zscore"
# shellcheck disable=SC2086
normalize --quiet $A $FIT --fit-stats ref2.stats "$S/archs4.tsv.gz" >ref2.mpk
# shellcheck disable=SC2086
run "preprocess-2.7 fitted statistics, 5 chunks" 0 sh "$P" --quiet --out p2 --chunks 5 --fit-stats p2.stats $A $FIT "$S/archs4.tsv.gz"
same_values "preprocess-2.8 values within float rounding of one run" ref2.mpk p2/data.mpk 1e-5
same_bytes "preprocess-2.9 --fit-stats is the merged statistics" p2.stats p2/stats.mpk
# the merged statistics prepare new data like the single run's (within rounding)
normalize --quiet $A --stats ref2.stats "$S/archs4.tsv.gz" >new-ref.mpk
normalize --quiet $A --stats p2.stats "$S/archs4.tsv.gz" >new-p.mpk
same_values "preprocess-2.10 merged statistics apply like the whole fit" new-ref.mpk new-p.mpk 1e-5
# a broken reference must fail the comparison
normalize --quiet $A --cpm --log2 --zscore "$S/archs4.tsv.gz" >other.mpk
r=$(same_values x ref2.mpk other.mpk 1e-5)
case "$r" in FAIL*) pass "preprocess-2.11 the comparison can fail" ;; *) fail "preprocess-2.11 the comparison can fail" "$r" ;; esac

# ---- several inputs, different gene lists (preprocess-3.x)
gzip -dc "$S/archs4.tsv.gz" >all.tsv
head -n 400 all.tsv >part1.tsv
{ head -n 1 all.tsv; tail -n +401 all.tsv; } | cut -f1-10,30- >part2.tsv
# shellcheck disable=SC2086
normalize --quiet $A --cpm --log2 part1.tsv part2.tsv >ref3.mpk
# shellcheck disable=SC2086
run "preprocess-3.1 two inputs as two chunks" 0 sh "$P" --quiet --out p3 $A --cpm --log2 part1.tsv part2.tsv
same_bytes "preprocess-3.2 the same bytes (genes of the first input)" ref3.mpk p3/data.mpk
# shellcheck disable=SC2086
normalize --quiet $A --log2 --zscore part1.tsv part2.tsv >ref3b.mpk
# shellcheck disable=SC2086
run "preprocess-3.3 two inputs split in 2 each, z-score" 0 sh "$P" --quiet --out p3b --chunks 2 $A --log2 --zscore part1.tsv part2.tsv
same_values "preprocess-3.4 values within float rounding" ref3b.mpk p3b/data.mpk 1e-5
normalize --quiet $A --log2 --domain "one name" part1.tsv part2.tsv >ref3d.mpk
run "preprocess-3.7 --domain once for two inputs" 0 sh "$P" --quiet --out p3d --chunks 2 --domain "one name" $A --log2 part1.tsv part2.tsv
same_bytes "preprocess-3.8 the same bytes" ref3d.mpk p3d/data.mpk
normalize --quiet $A --log2 --domain a --domain b part1.tsv part2.tsv >ref3e.mpk
run "preprocess-3.9 --domain per input" 0 sh "$P" --quiet --out p3e --chunks 2 --domain a --domain b $A --log2 part1.tsv part2.tsv
same_bytes "preprocess-3.10 the same bytes" ref3e.mpk p3e/data.mpk
# shellcheck disable=SC2086
run "preprocess-3.5 --stats given: applied to every chunk" 0 sh "$P" --quiet --out p3c --chunks 3 $A --stats ref2.stats "$S/archs4.tsv.gz"
same_bytes "preprocess-3.6 the same bytes as normalize --stats" new-ref.mpk p3c/data.mpk

# ---- HDF5 by sample ranges (preprocess-4.x)
CC=${CC:-cc}
H5CFLAGS=$(pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
H5LIBS=$(pkg-config --libs hdf5 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5)
LIB=${UNITS:-$ROOT/build/tests}/../libdapipe.a
# shellcheck disable=SC2086
if $CC -std=c11 -D_GNU_SOURCE -O1 -I"$ROOT/common" $H5CFLAGS "$ROOT/tests/tools/gen-h5.c" -o gen-h5 "$LIB" $H5LIBS -lmsgpackc -lz -lm 2>/dev/null &&
	./gen-h5 --genes 120 --samples 300 --series 5 t.h5 2>/dev/null; then
	run "preprocess-4.1 --list-samples" 0 normalize --list-samples --quiet t.h5
	[ "$(wc -l <"$OUT")" -eq 300 ] && [ "$(head -n 1 "$OUT")" = GSM1000000 ] &&
		pass "preprocess-4.2 300 ids in file order" || fail "preprocess-4.2 300 ids in file order" "$(head -n 2 "$OUT")"
	run "preprocess-4.3 --list-samples --where" 0 normalize --list-samples --quiet --where characteristics_ch1~lung t.h5
	m=$(normalize --quiet --where characteristics_ch1~lung t.h5 | normalize --show csv | tail -n +2 | cut -d, -f1 | cmp -s - "$OUT" && echo same)
	[ "$m" = same ] && pass "preprocess-4.4 the ids normalize reads" || fail "preprocess-4.4 the ids normalize reads" "lists differ"
	run "preprocess-4.5 --list-samples on a CSV" 1 normalize --list-samples "$TMP/all.tsv"
	H="--label-field source_name_ch1 --where characteristics_ch1~donor"
	# shellcheck disable=SC2086
	normalize --quiet $H --cpm --log2 t.h5 >ref4.mpk
	# shellcheck disable=SC2086
	run "preprocess-4.6 HDF5 in 4 sample ranges" 0 sh "$P" --quiet --out p4 --chunks 4 $H --cpm --log2 t.h5
	same_bytes "preprocess-4.7 the same bytes" ref4.mpk p4/data.mpk
	# shellcheck disable=SC2086
	normalize --quiet $H --log2 --zscore t.h5 >ref4b.mpk
	# shellcheck disable=SC2086
	run "preprocess-4.8 HDF5 chunks of 37 samples, z-score" 0 sh "$P" --quiet --out p4b --chunk-rows 37 $H --log2 --zscore t.h5
	same_values "preprocess-4.9 values within float rounding" ref4b.mpk p4b/data.mpk 1e-5
else
	echo "# HDF5 tools could not be built: HDF5 chunk tests skipped"
fi

# ---- normalize --concat (preprocess-5.x)
normalize --quiet $A --log2 part1.tsv >c1.mpk
normalize --quiet $A --log2 --zscore part1.tsv >c2.mpk
run "preprocess-5.1 --concat of streams with different preprocessing" 1 normalize --concat c1.mpk c2.mpk
err_has 'c1.mpk and c2.mpk: header key "preprocessing" differs'
normalize --quiet $A --log2 part2.tsv >c3.mpk
run "preprocess-5.2 --concat of streams with other genes" 1 normalize --concat c1.mpk c3.mpk
err_has "features differ"
head -c 100000 c1.mpk >trunc.mpk
run "preprocess-5.3 --concat of a truncated stream" 1 normalize --concat c1.mpk trunc.mpk
run "preprocess-5.4 --concat re-cuts frames" 0 normalize --concat --block-rows 100 c1.mpk c1.mpk
normalize --show shapes "$OUT" >shapes.txt 2>&1
grep -q 'end rows=798 frames=8' shapes.txt && pass "preprocess-5.5 798 rows in 8 frames" || fail "preprocess-5.5 798 rows in 8 frames" "$(tail -n 1 shapes.txt)"
