#!/bin/sh
# tests/cli/stain.sh: stain-norm and gen-tiles from the command line: help, usage errors,
# damaged inputs (exit 1, "stain-norm: FILE: reason", nothing half-written), fit/apply
# against the numpy reference fixtures, degenerate images, tiling and background, labels
# from folders, image streams (truncated, killed producer), GNU parallel.
. "$(dirname "$0")/../lib.sh"
FIX="$ROOT/tests/fixtures/stain"
PY=python3
if ! "$PY" -c 'import msgpack, numpy' 2>/dev/null; then PY=/usr/bin/python3; fi
if ! "$PY" -c 'import msgpack, numpy' 2>/dev/null; then
	fail stain-0 "python3 with msgpack and numpy is needed (Debian: python3-msgpack python3-numpy)"
	exit 0
fi

# helper: write test PNGs (zlib, no PIL) and read image streams
cat >"$TMP/h.py" <<'EOF'
import sys, struct, zlib, msgpack, numpy as np

def png(path, img):
    h, w = img.shape[:2]
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    raw = b"".join(b"\0" + img[r].tobytes() for r in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

def frames(path):
    with open(path, "rb") as f:
        return list(msgpack.Unpacker(f, raw=False))

def images(path):
    fr = frames(path)
    ids, xs, ys, ds = [], [], [], []
    for f in fr:
        if f["type"] == "images":
            t = f["x"]
            xs.append(np.frombuffer(t["data"], np.uint8).reshape(t["shape"]))
            ids += f["ids"]
            ys += list(np.frombuffer(f["y"]["data"], "<i4"))
            ds += list(np.frombuffer(f["d"]["data"], "<i4"))
    x = np.concatenate(xs) if xs else np.zeros((0,))
    return fr[0], ids, x, ys, ds, fr[-1]

def mkpng(kind, w, h, path):
    rng = np.random.default_rng(1)
    if kind == "white": img = np.full((h, w, 3), 255, np.uint8)
    elif kind == "black": img = np.zeros((h, w, 3), np.uint8)
    elif kind == "flat": img = np.tile(np.array([150, 60, 140], np.uint8), (h, w, 1))
    elif kind == "hema":
        c = 0.2 + 1.5 * rng.random((h, w, 1))
        img = np.clip(np.floor(240 * np.exp(-c * np.array([0.5626, 0.7201, 0.4062])) + 0.5), 0, 255).astype(np.uint8)
    elif kind == "halfwhite":
        img = np.full((h, w, 3), 255, np.uint8)
        img[:, : w // 2] = (120 + 60 * rng.random((h, w // 2, 3))).astype(np.uint8)
    png(path, img)

cmd = sys.argv[1]
if cmd == "mkpng":       # KIND W H PATH, repeated
    a = sys.argv[2:]
    for i in range(0, len(a), 4):
        mkpng(a[i], int(a[i + 1]), int(a[i + 2]), a[i + 3])
elif cmd == "maxdiff":   # two streams, same ids: the largest pixel difference
    _, i1, x1, *_ = images(sys.argv[2])
    _, i2, x2, *_ = images(sys.argv[3])
    assert i1 == i2 and x1.shape == x2.shape, (i1, i2, x1.shape, x2.shape)
    print(int(np.abs(x1.astype(int) - x2.astype(int)).max()))
elif cmd == "info":      # header classes/domains, rows, and id:class:domain lines
    h, ids, x, ys, ds, end = images(sys.argv[2])
    print("classes=" + ",".join(h["classes"]), "domains=" + ",".join(h["domains"]),
          "tile=%dx%d" % (h["tile"]["h"], h["tile"]["w"]), "rows=%d" % end["rows"], "end=" + end["type"])
    for i, y, d in zip(ids, ys, ds):
        print("%s:%s:%s" % (i, h["classes"][y] if y >= 0 else "-", h["domains"][d]))
elif cmd == "nan":       # any NaN-looking pixel value cannot exist in u8; check shape sanity
    h, ids, x, *_ = images(sys.argv[2])
    print(len(ids), x.shape)
EOF
h() { "$PY" "$TMP/h.py" "$@"; }

# ---- help and usage errors ----
run stain-1.1 0 stain-norm --help
out_has "--method NAME"
out_has "(default: 240)"
run stain-1.2 0 gen-tiles --help
out_has "--seed N"
run stain-1.3 2 stain-norm "$FIX/ihc_crop.png"
err_is "stain-norm: give exactly one of --out-dir DIR and --to-stream
Try 'stain-norm --help' for more information."
run stain-1.4 2 stain-norm --method vahadane --out-dir "$TMP/o" "$FIX/ihc_crop.png"
err_has "stain-norm: --method: vahadane is not implemented"
run stain-1.5 2 stain-norm --method blue --out-dir "$TMP/o" "$FIX/ihc_crop.png"
err_has "stain-norm: --method: blue: expected macenko, reinhard or none"
run stain-1.6 2 stain-norm --tile 1 --out-dir "$TMP/o" "$FIX/ihc_crop.png"
err_has "stain-norm: --tile: 1: must be at least 2"
run stain-1.7 2 stain-norm --min-tissue 1.5 --out-dir "$TMP/o" "$FIX/ihc_crop.png"
err_has "stain-norm: --min-tissue: 1.5: must be at most 1"
run stain-1.8 2 stain-norm --fit "$FIX/he_synth.png"
err_has "stain-norm: --fit: give --fit-out FILE for the parameters"
run stain-1.9 2 stain-norm --method reinhard --out-dir "$TMP/o" "$FIX/ihc_crop.png"
err_has "stain-norm: --method reinhard needs --params FILE"
run stain-1.10 2 stain-norm --label-from-dir --out-dir "$TMP/o" "$FIX"
err_has "stain-norm: --label-from-dir needs --to-stream"
run stain-1.11 2 stain-norm --class-map aca --to-stream "$FIX/ihc_crop.png"
err_has "stain-norm: --class-map: aca: expected a list of FROM=TO pairs"
run stain-1.12 2 stain-norm --io 0 --out-dir "$TMP/o" "$FIX/ihc_crop.png"
err_has "stain-norm: --io: 0: must be at least 1"
run stain-1.13 2 stain-norm --stride 8 --out-dir "$TMP/o" "$FIX/ihc_crop.png"
err_has "stain-norm: --stride needs --tile"
run stain-1.14 2 gen-tiles --organs liver
err_has "gen-tiles: --organs: unknown organ 'liver'"
run stain-1.15 2 gen-tiles --size 8
err_has "gen-tiles: --size: 8: must be at least 16"

# ---- fit and apply against the numpy reference ----
run stain-2.1 0 stain-norm --fit "$FIX/he_synth.png" --fit-out "$TMP/p.mpk"
err_has "stain-norm: fitted 1 reference image (16384 pixels) into $TMP/p.mpk: HE = [[0.5406, 0.2073]"
run stain-2.2 0 stain-norm --params "$TMP/p.mpk" --out-dir "$TMP/fit" "$FIX/ihc_crop.png"
err_has "1 image, 1 tile: 1 normalised (macenko)"
stain-norm -q -m none --to-stream "$TMP/fit/ihc_crop.png" >"$TMP/a.mpk"
cp "$FIX/macenko_ihc_to_he.png" "$TMP/ihc_crop.png"
stain-norm -q -m none --to-stream "$TMP/ihc_crop.png" >"$TMP/b.mpk"
d=$(h maxdiff "$TMP/a.mpk" "$TMP/b.mpk")
if [ "$d" -le 2 ]; then pass "stain-2.3 macenko through the CLI = numpy reference (maxdiff $d)"; else fail stain-2.3 "maxdiff $d"; fi
run stain-2.4 0 stain-norm -m reinhard --params "$TMP/p.mpk" --out-dir "$TMP/rein" "$FIX/ihc_crop.png"
stain-norm -q -m none --to-stream "$TMP/rein/ihc_crop.png" >"$TMP/a.mpk"
cp "$FIX/reinhard_ihc_to_he.png" "$TMP/ihc_crop.png"
stain-norm -q -m none --to-stream "$TMP/ihc_crop.png" >"$TMP/b.mpk"
d=$(h maxdiff "$TMP/a.mpk" "$TMP/b.mpk")
if [ "$d" -le 2 ]; then pass "stain-2.5 reinhard through the CLI = numpy reference (maxdiff $d)"; else fail stain-2.5 "maxdiff $d"; fi
run stain-2.6 0 stain-norm --out-dir "$TMP/def" "$FIX/ihc_crop.png"
stain-norm -q -m none --to-stream "$TMP/def/ihc_crop.png" >"$TMP/a.mpk"
cp "$FIX/macenko_ihc_default.png" "$TMP/ihc_crop.png"
stain-norm -q -m none --to-stream "$TMP/ihc_crop.png" >"$TMP/b.mpk"
d=$(h maxdiff "$TMP/a.mpk" "$TMP/b.mpk")
if [ "$d" -le 2 ]; then pass "stain-2.7 macenko to the default reference = numpy (maxdiff $d)"; else fail stain-2.7 "maxdiff $d"; fi
run stain-2.8 0 stain-norm --params "$TMP/p.mpk" --out-dir "$TMP/jpg" "$FIX/ihc_crop.jpg"
ok "stain-2.9 a JPEG input gives ID.png" test -s "$TMP/jpg/ihc_crop.png"
run stain-2.10 0 stain-norm --fit "$FIX/he_synth.png" --fit "$FIX/ihc_crop.png" --fit-out "$TMP/p2.mpk"
err_has "fitted 2 reference images (32768 pixels)"
run stain-2.11 2 stain-norm --params "$TMP/p.mpk" --beta 0.2 --out-dir "$TMP/o" "$FIX/ihc_crop.png"
err_has "stain-norm: --io, --alpha and --beta are stored in the parameters file"
head -c 100 "$TMP/p.mpk" >"$TMP/pt.mpk"
run stain-2.12 1 stain-norm --params "$TMP/pt.mpk" --out-dir "$TMP/o" "$FIX/ihc_crop.png"
err_has "stain-norm: $TMP/pt.mpk: frame 1: truncated frame"
run stain-2.13 1 stain-norm --fit-out "$TMP/pw.mpk" "$FIX/../../../README.md"
ok "stain-2.14 a failed fit leaves no parameters file" test ! -e "$TMP/pw.mpk"
h mkpng white 32 32 "$TMP/white.png" black 16 16 "$TMP/black.png" flat 16 16 "$TMP/flat.png" \
	hema 64 64 "$TMP/hema.png" white 1 1 "$TMP/one.png" halfwhite 128 64 "$TMP/half.png"
run stain-2.15 1 stain-norm --fit-out "$TMP/pw.mpk" "$TMP/white.png"
err_has "stain-norm: $TMP/white.png: cannot fit Macenko: too few tissue pixels"

# ---- damaged inputs: exit 1, the file named, nothing half-written ----
mkdir -p "$TMP/bad"
echo "hello, world" >"$TMP/bad/text.png"
: >"$TMP/bad/empty.png"
head -c 2000 "$FIX/ihc_crop.png" >"$TMP/bad/trunc.png"
head -c 5 "$FIX/ihc_crop.png" >"$TMP/bad/short.png"
head -c 3000 "$FIX/ihc_crop.jpg" >"$TMP/bad/trunc.jpg"
"$PY" - "$FIX/ihc_crop.jpg" "$TMP/bad/corrupt.jpg" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
for i in range(600, len(b) - 2, 97): b[i] = 0xff if b[i] != 0xff else 0x00
open(sys.argv[2], "wb").write(b)
EOF
"$PY" - "$TMP/bad/zero.png" <<'EOF'
import sys, struct, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
EOF
"$PY" - "$FIX/ihc_crop.png" "$TMP/bad/crc.png" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[200] ^= 0x55
open(sys.argv[2], "wb").write(b)
EOF
run stain-3.1 1 stain-norm --out-dir "$TMP/o3" "$TMP/bad/text.png"
err_is "stain-norm: $TMP/bad/text.png: not a PNG or JPEG file"
run stain-3.2 1 stain-norm --out-dir "$TMP/o3" "$TMP/bad/empty.png"
err_is "stain-norm: $TMP/bad/empty.png: empty file"
run stain-3.3 1 stain-norm --out-dir "$TMP/o3" "$TMP/bad/trunc.png"
err_is "stain-norm: $TMP/bad/trunc.png: truncated PNG (the file ends inside the image data)"
run stain-3.4 1 stain-norm --out-dir "$TMP/o3" "$TMP/bad/short.png"
err_is "stain-norm: $TMP/bad/short.png: truncated PNG (5 bytes)"
run stain-3.5 1 stain-norm --out-dir "$TMP/o3" "$TMP/bad/trunc.jpg"
err_has "stain-norm: $TMP/bad/trunc.jpg: bad JPEG: "
run stain-3.6 1 stain-norm --out-dir "$TMP/o3" "$TMP/bad/corrupt.jpg"
err_has "stain-norm: $TMP/bad/corrupt.jpg: bad JPEG: "
run stain-3.7 1 stain-norm --out-dir "$TMP/o3" "$TMP/bad/zero.png"
err_has "stain-norm: $TMP/bad/zero.png: bad PNG: "
run stain-3.8 1 stain-norm --out-dir "$TMP/o3" "$TMP/bad/crc.png"
err_has "stain-norm: $TMP/bad/crc.png: bad PNG: "
run stain-3.9 1 stain-norm --out-dir "$TMP/o3" "$TMP/bad/missing.png"
err_is "stain-norm: $TMP/bad/missing.png: cannot open: No such file or directory"
run stain-3.10 1 stain-norm --format jpeg --out-dir "$TMP/o3" "$FIX/ihc_crop.png"
err_is "stain-norm: $FIX/ihc_crop.png: not a JPEG file"
# a good file, then a bad one: the good output is complete, nothing else is left
run stain-3.11 1 stain-norm --out-dir "$TMP/o4" "$FIX/he_synth.png" "$TMP/bad/trunc.png"
ok "stain-3.12 the output before the bad file is complete" sh -c "stain-norm -q -m none --to-stream '$TMP/o4/he_synth.png' >/dev/null"
ok "stain-3.13 no temporary or partial file left" sh -c "[ \$(ls '$TMP/o4' | wc -l) -eq 1 ]"
run stain-3.14 1 stain-norm --to-stream "$FIX/he_synth.png" "$TMP/bad/text.png"
ok "stain-3.15 a stream cut by a bad file has no end frame" sh -c "! stain-norm -q -m none --to-stream <'$OUT' >/dev/null 2>&1"

# ---- degenerate images: pass through unchanged, counted, no NaN ----
# (reinhard has no notion of stains: a pure hematoxylin image is a normal image to it)
for case in macenko:white:few macenko:black:degenerate macenko:flat:degenerate macenko:hema:degenerate \
	macenko:one:few reinhard:white:degenerate reinhard:black:degenerate reinhard:flat:degenerate reinhard:one:degenerate; do
	m=${case%%:*}; rest=${case#*:}; img=${rest%%:*}; why=${rest#*:}
	if [ "$why" = few ]; then expect="(too few tissue pixels: 1, degenerate stains: 0)"; else expect="(too few tissue pixels: 0, degenerate stains: 1)"; fi
	run "stain-4 $m $img" 0 stain-norm -m "$m" --params "$TMP/p.mpk" --out-dir "$TMP/deg" "$TMP/$img.png"
	err_has "1 passed through unchanged $expect"
	stain-norm -q -m none --to-stream "$TMP/deg/$img.png" >"$TMP/deg.mpk"
	stain-norm -q -m none --to-stream "$TMP/$img.png" >"$TMP/orig.mpk"
	ok "stain-4 $m $img unchanged" cmp "$TMP/deg.mpk" "$TMP/orig.mpk"
done
run stain-4.1 0 stain-norm --out-dir "$TMP/o5" "$TMP/white.png" "$TMP/black.png" "$TMP/flat.png" "$TMP/hema.png" "$TMP/one.png"
err_has "5 images, 5 tiles: 0 normalised (macenko), 0 background (tissue < 0, kept unchanged), 5 passed through unchanged (too few tissue pixels: 2, degenerate stains: 3)"

# ---- tiles and background ----
run stain-5.1 0 stain-norm --tile 32 --to-stream "$TMP/half.png"
err_has "1 image, 8 tiles: 4 normalised (macenko), 4 background (tissue < 0.5, kept unchanged)"
h info "$OUT" >"$TMP/info"
ok "stain-5.2 8 tiles of 32x32 in the stream" grep -q "tile=32x32 rows=8 end=end" "$TMP/info"
ok "stain-5.3 tile ids carry their offsets" grep -q "^half_32_96:-:images" "$TMP/info"
run stain-5.4 0 stain-norm --tile 32 --background drop --to-stream "$TMP/half.png"
err_has "4 background (tissue < 0.5, dropped)"
h info "$OUT" >"$TMP/info"
ok "stain-5.5 background tiles dropped" grep -q "rows=4 end=end" "$TMP/info"
run stain-5.6 0 stain-norm --tile 32 --stride 16 --min-tissue 0.9 --tissue lightness --to-stream "$TMP/half.png"
err_has "1 image, 21 tiles"
run stain-5.7 0 stain-norm --tile 32 --background drop --to-stream "$TMP/white.png"
h info "$OUT" >"$TMP/info"
ok "stain-5.8 all background: a valid empty stream" grep -q "rows=0 end=end" "$TMP/info"
run stain-5.9 1 stain-norm --to-stream "$FIX/ihc_crop.png" "$TMP/half.png"
err_has "stain-norm: half: image is 128x64, the stream's images are 128x128 (cut equal tiles with --tile)"
run stain-5.10 0 stain-norm --tile 256 --to-stream "$FIX/ihc_crop.png"
err_has "1 image, 0 tiles"

# ---- synthetic tiles, labels from folders, streams ----
run stain-6.1 0 gen-tiles -q -o "$TMP/tiles" -n 3 --size 32 --organs breast,lung --seed 4
run stain-6.2 0 gen-tiles -q -o "$TMP/tiles2" -n 3 --size 32 --organs breast,lung --seed 4
ok "stain-6.3 gen-tiles: same seed, same files" diff -r "$TMP/tiles" "$TMP/tiles2"
gen-tiles -q -o "$TMP/tiles3" -n 3 --size 32 --organs breast,lung --seed 5
ok "stain-6.4 gen-tiles: another seed, other files" sh -c "! cmp -s '$TMP/tiles/lung_benign/lung_benign_0000.png' '$TMP/tiles3/lung_benign/lung_benign_0000.png'"
ok "stain-6.5 gen-tiles: organ_class folders" test -s "$TMP/tiles/lung_malignant/lung_malignant_0002.png"
run stain-6.6 0 stain-norm --to-stream --label-from-dir "$TMP/tiles"
mv "$OUT" "$TMP/lab.mpk"
h info "$TMP/lab.mpk" >"$TMP/info"
ok "stain-6.7 classes and domains from folder names" grep -q "classes=benign,malignant domains=breast,lung tile=32x32 rows=12 end=end" "$TMP/info"
ok "stain-6.8 each tile labelled by its folder" grep -q "^lung_malignant/lung_malignant_0001:malignant:lung$" "$TMP/info"
run stain-6.9 0 stain-norm --to-stream --label-from-dir --class-map benign=normal,malignant=tumour --domain tcga "$TMP/tiles/breast_benign" "$TMP/tiles/lung_malignant"
h info "$OUT" >"$TMP/info"
ok "stain-6.10 --domain and --class-map" grep -q "^lung_malignant/lung_malignant_0000:lung_malignant:tcga$" "$TMP/info"
run stain-6.11 0 stain-norm --to-stream --label-from-dir --class-map benign=normal,malignant=tumour "$TMP/tiles"
h info "$OUT" >"$TMP/info"
ok "stain-6.12 --class-map renames classes" grep -q "classes=normal,tumour" "$TMP/info"
# a stream in, a stream out: labels and domains kept by name
run_in stain-6.13 0 "$TMP/lab.mpk" stain-norm -m reinhard --params "$TMP/p.mpk" --to-stream
h info "$OUT" >"$TMP/info2"
h info "$TMP/lab.mpk" | tail -n +2 >"$TMP/ids1"
tail -n +2 "$TMP/info2" >"$TMP/ids2"
ok "stain-6.14 stream to stream keeps ids, labels and domains" cmp "$TMP/ids1" "$TMP/ids2"
run stain-6.15 0 stain-norm --format stream --out-dir "$TMP/fromstream" "$TMP/lab.mpk"
ok "stain-6.16 stream to PNGs: '/' in ids becomes '_'" test -s "$TMP/fromstream/breast_benign_breast_benign_0000.png"
run stain-6.17 0 stain-norm --fit-out "$TMP/p3.mpk" "$TMP/lab.mpk"
err_has "fitted 1 reference image (12288 pixels)"
# truncated streams and a killed producer
size=$(wc -c <"$TMP/lab.mpk")
bad=0
for n in 0 1 10 100 1000 5000 20000 $((size - 1)); do
	[ "$n" -lt "$size" ] || continue
	head -c "$n" "$TMP/lab.mpk" >"$TMP/cut.mpk"
	stain-norm -q --to-stream <"$TMP/cut.mpk" >/dev/null 2>"$TMP/cut.err"
	rc=$?
	if [ "$rc" -ne 1 ] || ! grep -q "^stain-norm: <stdin>: " "$TMP/cut.err"; then bad=$((bad + 1)); echo "prefix $n: rc $rc: $(cat "$TMP/cut.err")"; fi
done
if [ "$bad" -eq 0 ]; then pass "stain-7.1 truncated image streams: exit 1, <stdin> named"; else fail stain-7.1 "$bad prefixes"; fi
# the producer is killed after its header and first frames: no end frame
# shellcheck disable=SC2016
(sh -c 'stain-norm -q --to-stream --label-from-dir "$1" | head -c 9000; kill -KILL $$' sh "$TMP/tiles" |
	stain-norm -q -m none --to-stream >/dev/null 2>"$TMP/kill.err") 2>/dev/null
rc=$?
if [ "$rc" -eq 1 ] && grep -q "stain-norm: <stdin>: frame " "$TMP/kill.err"; then pass "stain-7.2 killed producer: exit 1"; else fail stain-7.2 "rc $rc: $(cat "$TMP/kill.err")"; fi
run stain-7.3 1 stain-norm --format stream --to-stream "$FIX/ihc_crop.png"
err_has "stain-norm: $FIX/ihc_crop.png: frame 1: "
head -c 40 /dev/urandom >"$TMP/rand.bin"
run stain-7.4 1 stain-norm --to-stream "$TMP/rand.bin"
err_has "stain-norm: $TMP/rand.bin: "

# ---- GNU parallel: one process per file, the same files as one process ----
if command -v parallel >/dev/null 2>&1; then
	stain-norm -q --params "$TMP/p.mpk" --out-dir "$TMP/seq" "$TMP"/tiles/*/*.png
	parallel -j 4 stain-norm -q --params "$TMP/p.mpk" --out-dir "$TMP/par" ::: "$TMP"/tiles/*/*.png
	rc=$?
	if [ "$rc" -eq 0 ] && diff -r "$TMP/seq" "$TMP/par" >/dev/null && [ "$(ls "$TMP/par" | wc -l)" -eq 12 ]; then
		pass "stain-8.1 parallel stain-norm ::: tiles = one process"
	else
		fail stain-8.1 "rc $rc, $(ls "$TMP/par" | wc -l) files"
	fi
else
	fail stain-8.1 "GNU parallel is not installed (Debian: parallel)"
fi
