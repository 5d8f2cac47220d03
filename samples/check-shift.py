#!/usr/bin/env python3
"""check-shift.py: a quick linear check of the domain shift in the sample cohorts.

Usage: python3 samples/check-shift.py [DIR] (default: the folder of this script)

Prepares the tables the way the pipelines do (TCGA-like as is, GTEx-like log2(TPM+1),
ARCHS4-like log2(CPM+1); genes aligned by Ensembl id without version; per-gene
z-score fitted on the source and applied to the target, a target gene missing on
its side filled with the source mean), then trains a multinomial logistic
regression by plain gradient descent (numpy only) and prints target test accuracy
for:
  source-only      trained on the source, target prepared with source statistics
  aligned          the same, but each domain standardised with its own statistics
                   (a crude alignment: shows whether alignment can recover the signal)
  target-only      trained on the target's training half
The target is split in two stratified halves (seed 0): train / test.
"""
import csv
import gzip
import os
import sys

import numpy as np


def strip(g):
    return g.split(".")[0]


def read_tcga(path):
    with gzip.open(path, "rt") as f:
        r = csv.reader(f)
        head = next(r)
        rows = list(r)
    genes = [strip(g) for g in head[2:]]
    ids = [row[0] for row in rows]
    y = [row[1] for row in rows]
    x = np.array([row[2:] for row in rows], dtype=np.float64)
    return ids, genes, x, y


def read_archs4(path):
    with gzip.open(path, "rt") as f:
        r = csv.reader(f, delimiter="\t")
        head = next(r)
        rows = list(r)
    genes = [strip(g) for g in head[3:]]
    y = [row[1] for row in rows]
    series = [row[2] for row in rows]
    c = np.array([row[3:] for row in rows], dtype=np.float64)
    cpm = c / c.sum(axis=1, keepdims=True) * 1e6
    return genes, np.log2(cpm + 1), y, series


def read_gtex(path, labels):
    with gzip.open(path, "rt") as f:
        assert f.readline().strip() == "#1.2"
        f.readline()
        r = csv.reader(f, delimiter="\t")
        head = next(r)
        rows = list(r)
    ids = head[2:]
    genes = [strip(row[0]) for row in rows]
    x = np.array([row[2:] for row in rows], dtype=np.float64).T
    lab = {}
    with open(labels) as f:
        for row in csv.DictReader(f):
            lab[row["sample_id"]] = row["tissue"]
    return genes, np.log2(x + 1), [lab[i] for i in ids]


def align(src_genes, tgt_genes, xt):
    """target columns in source gene order; missing genes are NaN"""
    pos = {g: k for k, g in enumerate(tgt_genes)}
    out = np.full((xt.shape[0], len(src_genes)), np.nan)
    for j, g in enumerate(src_genes):
        if g in pos:
            out[:, j] = xt[:, pos[g]]
    return out


def zscore(x, mu, sd):
    z = (x - mu) / sd
    return np.where(np.isnan(z), 0.0, z)


def stats(x):
    mu = np.nanmean(x, axis=0)
    sd = np.nanstd(x, axis=0)
    sd[~(sd > 1e-8)] = 1.0
    return mu, sd


def fit_lr(x, y, k, iters=300, lr=0.5, l2=1e-3):
    n, f = x.shape
    w = np.zeros((f, k))
    b = np.zeros(k)
    t = np.eye(k)[y]
    for _ in range(iters):
        s = x @ w + b
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - t) / n
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(axis=0)
    return w, b


def acc(w, b, x, y):
    return float(np.mean(np.argmax(x @ w + b, axis=1) == y))


def halves(y, seed=0):
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        h = len(idx) // 2
        tr += list(idx[:h])
        te += list(idx[h:])
    return np.array(sorted(tr)), np.array(sorted(te))


import warnings
warnings.simplefilter("ignore", RuntimeWarning)


def experiment(name, sg, xs, ys, tg, xt, yt, classes):
    k = len(classes)
    cid = {c: i for i, c in enumerate(classes)}
    ys = np.array([cid[c] for c in ys])
    yt = np.array([cid[c] for c in yt])
    xt = align(sg, tg, xt)
    tr, te = halves(yt)
    mus, sds = stats(xs)
    zs = zscore(xs, mus, sds)
    w, b = fit_lr(zs, ys, k)
    src_only = acc(w, b, zscore(xt[te], mus, sds), yt[te])
    mut, sdt = stats(xt[tr])
    aligned = acc(w, b, zscore(xt[te], mut, sdt), yt[te])
    w2, b2 = fit_lr(zscore(xt[tr], mut, sdt), yt[tr], k)
    tgt_only = acc(w2, b2, zscore(xt[te], mut, sdt), yt[te])
    # the source's own held-out accuracy (is the signal learnable at all?)
    trs, tes = halves(ys)
    mu2, sd2 = stats(xs[trs])
    w3, b3 = fit_lr(zscore(xs[trs], mu2, sd2), ys[trs], k)
    src_src = acc(w3, b3, zscore(xs[tes], mu2, sd2), ys[tes])
    print(f"{name:22s} source->source {src_src:.3f}  source-only {src_only:.3f}  "
          f"aligned {aligned:.3f}  target-only {tgt_only:.3f}  "
          f"(target test n={len(te)}, train n={len(tr)})")


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    _, tg, xtcga, ytcga = read_tcga(os.path.join(d, "tcga.csv.gz"))
    gg, xg, yg = read_gtex(os.path.join(d, "gtex.gct.gz"), os.path.join(d, "gtex_labels.csv"))
    classes = sorted(set(ytcga) | set(yg))
    experiment("tcga -> gtex", tg, xtcga, ytcga, gg, xg, yg, classes)
    ap = os.path.join(d, "archs4.tsv.gz")
    if os.path.exists(ap):
        ag, xa, ya, _ = read_archs4(ap)
        experiment("archs4 -> gtex", ag, xa, ya, gg, xg, yg, classes)
        experiment("tcga -> archs4", tg, xtcga, ytcga, ag, xa, ya, classes)


if __name__ == "__main__":
    main()
