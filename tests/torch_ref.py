#!/usr/bin/env python3
"""torch_ref.py: independent PyTorch reference for the math in common/ (nn.h).

Builds small models with fixed initial weights, runs a few training steps and
writes plain-text fixtures that tests/unit/test_torch_ref.c replays with the C code:

  wgan.txt   encoder 6->8->8 (Linear, ReLU, BatchNorm, dropout 0) + classifier
             8->5->3 + critic 8->6->4->1 (LeakyReLU 0.2). Per step: a critic step
             (-mean softplus(D(zs)) + mean softplus(D(zt)) + 10 GP, GP on
             interpolates, Adam betas (0.5, 0.9)), then an encoder+classifier step
             (CE + w * -mean softplus(D(zt)), Adam 1e-3, L2 weight decay 1e-4).
  dann.txt   the same encoder and classifier + domain classifier 8->6->1 (ReLU)
             behind a gradient reversal layer; CE + BCE(domain), Adam with the
             Ganin schedules for lr and lambda.
  optim.txt  the classifier alone: CE with class weights and label smoothing,
             SGD (momentum, weight decay) then AdamW steps.

File format: one tensor per line, "name count v1 v2 ...", values as %.9g
(float32 round-trips exactly). Run with Debian's python3-torch:
  /usr/bin/python3 tests/torch_ref.py tests/fixtures/torch
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.manual_seed(0)
RNG = np.random.default_rng(20260101)


class Writer:
    def __init__(self, path):
        self.f = open(path, "w")

    def put(self, name, t):
        a = np.asarray(t.detach().cpu().numpy() if torch.is_tensor(t) else t, dtype=np.float64).ravel()
        vals = " ".join("%.9g" % float(np.float32(v)) for v in a)
        self.f.write("%s %d %s\n" % (name, a.size, vals))

    def close(self):
        self.f.close()


class MLP(nn.Module):
    """The MLP of nn.h: Linear -> act -> norm -> dropout per hidden layer, plain Linear head."""

    def __init__(self, inp, widths, act="relu", norm="none", head=True, slope=0.2):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.names = []
        n = len(widths)
        for i, w in enumerate(widths):
            lin = nn.Linear(inp, w)
            layers = [lin]
            plain = head and i == n - 1
            if not plain:
                layers.append(nn.ReLU() if act == "relu" else nn.LeakyReLU(slope))
                if norm == "batch":
                    layers.append(nn.BatchNorm1d(w, momentum=0.1, eps=1e-5))
                layers.append(nn.Dropout(0.0))
            self.blocks.append(nn.Sequential(*layers))
            inp = w

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x

    def init_random(self):
        """fixed initial weights drawn here (not torch's init), saved to the fixture"""
        with torch.no_grad():
            for b in self.blocks:
                lin = b[0]
                bound = 1.0 / math.sqrt(lin.in_features)
                lin.weight.copy_(torch.tensor(RNG.uniform(-bound, bound, lin.weight.shape), dtype=torch.float32))
                lin.bias.copy_(torch.tensor(RNG.uniform(-bound, bound, lin.bias.shape), dtype=torch.float32))
                for m in b:
                    if isinstance(m, nn.BatchNorm1d):
                        m.weight.copy_(torch.tensor(RNG.uniform(0.5, 1.5, m.weight.shape), dtype=torch.float32))
                        m.bias.copy_(torch.tensor(RNG.uniform(-0.3, 0.3, m.bias.shape), dtype=torch.float32))

    def tensors(self):
        """(name, tensor) in nn.h's naming: l0.w, l0.b, l0.bn.gamma, ..., running stats"""
        out = []
        for i, b in enumerate(self.blocks):
            out.append(("l%d.w" % i, b[0].weight))
            out.append(("l%d.b" % i, b[0].bias))
            for m in b:
                if isinstance(m, nn.BatchNorm1d):
                    out.append(("l%d.bn.gamma" % i, m.weight))
                    out.append(("l%d.bn.beta" % i, m.bias))
                    out.append(("l%d.bn.running_mean" % i, m.running_mean))
                    out.append(("l%d.bn.running_var" % i, m.running_var))
        return out


def put_model(w, prefix, model):
    for name, t in model.tensors():
        w.put(prefix + "." + name, t)


class GradReverse(torch.autograd.Function):
    """the gradient reversal layer: identity forward, -lambda * grad backward"""

    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lam * g, None


B, F_IN, K, STEPS = 8, 6, 3, 4


def make_data(w, step):
    xs = torch.tensor(RNG.normal(0, 1, (B, F_IN)), dtype=torch.float32)
    ys = torch.tensor(RNG.integers(0, K, B), dtype=torch.long)
    xt = torch.tensor(RNG.normal(0.5, 1.5, (B, F_IN)), dtype=torch.float32)
    w.put("step%d.xs" % step, xs)
    w.put("step%d.ys" % step, ys)
    w.put("step%d.xt" % step, xt)
    return xs, ys, xt


def models():
    enc = MLP(F_IN, [8, 8], "relu", "batch", head=False)
    cls = MLP(8, [5, K], "relu", "none", head=True)
    enc.init_random()
    cls.init_random()
    enc.train()
    cls.train()
    return enc, cls


def run_wgan(path):
    w = Writer(path)
    enc, cls = models()
    critic = MLP(8, [6, 4, 1], "leaky", "none", head=True)
    critic.init_random()
    adapt_w, gp_w = 0.5, 10.0
    w.put("config.steps", [STEPS])
    w.put("config.adapt_weight", [adapt_w])
    w.put("config.gp_weight", [gp_w])
    for p, m in (("init.enc", enc), ("init.cls", cls), ("init.critic", critic)):
        put_model(w, p, m)
    opt_c = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))
    opt_e = torch.optim.Adam(list(enc.parameters()) + list(cls.parameters()), lr=1e-3, weight_decay=1e-4)
    for s in range(STEPS):
        xs, ys, xt = make_data(w, s)
        alpha = torch.tensor(RNG.uniform(0, 1, (B, 1)), dtype=torch.float32)
        w.put("step%d.alpha" % s, alpha)
        # critic step: the encoder is not trained here (no gradient into it)
        with torch.no_grad():
            zs = enc(xs)
            zt = enc(xt)
        ds = critic(zs)
        dt = critic(zt)
        xhat = (alpha * zs + (1 - alpha) * zt).requires_grad_(True)
        dh = critic(xhat)
        g = torch.autograd.grad(dh.sum(), xhat, create_graph=True)[0]
        gp = ((g.norm(2, dim=1) - 1) ** 2).mean()
        lc = -F.softplus(ds).mean() + F.softplus(dt).mean()
        critic_loss = lc + gp_w * gp
        opt_c.zero_grad()
        critic_loss.backward()
        opt_c.step()
        w.put("step%d.critic_loss" % s, [critic_loss.item()])
        w.put("step%d.gp" % s, [(gp_w * gp).item()])
        # encoder + classifier step
        zs = enc(xs)
        ce = F.cross_entropy(cls(zs), ys)
        zt = enc(xt)
        adv = -F.softplus(critic(zt)).mean()
        loss = ce + adapt_w * adv
        opt_e.zero_grad()
        loss.backward()
        opt_e.step()
        w.put("step%d.ce" % s, [ce.item()])
        w.put("step%d.enc_loss" % s, [loss.item()])
    for p, m in (("final.enc", enc), ("final.cls", cls), ("final.critic", critic)):
        put_model(w, p, m)
    w.close()


def run_dann(path):
    w = Writer(path)
    enc, cls = models()
    dom = MLP(8, [6, 1], "relu", "none", head=True)
    dom.init_random()
    lr0 = 1e-3
    w.put("config.steps", [STEPS])
    w.put("config.lr0", [lr0])
    for p, m in (("init.enc", enc), ("init.cls", cls), ("init.dom", dom)):
        put_model(w, p, m)
    opt = torch.optim.Adam(list(enc.parameters()) + list(cls.parameters()) + list(dom.parameters()),
                           lr=lr0, weight_decay=1e-4)
    for s in range(STEPS):
        xs, ys, xt = make_data(w, s)
        p = s / STEPS
        lam = 2.0 / (1.0 + math.exp(-10 * p)) - 1.0
        lr = lr0 / (1 + 10 * p) ** 0.75
        for gr in opt.param_groups:
            gr["lr"] = lr
        zs = enc(xs)
        zt = enc(xt)
        ce = F.cross_entropy(cls(zs), ys)
        z = torch.cat([zs, zt])
        t = torch.cat([torch.zeros(B, 1), torch.ones(B, 1)])
        bce = F.binary_cross_entropy_with_logits(dom(GradReverse.apply(z, lam)), t)
        loss = ce + bce
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.put("step%d.lambda" % s, [lam])
        w.put("step%d.lr" % s, [lr])
        w.put("step%d.ce" % s, [ce.item()])
        w.put("step%d.bce" % s, [bce.item()])
    for p, m in (("final.enc", enc), ("final.cls", cls), ("final.dom", dom)):
        put_model(w, p, m)
    w.close()


def run_optim(path):
    """the classifier alone: weighted, smoothed CE with an ignored row; SGD then AdamW"""
    w = Writer(path)
    cls = MLP(F_IN, [5, K], "relu", "none", head=True)
    cls.init_random()
    cw = torch.tensor([0.5, 2.0, 1.25], dtype=torch.float32)
    smoothing = 0.1
    w.put("config.class_w", cw)
    w.put("config.smoothing", [smoothing])
    put_model(w, "init.cls", cls)
    sgd = torch.optim.SGD(cls.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    adamw = torch.optim.AdamW(cls.parameters(), lr=1e-2, weight_decay=1e-2)
    for s in range(2 * STEPS):
        x = torch.tensor(RNG.normal(0, 1, (B, F_IN)), dtype=torch.float32)
        y = torch.tensor(RNG.integers(0, K, B), dtype=torch.long)
        y[2] = -1  # an unlabelled row
        w.put("step%d.x" % s, x)
        w.put("step%d.y" % s, y)
        loss = F.cross_entropy(cls(x), y, weight=cw, label_smoothing=smoothing, ignore_index=-1)
        opt = sgd if s < STEPS else adamw
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.put("step%d.loss" % s, [loss.item()])
    put_model(w, "final.cls", cls)
    w.close()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/torch"
    os.makedirs(out, exist_ok=True)
    run_wgan(os.path.join(out, "wgan.txt"))
    run_dann(os.path.join(out, "dann.txt"))
    run_optim(os.path.join(out, "optim.txt"))
    print("torch %s: wrote %s/{wgan,dann,optim}.txt" % (torch.__version__, out))


if __name__ == "__main__":
    main()
