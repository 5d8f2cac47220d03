#!/usr/bin/python3
"""tests/stain_ref.py: reference stain normalisation, computed once, into tests/fixtures/stain/.

A plain numpy implementation of Macenko et al. (2009, "A method for normalizing histology
slides for quantitative analysis") and of Reinhard et al. (2001, "Color transfer between
images") in CIELAB, written from the papers' definitions and independent of the C code
(common/stain.c). Its outputs are committed; tests/unit/test_stain.c compares the C
results with them. Run from the repository root:

    /usr/bin/python3 tests/stain_ref.py        # needs python3-numpy, python3-skimage

Inputs (committed): ihc_crop.png (a 128x128 crop of scikit-image's ihc.png, see
LICENSE.txt) and he_synth.png (a synthetic H&E tile from gen-tiles). skimage is used to
read and write PNGs and to cross-check the CIELAB conversion; everything else is numpy.

Conventions shared with the C code (docs/STAIN.md):
- OD = -ln((I + 1) / Io), Io = 240, alpha = 1, beta = 0.15;
- stain-vector pixels: OD >= beta in all three channels; covariance with n - 1;
- the largest eigenvector is oriented so that its components sum to >= 0;
- angles phi = atan2(t . e_largest, t . e_second); percentiles with numpy's default
  linear interpolation; hematoxylin = the extreme vector with the larger red OD;
- concentrations of every pixel by least squares; maxC = their 99th percentiles;
- output Io * exp(-HE_ref C'), clipped to [0, 255], rounded half up;
- Reinhard: sRGB -> linear -> XYZ (D65) -> CIELAB, population standard deviations over
  all pixels, per-channel (x - mean) / std * std_ref + mean_ref, back to sRGB, clipped.
"""
import os
import sys

import numpy as np
import skimage.color
import skimage.io

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "stain")

HE_REF = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
MAXC_REF = np.array([1.9705, 1.0308])
IO, ALPHA, BETA = 240.0, 1.0, 0.15


def od(img):
    return -np.log((img.reshape(-1, 3).astype(np.float64) + 1.0) / IO)


def macenko_estimate(img):
    o = od(img)
    t = o[np.all(o >= BETA, axis=1)]
    cov = np.cov(t.T)
    w, v = np.linalg.eigh(cov)
    e1, e2 = v[:, 1], v[:, 2]
    if e2.sum() < 0:
        e2 = -e2
    if e1.sum() < 0:
        e1 = -e1
    phi = np.arctan2(t @ e2, t @ e1)
    lo, hi = np.percentile(phi, ALPHA), np.percentile(phi, 100 - ALPHA)
    vmin = e1 * np.cos(lo) + e2 * np.sin(lo)
    vmax = e1 * np.cos(hi) + e2 * np.sin(hi)
    he = np.stack([vmin, vmax], axis=1) if vmin[0] > vmax[0] else np.stack([vmax, vmin], axis=1)
    c, *_ = np.linalg.lstsq(he, o.T, rcond=None)
    maxc = np.array([np.percentile(c[0], 99), np.percentile(c[1], 99)])
    return he, maxc, c


def to_u8(x):
    return np.floor(np.clip(x, 0, 255) + 0.5).astype(np.uint8)


def macenko_apply(img, he_ref, maxc_ref):
    he, maxc, c = macenko_estimate(img)
    c2 = c * (maxc_ref / maxc)[:, None]
    out = IO * np.exp(-(he_ref @ c2))
    return to_u8(out.T.reshape(img.shape))


# CIELAB (CIE 15): D65 white, sRGB primaries as in scikit-image
M = np.array([[0.412453, 0.357580, 0.180423],
              [0.212671, 0.715160, 0.072169],
              [0.019334, 0.119193, 0.950227]])
WHITE = np.array([0.95047, 1.0, 1.08883])
EPS, KAPPA = 216 / 24389, 24389 / 27


def rgb2lab(img):
    c = img.reshape(-1, 3).astype(np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ M.T / WHITE
    f = np.where(xyz > EPS, np.cbrt(xyz), (KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def lab2rgb(lab):
    fy = (lab[:, 0] + 16) / 116
    f = np.stack([fy + lab[:, 1] / 500, fy, np.maximum(fy - lab[:, 2] / 200, 0)], axis=1)
    xyz = np.where(f > 6 / 29, f ** 3, (116 * f - 16) / KAPPA) * WHITE
    lin = xyz @ np.linalg.inv(M).T
    pos = np.maximum(lin, 0.0031308)
    c = np.where(lin > 0.0031308, 1.055 * pos ** (1 / 2.4) - 0.055, 12.92 * lin)
    return np.clip(c, 0, 1)


def reinhard_stats(img):
    lab = rgb2lab(img)
    return lab.mean(axis=0), lab.std(axis=0)


def reinhard_apply(img, mean_ref, std_ref):
    lab = rgb2lab(img)
    m, s = lab.mean(axis=0), lab.std(axis=0)
    out = (lab - m) / s * std_ref + mean_ref
    return to_u8(lab2rgb(out) * 255).reshape(img.shape)


def main():
    ihc = skimage.io.imread(os.path.join(FIX, "ihc_crop.png"))[:, :, :3]
    he = skimage.io.imread(os.path.join(FIX, "he_synth.png"))[:, :, :3]

    # the CIELAB conversion against scikit-image's
    for img in (ihc, he):
        ours = rgb2lab(img)
        theirs = skimage.color.rgb2lab(img).reshape(-1, 3)
        d = np.abs(ours - theirs).max()
        assert d < 1e-3, d
        back = np.abs(lab2rgb(ours) - skimage.color.lab2rgb(theirs.reshape(img.shape)).reshape(-1, 3)).max()
        assert back < 1e-4, back

    rng = np.random.default_rng(7)
    colours = np.concatenate([
        np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 10, 10], [128, 64, 200]]),
        rng.integers(0, 256, size=(57, 3)),
    ]).astype(np.uint8)
    lab = skimage.color.rgb2lab(colours.reshape(1, -1, 3)).reshape(-1, 3)
    with open(os.path.join(FIX, "lab.txt"), "w") as f:
        f.write("# r g b L a b  (skimage.color.rgb2lab, D65)\n")
        for c, l in zip(colours, lab):
            f.write("%d %d %d %.9f %.9f %.9f\n" % (c[0], c[1], c[2], l[0], l[1], l[2]))

    out = {}
    he_fit, maxc_fit, _ = macenko_estimate(he)
    ihc_he, ihc_maxc, _ = macenko_estimate(ihc)
    mean_he, std_he = reinhard_stats(he)
    out["macenko_ihc_default.png"] = macenko_apply(ihc, HE_REF, MAXC_REF)
    out["macenko_he_default.png"] = macenko_apply(he, HE_REF, MAXC_REF)
    out["macenko_ihc_to_he.png"] = macenko_apply(ihc, he_fit, maxc_fit)
    out["reinhard_ihc_to_he.png"] = reinhard_apply(ihc, mean_he, std_he)
    for name, img in out.items():
        skimage.io.imsave(os.path.join(FIX, name), img, check_contrast=False)
    with open(os.path.join(FIX, "params.txt"), "w") as f:
        f.write("# name: values (stain matrix row-major (3,2), then maxC; or LAB mean then std)\n")
        f.write("macenko_he: %s\n" % " ".join("%.9f" % v for v in list(he_fit.ravel()) + list(maxc_fit)))
        f.write("macenko_ihc: %s\n" % " ".join("%.9f" % v for v in list(ihc_he.ravel()) + list(ihc_maxc)))
        f.write("reinhard_he: %s\n" % " ".join("%.9f" % v for v in list(mean_he) + list(std_he)))
    # a JPEG of the crop, for the reader's tests (decoded by the C code, not compared)
    skimage.io.imsave(os.path.join(FIX, "ihc_crop.jpg"), ihc, quality=90)
    print("wrote", ", ".join(sorted(out)), "lab.txt, params.txt, ihc_crop.jpg to", FIX, file=sys.stderr)


if __name__ == "__main__":
    main()
