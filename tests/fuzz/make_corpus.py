#!/usr/bin/python3
"""tests/fuzz/make_corpus.py: write the seed corpora for the stream harnesses
(tests/fuzz/corpus/fuzz_stream/, tests/fuzz/corpus/fuzz_datain/). Small valid streams
of each kind the project writes, so the fuzzer starts from deep inside the format.
Deterministic: run it again and the files are the same."""
import os, struct, msgpack

here = os.path.dirname(os.path.abspath(__file__))

def t(dtype, shape, values):
    fmt = {"f32": "f", "f64": "d", "i32": "i", "i64": "q", "u8": "B"}[dtype]
    return {"dtype": dtype, "shape": shape, "data": struct.pack("<%d%s" % (len(values), fmt), *values)}

def header(kind="data", feats=("g1", "g2", "g3"), classes=("a", "b"), domains=("src",), **extra):
    h = {"type": "header", "version": 1, "kind": kind, "features": list(feats),
         "classes": list(classes), "domains": list(domains)}
    h.update(extra)
    return h

def data(ids, F, y, d, x=None):
    n = len(ids)
    x = x if x is not None else [float(i) * 0.5 - 1 for i in range(n * F)]
    return {"type": "data", "ids": ids, "x": t("f32", [n, F], x), "y": t("i32", [n], y), "d": t("i32", [n], d)}

def end(rows, frames):
    return {"type": "end", "rows": rows, "frames": frames}

def pack(frames):
    return b"".join(msgpack.packb(f, use_bin_type=True) for f in frames)

seeds = {}
seeds["data_small"] = pack([header(), data(["s1", "s2"], 3, [0, 1], [0, 0]), end(2, 1)])
seeds["data_two_blocks"] = pack([header(domains=("src", "tgt")),
                                 data(["s1", "s2"], 3, [0, -1], [0, 1]),
                                 data(["s3"], 3, [1], [1]), end(3, 2)])
seeds["data_empty"] = pack([header(feats=(), classes=(), domains=()), end(0, 0)])
seeds["data_zero_rows"] = pack([header(), data([], 3, [], []), end(0, 1)])
seeds["data_preprocessing"] = pack([header(preprocessing={"steps": ["log2", "zscore"],
                                                          "mean": t("f32", [3], [1, 2, 3]),
                                                          "sd": t("f32", [3], [1, 1, 0.5])},
                                          note="x", nested=[1, -2, 3.5, None, True, b"\x00"]),
                                   {"type": "comment", "text": "skipped"},
                                   data(["a", ""], 3, [1, 0], [0, 0], x=[float("nan"), float("inf"), 0, 1, -0.0, 2]),
                                   end(2, 1)])
seeds["data_no_end"] = pack([header(), data(["s1"], 3, [0], [0])])
seeds["model"] = pack([header(kind="model", feats=("z0", "z1"), config={"method": "dann", "lr": 1e-4},
                              metrics={"acc": 0.5}),
                       {"type": "params", "stage": "encoder", "arch": {"layers": [4, 2], "act": "relu"},
                        "tensors": {"w0": t("f32", [2, 2], [1, 2, 3, 4]), "b0": t("f32", [2], [0, 0]),
                                    "n": t("i64", [1], [7]), "m": t("u8", [3], [1, 2, 3]),
                                    "v": t("f64", [1, 1], [0.25])}},
                       end(0, 1)])
seeds["batches"] = pack([header(kind="batches", domains=("source", "target"), steps_per_epoch=1, epochs=1,
                                batch_source=2, batch_target=2, seed=1, mode="unsupervised",
                                n_labeled_target=0),
                         {"type": "val", "set": "source", "ids": ["v1", "v2"], "x": t("f32", [2, 3], [0] * 6),
                          "y": t("i32", [2], [0, 1])},
                         {"type": "batch", "epoch": 0, "step": 0, "xs": t("f32", [2, 3], [1] * 6),
                          "ys": t("i32", [2], [0, 1]), "xt": t("f32", [2, 3], [2] * 6), "yt": t("i32", [2], [-1, -1])},
                         {"type": "epoch_end", "epoch": 0}, end(0, 3)])
for name in ("fuzz_stream", "fuzz_datain"):
    d = os.path.join(here, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for k, v in seeds.items():
        with open(os.path.join(d, k + ".mpk"), "wb") as f:
            f.write(v)
