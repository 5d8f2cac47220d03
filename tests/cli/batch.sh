#!/bin/sh
# tests/cli/batch.sh: the batch filter (splits and minibatches), see docs/BATCH.md.
# Test streams are made by a short python3-msgpack script so this test does not
# depend on normalize. Column 0 of x holds the row number of a row within its file,
# so the checker can tell which rows a batch drew.
. "$(dirname "$0")/../lib.sh"

PY=python3
if ! "$PY" -c 'import msgpack, numpy' 2>/dev/null; then PY=/usr/bin/python3; fi
if ! "$PY" -c 'import msgpack, numpy' 2>/dev/null; then
	fail batch-0 "python3 with msgpack and numpy is needed (Debian: python3-msgpack python3-numpy)"
	exit 1
fi

cat >"$TMP/mk.py" <<'EOF'
# mk.py OUT PREFIX DOMAIN CLASSES COUNTS UNLABELLED FEATURES [noend|trunc|nolabel-src]
import sys, msgpack, numpy as np
out, prefix, domain, classes, counts, unl, feats = sys.argv[1:8]
mode = sys.argv[8] if len(sys.argv) > 8 else ""
classes = classes.split(",") if classes else []
counts = [int(c) for c in counts.split(",")] if counts else []
feats = feats.split(",")
ys = [c for c, n in enumerate(counts) for _ in range(n)] + [-1] * int(unl)
n, F = len(ys), len(feats)
rng = np.random.default_rng(len(prefix) * 7 + n)
x = rng.normal(size=(n, F)).astype("<f4")
x[:, 0] = np.arange(n)
ids = ["%s%03d" % (prefix, i) for i in range(n)]
def t(a, dt):
    return {"dtype": dt, "shape": list(a.shape), "data": a.tobytes()}
fr = [msgpack.packb({"type": "header", "version": 1, "kind": "data", "features": feats,
                     "classes": classes, "domains": ["other", domain],
                     "preprocessing": {"steps": ["log2"], "from": prefix}})]
for s in range(0, n, 16):
    e = min(n, s + 16)
    fr.append(msgpack.packb({"type": "data", "ids": ids[s:e], "x": t(x[s:e], "f32"),
                             "y": t(np.array(ys[s:e], "<i4"), "i32"),
                             "d": t(np.ones(e - s, "<i4"), "i32")}))
if mode != "noend":
    fr.append(msgpack.packb({"type": "end", "rows": n, "frames": len(fr) - 1}))
data = b"".join(fr)
if mode == "trunc":
    data = data[:len(data) - 40]
open(out, "wb").write(data)
EOF

cat >"$TMP/chk.py" <<'EOF'
# chk.py BATCHES SOURCE TARGET [SPLIT]: check a minibatch stream against its inputs
# and print "key value" lines for the shell test.
import sys, collections, msgpack, numpy as np
def arr(t):
    return np.frombuffer(t["data"], dtype={"f32": "<f4", "i32": "<i4"}[t["dtype"]]).reshape(t["shape"])
def load(p):
    fr = list(msgpack.Unpacker(open(p, "rb"), raw=False))
    h = fr[0]
    ids, ys = [], []
    for f in fr:
        if f["type"] == "data":
            ids += f["ids"]; ys += list(arr(f["y"]))
    names = [h["classes"][y] if y >= 0 else None for y in ys]
    return h, ids, names
fr = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
sh, sids, snames = load(sys.argv[2])
th, tids, tnames = load(sys.argv[3])
h = fr[0]
cls = h["classes"]
p = lambda k, v: print(k, v)
p("kind", h["kind"]); p("classes", ",".join(cls)); p("domains", ",".join(h["domains"]))
for k in ("steps_per_epoch", "epochs", "batch_source", "batch_target", "mode", "n_labeled_target", "seed"):
    p(k, h.get(k))
p("preprocessing_from", h.get("preprocessing", {}).get("from"))
p("last", fr[-1]["type"])
types = collections.Counter(f["type"] for f in fr)
p("batches", types["batch"]); p("epoch_ends", types["epoch_end"])
vals = [f for f in fr if f["type"] == "val"]
p("val_sets", ",".join(f["set"] for f in vals) or "none")
bad_label = 0
min_s = min_t = 10**9
max_s = 0
lab_per_batch = set()
yt_labelled = 0
tl_rows = set()
balance_spread = 0
src_rows_epoch0 = []
for f in fr:
    if f["type"] != "batch":
        continue
    xs, ys, xt, yt = arr(f["xs"]), arr(f["ys"]), arr(f["xt"]), arr(f["yt"])
    min_s = min(min_s, len(ys)); max_s = max(max_s, len(ys)); min_t = min(min_t, len(yt))
    for r, y in zip(xs[:, 0], ys):
        if cls[y] != snames[int(r)]: bad_label += 1
    nl = 0
    for r, y in zip(xt[:, 0], yt):
        if y >= 0:
            nl += 1; tl_rows.add(int(r))
            if cls[y] != tnames[int(r)]: bad_label += 1
    lab_per_batch.add(nl)
    yt_labelled += nl
    c = collections.Counter(ys.tolist())
    present = len(set(snames))
    counts = [c.get(k, 0) for k in range(len(cls)) if cls[k] in set(snames)]
    balance_spread = max(balance_spread, max(counts) - min(counts))
    if f["epoch"] == 0:
        src_rows_epoch0 += [int(r) for r in xs[:, 0]]
for f in vals:
    names = snames if f["set"] == "source" else tnames
    idl = sids if f["set"] == "source" else tids
    for i, y in zip(f["ids"], arr(f["y"])):
        if cls[y] != names[idl.index(i)]: bad_label += 1
    p("val_" + f["set"], len(f["ids"]))
p("bad_labels", bad_label)
p("min_source_rows", min_s); p("max_source_rows", max_s); p("min_target_rows", min_t)
p("labelled_per_batch", ",".join(map(str, sorted(lab_per_batch))))
p("yt_labelled", yt_labelled)
p("distinct_labelled_target_rows", len(tl_rows))
p("balance_spread", balance_spread)
p("epoch0_source_repeats", len(src_rows_epoch0) - len(set(src_rows_epoch0)))
p("end_rows_ok", int(fr[-1].get("rows") == sum(len(arr(f["ys"])) + len(arr(f["yt"])) for f in fr if f["type"] == "batch") + sum(len(f["ids"]) for f in vals)))
if len(sys.argv) > 4:
    import csv
    rows = list(csv.reader(open(sys.argv[4])))
    p("split_header", ",".join(rows[0]))
    keys = [(r[0], r[1]) for r in rows[1:]]
    want = [(i, "tcga") for i in sids] + [(i, "gtex") for i in tids]
    p("split_covers", int(sorted(keys) == sorted(want) and len(set(keys)) == len(keys)))
    roles = collections.Counter(r[2] for r in rows[1:])
    for r in sorted(roles): p("role_" + r, roles[r])
    # per-class role counts of the target
    tc = collections.Counter((tnames[tids.index(r[0])], r[2]) for r in rows[1:] if r[1] == "gtex")
    for (c, r) in sorted(tc, key=lambda k: (str(k[0]), k[1])): p("target_%s_%s" % (c, r), tc[(c, r)])
    sc = collections.Counter((snames[sids.index(r[0])], r[2]) for r in rows[1:] if r[1] == "tcga")
    for (c, r) in sorted(sc): p("source_%s_%s" % (c, r), sc[(c, r)])
    # the labelled target rows of the batches are exactly the labelled-train rows
    lt = set(tids.index(r[0]) for r in rows[1:] if r[2] == "labelled-train")
    p("labelled_rows_match", int(lt == tl_rows) if tl_rows else "n/a")
EOF

# has KEY VALUE: the checker output ($TMP/chk) has the line "KEY VALUE"
has() {
	if grep -qx -- "$1 $2" "$TMP/chk"; then pass "$LAST ($1)"; else fail "$LAST ($1)" "expected '$1 $2', got '$(grep -- "^$1 " "$TMP/chk")'"; fi
}
check() { "$PY" "$TMP/chk.py" "$@" >"$TMP/chk" 2>&1 || { fail "$LAST (checker)" "$(tail -n 3 "$TMP/chk")"; }; }

F=g1,g2,g3,g4
S="$TMP/S.mpk"
T="$TMP/T.mpk"
"$PY" "$TMP/mk.py" "$S" s tcga A,B,C 40,30,20 0 "$F"
# target: another class order, a class the source lacks (D), 5 unlabelled rows
"$PY" "$TMP/mk.py" "$T" t gtex C,D,A 10,6,4 5 "$F"
"$PY" "$TMP/mk.py" "$TMP/Tfeat.mpk" t gtex C,D,A 10,6,4 5 g1,g2,gX,g4
"$PY" "$TMP/mk.py" "$TMP/Tnarrow.mpk" t gtex C,D,A 10,6,4 5 g1,g2,g3
"$PY" "$TMP/mk.py" "$TMP/Tnoend.mpk" t gtex C,D,A 10,6,4 5 "$F" noend
"$PY" "$TMP/mk.py" "$TMP/Ttrunc.mpk" t gtex C,D,A 10,6,4 5 "$F" trunc
"$PY" "$TMP/mk.py" "$TMP/Tempty.mpk" t gtex C,D,A "" 0 "$F"
"$PY" "$TMP/mk.py" "$TMP/Sunl.mpk" s tcga A,B,C 4,3,2 2 "$F"
"$PY" "$TMP/mk.py" "$TMP/Stiny.mpk" s tcga A,B 2,2 0 "$F"
"$PY" "$TMP/mk.py" "$TMP/Sone.mpk" s tcga A 1 0 "$F"

# ---- usage errors (exit 2) ----
run batch-1.1 0 batch --help
out_has "--labeled-fraction F"
out_has "(default 32)"
run batch-1.2 2 batch --target "$T"
err_has "batch: --source FILE is required"
run batch-1.3 2 batch --source "$S" --target "$T" --labeled-fraction 0
err_has "batch: --labeled-fraction: 0: must be greater than 0"
run batch-1.4 2 batch --source "$S" --target "$T" --labeled-fraction 1.5
err_has "batch: --labeled-fraction: 1.5: must be at most 1"
run batch-1.5 2 batch --source "$S" --target "$T" --batch-size 0
err_has "batch: --batch-size: 0: must be at least 2"
run batch-1.6 2 batch --source "$S" --target "$T" --batch-size 1
err_has "batch: --batch-size: 1: must be at least 2"
run batch-1.7 2 batch --source "$S" --target "$T" --target-batch-size 1
err_has "batch: --target-batch-size: 1: must be at least 2"
run batch-1.8 2 batch --source "$S" --target "$T" --labeled-per-class 2 --labeled-fraction 0.5
err_has "batch: --labeled-per-class and --labeled-fraction exclude each other"
run batch-1.9 2 batch --source "$S" --target "$T" --labeled-per-class 2 --val-fraction 0.5 --test-fraction 0.5
err_has "batch: --val-fraction + --test-fraction = 1: must be below 1"
run batch-1.10 2 batch --source "$S" --target "$T" --test "$T" --test-fraction 0.3
err_has "batch: --test-fraction and --test exclude each other"
run batch-1.11 2 batch --source "$S" --target "$T" --bogus
err_has "batch: unknown option --bogus"
run batch-1.12 2 batch --source "$S" --target "$T" --epochs
err_has "batch: --epochs: missing argument"
run batch-1.14 2 batch --source - --target -
err_has "batch: only one input can be stdin (-)"
run_in batch-1.15 0 "$S" batch --source - --target "$T" --epochs 1 --quiet
run batch-1.13 2 batch --source "$S" --target "$T" --epochs 2x
err_has "batch: --epochs: 2x: not an integer"

# ---- bad input (exit 1, one line naming the file) ----
run batch-2.1 1 batch --source "$S" --target "$TMP/Tnoend.mpk"
err_is "batch: $TMP/Tnoend.mpk: frame 4: stream ends without an end frame (did the producer fail?)"
run batch-2.2 1 batch --source "$S" --target "$TMP/Tfeat.mpk"
err_is "batch: $S and $TMP/Tfeat.mpk: features differ at column 3: \"g3\" in $S, \"gX\" in $TMP/Tfeat.mpk (align them with normalize --like or --genes)"
run batch-2.3 1 batch --source "$S" --target "$TMP/Tnarrow.mpk"
err_is "batch: $S and $TMP/Tnarrow.mpk: features differ: $S has 4 features, $TMP/Tnarrow.mpk has 3 (first extra: \"g4\" in $S)"
run batch-2.4 1 batch --source "$S" --target "$TMP/Tempty.mpk"
err_is "batch: $TMP/Tempty.mpk: the target stream has no rows"
run batch-2.5 1 batch --source "$S" --target "$TMP/Ttrunc.mpk"
err_has "batch: $TMP/Ttrunc.mpk: frame 3: truncated frame (unexpected end of input)"
run batch-2.6 1 batch --source "$TMP/Sunl.mpk" --target "$T"
err_is "batch: $TMP/Sunl.mpk: 2 source rows are unlabelled (y = -1); the source must be labelled"
run batch-2.7 1 batch --source "$TMP/Sone.mpk" --target "$T" --quiet
err_is "batch: $TMP/Sone.mpk: 1 source training row; a batch needs at least 2"
run batch-2.8 1 batch --source "$S" --target "$TMP/missing.mpk"
err_is "batch: $TMP/missing.mpk: cannot open: No such file or directory"
run batch-2.9 1 batch --source "$S" --target "$TMP/Tempty.mpk" --split "$TMP/never.csv"
ok "batch-2.9 (no split file left behind)" test ! -e "$TMP/never.csv"

# ---- supervised run: splits, labels by name, oversampling ----
run batch-3.1 0 batch --source "$S" --target "$T" --labeled-per-class 2 --epochs 3 --batch-size 16 \
	--split "$TMP/split.csv" --test-out "$TMP/test.mpk"
cp "$OUT" "$TMP/b1.mpk"
err_has "batch: source $S: 90 rows: 81 source-train, 9 source-val"
err_has "batch: target $T: 25 rows: 6 labelled-train, 12 unlabelled-train, 2 validation, 5 test"
err_has "batch: 4 classes, 1 of them not in the source: D"
LAST=batch-3.2; check "$TMP/b1.mpk" "$S" "$T" "$TMP/split.csv"
has kind batches
has classes A,B,C,D
has domains source,target
has mode supervised
# 81 source-train rows, batch 16: floor(81/16) = 5 steps
has steps_per_epoch 5
has epochs 3
has batches 15
has epoch_ends 3
has last end
has end_rows_ok 1
has preprocessing_from s
has bad_labels 0
has val_sets target,source
has val_target 2
has val_source 9
# every batch: 16 source rows, 8 labelled + 8 unlabelled target rows
has min_source_rows 16
has min_target_rows 16
has labelled_per_batch 8
# 6 labelled target rows oversampled to 8 per batch x 15 batches, all of them used
has yt_labelled 120
has distinct_labelled_target_rows 6
has labelled_rows_match 1
has epoch0_source_repeats 0
LAST=batch-3.3
has split_header id,domain,role
has split_covers 1
# stratified: C 10 -> test 2, val 1, train 7 (2 labelled); D 6 -> 1, 1, 4 (2);
# A 4 -> 1, 0, 3 (2); unlabelled 5 -> test 1, train 4; source 10 % per class
has target_C_test 2
has target_C_validation 1
has target_C_labelled-train 2
has target_C_unlabelled-train 5
has target_D_test 1
has target_D_validation 1
has target_D_labelled-train 2
has target_A_test 1
has target_A_labelled-train 2
has target_A_unlabelled-train 1
has target_None_test 1
has target_None_unlabelled-train 4
has source_A_source-val 4
has source_B_source-val 3
has source_C_source-val 2
has role_source-train 81
has role_test 5

LAST=batch-3.4
"$PY" - "$TMP/test.mpk" >"$TMP/chk" 2>&1 <<'EOF'
import sys, msgpack, numpy as np
fr = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
h = fr[0]
print("kind", h["kind"]); print("classes", ",".join(h["classes"])); print("last", fr[-1]["type"])
print("rows", fr[-1]["rows"]); print("preprocessing_from", h["preprocessing"]["from"])
y = np.concatenate([np.frombuffer(f["y"]["data"], "<i4") for f in fr if f["type"] == "data"])
ids = sum((f["ids"] for f in fr if f["type"] == "data"), [])
print("labels", ",".join(sorted(h["classes"][v] if v >= 0 else "-" for v in y)))
print("ids", ",".join(sorted(ids)))
EOF
has kind data
has classes A,B,C,D
has last end
has rows 5
has preprocessing_from t
# target test rows: C x2, D, A, one unlabelled (as in the split file)
has labels "-,A,C,C,D"
want=$(awk -F, '$3 == "test" { print $1 }' "$TMP/split.csv" | sort | paste -sd, -)
has ids "$want"

# ---- determinism ----
run batch-4.1 0 batch --source "$S" --target "$T" --labeled-per-class 2 --epochs 3 --batch-size 16 --quiet
ok "batch-4.1 (same seed, same bytes)" cmp -s "$OUT" "$TMP/b1.mpk"
ok "batch-4.1 (quiet)" test ! -s "$ERR"
run batch-4.2 0 batch --source "$S" --target "$T" --labeled-per-class 2 --epochs 3 --batch-size 16 --seed 2 --quiet
ok "batch-4.2 (another seed, other batches)" sh -c '! cmp -s "$1" "$2"' sh "$OUT" "$TMP/b1.mpk"
run batch-4.3 0 batch --source "$S" --target "$T" --labeled-per-class 2 --epochs 3 --batch-size 16 --seed 2 --split-seed 1 \
	--split "$TMP/split2.csv" --quiet
ok "batch-4.3 (--split-seed keeps the split)" cmp -s "$TMP/split.csv" "$TMP/split2.csv"
run batch-4.4 0 batch --source "$S" --target "$T" --labeled-per-class 2 --seed 2 --split "$TMP/split3.csv" --quiet
ok "batch-4.4 (another seed, another split)" sh -c '! cmp -s "$1" "$2"' sh "$TMP/split.csv" "$TMP/split3.csv"

# ---- unsupervised ----
run batch-5.1 0 batch --source "$S" --target "$T" --epochs 2 --split "$TMP/split5.csv"
err_has "batch: target $T: 25 rows: 20 unlabelled-train, 5 test"
LAST=batch-5.2; check "$OUT" "$S" "$T" "$TMP/split5.csv"
has mode unsupervised
has yt_labelled 0
has val_sets source
has n_labeled_target 0
has split_covers 1
ok "batch-5.2 (no validation role)" sh -c '! grep -q "^role_validation" "$1"' sh "$TMP/chk"
run batch-5.3 0 batch --source "$S" --target "$T" --epochs 2 --val-fraction 0.2
err_has "batch: unsupervised run with --val-fraction: 4 labelled target rows will be used for model selection"
LAST=batch-5.4; check "$OUT" "$S" "$T"
has val_sets target,source
has yt_labelled 0

# ---- oversampling and small sets: no batch below 2 rows, never zero steps ----
# 4 source rows (source-val 0), batch 32: one step of 4; 1 labelled target row per class
run batch-6.1 0 batch --source "$TMP/Stiny.mpk" --target "$T" --labeled-per-class 1 --source-val-fraction 0 --epochs 4
LAST=batch-6.2; check "$OUT" "$TMP/Stiny.mpk" "$T"
has steps_per_epoch 1
has batches 4
has min_source_rows 4
has min_target_rows 32
has labelled_per_batch 16
has distinct_labelled_target_rows 3
has bad_labels 0
# a source whose training part is 2 rows, target batch 2 + mixed labelled/unlabelled
run batch-6.3 0 batch --source "$TMP/Stiny.mpk" --target "$T" --labeled-fraction 0.01 --source-val-fraction 0.5 --batch-size 3 --target-batch-size 2 --epochs 2
err_has "batch: target batch of 4 rows: 2 labelled + 2 unlabelled (at least 2 of each)"
LAST=batch-6.4; check "$OUT" "$TMP/Stiny.mpk" "$T"
has min_source_rows 2
has max_source_rows 2
has min_target_rows 4
has labelled_per_batch 2
has n_labeled_target 3
# batch 32 on 81 source-train rows: floor = 2 steps of exactly 32 (remainder left out, reshuffled)
run batch-6.5 0 batch --source "$S" --target "$T" --epochs 1
LAST=batch-6.6; check "$OUT" "$S" "$T"
has steps_per_epoch 2
has min_source_rows 32
has max_source_rows 32

# ---- labelled fraction, source fraction, class balance ----
run batch-7.1 0 batch --source "$S" --target "$T" --labeled-fraction 0.5 --source-fraction 0.25 \
	--epochs 1 --batch-size 4 --split "$TMP/split7.csv"
LAST=batch-7.2; check "$OUT" "$S" "$T" "$TMP/split7.csv"
# train rows C 7 -> 4 labelled (3.5 rounds up), D 4 -> 2, A 3 -> 2 (1.5 rounds up)
has target_C_labelled-train 4
has target_D_labelled-train 2
has target_A_labelled-train 2
# source-train A 36 -> 9, B 27 -> 7 (6.75), C 18 -> 5 (4.5); the rest unused
has source_A_source-train 9
has source_B_source-train 7
has source_C_source-train 5
has source_A_unused 27
has split_covers 1
has steps_per_epoch 5
run batch-7.3 0 batch --source "$S" --target "$T" --balance-classes --batch-size 6 --epochs 2
LAST=batch-7.4; check "$OUT" "$S" "$T"
has balance_spread 0
has bad_labels 0
run batch-7.5 0 batch --source "$S" --target "$T" --batch-size 6 --epochs 2
LAST=batch-7.6; check "$OUT" "$S" "$T"
ok "batch-7.6 (without --balance-classes, batches are not balanced)" sh -c '! grep -qx "balance_spread 0" "$1"' sh "$TMP/chk"

# ---- a separate test stream ----
"$PY" "$TMP/mk.py" "$TMP/X.mpk" x gtex D,E 3,2 0 "$F"
run batch-8.1 0 batch --source "$S" --target "$T" --test "$TMP/X.mpk" --epochs 1 --test-out "$TMP/xt.mpk" --split "$TMP/split8.csv"
err_has "batch: target $T: 25 rows: 25 unlabelled-train"
err_has "batch: test $TMP/X.mpk: 5 rows: 5 test"
LAST=batch-8.2; check "$OUT" "$S" "$T"
has classes A,B,C,D,E
ok "batch-8.2 (test rows in the split file)" test "$(grep -c ',test$' "$TMP/split8.csv")" -eq 5
LAST=batch-8.3; check "$TMP/xt.mpk" "$S" "$TMP/X.mpk"
has classes A,B,C,D,E

# ---- an explicit --val-fraction 0 in an unsupervised run: no validation, no warning ----
run batch-9.1 0 batch --source "$S" --target "$T" --epochs 1 --val-fraction 0 --quiet
ok "batch-9.1 (no warning)" test ! -s "$ERR"
LAST=batch-9.2; check "$OUT" "$S" "$T"
has val_sets source

# ---- truncated prefixes and random bytes: exit 1 with a message, never a crash ----
size=$(wc -c <"$T")
for cut in 0 1 7 100 $((size / 3)) $((size / 2)) $((size - 1)); do
	head -c "$cut" "$T" >"$TMP/cut.mpk"
	run "batch-10.$cut" 1 batch --source "$S" --target "$TMP/cut.mpk"
	err_has "batch: $TMP/cut.mpk: "
done
"$PY" -c 'import random; random.seed(5); open("'"$TMP"'/rand.mpk", "wb").write(bytes(random.randrange(256) for _ in range(3000)))'
run batch-10.rand 1 batch --source "$S" --target "$TMP/rand.mpk"
err_has "batch: $TMP/rand.mpk: "
