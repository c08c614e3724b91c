"""``hmtools review-queue``: which frames an annotator should correct next, so that once the
corrections are propagated (``hmtools propagate``) the whole video is as right as it can be.

The model behind the choice (computed from the store alone, on the RLEs, no frame is read):

- Carrying a mask across one frame step costs ``c_t = (1 - IoU(m_t, m_t+1)) + lambda``: how much
  the layer's mask changes there (fast motion, a pose change, the athlete appearing or leaving)
  plus a little per frame (``lambda`` = 0.05: twenty still frames weigh one complete change).
  Along a video, ``D(t)`` is the sum of the costs up to frame t.
- A frame's expected error after propagation grows with its distance in ``D`` to the corrections
  around it: ``e(x) = 1 - exp(-x / kappa)`` (``kappa`` = 2). Between two corrections it is wrong
  only when both directions are (``e(left) * e(right)``); before the first or after the last
  correction only one direction carries; a video without any correction has error 1
  everywhere. So the queue brackets the fast stretches of a video first and spends little on
  still ones. Each frame's error is weighted by ``1 + gamma * (1 -
  score)`` (``gamma`` = 0.5), so low-confidence frames (after ``propagate``: where the forward
  and backward directions disagreed) count more.
- Greedy: the next frame queued is the one that lowers the total expected error most, frames
  already corrected are anchors and never queued again. ``--budget N`` spends N frames over the
  whole store where they gain most (every video without a correction first gets one, in
  practice); ``--budget P%`` queues P % of each video's frames.
"""

from __future__ import annotations

import csv
import heapq
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hmtools.errors import InputError
from hmtools.fsutil import atomic_write_text
from hmtools.masks import LAYER_GTM, LAYER_PM, MaskStore, rle


@dataclass(frozen=True)
class QueueModel:
    """The constants of the error model (module doc)."""

    kappa: float = 2.0
    lam: float = 0.05
    gamma: float = 0.5
    max_candidates: int = 512  # per gap; longer gaps are sampled evenly
    combine: str = "product"  # or "harmonic" (the nearer direction dominates)


def parse_budget(text: str) -> tuple[str, float]:
    """``"200"`` -> ``("frames", 200)``; ``"10%"`` -> ``("percent", 10)``."""
    t = str(text).strip()
    try:
        if t.endswith("%"):
            v = float(t[:-1])
            if not 0 <= v <= 100:
                raise ValueError
            return "percent", v
        v = int(t)
        if v < 0:
            raise ValueError
        return "frames", v
    except ValueError:
        raise InputError(f"--budget {text!r}: a number of frames (200) or a share (10%)") from None


def step_costs(counts: list[bytes], height: int, width: int, lam: float) -> np.ndarray:
    """``c_t`` for t = 0..n-2: 1 - IoU of consecutive masks (0 between two empty ones) + lam."""
    if len(counts) < 2:
        return np.zeros(0)
    iou = rle.iou(counts[:-1], counts[1:], height, width)
    return (1.0 - iou) + lam


class _Video:
    """One video's greedy state: positions, cumulative cost, weights and anchors."""

    def __init__(
        self,
        name: str,
        frames: np.ndarray,
        costs: np.ndarray,
        weights: np.ndarray,
        anchors: set[int],
        model: QueueModel,
    ):
        self.name, self.frames, self.model = name, frames, model
        self.D = np.concatenate([[0.0], np.cumsum(costs)])
        self.w = weights
        self.anchors = sorted(anchors)

    def _e(self, x: np.ndarray) -> np.ndarray:
        return 1.0 - np.exp(-np.maximum(x, 0.0) / self.model.kappa)

    def seg_error(self, lo: int, hi: int, left: int | None, right: int | None) -> float:
        """Weighted error of positions lo..hi-1 between anchors ``left`` and ``right``."""
        if hi <= lo:
            return 0.0
        d = self.D[lo:hi]
        if left is None and right is None:
            e = np.ones(hi - lo)
        elif left is None:
            e = self._e(self.D[right] - d)
        elif right is None:
            e = self._e(d - self.D[left])
        else:
            a, b = self._e(d - self.D[left]), self._e(self.D[right] - d)
            if self.model.combine == "product":
                e = a * b
            elif self.model.combine != "harmonic":
                raise ValueError(f"combine must be product or harmonic, not {self.model.combine!r}")
            else:
                e = np.where(a + b > 0, 2 * a * b / np.maximum(a + b, 1e-12), 0.0)
        return float((e * self.w[lo:hi]).sum())

    def gaps(self) -> list[tuple[int | None, int | None]]:
        """``(left anchor, right anchor)`` of every stretch without an anchor."""
        n = len(self.frames)
        a = self.anchors
        if not a:
            return [(None, None)] if n else []
        out = []
        if a[0] > 0:
            out.append((None, a[0]))
        out += [(x, y) for x, y in zip(a[:-1], a[1:], strict=True) if y - x > 1]
        if a[-1] < n - 1:
            out.append((a[-1], None))
        return out

    def best_in_gap(self, left: int | None, right: int | None) -> tuple[float, int] | None:
        """``(gain, position)`` of the best new anchor strictly inside the gap."""
        lo = 0 if left is None else left + 1
        hi = len(self.frames) if right is None else right
        if hi <= lo:
            return None
        cand = np.arange(lo, hi)
        if len(cand) > self.model.max_candidates:
            cand = np.unique(np.linspace(lo, hi - 1, self.model.max_candidates).round().astype(int))
        before = self.seg_error(lo, hi, left, right)
        best = None
        for s in cand.tolist():
            after = self.seg_error(lo, s, left, s) + self.seg_error(s + 1, hi, s, right)
            gain = before - after
            if best is None or gain > best[0]:
                best = (gain, s)
        return best

    def add(self, s: int) -> None:
        self.anchors = sorted([*self.anchors, s])


def review_queue(
    store_path: str | os.PathLike,
    budget: str,
    *,
    layer: str = LAYER_PM,
    corrected: str = LAYER_GTM,
    model: QueueModel | None = None,
) -> pd.DataFrame:
    """The frames to correct next (``video``, ``frame``; ``video`` as the reports print it),
    chosen as the module doc says. Frames of the ``corrected`` layer are never queued."""
    model = model or QueueModel()
    kind, amount = parse_budget(budget)
    videos: list[_Video] = []
    with MaskStore(store_path) as store:
        infos = [i for i in store.videos() if layer in i.layers]
        if not infos:
            raise InputError(
                f"{store_path}: no video has a {layer!r} layer to choose frames from (it has: "
                f"{', '.join(store.layer_names()) or 'none'})"
            )
        for info in infos:
            d = store.read_layer(info.video_id, layer)
            if not len(d):
                continue
            done = set()
            if corrected in info.layers:
                done = set(store.frame_index(info.video_id, corrected).tolist())
            pos = {int(f): i for i, f in enumerate(d.frame_index)}
            anchors = {pos[f] for f in done if f in pos}
            score = np.where(np.isnan(d.score), 0.5, d.score).astype(np.float64)
            weights = 1.0 + model.gamma * np.clip(1.0 - score, 0.0, 1.0)
            weights[sorted(anchors)] = 0.0
            costs = step_costs(d.rles, info.height, info.width, model.lam)
            videos.append(_Video(info.name, d.frame_index, costs, weights, anchors, model))
    picks: list[tuple[str, int]] = []
    if kind == "percent":  # each video its own share
        for k, v in enumerate(videos):
            quota = math.ceil(len(v.frames) * amount / 100) if amount > 0 else 0
            picks += _greedy(videos, [k], quota)
    else:  # the whole store's budget where it gains most
        picks = _greedy(videos, list(range(len(videos))), int(amount))
    df = pd.DataFrame(picks, columns=["video", "frame"])
    return df.sort_values(["video", "frame"], kind="stable").reset_index(drop=True)


def _greedy(videos: list[_Video], which: list[int], budget: int) -> list[tuple[str, int]]:
    """Up to ``budget`` anchors added to the videos ``which``, best expected gain first."""
    heap: list[tuple[float, int, int, int | None, int | None]] = []
    for k in which:
        for g in videos[k].gaps():
            b = videos[k].best_in_gap(*g)
            if b is not None:
                heapq.heappush(heap, (-b[0], k, b[1], *g))
    picks = []
    while heap and len(picks) < budget:
        _, k, s, left, right = heapq.heappop(heap)
        v = videos[k]
        v.add(s)
        picks.append((v.name, int(v.frames[s])))
        for g in ((left, s), (s, right)):
            b = v.best_in_gap(*g)
            if b is not None:
                heapq.heappush(heap, (-b[0], k, b[1], *g))
    return picks


def write_queue(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """The queue as CSV (``video,frame``), atomically."""
    path = Path(path)
    atomic_write_text(path, df[["video", "frame"]].to_csv(index=False))
    return path


def read_queue(path: str | os.PathLike) -> dict[str, set[int]]:
    """A queue CSV (``video,frame``) as ``{video as the reports print it: frames}``."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as e:
        raise InputError(f"{path}: cannot read the queue ({e.strerror})") from None
    if rows and not {"video", "frame"} <= set(rows[0]):
        raise InputError(f"{path}: a queue needs the columns video,frame")
    out: dict[str, set[int]] = {}
    for i, r in enumerate(rows, start=2):
        try:
            out.setdefault(str(r["video"]).strip(), set()).add(int(r["frame"]))
        except (ValueError, TypeError):
            raise InputError(f"{path} line {i}: bad row {dict(r)}") from None
    return out
