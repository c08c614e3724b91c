"""How hard is `hmtools synth`? Floors that a real benchmark must respect.

Prints, for a freshly generated synthetic dataset:
  (a) mean mask IoU of a frame-difference/Otsu foreground baseline vs the exact masks (goal <= 0.6);
  (b) test Spearman rho of a ridge regression on global clip statistics (mean brightness,
      foreground area, duration) (goal <= 0.3);
  (c) the share of final-score variance each execution factor explains alone (R^2 of a
      one-factor linear fit; goal: >= 3 factors matter, none > 0.40), and difficulty's share.

Usage: python benchmarks/synth_difficulty.py [--videos 200] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import spearmanr

from hmtools.annotation.baselines import frame_difference_masks
from hmtools.datasets.records import load_finediving
from hmtools.datasets.synth import FACTORS, generate
from hmtools.masks import MaskStore, rle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="write the dataset here and keep it")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="hm-synth-"))
    t0 = time.perf_counter()
    generate(root, args.videos, args.seed, overwrite=True, progress=False)
    gen_s = time.perf_counter() - t0
    frames_total = 0
    samples = load_finediving(root / "Annotations", root / "frames")
    ious, feats, scores, splits = [], [], [], []
    with MaskStore(root / "Synth-HM.h5") as store:
        for s in samples:
            files = [p for _, p in s.frame_files()]
            frames = np.stack([cv2.imread(str(p)) for p in files])
            frames_total += len(frames)
            data = store.read_layer(s.id, "gtm")
            h, w = frames.shape[1:3]
            pred = frame_difference_masks(frames)
            iou = rle.iou(rle.encode(pred), data.rles, h, w)
            ious.append(float(iou.mean()))
            feats.append([frames.mean(), pred.mean(), len(frames)])
            scores.append(s.final_score)
            splits.append(s.split)
    X, y = np.asarray(feats, np.float64), np.asarray(scores)
    tr = np.array([sp == "train" for sp in splits])
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-9
    Xs = np.c_[(X - mu) / sd, np.ones(len(X))]
    lam = 1.0
    w = np.linalg.solve(Xs[tr].T @ Xs[tr] + lam * np.eye(Xs.shape[1]), Xs[tr].T @ y[tr])
    rho = spearmanr(Xs[~tr] @ w, y[~tr]).statistic
    with open(root / "synth_factors.csv") as fh:
        rows = list(csv.DictReader(fh))
    fac = {f: np.array([float(r[f]) for r in rows]) for f in FACTORS}
    final = np.array([float(r["final_score"]) for r in rows])
    dd = np.array([s.difficulty for s in samples])  # same order as the csv (generation order)
    r2 = {f: float(np.corrcoef(v, final)[0, 1] ** 2) for f, v in fac.items()}
    r2["difficulty (not execution)"] = float(np.corrcoef(dd, final)[0, 1] ** 2)
    print(
        f"synthetic dataset: {len(samples)} clips, {frames_total} frames, generated in "
        f"{gen_s:.1f} s ({frames_total / gen_s:.0f} frames/s)"
    )
    print(f"(a) frame-difference/Otsu baseline mean mask IoU: {np.mean(ious):.3f}  (goal <= 0.6)")
    print(
        f"(b) ridge on global clip stats, test Spearman rho: {rho:.3f}  (goal <= 0.3; "
        f"{int((~tr).sum())} test clips)"
    )
    for i, name in enumerate(("mean brightness", "foreground area", "duration")):
        print(
            f"      Spearman(score, {name}) over all clips: {spearmanr(X[:, i], y).statistic:+.3f}"
        )
    print("(c) share of final-score variance explained by each factor alone (R^2):")
    for f, v in r2.items():
        print(f"      {f:<28} {v:.3f}")
    ok = sum(r2[f] >= 0.05 for f in FACTORS)
    print(
        f"    factors with R^2 >= 0.05: {ok} (goal >= 3); max factor share "
        f"{max(r2[f] for f in FACTORS):.3f} (goal <= 0.40)"
    )
    if args.keep is None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
