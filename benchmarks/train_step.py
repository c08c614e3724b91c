"""Training throughput, measured side by side in one run.

(a) data-loader clips/s (2 workers, training pairs as the trainer builds them) vs model steps/s
    (forward + backward of one pair) for the tiny, small and full configs on CPU -- the loader
    should deliver at least 2x what the model consumes; for the small config also the step
    rate from cached frozen prefixes (``--cache-views``, what its training runs after the first
    views) and its ratio to the uncached step;
(b) DDP with 2 gloo processes vs 1 process on the same global batch: throughput ratio.

Usage: python benchmarks/train_step.py [--videos 12] [--skip-full] [--skip-ddp]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from hmtools.datasets.clips import ExemplarIndex, PairDataset
from hmtools.datasets.synth import generate
from hmtools.engine import TrainConfig
from hmtools.engine.train import load_data
from hmtools.models import build_model


def loader_rate(pairs: PairDataset, n: int) -> float:
    """Clips/s the loader delivers (a pair is two clips), cycling epochs if needed."""
    dl = DataLoader(pairs, batch_size=1, shuffle=True, num_workers=2, persistent_workers=True)
    it = iter(dl)
    next(it)  # start-up
    t = time.perf_counter()
    for _ in range(n):
        try:
            next(it)
        except StopIteration:
            it = iter(dl)
            next(it)
    return 2 * n / (time.perf_counter() - t)


def step_rate(model, pairs: PairDataset, n: int, cached: bool = False) -> float:
    """Pair steps/s; ``cached``: from precomputed frozen prefixes instead of the videos."""
    model.train()
    q, z = pairs[0]
    batch = {k: (v[None] if torch.is_tensor(v) else v) for k, v in q.items()}
    ex = {k: (v[None] if torch.is_tensor(v) else v) for k, v in z.items()}
    kw = {
        "masks": (batch["mask_target"], ex["mask_target"]),
        "soft_labels": (batch["soft_labels"], ex["soft_labels"]),
    }
    xq, xz = batch["video"], ex["video"]
    if cached:
        xq, xz = model.encode_prefix(xq), model.encode_prefix(xz)
    model(xq, xz, ex["score"], batch["score"], **kw)["loss"].backward()
    t = time.perf_counter()
    for _ in range(n):
        out = model(xq, xz, ex["score"], batch["score"], **kw)
        out["loss"].backward()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--skip-ddp", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp(prefix="hm-train-bench-"))
    generate(root, args.videos, seed=3, height=256, progress=False)
    print("(a) data loader vs model (CPU, 2 loader workers)")
    for name in ("tiny", "small", "full"):
        if name == "full" and args.skip_full:
            continue
        model, _ = build_model(name)  # random weights: the speed is the same
        cfg = TrainConfig(
            data_root=str(root / "frames"),
            annotations=str(root / "Annotations"),
            masks_file=str(root / "Synth-HM.h5"),
            model=name,
        )
        data = load_data(cfg, model)
        from hmtools.datasets.clips import ClipDataset

        clips = ClipDataset(
            data.train, data.clip_cfg, train=True, masks_file=cfg.masks_file, layer="gtm"
        )
        pairs = PairDataset(clips, ExemplarIndex(data.train))
        lr = loader_rate(pairs, 6 if name == "full" else 20)
        sr = step_rate(model, pairs, 1 if name == "full" else 5)
        print(
            f"    {name:<6} loader {lr:7.2f} clips/s   model {2 * sr:7.2f} clips/s "
            f"({sr:.3f} pair steps/s)   loader/model = {lr / (2 * sr):.1f}x"
        )
        if model.cfg.prefix_frozen:
            cr = step_rate(model, pairs, 10, cached=True)
            print(
                f"    {name:<6} from cached prefixes: {cr:.3f} pair steps/s = "
                f"{cr / sr:.1f}x the uncached step"
            )
    if args.skip_ddp:
        return
    print("(b) DDP 2 gloo processes vs 1 process, global batch 2, tiny config")
    common = [
        "--data-root",
        str(root / "frames"),
        "--annotations",
        str(root / "Annotations"),
        "--masks-file",
        str(root / "Synth-HM.h5"),
        "--config",
        "tiny",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--accum",
        "1",
        "--workers",
        "0",
        "--voters",
        "1",
        "--i3d-weights",
        "none",
        "-q",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    times = {}
    for label, pre in (
        ("1 process", [sys.executable, "-m", "hmtools.cli"]),
        (
            "2 processes",
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc-per-node",
                "2",
                "-m",
                "hmtools.cli",
            ],
        ),
    ):
        t = time.perf_counter()
        subprocess.run(
            [*pre, "train", *common, "--out", str(root / label.replace(" ", "_"))],
            check=True,
            env=env,
            capture_output=True,
        )
        times[label] = time.perf_counter() - t
    print(
        f"    1 process {times['1 process']:.1f} s, 2 processes {times['2 processes']:.1f} s "
        f"(whole command incl. start-up and evaluation): speed-up "
        f"{times['1 process'] / times['2 processes']:.2f}x"
    )


if __name__ == "__main__":
    main()
