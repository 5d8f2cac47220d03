#!/usr/bin/env python3
"""A classifier stage in Python: a linear softmax head trained with plain SGD.

It speaks the stage protocol of docs/STAGES.md on stdin/stdout, so that
    train-step --classifier 'python3 tests/python_stage.py' ...
trains with it. Needs msgpack and numpy. Its params frame has the layout of a
predict stage with no hidden layer, so `predict --model` reads the bundle.
Test options: --die-after N (SIGKILL itself at request N), --nan-after N (answer a
NaN loss from request N on).
"""
import os
import signal
import sys

import msgpack
import numpy as np


def tensor(a, dtype="f32"):
    a = np.ascontiguousarray(a, dtype="<f4" if dtype == "f32" else "<i4")
    return {"dtype": dtype, "shape": list(a.shape), "data": a.tobytes()}


def array(t):
    dt = {"f32": "<f4", "i32": "<i4", "i64": "<i8"}[t["dtype"]]
    return np.frombuffer(t["data"], dtype=dt).reshape(t["shape"])


def main():
    args = sys.argv[1:]
    die_after = int(args[args.index("--die-after") + 1]) if "--die-after" in args else -1
    nan_after = int(args[args.index("--nan-after") + 1]) if "--nan-after" in args else -1
    W = b = None
    unpacker = msgpack.Unpacker(raw=False)
    out = sys.stdout.buffer
    n = 0
    while True:
        data = os.read(0, 1 << 16)
        if not data:
            return
        unpacker.feed(data)
        for req in unpacker:
            n += 1
            if n == die_after:
                sys.stderr.write("python_stage: killing myself at request %d\n" % n)
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            t = req.get("type")
            resp = {"type": "ok"}
            if t == "init":
                rng = np.random.default_rng(req.get("seed", 1))
                k = 1 / np.sqrt(req["in"])
                W = rng.uniform(-k, k, (req["out"], req["in"])).astype(np.float32)
                b = np.zeros(req["out"], np.float32)
                resp["out"] = req["out"]
            elif t == "loss":
                z, y = array(req["z"]), array(req["y"])
                logits = z @ W.T + b
                p = np.exp(logits - logits.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
                lab = y >= 0
                m = max(int(lab.sum()), 1)
                loss = float(-np.log(p[lab, y[lab]] + 1e-12).sum() / m)
                pred = logits.argmax(1)
                resp.update(loss=loss if nan_after < 0 or n < nan_after else float("nan"),
                            correct=int((pred[lab] == y[lab]).sum()), n=int(lab.sum()),
                            pred=tensor(pred, "i32"))
                if req.get("train", True):
                    g = p.copy()
                    g[lab, y[lab]] -= 1
                    g[~lab] = 0
                    g /= m
                    if req.get("want_dz", True):
                        resp["dz"] = tensor(g @ W)
                    if "lr" in req:
                        W -= req["lr"] * (g.T @ z)
                        b -= req["lr"] * g.sum(0)
            elif t == "forward":
                resp["y"] = tensor(array(req["x"]) @ W.T + b)
            elif t == "save":
                resp["params"] = {
                    "type": "params", "stage": "classifier",
                    "arch": {"in": W.shape[1], "widths": [W.shape[0]], "head": True, "act": "relu",
                             "norm": "none", "dropout": 0.0, "slope": 0.2},
                    "tensors": {"l0.w": tensor(W), "l0.b": tensor(b)}}
            elif t == "load":
                ts = req["params"]["tensors"]
                W, b = array(ts["l0.w"]).copy(), array(ts["l0.b"]).copy()
            elif t == "step":
                pass  # the loss request already stepped (plain SGD has no state)
            elif t == "quit":
                out.write(msgpack.packb(resp))
                out.flush()
                return
            else:
                resp = {"type": "error", "message": "unknown request %s" % t}
            out.write(msgpack.packb(resp, use_bin_type=True))
            out.flush()


if __name__ == "__main__":
    main()
