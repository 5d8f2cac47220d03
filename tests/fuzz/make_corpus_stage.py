#!/usr/bin/python3
"""tests/fuzz/make_corpus_stage.py [BIN]: write the seed corpora of the protocol
harnesses, tests/fuzz/corpus/fuzz_stage/ (request streams a stage reads, after the
two bytes that choose the stage) and tests/fuzz/corpus/fuzz_proto/ (answers train-step
reads, after the byte of expected shapes and the stderr length and text).
The params frames come from a real stage: BIN/encode --stage (default BIN: bin)
is asked to init, train one step and save, and its answer is used in the seeds.
Deterministic: run it again and the files are the same."""
import os, struct, subprocess, sys, msgpack

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "bin")

def t(dtype, shape, values):
    fmt = {"f32": "f", "i32": "i", "i64": "q"}[dtype]
    return {"dtype": dtype, "shape": shape, "data": struct.pack("<%d%s" % (len(values), fmt), *values)}

def pack(frames):
    return b"".join(msgpack.packb(f, use_bin_type=True) for f in frames)

def x(rows, cols):
    return t("f32", [rows, cols], [((i * 7) % 11) / 5.0 - 1 for i in range(rows * cols)])

ACT, NORM = ("relu", "leaky_relu", "tanh"), ("none", "batch", "layer")

def stage_bytes(role, hidden0, act, norm, nhidden=1, dropout=False, wgan=False):
    """the first two bytes of a fuzz_stage input that give this stage (see stage_setup)"""
    b0 = role | (nhidden - 1) << 2 | (hidden0 - 1) << 3 | int(dropout) << 5 | int(wgan) << 6
    return bytes([b0, ACT.index(act) + 3 * NORM.index(norm)])

opt = {"kind": "adam", "weight_decay": 1e-4}
train = [{"type": "init", "in": 3, "seed": 1, "optimizer": opt},
         {"type": "forward", "x": x(4, 3), "train": True},
         {"type": "backward", "dy": x(4, 3), "want_dx": True, "lr": 0.01},
         {"type": "step", "lr": 0.01},
         {"type": "save", "state": True}]

# a real params frame, with optimiser state, from the encoder stage
enc = [os.path.join(bin_dir, "encode"), "--stage", "--layers", "3", "--act", "relu", "--norm", "batch", "--dropout", "0"]
ans = subprocess.run(enc, input=pack(train + [{"type": "quit"}]), stdout=subprocess.PIPE, check=True).stdout
u = msgpack.Unpacker(raw=False)
u.feed(ans)
answers = list(u)
params = answers[4]["params"]
assert params["type"] == "params" and answers[-1]["type"] == "ok", answers

stage = {}
eb = stage_bytes(0, 3, "relu", "batch")
stage["encoder_train"] = eb + pack(train + [{"type": "load", "params": params},
                                                     {"type": "forward", "x": x(2, 3)}, {"type": "quit"}])
stage["encoder_eof"] = eb + pack(train[:2])
stage["encoder_uninit"] = eb + pack([{"type": "forward", "x": x(1, 3)}, {"type": "bogus"}])
stage["encoder_load_first"] = stage_bytes(0, 3, "tanh", "layer", dropout=True) + pack(
    [{"type": "load", "params": params}, {"type": "save"}, {"type": "forward", "x": x(3, 3), "train": True},
     {"type": "backward", "dy": x(3, 3)}])
stage["classifier"] = stage_bytes(1, 2, "relu", "none") + pack(
    [{"type": "init", "in": 3, "out": 2, "seed": 2, "optimizer": {"kind": "sgd", "momentum": 0.9}},
     {"type": "forward", "x": x(4, 3), "train": True}, {"type": "loss", "z": x(4, 3), "y": t("i32", [4], [0, 1, 1, 0])},
     {"type": "save"}, {"type": "quit", "stats": True}])
stage["discriminator"] = stage_bytes(2, 4, "leaky_relu", "none", nhidden=2, wgan=True) + pack(
    [{"type": "init", "in": 3, "seed": 3}, {"type": "forward", "x": x(4, 3)},
     {"type": "backward", "dy": t("f32", [4, 1], [1, -1, 0.5, 0])}, {"type": "load", "params": params}])

# answers as train-step reads them: byte 0 = rows 4 (bits 0-2: 3), cols 3 (bits 3-4: 2),
# first kind (bits 5-7); byte 1 = stderr length; the stderr text; the answers
def proto(first_kind, frames, err=b""):
    return bytes([3 | (2 << 3) | (first_kind << 5), len(err)]) + err + pack(frames)

ok = {"type": "ok"}
cycle = [dict(ok, out=3, nparams=21), dict(ok, y=x(4, 3)),
         dict(ok, loss=0.7, dz=x(4, 3), pred=t("i32", [4], [0, 1, 0, 1])),
         dict(ok, loss=0.1, gap=0.2, dzt=x(4, 3)), dict(ok, params=params), dict(ok, correct=3)]
prot = {}
prot["cycle"] = proto(0, cycle)
prot["cycle_from_save"] = proto(4, cycle[4:] + cycle[:4])
prot["error_answer"] = proto(1, [{"type": "error", "message": "forward: x has 5 columns, the encoder takes 3"}],
                             b"encode: something went wrong\nsecond line\n")
prot["garbage"] = proto(0, [cycle[0]]) + b"\xc1\x00garbage"
prot["wrong_shape"] = proto(1, [dict(ok, y=x(3, 3))], b"warning\n")
prot["stage_answers"] = proto(0, answers)

for name, seeds in (("fuzz_stage", stage), ("fuzz_proto", prot)):
    d = os.path.join(here, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for k, v in seeds.items():
        with open(os.path.join(d, k + ".mpk"), "wb") as f:
            f.write(v)
