#!/bin/sh
# tests/cli/samples.sh: gen-samples (the sample-data generator) and the committed samples.
. "$(dirname "$0")/../lib.sh"
S="$ROOT/samples"

# ---- help and usage errors ----
run samples-1.1-help 0 gen-samples --help
for o in --out --seed --genes --tcga --archs4 --gtex --samples --shift --no-gzip --quiet --help; do
	out_has "$o"
done
out_has "(default 1200)"
run samples-1.2-no-out 2 gen-samples
err_has "gen-samples: --out DIR is required"
run samples-1.3-unknown 2 gen-samples --out "$TMP/x" --bogus
err_has "gen-samples: --bogus: unknown option"
run samples-1.4-genes-range 2 gen-samples --out "$TMP/x" --genes 5
err_has "gen-samples: --genes: 5: must be at least 100"
run samples-1.5-cohort-size 2 gen-samples --out "$TMP/x" --tcga 5
err_has "gen-samples: --tcga: 5: must be 0 or at least 32"
run samples-1.6-shift-range 2 gen-samples --out "$TMP/x" --shift -1
err_has "gen-samples: --shift: -1: must be at least 0"
run samples-1.7-not-a-number 2 gen-samples --out "$TMP/x" --seed abc
err_has "gen-samples: --seed: abc: not an integer"
run samples-1.8-extra-arg 2 gen-samples --out "$TMP/x" extra
err_has "gen-samples: extra: unexpected argument"
run samples-1.9-missing-arg 2 gen-samples --out
err_has "gen-samples: --out: missing argument"
: >"$TMP/file"
run samples-1.10-out-not-folder 1 gen-samples --out "$TMP/file/sub"
err_has "gen-samples: $TMP/file/sub: cannot create folder:"
[ ! -e "$TMP/x" ] && pass "samples-1.11-nothing-written-on-usage-error" ||
	fail "samples-1.11-nothing-written-on-usage-error" "$TMP/x exists"

# ---- the committed files are reproduced byte for byte (decompressed) ----
# The command recorded in samples/README.md: gen-samples --out samples --seed 1
run samples-2.1-regenerate 0 gen-samples --out "$TMP/re" --seed 1 -q
for f in tcga.csv archs4.tsv gtex.gct; do
	if [ ! -f "$S/$f.gz" ]; then
		fail "samples-2.2-same-$f" "$S/$f.gz is missing"
	elif gzip -dc "$TMP/re/$f.gz" >"$TMP/re/$f" && gzip -dc "$S/$f.gz" | cmp -s - "$TMP/re/$f"; then
		pass "samples-2.2-same-$f"
	else
		fail "samples-2.2-same-$f" "regenerated $f differs from the committed samples/$f.gz"
	fi
done
for f in gtex_labels.csv genes.tsv; do
	if cmp -s "$S/$f" "$TMP/re/$f"; then pass "samples-2.3-same-$f"; else
		fail "samples-2.3-same-$f" "regenerated $f differs from the committed samples/$f"; fi
done
ls "$TMP/re" | grep -q tmp && fail samples-2.4-no-temporaries "$(ls "$TMP/re")" ||
	pass samples-2.4-no-temporaries

# ---- small runs: determinism, the seed matters, the formats ----
small() { gen-samples --genes 300 --tcga 64 --archs4 64 --gtex 48 -q --no-gzip "$@"; }
ok samples-3.1-small small --out "$TMP/a" --seed 7
ok samples-3.2-small-again small --out "$TMP/b" --seed 7
ok samples-3.3-other-seed small --out "$TMP/c" --seed 8
same=1
for f in tcga.csv archs4.tsv gtex.gct gtex_labels.csv genes.tsv; do
	cmp -s "$TMP/a/$f" "$TMP/b/$f" || same=0
done
[ "$same" = 1 ] && pass samples-3.4-same-seed-same-files || fail samples-3.4-same-seed-same-files "files differ"
cmp -s "$TMP/a/tcga.csv" "$TMP/c/tcga.csv" && fail samples-3.5-seed-changes-data "seed 7 and 8 gave the same tcga.csv" ||
	pass samples-3.5-seed-changes-data

# every row has as many fields as the header
fields_ok() { awk -F"$2" 'NR == 1 { n = NF } NF != n { bad = 1 } END { exit bad }' "$1"; }
ok samples-3.6-tcga-rectangular fields_ok "$TMP/a/tcga.csv" ,
ok samples-3.7-archs4-rectangular fields_ok "$TMP/a/archs4.tsv" "	"
rows=$(wc -l <"$TMP/a/tcga.csv")
[ "$rows" -eq 65 ] && pass samples-3.8-tcga-rows || fail samples-3.8-tcga-rows "$rows lines, expected 65"

# TCGA-like: ids TCGA-XX-XXXX-01A, versioned Ensembl gene columns, log2(TPM+1) values
ok samples-3.9-tcga-ids sh -c "sed 1d '$TMP/a/tcga.csv' | cut -d, -f1 | grep -vqE '^TCGA-[0-9A-Z]{2}-[0-9A-Z]{4}-01A\$' && exit 1 || exit 0"
ok samples-3.10-tcga-unique-ids sh -c "[ \$(sed 1d '$TMP/a/tcga.csv' | cut -d, -f1 | sort -u | wc -l) -eq 64 ]"
ok samples-3.11-tcga-gene-ids sh -c "head -1 '$TMP/a/tcga.csv' | tr , '\n' | sed 1,2d | grep -vqE '^ENSG[0-9]{11}\\.[0-9]+\$' && exit 1 || exit 0"
ok samples-3.12-tcga-log-range awk -F, 'NR > 1 { for (i = 3; i <= NF; i++) if ($i < 0 || $i > 21) exit 1 }' "$TMP/a/tcga.csv"
# the 16 classes, each present in every cohort
ok samples-3.13-tcga-16-classes sh -c "[ \$(sed 1d '$TMP/a/tcga.csv' | cut -d, -f2 | sort -u | wc -l) -eq 16 ]"
ok samples-3.14-gtex-16-classes sh -c "[ \$(sed 1d '$TMP/a/gtex_labels.csv' | cut -d, -f2 | sort -u | wc -l) -eq 16 ]"

# ARCHS4-like: tissue and series columns, unversioned ids, integer counts, genes missing
ok samples-3.15-archs4-header sh -c "head -1 '$TMP/a/archs4.tsv' | grep -q '^sample_id	tissue	series	ENSG[0-9]*	'"
ok samples-3.16-archs4-counts awk -F'\t' 'NR > 1 { if ($1 !~ /^GSM[0-9]+$/ || $3 !~ /^GSE[0-9]+$/) exit 1; for (i = 4; i <= NF; i++) if ($i !~ /^[0-9]+$/) exit 1 }' "$TMP/a/archs4.tsv"
ntc=$(head -1 "$TMP/a/tcga.csv" | tr , '\n' | sed 1,2d | sed 's/\..*//' | sort)
nar=$(head -1 "$TMP/a/archs4.tsv" | tr '\t' '\n' | sed 1,3d)
[ "$(printf '%s\n' "$nar" | sort)" != "$(printf '%s\n' "$nar")" ] && pass samples-3.17-archs4-other-order ||
	fail samples-3.17-archs4-other-order "ARCHS4-like genes are sorted"
common=$(printf '%s\n' "$nar" | sort | comm -12 - "$(printf '%s\n' "$ntc" >"$TMP/ntc"; echo "$TMP/ntc")" | wc -l)
[ "$common" -gt 250 ] && [ "$common" -lt 300 ] && pass samples-3.18-genes-partly-shared ||
	fail samples-3.18-genes-partly-shared "$common genes shared by TCGA-like and ARCHS4-like (of 300)"

# GTEx-like GCT 1.2: version line, dimensions that match, Name/Description, labels by id
ok samples-3.19-gct-version sh -c "[ \"\$(head -1 '$TMP/a/gtex.gct')\" = '#1.2' ]"
ok samples-3.20-gct-dims awk -F'\t' 'NR == 2 { g = $1; n = $2 } NR == 3 { if ($1 != "Name" || $2 != "Description" || NF != n + 2) exit 1 } NR > 3 { if (NF != n + 2) exit 1; rows++ } END { exit rows != g }' "$TMP/a/gtex.gct"
ok samples-3.21-gtex-labels-join sh -c "sed -n 3p '$TMP/a/gtex.gct' | tr '\t' '\n' | sed 1,2d | sort >'$TMP/gid' && sed 1d '$TMP/a/gtex_labels.csv' | cut -d, -f1 | sort | cmp -s - '$TMP/gid'"
ok samples-3.22-genes-map sh -c "[ \$(wc -l <'$TMP/a/genes.tsv') -eq 301 ] && head -1 '$TMP/a/genes.tsv' | grep -q '^ensembl_id	symbol\$'"

# --samples sets all three sizes; 0 skips a cohort; gzip is the default
ok samples-3.23-skip-cohorts gen-samples --out "$TMP/d" --genes 100 --samples 32 --archs4 0 -q
ok samples-3.24-gzip sh -c "[ -f '$TMP/d/tcga.csv.gz' ] && [ -f '$TMP/d/gtex.gct.gz' ] && [ ! -e '$TMP/d/archs4.tsv.gz' ] && gzip -t '$TMP/d/tcga.csv.gz'"
ok samples-3.25-samples-size sh -c "[ \$(gzip -dc '$TMP/d/tcga.csv.gz' | wc -l) -eq 33 ]"

# ---- samples/shift-experiment.sh: a generator variant built by flags, five datasets,
# one table row per method (small cohorts, 2 epochs: the machinery, not the figures) ----
SAN=""
[ -n "${SANITIZE:-}" ] && SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
run samples-4.1-shift-experiment 0 env OUT="$TMP/se" BIN="$BIN" BUILD="$(dirname "$UNITS")" \
	CC="${CC:-cc} $SAN" METHODS="source-only dann:conditional-entropy" EPOCHS=2 SEEDS="1 2" \
	GEN_OPTS="--genes 300 --tcga 160 --archs4 160 --gtex 128" \
	sh "$S/shift-experiment.sh" -DTCGA_TUMOUR=1 -DARCHS4_TUMOUR=0.5
ok samples-4.2-table awk -F'|' '$2 ~ /^ (source-only|dann:conditional-entropy) $/ { n++; for (i = 3; i <= 9; i++) if ($i !~ /^ [01]\.[0-9][0-9][0-9] $/) exit 1 } END { exit n != 2 }' "$OUT"
# the tumour programs act on the cohorts that have tumours only (GTEx-like: none, and
# its random streams untouched), and on the non-marker genes
gen-samples --out "$TMP/se-base" --seed 1 -q --genes 300 --tcga 160 --archs4 160 --gtex 128 --no-gzip
ok samples-4.3-tumour-gtex-unchanged sh -c "gzip -dc '$TMP/se/g1/gtex.gct.gz' | cmp -s - '$TMP/se-base/gtex.gct'"
ok samples-4.4-tumour-tcga-changed sh -c "! gzip -dc '$TMP/se/g1/tcga.csv.gz' | cmp -s - '$TMP/se-base/tcga.csv'"
