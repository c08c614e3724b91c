"""``hmtools propagate``: carry the masks of corrected frames to the frames between them.

Per video with corrected masks (the ``corrected`` layer, ``gtm`` by default), every other frame
gets a mask carried from the nearest correction on each side:

1. **Carry.** From a corrected frame, step by step towards the next correction: the previous
   soft mask is warped into the frame by dense optical flow (OpenCV's DIS, medium preset, from
   the frame to its neighbour), then the segmenter is re-prompted with the carried mask -- its
   box, and for SAM points sampled inside it -- and the two are blended,
   ``m = (warped + w * segmenter) / (1 + w)`` (``segmenter_weight`` w = 0.35), which pulls the
   mask back onto the person where the flow drifts. The same runs backward from the next
   correction.
2. **Combine.** The two directions' soft masks are averaged with weights ``1 / distance`` to
   their correction, together with the frame's earlier mask in the ``into`` layer (the pseudo
   mask) at weight ``prior_weight`` = 0.1, and thresholded at 0.5: near a correction the carried
   masks decide, ten frames or more from one the earlier mask weighs as much (without it, a
   video with one or two corrections ended worse than its pseudo masks). Before the first and
   after the last correction only one direction exists.
3. **Score.** Where both directions exist, the IoU between them (they disagree where the
   carrying went wrong: what ``review-queue`` looks for next); with one direction, the IoU of the
   carried mask with the segmenter's.

Measured on DAVIS dance-twirl (``benchmarks/propagation.py``): one warp step keeps 0.91 IoU of
the true mask on that fast sequence (consecutive true masks overlap by 0.76), so plain flow
falls to ~0.83 at 10 % corrected frames; the re-prompted segmenter brings it to ~0.88.

With SAM 2 (``--segmenter sam2``) the corrected masks are instead SAM 2's conditioning frames
and its video predictor carries them (``hmtools.annotation.sam2_video``); the score is its
predicted IoU times its object score; the earlier mask is not mixed in.

The result is a complete ``into`` layer (``pm`` by default) for that video: corrected frames hold
exactly the corrected masks (their origin kept), the others the propagated ones with origin
``propagated`` and the score above. Videos without corrections keep what they had; every other
layer is copied unchanged. Conventions as ``pseudo-mask``: shards, one committed part per video
(``--resume``), broken videos logged to ``<out>.failures.csv`` and the run goes on.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from hmtools.annotation.pseudo_mask import (
    VideoJob,
    default_max_video_bytes,
    list_videos,
    parse_shard,
    shard_path,
)
from hmtools.annotation.segmenters import Segmenter
from hmtools.errors import InputError
from hmtools.masks import (
    LAYER_GTM,
    LAYER_PM,
    ORIGIN_PROPAGATED,
    LayerData,
    MaskStore,
    StoreWriter,
)
from hmtools.progress import progress_bar

log = logging.getLogger(__name__)

SEGMENTER_WEIGHT = 0.35
PRIOR_WEIGHT = 0.1


class Flow:
    """Dense optical flow from one gray frame to another, OpenCV's DIS (medium preset) at full
    resolution (finest scale 0: on a textured square moving 2 px a frame the carried mask kept
    0.96 IoU over 16 frames, against 0.87 at DIS's default half resolution; DAVIS dance-twirl,
    flow alone at 10 %: 0.844 against 0.829), computed on the region around the mask only."""

    def __init__(
        self, margin: float = 0.5, min_margin: int = 32, consistency: bool = False
    ) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._dis.setFinestScale(0)
        self.margin, self.min_margin, self.consistency = margin, min_margin, consistency
        self.tol_px, self.tol_rel, self.inconsistent_keep = 0.5, 0.05, 0.0

    def region(self, mask: np.ndarray) -> tuple[int, int, int, int] | None:
        """``(x0, y0, x1, y1)``: the mask's box grown by ``margin`` of its size (at least
        ``min_margin`` px) on every side -- where the athlete can be one frame later."""
        box = _box(mask >= 0.5)
        if box is None:
            return None
        h, w = mask.shape[:2]
        x, y, bw, bh = box
        g = max(self.min_margin, self.margin * max(bw, bh))
        return (
            max(0, int(x - g)),
            max(0, int(y - g)),
            min(w, int(np.ceil(x + bw + g))),
            min(h, int(np.ceil(y + bh + g))),
        )

    def carry(self, mask: np.ndarray, gray_from: np.ndarray, gray_to: np.ndarray) -> np.ndarray:
        """The soft ``mask`` of frame ``gray_from`` carried into frame ``gray_to`` (sampled at
        ``x + flow(to -> from)``)."""
        r = self.region(mask)
        out = np.zeros_like(mask, np.float32)
        if r is None:
            return out
        x0, y0, x1, y1 = r
        if x1 - x0 < 8 or y1 - y0 < 8:
            return out
        a = np.ascontiguousarray(gray_to[y0:y1, x0:x1])
        b = np.ascontiguousarray(gray_from[y0:y1, x0:x1])
        back = self._dis.calc(a, b, None)  # to -> from: where each pixel came from
        yy, xx = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
        mx, my = xx + back[..., 0], yy + back[..., 1]
        carried = cv2.remap(
            np.ascontiguousarray(mask[y0:y1, x0:x1], np.float32),
            mx,
            my,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        if self.consistency:
            # forward-backward check (off by default): a pixel whose way back does not lead
            # forward to it again was not visible in the previous frame (uncovered behind a
            # moving body), so it is background, not the motion DIS smears over it from the
            # body beside it. On a textured square moving 2 px a frame it keeps the carried
            # mask at 0.89 IoU after 15 steps (0.55 without); on real footage (DAVIS
            # dance-twirl, motion blur) the flow on the body itself fails the check and the
            # masks erode: 10 % corrections, flow only, 0.50-0.79 with tolerances 0.5-3 px
            # against 0.84 without
            fwd = self._dis.calc(b, a, None)
            fx = cv2.remap(fwd[..., 0], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            fy = cv2.remap(fwd[..., 1], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            err = np.hypot(back[..., 0] + fx, back[..., 1] + fy)
            tol = self.tol_px + self.tol_rel * np.hypot(back[..., 0], back[..., 1])
            carried[err > tol] *= self.inconsistent_keep
        out[y0:y1, x0:x1] = carried
        return out


def _box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return (
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.count_nonzero(a | b)
    return 1.0 if u == 0 else np.count_nonzero(a & b) / u


@dataclass
class _Carried:
    soft: np.ndarray  # uint8 0..255
    distance: int
    seg: np.ndarray | None  # the segmenter's mask at this frame (bool), if any


def _carry(
    frames_gray: list[np.ndarray],
    states: dict[int, object],
    start: int,
    positions: list[int],
    seed: np.ndarray,
    flow: Flow,
    segmenter: Segmenter | None,
    weight: float,
) -> dict[int, _Carried]:
    """Carry ``seed`` (the mask at ``start``) through ``positions`` in order (each next to the
    previous one), re-prompting the segmenter at every step."""
    out: dict[int, _Carried] = {}
    m = seed.astype(np.float32)
    prev = start
    for t in positions:
        warped = flow.carry(m, frames_gray[prev], frames_gray[t])
        hard = warped >= 0.5
        seg = None
        box = _box(hard)
        if segmenter is not None and box is not None:
            sm, _ = segmenter.segment(states[t], box, (None, hard.astype(np.uint8)))
            seg = sm.astype(bool)
            m = (warped + weight * seg.astype(np.float32)) / (1.0 + weight)
        else:
            m = warped
        out[t] = _Carried(np.round(m * 255).astype(np.uint8), abs(t - start), seg)
        prev = t
    return out


def carry_gap(
    frames: list[np.ndarray],
    gray: list[np.ndarray],
    corrected: dict[int, np.ndarray],
    left: int,
    right: int,
    segmenter: Segmenter | None,
    flow: Flow,
    weight: float = SEGMENTER_WEIGHT,
) -> tuple[list[int], dict[int, _Carried], dict[int, _Carried]]:
    """The positions strictly between corrections ``left`` and ``right`` (-1 / n: none on that
    side) and the masks carried into them forward from ``left`` and backward from ``right``."""
    inside = list(range(left + 1, right))
    if not inside:
        return inside, {}, {}
    states: dict[int, object] = {}
    if segmenter is not None:
        states = dict(zip(inside, segmenter.encode([frames[t] for t in inside]), strict=True))
    fwd = (
        _carry(gray, states, left, inside, corrected[left] != 0, flow, segmenter, weight)
        if left >= 0
        else {}
    )
    bwd = (
        _carry(gray, states, right, inside[::-1], corrected[right] != 0, flow, segmenter, weight)
        if right < len(frames)
        else {}
    )
    return inside, fwd, bwd


def propagate_video(
    frames: list[np.ndarray],
    corrected: dict[int, np.ndarray],
    segmenter: Segmenter | None = None,
    *,
    weight: float = SEGMENTER_WEIGHT,
    flow: Flow | None = None,
    prior: dict[int, np.ndarray] | None = None,
    prior_weight: float = PRIOR_WEIGHT,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``uint8 [n, H, W]`` and scores ``float32 [n]`` for every frame of a video from the
    corrected masks ``{position: mask}`` (see module doc). Corrected positions keep their mask
    exactly (score NaN)."""
    if not corrected:
        raise InputError("no corrected frame to propagate from")
    n = len(frames)
    h, w = frames[0].shape[:2]
    anchors = sorted(corrected)
    if anchors[0] < 0 or anchors[-1] >= n:
        raise InputError(f"corrected frame position {anchors[-1]} outside the {n} frames")
    if hasattr(segmenter, "propagate_masks"):  # a video engine (SAM 2): corrections condition it
        masks, scores = segmenter.propagate_masks(frames, corrected)  # type: ignore[union-attr]
        masks = masks.astype(np.uint8, copy=True)
        scores = scores.astype(np.float32, copy=True)
        for a in anchors:
            masks[a], scores[a] = corrected[a] != 0, np.nan
        return masks, scores
    flow = flow or Flow()
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 else f for f in frames]
    masks = np.zeros((n, h, w), np.uint8)
    scores = np.full(n, np.nan, np.float32)
    for a in anchors:
        masks[a] = corrected[a] != 0
    gaps = (
        [(-1, anchors[0])] + list(zip(anchors[:-1], anchors[1:], strict=True)) + [(anchors[-1], n)]
    )
    for left, right in gaps:
        inside, fwd, bwd = carry_gap(frames, gray, corrected, left, right, segmenter, flow, weight)
        for t in inside:
            parts = [c for c in (fwd.get(t), bwd.get(t)) if c is not None]
            wsum = sum(1.0 / c.distance for c in parts)
            soft = sum(c.soft.astype(np.float32) / c.distance for c in parts)
            if prior is not None and t in prior and prior_weight > 0:
                soft = soft + prior_weight * 255.0 * (prior[t] != 0)
                wsum += prior_weight
            masks[t] = soft / wsum >= 127.5
            if len(parts) == 2:
                scores[t] = _iou(parts[0].soft >= 128, parts[1].soft >= 128)
            elif parts[0].seg is not None:
                scores[t] = _iou(parts[0].soft >= 128, parts[0].seg)
            else:  # one direction, no segmenter to check it: trust decays with the distance
                scores[t] = float(np.exp(-parts[0].distance / 10.0))
    return masks, scores


@dataclass
class PropagateReport:
    out: Path
    videos_propagated: int = 0
    videos_copied: int = 0
    videos_skipped: int = 0  # done by an earlier run (--resume)
    frames: int = 0
    propagated_frames: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / self.propagated_frames if self.propagated_frames else float("nan")


def _corrected_positions(
    job_frames: list[int], data: LayerData, info_h: int, info_w: int, video: str, layer: str
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """``{position: mask}`` of the corrected frames and their origins by position."""
    pos = {f: i for i, f in enumerate(job_frames)}
    missing = [int(f) for f in data.frame_index if int(f) not in pos]
    if missing:
        raise InputError(
            f"video {video}: {layer!r} has masks for frames {missing[:5]} that the frames "
            "folder does not have"
        )
    masks = data.decode(info_h, info_w)
    origin = np.full(len(job_frames), ORIGIN_PROPAGATED, np.uint8)
    out = {}
    for f, m, o in zip(data.frame_index, masks, data.origin, strict=True):
        out[pos[int(f)]] = m
        origin[pos[int(f)]] = o
    return out, origin


def run_propagate(
    store_path: str | os.PathLike,
    frames_root: str | os.PathLike,
    out: str | os.PathLike,
    segmenter: Segmenter | None,
    *,
    dataset: str = "folder",
    annotations: str | os.PathLike | None = None,
    corrected: str = LAYER_GTM,
    into: str = LAYER_PM,
    shard: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    max_video_bytes: float | None = None,
    weight: float = SEGMENTER_WEIGHT,
    prior_weight: float = PRIOR_WEIGHT,
) -> PropagateReport:
    """Propagate the ``corrected`` layer of every video of ``store_path`` (this shard's) into a
    complete ``into`` layer, written with every other layer to ``out`` (see module doc)."""
    store_path = Path(store_path)
    if corrected == into:
        raise InputError(f"--corrected and --into are both {corrected!r}")
    k, n = parse_shard(shard)
    out = shard_path(Path(out), k, n)
    in_place = out.resolve() == store_path.resolve()
    if out.exists() and not (resume or overwrite):
        raise InputError(f"{out} exists: --resume to finish it, --overwrite to redo it")
    parts = out.with_name(out.name + ".propagate.parts")
    if overwrite and parts.exists() and not resume:
        shutil.rmtree(parts)
    if max_video_bytes is None:
        max_video_bytes = default_max_video_bytes()
    with MaskStore(store_path) as store:
        infos = [i for j, i in enumerate(store.videos()) if j % n == k]
        if not any(corrected in i.layers for i in store.videos()):
            raise InputError(
                f"{store_path}: no video has a {corrected!r} layer to propagate (it has: "
                f"{', '.join(store.layer_names()) or 'none'})"
            )
        todo = [i for i in infos if corrected in i.layers]
        jobs: dict = {}
        if todo:
            jobs = {j.video_id: j for j in list_videos(frames_root, dataset, annotations)}
        parts.mkdir(parents=True, exist_ok=True)
        rep = PropagateReport(out)
        t_start = time.perf_counter()
        flow = Flow()
        bar = progress_bar(
            todo,
            desc=f"propagate {k}/{n}" if n > 1 else "propagate",
            unit="video",
            disable=not progress,
        )
        for info in bar:
            part = parts / f"{info.key}.h5"
            if part.exists() and resume:
                rep.videos_skipped += 1
                continue
            try:
                job: VideoJob | None = jobs.get(info.video_id)
                if job is None:
                    raise InputError(f"no frames for it under {frames_root} (--dataset {dataset})")
                numbers, frames = job.read(max_video_bytes)
                if frames[0].shape[:2] != (info.height, info.width):
                    raise InputError(
                        f"frames are {frames[0].shape[1]}x{frames[0].shape[0]}, the store's "
                        f"masks {info.width}x{info.height}"
                    )
                data = store.read_layer(info.video_id, corrected)
                fixed, origin = _corrected_positions(
                    numbers, data, info.height, info.width, info.name, corrected
                )
                prior = None
                if into in info.layers and prior_weight > 0:
                    pd_ = store.read_layer(info.video_id, into)
                    pos = {f: i for i, f in enumerate(numbers)}
                    have = [
                        (pos[int(f)], j) for j, f in enumerate(pd_.frame_index) if int(f) in pos
                    ]
                    dec = pd_.decode(info.height, info.width)
                    prior = {p: dec[j] for p, j in have}
                t0 = time.perf_counter()
                masks, scores = propagate_video(
                    frames, fixed, segmenter, weight=weight, flow=flow, prior=prior,
                    prior_weight=prior_weight,
                )  # fmt: skip
                rep.seconds += time.perf_counter() - t0
                for p, f in enumerate(numbers):  # corrected frames keep their own score
                    if p in fixed:
                        scores[p] = data.score[int(np.searchsorted(data.frame_index, f))]
            except InputError as e:
                rep.failures.append((info.name, str(e)))
                log.error("video %s failed: %s", info.name, e)
                continue
            with StoreWriter(part, overwrite=True) as w:
                w.add_video(info.video_id, height=info.height, width=info.width)
                w.write_layer(
                    info.video_id, into, LayerData.from_masks(numbers, masks, scores, origin)
                )
            rep.videos_propagated += 1
            rep.frames += len(numbers)
            rep.propagated_frames += len(numbers) - len(fixed)
        fail_path = out.with_name(out.stem + ".failures.csv")
        if rep.failures:
            with open(fail_path, "w", newline="") as fh:
                wcsv = csv.writer(fh)
                wcsv.writerow(["video", "reason"])
                wcsv.writerows(rep.failures)
        done = {p.stem for p in parts.glob("*.h5")}
        if todo and not done:
            raise InputError(f"{store_path}: no video could be propagated (see {fail_path})")
        writer = StoreWriter(out, name=store.name, overwrite=overwrite or in_place or resume)
        writer.exists_hint = "pass --overwrite to replace it (or --resume)"
        with writer as w:
            for info in infos:
                w.add_video(
                    info.video_id,
                    height=info.height,
                    width=info.width,
                    num_frames=info.num_frames,
                    action_type=info.action_type,
                    **info.attrs,
                )
                new = info.key in done
                for layer in info.layers:
                    if not (new and layer == into):
                        w.write_layer(info.video_id, layer, store.read_layer(info.video_id, layer))
                if new:
                    with MaskStore(parts / f"{info.key}.h5") as ps:
                        w.write_layer(info.video_id, into, ps.read_layer(info.video_id, into))
                else:
                    rep.videos_copied += 1
    log.info("propagated %d videos in %.1f s", rep.videos_propagated, time.perf_counter() - t_start)
    if not rep.failures:  # kept while videos failed, so that --resume redoes only those
        shutil.rmtree(parts, ignore_errors=True)
    return rep
