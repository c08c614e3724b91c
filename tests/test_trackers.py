"""The tracker must follow the athlete on its own, and find it again after losing it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hmtools.annotation.trackers import (
    FlowTracker,
    _ncc,
    _ncc_coarse_to_fine,
    available_trackers,
    box_iou,
    make_tracker,
    mask_box,
)
from hmtools.datasets.figure import Pose, draw_figure, joints


def _scene(t: int, hidden: bool = False, h: int = 240, w: int = 360):
    """A textured background and a textured figure moving diagonally; returns frame, mask."""
    rng = np.random.default_rng(123)  # the same background every frame
    bg = (rng.random((h, w, 3)) * 60 + 60).astype(np.uint8)
    frame = bg.copy()
    mask = np.zeros((h, w), np.uint8)
    if not hidden:
        c = (80 + 4 * t, 70 + 2 * t)
        j = joints(Pose(hip=20, knee=10, shoulder=90), c, 90, 10 + 2 * t)
        draw_figure(frame, mask, j, 90, skin=(40, 200, 230), suit=(200, 30, 30))
        tex = np.random.default_rng(7).integers(0, 60, (h, w, 3)).astype(np.uint8)
        frame[mask > 0] = np.clip(frame[mask > 0].astype(int) - tex[mask > 0], 0, 255)
    return frame, mask


def test_tracks_through_empty_masks():
    f0, m0 = _scene(0)
    tr = FlowTracker()
    tr.init(f0, mask_box(m0))
    for t in range(1, 11):  # the segmenter returns nothing for 10 frames
        f, m = _scene(t)
        box, _ = tr.update(f)
        tr.correct(np.zeros_like(m))
        assert box_iou(box, mask_box(m)) >= 0.5, (t, box, mask_box(m))


def test_reacquires_after_occlusion():
    f0, m0 = _scene(0)
    tr = FlowTracker(lost_after=2, empty_lost_after=3)
    tr.init(f0, mask_box(m0))
    for t in range(1, 4):
        f, m = _scene(t)
        tr.update(f)
        tr.correct(m)
    for t in range(4, 9):  # hidden for 5 frames
        f, _ = _scene(t, hidden=True)
        tr.update(f)
        tr.correct(np.zeros(f.shape[:2], np.uint8))
    assert tr.lost
    found = False
    for t in range(9, 14):
        f, m = _scene(t)
        box, score = tr.update(f)
        if not tr.lost and box_iou(box, mask_box(m)) >= 0.5:
            found = True
            break
    assert found


def _lost_and_back(tr: FlowTracker, hidden: range, back: int) -> tuple[list[int], int, float]:
    """Track 3 frames, hide the athlete for ``hidden`` frames, show it again for ``back``;
    returns the frames on which the tracker searched, the first frame it is not lost after the
    return and its box's IoU with the truth then."""
    f0, m0 = _scene(0)
    tr.init(f0, mask_box(m0))
    searches: list[int] = []
    match, t = tr._match, 0

    def counting(gray, window):
        searches.append(t)
        return match(gray, window)

    tr._match = counting  # type: ignore[method-assign]
    for t in range(1, hidden.stop + back):
        f, m = _scene(t, hidden=t in hidden)
        box, _ = tr.update(f)
        if t >= hidden.stop and not tr.lost:
            return searches, t, box_iou(box, mask_box(m))
        tr.correct(m if t < hidden.start else np.zeros(f.shape[:2], np.uint8))
    return searches, -1, 0.0


def test_long_absence_searches_less_but_still_reacquires():
    """Lost for long (under water after the entry), the tracker searches on every frame for
    ``patient_for`` frames, then on every ``retry_every``-th; it finds the athlete again at most
    ``retry_every - 1`` frames later than a tracker searching on every frame, as well."""
    kw: dict = dict(lost_after=2, empty_lost_after=3)
    hidden = range(4, 16)
    every, t_every, iou_every = _lost_and_back(FlowTracker(patient_for=10**9, **kw), hidden, 6)
    some, t_some, iou_some = _lost_and_back(
        FlowTracker(patient_for=2, retry_every=3, **kw), hidden, 6
    )
    first = some[0]
    assert every[: len(hidden) - 3] == list(range(first, first + len(hidden) - 3)), every
    assert some[:2] == [first, first + 1], some
    gaps = np.diff(some[1:])
    assert len(gaps) >= 2 and (gaps == 3).all(), some
    assert t_every >= hidden.stop and t_every <= t_some <= t_every + 2, (t_every, t_some)
    assert iou_some >= iou_every - 0.1 and iou_some >= 0.4, (iou_every, iou_some)


def test_opencv_trackers_offered():
    names = available_trackers()
    assert "flow" in names and "mil" in names
    f0, m0 = _scene(0)
    tr = make_tracker("mil")
    tr.init(f0, mask_box(m0))
    box, _ = tr.update(_scene(1)[0])
    assert len(box) == 4


def test_masked_correlation_matches_opencv():
    """The tracker's masked template search gives OpenCV's masked TM_CCOEFF_NORMED values and
    corner, on both of its paths (direct when the image is barely larger than the template,
    OpenCV's correlation otherwise)."""
    rng = np.random.default_rng(4)
    image = cv2.GaussianBlur(rng.integers(0, 256, (240, 320), dtype=np.uint8), (5, 5), 0)
    for (x, y), (h, w), crop, direct in (
        ((7, 11), (40, 28), None, False),
        ((201, 150), (64, 40), None, False),
        ((40, 30), (50, 90), (20, 15, 70, 115), True),  # 21 x 26 positions
        ((60, 50), (100, 100), (40, 30, 150, 150), False),  # barely larger, but 26 M products
    ):
        templ = image[y : y + h, x : x + w].copy()
        mask = np.zeros_like(templ)
        cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 2, h // 2 - 2), 0, 0, 360, 255, -1)
        img, ox, oy = image, 0, 0
        if crop:
            ox, oy = crop[0], crop[1]
            img = image[oy : oy + crop[2], ox : ox + crop[3]]
        ref = np.nan_to_num(cv2.matchTemplate(img, templ, cv2.TM_CCOEFF_NORMED, mask=mask))
        positions = (img.shape[0] - h + 1) * (img.shape[1] - w + 1)
        small = img.shape[0] < 2 * h or img.shape[1] < 2 * w
        assert (small and positions * h * w <= 4_000_000) == direct  # each path is exercised
        score, loc = _ncc(img, templ, mask)
        assert loc == (x - ox, y - oy) and score == pytest.approx(float(ref.max()), abs=1e-4)


def test_coarse_to_fine_search_finds_what_the_full_search_finds():
    """The re-acquisition's half-resolution search, refined at full resolution, lands on the
    full search's corner and score for a figure-like template in a textured frame (and small
    templates take the full search)."""
    rng = np.random.default_rng(9)
    image = cv2.GaussianBlur(rng.integers(0, 256, (256, 455), dtype=np.uint8), (7, 7), 0)
    for (x, y), (h, w) in (((40, 30), (90, 50)), ((301, 121), (120, 64)), ((200, 9), (40, 33))):
        templ = image[y : y + h, x : x + w].copy()
        templ = np.clip(templ.astype(int) + rng.integers(-8, 9, templ.shape), 0, 255)
        templ = templ.astype(np.uint8)  # the athlete looks a little different now
        mask = np.zeros_like(templ)
        cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 2, h // 2 - 2), 0, 0, 360, 255, -1)
        full = _ncc(image, templ, mask)
        fast = _ncc_coarse_to_fine(image, templ, mask)
        assert full[1] == (x, y) and fast[1] == (x, y), (full, fast)
        assert fast[0] == pytest.approx(full[0], abs=1e-5)
    small = image[50:66, 60:80].copy()  # under 24 px: searched at full resolution
    m = np.full_like(small, 255)
    assert _ncc_coarse_to_fine(image, small, m) == _ncc(image, small, m)
    # a 720p frame's athlete: two and three halvings, each refined within 1 px
    image = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280), dtype=np.uint8), (9, 9), 0)
    for (x, y), (h, w) in (
        ((140, 80), (250, 140)),
        ((900, 401), (180, 100)),
        ((601, 50), (100, 60)),
    ):
        templ = image[y : y + h, x : x + w].copy()
        templ = np.clip(templ.astype(int) + rng.integers(-8, 9, templ.shape), 0, 255)
        templ = templ.astype(np.uint8)
        mask = np.zeros_like(templ)
        cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 2, h // 2 - 2), 0, 0, 360, 255, -1)
        full, fast = _ncc(image, templ, mask), _ncc_coarse_to_fine(image, templ, mask)
        assert full[1] == (x, y) and fast[1] == (x, y), (full, fast)
        # float32 sums over ~35k template pixels (a DFT over the frame, direct on the window)
        assert fast[0] == pytest.approx(full[0], abs=1e-4)


def test_gray_crops_are_the_crops_converted_once(monkeypatch):
    import hmtools.annotation.trackers as trk

    converted: list[int] = []
    real = trk.to_gray

    def counting(frame, x0=0, y0=0, x1=None, y1=None):
        out = real(frame, x0, y0, x1, y1)
        converted.append(out.size)
        return out

    monkeypatch.setattr(trk, "to_gray", counting)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(4)]
    cache = trk.GrayCrops(slack=8, keep=3)
    for _ in range(300):
        f = frames[int(rng.integers(4))]
        x0, y0 = int(rng.integers(0, 150)), int(rng.integers(0, 80))
        x1, y1 = int(rng.integers(x0 + 1, 161)), int(rng.integers(y0 + 1, 91))
        got = cache.get(f, x0, y0, x1, y1)
        want = cv2.cvtColor(np.ascontiguousarray(f[y0:y1, x0:x1]), cv2.COLOR_BGR2GRAY)
        np.testing.assert_array_equal(got, want)
    # a region inside the one just converted (the next LK window, the box) is a slice of it
    converted.clear()
    cache.get(frames[0], 40, 20, 100, 70)
    cache.get(frames[0], 45, 25, 95, 65)
    cache.get(frames[0], 34, 14, 106, 76)  # within the slack
    assert len(converted) == 1
    cache.get(frames[1], 45, 25, 95, 65)  # another frame is converted, never mixed up
    cache.get(frames[0].copy(), 45, 25, 95, 65)  # the same pixels in another array, too
    assert len(converted) == 3


def _track_with_occlusion(tr: FlowTracker, up: int) -> list[tuple]:
    """Boxes and scores of ``tr`` over the scene enlarged ``up`` times (pixel blocks): followed
    with masks, hidden for 5 frames (lost), then searched for again."""
    kw = {"interpolation": cv2.INTER_NEAREST}
    out = []
    for t in range(14):
        f, m = _scene(t, hidden=4 <= t < 9)
        f, m = cv2.resize(f, None, fx=up, fy=up, **kw), cv2.resize(m, None, fx=up, fy=up, **kw)
        if t == 0:
            tr.init(f, mask_box(m))
            continue
        box, score = tr.update(f)
        out.append((tuple(round(v, 3) for v in box), round(score, 3), tr.lost))
        tr.correct(m if t < 4 else np.zeros_like(m))
    return out


def test_large_frames_are_tracked_at_the_working_height():
    """A frame ``f`` times the working height is tracked on its ``f`` x ``f`` pixel blocks: on a
    scene enlarged 3x the boxes are exactly 3x those on the scene itself, through tracking,
    being lost and re-acquiring (any coordinate not converted between the two would break
    this). By default frames of any size are tracked at full resolution."""
    kw: dict = dict(work_height=240, lost_after=2, empty_lost_after=3)
    small = _track_with_occlusion(FlowTracker(**kw), 1)
    large = _track_with_occlusion(FlowTracker(**kw), 3)
    assert any(lost for *_, lost in small) and not small[-1][2]  # lost, then found again
    for (b1, s1, l1), (b3, s3, l3) in zip(small, large, strict=True):
        assert np.allclose(np.array(b3), 3 * np.array(b1), atol=0.01), (b1, b3)
        assert (s1, l1) == (s3, l3)
    full = FlowTracker(lost_after=2, empty_lost_after=3)
    _track_with_occlusion(full, 3)
    assert full._f == 1
