from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from hmtools.annotation import blazepose
from hmtools.annotation.trackers import mask_box
from tests.conftest import shared_path


def test_install_model_from_a_local_wheel(tmp_path, monkeypatch):
    wheel = tmp_path / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("mediapipe/modules/pose_landmark/pose_landmark_full.tflite", b"model-bytes")
    monkeypatch.setenv("HMTOOLS_MODELS", str(tmp_path / "models"))
    p = blazepose.install_model(wheel)
    assert p.read_bytes() == b"model-bytes" and blazepose.model_path() == p


def _need_model():
    if blazepose.model_path() is None:
        if os.environ.get("HMTOOLS_REQUIRE_MODELS") == "1":
            pytest.fail("CI must test the BlazePose segmenter: run `hmtools install-models`")
        pytest.skip("BlazePose model not installed (hmtools install-models)")


def test_blazepose_segments_a_real_person():
    _need_model()
    root = shared_path("davis-person", "dance-twirl")
    seg = blazepose.BlazePoseSegmenter()
    ious = []
    for i in (0, 30, 60, 89):
        f = cv2.imread(str(root / "JPEGImages" / f"{i:05d}.jpg"))
        g = cv2.imread(str(root / "Annotations" / f"{i:05d}.png"), 0) > 127
        m, s = seg.segment(f, mask_box(g), None)
        inter, union = np.logical_and(m, g).sum(), np.logical_or(m, g).sum()
        ious.append(inter / union)
        assert 0 <= s <= 1
    assert np.mean(ious) > 0.7, ious


def test_blazepose_sees_nobody_in_an_empty_scene():
    _need_model()
    seg = blazepose.BlazePoseSegmenter()
    frame = np.full((240, 320, 3), 120, np.uint8)
    m, s = seg.segment(frame, (100, 60, 80, 120), None)
    assert s < 0.5 and not m.any()


def test_doubtful_masks_are_kept_only_where_the_tracker_agrees():
    """Below the presence threshold a mask survives only as the parts touching the tracker box
    that fill it and line up with it."""
    m = np.zeros((100, 100), np.uint8)
    m[20:60, 30:50] = 1  # the diver, in the box
    m[80:95, 80:95] = 1  # a splash elsewhere
    kept = blazepose.agreeing_parts(m, (28, 18, 24, 44))
    assert kept[20:60, 30:50].all() and not kept[80:, 80:].any()
    assert not blazepose.agreeing_parts(m, (0, 0, 90, 90)).any()  # a sliver of a big box
    assert not blazepose.agreeing_parts(m, (60, 0, 30, 30)).any()  # nothing touches the box
    edge = np.zeros((100, 100), np.uint8)
    edge[0:40, 0:30] = 1  # touches the box but lies mostly beside it
    assert not blazepose.agreeing_parts(edge, (25, 10, 30, 40)).any()


def test_logits_are_warped_back_onto_the_region_only():
    """The model's logits are warped back onto the box's square region, not the whole frame:
    the same mask as warping onto the frame (up to sub-LSB interpolation differences), also
    for regions cut by the frame's edges."""
    _need_model()
    root = shared_path("davis-person", "dance-twirl")
    seg = blazepose.BlazePoseSegmenter()
    frame = cv2.imread(str(root / "JPEGImages" / "00030.jpg"))
    h, w = frame.shape[:2]
    total = differ = 0
    for box in ((300, 60, 160, 380), (-40, -30, 120, 200), (760, 400, 150, 120), (5, 5, 8, 8)):
        m, _, logits = seg._run(frame, box, 1.35)
        x, y, bw, bh = box
        cx, cy, side = x + bw / 2, y + bh / 2, max(bw, bh, 8.0) * 1.35
        k = 256 / side
        M = np.array([[k, 0, 128 - cx * k], [0, k, 128 - cy * k]], np.float64)
        full = cv2.warpAffine(
            logits, cv2.invertAffineTransform(M), (w, h), flags=cv2.INTER_LINEAR, borderValue=-30.0
        )
        total += int((full > 0).sum())
        differ += int(((full > 0) != (m > 0)).sum())
    assert total > 10_000 and differ <= total * 1e-4, (differ, total)


REAL_BOXES = Path(__file__).parent / "data" / "real_diving_boxes.json"


def test_pseudo_masks_follow_real_divers_from_the_command_line(tmp_path):
    """`hmtools pseudo-mask` on real broadcast frames (../shared/data/real-diving: three dives),
    no prompts: the finder has to box each diver on the board and the tracker follow them
    through the dive while the camera pans. At the 21 hand-boxed frames (every fifth;
    tests/data/real_diving_boxes.json) the mask's box matches the diver's: mean IoU >= 0.62 and
    IoU >= 0.5 on at least 14. Before a tight mask could shrink an inflated tracked box
    (`plausible_correction`) this run measured 0.54 and 12 of 21 (0.70 and 16 after; 0.74 and
    17 with the 1.5x-only wider BlazePose region)."""
    from click.testing import CliRunner

    from hmtools.annotation.trackers import box_iou
    from hmtools.cli import main
    from hmtools.masks import MaskStore

    _need_model()
    src = shared_path("real-diving")
    dives = json.loads(REAL_BOXES.read_text())["dives"]
    for name, d in dives.items():
        (tmp_path / "root" / name).mkdir(parents=True)
        for t, i in enumerate(range(d["first"], d["last"] + 1)):
            (tmp_path / "root" / name / f"{t:05d}.jpg").symlink_to(src / f"finediv{i:05d}.jpg")
    out = tmp_path / "pm.h5"
    r = CliRunner().invoke(main, ["pseudo-mask", str(tmp_path / "root"), "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    ious = {}
    with MaskStore(out) as st:
        for name, d in dives.items():
            _, masks = st.read_masks([name], "pm")
            assert len(masks) == d["last"] + 1 - d["first"]
            for t, box in d["boxes"].items():
                mb = mask_box(masks[int(t)])
                ious[name, int(t)] = 0.0 if mb is None else round(box_iou(mb, box), 2)
    assert len(ious) == 21
    good = sum(v >= 0.5 for v in ious.values())
    assert np.mean(list(ious.values())) >= 0.62 and good >= 14, ious
