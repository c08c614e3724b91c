"""Pseudo-mask quality and speed, measured side by side in one run.

(a) mean IoU against ground truth for every weight-free segmenter candidate (tracker from the
    first frame's true box, as an annotator's first-frame prompt), on the DAVIS dance-twirl
    sequence (../shared/data, skipped if absent) and on synthetic videos (`hmtools synth`).
    With ``--oracle`` also each segmenter given the true box in every frame (no tracker: what the
    segmenter alone can do), and the 1-pixel ceiling: the IoU of the ground truth with itself grown
    or shrunk by one pixel (how much a uniform one-pixel boundary error costs at this size).
    With ``--breakdown`` each tracked IoU is split into the frames with the athlete (IoU there,
    share left empty) and those without it (after the entry: share given a mask);
(b) throughput (frames/s) on rendered dives at 256-px height and at 720p, and the share of wall
    time spent outside the segmenter's forward pass (tracking, mask boxes, bookkeeping), for the
    weight-free default and for a small random-weight SAM built from segment_anything's modules
    (at 256 px); per frame, the forward pass's and the tracker's milliseconds next to what a
    10 % share outside would leave for everything else;
(s) SAM 2 (``--segmenter sam2``; needs the [sam2] extra): frames/s of small random-weight SAM 2
    video predictors built from the sam2 package's tiny config (model sizes 128 and 256 px) on
    synthetic dives at 256-px height, from the first true box, and the share of wall time
    outside the model's forward passes (image encoder, track step, memory encoder): frame
    preparation, state handling, mask resizing and bookkeeping;
(c) real FineDiving frames (../shared/data/real-diving: three dives, no masks; skipped if absent):
    box IoU of each segmenter's masks with boxes drawn by hand around the diver on every fifth
    frame (tests/data/real_diving_boxes.json), from the automatic athlete finder (no prompts,
    as `hmtools pseudo-mask` runs by default) and from the first hand-drawn box as a prompt.

Usage: python benchmarks/pseudo_mask.py [--videos 8] [--height 256] [--parts abcs] [--oracle]
       [--breakdown] [--speed-videos 3]
"""

from __future__ import annotations

import argparse
import glob
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hmtools.annotation.pseudo_mask import find_athlete, segment_video
from hmtools.annotation.segmenters import WEIGHT_FREE, SamSegmenter, small_sam
from hmtools.annotation.trackers import FlowTracker, box_iou, mask_box
from hmtools.datasets.records import load_finediving
from hmtools.datasets.synth import generate
from hmtools.masks import MaskStore

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DAVIS = SHARED_DATA / "davis-person" / "dance-twirl"
REAL = SHARED_DATA / "real-diving"
REAL_BOXES = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_diving_boxes.json"
SEGMENTERS = ("blazepose", "background", "flow-grabcut", "grabcut", "motion")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def sequences(videos: int, height: int) -> dict[str, list]:
    seqs: dict[str, list] = {}
    if DAVIS.exists():
        fs = sorted(glob.glob(str(DAVIS / "JPEGImages" / "*.jpg")))
        gs = sorted(glob.glob(str(DAVIS / "Annotations" / "*.png")))
        seqs["davis dance-twirl"] = [
            ([cv2.imread(f) for f in fs], [cv2.imread(g, 0) > 127 for g in gs])
        ]
    root = Path(tempfile.mkdtemp(prefix="hm-pm-bench-"))
    generate(root, videos, seed=11, height=height, progress=False)
    syn = []
    with MaskStore(root / "Synth-HM.h5") as st:
        for s in load_finediving(root / "Annotations", root / "frames"):
            frames = [cv2.imread(str(p)) for _, p in s.frame_files()]
            syn.append((frames, list(st.read_masks(s.id, "gtm")[1] > 0)))
    seqs[f"synthetic ({videos} videos, {height} px)"] = syn
    return seqs


class Spans:
    """Records when wrapped calls run, from any thread; :meth:`busy` is their union."""

    def __init__(self):
        self.spans: list[tuple[float, float]] = []

    def _timed(self, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        self.spans.append((t, time.perf_counter()))
        return out

    def busy(self) -> float:
        """Seconds during which at least one wrapped call ran (union of the spans)."""
        total, end = 0.0, -np.inf
        for a, b in sorted(self.spans):
            if b > end:
                total += b - max(a, end)
                end = b
        return total


class Timed(Spans):
    """Wraps a segmenter and records when its forward passes (encode + segment) run, from any
    thread (``segment_video`` may encode the next chunk in a worker thread)."""

    def __init__(self, seg):
        super().__init__()
        self.seg, self.name = seg, seg.name
        self.overlap_encode = getattr(seg, "overlap_encode", False)

    def begin_video(self, frames):
        if hasattr(self.seg, "begin_video"):
            self._timed(self.seg.begin_video, frames)

    def encode(self, frames):
        return self._timed(self.seg.encode, frames)

    def segment(self, state, box, prev):
        return self._timed(self.seg.segment, state, box, prev)


class TimedTracker(Spans):
    """Wraps a tracker and records when it works (init, update, correct)."""

    def __init__(self, tracker):
        super().__init__()
        self.tracker = tracker

    def init(self, frame, box):
        return self._timed(self.tracker.init, frame, box)

    def update(self, frame):
        return self._timed(self.tracker.update, frame)

    def correct(self, mask, box=None):
        return self._timed(self.tracker.correct, mask, box)


@dataclass
class Run:
    """One tracked video: masks from the first frame with the athlete on, and the times."""

    masks: np.ndarray
    gt: list
    wall: float
    forward: float  # seconds inside the segmenter's forward passes (union)
    tracking: float  # seconds inside the tracker

    @property
    def frames(self) -> int:
        return len(self.masks)

    @property
    def mean_iou(self) -> float:
        return float(np.mean([iou(m, g) for m, g in zip(self.masks, self.gt, strict=True)]))


def run(seg, frames, gt) -> tuple[float, float, float]:
    """(mean IoU, frames/s, share of the wall time outside the forward pass) of one video."""
    r = _run(seg, frames, gt)
    return r.mean_iou, r.frames / r.wall, 1 - r.forward / r.wall


def _run(seg, frames, gt) -> Run:
    first = next(i for i, g in enumerate(gt) if g.any())
    timed, tracker = Timed(seg), TimedTracker(FlowTracker())
    t0 = time.perf_counter()
    masks, _ = segment_video(frames[first:], timed, tracker, mask_box(gt[first]))
    wall = time.perf_counter() - t0
    return Run(masks, gt[first:], wall, timed.busy(), tracker.busy())


def run_many(seg, videos) -> tuple[float, float, float, float]:
    """Over several videos together (one video's share depends on its trajectory: frames where
    the tracker is lost cost searches): (frames/s, share of the wall time outside the forward
    pass, then per frame: ms in the forward pass, ms in the tracker)."""
    runs = [_run(seg, f, g) for f, g in videos]
    n = sum(r.frames for r in runs)
    wall, fwd, trk = (sum(getattr(r, k) for r in runs) for k in ("wall", "forward", "tracking"))
    return n / wall, 1 - fwd / wall, 1000 * fwd / n, 1000 * trk / n


def breakdown(runs: list[Run]) -> str:
    """Where a tracked mean IoU goes: frames with the athlete (mean IoU there, share given an
    empty mask) and frames without (after the entry: share given a mask, which scores 0)."""
    with_iou, empty, without, masked = [], 0, 0, 0
    for r in runs:
        for m, g in zip(r.masks, r.gt, strict=True):
            if g.any():
                with_iou.append(iou(m, g))
                empty += not m.any()
            else:
                without += 1
                masked += bool(m.any())
    n = len(with_iou)
    return (
        f"athlete: {np.mean(with_iou):.3f}, {empty / max(1, n):.0%} empty; "
        f"none: {masked / max(1, without):.0%} of {without / max(1, n + without):.0%} masked"
    )


def run_oracle(seg, frames, gt) -> float:
    """Mean IoU over the frames with a non-empty ground truth, the true box as the prompt."""
    if hasattr(seg, "begin_video"):
        seg.begin_video(frames)
    states, prev, ious = seg.encode(frames), None, []
    for state, g in zip(states, gt, strict=True):
        if g.any():
            m, _ = seg.segment(state, mask_box(g), prev)
            prev = (state, m)
            ious.append(iou(m > 0, g))
    return float(np.mean(ious))


def one_pixel_ceiling(videos: list) -> tuple[float, float]:
    """Mean IoU of the ground truth with itself dilated / eroded by one pixel (3x3)."""
    k = np.ones((3, 3), np.uint8)
    grown, shrunk = [], []
    for _, gt in videos:
        for g in gt:
            if g.any():
                g8 = g.astype(np.uint8)
                grown.append(iou(cv2.dilate(g8, k) > 0, g))
                shrunk.append(iou(cv2.erode(g8, k) > 0, g))
    return float(np.mean(grown)), float(np.mean(shrunk))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--parts", default="abcs", help="which parts to run: any of a, b, c, s")
    ap.add_argument("--oracle", action="store_true", help="(a) also with the true box per frame")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="(a) also split each tracked IoU into frames with and without the athlete",
    )
    ap.add_argument("--speed-videos", type=int, default=3, help="(b) dives per size")
    args = ap.parse_args()
    if "a" in args.parts:
        quality(args.videos, args.height, args.oracle, args.breakdown)
    if "b" in args.parts:
        speed(n_videos=args.speed_videos)
    if "s" in args.parts:
        sam2_speed(n_videos=args.speed_videos)
    if "c" in args.parts:
        real_diving()


def sam2_speed(n_videos: int = 3, repeats: int = 3) -> None:
    print("\n(s) SAM 2 video predictor (small, random weights): throughput on the CPU")
    try:
        from hmtools.annotation.sam2_video import Sam2VideoSegmenter, small_sam2
    except ImportError as e:
        print(f"    unavailable: {e}")
        return
    root = Path(tempfile.mkdtemp(prefix="hm-pm-sam2-"))
    generate(root, n_videos, seed=5, height=256, progress=False)
    videos = []
    with MaskStore(root / "Synth-HM.h5") as st:
        for s in load_finediving(root / "Annotations", root / "frames"):
            frames = [cv2.imread(str(p)) for _, p in s.frame_files()]
            videos.append((frames, st.read_masks(s.id, "gtm")[1] > 0))
    for size in (128, 256):
        pred = small_sam2(size)
        spans = Spans()
        for attr in ("forward_image", "track_step", "_run_memory_encoder"):
            fn = getattr(pred, attr)
            setattr(pred, attr, lambda *a, _fn=fn, _s=spans, **k: _s._timed(lambda: _fn(*a, **k)))
        seg = Sam2VideoSegmenter(pred)
        res = []
        for _ in range(repeats):
            spans.spans.clear()
            t0, n = time.perf_counter(), 0
            for frames, gt in videos:
                seg.segment_clip(frames, mask_box(gt[0].astype(np.uint8)), 0)
                n += len(frames)
            wall = time.perf_counter() - t0
            res.append((n / wall, 1 - spans.busy() / wall))
        fps, outside = np.median(np.array(res), axis=0)
        print(
            f"    model {size:>3} px, frames 256 px high: {fps:6.1f} frames/s   outside the "
            f"forward passes {outside:6.1%}   (state window: {seg.peak_state_frames} frames)"
        )


def _segmenters():
    """(name, segmenter) for every weight-free candidate that can be built here."""
    for name in SEGMENTERS:
        try:
            seg = WEIGHT_FREE[name]()
        except Exception as e:  # the BlazePose model may not be installed
            print(f"    {name:<14} unavailable: {e}")
            continue
        yield name, seg


def quality(
    n_videos: int, height: int, oracle: bool = False, breakdown_lines: bool = False
) -> None:
    seqs = sequences(n_videos, height)
    print("(a) mean IoU vs ground truth (tracker from the first frame's true box)")
    print(f"    {'segmenter':<14}" + "".join(f"{k:>34}" for k in seqs))
    for name, seg in _segmenters():
        cells, parts = [], []
        for videos in seqs.values():
            res = [_run(seg, f, g) for f, g in videos]
            fps = np.mean([r.frames / r.wall for r in res])
            cells.append(f"{np.mean([r.mean_iou for r in res]):.3f} ({fps:.1f} fps)")
            if breakdown_lines:
                parts.append(breakdown(res))
        print(f"    {name:<14}" + "".join(f"{c:>34}" for c in cells))
        if breakdown_lines:
            for k, p in zip(seqs, parts, strict=True):
                print(f"    {'':<16}{k}: {p}")
        if oracle:
            cells = [f"{np.mean([run_oracle(seg, f, g) for f, g in v]):.3f}" for v in seqs.values()]
            print(f"    {'  true boxes':<14}" + "".join(f"{c:>34}" for c in cells))
    if oracle:
        cells = ["{:.3f} / {:.3f}".format(*one_pixel_ceiling(v)) for v in seqs.values()]
        print(f"    {'GT +/-1 px':<14}" + "".join(f"{c:>34}" for c in cells))


def speed(repeats: int = 3, n_videos: int = 3) -> None:
    print("\n(b) throughput and share of wall time outside the segmenter's forward pass")
    print(
        f"    ({n_videos} synthetic dives rendered at each size, together; tracker from the first"
        f" true box; median of {repeats} runs, with inline and threaded SAM runs alternating)"
    )
    for label, h in (("256 px", 256), ("720p", 720)):
        root = Path(tempfile.mkdtemp(prefix=f"hm-pm-speed{h}-"))
        generate(root, n_videos, seed=5, height=h, progress=False)
        videos = []
        with MaskStore(root / "Synth-HM.h5") as st:
            for s in load_finediving(root / "Annotations", root / "frames"):
                frames = [cv2.imread(str(p)) for _, p in s.frame_files()]
                videos.append((frames, list(st.read_masks(s.id, "gtm")[1] > 0)))
        cands = [
            (
                "weight-free default",
                WEIGHT_FREE["blazepose"]() if _has_bp() else WEIGHT_FREE["flow-grabcut"](),
            )
        ]
        if label == "256 px":
            cands.append(("small random SAM", SamSegmenter(small_sam(), "cpu", batch_size=4)))
        for name, seg in cands:
            default = getattr(seg, "overlap_encode", None)
            modes = (True, False) if default is not None else (False,)  # SAM: both, alternating
            runs: dict[bool, list] = {m: [] for m in modes}
            for _ in range(repeats):
                for mode in modes:
                    seg.overlap_encode = mode
                    runs[mode].append(run_many(seg, videos))
            if default is not None:
                seg.overlap_encode = default
            for mode in modes:
                fps, outside, fwd_ms, trk_ms = np.median(np.array(runs[mode]), axis=0)
                tag = (
                    name if default is None else f"{name}, {'encode thread' if mode else 'inline'}"
                )
                # per frame: the forward pass, the tracker, and what a 10 % share would allow
                line = (
                    f"    {label:<7} {tag:<32} {fps:7.1f} frames/s   outside the forward pass "
                    f"{outside:6.1%}   per frame: forward {fwd_ms:5.1f} ms, tracker "
                    f"{trk_ms:4.1f} ms, 10 % budget {fwd_ms / 9:4.1f} ms"
                )
                if default is not None and not mode:
                    fps_t = np.median(np.array(runs[True])[:, 0])
                    line += f"   (encode thread: {fps_t / fps:.2f}x)"
                if mode == default:
                    line += "   <- the default here"
                print(line)


def real_diving() -> None:
    print("\n(c) real FineDiving frames: box IoU of the masks with hand-drawn diver boxes")
    if not REAL.exists():
        print(f"    skipped: {REAL} not present")
        return
    dives = json.loads(REAL_BOXES.read_text())["dives"]
    clips = {
        name: [
            cv2.imread(str(REAL / f"finediv{i:05d}.jpg")) for i in range(d["first"], d["last"] + 1)
        ]
        for name, d in dives.items()
    }
    n = sum(len(d["boxes"]) for d in dives.values())
    print(f"    ({len(dives)} dives, {n} hand-boxed frames; mean IoU, frames with IoU >= 0.5)")
    for name, seg in _segmenters():
        cells = []
        for start in ("finder", "first box"):
            ious = []
            for dive, d in dives.items():
                frames = clips[dive]
                box = (
                    find_athlete(frames, segmenter=seg)
                    if start == "finder"
                    else tuple(d["boxes"]["0"])
                )
                masks, _ = segment_video(frames, seg, FlowTracker(), box)
                for t, truth in d["boxes"].items():
                    mb = mask_box(masks[int(t)])
                    ious.append(0.0 if mb is None else box_iou(mb, tuple(truth)))
            good = sum(v >= 0.5 for v in ious)
            cells.append(f"{start}: {np.mean(ious):.3f} ({good}/{len(ious)})")
        print(f"    {name:<14}" + "".join(f"{c:>30}" for c in cells))


def _has_bp() -> bool:
    from hmtools.annotation.blazepose import model_path

    return model_path() is not None


if __name__ == "__main__":
    main()
