from __future__ import annotations

import os
import zipfile

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
