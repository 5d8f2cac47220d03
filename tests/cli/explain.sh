#!/bin/sh
# tests/cli/explain.sh: Integrated Gradients through the stages (predict --explain):
# completeness on a trained model with BatchNorm and dropout, convergence with the
# steps, f(x) against the inference pipeline, the attribution stream and ranking, a
# user's own encoder stage in Python, recovery of the planted marker genes of the
# synthetic samples (recall at k); alignment metrics (discriminate --alignment) on
# identical and separated distributions; option errors.
. "$(dirname "$0")/../lib.sh"
cd "$TMP" || exit 1

# awk checks on CSV columns: "cond" over the rows after the header
all_rows() { # NAME FILE AWK-CONDITION
	if awk -F, "NR > 1 && !($3) { bad = 1; print \"row \" NR \": \" \$0; exit } END { exit bad }" "$2" > .why 2>&1
	then pass "$1"; else fail "$1" "$(head -c 300 .why)"; fi
}
# mean |column c| over the rows after the header
mean_abs() { awk -F, -v c="$2" 'NR > 1 { v = $c < 0 ? -$c : $c; s += v; n++ } END { printf "%.6g\n", n ? s / n : 0 }' "$1"; }
max_abs() { awk -F, -v c="$2" 'NR > 1 { v = $c < 0 ? -$c : $c; if (v > m) m = v } END { printf "%.6g\n", m }' "$1"; }
check() { # NAME AWK-EXPRESSION (variables passed after)
	name=$1; expr=$2; shift 2
	if awk "$@" "BEGIN { exit !($expr) }"; then pass "$name"; else fail "$name" "$expr with $*"; fi
}

awk -v n=100 -v noise=0.1 -v deg=0 -v s=1 -v p=s -f "$ROOT/tests/moons.awk" > source.csv
awk -v n=100 -v noise=0.1 -v deg=35 -v s=2 -v p=t -f "$ROOT/tests/moons.awk" > target.csv
normalize --quiet --label-column label --domain source --zscore --fit-stats m.stats source.csv > s.mpk
normalize --quiet --label-column label --domain target --stats m.stats target.csv > t.mpk
batch --quiet --source s.mpk --target t.mpk --epochs 20 --batch-size 32 --seed 1 > b.mpk
# the default encoder blocks: Linear, ReLU, BatchNorm, Dropout 0.5
train-step --quiet --method source-only --out m.mpk --lr 1e-2 --encoder-layers 32,32 \
	--classifier-layers 16 --select last --seed 1 b.mpk

# ---- explain-1: options ----
run "explain-1.help" 0 predict --help
out_has "--explain"
out_has "--baseline B"
run "explain-1.needs-explain" 2 predict --model m.mpk --steps 10 s.mpk
err_has "apply to --explain"
run "explain-1.needs-model" 2 predict --explain s.mpk
err_is "predict: --explain needs --model FILE
Try 'predict --help' for more information."
run "explain-1.steps-zero" 2 predict --explain --model m.mpk --steps 0 s.mpk
err_has "--steps: 0"
run "explain-1.blur" 2 predict --explain --model m.mpk --baseline blur s.mpk
err_has "--baseline blur: a blurred-image baseline needs an image model"
run "explain-1.rule" 2 predict --explain --model m.mpk --rule simpson s.mpk
err_has "--rule: simpson: expected trapezoid or gauss-legendre"
run "explain-1.unknown-class" 2 predict --explain --model m.mpk --class zebra s.mpk
err_has "--class zebra: not a class of m.mpk (a, b)"
run "explain-1.rank-by-alone" 2 predict --explain --model m.mpk --rank-by abs s.mpk
run "explain-1.with-eval" 2 predict --explain --eval --model m.mpk s.mpk
run "explain-1.latent-input" 1 sh -c 'encode --model m.mpk s.mpk | predict --explain --model m.mpk'
err_has "features, the model m.mpk takes 2 (prepare the data with normalize --like m.mpk)"
run "explain-1.baseline-missing" 1 predict --explain --model m.mpk --baseline nosuch.mpk s.mpk
err_has "nosuch.mpk: cannot open"
run "explain-1.encoder-dies" 1 predict --explain --model m.mpk --encoder 'echo oops >&2; exit 3' s.mpk
err_has "encoder stage (echo oops >&2; exit 3) died (exit status 3); its stderr ends: oops"

# ---- explain-2: completeness on the trained model ----
run "explain-2.run" 0 predict --explain --model m.mpk --steps 200 --completeness c200.csv t.mpk
ok "explain-2.header" sh -c 'head -n 1 c200.csv | grep -qx "id,class,f_x,f_baseline,sum_attr,gap"'
ok "explain-2.rows" test "$(wc -l < c200.csv)" -eq 201
all_rows "explain-2.gap-is-sum-minus-difference" c200.csv '$5 - ($3 - $4) - $6 < 1e-6 && $5 - ($3 - $4) - $6 > -1e-6'
g200=$(mean_abs c200.csv 6)
m200=$(max_abs c200.csv 6)
df=$(mean_abs c200.csv 3)
echo "completeness, 200 trapezoid steps: mean |gap| $g200, max |gap| $m200"
check "explain-2.completeness-mean ($g200)" 'g < 0.005' -v g="$g200"
check "explain-2.completeness-max ($m200)" 'm < 0.05' -v m="$m200"
predict --quiet --explain --model m.mpk --steps 10 t.mpk > c10.csv
g10=$(mean_abs c10.csv 6)
echo "completeness, 10 trapezoid steps: mean |gap| $g10"
check "explain-2.converges ($g10 -> $g200)" 'b < a / 4' -v a="$g10" -v b="$g200"
predict --quiet --explain --model m.mpk --attribute logit --steps 200 t.mpk > cl.csv
gl=$(mean_abs cl.csv 6)
dl=$(awk -F, 'NR > 1 { v = $3 - $4; s += v < 0 ? -v : v; n++ } END { print s / n }' cl.csv)
check "explain-2.logit-completeness ($gl of $dl)" 'g < 0.01 * d' -v g="$gl" -v d="$dl"
predict --quiet --explain --model m.mpk --rule gauss-legendre --steps 64 t.mpk > cg.csv
gg=$(mean_abs cg.csv 6)
check "explain-2.gauss-legendre ($gg)" 'g < 0.02' -v g="$gg"
# f(x) is the probability the inference pipeline gives for that class
encode --model m.mpk t.mpk | predict --model m.mpk > pred.csv
awk -F, 'NR == FNR { if (FNR > 1) p[$1] = $2 == "a" ? $3 : $4; next }
	FNR > 1 { d = $3 - p[$1]; if (d > 2e-5 || d < -2e-5) { print "row " FNR ": " $3 " vs " p[$1]; exit 1 } }' pred.csv c200.csv > .why 2>&1
ok "explain-2.f-matches-predict" test ! -s .why
ok "explain-2.class-is-predicted" sh -c 'tail -n +2 pred.csv | cut -d, -f1,2 > a.txt; tail -n +2 c200.csv | cut -d, -f1,2 > b.txt; cmp a.txt b.txt'
# a named class and the zero baseline give f(baseline) = p(class | 0) for every row
predict --quiet --explain --model m.mpk --class b t.mpk > cb.csv
ok "explain-2.named-class" sh -c 'tail -n +2 cb.csv | cut -d, -f2 | sort -u | grep -qx b'
# (equal up to float rounding: BLAS may round a row differently at another place in a batch)
ok "explain-2.baseline-constant" awk -F, 'NR == 2 { b = $4 } NR > 2 && ($4 - b > 1e-6 || b - $4 > 1e-6) { exit 1 }' cb.csv
# the source mean: the bundle's z-score statistics give 0 = the mean of s.mpk
predict --quiet --explain --model m.mpk --baseline source-mean t.mpk > csm.csv
predict --quiet --explain --model m.mpk --baseline s.mpk t.mpk > cfile.csv
awk -F, 'NR == FNR { b[FNR] = $4; next } FNR > 1 { d = $4 - b[FNR]; if (d > 1e-4 || d < -1e-4) { print FNR; exit 1 } }' cfile.csv csm.csv > .why
ok "explain-2.source-mean-equals-file-mean" test ! -s .why

# ---- explain-3: attribution stream, ranking, determinism ----
run "explain-3.outputs" 0 predict --explain --model m.mpk --out-stream attr.mpk --ranking rank.csv t.mpk
cp "$OUT" c50.csv
ok "explain-3.stream-shapes" sh -c 'normalize --show shapes attr.mpk | grep -q "x=f32\[200,2\]"'
ok "explain-3.stream-header" sh -c 'normalize --show header attr.mpk | grep -q "\"method\": \"integrated-gradients\""'
ok "explain-3.stream-no-preprocessing" sh -c '! normalize --show header attr.mpk | grep -q preprocessing'
# the stream's rows sum to sum_attr
normalize --show csv attr.mpk > attr.csv 2>/dev/null
awk -F, 'NR == FNR { if (FNR > 1) s[$1] = $5; next } FNR == 1 { for (i = 1; i <= NF; i++) { if ($i == "x1") a = i; if ($i == "x2") b = i; if ($i == "id") c = i }; next }
	{ d = $a + $b - s[$c]; if (d > 1e-5 || d < -1e-5) { print FNR ": " d; exit 1 } }' c50.csv attr.csv > .why
ok "explain-3.stream-sums" test ! -s .why
ok "explain-3.ranking-header" sh -c 'head -n 1 rank.csv | grep -qx "class,gene,mean_attribution,mean_abs_attribution,rank,samples"'
ok "explain-3.ranking-rows" test "$(wc -l < rank.csv)" -eq 5
ok "explain-3.ranking-order" awk -F, 'NR > 1 && $5 > 1 && $3 > prev { exit 1 } { prev = $3 }' rank.csv
predict --quiet --explain --model m.mpk --out-stream attr2.mpk --ranking rank2.csv t.mpk > c50b.csv
ok "explain-3.deterministic" sh -c 'cmp attr.mpk attr2.mpk && cmp rank.csv rank2.csv && cmp c50.csv c50b.csv'
run "explain-3.top" 0 predict --explain --model m.mpk --ranking top.csv --rank-by abs --top 1 t.mpk
ok "explain-3.top-rows" test "$(wc -l < top.csv)" -eq 3
run "explain-3.label-class" 0 predict --explain --model m.mpk --class label t.mpk
ok "explain-3.label-class-rows" test "$(wc -l < "$OUT")" -eq 201

# ---- explain-4: a user's own encoder stage (Python: a linear encoder, plain SGD) ----
PY=""
for py in python3 /usr/bin/python3; do
	if "$py" -c 'import msgpack, numpy' 2>/dev/null; then PY=$py; break; fi
done
if [ -n "$PY" ]; then
	cat > lin.py <<'PYEOF'
import os, sys, msgpack, numpy as np
def T(a):
    a = np.ascontiguousarray(a, "<f4"); return {"dtype": "f32", "shape": list(a.shape), "data": a.tobytes()}
def A(t):
    return np.frombuffer(t["data"], "<f4").reshape(t["shape"]).astype(np.float64)
H = 8; W = b = x = None; gW = gb = 0
u = msgpack.Unpacker(raw=False)
while data := os.read(0, 1 << 16):
    u.feed(data)
    for q in u:
        r = {"type": "ok"}; t = q["type"]
        if t == "init":
            rng = np.random.default_rng(q.get("seed", 1)); n = q["in"]
            W = rng.uniform(-1, 1, (H, n)) / np.sqrt(n); b = np.zeros(H); gW = gb = 0
            r.update(out=H, nparams=W.size + H)
        elif t == "forward":
            x = A(q["x"]); r["y"] = T(x @ W.T + b)
        elif t == "backward":
            dy = A(q["dy"]); gW = gW + dy.T @ x; gb = gb + dy.sum(0)
            if q.get("want_dx"): r["dx"] = T(dy @ W)
            if "lr" in q: W -= q["lr"] * gW; b -= q["lr"] * gb; gW = gb = 0
        elif t == "step":
            W -= q["lr"] * gW; b -= q["lr"] * gb; gW = gb = 0
        elif t == "save":
            r["params"] = {"type": "params", "stage": "encoder", "arch": {"in": W.shape[1], "widths": [H],
                "head": True, "act": "relu", "norm": "none", "dropout": 0.0, "slope": 0.2},
                "tensors": {"l0.w": T(W), "l0.b": T(b)}}
        elif t == "load":
            p = q["params"]["tensors"]; W = A(p["l0.w"]).copy(); b = A(p["l0.b"]).copy(); gW = gb = 0
            r.update(out=W.shape[0], nparams=W.size + H)
        elif t == "quit":
            sys.stdout.buffer.write(msgpack.packb(r)); sys.stdout.buffer.flush(); sys.exit(0)
        else:
            r = {"type": "error", "message": "unknown request " + t}
        sys.stdout.buffer.write(msgpack.packb(r, use_bin_type=True)); sys.stdout.buffer.flush()
PYEOF
	run "explain-4.train-python-encoder" 0 train-step --quiet --method source-only --out py.mpk --lr 0.05 \
		--optimizer sgd --encoder "$PY lin.py" --classifier-layers 16 --select last --seed 1 b.mpk
	run "explain-4.explain-python-encoder" 0 predict --explain --model py.mpk --encoder "$PY lin.py" --steps 100 t.mpk
	cp "$OUT" cpy.csv
	gp=$(mean_abs cpy.csv 6)
	check "explain-4.completeness ($gp)" 'g < 0.005' -v g="$gp"
	# the same bundle explained by the C encoder (its params frame has the C layout)
	predict --quiet --explain --model py.mpk --steps 100 t.mpk > cpyc.csv
	awk -F, 'NR == FNR { s[FNR] = $5; next } FNR > 1 { d = $5 - s[FNR]; if (d > 1e-4 || d < -1e-4) { print FNR ": " d; exit 1 } }' cpy.csv cpyc.csv > .why
	ok "explain-4.python-equals-c" test ! -s .why
else
	echo "# explain-4: no python3 with msgpack and numpy: skipped"
fi

# ---- explain-5: the planted marker genes of the synthetic samples ----
gen-samples --quiet --out gs --genes 1000 --tcga 400 --archs4 0 --gtex 0 --no-gzip --markers-out markers.csv
normalize --quiet --label-column tissue --domain source --zscore gs/tcga.csv > src.mpk
batch --quiet --source src.mpk --target src.mpk --epochs 15 --seed 1 > bs.mpk
train-step --quiet --method source-only --out gm.mpk --lr 1e-3 --encoder-layers 64 --classifier-layers 32 \
	--select last --seed 1 bs.mpk
run "explain-5.ranking" 0 predict --explain --model gm.mpk --ranking grank.csv src.mpk
# recall at k = markers per class: the share of each class's markers among its top k genes
recall() {
	awk -F, -v k="$1" 'FNR == 1 { next }
		NR == FNR { m[$1 "," $2] = 1; nm[$1]++; next }
		{ g = $2; sub(/\..*/, "", g); if ($5 <= k) { top[$1]++; if (($1 "," g) in m) hit[$1]++ } }
		END { for (c in nm) if (top[c]) { n++; s += hit[c] / (k < nm[c] ? k : nm[c]) } printf "%.3f\n", n ? s / n : 0 }' markers.csv "$2"
}
k=$(awk -F, 'NR > 1 { n[$1]++ } END { for (c in n) { print n[c]; exit } }' markers.csv)
r=$(recall "$k" grank.csv)
r10=$(recall 10 grank.csv)
echo "marker recall on synthetic samples (1000 genes, $k markers per class): recall@$k $r, recall@10 $r10 (chance $(awk -v k="$k" 'BEGIN { printf "%.3f", k / 1000 }'))"
check "explain-5.recall-at-k ($r)" 'r >= 0.7' -v r="$r"

# ---- explain-6: alignment metrics ----
# two samples of one 4-D Gaussian, and one shifted by 4 sd on every axis
gauss() { # N SHIFT SEED PREFIX
	awk -v n="$1" -v sh="$2" -v s="$3" -v p="$4" 'function u() { s = (16807 * s) % 2147483647; return s / 2147483647 }
		function g() { return sqrt(-2 * log(1 - u())) * cos(6.283185307179586 * u()) }
		BEGIN { s += 777; print "id,z0,z1,z2,z3"; for (i = 0; i < n; i++) printf "%s%d,%.6f,%.6f,%.6f,%.6f\n", p, i, g() + sh, g() + sh, g() + sh, g() + sh }'
}
gauss 400 0 1 a > a.csv
gauss 300 0 2 b > b.csv
gauss 300 4 3 c > c.csv
normalize --quiet --domain source a.csv > za.mpk
normalize --quiet --domain target b.csv > zb.mpk
normalize --quiet --domain target c.csv > zc.mpk
run "explain-6.same" 0 discriminate --alignment za.mpk zb.mpk
pad=$(sed 's/.*"pad": \([-0-9.e]*\).*/\1/' "$OUT")
mmd2=$(sed 's/.*"mmd2": \([-0-9.e]*\).*/\1/' "$OUT")
echo "alignment, identical distributions: pad $pad, mmd2 $mmd2"
check "explain-6.same-pad ($pad)" 'p < 0.3 && p > -0.3' -v p="$pad"
check "explain-6.same-mmd ($mmd2)" 'm < 0.01 && m > -0.01' -v m="$mmd2"
run "explain-6.apart" 0 discriminate --alignment za.mpk zc.mpk
pad=$(sed 's/.*"pad": \([-0-9.e]*\).*/\1/' "$OUT")
mmd2=$(sed 's/.*"mmd2": \([-0-9.e]*\).*/\1/' "$OUT")
echo "alignment, shifted by 4 sd: pad $pad, mmd2 $mmd2"
check "explain-6.apart-pad ($pad)" 'p > 1.9' -v p="$pad"
check "explain-6.apart-mmd ($mmd2)" 'm > 0.5' -v m="$mmd2"
# one stream with both domains gives the same figures as two streams
normalize --quiet za.mpk zc.mpk > zac.mpk
run "explain-6.one-stream" 0 discriminate --alignment zac.mpk
ok "explain-6.one-stream-same" sh -c "discriminate --alignment za.mpk zc.mpk | cmp - '$OUT'"
run "explain-6.named" 0 discriminate --alignment --source target --target source --format csv --name swapped zac.mpk
out_has "name,pad,pad_error,mmd2,mmd,sigma2,n_source,n_target,features"
out_has "swapped,"
ok "explain-6.deterministic" sh -c 'discriminate --alignment --seed 5 za.mpk zb.mpk > r1; discriminate --alignment --seed 5 za.mpk zb.mpk > r2; cmp r1 r2'
run "explain-6.one-domain" 1 discriminate --alignment za.mpk
err_has "1 domain in the header: alignment needs source and target rows"
run "explain-6.widths" 1 discriminate --alignment za.mpk s.mpk
err_has "2 features, za.mpk has 4"
run "explain-6.seed-alone" 2 discriminate --seed 3 za.mpk
err_has "apply to --alignment"
run "explain-6.three-files" 2 discriminate --alignment za.mpk zb.mpk zc.mpk
run "explain-6.unknown-domain" 1 discriminate --alignment --source gtex zac.mpk
err_has "no domain \"gtex\" in the header"
# latents of a trained model: the encoder of the rotated-moons model
encode --model m.mpk s.mpk > ls.mpk
encode --model m.mpk t.mpk > lt.mpk
run "explain-6.latents" 0 discriminate --alignment --name before ls.mpk lt.mpk
out_has '"name": "before"'

# ---- explain-7: tiles: the ResNet encoder, the blur baseline, heatmaps ----
PY=/usr/bin/python3
gen-tiles -q -o tiles --size 24 --count 40 --organs breast,colon,lung --seed 3
stain-norm --quiet --method none --to-stream --label-from-dir tiles/breast_benign tiles/breast_malignant \
	tiles/colon_benign tiles/colon_malignant > isrc.mpk
stain-norm --quiet --method none --to-stream --label-from-dir tiles/lung_benign tiles/lung_malignant > itgt.mpk
gen-tiles -q -o tiles16 --size 16 --count 2 --organs lung --seed 3
stain-norm --quiet --method none --to-stream --label-from-dir tiles16/lung_benign tiles16/lung_malignant > i16.mpk
batch --quiet --source isrc.mpk --target itgt.mpk --epochs 6 --batch-size 16 --seed 1 --augment > ib.mpk
train-step --quiet --method source-only --out im.mpk --lr 1e-3 --seed 1 --select last \
	--encoder "$BIN/encode --stage --arch resnet --width 4 --blocks 1,1" ib.mpk
ntile=80
# completeness with the blur baseline (the default for an image model), requests
# chunked to the 32 rows the ResNet stage can differentiate after an evaluation forward;
# the class attributed: malignant (the planted signal, below)
run "explain-7.run" 0 predict --explain --model im.mpk --class malignant --completeness ic.csv --heatmaps hm \
	--out-stream ia.mpk itgt.mpk
err_has "baseline blur, 50 trapezoid steps"
ok "explain-7.rows" test "$(wc -l < ic.csv)" -eq $((ntile + 1))
gi=$(mean_abs ic.csv 6)
mi=$(max_abs ic.csv 6)
di=$(awk -F, 'NR > 1 { v = $3 - $4; s += v < 0 ? -v : v; n++ } END { print s / n }' ic.csv)
echo "tiles, blur baseline, 50 steps: mean |gap| $gi, max |gap| $mi (mean |f(x) - f(blur)| $di)"
check "explain-7.completeness-mean ($gi)" 'g < 0.003' -v g="$gi"
check "explain-7.completeness-max ($mi)" 'm < 0.02' -v m="$mi"
check "explain-7.blur-moves-f ($di)" 'd > 0.02' -v d="$di"
# black-tile baseline
run "explain-7.zeros" 0 predict --explain --model im.mpk --class malignant --baseline zeros --out-stream iz.mpk itgt.mpk
cp "$OUT" iz.csv
gz=$(mean_abs iz.csv 6)
dz=$(awk -F, 'NR > 1 { v = $3 - $4; s += v < 0 ? -v : v; n++ } END { print s / n }' iz.csv)
echo "tiles, black baseline, 50 steps: mean |gap| $gz (mean |f(x) - f(0)| $dz)"
check "explain-7.zeros-completeness ($gz)" 'g < 0.02' -v g="$gz"
gen-tiles -q -o tiles24 --size 24 --count 2 --organs lung --seed 5
stain-norm --quiet --method none --to-stream --label-from-dir tiles24/lung_benign tiles24/lung_malignant > i24.mpk
# the chunking changes only float rounding: 7 rows per request against the default
predict --quiet --explain --model im.mpk --batch-rows 7 i24.mpk > ic7.csv
predict --quiet --explain --model im.mpk i24.mpk > ic32.csv
ok "explain-7.chunking" awk -F, 'NR == FNR { if (FNR > 1) v[FNR] = $5; next }
	FNR > 1 { d = $5 - v[FNR]; if (d < 0) d = -d; if (d > 1e-5) { print "row " FNR ": " $5 " vs " v[FNR]; exit 1 } }' ic32.csv ic7.csv
# an image stream's mean tile as the baseline
run "explain-7.mean-tile" 0 predict --explain --model im.mpk --class malignant --baseline isrc.mpk --steps 100 i24.mpk
cp "$OUT" imt.csv
gm=$(mean_abs imt.csv 6)
check "explain-7.mean-tile-completeness ($gm)" 'g < 0.005' -v g="$gm"
# one baseline for every tile: f(baseline) equal up to float rounding
ok "explain-7.one-mean-tile" awk -F, 'NR > 2 && ($4 - f > 1e-6 || f - $4 > 1e-6) { exit 1 } NR == 2 { f = $4 }' imt.csv

# heatmaps: one PNG of the tile's size per tile, named after the id, and an index
ok "explain-7.heatmap-files" test "$(ls hm/*.png | wc -l)" -eq $ntile
ok "explain-7.heatmap-index" test "$(wc -l < hm/heatmaps.csv)" -eq $((ntile + 1))
ok "explain-7.heatmap-name" test -f hm/lung_malignant_lung_malignant_0001.png
pngsize() { # FILE...: "W H" per file, from the IHDR chunk
	$PY -c 'import sys, struct
for p in sys.argv[1:]:
    b = open(p, "rb").read(24)
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", p
    print(*struct.unpack(">II", b[16:24]))' "$@"
}
if [ "$(pngsize hm/*.png | sort -u)" = "24 24" ]; then pass "explain-7.heatmap-size"; else fail "explain-7.heatmap-size" "$(pngsize hm/*.png | sort -u | head -3)"; fi
run "explain-7.wrong-size" 1 predict --explain --model im.mpk i16.mpk
err_has "i16.mpk: 16x16 tiles, the model im.mpk takes 24x24"
run "explain-7.panel-scale" 0 predict --explain --model im.mpk --steps 20 --heatmaps hp --heatmap-panel --heatmap-scale 3 \
	--heatmap-mode signed i24.mpk
if [ "$(pngsize hp/*.png | sort -u)" = "147 72" ]; then pass "explain-7.panel-size"; else fail "explain-7.panel-size" "$(pngsize hp/*.png | sort -u | head -3)"; fi
# one scale for every tile: the index lists it
run "explain-7.heatmap-max" 0 predict --explain --model im.mpk --steps 20 --heatmaps hmax --heatmap-max 0.01 i24.mpk
ok "explain-7.heatmap-max-index" awk -F, 'NR > 1 && $5 != 0.01 { exit 1 }' hmax/heatmaps.csv
ok "explain-7.deterministic" sh -c 'predict --quiet --explain --model im.mpk --steps 20 --heatmaps hq i24.mpk > q1 &&
	predict --quiet --explain --model im.mpk --steps 20 --heatmaps hr i24.mpk > q2 && cmp q1 q2 &&
	for f in hq/*.png; do cmp "$f" "hr/${f#hq/}" || exit 1; done'

# the attribution stream of tiles: pixel features, rows summing to sum_attr; and the
# planted signal of gen-tiles: malignant tiles have more, larger, darker nuclei, so the
# evidence for "malignant" should fall on nuclei (dark hematoxylin pixels), not on the
# stroma and spaces around them
$PY - itgt.mpk ia.mpk ic.csv ia.mpk iz.mpk > nuc.txt <<'PYEOF' || fail "explain-7.stream" "python failed: $(cat nuc.txt)"
import sys, msgpack, numpy as np
def frames(p):
    return list(msgpack.Unpacker(open(p, "rb"), raw=False, max_buffer_size=1 << 30))
fr = frames(sys.argv[1]); h = fr[0]; th, tw = h["tile"]["h"], h["tile"]["w"]
px, lab = {}, {}
for f in fr[1:]:
    if f["type"] != "images": continue
    x = np.frombuffer(f["x"]["data"], np.uint8).reshape(-1, th, tw, 3)
    y = np.frombuffer(f["y"]["data"], np.int32)
    for i, id in enumerate(f["ids"]): px[id], lab[id] = x[i], h["classes"][y[i]]
def attrs(p):
    fr = frames(p)
    out = {}
    for f in fr[1:]:
        if f["type"] == "data":
            a = np.frombuffer(f["x"]["data"], np.float32).reshape(-1, th, tw, 3)
            for i, id in enumerate(f["ids"]): out[id] = a[i]
    return fr[0], out
ah, a = attrs(sys.argv[2])
print("stream", ah["kind"], len(ah["features"]), ah["features"][0], "tile" in ah, ah["attribution"]["baseline"])
sums = {l.split(",")[0]: float(l.split(",")[4]) for l in open(sys.argv[3]).read().split("\n")[1:] if l}
print("sums", "ok" if all(abs(a[k].sum() - sums[k]) < 1e-4 * max(1, abs(sums[k])) for k in a) else "bad")
def enrich(p):
    _, a = attrs(p)
    r, mass, frac = [], [], []
    for id, v in a.items():
        if lab[id] != "malignant": continue
        nuc = px[id].astype(float).mean(axis=2) < 150   # hematoxylin-dark pixels
        m = np.abs(v).sum(axis=2)
        if nuc.sum() == 0 or nuc.all(): continue
        r.append(m[nuc].mean() / m[~nuc].mean()); mass.append(m[nuc].sum() / m.sum()); frac.append(nuc.mean())
    return len(r), np.median(r), np.mean(mass), np.mean(frac)
print("blur %d %.3f %.3f %.3f" % enrich(sys.argv[4]))
print("zeros %d %.3f %.3f %.3f" % enrich(sys.argv[5]))
PYEOF
cat nuc.txt
if grep -qx "stream data 1728 r0_0 False blur" nuc.txt; then pass "explain-7.stream-header"; else fail "explain-7.stream-header" "$(head -1 nuc.txt)"; fi
if grep -qx "sums ok" nuc.txt; then pass "explain-7.stream-sums"; else fail "explain-7.stream-sums" "$(cat nuc.txt)"; fi
read -r _ nb rb mb fb <<EOF2
$(grep '^blur ' nuc.txt)
EOF2
check "explain-7.nuclei-tiles ($nb)" 'n >= 30' -v n="${nb:-0}"
check "explain-7.nuclei-per-pixel ($rb)" 'r > 2.5' -v r="${rb:-0}"
check "explain-7.nuclei-mass ($mb of $fb pixels)" 'm > 1.8 * f' -v m="${mb:-0}" -v f="${fb:-1}"
read -r _ nz rz mz fz <<EOF2
$(grep '^zeros ' nuc.txt)
EOF2
check "explain-7.blur-sharper-than-black ($rb > $rz)" 'b > z' -v b="${rb:-0}" -v z="${rz:-0}"

# option errors
run "explain-7.heatmaps-genes" 2 predict --explain --model m.mpk --heatmaps hx s.mpk
err_has "--heatmaps: m.mpk is not an image model"
run "explain-7.ranking-tiles" 2 predict --explain --model im.mpk --ranking r.csv itgt.mpk
err_has "--ranking ranks genes; im.mpk is an image model: use --heatmaps DIR"
run "explain-7.heatmap-option-alone" 2 predict --explain --model im.mpk --heatmap-scale 4 itgt.mpk
err_has "need --heatmaps DIR"
run "explain-7.heatmap-mode" 2 predict --explain --model im.mpk --heatmaps hx --heatmap-mode log itgt.mpk
err_has "--heatmap-mode: log: expected abs or signed"
run "explain-7.blur-sigma" 2 predict --explain --model im.mpk --baseline zeros --blur-sigma 2 itgt.mpk
err_has "--blur-sigma needs --baseline blur"
run "explain-7.blur-sigma-range" 2 predict --explain --model im.mpk --blur-sigma 0 itgt.mpk
err_has "--blur-sigma: 0"
