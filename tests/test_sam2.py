"""SAM 2 as a pseudo-mask and propagation engine (issue 24): a small SAM 2 from the package's own
modules and configs with random weights, through the library and the commands. It proves the
plumbing, not the quality."""

from __future__ import annotations

import csv
import json
import os
import sys

import cv2
import numpy as np
import pytest

from hmtools.errors import InputError
from hmtools.masks import ORIGIN_CORRECTED, ORIGIN_PROPAGATED, MaskStore
from hmtools.masks.validate import validate_store
from tests.test_propagate import _cli, _frames_and_store, _scene

if os.environ.get("HMTOOLS_REQUIRE_MODELS") != "1":
    pytest.importorskip("sam2", reason="the [sam2] extra is not installed")

from hmtools.annotation import sam2_video  # noqa: E402
from hmtools.annotation.sam2_video import (  # noqa: E402
    Sam2VideoSegmenter,
    build_predictor,
    init_state,
    small_sam2,
    write_small_sam2,
)


@pytest.fixture(scope="module")
def predictor():
    return small_sam2(128)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    return write_small_sam2(tmp_path_factory.mktemp("sam2"))


def test_init_state_has_the_keys_of_sam2s_own(predictor, tmp_path):
    frames, _ = _scene(n=3, h=64, w=80)
    for t, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{t:05d}.jpg"), f)
    real = predictor.init_state(str(tmp_path), offload_video_to_cpu=True, offload_state_to_cpu=True)
    ours = init_state(predictor, frames)
    assert set(ours) == set(real)
    assert (ours["video_height"], ours["video_width"], ours["num_frames"]) == (64, 80, 3)
    # the frames SAM 2 reads: same size and normalisation as its own loader (JPEG aside)
    a, b = ours["images"][1], real["images"][1]
    assert a.shape == b.shape and float((a - b).abs().mean()) < 0.1


def test_segment_clip_covers_every_frame_both_ways_with_scores(predictor):
    frames, truth = _scene(n=30)
    seg = Sam2VideoSegmenter(predictor)
    box = (20 + 2 * 12, 20 + 12, 40, 40)  # the square on frame 12
    masks, scores = seg.segment_clip(frames, box, 12)
    assert masks.shape == truth.shape and masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) <= {0, 1}
    # every frame went through SAM 2 (forward from 12 and backward from it): a score in (0, 1]
    assert np.all((scores > 0) & (scores <= 1)), scores
    # the same call again gives the same masks: no state is left behind between videos
    m2, s2 = seg.segment_clip(frames, box, 12)
    assert np.array_equal(masks, m2) and np.allclose(scores, s2)


def test_state_is_a_window_not_the_clip(predictor):
    """SAM 2's outputs are dropped once SAM 2 no longer looks at them: the state holds the same
    number of frames for a clip of 40 and one of 120."""
    peaks = []
    for n in (40, 120):
        rng = np.random.default_rng(n)
        frames = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(n)]
        seg = Sam2VideoSegmenter(predictor)
        seg.segment_clip(frames, (20, 20, 16, 16), 0)
        peaks.append(seg.peak_state_frames)
    assert peaks[0] == peaks[1] <= seg.keep + 1, peaks


def test_propagate_masks_keeps_corrections_and_conditions_on_them(predictor):
    from hmtools.annotation.propagate import propagate_video

    frames, truth = _scene(n=24)
    seg = Sam2VideoSegmenter(predictor)
    masks, scores = propagate_video(frames, {3: truth[3], 15: truth[15]}, seg)
    assert np.array_equal(masks[3], truth[3]) and np.array_equal(masks[15], truth[15])
    assert np.isnan(scores[3]) and np.isnan(scores[15])
    other = np.delete(scores, [3, 15])
    assert np.all((other > 0) & (other <= 1))
    # the conditioning frames are the corrections: a different correction changes the result
    moved = np.roll(truth[15], 30, axis=1)
    # (random weights: the masks may all be empty, the scores still read SAM 2's memory)
    added = []
    orig = predictor.add_new_mask
    predictor.add_new_mask = lambda st, frame_idx, obj_id, mask: (
        added.append((frame_idx, mask.copy())) or orig(st, frame_idx, obj_id, mask)
    )
    try:
        _, scores2 = propagate_video(frames, {3: truth[3], 15: moved}, seg)
    finally:
        del predictor.add_new_mask
    assert [f for f, _ in added] == [3, 15] and np.array_equal(added[1][1], moved != 0)
    assert not np.array_equal(np.delete(scores, [3, 15]), np.delete(scores2, [3, 15]))
    with pytest.raises(InputError, match="no corrected frame"):
        seg.propagate_masks(frames, {})


def test_pseudo_mask_cli_with_sam2(synth_small, small_files, tmp_path):
    ckpt, config = small_files
    out = tmp_path / "pm.h5"
    prompts = tmp_path / "p.csv"
    with MaskStore(synth_small / "Synth-HM.h5") as st:
        infos = list(st.videos())[:2]
        with open(prompts, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video", "x", "y", "w", "h", "frame"])
            for info in infos:  # a box on a middle frame: the masks run both ways from it
                d = st.read_layer(info.video_id, "gtm")
                k = len(d) // 2
                x, y, bw, bh = d.bbox[k].tolist()
                w.writerow([info.name, x, y, bw, bh, int(d.frame_index[k])])
    r = _cli(
        "pseudo-mask", synth_small / "frames", "--dataset", "finediving",
        "--annotations", synth_small / "Annotations", "--segmenter", "sam2",
        "--sam2-checkpoint", ckpt, "--sam2-config", config, "--device", "cpu",
        "--prompts", prompts, "--out", out, "-q",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "SAM 2 on the CPU" in r.output
    assert validate_store(out) == []
    with MaskStore(out) as st:
        assert len(list(st.videos())) == 8
        for info, d in st.iter_layer("pm"):
            assert len(d) == info.num_frames
            assert np.all((d.score > 0) & (d.score <= 1)), info.name
    assert (tmp_path / "pm.low_confidence.csv").exists()


def test_propagate_cli_with_sam2(small_files, tmp_path):
    ckpt, config = small_files
    root, truth = _frames_and_store(tmp_path)
    out = tmp_path / "out.h5"
    r = _cli(
        "propagate", tmp_path / "in.h5", "--frames-root", root, "--segmenter", "sam2",
        "--sam2-checkpoint", ckpt, "--sam2-config", config, "--device", "cpu",
        "--out", out, "-q",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "1 videos propagated" in r.output
    assert validate_store(out) == []
    with MaskStore(out) as s:
        d = s.read_layer(("v1",), "pm")
        assert d.frame_index.tolist() == list(range(24))
        assert d.origin[2] == d.origin[14] == ORIGIN_CORRECTED
        assert set(d.origin.tolist()) - {ORIGIN_CORRECTED} == {ORIGIN_PROPAGATED}
        m = d.decode(144, 192)
        assert np.array_equal(m[2], truth["v1"][2]) and np.array_equal(m[14], truth["v1"][14])


def test_checkpoint_and_config_errors_say_what_to_do(small_files, tmp_path):
    ckpt, config = small_files
    with pytest.raises(InputError) as e:
        build_predictor(None, tmp_path / "nope.pt")
    msg = str(e.value)
    assert "not found" in msg and "sam2.1_hiera_base_plus.pt" in msg
    assert "configs/sam2.1/sam2.1_hiera_b+.yaml" in msg
    with pytest.raises(InputError, match="--sam2-config is needed"):
        build_predictor(None, ckpt)  # not an official file name: which config?
    with pytest.raises(InputError, match="not found: a YAML file"):
        build_predictor("nonesuch", ckpt)
    with pytest.raises(InputError, match="not a checkpoint for sam2.1_hiera_t.yaml"):
        build_predictor("tiny", ckpt)  # the small weights do not fit the real tiny model
    r = _cli(
        "pseudo-mask", tmp_path, "--segmenter", "sam2", "--out", tmp_path / "x.h5", "-q",
    )  # fmt: skip
    assert r.exit_code == 1 and "needs --sam2-checkpoint" in r.output
    assert "sam2.1_hiera_large.pt" in r.output


def test_missing_sam2_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sam2", None)
    with pytest.raises(InputError, match=r"pip install 'hmtools\[sam2\]'"):
        sam2_video.config_path("tiny")


def test_prompts_with_a_frame(tmp_path):
    from hmtools.annotation.pseudo_mask import Prompt, load_prompts

    p = tmp_path / "p.json"
    p.write_text(json.dumps({"a": [1, 2, 3, 4], "b": {"box": [1, 2, 3, 4], "frame": 7}}))
    assert load_prompts(p) == {"a": Prompt((1, 2, 3, 4), None), "b": Prompt((1, 2, 3, 4), 7)}
    p.write_text(json.dumps([{"video": "c", "box": [1, 2, 3, 4], "frame": 2}]))
    assert load_prompts(p)["c"].frame == 2
    c = tmp_path / "p.csv"
    c.write_text("video,x,y,w,h,frame\na,1,2,3,4,\nb,1,2,3,4,5\n")
    assert load_prompts(c) == {"a": Prompt((1, 2, 3, 4), None), "b": Prompt((1, 2, 3, 4), 5)}
    c.write_text("video,x,y,w,h,frame\na,1,2,3,4,1.5\n")
    with pytest.raises(InputError, match="frame of a must be a frame number"):
        load_prompts(c)
