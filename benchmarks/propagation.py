"""Correct a few frames, propagate to the rest: how right is the whole video afterwards?

On DAVIS dance-twirl (``../shared/data/davis-person``, 90 real frames with true person masks)
and on synthetic dives (``hmtools synth``, exact masks), with a simulated annotator who supplies
the true mask of exactly the frames asked for:

1. ``pseudo-mask`` with automatic prompts (the default weight-free segmenter);
2. at budgets of 0, 2, 5, 10 and 20 % of each video's frames:
   - **queue + propagate**: ``review-queue --budget P%`` picks the frames, the annotator
     corrects them, ``propagate`` carries them;
   - (a) **queue, no propagation**: the same frames corrected, the pseudo masks elsewhere;
   - (b) **uniform + propagate**: as many frames, evenly spaced (first and last included);
3. mean IoU (J) of the final layer against the full ground truth over every frame (DAVIS's
   convention: empty against empty counts 1) and over the frames that show the person, and the
   seconds per propagated frame.

Usage: python benchmarks/propagation.py [--synthetic 6] [--seed 11] [--height 256]
       [--budgets 0 2 5 10 20] [--segmenter blazepose] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from hmtools.annotation.propagate import run_propagate
from hmtools.annotation.pseudo_mask import run_pseudo_mask
from hmtools.annotation.review import review_queue
from hmtools.annotation.segmenters import default_weight_free, make_segmenter
from hmtools.datasets.synth import generate
from hmtools.masks import (
    ORIGIN_CORRECTED,
    LayerData,
    MaskStore,
    StoreWriter,
    pack_folder,
    rle,
)

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "davis-person"


def _truth(path: Path, layer: str = "gtm") -> dict[str, LayerData]:
    with MaskStore(path) as s:
        return {i.name: s.read_layer(i.video_id, layer) for i in s.videos() if layer in i.layers}


def _with_corrections(pm_store: Path, truth: dict, picks: dict[str, list[int]], out: Path) -> None:
    """``pm_store`` plus a ``gtm`` layer holding the true masks of ``picks`` (the annotator)."""
    with MaskStore(pm_store) as src, StoreWriter(out, overwrite=True) as w:
        for info in src.videos():
            w.add_video(info.video_id, height=info.height, width=info.width,
                        num_frames=info.num_frames, action_type=info.action_type, **info.attrs)  # fmt: skip
            w.write_layer(info.video_id, "pm", src.read_layer(info.video_id, "pm"))
            frames = sorted(picks.get(info.name, []))
            if frames:
                t = truth[info.name]
                idx = np.searchsorted(t.frame_index, frames)
                d = t.take(idx)
                d.origin = np.full(len(d), ORIGIN_CORRECTED, np.uint8)
                w.write_layer(info.video_id, "gtm", d)


def _score(
    store: Path, truth: dict, layer: str, replace: dict | None = None
) -> tuple[float, float]:
    """Mean J over every frame and over the frames with a person (``replace``: frames whose
    true mask is used instead, for the no-propagation baseline)."""
    allj, ath = [], []
    with MaskStore(store) as s:
        for info in s.videos():
            d = s.read_layer(info.video_id, layer)
            t = truth[info.name]
            frames, ia, ib = np.intersect1d(d.frame_index, t.frame_index, return_indices=True)
            j = rle.iou([d.rles[i] for i in ia], [t.rles[i] for i in ib], info.height, info.width)
            if replace and info.name in replace:
                j[np.isin(frames, list(replace[info.name]))] = 1.0
            allj += j.tolist()
            ath += j[t.area[ib] > 0].tolist()
    return float(np.mean(allj)), float(np.mean(ath))


def _uniform(pm_store: Path, share: float) -> dict[str, list[int]]:
    out = {}
    with MaskStore(pm_store) as s:
        for info in s.videos():
            fi = s.frame_index(info.video_id, "pm")
            k = math.ceil(len(fi) * share / 100) if share > 0 else 0
            if k:
                pos = np.unique(np.round(np.linspace(0, len(fi) - 1, k)).astype(int))
                out[info.name] = [int(fi[p]) for p in pos]
    return out


def evaluate_set(
    name: str, frames_root: Path, truth_store: Path, work: Path, budgets, seg_name
) -> dict:
    truth = _truth(truth_store)
    pm = work / "pm.h5"
    t0 = time.perf_counter()
    run_pseudo_mask(frames_root, pm, make_segmenter(seg_name), overwrite=True, progress=False)
    pm_s = time.perf_counter() - t0
    rows = {"pseudo_mask_seconds": pm_s}
    for b in budgets:
        r: dict = {}
        q = review_queue(pm, f"{b}%")
        picks = {v: g["frame"].tolist() for v, g in q.groupby("video")}
        uni = _uniform(pm, b)
        r["frames_corrected"] = int(len(q))
        r["no_propagation"] = _score(pm, truth, "pm", {v: set(f) for v, f in picks.items()})
        for key, chosen in (("queue_propagate", picks), ("uniform_propagate", uni)):
            if not chosen:
                r[key] = _score(pm, truth, "pm")
                continue
            corr = work / f"corr_{key}_{b}.h5"
            _with_corrections(pm, truth, chosen, corr)
            out = work / f"prop_{key}_{b}.h5"
            rep = run_propagate(
                corr, frames_root, out, make_segmenter(seg_name), overwrite=True, progress=False
            )
            r[key] = _score(out, truth, "pm")
            r[f"{key}_seconds_per_frame"] = rep.seconds_per_frame
        rows[str(b)] = r
        print(f"  {name} {b:>3}%: {json.dumps(r)}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic", type=int, default=6, help="synthetic dives (0: none)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--budgets", type=float, nargs="+", default=[0, 2, 5, 10, 20])
    ap.add_argument("--segmenter", default=None, help="default: the weight-free default")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    seg = args.segmenter or default_weight_free()
    work = args.work or Path(tempfile.mkdtemp(prefix="hm-prop-"))
    budgets = [int(b) if float(b).is_integer() else b for b in args.budgets]
    results = {}
    if (DAVIS / "dance-twirl").is_dir():
        d = work / "davis"
        (d / "frames").mkdir(parents=True, exist_ok=True)
        link = d / "frames" / "dance-twirl"
        if not link.exists():
            link.symlink_to(DAVIS / "dance-twirl" / "JPEGImages")
        (d / "gt").mkdir(exist_ok=True)
        gl = d / "gt" / "dance-twirl"
        if not gl.exists():
            gl.symlink_to(DAVIS / "dance-twirl" / "Annotations")
        pack_folder(d / "gt", d / "truth.h5", layout="folder", overwrite=True, progress=False)
        results["davis dance-twirl"] = evaluate_set(
            "davis", d / "frames", d / "truth.h5", d, budgets, seg
        )
    else:
        print(f"(no {DAVIS}: DAVIS part skipped)")
    if args.synthetic:
        s = work / "synth"
        if not (s / "Synth-HM.h5").exists():
            generate(s, args.synthetic, args.seed, height=args.height, progress=False)
        # the folder layout (one folder per clip): synth's frames are name/clip/frames
        flat = s / "flat"
        flat.mkdir(exist_ok=True)
        with MaskStore(s / "Synth-HM.h5") as st, StoreWriter(s / "truth.h5", overwrite=True) as w:
            for info in st.videos():
                nm = f"{info.video_id[0]}_{info.video_id[1]}"
                if not (flat / nm).exists():
                    (flat / nm).symlink_to((s / str(info.attrs["frames_dir"])).resolve())
                w.add_video((nm,), height=info.height, width=info.width)
                w.write_layer((nm,), "gtm", st.read_layer(info.video_id, "gtm"))
        results[f"synthetic seed {args.seed}"] = evaluate_set(
            "synthetic", flat, s / "truth.h5", s, budgets, seg
        )
    print()
    print(f"{'set':<22} {'budget':>6} {'frames':>6} {'queue+prop':>11} {'(a) no prop':>11} "
          f"{'(b) uniform+prop':>16} {'s/frame':>8}   (mean J, all frames / frames with a person)")  # fmt: skip
    for name, rows in results.items():
        for b in budgets:
            r = rows[str(b)]

            def cell(k: str, r: dict = r) -> str:
                return f"{r[k][0]:.3f}/{r[k][1]:.3f}"

            spf = r.get("queue_propagate_seconds_per_frame", float("nan"))
            print(f"{name:<22} {b:>5}% {r['frames_corrected']:>6} {cell('queue_propagate'):>11} "
                  f"{cell('no_propagation'):>11} {cell('uniform_propagate'):>16} {spf:8.3f}")  # fmt: skip
    (work / "propagation.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {work / 'propagation.json'}")


if __name__ == "__main__":
    main()
