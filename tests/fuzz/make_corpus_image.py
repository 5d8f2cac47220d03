#!/usr/bin/python3
"""tests/fuzz/make_corpus_image.py: write the seed corpus of fuzz_image
(tests/fuzz/corpus/fuzz_image/): small PNGs of every colour type and bit depth the
reader converts (grey, grey+alpha, RGB, RGBA, palette, 16-bit, interlaced), a JPEG
(tests/fixtures/stain/ihc_crop.jpg) and truncated copies. Each seed starts with the
byte that chooses the format asked for (0 auto, 1 PNG, 2 JPEG).
Deterministic: run it again and the files are the same."""
import os, struct, zlib

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))

def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)

def png(w, h, ctype, depth, samples, interlace=0, plte=None, trns=None):
    """samples: per pixel channel values (ints < 2**depth), rows unfiltered (filter 0)"""
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    raw = b""
    i = 0
    for y in range(h):
        bits, row = "", b""
        for x in range(w * ch):
            bits += format(samples[i % len(samples)], "0%db" % depth)
            i += 1
        bits += "0" * (-len(bits) % 8)
        row = bytes(int(bits[k:k + 8], 2) for k in range(0, len(bits), 8))
        raw += b"\x00" + row
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace))
    if plte: out += chunk(b"PLTE", plte)
    if trns: out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")

seeds = {
    "rgb8": png(4, 3, 2, 8, [10, 200, 30, 255, 0, 128]),
    "rgba8": png(3, 2, 6, 8, [1, 2, 3, 4, 250, 251, 252, 0]),
    "grey1": png(5, 2, 0, 1, [0, 1, 1]),
    "grey16": png(2, 2, 0, 16, [65535, 0, 1234]),
    "greya8": png(2, 3, 4, 8, [100, 255, 7, 0]),
    "palette4": png(4, 4, 3, 4, [0, 1, 2], plte=bytes([255, 0, 0, 0, 255, 0, 0, 0, 255]), trns=b"\x80"),
    "rgb16": png(2, 1, 2, 16, [1, 60000, 300]),
    "interlaced": png(9, 9, 2, 8, [5, 6, 7, 8], interlace=1),
}
seeds["rgb8_truncated"] = seeds["rgb8"][:45]
seeds["bad_crc"] = seeds["rgb8"][:29] + b"\x00" + seeds["rgb8"][30:]
with open(os.path.join(root, "tests", "fixtures", "stain", "ihc_crop.jpg"), "rb") as f:
    jpg = f.read()
d = os.path.join(here, "corpus", "fuzz_image")
os.makedirs(d, exist_ok=True)
for k, v in seeds.items():
    for fmt in (0, 1):
        with open(os.path.join(d, "%s_%d.bin" % (k, fmt)), "wb") as f:
            f.write(bytes([fmt]) + v)
for name, v in (("jpeg", jpg), ("jpeg_truncated", jpg[:len(jpg) // 2])):
    for fmt in (0, 2):
        with open(os.path.join(d, "%s_%d.bin" % (name, fmt)), "wb") as f:
            f.write(bytes([fmt]) + v)
