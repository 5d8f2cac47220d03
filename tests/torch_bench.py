#!/usr/bin/env python3
"""tests/torch_bench.py: the train-step loop in PyTorch on the CPU, for `make bench`.

Reads the same minibatch stream that train-step reads (written by `batch`: header kind
"batches", val frames, batch frames, epoch_end, end) and trains the same model with the
same loop: the published architecture (encoder 3 x (Linear 256, ReLU, BatchNorm1d,
Dropout 0.5); classifier 128 -> 64 -> classes; domain head 256 -> 128 -> 64 -> 1, ReLU
for DANN, LeakyReLU 0.2 for the WGAN-GP critic), Adam (lr 1e-4, weight decay 1e-4) per
part, source and target rows through the encoder in one batch, and
  dann:    class CE on the labelled rows + domain BCE through a gradient reversal layer;
  wgan-gp: n-critic critic updates per batch on its detached z (-mean softplus(D(zs))
           + mean softplus(D(zt)) + 10 GP), then class CE and the encoder's adversarial
           term -mean softplus(D(zt)) on every batch (train-step's alternation).
Only the step is timed (like train-step's ms/step: parsing the stream is not).

  python3 tests/torch_bench.py --method dann|wgan-gp --threads N [--epochs-max 1] BATCHES.mpk
prints one line: key=value pairs (steps, ms_per_step, samples_per_s, val_acc, threads).
Exit 0 ok, 1 when torch is missing (the message says why), 2 usage.
"""
import argparse
import sys
import time

try:
    import msgpack
    import numpy as np
except ImportError as e:
    print("torch_bench: %s" % e, file=sys.stderr)
    sys.exit(1)
try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    print("torch_bench: %s" % e, file=sys.stderr)
    sys.exit(1)


def array(t):
    dt = {"f32": "<f4", "i32": "<i4"}[t["dtype"]]
    return np.frombuffer(t["data"], dt).reshape(t["shape"]).copy()


class GRL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lam * g, None


def mlp(widths, act, head):
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if not (head and i == len(widths) - 2):
            layers.append(act())
    return nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", required=True, choices=["dann", "wgan-gp"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs-max", type=int, default=1)
    ap.add_argument("--n-critic", type=int, default=5)
    ap.add_argument("--gp-weight", type=float, default=10.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("input")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    f = open(a.input, "rb")
    up = msgpack.Unpacker(f, raw=False, max_buffer_size=2**31 - 1)
    h = next(up)
    if h.get("kind") != "batches":
        print("torch_bench: %s: not a minibatch stream" % a.input, file=sys.stderr)
        return 1
    Fdim, K = len(h["features"]), len(h["classes"])
    enc = nn.Sequential(
        nn.Linear(Fdim, 256), nn.ReLU(), nn.BatchNorm1d(256), nn.Dropout(0.5),
        nn.Linear(256, 256), nn.ReLU(), nn.BatchNorm1d(256), nn.Dropout(0.5),
        nn.Linear(256, 256), nn.ReLU(), nn.BatchNorm1d(256), nn.Dropout(0.5))
    cls = mlp([256, 128, 64, K], nn.ReLU, True)
    if a.method == "dann":
        dis = mlp([256, 256, 128, 64, 1], nn.ReLU, True)
    else:
        dis = mlp([256, 256, 128, 64, 1], lambda: nn.LeakyReLU(0.2), True)
    opt = lambda m: torch.optim.Adam(m.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    oe, oc, od = opt(enc), opt(cls), opt(dis)

    val = None
    steps, t_steps, rows, gstep = 0, 0.0, 0, 0
    for fr in up:
        t = fr["type"]
        if t == "val":
            if fr["set"] == "source":
                val = (torch.from_numpy(array(fr["x"]).copy()), torch.from_numpy(array(fr["y"]).astype(np.int64)))
            continue
        if t == "epoch_end":
            if fr["epoch"] + 1 >= a.epochs_max:
                break
            continue
        if t == "end":
            break
        if t != "batch":
            continue
        xs, ys = torch.from_numpy(array(fr["xs"])), torch.from_numpy(array(fr["ys"]).astype(np.int64))
        xt, yt = torch.from_numpy(array(fr["xt"])), torch.from_numpy(array(fr["yt"]).astype(np.int64))
        t0 = time.perf_counter()
        x = torch.cat([xs, xt])
        y = torch.cat([ys, yt])
        ns = xs.shape[0]
        enc.train()
        z = enc(x)
        lab = y >= 0
        if a.method == "dann":
            d = torch.cat([torch.zeros(ns), torch.ones(xt.shape[0])])
            closs = F.cross_entropy(cls(z[lab]), y[lab])
            dl = F.binary_cross_entropy_with_logits(dis(GRL.apply(z, 1.0)).squeeze(1), d)
            oe.zero_grad(); oc.zero_grad(); od.zero_grad()
            (closs + dl).backward()
            oe.step(); oc.step(); od.step()
        else:
            # n-critic critic updates on this batch's detached z (fresh interpolates
            # each), then the encoder's adversarial term on every batch (as train-step)
            zs, zt = z[:ns].detach(), z[ns:].detach()
            n = min(zs.shape[0], zt.shape[0])
            for _ in range(a.n_critic):
                al = torch.rand(n, 1)
                xh = (al * zs[:n] + (1 - al) * zt[:n]).requires_grad_(True)
                g = torch.autograd.grad(dis(xh).sum(), xh, create_graph=True)[0]
                gp = ((g.norm(2, dim=1) - 1) ** 2).mean()
                cl = -F.softplus(dis(zs)).mean() + F.softplus(dis(zt)).mean() + a.gp_weight * gp
                od.zero_grad()
                cl.backward()
                od.step()
            loss = F.cross_entropy(cls(z[lab]), y[lab]) - F.softplus(dis(z[ns:])).mean()
            oe.zero_grad(); oc.zero_grad()
            loss.backward()
            oe.step(); oc.step()
        t_steps += time.perf_counter() - t0
        steps += 1
        gstep += 1
        rows += x.shape[0]
    acc = float("nan")
    if val is not None:
        enc.eval()
        with torch.no_grad():
            pred = cls(enc(val[0])).argmax(1)
        acc = float((pred == val[1]).float().mean())
    print("steps=%d ms_per_step=%.3f samples_per_s=%.1f val_acc=%.4f threads=%d torch=%s" % (
        steps, 1000 * t_steps / max(steps, 1), rows / t_steps if t_steps > 0 else 0, acc, a.threads,
        torch.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
