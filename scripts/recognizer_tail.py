#!/usr/bin/env python3
"""Compare recognisers on LFW all-pairs where the levels are set, rank by rank.

A level's threshold is the score of the n-th highest impostor pair, with n
its FMR times the 87.3M impostor pairs: 87 at level 5. That far out the
impostors are sparse, so one pair moving a few thousandths reorders them
and TMR jumps (for fp32, TMR is 66.9% with 60 impostor pairs above the
threshold and 81.2% with 76). A model's loss at one rank is therefore
mostly which pair happened to land there. This prints, for each level, each model's TMR at n and the
mean and spread of its difference from the first model over the ranks
n ± 2√n (two Poisson deviations of the count n itself), which separates a
real loss from the reshuffle.

Thresholds are empirical (no Clopper-Pearson margin), so TMR here is higher
than in `facegate calibrate`'s tables; the differences are what to read.

Usage: recognizer_tail.py CROPS BASELINE_ONNX MODEL_ONNX... [--cache DIR]
CROPS comes from `facegate models crops --every-image --out CROPS`, which
also writes each face's person to CROPS with the extension `.names`.
"""
import argparse
import hashlib
import math
import os
import sys

import numpy as np
import onnxruntime as ort

SIDE = 112
LEVELS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


def embed(model, faces, cache):
    """L2-normalised embeddings, from `cache` when it holds this model's."""
    digest = hashlib.sha256(open(model, "rb").read()).hexdigest()[:16]
    path = cache and os.path.join(cache, f"{digest}.npy")
    if path and os.path.exists(path):
        return np.load(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    out = [
        session.run(None, {"data": faces[i : i + 32].transpose(0, 3, 1, 2).astype(np.float32)})[0]
        for i in range(0, len(faces), 32)
    ]
    e = np.concatenate(out)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    if path:
        np.save(path, e)
    return e


def tmr_by_rank(e, same, upper, top):
    """TMR (%) at the threshold of each of the `top` highest impostor scores."""
    scores = (e @ e.T)[upper]
    genuine = np.sort(scores[same])
    impostors = scores[~same]
    highest = np.sort(np.partition(impostors, len(impostors) - top)[-top:])[::-1]
    above = len(genuine) - np.searchsorted(genuine, highest, side="right")
    return 100 * above / len(genuine)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("crops")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--cache", help="directory for embeddings, keyed by the model's hash")
    args = parser.parse_args()
    faces = np.fromfile(args.crops, dtype=np.uint8).reshape(-1, SIDE, SIDE, 3)
    names = open(os.path.splitext(args.crops)[0] + ".names").read().split()
    _, ids = np.unique(names, return_inverse=True)
    upper = np.triu_indices(len(ids), 1)
    same = ids[upper[0]] == ids[upper[1]]
    impostors = int((~same).sum())
    top = int(impostors * LEVELS[0] * 1.1)
    curves = [tmr_by_rank(embed(m, faces, args.cache), same, upper, top) for m in args.models]
    print(f"{len(faces)} faces, {int(same.sum())} genuine and {impostors} impostor pairs")
    for fmr in LEVELS:
        n = int(impostors * fmr)
        lo, hi = max(1, n - int(2 * math.sqrt(n))), n + int(2 * math.sqrt(n))
        print(f"FMR {fmr:.0e}: rank {n}, window {lo}-{hi}")
        for model, curve in zip(args.models, curves):
            delta = curve[lo - 1 : hi] - curves[0][lo - 1 : hi]
            print(
                f"  {os.path.basename(model):42s} TMR {curve[n - 1]:6.2f}%"
                f"  Δ at rank {curve[n - 1] - curves[0][n - 1]:+.2f}"
                f"  Δ over window: mean {delta.mean():+.3f}, sd {delta.std():.3f}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
