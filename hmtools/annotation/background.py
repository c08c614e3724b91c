"""Weight-free athlete segmentation by background subtraction under a moving camera.

Sports broadcasts film a far-away venue with a panning/zooming camera that follows the athlete, so
the background is (nearly) one plane and frame-to-frame camera motion is a similarity transform,
while the athlete moves against it. For every frame ``t`` this module

1. fits the camera motion between consecutive frames (Lucas-Kanade tracks of corner points,
   RANSAC similarity -- the athlete is a small minority of the points) and chains it, so any frame
   ``n`` can be warped onto frame ``t``;
2. builds frame ``t``'s background as the per-pixel median of neighbour frames at spread offsets
   (``NEIGHBOUR_OFFSETS``) warped onto ``t`` -- each neighbour's warp is refined directly against
   ``t`` (one more similarity fit) so chained drift does not leave edges, and its brightness is
   matched to ``t`` (per-channel gain), so lighting changes cancel. The athlete sits at different
   background positions in the neighbours, so the median shows what is behind them;
3. marks pixels whose colour differs from that background by more than ``k`` robust standard
   deviations of the frame's own difference image (the noise level is measured per frame, not a
   fixed threshold), and keeps the connected parts that touch the tracker box.

It fails where the athlete does not move against the background over the whole neighbour span
(standing still on the board for many frames, the apex of a dive), where the athlete's colours
match what is behind them, or where the scene is far from planar (strong parallax). Cost: about
``len(NEIGHBOUR_OFFSETS)`` warps and LK fits per frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from hmtools.annotation.trackers import Box, fit_similarity, to_gray

NEIGHBOUR_OFFSETS = (-36, -24, -16, -10, -6, 6, 10, 16, 24, 36)
_EYE = np.eye(3)


class CameraPath:
    """Chained camera motion of one video: ``to_first[t]`` maps frame ``t`` onto frame 0."""

    def __init__(self, frames: list[np.ndarray]):
        self.grays = [to_gray(f) for f in frames]
        self.to_first = [_EYE]
        for g0, g1 in zip(self.grays[1:], self.grays[:-1], strict=False):
            M = fit_similarity(g0, g1)  # frame t -> frame t-1
            self.to_first.append(self.to_first[-1] @ (M if M is not None else _EYE))

    def between(self, n: int, t: int) -> np.ndarray:
        """3x3 transform mapping frame ``n``'s pixels onto frame ``t``."""
        return np.linalg.inv(self.to_first[t]) @ self.to_first[n]


class BackgroundModel:
    """Per-frame background estimates of one video (see module doc)."""

    def __init__(self, frames: list[np.ndarray], offsets: tuple[int, ...] = NEIGHBOUR_OFFSETS):
        self.frames = frames
        self.path = CameraPath(frames)
        self.offsets = offsets

    def background(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(background float32 [H, W, 3], number of neighbours that cover each pixel)."""
        frame = self.frames[t]
        h, w = frame.shape[:2]
        g = self.path.grays[t]
        stack, valid = [], []
        ones = np.ones((h, w), np.uint8)
        for o in self.offsets:
            n = t + o
            if not 0 <= n < len(self.frames):
                continue
            M = self.path.between(n, t)
            warped_g = cv2.warpAffine(self.path.grays[n], M[:2], (w, h))
            fix = fit_similarity(warped_g, g, max_points=200)  # undo chained drift
            if fix is not None:
                M = fix @ M
            cover = cv2.warpAffine(ones, M[:2], (w, h), flags=cv2.INTER_NEAREST) > 0
            if cover.mean() < 0.3:
                continue
            img = cv2.warpAffine(self.frames[n], M[:2], (w, h)).astype(np.float32)
            cov = cover & (cv2.erode(cover.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
            ref = frame[cov].astype(np.float32)
            gain = np.median(ref + 1.0, axis=0) / np.maximum(np.median(img[cov] + 1.0, axis=0), 1)
            img *= gain.reshape(1, 1, 3)
            img[~cov] = np.nan
            stack.append(img)
            valid.append(cov)
        if not stack:
            return np.full((h, w, 3), np.nan, np.float32), np.zeros((h, w), np.int32)
        count = np.sum(valid, axis=0)
        if len(stack) == 1:
            return stack[0], count
        ordered = np.sort(np.stack(stack), axis=0)  # NaN (not covered) sorts last
        mid = np.clip((count - 1) // 2, 0, len(stack) - 1)[None, :, :, None]
        mid = np.broadcast_to(mid, (1,) + ordered.shape[1:])
        return np.take_along_axis(ordered, mid, axis=0)[0], count

    def foreground(self, t: int, k: float = 5.0, min_diff: float = 20.0) -> np.ndarray:
        """Binary foreground ``uint8 [H, W]`` of frame ``t``: the colour difference to the
        background, tolerant to one pixel of misregistration (compared with the background's
        3x3 min/max), above ``k`` robust standard deviations of this frame's differences (and
        ``min_diff``) and above half of the strongest difference nearby (a pixel the athlete only
        half covers -- blur, anti-aliasing -- is not the athlete)."""
        bg, count = self.background(t)
        frame = self.frames[t].astype(np.float32)
        bg = np.nan_to_num(bg, nan=0.0)
        k3 = np.ones((3, 3), np.uint8)
        over = np.maximum(frame - cv2.dilate(bg, k3), cv2.erode(bg, k3) - frame)
        diff = np.maximum(over, 0.0).max(axis=2)
        seen = count >= 2
        if not seen.any():
            return np.zeros(diff.shape, np.uint8)
        vals = diff[seen]
        med = float(np.median(vals))
        sigma = 1.4826 * float(np.median(np.abs(vals - med))) + 1e-6
        win = max(5, int(round(0.035 * max(diff.shape))) | 1)
        local = cv2.dilate(diff, np.ones((win, win), np.uint8))
        fg = (diff > np.maximum(max(min_diff, med + k * sigma), 0.5 * local)) & seen
        return fg.astype(np.uint8)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    flood = np.pad(mask, 1).copy() * 255
    ff = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(flood, ff, (0, 0), 255)
    holes = flood[1:-1, 1:-1] == 0
    return (mask.astype(bool) | holes).astype(np.uint8)


def athlete_parts(fg: np.ndarray, box: Box, touch: float = 0.1, reach: float = 0.5) -> np.ndarray:
    """Connected foreground parts that touch the tracker box (grown by ``touch``), closed, holes
    filled, and cut to the box grown by ``reach`` (the athlete moves between frames; a splash or
    a passer-by that merges with it is cut off there)."""
    h, w = fg.shape

    def grown(g: float) -> tuple[int, int, int, int]:
        x, y, bw, bh = box
        return (
            int(max(0, x - bw * g)),
            int(max(0, y - bh * g)),
            int(min(w, x + bw * (1 + g) + 1)),
            int(min(h, y + bh * (1 + g) + 1)),
        )

    x0, y0, x1, y1 = grown(touch)
    k = max(3, int(round(0.012 * max(h, w))) | 1)
    closed = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    out = np.zeros((h, w), np.uint8)
    if n <= 1:
        return out
    inside = np.unique(lab[y0:y1, x0:x1])
    inside = inside[inside > 0]
    if len(inside) == 0:
        return out
    areas = stats[inside, cv2.CC_STAT_AREA]
    big = areas.max()
    for lbl, a in zip(inside, areas, strict=True):
        if a >= 0.15 * big:  # drop specks that merely touch the box
            out[lab == lbl] = 1
    rx0, ry0, rx1, ry1 = grown(reach)
    roi = np.zeros_like(out)
    roi[ry0:ry1, rx0:rx1] = 1
    return _fill_holes(out & roi)


class ColourModel:
    """Running colour histograms (16 bins per channel) of the athlete and of the background
    around it, learnt from confident masks; ``athlete_probability`` is P(athlete | colour). A
    splash, a lane line or a misregistered crowd edge changes the image like the athlete does,
    but has the wrong colours."""

    def __init__(self, bins: int = 16, rate: float = 0.3):
        self.bins, self.rate = bins, rate
        self.fg: np.ndarray | None = None
        self.bg: np.ndarray | None = None

    def _hist(self, frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b = self.bins
        h = cv2.calcHist([frame], [0, 1, 2], mask, [b, b, b], [0, 256, 0, 256, 0, 256])
        h = cv2.GaussianBlur(h.reshape(b, b * b), (3, 3), 0).reshape(b, b, b) + 1e-3
        return h / h.sum()

    def update(self, frame: np.ndarray, mask: np.ndarray, ring: np.ndarray) -> None:
        f, g = self._hist(frame, mask * 255), self._hist(frame, ring * 255)
        if self.fg is None or self.bg is None:
            self.fg, self.bg = f, g
        else:
            self.fg = (1 - self.rate) * self.fg + self.rate * f
            self.bg = (1 - self.rate) * self.bg + self.rate * g

    def athlete_probability(self, frame: np.ndarray) -> np.ndarray | None:
        if self.fg is None or self.bg is None:
            return None
        ratio = (self.fg / (self.fg + self.bg)).astype(np.float32)
        return cv2.calcBackProject([frame], [0, 1, 2], ratio, [0, 256, 0, 256, 0, 256], 1)


class BackgroundSegmenter:
    """Segmenter protocol over :class:`BackgroundModel` (needs the whole video first:
    ``begin_video``). Foreground parts touching the tracker box are kept where their colour is
    more likely the athlete's than the surroundings' (:class:`ColourModel`, learnt from this
    video's earlier masks). The score is the share of the kept foreground that has athlete
    colours; nothing athlete-coloured left (e.g. the diver is under water) gives an empty mask."""

    name = "background"

    def __init__(self, k: float = 5.0):
        self.k = k
        self._model: BackgroundModel | None = None
        self._colour = ColourModel()
        self._next = 0

    def begin_video(self, frames: list[np.ndarray]) -> None:
        self._model = BackgroundModel(frames)
        self._colour = ColourModel()
        self._next = 0

    def encode(self, frames: list[np.ndarray]) -> list[object]:
        states = [(self._next + i, f) for i, f in enumerate(frames)]
        self._next += len(frames)
        return states

    def segment(
        self, state: object, box: Box, prev: tuple[object, np.ndarray] | None
    ) -> tuple[np.ndarray, float]:
        t, frame = state  # type: ignore[misc]
        if self._model is None:
            raise RuntimeError("BackgroundSegmenter.begin_video(frames) was not called")
        fg = self._model.foreground(t, self.k)
        mask = athlete_parts(fg, box)
        if not mask.any():
            return mask, 0.0
        prob = self._colour.athlete_probability(frame)
        score = 1.0
        if prob is not None:
            athlete = (prob > 0.5).astype(np.uint8) & mask
            score = float(athlete.sum() / mask.sum())
            mask = athlete_parts(athlete, box) if score >= 0.25 else np.zeros_like(mask)
        if mask.any() and score >= 0.5:
            k = max(3, int(round(0.02 * max(frame.shape[:2]))) | 1)
            ring = cv2.dilate(mask, np.ones((k * 3, k * 3), np.uint8)) - cv2.dilate(
                mask, np.ones((k, k), np.uint8)
            )
            self._colour.update(frame, mask, ring)
        return mask, score
