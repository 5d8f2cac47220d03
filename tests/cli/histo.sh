#!/bin/sh
# tests/cli/histo.sh: images through batch, the ResNet encoder stage, train-step, encode
# --model on image streams, and a tiny pipelines/histo-adapt run.
. "$(dirname "$0")/../lib.sh"
cd "$TMP" || exit 1
PY=/usr/bin/python3

# ---- fixtures: 16x16 tiles of three organs, image streams ----
gen-tiles -q -o tiles --size 16 --count 12 --organs breast,colon,lung --seed 3 || fail histo-0 "gen-tiles failed"
stain-norm --quiet --method none --to-stream --label-from-dir tiles/breast_benign tiles/breast_malignant \
	tiles/colon_benign tiles/colon_malignant >src.mpk 2>/dev/null || fail histo-0 "stain-norm failed"
stain-norm --quiet --method none --to-stream --label-from-dir tiles/lung_benign tiles/lung_malignant >tgt.mpk 2>/dev/null
gen-tiles -q -o tiles24 --size 24 --count 4 --organs lung --seed 3
stain-norm --quiet --method none --to-stream --label-from-dir tiles24/lung_benign tiles24/lung_malignant >tgt24.mpk 2>/dev/null

# ---- batch on image streams ----
run histo-1.1 0 batch --quiet --source src.mpk --target tgt.mpk --epochs 2 --batch-size 8 --augment --test-out test.mpk
cp "$OUT" b.mpk
$PY - b.mpk test.mpk >info.txt <<'PYEOF' || fail histo-1.2 "python could not read the streams"
import sys, msgpack, numpy as np
u = msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=1 << 30)
h = next(u)
print("features", len(h["features"]), h["features"][0], h["features"][3], h["features"][-1])
print("image", h["image"]["h"], h["image"]["w"], h["image"]["layout"])
print("classes", ",".join(h["classes"]))
lo, hi, nb = 1.0, 0.0, 0
for f in u:
    if f["type"] == "batch":
        x = np.frombuffer(f["xs"]["data"], np.float32)
        lo, hi, nb = min(lo, x.min()), max(hi, x.max()), nb + 1
        assert f["xs"]["shape"] == [8, 768], f["xs"]["shape"]
print("range", "ok" if lo >= 0 and hi <= 1 and hi > 0.5 else "bad", nb == h["steps_per_epoch"] * 2)
t = msgpack.Unpacker(open(sys.argv[2], "rb"), raw=False)
th = next(t)
print("test", th["kind"], th["tile"]["h"])
rows = [f for f in t][-1]["rows"]
print("ntest", rows, rows == h["n_test"])
PYEOF
ok() { if grep -qx -- "$2" info.txt; then pass "$1"; else fail "$1" "info lacks '$2': $(cat info.txt)"; fi; }
ok "histo-1.2 pixel features in HWC order" "features 768 r0_0 r0_1 b15_15"
ok "histo-1.3 header key image" "image 16 16 hwc"
ok "histo-1.4 classes from folders" "classes benign,malignant"
ok "histo-1.5 rows are pixels/255, steps_per_epoch x 2 epochs" "range ok True"
ok "histo-1.6 --test-out writes an image stream" "test images 16"
# augmentation: seeded, and it changes the rows
batch --quiet --source src.mpk --target tgt.mpk --epochs 2 --batch-size 8 --augment >b2.mpk
batch --quiet --source src.mpk --target tgt.mpk --epochs 2 --batch-size 8 >b3.mpk
batch --quiet --source src.mpk --target tgt.mpk --epochs 2 --batch-size 8 --augment --seed 2 >b4.mpk
if cmp -s b.mpk b2.mpk; then pass "histo-1.7 --augment is deterministic"; else fail "histo-1.7 --augment is deterministic" "two runs differ"; fi
if cmp -s b.mpk b3.mpk; then fail "histo-1.8 --augment changes the batches" "same bytes"; else pass "histo-1.8 --augment changes the batches"; fi
if cmp -s b.mpk b4.mpk; then fail "histo-1.9 --seed changes the augmentation" "same bytes"; else pass "histo-1.9 --seed changes the augmentation"; fi
run histo-1.10 1 batch --quiet --source src.mpk --target tgt24.mpk
err_has "tiles differ: 16x16 in src.mpk, 24x24 in tgt24.mpk"
run histo-1.11 2 batch --source src.mpk --target tgt.mpk --jitter 2
err_has "--jitter"

# ---- the ResNet stage ----
run histo-2.1 0 encode --help
out_has "--arch NAME"
out_has "--blocks LIST"
run histo-2.2 2 encode --stage --arch vgg
err_has "encode: --arch: vgg: expected mlp or resnet"
run histo-2.3 2 encode --stage --arch resnet --layers 8
err_has "MLP options"
run histo-2.4 2 encode --stage --width 8
err_has "ResNet options"
run histo-2.5 2 encode --stage --arch resnet --input-size 32 --width 4096
err_has "wider than 8192 channels"
run histo-2.6 2 encode --model m.mpk --arch resnet
err_has "apply to --stage"

# ---- training and inference ----
ENC="$BIN/encode --stage --arch resnet --width 4 --blocks 1,1"
run histo-3.1 0 train-step --quiet --method dann --out dann.mpk --lr 1e-3 --encoder "$ENC" --checkpoint ck.mpk b.mpk
run histo-3.2 0 sh -c "encode --model dann.mpk test.mpk >z.mpk"
run histo-3.3 0 predict --model dann.mpk --eval z.mpk
err_has "accuracy"
n=$(($(grep -c . "$OUT") - 1))
ntest=$(sed -n 's/^ntest \([0-9]*\) True$/\1/p' info.txt)
if [ "$n" -eq "${ntest:-x}" ]; then pass "histo-3.4 one prediction per test tile"; else fail "histo-3.4 one prediction per test tile" "$n lines"; fi
$PY - z.mpk >zinfo.txt <<'PYEOF'
import sys, msgpack
u = msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False)
h = next(u)
print(h["kind"], len(h["features"]), "tile" in h)
PYEOF
if grep -qx "data 8 False" zinfo.txt; then pass "histo-3.5 latent stream: width 4<<1, no tile key"; else fail "histo-3.5 latent stream" "$(cat zinfo.txt)"; fi
# same seed, same model
train-step --quiet --method dann --out dann2.mpk --lr 1e-3 --encoder "$ENC" b.mpk
encode --model dann2.mpk test.mpk >z2.mpk
if cmp -s z.mpk z2.mpk; then pass "histo-3.6 training is deterministic"; else fail "histo-3.6 training is deterministic" "latents differ"; fi
# resume from the checkpoint of the last epoch: nothing left, but the checkpoint loads
run histo-3.7 0 train-step --quiet --method dann --out dann3.mpk --lr 1e-3 --encoder "$ENC" --resume ck.mpk --epochs-max 2 b.mpk
run histo-3.8 1 encode --model dann.mpk tgt24.mpk
err_has "24x24 tiles, the model dann.mpk takes 16x16"
# a wrong-size stage
run histo-3.9 1 train-step --quiet --method source-only --out x.mpk --encoder "$BIN/encode --stage --arch resnet --input-size 8" b.mpk
err_has "a 8x8 RGB tile has 192"
# --init from a bundle: the encoder starts from the trained weights
run histo-3.10 0 train-step --quiet --method source-only --out init.mpk --lr 1e-3 --epochs-max 1 --encoder "$ENC --init dann.mpk" b.mpk

# ---- the pipeline, tiny ----
run histo-4.1 0 sh "$ROOT/pipelines/histo-adapt" --quiet --out ho --size 16 --count 10 --epochs 1 --width 2 --blocks 1,1 --stains "none macenko"
out_has "macenko    dann"
n=$(grep -c . ho/summary.csv)
if [ "$n" -eq 5 ]; then pass "histo-4.2 summary.csv has 4 runs"; else fail "histo-4.2 summary.csv has 4 runs" "$n lines"; fi
run histo-4.3 2 sh "$ROOT/pipelines/histo-adapt" --stains foo
err_has "--stains: foo"
