#!/bin/sh
# tests/cli/bad_inputs.sh: the bad-input catalogue (docs/RELIABILITY.md).
# Every filter is fed malformed, truncated, random, mistyped, oversized, non-finite,
# mismatched and empty inputs. Each case asserts the exact exit status and the stable
# part of the one-line message; nothing may be killed by a signal (run reports it),
# nothing may hang (every command runs under timeout 20), and no model or statistics
# file is half-written: after a failure the output either does not exist or still
# holds the previous good file, and no *.tmp.* file is left.
# Cases are numbered bad-GROUP.N. Filters that are not built are skipped.
. "$(dirname "$0")/../lib.sh"

PY=python3
if ! "$PY" -c 'import msgpack' 2>/dev/null; then PY=/usr/bin/python3; fi
if ! "$PY" -c 'import msgpack' 2>/dev/null; then
	fail bad-0 "python3 with msgpack is needed (Debian: python3-msgpack)"
	exit 1
fi
have() { [ -x "$BIN/$1" ]; }
T="timeout 20"
cd "$TMP" || exit 1

# bad NAME RC MESSAGE CMD...: exit status RC, stderr contains MESSAGE and is one line
# starting with the program's name (one error, no spam).
bad() {
	name=$1; want=$2; msg=$3; shift 3
	run "$name" "$want" $T "$@"
	err_has "$msg"
	prog=$(basename "$1")
	n=$(wc -l <"$ERR")
	if [ "$want" -ne 0 ] && { [ "$n" -ne 1 ] || ! head -n 1 "$ERR" | grep -q "^$prog: "; }; then
		[ "$want" -eq 2 ] && [ "$n" -eq 2 ] && grep -q "^Try '$prog --help'" "$ERR" && return
		fail "$name (one line)" "stderr has $n lines: $(head -c 300 "$ERR")"
	fi
}

# ---- fixtures: a small valid pipeline ----
cat >mk.py <<'PYEOF'
import sys, struct, random, msgpack
def t(dtype, shape, values, raw=None):
    fmt = {"f32": "f", "f64": "d", "i32": "i", "i64": "q", "u8": "B"}.get(dtype, "f")
    data = raw if raw is not None else struct.pack("<%d%s" % (len(values), fmt), *values)
    return {"dtype": dtype, "shape": shape, "data": data}
def hdr(**kw):
    h = {"type": "header", "version": 1, "kind": "data", "features": ["g1", "g2"],
         "classes": ["A", "B"], "domains": ["s"]}
    h.update(kw)
    return h
def data(ids=("a", "b"), x=(1.0, 2.0, 3.0, 4.0), y=(0, 1), d=(0, 0), F=2, **kw):
    n = len(ids)
    f = {"type": "data", "ids": list(ids), "x": t("f32", [n, F], list(x)),
         "y": t("i32", [n], list(y)), "d": t("i32", [n], list(d))}
    f.update(kw)
    return f
def end(rows=2, frames=1):
    return {"type": "end", "rows": rows, "frames": frames}
def P(*fr):
    return b"".join(msgpack.packb(f, use_bin_type=True) for f in fr)
nan, inf = float("nan"), float("inf")
M = 2**31 - 1
cases = {
 "ok": lambda: P(hdr(), data(), end()),
 "version2": lambda: P(hdr(version=2), data(), end()),
 "version_str": lambda: P(hdr(version="1"), data(), end()),
 "noversion": lambda: P({k: v for k, v in hdr().items() if k != "version"}, end(0)),
 "kindmodel": lambda: P(hdr(kind="model"), end(0)),
 "notype": lambda: P({"version": 1}, end(0)),
 "type_int": lambda: P(dict(hdr(), type=7), end(0)),
 "notmap": lambda: P([1, 2, 3]),
 "firstdata": lambda: P(data(), end()),
 "twoheaders": lambda: P(hdr(), hdr(), end(0)),
 "afterend": lambda: P(hdr(), data(), end(), data()),
 "badrows": lambda: P(hdr(), data(), end(rows=5)),
 "dtype_f64": lambda: P(hdr(), dict(data(), x=t("f64", [2, 2], [1, 2, 3, 4])), end()),
 "dtype_unknown": lambda: P(hdr(), dict(data(), x=t("f16", [2, 2], [], raw=b"\0" * 8)), end()),
 "y_f32": lambda: P(hdr(), dict(data(), y=t("f32", [2], [0, 1])), end()),
 "shape_short": lambda: P(hdr(), dict(data(), x=t("f32", [2, 2], [], raw=b"\0" * 12)), end()),
 "shape_long": lambda: P(hdr(), dict(data(), x=t("f32", [2, 2], [], raw=b"\0" * 20)), end()),
 "shape_1d": lambda: P(hdr(), dict(data(), x=t("f32", [4], [1, 2, 3, 4])), end()),
 "shape_cols": lambda: P(hdr(), dict(data(), x=t("f32", [2, 3], [1] * 6)), end()),
 "shape_dims": lambda: P(hdr(), dict(data(), x=t("f32", [M, M, M, M], [], raw=b"")), end()),
 "shape_huge": lambda: P(hdr(), dict(data(), x=t("f32", [M, M], [], raw=b"")), end()),
 "shape_toolarge": lambda: P(hdr(), dict(data(), x=t("f32", [2**40, 2], [], raw=b"")), end()),
 "shape_neg": lambda: P(hdr(), dict(data(), x={"dtype": "f32", "shape": [-2, 2], "data": b"\0" * 16}), end()),
 "shape_str": lambda: P(hdr(), dict(data(), x={"dtype": "f32", "shape": "2x2", "data": b"\0" * 16}), end()),
 "shape_9d": lambda: P(hdr(), dict(data(), x=t("f32", [1] * 9, [1.0])), end()),
 "tensor_nodata": lambda: P(hdr(), dict(data(), x={"dtype": "f32", "shape": [2, 2]}), end()),
 "tensor_notmap": lambda: P(hdr(), dict(data(), x=[1, 2, 3, 4]), end()),
 "data_str": lambda: P(hdr(), dict(data(), x={"dtype": "f32", "shape": [2, 2], "data": "abcdefghabcdefgh"}), end()),
 "rows_disagree": lambda: P(hdr(), dict(data(), y=t("i32", [3], [0, 1, 0])), end()),
 "label_range": lambda: P(hdr(), data(y=(0, 2)), end()),
 "label_neg": lambda: P(hdr(), data(y=(0, -2)), end()),
 "domain_range": lambda: P(hdr(), data(d=(0, 1)), end()),
 "nan": lambda: P(hdr(), data(x=(nan, 1, 2, 3)), end()),
 "inf": lambda: P(hdr(), data(x=(1, -inf, 2, 3)), end()),
 "ids_int": lambda: P(hdr(), dict(data(), ids=[1, 2]), end()),
 "id_nul": lambda: P(hdr(), dict(data(), ids=["a\0x", "b"]), end()),
 "noids": lambda: P(hdr(), {k: v for k, v in data().items() if k != "ids"}, end()),
 "feat_int": lambda: P(hdr(features=[1, 2]), end(0)),
 "feat_str": lambda: P(hdr(features="g1,g2"), end(0)),
 "huge_str": lambda: b"\x81\xa4type\xdb\xff\xff\xff\xff",
 "huge_bin": lambda: b"\x81\xa4data\xc6\x7f\xff\xff\xff",
 "huge_map": lambda: b"\xdf\xff\xff\xff\xff",
 "huge_array": lambda: b"\x87\xa4type\xa6header\xa7version\x01\xa4kind\xa4data\xa8features\xdd\x7f\xff\xff\xff",
 "c1": lambda: b"\xc1",
 "deep": lambda: b"\x81\xa1a" + b"\x91" * 100000 + b"\xc0",
 "noend": lambda: P(hdr(), data()),
 "zero_rows": lambda: P(hdr(), data(ids=(), x=(), y=(), d=()), end(0)),
 "bigframe": lambda: P(hdr(), data(ids=["r%d" % i for i in range(25000)], x=[0.0] * 50000, y=[0] * 25000, d=[0] * 25000), end(25000)),
 "zero8": lambda: P(hdr(features=["g%d" % j for j in range(8)]), data(ids=(), x=(), y=(), d=(), F=8), end(0)),
 "trailing_garbage": lambda: P(hdr(), data(), end()) + b"\xc1",
}
def rand(seed, n):
    r = random.Random(seed)
    return bytes(r.randrange(256) for _ in range(n))
def randmp(seed, F, prefix):
    # random bytes after a valid header of F features: the reader must get past it
    return P(hdr(features=["%s%d" % (prefix, j) for j in range(F)])) + rand(seed, 3000)
what = sys.argv[1]
if what == "list":
    print(" ".join(cases))
elif what == "rand":
    sys.stdout.buffer.write(rand(int(sys.argv[2]), int(sys.argv[3])))
elif what == "randmp":
    sys.stdout.buffer.write(randmp(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
else:
    sys.stdout.buffer.write(cases[what]())
PYEOF
"$PY" - <<'PYEOF'
import random
random.seed(1)
for name, n, shift in (("src", 40, 0.0), ("tgt", 24, 0.5)):
    with open(name + ".csv", "w") as f:
        f.write("id,label," + ",".join("g%d" % j for j in range(8)) + "\n")
        for i in range(n):
            c = i % 2
            f.write("%s%d,%s," % (name, i, "AB"[c]) + ",".join("%.3f" % (random.random() * 5 + 3 * c * (j < 4) + shift) for j in range(8)) + "\n")
PYEOF
for c in $("$PY" mk.py list); do "$PY" mk.py "$c" >"c_$c.mpk"; done
: >empty.mpk
: >empty.csv

# (a fixture that fails is one FAIL; the groups that need it are then skipped)
MODEL=0
if have normalize; then
	if ! { normalize --quiet --label-column label --log2 --zscore --fit-stats src.stats src.csv >src.mpk &&
	       normalize --quiet --label-column label --stats src.stats tgt.csv >tgt.mpk; } 2>fixture.err; then
		fail bad-0.1 "fixtures: normalize failed: $(head -c 300 fixture.err)"
	elif have batch && have train-step && have encode && have predict && have discriminate; then
		if batch --quiet --source src.mpk --target tgt.mpk --epochs 2 --batch-size 8 --test-out test.mpk >b.mpk &&
		   train-step --quiet --method dann --out model.mpk --encoder-layers 6 --classifier-layers 4 \
			--discriminator-layers 4 --checkpoint ck.mpk b.mpk &&
		   encode --model model.mpk test.mpk >z.mpk; then
			MODEL=1
		else
			fail bad-0.2 "fixtures: batch/train-step/encode failed"
		fi
	fi
fi

# ---- 1: the stream reader, through normalize --format stream ----
if have normalize; then
	s() { bad "bad-1.$1" 1 "$3" normalize --quiet --format stream "c_$2.mpk"; }
	run bad-1.0 0 normalize --quiet --format stream c_ok.mpk
	s 1 version2 "c_version2.mpk: frame 1: stream format version 2 is not supported"
	s 2 version_str "c_version_str.mpk: frame 1: version: expected an integer"
	s 3 noversion "c_noversion.mpk: frame 1: missing \"version\""
	s 4 kindmodel "c_kindmodel.mpk: frame 1: a stream of kind \"model\", expected \"data\""
	s 5 notype "c_notype.mpk: frame 1: frame has no \"type\""
	s 6 type_int "c_type_int.mpk: frame 1: \"type\" is not a short string"
	s 7 notmap "c_notmap.mpk: frame 1: frame is not a map"
	s 8 firstdata "c_firstdata.mpk: frame 1: expected a header frame, got \"data\""
	s 9 twoheaders "c_twoheaders.mpk: frame 2: a second header frame"
	s 10 afterend "c_afterend.mpk: frame 4: data after the end frame"
	s 11 badrows "c_badrows.mpk: frame 3: end frame counts 5 rows, stream had 2"
	s 12 dtype_f64 "c_dtype_f64.mpk: frame 2: x: dtype f64, expected f32"
	s 13 dtype_unknown "c_dtype_unknown.mpk: frame 2: x: unknown dtype"
	s 14 y_f32 "c_y_f32.mpk: frame 2: y: dtype f32, expected i32"
	s 15 shape_short "c_shape_short.mpk: frame 2: x: shape needs 16 bytes, data has 12"
	s 16 shape_long "c_shape_long.mpk: frame 2: x: shape needs 16 bytes, data has 20"
	s 17 shape_1d "c_shape_1d.mpk: frame 2: x: 1 dimensions, expected 2"
	s 18 shape_cols "c_shape_cols.mpk: frame 2: x has 3 columns, header has 2 features"
	s 19 shape_dims "c_shape_dims.mpk: frame 2: x: 4 dimensions, expected 2"
	s 20 shape_huge "c_shape_huge.mpk: frame 2: x: shape needs 18446744056529682436 bytes, data has 0"
	s 21 shape_toolarge "c_shape_toolarge.mpk: frame 2: x: shape[0] = 1099511627776 is too large"
	s 22 shape_neg "c_shape_neg.mpk: frame 2: x: shape[0] is not a non-negative integer"
	s 23 shape_str "c_shape_str.mpk: frame 2: x: shape is not an array"
	s 24 shape_9d "c_shape_9d.mpk: frame 2: x: more than 8 dimensions"
	s 25 tensor_nodata "c_tensor_nodata.mpk: frame 2: x: tensor needs dtype, shape and data"
	s 26 tensor_notmap "c_tensor_notmap.mpk: frame 2: x: tensor is not a map"
	s 27 data_str "c_data_str.mpk: frame 2: x: data is not bin"
	s 28 rows_disagree "c_rows_disagree.mpk: frame 2: ids, x, y and d disagree on the number of rows"
	s 29 label_range "c_label_range.mpk: frame 2: row 1 (b): label 2 is not a class of the header"
	s 30 label_neg "c_label_neg.mpk: frame 2: row 1 (b): label -2 is not a class of the header"
	s 31 domain_range "c_domain_range.mpk: frame 2: row 1 (b): domain 1 is not a domain of the header"
	s 32 ids_int "c_ids_int.mpk: frame 2: ids: expected a string"
	s 33 id_nul "c_id_nul.mpk: frame 2: ids: string contains a NUL byte"
	s 34 noids "c_noids.mpk: frame 2: missing \"ids\""
	s 35 feat_int "c_feat_int.mpk: frame 1: features: expected a string"
	s 36 feat_str "c_feat_str.mpk: frame 1: features: expected an array of strings"
	s 37 huge_str "c_huge_str.mpk: frame 1: declared size exceeds the frame limit (DAPIPE_MAX_FRAME)"
	s 38 huge_bin "c_huge_bin.mpk: frame 1: truncated frame (unexpected end of input)"
	s 39 huge_map "c_huge_map.mpk: frame 1: declared size exceeds the frame limit (DAPIPE_MAX_FRAME)"
	s 40 huge_array "c_huge_array.mpk: frame 1: truncated frame (unexpected end of input)"
	s 41 c1 "c_c1.mpk: frame 1: malformed msgpack"
	s 42 deep "c_deep.mpk: frame 1: "
	s 43 noend "c_noend.mpk: frame 3: stream ends without an end frame"
	s 44 trailing_garbage "c_trailing_garbage.mpk: frame 4: malformed msgpack"
	s 45 nan "c_nan.mpk: frame 2: "
	s 46 inf "c_inf.mpk: frame 2: "
	bad bad-1.47 1 "empty.mpk: empty stream (no header frame)" normalize --quiet --format stream empty.mpk
	bad bad-1.48 1 "<stdin>: empty stream (no header frame)" normalize --quiet --format stream -
	run bad-1.49 0 normalize --quiet --format stream c_bigframe.mpk
	DAPIPE_MAX_FRAME=100000; export DAPIPE_MAX_FRAME
	bad bad-1.50 1 "c_bigframe.mpk: frame 2: declared size exceeds the frame limit" normalize --quiet --format stream c_bigframe.mpk
	DAPIPE_MAX_FRAME=1000; export DAPIPE_MAX_FRAME
	bad bad-1.51 1 "src.mpk: frame 1: " normalize --quiet --format stream src.mpk
	unset DAPIPE_MAX_FRAME
fi

# ---- 2: every truncated prefix of a valid stream ----
# prefixes NAME FILE COUNT CMD...: CMD reads prefix.mpk; about COUNT prefixes of FILE
# (all of the first 16 lengths, then evenly spaced, and the one a byte short) each exit
# 1 with one line naming the file and a truncation message; one PASS for all of them.
NPREFIX=0
prefixes() {
	name=$1; file=$2; count=$3; shift 3
	size=$(wc -c <"$file")
	step=$((size / count)); [ "$step" -lt 1 ] && step=1
	k=0; bads=""; tested=0
	while [ "$k" -lt "$size" ]; do
		head -c "$k" "$file" >prefix.mpk
		$T "$@" >"$OUT" 2>"$ERR" </dev/null
		rc=$?
		tested=$((tested + 1))
		if [ "$rc" -ne 1 ] || [ "$(wc -l <"$ERR")" -ne 1 ] || ! grep -q "prefix.mpk" "$ERR" ||
		   ! grep -qE "truncated frame|without an end frame|empty stream|empty file|no header frame|truncated" "$ERR"; then
			bads="$bads $k(rc=$rc: $(head -c 120 "$ERR"))"
			[ ${#bads} -gt 400 ] && break
		fi
		if [ "$k" -lt 16 ]; then k=$((k + 1)); elif [ "$k" -lt $((size - 1)) ] && [ $((k + step)) -ge "$size" ]; then k=$((size - 1)); else k=$((k + step)); fi
	done
	NPREFIX=$((NPREFIX + tested))
	if [ -z "$bads" ]; then pass "$name ($tested prefixes of $size bytes)"; else fail "$name" "prefixes:$bads"; fi
	ls ./*.tmp.* >/dev/null 2>&1 && fail "$name (temporaries)" "$(ls ./*.tmp.*)"
}
if have normalize; then
	prefixes bad-2.1 c_ok.mpk 1000 normalize --quiet --format stream prefix.mpk
	prefixes bad-2.2 src.mpk 40 normalize --quiet prefix.mpk
	prefixes bad-2.3 src.stats 30 normalize --quiet --label-column label --stats prefix.mpk tgt.csv
fi
if [ "$MODEL" -eq 1 ]; then
	prefixes bad-2.4 test.mpk 20 encode --model model.mpk prefix.mpk
	prefixes bad-2.5 model.mpk 30 encode --model prefix.mpk test.mpk
	prefixes bad-2.6 z.mpk 20 predict --model model.mpk prefix.mpk
	prefixes bad-2.7 model.mpk 20 predict --model prefix.mpk z.mpk
	prefixes bad-2.8 z.mpk 15 discriminate --model model.mpk prefix.mpk
	prefixes bad-2.9 tgt.mpk 15 batch --quiet --source src.mpk --target prefix.mpk
	prefixes bad-2.10 b.mpk 12 train-step --quiet --method dann --out m.mpk --encoder-layers 6 \
		--classifier-layers 4 --discriminator-layers 4 prefix.mpk
	ok "bad-2.11 no model after truncated batches" test ! -e m.mpk
	prefixes bad-2.12 ck.mpk 12 train-step --quiet --method dann --out m.mpk --encoder-layers 6 \
		--classifier-layers 4 --discriminator-layers 4 --resume prefix.mpk b.mpk
	# --like needs only the bundle's header: every prefix inside the header fails
	"$PY" -c 'import msgpack, sys; u = msgpack.Unpacker(open("model.mpk", "rb"), raw=False); u.unpack(); sys.stdout.buffer.write(open("model.mpk", "rb").read()[:u.tell()])' >model_header.mpk
	prefixes bad-2.13 model_header.mpk 20 normalize --quiet --label-column label --like prefix.mpk tgt.csv
fi

# ---- 3: random bytes ----
i=0
for seed in 1 2 3; do
	"$PY" mk.py rand "$seed" 4000 >"rand$seed.bin"
	"$PY" mk.py randmp "$seed" 2 g >"randmp$seed.mpk"
	"$PY" mk.py randmp "$seed" 8 g >"randmp8_$seed.mpk"
	"$PY" mk.py randmp "$seed" 6 z >"randmp6_$seed.mpk"
done
for seed in 1 2 3; do
	i=$((i + 1))
	if have normalize; then
		run "bad-3.$i.1 normalize random" 1 $T normalize --quiet "rand$seed.bin"
		run "bad-3.$i.2 normalize --format stream random" 1 $T normalize --quiet --format stream "rand$seed.bin"
		bad "bad-3.$i.3 normalize random after a header" 1 "randmp$seed.mpk: frame 2: " normalize --quiet "randmp$seed.mpk"
		run "bad-3.$i.4 normalize --show shapes random" 1 $T normalize --show shapes "randmp$seed.mpk"
		run "bad-3.$i.5 normalize --stats random" 1 $T normalize --quiet --stats "rand$seed.bin" tgt.csv
	fi
	if [ "$MODEL" -eq 1 ]; then
		bad "bad-3.$i.6 encode random data" 1 "randmp8_$seed.mpk: frame 2: " encode --model model.mpk "randmp8_$seed.mpk"
		run "bad-3.$i.7 encode random model" 1 $T encode --model "rand$seed.bin" test.mpk
		bad "bad-3.$i.8 predict random" 1 "randmp6_$seed.mpk: frame 2: " predict --model model.mpk "randmp6_$seed.mpk"
		bad "bad-3.$i.9 discriminate random" 1 "randmp6_$seed.mpk: frame 2: " discriminate --model model.mpk "randmp6_$seed.mpk"
		run "bad-3.$i.10 batch random" 1 $T batch --quiet --source "randmp$seed.mpk" --target tgt.mpk
		run "bad-3.$i.11 train-step random" 1 $T train-step --quiet --method dann --out m.mpk "rand$seed.bin"
		run "bad-3.$i.12 encode --stage random requests" 1 $T sh -c "encode --stage <rand$seed.bin"
	fi
done

# ---- 4: tables: CSV, TSV, GCT, gzip ----
if have normalize; then
	n() { bad "bad-4.$1" 1 "$2" normalize --quiet "$3"; }
	printf 'id,g1,g2\na,1,2\nb,3\n' >short.csv
	n 1 "short.csv:3: 2 fields, expected 3" short.csv
	printf 'id,g1,g2\na,1,2\nb,3,4,5\n' >long.csv
	n 2 "long.csv:3: 4 fields, expected 3" long.csv
	printf 'id,g1,g2\na,1,x\n' >nonnum.csv
	n 3 "nonnum.csv:2: column 3 (g2): 'x' is not a number" nonnum.csv
	printf 'id,g1,g2\na,1,\n' >emptycell.csv
	n 4 "emptycell.csv:2: column 3 (g2): missing value ''" emptycell.csv
	printf 'id,g1,g2\na,1,NaN\n' >nancell.csv
	n 5 "nancell.csv:2: column 3 (g2): missing value 'NaN'" nancell.csv
	printf 'id,g1,g2\na,1,inf\n' >infcell.csv
	n 6 "infcell.csv:2: column 3 (g2): 'inf' is not a finite number" infcell.csv
	printf 'id,g1,g2\na,1,1e999\n' >bigcell.csv
	n 7 "bigcell.csv:2: column 3 (g2): '1e999' is not a finite number" bigcell.csv
	printf 'id,g1,g2\na,"1,2\n' >quote.csv
	n 8 "quote.csv:2: " quote.csv
	n 9 "empty.csv: empty file" empty.csv
	printf 'id,g1,g2\n' >hdronly.csv
	n 10 "hdronly.csv: no data rows (header only)" hdronly.csv
	printf 'id\na\n' >onecol.csv
	n 11 "onecol.csv:1: the header has 1 column" onecol.csv
	printf 'id,g1,g2\na,1,2\na,3,4\n' >dupid.csv
	n 12 "dupid.csv:3: duplicate sample id 'a'" dupid.csv
	printf 'id,g1,g2\na,1,2\0\n' >nul.csv
	n 13 "nul.csv:2: " nul.csv
	bad bad-4.14 1 "src.csv: no column named 'tissue' (--label-column)" normalize --quiet --label-column tissue src.csv
	"$PY" mk.py rand 7 20000 | tr -d '\000' >randtext.csv
	run bad-4.15 1 $T normalize --quiet randtext.csv
	gzip -c src.csv >src.csv.gz
	run bad-4.16 0 $T normalize --quiet --label-column label src.csv.gz
	head -c 300 src.csv.gz >trunc.csv.gz
	bad bad-4.17 1 "trunc.csv.gz: truncated gzip input" normalize --quiet --label-column label trunc.csv.gz
	printf '\037\213garbage' >bad.csv.gz
	bad bad-4.18 1 "bad.csv.gz: corrupt gzip input" normalize --quiet bad.csv.gz
	cp src.csv.gz crc.csv.gz
	printf '\000\000\000\000' | dd of=crc.csv.gz bs=1 seek=$(($(wc -c <src.csv.gz) - 8)) conv=notrunc 2>/dev/null
	bad bad-4.19 1 "crc.csv.gz: corrupt gzip input" normalize --quiet --label-column label crc.csv.gz
	{ cat src.csv.gz; printf 'junk after the member'; } >junk.csv.gz
	run bad-4.20 1 $T normalize --quiet --label-column label junk.csv.gz
	gzip -c empty.csv >empty.csv.gz
	bad bad-4.21 1 "empty.csv.gz: empty file" normalize --quiet empty.csv.gz
	printf '#1.2\n2\t2\nName\tDescription\ta\tb\ng1\td\t1\t2\n' >short.gct
	n 22 "short.gct: 1 gene rows, the dimensions line says 2" short.gct
	printf '#1.2\nx\ty\nName\tDescription\ta\tb\n' >dims.gct
	n 23 "dims.gct:2: expected the dimensions line" dims.gct
	printf '#1.2\n1\t3\nName\tDescription\ta\tb\ng1\td\t1\t2\n' >cols.gct
	n 24 "cols.gct:2: the dimensions line says 3 samples, the header has 2" cols.gct
	printf '#1.2\n99999999999\t99999999999\nName\tDescription\ta\n' >huge.gct
	n 25 "huge.gct" huge.gct
	printf '#1.2\n1\t1\nName\tDescription\ta\ng1\td\tzz\n' >val.gct
	n 26 "val.gct:4: " val.gct
	printf '#1.2\n' >hdr.gct
	n 27 "hdr.gct" hdr.gct
	printf 'gene\ta\tb\ng1\t1\t2\ng2\t3\tz\n' >rows.tsv
	bad bad-4.28 1 "rows.tsv:3: column 3 (b): 'z' is not a number" normalize --quiet --genes-as-rows rows.tsv
	bad bad-4.29 1 "nosuch.csv: cannot open: No such file or directory" normalize --quiet nosuch.csv
	bad bad-4.30 1 "/: read error: Is a directory" normalize --quiet /
	printf 'id,label\nsrc0,A\nsrc1\n' >labels.csv
	bad bad-4.31 1 "labels.csv:3: " normalize --quiet --labels labels.csv --label-column label src.csv
	printf 'id,label\n' >labels0.csv
	run bad-4.32 1 $T normalize --quiet --labels labels0.csv --label-column label src.csv
	printf 'nosuch\n\n#x\n' >genes.txt
	bad bad-4.33 1 "src.csv: no gene" normalize --quiet --label-column label --genes genes.txt src.csv
	bad bad-4.34 1 "src.csv:2: label 'A' is not in --classes" normalize --quiet --label-column label --classes X,Y src.csv
fi

# ---- 5: models and data that do not fit together ----
if [ "$MODEL" -eq 1 ]; then
	bad bad-5.1 1 "c_ok.mpk: 2 features, the model model.mpk expects 8" encode --model model.mpk c_ok.mpk
	bad bad-5.2 1 "test.mpk: 8 features, the classifier of model.mpk takes 6" predict --model model.mpk test.mpk
	bad bad-5.3 1 "test.mpk: 8 features, the discriminator of model.mpk takes 6" discriminate --model model.mpk test.mpk
	bad bad-5.4 1 "src.mpk: frame 1: kind \"data\", expected a model bundle" encode --model src.mpk test.mpk
	bad bad-5.5 1 "src.mpk: frame 1: kind \"data\", expected a model bundle" predict --model src.mpk z.mpk
	bad bad-5.6 1 "src.mpk: frame 1: kind \"data\", expected a minibatch stream" train-step --quiet --method dann --out m.mpk src.mpk
	bad bad-5.7 1 "model.mpk: frame 1: kind \"model\", expected a checkpoint" train-step --quiet --method dann --out m.mpk --resume model.mpk b.mpk
	bad bad-5.8 1 "model.mpk" batch --quiet --source model.mpk --target tgt.mpk
	bad bad-5.9 1 "nosuch.mpk: cannot open: No such file or directory" encode --model nosuch.mpk test.mpk
	bad bad-5.10 1 "c_kindmodel.mpk: the bundle has no encoder" encode --model c_kindmodel.mpk test.mpk
	# a model with an encoder but no classifier frame
	"$PY" - model.mpk noclf.mpk <<'PYEOF'
import sys, msgpack
fr = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
out = [f for f in fr if not (f.get("type") == "params" and f.get("stage") == "classifier")]
open(sys.argv[2], "wb").write(b"".join(msgpack.packb(f, use_bin_type=True) for f in out))
PYEOF
	bad bad-5.11 1 "noclf.mpk" predict --model noclf.mpk z.mpk
	# a model whose encoder weight has the wrong shape
	"$PY" - model.mpk badw.mpk <<'PYEOF'
import sys, msgpack
fr = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
for f in fr:
    if f.get("type") == "params" and f.get("stage") == "encoder":
        k = sorted(f["tensors"])[0]
        f["tensors"][k]["shape"] = [1] + list(f["tensors"][k]["shape"])[1:]
open(sys.argv[2], "wb").write(b"".join(msgpack.packb(f, use_bin_type=True) for f in fr))
PYEOF
	bad bad-5.12 1 "badw.mpk: frame 2: " encode --model badw.mpk test.mpk
	# labels the model does not know: predicted as the model's classes, scored by name
	printf 'id,label,g0,g1,g2,g3,g4,g5,g6,g7\nx1,C,1,2,3,4,5,6,7,8\nx2,A,1,2,3,4,5,6,7,8\n' >newlab.csv
	normalize --quiet --like model.mpk --label-column label newlab.csv >newlab.mpk
	encode --model model.mpk newlab.mpk >znew.mpk
	run bad-5.13 0 $T predict --model model.mpk --eval znew.mpk
	out_has "x1,"
	err_has "C "
	# genes the model does not have: aligned to the bundle's features, missing ones filled
	printf 'id,g0,zz\nn1,1,2\n' >fewgenes.csv
	run bad-5.14 0 $T normalize --quiet --like model.mpk fewgenes.csv
	printf 'id,q1,q2\nn1,1,2\n' >nogenes.csv
	bad bad-5.15 1 "nogenes.csv: no gene matches" normalize --quiet --like model.mpk nogenes.csv
	# non-finite values reaching the model
	bad bad-5.16 1 "c_nan" encode --model model.mpk c_nan.mpk
fi

# ---- 6: empty inputs ----
if [ "$MODEL" -eq 1 ]; then
	for f in "encode --model model.mpk" "predict --model model.mpk" "discriminate --model model.mpk" \
	         "train-step --quiet --method dann --out m.mpk" "batch --quiet --target tgt.mpk --source"; do
		# shellcheck disable=SC2086
		bad "bad-6 ${f%% *} empty file" 1 "empty.mpk: empty stream (no header frame)" $f empty.mpk
		# shellcheck disable=SC2086
		bad "bad-6 ${f%% *} empty stdin" 1 "<stdin>: empty stream (no header frame)" $f -
	done
	bad "bad-6 encode empty model" 1 "empty.mpk: empty" encode --model empty.mpk test.mpk
	run "bad-6 encode zero rows" 0 $T encode --model model.mpk c_zero8.mpk
	encode --model model.mpk c_zero8.mpk >z0.mpk
	run "bad-6 predict zero rows" 0 $T predict --model model.mpk z0.mpk
	run "bad-6 normalize zero rows" 0 $T normalize --quiet --format stream c_zero_rows.mpk
fi

# ---- 7: files that matter are whole or absent ----
if have normalize; then
	cp src.stats keep.stats
	bad bad-7.1 1 "short.csv:3: 2 fields" normalize --quiet --log2 --zscore --fit-stats keep.stats short.csv
	ok "bad-7.1 previous statistics kept" cmp src.stats keep.stats
	bad bad-7.2 1 "short.csv:3: 2 fields" normalize --quiet --log2 --zscore --fit-stats new.stats short.csv
	ok "bad-7.2 no statistics written" test ! -e new.stats
	bad bad-7.3 1 "nodir/x.stats" normalize --quiet --label-column label --log2 --fit-stats nodir/x.stats src.csv
fi
if [ "$MODEL" -eq 1 ]; then
	cp model.mpk keep.mpk
	head -c 3000 b.mpk >b3000.mpk
	bad bad-7.4 1 "b3000.mpk: frame " train-step --quiet --method dann --out keep.mpk b3000.mpk
	ok "bad-7.4 previous model kept" cmp model.mpk keep.mpk
	bad bad-7.5 1 "encoder stage (exit 3) died (exit status 3)" train-step --quiet --method dann --out keep.mpk --encoder 'exit 3' b.mpk
	ok "bad-7.5 previous model kept" cmp model.mpk keep.mpk
	bad bad-7.6 1 "classifier stage (cat) answered garbage" train-step --quiet --method dann --out keep.mpk --classifier cat b.mpk
	bad bad-7.7 1 "discriminator stage" train-step --quiet --method dann --out keep.mpk --discriminator 'echo oops >&2; exit 1' b.mpk
	err_has "oops"
	bad bad-7.8 1 "encoder stage" train-step --quiet --method dann --out keep.mpk --encoder "$BIN/encode --stage --layers 99999999" b.mpk
	ok "bad-7.8 previous model kept" cmp model.mpk keep.mpk
	cp ck.mpk keepck.mpk
	bad bad-7.9 1 "b3000.mpk: frame " train-step --quiet --method dann --out m.mpk --checkpoint keepck.mpk b3000.mpk
	ok "bad-7.9 checkpoint whole" normalize --show shapes keepck.mpk
	bad bad-7.10 1 "nodir/m.mpk" train-step --quiet --method dann --out nodir/m.mpk --encoder-layers 6 \
		--classifier-layers 4 --discriminator-layers 4 b.mpk
	bad bad-7.11 1 "randmp6_1.mpk: frame 2: " predict --model model.mpk --metrics-json met.json randmp6_1.mpk
	ok "bad-7.11 no metrics written" test ! -e met.json
	# stages that never answer: killed after --stage-timeout, named, the model kept
	s0=$(date +%s)
	bad bad-7.13 1 "discriminator stage (cat >/dev/null) did not answer request 1 within 1 s (killed)" \
		train-step --quiet --method dann --out keep.mpk --stage-timeout 1 --discriminator 'cat >/dev/null' b.mpk
	ok "bad-7.13 within the timeout" test $(( $(date +%s) - s0 )) -le 10
	ok "bad-7.13 previous model kept" cmp model.mpk keep.mpk
	bad bad-7.14 1 "encoder stage (sleep 30) did not answer request 1 within 1 s (killed)" \
		train-step --quiet --method dann --out keep.mpk --stage-timeout 1 --encoder 'sleep 30' b.mpk
	# the shell's child (sleep) is killed with the stage's process group
	ok "bad-7.14 nothing left running" sh -c '! pgrep -x -f "sleep 30" >/dev/null'
	# a stage that answers init, then stops answering (a Python stage)
	cat >hang.py <<'PYEOF'
import os, msgpack
u = msgpack.Unpacker(raw=False)
while True:
    b = os.read(0, 65536)
    if not b:
        break
    u.feed(b)
    for req in u:
        if req["type"] != "init":
            while os.read(0, 65536):
                pass
            raise SystemExit(0)
        os.write(1, msgpack.packb({"type": "ok", "out": 1, "nparams": 1}))
PYEOF
	bad bad-7.15 1 "discriminator stage ($PY hang.py) did not answer request 2 within 5 s (killed)" \
		train-step --quiet --method dann --out keep.mpk --stage-timeout 5 --discriminator "$PY hang.py" b.mpk
	ok "bad-7.15 previous model kept" cmp model.mpk keep.mpk
	# a stage that reads a little and exits 0 before answering
	bad bad-7.16 1 "discriminator stage (head -c 10 >/dev/null) died (exit status 0)" \
		train-step --quiet --method dann --out keep.mpk --discriminator 'head -c 10 >/dev/null' b.mpk
	bad bad-7.17 2 "--stage-timeout: -1: must be at least 0" train-step --method dann --out m.mpk --stage-timeout -1 b.mpk
	# 0: no limit (the default run, with a limit of none, trains)
	run bad-7.18 0 $T train-step --quiet --method dann --out m0.mpk --stage-timeout 0 --encoder-layers 6 \
		--classifier-layers 4 --discriminator-layers 4 --epochs-max 1 b.mpk
fi
ok "bad-7.12 no temporaries left" sh -c '! ls ./*.tmp.* ./*/*.tmp.* 2>/dev/null | grep .'

# ---- 8: usage errors (exit 2, the option named) ----
if have normalize; then
	bad bad-8.1 2 "--format: xml: expected auto, csv, tsv, gct or stream" normalize --format xml src.csv
	bad bad-8.2 2 "--top-variable: -1: must be at least" normalize --top-variable -1 src.csv
	bad bad-8.3 2 "--bogus" normalize --bogus src.csv
	bad bad-8.4 2 "--show: " normalize --show nothing src.mpk
fi
if [ "$MODEL" -eq 1 ]; then
	bad bad-8.5 2 "--batch-size: 1: must be at least 2" batch --source src.mpk --target tgt.mpk --batch-size 1
	bad bad-8.6 2 "--lr: nan: not a number" train-step --method dann --out m.mpk --lr nan b.mpk
	bad bad-8.7 2 "--method" train-step --method magic --out m.mpk b.mpk
	bad bad-8.8 2 "--layers: " encode --stage --layers 0
	bad bad-8.9 2 "--format" predict --model model.mpk --format xml z.mpk
	bad bad-8.10 2 "--method" discriminate --stage --method none
	bad bad-8.11 2 "--epochs: 0: must be at least 1" batch --source src.mpk --target tgt.mpk --epochs 0
	bad bad-8.12 2 "--labeled-fraction: 2: must be at most 1" batch --source src.mpk --target tgt.mpk --labeled-fraction 2
fi
echo "INFO bad-inputs: $NPREFIX truncated prefixes tested"
