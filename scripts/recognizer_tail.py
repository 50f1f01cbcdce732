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

With --bootstrap N it also asks how far LFW can tell a loss at each level:
people are drawn with replacement N times (an identity bootstrap, as
`facegate calibrate` reads london-dev), each draw's thresholds are set as
`facegate calibrate` sets them (the Clopper-Pearson 95% margin; a test checks
that the counts agree), and the difference of each model's TMR from the
first one's is read in every draw.
On the whole of LFW (no draw) the difference is the tables' own.

Usage: recognizer_tail.py CROPS BASELINE_ONNX MODEL_ONNX... [--cache DIR] [--bootstrap N]
CROPS comes from `facegate models crops --every-image --out CROPS`, which
also writes each face's person to CROPS with the extension `.names`.
"""
import argparse
import hashlib
import math
import os
import sys

import numpy as np

SIDE = 112
LEVELS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


def embed(model, faces, cache):
    """L2-normalised embeddings, from `cache` when it holds this model's."""
    # Imported here so that the rest (and its test) needs only NumPy.
    import onnxruntime as ort

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


def tmr_by_rank(scores, same, top):
    """TMR (%) at the threshold of each of the `top` highest impostor scores."""
    genuine = np.sort(scores[same])
    impostors = scores[~same]
    highest = np.sort(np.partition(impostors, len(impostors) - top)[-top:])[::-1]
    above = len(genuine) - np.searchsorted(genuine, highest, side="right")
    return 100 * above / len(genuine)


def ln_pmf(i, n, p):
    """ln P(X = i) for X ~ Bin(n, p)."""
    return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)


def binomial_cdf(k, n, p):
    """P(X <= k) for X ~ Bin(n, p), summed from k away from the mode as
    facegate's `stats::binomial_cdf` does (far enough out that the terms
    left are below 1e-17 of the sum)."""
    if k >= n:
        return 1.0
    odds = p / (1 - p)
    span = int(40 * math.sqrt(k + 1)) + 100
    if k < (n + 1) * p:
        i = np.arange(k, max(k - span, 0) - 1, -1, dtype=float)
        steps = np.log(i[:-1]) - np.log(n - i[:-1] + 1) - math.log(odds)
        return min(1.0, float(np.exp(ln_pmf(k, n, p) + np.concatenate([[0.0], np.cumsum(steps)])).sum()))
    i = np.arange(k + 1, min(k + 1 + span, n) + 1, dtype=float)
    steps = np.log(n - i[:-1]) - np.log(i[:-1] + 1) + math.log(odds)
    return max(0.0, 1 - float(np.exp(ln_pmf(k + 1, n, p) + np.concatenate([[0.0], np.cumsum(steps)])).sum()))


def allowed_pairs(fmr, pairs):
    """How many impostor pairs may reach a level's threshold among `pairs`,
    by `facegate calibrate`'s rule: the most whose Clopper-Pearson 95% upper
    bound stays within `fmr`. That bound is at most `fmr` exactly when k or
    fewer false matches would happen at rate `fmr` at most 2.5% of the time."""
    pairs = int(round(pairs))
    if binomial_cdf(0, pairs, fmr) > 0.025:
        return 0
    lo, hi = 0, min(math.ceil(fmr * pairs), pairs)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if binomial_cdf(mid, pairs, fmr) <= 0.025 else (lo, mid - 1)
    return lo


class Tail:
    """One model's scores for the bootstrap: every genuine pair, and the
    impostor pairs high enough to hold level 1's threshold in any draw."""

    def __init__(self, scores, ids, upper, same, top):
        self.genuine = scores[same]
        self.genuine_person = ids[upper[0][same]]
        impostor = np.flatnonzero(~same)
        highest = impostor[np.argpartition(scores[impostor], len(impostor) - top)[-top:]]
        highest = highest[np.argsort(-scores[highest], kind="stable")]
        self.impostor = scores[highest]
        self.pair = (ids[upper[0][highest]], ids[upper[1][highest]])

    def tmr(self, draws, allowed):
        """TMR (%) at the threshold `facegate calibrate` would set on the
        people drawn `draws[p]` times each, where `allowed` impostor pairs
        may reach it (pairs between two draws of one person are left out,
        as they are one person)."""
        weight = np.cumsum(draws[self.pair[0]] * draws[self.pair[1]])
        first_over = np.searchsorted(weight, allowed, side="right")
        if first_over == len(self.impostor):
            raise ValueError(f"a threshold letting {allowed} pairs through lies below the impostor pairs kept")
        threshold = self.impostor[first_over]
        genuine_weight = draws[self.genuine_person]
        return 100 * genuine_weight[self.genuine > threshold].sum() / genuine_weight.sum()


def bootstrap(tails, labels, ids, draws):
    """Per level: each model's TMR difference from the first on all of LFW,
    and its 95% interval over `draws` identity bootstrap draws."""
    people = ids.max() + 1
    photos = np.bincount(ids, minlength=people).astype(float)
    rng = np.random.default_rng(20261207)
    counts = [np.ones(people)]
    counts += [np.bincount(rng.integers(0, people, people), minlength=people).astype(float) for _ in range(draws)]
    # Pairs of photos of two different people drawn, each draw of a person counting.
    pairs = [((c * photos).sum() ** 2 - ((c * photos) ** 2).sum()) / 2 for c in counts]
    print(f"identity bootstrap, {draws} draws of {people} people; thresholds as `facegate calibrate` sets them")
    for fmr in LEVELS:
        table = np.empty((len(tails), len(counts)))
        for j, (c, n) in enumerate(zip(counts, pairs)):
            allowed = allowed_pairs(fmr, n)
            table[:, j] = [t.tmr(c, allowed) for t in tails]
        print(f"FMR {fmr:.0e}: {labels[0]} TMR {table[0, 0]:.2f}% on LFW")
        for label, row in zip(labels[1:], table[1:]):
            delta = row - table[0]
            lo, hi = np.percentile(delta[1:], [2.5, 97.5])
            print(
                f"  {label:42s} Δ on LFW {delta[0]:+.2f}, over the draws: mean {delta[1:].mean():+.2f},"
                f" 95% {lo:+.2f} to {hi:+.2f}, below -0.3 in {100 * (delta[1:] < -0.3).mean():.0f}%"
            )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("crops")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--cache", help="directory for embeddings, keyed by the model's hash")
    parser.add_argument("--bootstrap", type=int, default=0, help="identity bootstrap draws (0: none)")
    args = parser.parse_args()
    faces = np.fromfile(args.crops, dtype=np.uint8).reshape(-1, SIDE, SIDE, 3)
    names = open(os.path.splitext(args.crops)[0] + ".names").read().split()
    _, ids = np.unique(names, return_inverse=True)
    upper = np.triu_indices(len(ids), 1)
    same = ids[upper[0]] == ids[upper[1]]
    impostors = int((~same).sum())
    top = int(impostors * LEVELS[0] * 1.1)
    curves, tails = [], []
    for model in args.models:
        e = embed(model, faces, args.cache)
        scores = (e @ e.T)[upper]
        curves.append(tmr_by_rank(scores, same, top))
        if args.bootstrap:
            # Enough impostor pairs to hold level 1's threshold in any draw.
            tails.append(Tail(scores, ids, upper, same, int(impostors * LEVELS[0] * 1.3)))
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
    if args.bootstrap:
        labels = [os.path.basename(m) for m in args.models]
        bootstrap(tails, labels, ids, args.bootstrap)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
