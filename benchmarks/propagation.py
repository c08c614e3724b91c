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

``--ceiling P`` adds, on DAVIS at P % evenly spaced corrections, where the weight-free engine
tops out: (i) the true mask carried k = 1, 2, 3, 5 frames by the DIS flow that ``propagate``
uses, chained step by step and as one direct flow, next to not moving it; (ii) the ingredients
``propagate`` combines, each alone (forward carry, backward carry, the pseudo mask), the best of
them chosen per frame by an oracle that knows the truth, and ``propagate``'s own combination;
(iii) the best of 36 other combination rules (weight of the pseudo mask, distance exponent,
threshold) -- a bound on what tuning the combination could add.

Usage: python benchmarks/propagation.py [--synthetic 6] [--seed 11] [--height 256]
       [--budgets 0 2 5 10 20] [--segmenter blazepose] [--ceiling 10] [--work DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hmtools.annotation.propagate import Flow, _iou, carry_gap, propagate_video, run_propagate
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


def ceiling(seq: Path, pm_store: Path, share: float, seg_name: str) -> dict:
    """The weight-free engine's ceiling on one real sequence (module doc, ``--ceiling``)."""
    frames = [cv2.imread(str(p)) for p in sorted((seq / "JPEGImages").glob("*.jpg"))]
    gt = [cv2.imread(str(p), 0) > 127 for p in sorted((seq / "Annotations").glob("*.png"))]
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    n = len(frames)
    with MaskStore(pm_store) as s:
        info = next(iter(s.videos()))
        pm = s.read_layer(info.video_id, "pm").decode(info.height, info.width) > 0
    flow = Flow()
    out: dict = {"flow": {}}
    # (i) the true mask carried k frames: chained (as propagate does) and in one direct flow
    for k in (1, 2, 3, 5):
        chained, direct, still = [], [], []
        for s0 in range(0, n - k, 5):
            m = gt[s0].astype(np.float32)
            for t in range(s0 + 1, s0 + k + 1):
                m = flow.carry(m, gray[t - 1], gray[t])
            chained.append(_iou(m >= 0.5, gt[s0 + k]))
            d = flow.carry(gt[s0].astype(np.float32), gray[s0], gray[s0 + k])
            direct.append(_iou(d >= 0.5, gt[s0 + k]))
            still.append(_iou(gt[s0], gt[s0 + k]))
        out["flow"][k] = {
            "chained": float(np.mean(chained)),
            "direct": float(np.mean(direct)),
            "not_moved": float(np.mean(still)),
        }
    # (ii) the ingredients at evenly spaced corrections, alone and with an oracle's choice
    k = math.ceil(n * share / 100)
    anchors = [int(a) for a in np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))]
    seg = make_segmenter(seg_name)
    gaps = [(-1, anchors[0]), *zip(anchors[:-1], anchors[1:], strict=True), (anchors[-1], n)]
    corr = {a: gt[a].astype(np.uint8) for a in anchors}
    carried: dict[int, tuple] = {}
    for left, right in gaps:
        inside, fwd, bwd = carry_gap(frames, gray, corr, left, right, seg, flow)
        for t in inside:
            carried[t] = (fwd.get(t), bwd.get(t))
    parts: dict[str, list[float]] = {"forward": [], "backward": [], "pseudo_mask": [], "oracle": []}
    for t, (f, b) in carried.items():
        js = [_iou(pm[t], gt[t])]
        parts["pseudo_mask"].append(js[0])
        for name, c in (("forward", f), ("backward", b)):
            if c is not None:
                js.append(_iou(c.soft >= 128, gt[t]))
                parts[name].append(js[-1])
        parts["oracle"].append(max(js))
    prior = {t: pm[t].astype(np.uint8) for t in range(n)}
    masks, _ = propagate_video(frames, corr, seg, prior=prior)
    # every frame counted, the corrected ones as 1 (as the budgets' J)
    out["ingredients"] = {
        name: (float(np.sum(v)) + len(anchors)) / n if name == "oracle" else float(np.mean(v))
        for name, v in parts.items()
    }
    out["ingredients"]["propagate"] = float(np.mean([_iou(masks[t] > 0, gt[t]) for t in range(n)]))
    # (iii) other combination rules over the same carried masks
    best = (0.0, None)
    for pw, p, thr in itertools.product((0.0, 0.1, 0.2, 0.4), (0.5, 1.0, 2.0), (0.4, 0.45, 0.5)):
        js = []
        for t in range(n):
            if t in corr:
                js.append(1.0)
                continue
            cs = [c for c in carried[t] if c is not None]
            ws = [1.0 / c.distance**p for c in cs]
            soft = sum(w * c.soft.astype(np.float32) / 255 for w, c in zip(ws, cs, strict=True))
            soft = (soft + pw * pm[t]) / (sum(ws) + pw)
            js.append(_iou(soft >= thr, gt[t]))
        if np.mean(js) > best[0]:
            best = (float(np.mean(js)), {"prior_weight": pw, "distance_power": p, "threshold": thr})
    out["best_rule"] = {"J": best[0], **(best[1] or {})}
    out["budget"], out["corrected"] = share, len(anchors)
    return out


def print_ceiling(c: dict) -> None:
    print(
        f"\nceiling on DAVIS dance-twirl, {c['budget']:g} % evenly spaced ({c['corrected']} frames)"
    )
    print("  (i) true mask carried k frames (J):  k  chained  direct  not moved")
    for k, r in c["flow"].items():
        print(f"{'':39}{k:>2}  {r['chained']:7.3f} {r['direct']:7.3f} {r['not_moved']:9.3f}")
    i = c["ingredients"]
    print(f"  (ii) alone: forward {i['forward']:.3f}, backward {i['backward']:.3f}, pseudo mask "
          f"{i['pseudo_mask']:.3f} (propagated frames); per-frame oracle choice {i['oracle']:.3f}, "
          f"propagate {i['propagate']:.3f} (all frames)")  # fmt: skip
    b = c["best_rule"]
    print(
        f"  (iii) best of 36 combination rules: {b['J']:.3f} (pseudo-mask weight "
        f"{b['prior_weight']}, 1/distance^{b['distance_power']}, threshold {b['threshold']})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic", type=int, default=6, help="synthetic dives (0: none)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--budgets", type=float, nargs="+", default=[0, 2, 5, 10, 20])
    ap.add_argument("--segmenter", default=None, help="default: the weight-free default")
    ap.add_argument("--ceiling", type=float, default=None, help="DAVIS ceiling at this budget")
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
        if args.ceiling is not None:
            results["davis ceiling"] = ceiling(
                DAVIS / "dance-twirl", d / "pm.h5", args.ceiling, seg
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
        if name == "davis ceiling":
            continue
        for b in budgets:
            r = rows[str(b)]

            def cell(k: str, r: dict = r) -> str:
                return f"{r[k][0]:.3f}/{r[k][1]:.3f}"

            spf = r.get("queue_propagate_seconds_per_frame", float("nan"))
            print(f"{name:<22} {b:>5}% {r['frames_corrected']:>6} {cell('queue_propagate'):>11} "
                  f"{cell('no_propagation'):>11} {cell('uniform_propagate'):>16} {spf:8.3f}")  # fmt: skip
    if "davis ceiling" in results:
        print_ceiling(results["davis ceiling"])
    (work / "propagation.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {work / 'propagation.json'}")


if __name__ == "__main__":
    main()
