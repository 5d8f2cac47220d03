#!/bin/sh
# tests/cli/normalize.sh: the normalize filter: help, usage errors, every bad input
# with its exact message and exit code, transforms checked against awk, fit/apply,
# merge of chunk statistics, alignment, labels, inspection.
. "$(dirname "$0")/../lib.sh"
cd "$ROOT/tests/fixtures/normalize" || exit 1

run normalize-1.1 0 normalize --help
out_has "--top-variable N"
out_has "--merge-stats OUT"
run normalize-1.2 2 normalize --bogus
err_is "normalize: --bogus: unknown option
Try 'normalize --help' for more information."
run normalize-1.3 2 normalize --top-variable 0 counts.csv
err_has "normalize: --top-variable: 0: must be at least 1"
run normalize-1.4 2 normalize --format xls counts.csv
err_has "normalize: --format: xls: expected auto, csv, tsv, gct or stream (or hdf5 for an HDF5 file)"
run normalize-1.5 2 normalize --stats a.mpk --zscore counts.csv
err_has "the transforms come from the statistics"

# bad inputs: one line naming file, line and column; exit 1
run normalize-2.1 1 normalize -q ragged.csv
err_is "normalize: ragged.csv:3: 2 fields, expected 3 (as in the header line)"
run normalize-2.2 1 normalize -q notnum.csv
err_is "normalize: notnum.csv:3: column 3 (B): 'x1' is not a number"
run normalize-2.3 1 normalize -q empty.csv
err_is "normalize: empty.csv: empty file"
run normalize-2.4 1 normalize -q headeronly.csv
err_is "normalize: headeronly.csv: no data rows (header only)"
run normalize-2.5 1 normalize -q dupid.csv
err_is "normalize: dupid.csv:3: duplicate sample id 'S1' (first in dupid.csv)"
run normalize-2.6 1 normalize -q missing.csv
err_is "normalize: missing.csv:2: column 3 (B): missing value 'NA' (use --missing mean to fill)"
run normalize-2.7 1 normalize -q inf.csv
err_is "normalize: inf.csv:3: column 2 (A): 'Inf' is not a finite number"
run normalize-2.8 1 normalize -q --labels nomatch.csv --label-column cancer counts.csv
err_is "normalize: nomatch.csv: no id matches a sample of the input"
gzip -c counts.csv | head -c 60 >"$TMP/trunc.csv.gz"
run normalize-2.9 1 normalize -q "$TMP/trunc.csv.gz"
err_has "trunc.csv.gz: truncated gzip input"
run normalize-2.10 1 normalize -q nosuch.csv
err_is "normalize: nosuch.csv: cannot open: No such file or directory"
# a failed run leaves the stream without its end frame
normalize -q notnum.csv >"$TMP/partial.mpk" 2>/dev/null
run normalize-2.11 1 normalize --show csv "$TMP/partial.mpk"
err_has "stream ends without an end frame"
run normalize-2.12 1 normalize -q --label-column label --log2 labelled.csv --classes normal
err_is "normalize: labelled.csv:2: label 'tumor' is not in --classes"

# log2(x+1) against awk, labels from a column, class order as first seen
run normalize-3.1 0 normalize -q --label-column label --log2 labelled.csv
normalize --show csv "$OUT" >"$TMP/got.csv"
awk -F, 'NR == 1 { print "id,domain,label,TP53,EGFR,ENSG00000141510.16,MYC"; next }
	{ printf "%s,labelled,%s", $1, $6; for (i = 2; i <= 5; i++) printf ",%.6g", log($i + 1) / log(2); print "" }' labelled.csv >"$TMP/want.csv"
awk -F, 'NR > 1 { for (i = 4; i <= NF; i++) $i = sprintf("%.6g", $i) } { print }' OFS=, "$TMP/got.csv" >"$TMP/got6.csv"
ok normalize-3.2 cmp "$TMP/got6.csv" "$TMP/want.csv"
normalize --show header "$OUT" >"$TMP/h.txt"
ok normalize-3.3 grep -q '"classes": \["tumor", "normal"\]' "$TMP/h.txt"
ok normalize-3.4 grep -q '"steps": \["log2"\]' "$TMP/h.txt"

# labels from a file; unlabelled counted; explicit class order
run normalize-4.1 0 normalize --labels labels.csv --label-column cancer --classes normal,tumor counts.csv
err_has "normalize: 1 of 4 samples have no label (unlabelled)"
normalize --show csv "$OUT" | cut -d, -f1,3 | tr '\n' ' ' >"$TMP/l.txt"
ok normalize-4.2 grep -q "id,label S1,tumor S2,normal S3,tumor S4, " "$TMP/l.txt"
normalize --show header "$OUT" >"$TMP/h.txt"
ok normalize-4.3 grep -q '"classes": \["normal", "tumor"\]' "$TMP/h.txt"
# labels from a file joined to a stream input (the class list learnt before the header)
normalize -q counts.csv >"$TMP/nolab.mpk"
run normalize-4.4 0 normalize -q --labels labels.csv --label-column cancer "$TMP/nolab.mpk"
normalize --show csv "$OUT" | cut -d, -f1,3 | tr '\n' ' ' >"$TMP/l.txt"
ok normalize-4.5 grep -q "id,label S1,tumor S2,normal S3,tumor S4, " "$TMP/l.txt"

# fit on source, apply to target: alignment report, Ensembl versions, case
run normalize-5.1 0 normalize --log2 --zscore --fit-stats "$TMP/s.mpk" --label-column label labelled.csv
cp "$OUT" "$TMP/src.mpk"
run normalize-5.2 0 normalize --stats "$TMP/s.mpk" target.tsv
err_has "normalize: target.tsv: 2 of 4 genes matched (2 extra genes dropped)"
err_has "normalize: target.tsv: 2 genes missing, set to 0 after the transforms: TP53, EGFR"
run normalize-5.3 0 normalize --stats "$TMP/s.mpk" --ignore-case target.tsv
err_has "normalize: target.tsv: 3 of 4 genes matched (1 extra genes dropped)"
# z-score of the source: every gene mean 0 and population sd 1 (or 0 for a constant gene)
normalize --show csv "$TMP/src.mpk" | awk -F, 'NR > 1 { for (i = 4; i <= 7; i++) { s[i] += $i; q[i] += $i * $i } n++ }
	END { for (i = 4; i <= 7; i++) { m = s[i] / n; v = q[i] / n - m * m; if (m > 1e-6 || m < -1e-6 || (v > 1e-5 && (v < 0.9999 || v > 1.0001))) exit 1 } }'
ok normalize-5.4 test $? -eq 0
# the target row T1 applies the source statistics: MYC = (log2(3) - mean) / sd
normalize --show csv "$OUT" >"$TMP/t.csv"
awk -F, 'NR > 1 && $1 == "T1" { print $7 }' "$TMP/t.csv" >"$TMP/t1.txt"
awk -F, 'NR > 1 { v = log($5 + 1) / log(2); s += v; q += v * v; n++ } END { m = s / n; printf "%.4f\n", (log(3) / log(2) - m) / sqrt(q / n - m * m) }' counts.csv >"$TMP/want1.txt"
ok normalize-5.5 test "$(awk '{ printf "%.4f\n", $1 }' "$TMP/t1.txt")" = "$(cat "$TMP/want1.txt")"
# --like with a file whose header holds the same preprocessing gives the same output
normalize -q --stats "$TMP/s.mpk" target.tsv >"$TMP/a.mpk"
normalize -q --like "$TMP/src.mpk" target.tsv --domain target >"$TMP/b.mpk"
ok normalize-5.6 sh -c "normalize --show csv '$TMP/a.mpk' | cut -d, -f1,4- >'$TMP/a.csv' && normalize --show csv '$TMP/b.mpk' | cut -d, -f1,4- | cmp - '$TMP/a.csv'"

# merged chunk statistics equal one fit on the whole table
head -3 counts.csv >"$TMP/c1.csv"
{ head -1 counts.csv; tail -2 counts.csv; } >"$TMP/c2.csv"
normalize -q --log2 --zscore --top-variable 3 --fit-stats "$TMP/w.mpk" counts.csv >/dev/null
normalize -q --log2 --zscore --top-variable 3 --fit-stats "$TMP/p1.mpk" "$TMP/c1.csv" >/dev/null
normalize -q --log2 --zscore --top-variable 3 --fit-stats "$TMP/p2.mpk" "$TMP/c2.csv" >/dev/null
run normalize-6.1 0 normalize --merge-stats "$TMP/m.mpk" "$TMP/p1.mpk" "$TMP/p2.mpk"
normalize -q --stats "$TMP/w.mpk" counts.csv | normalize --show csv >"$TMP/w.csv"
normalize -q --stats "$TMP/m.mpk" counts.csv | normalize --show csv >"$TMP/m.csv"
ok normalize-6.2 cmp "$TMP/w.csv" "$TMP/m.csv"
ok normalize-6.3 test "$(head -1 "$TMP/w.csv")" = "id,domain,label,TP53,ENSG00000141510.16,MYC"

# gene list, fill value, GCT, genes as rows, stream in, determinism
run normalize-7.1 0 normalize --genes genes.txt --fill -1 --ignore-case target.tsv
normalize --show csv "$OUT" >"$TMP/g.csv"
ok normalize-7.2 test "$(cat "$TMP/g.csv" | tr '\n' ' ')" = "id,domain,label,TP53,MYC,KRAS T1,target,,3,2,9 T2,target,,4,5,1 "
run normalize-7.3 0 normalize --gene-id description small.gct
normalize --show csv "$OUT" >"$TMP/gct.csv"
ok normalize-7.4 test "$(tr '\n' ' ' <"$TMP/gct.csv")" = "id,domain,label,TP53,EGFR G1,small,,1,4 G2,small,,2,5 G3,small,,3,6 "
normalize -q --log2 counts.csv >"$TMP/s1.mpk"
run normalize-7.5 0 normalize --format stream "$TMP/s1.mpk"
# the data pass through unchanged (the header records no further steps)
ok normalize-7.6 sh -c "normalize --show csv '$OUT' >'$TMP/r1.csv' && normalize --show csv '$TMP/s1.mpk' | cmp - '$TMP/r1.csv'"
gzip -c counts.csv >"$TMP/counts.csv.gz"
normalize -q --log2 "$TMP/counts.csv.gz" --domain counts >"$TMP/s2.mpk"
ok normalize-7.7 cmp "$TMP/s1.mpk" "$TMP/s2.mpk"
run_in normalize-7.8 0 "$TMP/counts.csv.gz" normalize -q --log2 --domain counts
ok normalize-7.9 cmp "$OUT" "$TMP/s1.mpk"
run normalize-7.10 0 normalize --quantile --drop-zero --zscore counts.csv
err_has "dropped 1 genes that are zero in every sample"

# inspection
run normalize-8.1 0 normalize --show pca "$TMP/src.mpk"
ok normalize-8.2 test "$(wc -l <"$OUT")" -eq 5
out_has "id,domain,label,pc1,pc2"
run normalize-8.3 0 normalize --show shapes "$TMP/src.mpk"
out_has "frame 2: data ids=[4] x=f32[4,4] y=i32[4] d=i32[4]"
run normalize-8.4 0 normalize --show head --rows 1 "$TMP/src.mpk"
ok normalize-8.5 test "$(wc -l <"$OUT")" -eq 2

# metadata columns: named columns are neither genes nor samples; text in a gene column
# on the first data row suggests --ignore-column
printf 'id\tseries\tTP53\tsex\tEGFR\tcancer\nS1\tGSE1\t5\tF\t7\tLUAD\nS2\tGSE2\t3\tM\t1\tBRCA\n' >"$TMP/archs4.tsv"
run normalize-9.1 1 normalize -q --label-column cancer "$TMP/archs4.tsv"
err_is "normalize: $TMP/archs4.tsv:2: column 2 (series): 'GSE1' is not a number (a metadata column? use --ignore-column series)"
run normalize-9.2 1 normalize -q --label-column cancer --ignore-column series "$TMP/archs4.tsv"
err_is "normalize: $TMP/archs4.tsv:2: column 4 (sex): 'F' is not a number (a metadata column? use --ignore-column sex)"
run normalize-9.3 0 normalize --label-column cancer --ignore-column series,sex --ignore-column age "$TMP/archs4.tsv"
err_has "normalize: $TMP/archs4.tsv: no column named 'age' (--ignore-column)"
ok normalize-9.4 test "$(normalize --show csv "$OUT" | tr '\n' ' ')" = "id,domain,label,TP53,EGFR S1,archs4,LUAD,5,7 S2,archs4,BRCA,3,1 "
# genes as rows: an annotation column is not a sample
printf 'gene,symbol,S1,S2\nENSG1,TP53,1,2\nENSG2,EGFR,3,4\n' >"$TMP/gr.csv"
run normalize-9.5 1 normalize -q --genes-as-rows "$TMP/gr.csv"
err_is "normalize: $TMP/gr.csv:2: column 2 (symbol): 'TP53' is not a number (a metadata column? use --ignore-column symbol)"
run normalize-9.6 0 normalize -q --genes-as-rows --ignore-column symbol "$TMP/gr.csv"
ok normalize-9.7 test "$(normalize --show csv "$OUT" | tr '\n' ' ')" = "id,domain,label,ENSG1,ENSG2 S1,gr,,1,3 S2,gr,,2,4 "
run normalize-9.8 1 normalize -q --ignore-column TP53,EGFR,series,sex,cancer "$TMP/archs4.tsv"
err_is "normalize: $TMP/archs4.tsv: no gene columns (all are the id, label or ignored columns)"
# a bad cell after the first data row: no hint
run normalize-9.9 1 normalize -q notnum.csv
err_is "normalize: notnum.csv:3: column 3 (B): 'x1' is not a number"
# the in-place row parser and the split path give the same values (quotes force the latter)
awk -F, 'NR == 1 { print; next } { $1 = "\"" $1 "\""; print }' OFS=, counts.csv >"$TMP/quoted.csv"
normalize -q --log2 counts.csv | normalize --show csv | cut -d, -f1,3- >"$TMP/u.csv"
normalize -q --log2 "$TMP/quoted.csv" | normalize --show csv | cut -d, -f1,3- >"$TMP/q.csv"
ok normalize-9.10 cmp "$TMP/u.csv" "$TMP/q.csv"

# HDF5 (ARCHS4 layout), on files written by tests/tools/gen-h5 (skipped without HDF5)
H5CFLAGS=$(pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
H5LIBS=$(pkg-config --libs hdf5 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5)
LIB=${UNITS:-$ROOT/build/tests}/../libdapipe.a
# shellcheck disable=SC2086
if normalize --help | grep -q hdf5 && ${CC:-cc} -std=c11 -D_GNU_SOURCE -O1 -I"$ROOT/common" $H5CFLAGS \
	"$ROOT/tests/tools/gen-h5.c" -o "$TMP/gen-h5" "$LIB" $H5LIBS -lmsgpackc -lz -lm 2>"$TMP/cc.err" &&
	${CC:-cc} -std=c11 -D_GNU_SOURCE -O1 -I"$ROOT/common" $H5CFLAGS \
	"$ROOT/tests/tools/h5cat.c" -o "$TMP/h5cat" "$LIB" $H5LIBS -lmsgpackc -lz -lm 2>>"$TMP/cc.err"; then
	"$TMP/gen-h5" --genes 30 --samples 40 --dump "$TMP/a.csv" "$TMP/a.h5"
	run normalize-10.1 0 normalize "$TMP/a.h5"
	err_has "normalize: $TMP/a.h5: 40 of 40 samples selected, 30 genes"
	normalize --show csv "$OUT" | cut -d, -f1,4- >"$TMP/h1.csv"
	normalize -q "$TMP/a.csv" | normalize --show csv | cut -d, -f1,4- >"$TMP/h2.csv"
	ok normalize-10.2 cmp "$TMP/h1.csv" "$TMP/h2.csv"
	# blocks of 3 samples give the same stream; transforms fitted on HDF5 apply to the CSV dump
	normalize -q --block-rows 3 "$TMP/a.h5" | normalize --show csv | cut -d, -f1,4- >"$TMP/h3.csv"
	ok normalize-10.3 cmp "$TMP/h1.csv" "$TMP/h3.csv"
	normalize -q --log2 --zscore --fit-stats "$TMP/h5s.mpk" "$TMP/a.h5" | normalize --show csv | cut -d, -f1,4- >"$TMP/z1.csv"
	normalize -q --stats "$TMP/h5s.mpk" "$TMP/a.csv" | normalize --show csv | cut -d, -f1,4- >"$TMP/z2.csv"
	ok normalize-10.4 cmp "$TMP/z1.csv" "$TMP/z2.csv"
	# selection and labels agree with h5cat
	run normalize-10.5 0 normalize --where characteristics_ch1~LUNG --where series_id=GSE2 --label-field source_name_ch1 "$TMP/a.h5"
	err_has "2 of 40 samples selected"
	normalize --show csv "$OUT" | cut -d, -f1,3- >"$TMP/w1.csv"
	"$TMP/h5cat" --match characteristics_ch1=lung --exact series_id=GSE2 --label source_name_ch1 "$TMP/a.h5" >"$TMP/w2.csv"
	ok normalize-10.6 cmp "$TMP/w1.csv" "$TMP/w2.csv"
	printf 'GSM1000003\nGSM1000001\n' >"$TMP/ids.txt"
	run normalize-10.7 0 normalize -q --samples-file "$TMP/ids.txt" --gene-id ensembl "$TMP/a.h5"
	ok normalize-10.8 test "$(normalize --show csv "$OUT" | cut -d, -f1,4 | tr '\n' ' ')" = "id,ENSG00000000001.1 GSM1000001,67 GSM1000003,169 "
	run normalize-10.9 1 normalize -q --where series_id=GSE99 "$TMP/a.h5"
	err_is "normalize: $TMP/a.h5: no sample matches the selection (--samples-file/--where)"
	run normalize-10.10 1 normalize -q --where nofield=x "$TMP/a.h5"
	err_is "normalize: $TMP/a.h5: meta/samples/nofield: not found"
	run normalize-10.11 2 normalize -q --where series_id "$TMP/a.h5"
	err_has "normalize: --where: series_id: expected FIELD=VALUE or FIELD~SUBSTRING"
	run normalize-10.12 2 normalize -q --where series_id=GSE1 counts.csv
	err_has "normalize: --samples-file, --where and --label-field select from an HDF5 input; none is"
	run_in normalize-10.13 1 "$TMP/a.h5" normalize -q -
	err_is "normalize: <stdin>: HDF5 input must be a file (it is read by random access)"
	head -c 100 "$TMP/a.csv" >"$TMP/not.h5"
	run normalize-10.14 1 normalize -q --format hdf5 "$TMP/not.h5"
	err_is "normalize: $TMP/not.h5: not an HDF5 file (no HDF5 signature)"
	"$TMP/gen-h5" --genes 30 --samples 10 --omit meta/genes/ensembl_gene "$TMP/b.h5"
	run normalize-10.15 1 normalize -q --gene-id ensembl "$TMP/b.h5"
	err_is "normalize: $TMP/b.h5: no Ensembl gene ids under meta/genes (try --gene-id symbol)"
else
	echo "# HDF5 tools could not be built: normalize HDF5 tests skipped ($(head -c 200 "$TMP/cc.err"))"
fi

# ComBat: three batches with a shift on every gene (b2 grows with the gene), a class effect
awk 'BEGIN { srand(3); printf "id,batch,label"; for (g = 1; g <= 6; g++) printf ",G%d", g; print ""
	for (i = 1; i <= 30; i++) { b = i <= 12 ? "b1" : (i <= 22 ? "b2" : "b3"); l = i % 2 ? "tumor" : "normal"; printf "S%d,%s,%s", i, b, l
	for (g = 1; g <= 6; g++) printf ",%d", 50 + 30 * rand() + (b == "b2" ? 40 * g : 0) + (b == "b3" ? 15 : 0) + (l == "tumor" ? 20 : 0); print "" } }' >"$TMP/cb.csv"
# spread of the per-batch means of G6 (largest minus smallest)
gap() { normalize --show csv "$1" | awk -F, 'NR > 1 { i = substr($1, 2) + 0; b = i <= 12 ? 1 : (i <= 22 ? 2 : 3); s[b] += $9; n[b]++ }
	END { lo = 1e9; hi = -1e9; for (b = 1; b <= 3; b++) { m = s[b] / n[b]; if (m < lo) lo = m; if (m > hi) hi = m } printf "%.4f\n", hi - lo }'; }
normalize -q --log2 --label-column label --ignore-column batch "$TMP/cb.csv" >"$TMP/cb0.mpk"
run normalize-11.1 0 normalize --combat batch --label-column label --log2 --fit-stats "$TMP/cb.stats" "$TMP/cb.csv"
err_has "normalize: ComBat on 3 batches (batch): 6 of 6 genes adjusted"
cp "$OUT" "$TMP/cb1.mpk"
ok normalize-11.2 awk -v a="$(gap "$TMP/cb0.mpk")" -v b="$(gap "$TMP/cb1.mpk")" 'BEGIN { exit !(a > 1.5 && b < 0.1) }'
normalize --show header "$TMP/cb1.mpk" >"$TMP/h.txt"
ok normalize-11.3 grep -q '"steps": \["log2", "combat"\]' "$TMP/h.txt"
# the saved fit applied to the same samples gives the fitted output; --like too
normalize -q --stats "$TMP/cb.stats" --label-column label "$TMP/cb.csv" | normalize --show csv >"$TMP/ap.csv"
normalize --show csv "$TMP/cb1.mpk" >"$TMP/fi.csv"
ok normalize-11.4 cmp "$TMP/ap.csv" "$TMP/fi.csv"
normalize -q --like "$TMP/cb1.mpk" --label-column label "$TMP/cb.csv" | normalize --show csv | cut -d, -f1,4- >"$TMP/lk.csv"
ok normalize-11.5 sh -c "cut -d, -f1,4- '$TMP/fi.csv' | cmp - '$TMP/lk.csv'"
# mean-only, labels kept (with z-score: the class difference survives)
run normalize-11.6 0 normalize -q --combat batch --combat-mean-only --label-column label --log2 "$TMP/cb.csv"
ok normalize-11.7 awk -v b="$(gap "$OUT")" 'BEGIN { exit !(b < 0.3) }'
run normalize-11.8 0 normalize -q --combat batch --combat-keep-labels --label-column label --log2 --zscore "$TMP/cb.csv"
normalize --show csv "$OUT" | awk -F, 'NR > 1 { s[$3] += $9; n[$3]++ } END { exit !(s["tumor"] / n["tumor"] - s["normal"] / n["normal"] > 0.5) }'
ok normalize-11.9 test $? -eq 0
# domains as batches: two inputs
grep -v ',b3,' "$TMP/cb.csv" | grep -v ',b2,' | cut -d, -f1,3- >"$TMP/one.csv"
{ head -1 "$TMP/cb.csv"; grep ',b2,' "$TMP/cb.csv"; } | cut -d, -f1,3- >"$TMP/two.csv"
run normalize-11.10 0 normalize --combat domain --label-column label --log2 "$TMP/one.csv" "$TMP/two.csv"
err_has "ComBat on 2 batches (domain)"
# errors
{ head -4 "$TMP/cb.csv"; echo "X1,b9,tumor,1,2,3,4,5,6"; } >"$TMP/nb.csv"
run normalize-11.11 1 normalize -q --stats "$TMP/cb.stats" --label-column label "$TMP/nb.csv"
err_is "normalize: $TMP/nb.csv: sample 'X1': batch 'b9' is not one of the ComBat fit (b1, b2, b3)"
run normalize-11.12 1 normalize -q --combat series --log2 "$TMP/cb.csv"
err_is "normalize: $TMP/cb.csv: no column named 'series' (--combat)"
run normalize-11.13 1 normalize -q --combat domain --log2 --ignore-column batch,label "$TMP/cb.csv"
err_is "normalize: --combat domain: one batch ('cb') in the data; nothing to correct"
run normalize-11.14 1 normalize -q --combat batch "$TMP/cb0.mpk"
err_is "normalize: $TMP/cb0.mpk: --combat batch: this input has no metadata columns (a stream, GCT or genes-as-rows table); --combat domain corrects between inputs"
awk -F, 'NR > 1 && NR < 31 { print $1 "," $3 } NR == 1 { print "id,cancer" }' "$TMP/cb.csv" >"$TMP/lab.csv"
run normalize-11.15 1 normalize -q --combat batch --combat-keep-labels --log2 --ignore-column label --labels "$TMP/lab.csv" "$TMP/cb.csv"
err_is "normalize: --combat-keep-labels: sample 'S30' is unlabelled; every fitted sample needs a label"
run normalize-11.16 2 normalize -q --combat-mean-only "$TMP/cb.csv"
err_has "normalize: --combat-mean-only and --combat-keep-labels need --combat COLUMN"
run normalize-11.17 2 normalize -q --stats "$TMP/s.mpk" --combat batch "$TMP/cb.csv"
err_has "normalize: --combat with --stats/--like: the statistics were fitted without ComBat"
run normalize-11.18 1 normalize -q --merge-stats "$TMP/mm.mpk" "$TMP/cb.stats" "$TMP/cb.stats"
err_is "normalize: $TMP/cb.stats: statistics with ComBat cannot be merged (ComBat is fitted on the data whole)"
{ head -1 "$TMP/cb.csv"; sed -n '2,4p;14,16p' "$TMP/cb.csv"; } | cut -d, -f1-8 >"$TMP/short.csv"
printf "G1\nG6\n" >"$TMP/g6.txt"
run normalize-11.19 1 normalize -q --combat batch --log2 --label-column label --genes "$TMP/g6.txt" "$TMP/short.csv"
err_is "normalize: sample 'S1' lacks gene G6: ComBat needs every gene in every sample (align the inputs with --genes to their common genes, or --missing mean)"

# ---- 12. chains: preprocessing applied on top of a prepared stream records what came before
S12="$ROOT/samples/tcga.csv.gz"
normalize -q --log2 --label-column tissue "$S12" >"$TMP/c1.mpk"
run normalize-12.1 0 normalize -q --format stream --zscore --fit-stats "$TMP/c2.stats" "$TMP/c1.mpk"
cp "$OUT" "$TMP/c2.mpk"
normalize --show header "$TMP/c2.mpk" >"$TMP/c2.h"
ok normalize-12.1-before grep -q '"steps": \["zscore"\].*"before": {"version": 1, "steps": \["log2"\]' "$TMP/c2.h"
# the statistics refuse raw values, naming both chains
run normalize-12.2 1 normalize -q --stats "$TMP/c2.stats" --label-column tissue "$S12"
err_is "normalize: $S12: prepared by nothing (raw values), but $TMP/c2.stats was fitted on data prepared by [log2]: prepare it that way first and pipe it in (see docs/NORMALIZE.md, \"Chains\")"
# ... and data prepared otherwise
normalize -q --cpm --log2 --label-column tissue "$S12" >"$TMP/c3.mpk"
run normalize-12.3 1 normalize -q --stats "$TMP/c2.stats" "$TMP/c3.mpk"
err_has "prepared by [cpm, log2], but $TMP/c2.stats was fitted on data prepared by [log2]"
# prepared the same way, piped in: the same values as the fit's own output, the same chain
normalize -q --log2 --label-column tissue "$S12" | normalize -q --stats "$TMP/c2.stats" >"$TMP/c4.mpk"
ok normalize-12.4 test $? -eq 0
ok normalize-12.4-values cmp -s "$TMP/c2.mpk" "$TMP/c4.mpk"
# chains of three: the own statistics of a stream prepared by saved statistics
normalize -q --format stream --zscore --fit-stats "$TMP/c5.stats" "$TMP/c4.mpk" >/dev/null
normalize --show header "$TMP/c5.stats" >"$TMP/c5.h"
ok normalize-12.5 grep -q '"steps": \["zscore"\].*"before": {"version": 1, "steps": \["zscore"\].*"before": {"version": 1, "steps": \["log2"\]' "$TMP/c5.h"
run normalize-12.6 1 normalize -q --stats "$TMP/c5.stats" "$TMP/c1.mpk"
err_has "prepared by [log2], but $TMP/c5.stats was fitted on data prepared by [log2] then [zscore]"
# inputs prepared differently are not joined
run normalize-12.7 1 normalize -q --format stream "$TMP/c1.mpk" "$TMP/c3.mpk"
err_is "normalize: $TMP/c3.mpk: prepared by [cpm, log2], but $TMP/c1.mpk by [log2]: join inputs prepared alike"
# streams without steps (raw values) join, as tables do
gzip -dc "$S12" | head -n 51 >"$TMP/c6a.csv"
gzip -dc "$S12" | sed -n '1p;52,101p' >"$TMP/c6b.csv"
normalize -q --label-column tissue "$TMP/c6a.csv" >"$TMP/c6a.mpk"
normalize -q --label-column tissue "$TMP/c6b.csv" >"$TMP/c6b.mpk"
run normalize-12.8 0 normalize -q --format stream --log2 "$TMP/c6a.mpk" "$TMP/c6b.mpk"
# statistics fitted on differently prepared data do not merge
normalize -q --zscore --fit-stats "$TMP/c7.stats" --label-column tissue "$S12" >/dev/null
run normalize-12.9 1 normalize -q --merge-stats "$TMP/c8.stats" "$TMP/c2.stats" "$TMP/c7.stats"
err_is "normalize: $TMP/c7.stats: fitted on data prepared by nothing (raw values), $TMP/c2.stats on data prepared by [log2]; cannot merge"
ok normalize-12.9-nothing test ! -e "$TMP/c8.stats"
