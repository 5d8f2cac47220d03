#!/bin/sh
# tests/cli/h5.sh: the ARCHS4 HDF5 reader (common/h5.c) through tests/tools/h5cat,
# on files written by tests/tools/gen-h5 in the ARCHS4 layout. Both tools are built
# here with HDF5's flags, against the library the suite built
# ($UNITS/../libdapipe.a), with common/h5.c compiled in.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh"

CC=${CC:-cc}
H5CFLAGS=$(pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
H5LIBS=$(pkg-config --libs hdf5 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5)
# shellcheck disable=SC2086
if ! printf '#include <hdf5.h>\nint main(void){return 0;}\n' | $CC $H5CFLAGS -x c - -o "$TMP/probe" $H5LIBS 2>/dev/null; then
	echo "# HDF5 headers or library missing (Debian: libhdf5-dev): h5 tests skipped"
	exit 0
fi
LIB=${UNITS:-$ROOT/build/tests}/../libdapipe.a
SAN=""
[ -n "${SANITIZE:-}" ] && SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
CFLAGS_T="-std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Wno-unused-parameter $SAN -I$ROOT/common $H5CFLAGS"
LIBS_T="$LIB $H5LIBS -lmsgpackc -lz -lm"
# shellcheck disable=SC2086
ok "h5-0.1 build gen-h5" $CC $CFLAGS_T "$ROOT/tests/tools/gen-h5.c" -o "$TMP/gen-h5" $LIBS_T
# shellcheck disable=SC2086
ok "h5-0.2 build h5cat" $CC $CFLAGS_T "$ROOT/tests/tools/h5cat.c" "$ROOT/common/h5.c" -o "$TMP/h5cat" $LIBS_T
[ -x "$TMP/gen-h5" ] && [ -x "$TMP/h5cat" ] || exit 1
PATH="$TMP:$PATH"
cd "$TMP" || exit 1

# the expected matrix: the generator's CSV dump with the reader's header name
same_as_dump() { # NAME H5 DUMP [h5cat options]
	name=$1; f=$2; d=$3; shift 3
	if h5cat "$@" "$f" >got.csv 2>got.err && sed '1s/^geo_accession,/id,/' "$d" | cmp -s - got.csv; then
		pass "$name"
	else
		fail "$name" "output differs from the generator's dump: $(head -c 200 got.err)"
	fi
}

# ---- 1: layouts and string kinds read back exactly ----
run "h5-1.0 generate (vlen UTF-8 strings, chunked, deflate)" 0 gen-h5 --dump a.csv a.h5
same_as_dump "h5-1.1 vlen strings: all samples read back" a.h5 a.csv
for v in "fixed --strings fixed" "space --strings space" "f32 --dtype f32" "contig --chunk 0,0" \
         "gsym --symbol-name gene_symbol" "v1 --layout v1" "odd --chunk 7,5 --genes 33 --samples 29"; do
	# shellcheck disable=SC2086
	set -- $v
	n=$1; shift
	gen-h5 "$@" --dump "$n.csv" "$n.h5" 2>"$n.err" || fail "h5-1.2 generate $n" "$(cat "$n.err")"
	same_as_dump "h5-1.2 $n: read back" "$n.h5" "$n.csv"
done
run "h5-1.3 info" 0 h5cat --info a.h5
out_has "chunk	20,8"
out_has "ensembl	ENSG00000000001.1"
out_has "fields	characteristics_ch1,geo_accession,readsaligned,series_id,singlecellprobability,source_name_ch1,title"
run "h5-1.4 info v1 layout" 0 h5cat --info v1.h5
out_has "symbols	GENE1"
out_has "ensembl	(none)"
# slices of every size, and a tiny buffer (many short hyperslab reads) give the same
gen-h5 --genes 3000 --samples 200 --chunk 500,16 --dump big.csv big.h5
for c in 1 3 64 1000; do same_as_dump "h5-1.5 --chunk $c" big.h5 big.csv --chunk "$c"; done
DAPIPE_H5_BUFFER_MB=1 same_as_dump "h5-1.6 1 MiB buffer (87-sample windows)" big.h5 big.csv
ok "h5-1.7 same seed, same file contents" sh -c 'gen-h5 --dump s1.csv s1.h5 && gen-h5 --dump s2.csv s2.h5 && cmp s1.csv s2.csv'
ok "h5-1.8 another seed, other counts" sh -c 'gen-h5 --seed 2 --dump s3.csv s3.h5 && ! cmp -s s1.csv s3.csv'
# the numeric metadata field readsaligned is the library size: row sums of the dump
awk -F, 'NR > 1 { s = 0; for (i = 2; i <= NF; i++) s += $i; print s }' a.csv >sums.txt
run "h5-1.9 integer metadata as text" 0 h5cat --meta readsaligned a.h5
ok "h5-1.9 readsaligned = row sums" cmp sums.txt "$OUT"
run "h5-1.10 float metadata" 0 h5cat --meta singlecellprobability --exact geo_accession=GSM1000003 a.h5
ok "h5-1.10 value" test "$(cat "$OUT")" = "0.29999999999999999"
run "h5-1.11 UTF-8 text" 0 h5cat --meta title --exact geo_accession=GSM1000002 fixed.h5
ok "h5-1.11 value" test "$(cat "$OUT")" = "sample 2 (breast, étude)"

# ---- 2: selection ----
printf 'GSM1000031\nGSM9999999\nGSM1000002\n\nGSM1000017\nGSM1000002\n' >ids.txt
run "h5-2.1 --ids (file order, unknown id warned)" 0 h5cat --ids ids.txt a.h5
err_is "h5cat: a.h5: 1 of 5 ids not found in geo_accession (first: GSM9999999)"
awk -F, 'NR == 1 { sub(/^geo_accession/, "id"); print; next } $1 == "GSM1000002" || $1 == "GSM1000017" || $1 == "GSM1000031"' a.csv >want.csv
ok "h5-2.1 rows" cmp want.csv "$OUT"
run "h5-2.2 --match substring, case-insensitive" 0 h5cat --match characteristics_ch1=LUNG a.h5
awk -F, 'NR == 1 { sub(/^geo_accession/, "id"); print; next } (NR - 2) % 4 == 0' a.csv >want.csv
ok "h5-2.2 rows (every 4th sample)" cmp want.csv "$OUT"
run "h5-2.3 --exact series" 0 h5cat --exact series_id=GSE2 --meta geo_accession a.h5
ok "h5-2.3 samples 10..19" test "$(tr '\n' ' ' <"$OUT")" = "GSM1000010 GSM1000011 GSM1000012 GSM1000013 GSM1000014 GSM1000015 GSM1000016 GSM1000017 GSM1000018 GSM1000019 "
run "h5-2.4 --exact is not a substring match" 0 h5cat --exact series_id=GSE --meta geo_accession a.h5
err_is "h5cat: a.h5: no sample selected"
run "h5-2.5 --match and --exact together" 0 h5cat --exact series_id=GSE2 --match source_name_ch1=liv --meta geo_accession a.h5
ok "h5-2.5 samples" test "$(tr '\n' ' ' <"$OUT")" = "GSM1000013 GSM1000017 "
run "h5-2.6 labels and Ensembl names" 0 h5cat --label source_name_ch1 --genes ensembl --exact geo_accession=GSM1000005 a.h5
out_has "id,label,ENSG00000000001.1,ENSG00000000002.2,"
out_has "GSM1000005,Liver,"
run "h5-2.7 full dataset path as field" 0 h5cat --meta meta/samples/series_id --exact geo_accession=GSM1000039 a.h5
ok "h5-2.7 value" test "$(cat "$OUT")" = "GSE4"
run "h5-2.8 --ids on another field" 0 h5cat --id-field title --ids /dev/null a.h5
err_has "no sample selected"

# ---- 3: a data stream for normalize ----
if [ -x "$BIN/normalize" ]; then
	h5cat --format stream --label source_name_ch1 --chunk 7 a.h5 >a.mpk 2>/dev/null
	run "h5-3.1 stream: shapes" 0 normalize --show shapes a.mpk
	out_has "frame 7: data ids=[5] x=f32[5,50] y=i32[5] d=i32[5]"
	out_has "end rows=40 frames=6"
	run "h5-3.2 stream: header" 0 normalize --show header a.mpk
	out_has '"classes": ["Lung", "Liver", "Breast", "Colon"]'
	out_has '"domains": ["a"]'
	run "h5-3.3 stream through normalize --log2" 0 sh -c 'h5cat --format stream a.h5 | normalize --format stream --log2 --quiet - | normalize --show csv'
	out_has "GSM1000039,"
fi

# ---- 4: bad files: one line naming file and dataset, exit 1 ----
run "h5-4.1 missing file" 1 h5cat nope.h5
err_is "h5cat: nope.h5: cannot open: No such file or directory"
printf 'id,a\nx,1\n' >text.h5
run "h5-4.2 not HDF5" 1 h5cat text.h5
err_is "h5cat: text.h5: not an HDF5 file"
gen-h5 --omit data/expression noexpr.h5
run "h5-4.3 no data/expression" 1 h5cat noexpr.h5
err_is "h5cat: noexpr.h5: data/expression: not found"
gen-h5 --expr-1d flat.h5
run "h5-4.4 1-D expression" 1 h5cat flat.h5
err_is "h5cat: flat.h5: data/expression: expected 2 dimensions (genes, samples), found 1"
gen-h5 --short-genes short.h5
run "h5-4.5 gene list too short" 1 h5cat short.h5
err_is "h5cat: short.h5: meta/genes/symbol: 49 entries, expected 50 (genes in data/expression)"
run "h5-4.6 unknown field" 1 h5cat --meta nope a.h5
err_is "h5cat: a.h5: meta/samples/nope: not found"
run "h5-4.7 unknown field in --match" 1 h5cat --match tissue=lung a.h5
err_is "h5cat: a.h5: meta/samples/tissue: not found"
gen-h5 --omit meta/samples/geo_accession noacc.h5
run "h5-4.8 no geo_accession" 1 h5cat noacc.h5
err_is "h5cat: noacc.h5: meta/samples/geo_accession: not found"
# truncated copies: an error naming the file, never a crash or a silent short read
size=$(wc -c <big.h5)
for cut in 0 100 2048 $((size / 3)) $((size / 2)) $((size - 1000)) $((size - 1)); do
	head -c "$cut" big.h5 >cut.h5
	run "h5-4.9 truncated at $cut of $size bytes" 1 h5cat cut.h5
	err_has "h5cat: cut.h5: "
done
head -c 20000 /dev/urandom >rand.h5
run "h5-4.10 random bytes" 1 h5cat rand.h5
err_is "h5cat: rand.h5: not an HDF5 file"

# ---- 5: usage ----
run "h5-5.1 --help" 0 h5cat --help
out_has "Usage: h5cat"
run "h5-5.2 bad --chunk" 2 h5cat --chunk 0 a.h5
err_has "h5cat: --chunk: 0:"
run "h5-5.3 bad --match" 2 h5cat --match lung a.h5
err_has "h5cat: --match: lung: expected FIELD=TEXT"
run "h5-5.4 gen-h5 --help" 0 gen-h5 --help
out_has "Usage: gen-h5"
