"""Camera-compensated background subtraction (hmtools.annotation.background)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hmtools.annotation.background import BackgroundModel, BackgroundSegmenter
from hmtools.annotation.pseudo_mask import segment_video
from hmtools.annotation.trackers import FlowTracker, fit_similarity, mask_box


def panning_video(n: int = 40, h: int = 120, w: int = 200, seed: int = 0):
    """A textured venue filmed by a camera panning right and down while zooming slightly, and an
    ellipse 'athlete' crossing it with its own motion; lighting drifts. Returns frames, masks."""
    rng = np.random.default_rng(seed)
    canvas = cv2.GaussianBlur(rng.integers(0, 255, (h * 3, w * 3, 3), dtype=np.uint8), (0, 0), 3)
    canvas = cv2.normalize(canvas, None, 0, 255, cv2.NORM_MINMAX)
    frames, masks = [], []
    for t in range(n):
        s = 1.0 + 0.004 * t
        cx, cy = w + 2.0 * t, h + 0.8 * t  # camera centre on the canvas
        M = np.array([[s, 0, w / 2 - s * cx], [0, s, h / 2 - s * cy]], np.float64)
        f = cv2.warpAffine(canvas, M, (w, h), flags=cv2.INTER_LINEAR)
        m = np.zeros((h, w), np.uint8)
        centre = (int(60 + 2.5 * t), int(60 + 0.5 * np.sin(t / 3) * 10))
        cv2.ellipse(m, centre, (9, 18), 15 * np.sin(t / 5), 0, 360, 1, -1)
        f[m > 0] = (40, 40, 220)
        f = np.clip(f.astype(np.float32) * (1 + 0.1 * np.sin(t / 7)), 0, 255).astype(np.uint8)
        frames.append(f)
        masks.append(m)
    return frames, masks


def iou(a, b) -> float:
    return float(np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum()))


def test_camera_motion_is_recovered():
    frames, _ = panning_video(6)
    g0, g1 = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames[2:4])
    M = fit_similarity(g1, g0)  # frame 3 -> frame 2: the camera moved by (2, 0.8) px
    assert M is not None
    centre = np.array([100.0, 60.0, 1.0])
    shift = (M @ centre)[:2] - centre[:2]
    assert np.allclose(shift, [2.0, 0.8], atol=0.5)


def test_background_hides_the_athlete_and_foreground_finds_it():
    frames, masks = panning_video()
    bm = BackgroundModel(frames)
    t = 20
    bg, count = bm.background(t)
    # behind the athlete the background estimate is the venue, not the athlete's red
    inside = masks[t] > 0
    assert np.abs(bg[inside] - np.array([40, 40, 220])).mean() > 40
    fg = bm.foreground(t)
    assert iou(fg, masks[t]) > 0.8


def test_segment_video_follows_the_athlete():
    frames, masks = panning_video()
    out, scores = segment_video(frames, BackgroundSegmenter(), FlowTracker(), mask_box(masks[0]))
    ious = [iou(o, m) for o, m in zip(out, masks, strict=True)]
    assert np.mean(ious[5:]) > 0.75, np.round(ious, 2)
    assert scores.max() <= 1.0


def test_segment_needs_the_whole_video_first():
    seg = BackgroundSegmenter()
    with pytest.raises(RuntimeError, match="begin_video"):
        seg.segment((0, np.zeros((8, 8, 3), np.uint8)), (0, 0, 4, 4), None)
