#!/usr/bin/python3
"""convert-torchvision.py: a torchvision ResNet (resnet18/34 layout) -> the encoder
params frame that `encode --stage --arch resnet --init FILE` reads, or a model bundle
that `encode --model FILE` runs on image streams (pooled features, no classifier).

    tools/convert-torchvision.py [OPTIONS] STATE_DICT.pth -o OUT.mpk

Input: a state_dict saved with torch.save(model.state_dict(), path) (a whole pickled
model, or a checkpoint dict with "state_dict" or "model", works too; "module."
prefixes from DataParallel are stripped). Layout: conv1, bn1, layer1..layerN of
BasicBlocks (conv1, bn1, conv2, bn2, downsample.0/.1), as torchvision's resnet18 and
resnet34; fc.* is dropped (the classifier head is ours). Bottleneck blocks (resnet50
and up) and other widths are refused. The width, the blocks per stage and the stem
(7x7 conv1: imagenet; 3x3: small) are read from the tensors' shapes.

Conversion: conv weights (OC,C,K,K) -> (OC,K,K,C) (permutation 0,2,3,1, our NHWC
layout); BatchNorm weight/bias -> gamma/beta; running_mean/var kept; downsample.0/1 ->
down.conv/down.bn; num_batches_tracked dropped. The per-channel input normalisation
(default the ImageNet mean and std, what torchvision's pretrained weights expect) is
stored in arch.mean/std: our encoder takes pixels / 255 and normalises itself.

Options:
  -o, --out FILE       output file (required); written to a temporary name, renamed
  --input-size S|HxW   the tile size the encoder will take (default 224)
  --mean a,b,c         input mean per channel (default 0.485,0.456,0.406)
  --std a,b,c          input std per channel (default 0.229,0.224,0.225)
  --bundle             write a model bundle (header kind "model" with the pixel
                       features, the params frame, an end frame) instead of a bare
                       params frame: encode --model OUT.mpk tiles.mpk gives features
  -h, --help           this help

Exit: 0 ok, 1 unreadable or unsupported state_dict, 2 usage error.
Needs python3-torch (Debian: apt-get install python3-torchvision) and python3-msgpack.
docs/HISTO.md describes the params frame."""
import os
import re
import sys


def die(msg, code=1):
    sys.stderr.write("convert-torchvision: %s\n" % msg)
    sys.exit(code)


def usage_error(msg):
    die("%s\nTry 'convert-torchvision.py --help' for more information." % msg, 2)


def parse_args(argv):
    opts = {"out": None, "size": (224, 224), "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225], "bundle": False, "input": None}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if a == "--bundle":
            opts["bundle"] = True
            i += 1
            continue
        if a in ("-o", "--out", "--input-size", "--mean", "--std"):
            if i + 1 >= len(argv):
                usage_error("%s: needs a value" % a)
            v = argv[i + 1]
            if a in ("-o", "--out"):
                opts["out"] = v
            elif a == "--input-size":
                m = re.fullmatch(r"(\d+)(?:x(\d+))?", v)
                if not m:
                    usage_error("--input-size: %s: expected S or HxW" % v)
                h = int(m.group(1))
                w = int(m.group(2)) if m.group(2) else h
                if not (4 <= h <= 4096 and 4 <= w <= 4096):
                    usage_error("--input-size: %s: sides must be 4..4096" % v)
                opts["size"] = (h, w)
            else:
                try:
                    xs = [float(t) for t in v.split(",")]
                except ValueError:
                    xs = []
                if len(xs) != 3 or (a == "--std" and min(xs) <= 0):
                    usage_error("%s: %s: expected three numbers a,b,c%s" % (a, v, " > 0" if a == "--std" else ""))
                opts[a[2:]] = xs
            i += 2
            continue
        if a.startswith("-") and a != "-":
            usage_error("unknown option %s" % a)
        if opts["input"] is not None:
            usage_error("one state_dict file")
        opts["input"] = a
        i += 1
    if opts["input"] is None:
        usage_error("needs a state_dict file")
    if opts["out"] is None:
        usage_error("needs --out FILE")
    return opts


def load_state_dict(path):
    try:
        import torch
    except ImportError:
        die("python3-torch is not installed (Debian: apt-get install python3-torchvision)")
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # unreadable, not a torch file, truncated
        die("%s: cannot load: %s" % (path, str(e).split("\n")[0]))
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for k in ("state_dict", "model"):
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not obj:
        die("%s: not a state_dict (a map of tensor names to tensors)" % path)
    sd = {}
    for k, v in obj.items():
        if not hasattr(v, "detach"):
            die("%s: %s is not a tensor" % (path, k))
        sd[k[7:] if k.startswith("module.") else k] = v.detach().cpu().float().numpy()
    return sd


def convert(sd, path):
    """torchvision names -> (arch fields, ordered list of (our name, array))"""
    import numpy as np
    need = lambda k: sd[k] if k in sd else die("%s: no tensor %s (not a torchvision ResNet?)" % (path, k))
    c1 = need("conv1.weight")
    if c1.ndim != 4 or c1.shape[1] != 3 or c1.shape[2] != c1.shape[3] or c1.shape[2] not in (3, 7):
        die("%s: conv1.weight has shape %s, expected (width, 3, 7, 7) or (width, 3, 3, 3)" % (path, list(c1.shape)))
    width = c1.shape[0]
    stem = "imagenet" if c1.shape[2] == 7 else "small"
    if any(re.match(r"layer\d+\.\d+\.conv3\.", k) for k in sd):
        die("%s: Bottleneck blocks (conv3: resnet50 and up) are not supported; resnet18/34 layout only" % path)
    blocks = []
    while any(k.startswith("layer%d." % (len(blocks) + 1)) for k in sd):
        s = len(blocks) + 1
        n = 0
        while "layer%d.%d.conv1.weight" % (s, n) in sd:
            n += 1
        if n == 0:
            die("%s: layer%d has no block 0" % (path, s))
        blocks.append(n)
    if not blocks:
        die("%s: no layer1 (not a torchvision ResNet?)" % path)
    if len(blocks) > 6:
        die("%s: %d stages, at most 6 are supported" % (path, len(blocks)))
    out = []
    used = set()

    def conv(ours, theirs, oc, ic, k):
        w = need(theirs + ".weight")
        used.add(theirs + ".weight")
        if w.shape != (oc, ic, k, k):
            die("%s: %s.weight has shape %s, the architecture needs %s" % (path, theirs, list(w.shape), [oc, ic, k, k]))
        if theirs + ".bias" in sd:
            die("%s: %s has a bias; torchvision's ResNet convolutions have none" % (path, theirs))
        out.append((ours + ".w", np.ascontiguousarray(w.transpose(0, 2, 3, 1))))

    def bn(ours, theirs, c):
        for t, o in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "running_mean"), ("running_var", "running_var")):
            v = need("%s.%s" % (theirs, t))
            used.add("%s.%s" % (theirs, t))
            if v.shape != (c,):
                die("%s: %s.%s has shape %s, expected (%d,)" % (path, theirs, t, list(v.shape), c))
            out.append(("%s.%s" % (ours, o), v))
        used.add(theirs + ".num_batches_tracked")

    # the order of conv.c's tensor table: parameters and buffers per conv+bn pair
    conv("conv1", "conv1", width, 3, c1.shape[2])
    bn("bn1", "bn1", width)
    cin = width
    for s, nb in enumerate(blocks):
        c = width << s
        for b in range(nb):
            p = "layer%d.%d" % (s + 1, b)
            conv(p + ".conv1", p + ".conv1", c, cin, 3)
            bn(p + ".bn1", p + ".bn1", c)
            conv(p + ".conv2", p + ".conv2", c, c, 3)
            bn(p + ".bn2", p + ".bn2", c)
            down = b == 0 and (s > 0 or cin != c)
            if down:
                conv(p + ".down.conv", p + ".downsample.0", c, cin, 1)
                bn(p + ".down.bn", p + ".downsample.1", c)
            elif p + ".downsample.0.weight" in sd:
                die("%s: %s has a downsample branch where the architecture has none" % (path, p))
            cin = c
    left = [k for k in sd if k not in used and not k.startswith("fc.")]
    if left:
        die("%s: tensors this converter does not know: %s" % (path, ", ".join(sorted(left)[:5])))
    for name, v in out:
        if not np.all(np.isfinite(v)):
            die("%s: %s has non-finite values" % (path, name))
    return width, blocks, stem, out


def tensor(v):
    import numpy as np
    v = np.ascontiguousarray(v, dtype="<f4")
    return {"dtype": "f32", "shape": list(v.shape), "data": v.tobytes()}


def main():
    opts = parse_args(sys.argv[1:])
    try:
        import msgpack
    except ImportError:
        die("python3-msgpack is not installed")
    sd = load_state_dict(opts["input"])
    width, blocks, stem, tens = convert(sd, opts["input"])
    h, w = opts["size"]
    # the spatial size after the stem and the strided stages must stay >= 1
    side = min(h, w)
    side = (side + 1) // 2 if stem == "imagenet" else side
    side = (side + 1) // 2 if stem == "imagenet" else side
    for _ in blocks[1:]:
        side = (side + 1) // 2
    if side < 1:
        usage_error("--input-size %dx%d is too small for this network" % (w, h))
    out_w = width << (len(blocks) - 1)
    arch = {"kind": "resnet", "in": h * w * 3, "input": [h, w], "width": width, "blocks": blocks,
            "stem": stem, "mean": opts["mean"], "std": opts["std"], "out": out_w}
    params = {"type": "params", "stage": "encoder", "arch": arch,
              "tensors": {name: tensor(v) for name, v in tens}}
    frames = [params]
    if opts["bundle"]:
        feats = ["%s%d_%d" % (c, y, x) for y in range(h) for x in range(w) for c in "rgb"]
        header = {"type": "header", "version": 1, "kind": "model", "features": feats, "classes": [],
                  "domains": [], "config": {"method": "torchvision", "source": os.path.basename(opts["input"])},
                  "preprocessing": {"image": {"h": h, "w": w, "channels": 3, "layout": "hwc", "scale": 1 / 255}}}
        frames = [header, params, {"type": "end", "rows": 0, "frames": 1}]
    tmp = "%s.tmp%d" % (opts["out"], os.getpid())
    try:
        with open(tmp, "wb") as f:
            for fr in frames:
                f.write(msgpack.packb(fr, use_bin_type=True))
        os.replace(tmp, opts["out"])
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        die("%s: cannot write: %s" % (opts["out"], e.strerror))
    nparams = sum(v.size for name, v in tens if not name.endswith(("running_mean", "running_var")))
    sys.stderr.write("convert-torchvision: %s: width %d, blocks %s, stem %s, %d parameters, input %dx%d, latent %d -> %s\n"
                     % (opts["input"], width, ",".join(map(str, blocks)), stem, nparams, w, h, out_w, opts["out"]))


if __name__ == "__main__":
    main()
