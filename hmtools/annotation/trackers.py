"""Single-object trackers that follow the athlete between pseudo masks (OSTrack-like interface).

Protocol: ``init(frame, box)``; ``update(frame) -> (box, score)``; ``correct(mask, box=None)``
feeds the new pseudo mask back (its box -- ``box`` when the caller has computed it -- re-centres
the tracker and refreshes its points and template). Boxes are ``(x, y, w, h)`` floats in pixels.

:class:`FlowTracker` needs only OpenCV's main modules: Lucas-Kanade points with a forward-backward
check move the box (median shift, median scale change), so it tracks on its own through frames
whose mask is empty; an appearance template (updated from confident masks) re-acquires the
athlete by template matching over the whole frame after it was lost (too few good points, a box
jump, or empty masks). OpenCV's MIL tracker (main modules) and, when opencv-contrib is installed,
CSRT/KCF are offered through :func:`make_tracker`.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
from scipy.spatial.distance import pdist

Box = tuple[float, float, float, float]


class Tracker(Protocol):
    def init(self, frame: np.ndarray, box: Box) -> None: ...

    def update(self, frame: np.ndarray) -> tuple[Box, float]: ...

    def correct(self, mask: np.ndarray | None, box: Box | None = None) -> None: ...


def mask_box(mask: np.ndarray) -> Box | None:
    """Tight ``(x, y, w, h)`` box of the mask's non-zero pixels, ``None`` when empty."""
    m = mask if mask.dtype == np.uint8 else mask.astype(np.uint8)
    x, y, w, h = cv2.boundingRect(m)
    if w == 0 or h == 0:
        return None
    return float(x), float(y), float(w), float(h)


def box_intersection(a: Box, b: Box) -> float:
    """Area of the overlap of two boxes."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih


def box_iou(a: Box, b: Box) -> float:
    inter = box_intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def clip_box(box: Box, w: int, h: int, min_size: float = 4.0) -> Box:
    x, y, bw, bh = box
    bw, bh = max(min_size, min(bw, w)), max(min_size, min(bh, h))
    x, y = min(max(0.0, x), w - bw), min(max(0.0, y), h - bh)
    return x, y, bw, bh


def fit_similarity(g0: np.ndarray, g1: np.ndarray, max_points: int = 300) -> np.ndarray | None:
    """3x3 similarity mapping pixel coordinates of gray image ``g0`` onto ``g1`` (RANSAC over
    forward-backward-checked LK tracks), or ``None`` when too few points track."""
    p0 = cv2.goodFeaturesToTrack(g0, max_points, 0.01, 6)
    if p0 is None or len(p0) < 10:
        return None
    p1, st, _ = cv2.calcOpticalFlowPyrLK(g0, g1, p0, None, winSize=(21, 21), maxLevel=4)
    pb, stb, _ = cv2.calcOpticalFlowPyrLK(g1, g0, p1, None, winSize=(21, 21), maxLevel=4)
    ok = (st.reshape(-1) == 1) & (stb.reshape(-1) == 1)
    ok &= np.linalg.norm((p0 - pb).reshape(-1, 2), axis=1) < 1.0
    if ok.sum() < 10:
        return None
    M, inl = cv2.estimateAffinePartial2D(
        p0[ok], p1[ok], method=cv2.RANSAC, ransacReprojThreshold=1.5
    )
    if M is None or inl is None or inl.sum() < 8:
        return None
    return np.vstack([M, [0.0, 0.0, 1.0]])


def compensate_camera(g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
    """``g0`` (gray) warped onto ``g1`` by the camera's global motion (:func:`fit_similarity`);
    unchanged when too few points track."""
    M = fit_similarity(g0, g1)
    if M is None:
        return g0
    h, w = g1.shape[:2]
    return cv2.warpAffine(g0, M[:2], (w, h), borderMode=cv2.BORDER_REPLICATE)


def to_gray(
    frame: np.ndarray, x0: int = 0, y0: int = 0, x1: int | None = None, y1: int | None = None
) -> np.ndarray:
    """The gray ``[y0:y1, x0:x1]`` crop of a BGR (or already gray) frame, converting only the
    crop: the tracker looks at a window around the athlete, not at the whole frame."""
    crop = frame[y0:y1, x0:x1]
    return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop


class GrayCrops:
    """Gray crops of the last frames a tracker looked at, each pixel converted once: a crop that
    lies inside a region already converted for the same frame object is a slice of it. A new
    region is converted with ``slack`` px to spare on every side, so the next frame's
    Lucas-Kanade window in this frame (around a box that moved a little) and the point and
    template crops inside the box are slices too. Holds the last ``keep`` regions; frames are
    matched by identity, so a frame must not be written into while it is held (the tracker keeps
    its frames by reference anyway).

    ``scale`` (an integer ``f``): coordinates are in the frame shrunk ``f`` times (``w // f`` x
    ``h // f``), each crop the ``f`` x ``f`` pixel blocks averaged (OpenCV's fast integer-factor
    area resize)."""

    def __init__(self, slack: int = 16, keep: int = 3, scale: int = 1):
        self.slack, self.keep, self.scale = slack, keep, max(1, int(scale))
        self._held: list[tuple[np.ndarray, int, int, np.ndarray]] = []  # (frame, x0, y0, gray)

    def size(self, frame: np.ndarray) -> tuple[int, int]:
        """``(w, h)`` of ``frame`` in these coordinates."""
        return frame.shape[1] // self.scale, frame.shape[0] // self.scale

    def get(self, frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """``to_gray(frame, x0, y0, x1, y1)``, from a held region when one covers it."""
        for f, gx, gy, g in reversed(self._held):
            if (
                f is frame
                and gx <= x0
                and gy <= y0
                and x1 <= gx + g.shape[1]
                and y1 <= gy + g.shape[0]
            ):
                return g[y0 - gy : y1 - gy, x0 - gx : x1 - gx]
        w, h = self.size(frame)
        s, f = self.slack, self.scale
        rx0, ry0, rx1, ry1 = max(0, x0 - s), max(0, y0 - s), min(w, x1 + s), min(h, y1 + s)
        if f == 1:
            g = to_gray(frame, rx0, ry0, rx1, ry1)
        else:
            g = to_gray(frame, rx0 * f, ry0 * f, rx1 * f, ry1 * f)
            g = cv2.resize(g, (rx1 - rx0, ry1 - ry0), interpolation=cv2.INTER_AREA)
        self._held = self._held[-(self.keep - 1) :] + [(frame, rx0, ry0, g)]
        return g[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]


def _correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Valid cross-correlation (float32). OpenCV's ``TM_CCORR`` is fast when the image is at least
    twice the kernel each way (0.03-0.7 ms from a 12-px kernel in a 28-px image to a 96 x 51 one
    in 455 x 256, measured on opencv-python-headless 4.12), but slow when the image is barely
    larger (it goes through the DFT: 0.5-2.8 ms for 16-121 positions, the refinement step of
    :func:`_pyramid_ncc`), where a direct product is 0.05-0.2 ms -- unless that is large too."""
    kh, kw = kernel.shape
    ih, iw = image.shape
    small = ih < 2 * kh or iw < 2 * kw
    if small and (ih - kh + 1) * (iw - kw + 1) * kh * kw <= 4_000_000:
        win = np.lib.stride_tricks.sliding_window_view(image, (kh, kw))
        return np.tensordot(win, kernel, axes=([2, 3], [0, 1])).astype(np.float32)
    return cv2.matchTemplate(image, kernel, cv2.TM_CCORR)


def _ncc(image: np.ndarray, templ: np.ndarray, mask: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Best normalised correlation (zero-mean, over the template's ``mask`` pixels only: the
    background around the athlete differs from frame to frame) of ``templ`` in ``image``:
    (score, top-left corner). The same values as ``cv2.matchTemplate(TM_CCOEFF_NORMED,
    mask=...)``, computed from three plain correlations (OpenCV has no fast path for masked
    matching: measured 22 ms vs 2 ms for a 56x102 template over a 455x256 frame)."""
    img = image.astype(np.float32)
    w = (mask > 0).astype(np.float32)
    n = float(w.sum())
    if n < 2:
        return 0.0, (0, 0)
    t = templ.astype(np.float32)
    tz = (t - float((t * w).sum()) / n) * w
    tt = float((tz * tz).sum())
    num = _correlate(img, tz)
    s1 = _correlate(img, w)
    var = np.maximum(_correlate(img * img, w) - s1 * s1 / n, 0.0) * tt
    r = np.where(var > 1e-6, num / np.sqrt(np.maximum(var, 1e-12)), -1.0)
    y, x = np.unravel_index(int(np.argmax(r)), r.shape)
    return float(r[y, x]), (int(x), int(y))


def _ncc_coarse_to_fine(
    image: np.ndarray,
    templ: np.ndarray,
    mask: np.ndarray,
    min_side: int = 12,
    pyramid: list[np.ndarray] | None = None,
) -> tuple[float, tuple[int, int]]:
    """:func:`_ncc` over an image pyramid: the best corner at half resolution (searched the
    same way, recursively, while the halved template keeps a shorter side of ``min_side`` px),
    then refined at full resolution within 1 px of it. A 256-px frame's athlete takes one
    halving (measured in isolation: 1.5 ms for a 96 x 51 template over a 455 x 256 frame), a
    720p one two or three (3-5 ms for 150 x 80 to 268 x 256 templates over the whole frame).
    Templates under ``2 * min_side`` px, which halving would blur away, and small search areas
    are searched at full resolution directly. The score is the
    full-resolution one, so thresholds mean the same as with :func:`_ncc`. ``pyramid``: a list
    that holds (and is extended with) the image's halvings ``[image, half, quarter, ...]``, to
    share them between searches for several templates in one image."""
    return _pyramid_ncc(pyramid if pyramid is not None else [image], 0, templ, mask, min_side)


def _pyramid_ncc(
    pyramid: list[np.ndarray], level: int, templ: np.ndarray, mask: np.ndarray, min_side: int
) -> tuple[float, tuple[int, int]]:
    image = pyramid[level]
    th, tw = templ.shape[:2]
    ih, iw = image.shape[:2]
    if min(th, tw) // 2 < min_side or (ih - th + 1) * (iw - tw + 1) < 256:
        return _ncc(image, templ, mask)
    if len(pyramid) == level + 1:
        pyramid.append(cv2.resize(image, (iw // 2, ih // 2), interpolation=cv2.INTER_AREA))
    ts = cv2.resize(templ, (tw // 2, th // 2), interpolation=cv2.INTER_AREA)
    ms = cv2.resize(mask, (tw // 2, th // 2), interpolation=cv2.INTER_NEAREST)
    _, (cx, cy) = _pyramid_ncc(pyramid, level + 1, ts, ms, min_side)
    x0, y0 = max(0, 2 * cx - 1), max(0, 2 * cy - 1)
    x1, y1 = min(iw, 2 * cx + 1 + tw + 1), min(ih, 2 * cy + 1 + th + 1)
    if x1 - x0 < tw or y1 - y0 < th:
        return _ncc(image, templ, mask)
    score, (fx, fy) = _ncc(image[y0:y1, x0:x1], templ, mask)
    return score, (fx + x0, fy + y0)


class FlowTracker:
    """Lucas-Kanade point tracker with template re-acquisition (see module doc).

    ``max_points`` = 40: LK's cost is per point, and with BlazePose masks (mean IoU with the
    tracker from the first true box, ``benchmarks/pseudo_mask.py``) 40 points tracked better
    than 80 on three sets of 8 synthetic dives (0.506 / 0.404 / 0.452 vs 0.456 / 0.389 / 0.412;
    20: 0.420 / 0.367, 60: 0.478 / 0.406 / 0.474) and as well on DAVIS dance-twirl (0.839 vs
    0.837): fewer, stronger corners drift less onto the background. ``lk_window`` 21 and
    ``lk_levels`` 3 (OpenCV's ``winSize`` / ``maxLevel``) stay: a 15-px window tracked worse
    on two of those three sets (0.456 / 0.415 / 0.440), and 2 levels, though as good on these
    256-px dives, halve the largest motion followed (~40 px per frame), too little at 720p.

    ``work_height``: track frames ``f = round(height / work_height)`` times that height on their
    ``f`` x ``f`` pixel blocks (boxes in and out stay in frame pixels), so the tracker costs
    about the same at any resolution. Off by default: on rendered dives (tracker from the first
    true box, ``benchmarks/pseudo_mask.py``) ``work_height=256`` cut the tracker's time per frame
    at 720p from 5.6 to 3.1 ms and at 1080p from 7.8 to 3.5 ms (20.9 -> 25.2 frames/s), but
    left 720p throughput as it was (27.9 vs 27.4 frames/s: other boxes, other forwards) and the
    masks a little worse in every comparison: 720p 0.455 -> 0.446 (24 videos) and 0.559 -> 0.529
    (8), 1080p 0.318 -> 0.298 (3), DAVIS dance-twirl at 480p 0.838 -> 0.835; with 360 (720p
    tracked at half size) 0.432 and 0.516 at 720p. Worth it for 1080p and larger frames."""

    def __init__(
        self,
        max_points: int = 40,
        min_points: int = 6,
        lost_after: int = 3,
        empty_lost_after: int = 8,
        reacquire_threshold: float = 0.45,
        full_every: int = 4,
        patient_for: int = 8,
        retry_every: int = 2,
        lk_window: int = 21,
        lk_levels: int = 3,
        work_height: int | None = None,
    ):
        self.max_points, self.min_points = max_points, min_points
        self.work_height = work_height
        self.lost_after, self.reacquire_threshold = lost_after, reacquire_threshold
        self.empty_lost_after = empty_lost_after
        self.full_every = full_every
        self.patient_for, self.retry_every = patient_for, max(1, retry_every)
        self.lk_window, self.lk_levels = (lk_window, lk_window), lk_levels
        self._lost_frames = 0
        self._empty = 0
        self.box: Box = (0, 0, 1, 1)  # in working pixels
        self.lost = False
        self._bad = 0
        self._prev: np.ndarray | None = None
        self._pts: np.ndarray | None = None
        self._template: np.ndarray | None = None
        self._template_mask: np.ndarray | None = None
        self._gray = GrayCrops()

    # -- helpers --------------------------------------------------------------------------
    @property
    def _f(self) -> int:
        """Frame pixels per working pixel, each way (chosen per video by :meth:`init`)."""
        return self._gray.scale

    def _mask_crop(self, mask: np.ndarray, x: int, y: int, bw: int, bh: int) -> np.ndarray:
        """The working-pixel box ``(x, y, bw, bh)`` of a frame-sized mask (every ``f``-th pixel)."""
        f = self._f
        return mask[y * f : (y + bh) * f : f, x * f : (x + bw) * f : f]

    def _out(self, box: Box) -> Box:
        f = self._f
        return (box[0] * f, box[1] * f, box[2] * f, box[3] * f)

    def _in(self, box: Box) -> Box:
        f = self._f
        return (box[0] / f, box[1] / f, box[2] / f, box[3] / f)

    def _window(self, w: int, h: int, grow: float = 1.0, margin: int = 48) -> tuple[int, ...]:
        """The box grown by ``grow`` times its size (at least ``margin`` px) on every side."""
        x, y, bw, bh = self.box
        gx, gy = max(margin, bw * grow), max(margin, bh * grow)
        return (
            int(max(0, x - gx)),
            int(max(0, y - gy)),
            int(min(w, x + bw + gx)),
            int(min(h, y + bh + gy)),
        )

    def _sample_points(self, frame: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Good features inside the box (or the mask), searched in the box's crop only."""
        w, h = self._gray.size(frame)
        x, y, bw, bh = (int(round(v)) for v in clip_box(self.box, w, h))
        crop = self._gray.get(frame, x, y, x + bw, y + bh)
        roi = None
        if mask is not None:
            roi = (self._mask_crop(mask, x, y, bw, bh) > 0).astype(np.uint8) * 255
            if not roi.any():
                roi = None
        pts = (
            cv2.goodFeaturesToTrack(crop, self.max_points, 0.01, 3, mask=roi) if crop.size else None
        )
        if pts is None:
            self._pts = np.zeros((0, 1, 2), np.float32)
        else:
            self._pts = (pts + np.array([x, y], np.float32)).astype(np.float32)

    def _set_template(self, frame: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Appearance template: the athlete's pixels (the mask inside its box when given)."""
        w, h = self._gray.size(frame)
        x, y, bw, bh = (int(round(v)) for v in clip_box(self.box, w, h))
        if bw >= 4 and bh >= 4:
            self._template = np.array(self._gray.get(frame, x, y, x + bw, y + bh))
            tm = (self._mask_crop(mask, x, y, bw, bh) > 0) if mask is not None else None
            self._template_mask = (
                tm.astype(np.uint8) * 255
                if tm is not None and tm.sum() >= 16
                else np.full_like(self._template, 255)
            )

    def _reacquire(self, frame: np.ndarray) -> float:
        """Template search on every frame for the first ``patient_for`` lost frames, then on
        every ``retry_every``-th (an athlete gone for long -- under water after the entry, out of
        the picture -- would otherwise cost a search per frame for nothing). Searches cover the
        whole frame on the first attempt and every ``full_every``-th after it, near the last box
        in between (cheap, and the athlete rarely reappears far away)."""
        w, h = self._gray.size(frame)
        self._lost_frames += 1
        n = self._lost_frames
        if n > self.patient_for and (n - self.patient_for) % self.retry_every:
            return 0.0
        attempt = (
            n
            if n <= self.patient_for
            else self.patient_for + (n - self.patient_for) // self.retry_every
        )
        if (attempt - 1) % self.full_every == 0:
            return self._match(frame, (0, 0, w, h))
        return self._match(frame, self._window(w, h, grow=1.5))

    def _match(self, frame: np.ndarray, window: tuple[int, ...]) -> float:
        x0, y0, x1, y1 = window
        gray = self._gray.get(frame, x0, y0, x1, y1)
        t = self._template
        if t is None or t.shape[0] >= gray.shape[0] or t.shape[1] >= gray.shape[1]:
            return 0.0
        best, best_loc, best_scale = -1.0, (0, 0), 1.0
        pyramid = [gray]  # the search image's halvings, shared by the three template sizes
        for s in (0.8, 1.0, 1.25):
            ts = cv2.resize(t, None, fx=s, fy=s) if s != 1.0 else t
            tm = cv2.resize(
                self._template_mask, (ts.shape[1], ts.shape[0]), interpolation=cv2.INTER_NEAREST
            )
            if ts.shape[0] >= gray.shape[0] or ts.shape[1] >= gray.shape[1] or min(ts.shape) < 4:
                continue
            mx, loc = _ncc_coarse_to_fine(gray, ts, tm, pyramid=pyramid)
            if mx > best:
                best, best_loc, best_scale = mx, loc, s
        if best >= self.reacquire_threshold:
            self.box = (
                float(best_loc[0] + x0),
                float(best_loc[1] + y0),
                t.shape[1] * best_scale,
                t.shape[0] * best_scale,
            )
            self.lost = False
            self._bad = self._empty = self._lost_frames = 0
            self._sample_points(frame)
        return max(0.0, best)

    # -- protocol -------------------------------------------------------------------------
    def init(self, frame: np.ndarray, box: Box) -> None:
        """Start on ``frame`` (BGR or gray) at ``box``. The tracker keeps the last frame it was
        given by reference, not as a copy: do not write into a frame after passing it."""
        wh = self.work_height
        f = max(1, int(round(frame.shape[0] / wh))) if wh else 1
        self._gray = GrayCrops(scale=f)  # nothing held from an earlier video
        self.box = clip_box(self._in(box), *self._gray.size(frame))
        self.lost, self._bad, self._empty, self._lost_frames = False, 0, 0, 0
        self._prev = frame  # kept as given: gray crops are converted where they are needed
        self._sample_points(frame)
        self._set_template(frame)

    def update(self, frame: np.ndarray) -> tuple[Box, float]:
        w, h = self._gray.size(frame)
        score = 0.0
        if self.lost:
            score = self._reacquire(frame)
            self._prev = frame
            return self._out(self.box), (score if not self.lost else 0.0)
        p0 = self._pts
        if p0 is not None and len(p0) >= self.min_points:
            # LK on a window around the box only: the cost does not grow with the frame size
            x0, y0, x1, y1 = self._window(w, h)
            off = np.array([x0, y0], np.float32)
            a0 = self._gray.get(self._prev, x0, y0, x1, y1)
            a1 = self._gray.get(frame, x0, y0, x1, y1)
            q0 = (p0 - off).astype(np.float32)
            lk = dict(winSize=self.lk_window, maxLevel=self.lk_levels)
            q1, st, _ = cv2.calcOpticalFlowPyrLK(a0, a1, q0, None, **lk)
            qb, stb, _ = cv2.calcOpticalFlowPyrLK(a1, a0, q1, None, **lk)
            p1 = q1 + off
            fb = np.linalg.norm((q0 - qb).reshape(-1, 2), axis=1)
            ok = (st.reshape(-1) == 1) & (stb.reshape(-1) == 1) & (fb < 1.5)
            score = float(ok.mean()) if len(ok) else 0.0
            if ok.sum() >= self.min_points:
                a, b = p0.reshape(-1, 2)[ok], p1.reshape(-1, 2)[ok]
                d = np.median(b - a, axis=0)
                da, db = pdist(a), pdist(b)  # every pair's distance, before and after
                keep = da > 1e-3
                s = float(np.clip(np.median(db[keep] / da[keep]), 0.8, 1.25)) if keep.any() else 1.0
                x, y, bw, bh = self.box
                cx, cy = x + bw / 2 + d[0], y + bh / 2 + d[1]
                self.box = clip_box((cx - bw * s / 2, cy - bh * s / 2, bw * s, bh * s), w, h)
                self._pts = b.reshape(-1, 1, 2).astype(np.float32)
                self._bad = 0
            else:
                self._bad += 1
        else:
            self._bad += 1
        if self._bad >= self.lost_after:
            self.lost = True
        if self._pts is None or len(self._pts) < self.min_points * 2:
            self._sample_points(frame)
        self._prev = frame
        return self._out(self.box), score

    def correct(self, mask: np.ndarray | None, box: Box | None = None) -> None:
        """Feed back the pseudo mask: its box (``box``, the mask's :func:`mask_box` when the
        caller has computed it, else computed here) re-centres the tracker; an empty mask counts
        towards "lost" but leaves the flow estimate in place."""
        mb = None if mask is None else (box if box is not None else mask_box(mask))
        if mb is not None:
            mb = self._in(mb)
        if mb is None:
            self._empty += 1
            if self._empty >= self.empty_lost_after:
                self.lost = True
            return
        self._empty = 0
        if not self.lost and box_iou(mb, self.box) < 0.05:
            return  # a jump: the segmenter latched onto something else; keep tracking
        self.box = mb
        self.lost = False
        self._bad = self._lost_frames = 0
        if self._prev is not None:
            self._sample_points(self._prev, mask)
            self._set_template(self._prev, mask)


class OpenCVTracker:
    """Adapter for OpenCV's own trackers (MIL in the main modules; CSRT/KCF with contrib)."""

    def __init__(self, kind: str):
        factory = {
            "mil": "TrackerMIL_create",
            "csrt": "TrackerCSRT_create",
            "kcf": "TrackerKCF_create",
        }[kind]
        fn = getattr(cv2, factory, None)
        if fn is None and hasattr(cv2, "legacy"):
            fn = getattr(cv2.legacy, factory, None)
        if fn is None:
            raise ValueError(
                f"OpenCV tracker {kind!r} needs opencv-contrib, which is not installed"
            )
        self._make = fn
        self.box: Box = (0, 0, 1, 1)

    def init(self, frame: np.ndarray, box: Box) -> None:
        self._t = self._make()
        self.box = box
        self._t.init(frame, tuple(int(round(v)) for v in box))

    def update(self, frame: np.ndarray) -> tuple[Box, float]:
        ok, b = self._t.update(frame)
        if ok:
            self.box = tuple(float(v) for v in b)  # type: ignore[assignment]
        return self.box, 1.0 if ok else 0.0

    def correct(self, mask: np.ndarray | None, box: Box | None = None) -> None:
        return None


def available_trackers() -> list[str]:
    names = ["flow", "mil"]
    for k, f in (("csrt", "TrackerCSRT_create"), ("kcf", "TrackerKCF_create")):
        if hasattr(cv2, f) or (hasattr(cv2, "legacy") and hasattr(cv2.legacy, f)):
            names.append(k)
    return names


def make_tracker(name: str = "flow") -> Tracker:
    if name == "flow":
        return FlowTracker()
    return OpenCVTracker(name)
