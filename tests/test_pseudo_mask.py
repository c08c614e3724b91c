from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hmtools.annotation.pseudo_mask import (
    find_athlete,
    parse_shard,
    plausible_correction,
    run_pseudo_mask,
    segment_video,
)
from hmtools.annotation.segmenters import SamSegmenter, small_sam
from hmtools.annotation.trackers import FlowTracker, box_iou, mask_box
from hmtools.cli import main
from hmtools.errors import InputError
from hmtools.masks import MaskStore, merge_stores, validate_store
from tests.conftest import hmtools_under_torchrun
from tests.test_trackers import _scene


def _first_boxes(root):
    out = {}
    with MaskStore(root / "Synth-HM.h5") as st:
        for info, d in st.iter_layer("gtm"):
            m = d.decode(info.height, info.width)
            k = next(i for i in range(len(m)) if m[i].any())
            out[info.name] = list(mask_box(m[k]))
    return out


def _pm_args(root) -> list[str]:
    """``hmtools pseudo-mask`` on a synthetic FineDiving-layout dataset."""
    return [
        "pseudo-mask",
        str(root / "frames"),
        "--dataset",
        "finediving",
        "--annotations",
        str(root / "Annotations"),
    ]


@pytest.mark.slow
def test_cli_on_synthetic_dataset_with_shards_and_resume(synth_small, tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(_first_boxes(synth_small)))
    r = CliRunner()
    outs = []
    for k in range(2):
        res = r.invoke(
            main,
            [
                *_pm_args(synth_small),
                "--prompts",
                str(prompts),
                "--shard",
                f"{k}/2",
                "--out",
                str(tmp_path / "pm.h5"),
                "-q",
            ],
        )
        assert res.exit_code == 0, res.output
        assert "weight-free" in res.output
        outs.append(tmp_path / f"pm.shard{k}of2.h5")
    merge_stores(outs, tmp_path / "pm.h5", progress=False)
    assert validate_store(tmp_path / "pm.h5") == []
    with MaskStore(tmp_path / "pm.h5") as pm, MaskStore(synth_small / "Synth-HM.h5") as gt:
        assert sorted(pm.video_ids()) == sorted(gt.video_ids())
        for vid in gt.video_ids():  # a mask for every frame, no gaps
            assert pm.frame_index(vid, "pm").tolist() == gt.frame_index(vid, "gtm").tolist()
            s = pm.read_layer(vid, "pm").score
            assert np.all((s >= 0) & (s <= 1))
    low = (tmp_path / "pm.shard0of2.low_confidence.csv").read_text().splitlines()
    assert low[0] == "video,frame,score"
    res = r.invoke(
        main,
        [
            *_pm_args(synth_small),
            "--shard",
            "0/2",
            "--out",
            str(tmp_path / "pm.h5"),
            "--resume",
            "-q",
        ],
    )
    assert res.exit_code == 0 and "already done" in res.output


def test_broken_video_is_logged_and_the_run_goes_on(tmp_path):
    root = tmp_path / "videos"
    for name in ("good", "bad"):
        d = root / name
        d.mkdir(parents=True)
        for t in range(6):
            f = np.full((64, 96, 3), 90, np.uint8)
            cv2.circle(f, (20 + 5 * t, 32), 8, (0, 0, 255), -1)
            cv2.imwrite(str(d / f"{t:05d}.jpg"), f)
    (root / "bad" / "00003.jpg").write_bytes(b"broken")
    res = CliRunner().invoke(
        main,
        [
            "pseudo-mask",
            str(root),
            "--out",
            str(tmp_path / "pm.h5"),
            "--segmenter",
            "grabcut",
            "-q",
        ],
    )
    assert res.exit_code == 3
    assert "bad: " in res.output and "00003.jpg" in res.output
    fails = (tmp_path / "pm.failures.csv").read_text()
    assert "bad" in fails
    with MaskStore(tmp_path / "pm.h5") as st:
        assert st.video_ids() == [("good",)]
        assert len(st.frame_index(("good",), "pm")) == 6


def test_sam_code_path_with_a_small_random_sam(tmp_path):
    seg = SamSegmenter(small_sam(), "cpu", batch_size=2)
    frames = [
        np.random.default_rng(i).integers(0, 255, (72, 128, 3), dtype=np.uint8) for i in range(3)
    ]
    states = seg.encode(frames)
    assert len(states) == 3
    m, s = seg.segment(states[0], (30, 10, 40, 50), None)
    assert m.shape == (72, 128) and 0 <= s <= 1.5
    m2, _ = seg.segment(states[1], (30, 10, 40, 50), (states[0], np.ones((72, 128), np.uint8)))
    assert m2.shape == (72, 128)
    torch.save(small_sam().state_dict(), tmp_path / "sam_tiny.pth")
    with pytest.raises(InputError, match="not a vit_b SAM checkpoint"):
        SamSegmenter.from_checkpoint(tmp_path / "sam_tiny.pth", "vit_b")
    with pytest.raises(InputError, match="never downloads"):
        SamSegmenter.from_checkpoint(tmp_path / "missing.pth")


def test_sam_encodes_the_next_chunk_while_tracking_with_the_same_result():
    """SamSegmenter's encoder runs ahead in a worker thread; the masks and scores are
    those of encoding inline."""
    from hmtools.annotation.pseudo_mask import segment_video
    from hmtools.annotation.trackers import FlowTracker

    frames = []
    for t in range(9):
        f = np.full((72, 128, 3), 90, np.uint8)
        cv2.rectangle(f, (20 + 4 * t, 12), (50 + 4 * t, 60), (20, 30, 210), -1)
        frames.append(f)
    box = (20, 12, 31, 49)
    assert not SamSegmenter(small_sam(), "cpu").overlap_encode  # on a GPU only, by default
    seg_a = SamSegmenter(small_sam(), "cpu", batch_size=2, overlap_encode=True)
    calls = []
    encode = seg_a.encode
    seg_a.encode = lambda fr: calls.append(len(fr)) or encode(fr)
    ma, sa = segment_video(frames, seg_a, FlowTracker(), box, chunk=4)
    seg_b = SamSegmenter(small_sam(), "cpu", batch_size=2)
    seg_b.overlap_encode = False
    mb, sb = segment_video(frames, seg_b, FlowTracker(), box, chunk=4)
    assert calls == [4, 4, 1]
    np.testing.assert_array_equal(ma, mb)
    np.testing.assert_allclose(sa, sb)


def test_encoder_runs_ahead_chunks_of_one_batch():
    """With ``overlap_encode`` the frames are encoded one encoder batch at a time, up to
    ``ahead`` chunks in front of the one being tracked (never more), so the encoder does not wait
    for the tracker; every frame is segmented once, in order."""
    import time

    from hmtools.annotation.pseudo_mask import segment_video
    from hmtools.annotation.trackers import FlowTracker

    class Slow:
        name, overlap_encode, batch_size = "slow", True, 2

        def __init__(self):
            self.encoded: list[int] = []
            self.seen_when_segmenting: list[int] = []

        def encode(self, frames):
            self.encoded.append(len(frames))
            return [f[0, 0, 0] for f in frames]

        def segment(self, state, box, prev):
            time.sleep(0.1)  # a slow decoder: the encoder gets ahead if it may
            self.seen_when_segmenting.append(len(self.encoded))
            m = np.zeros((40, 60), np.uint8)
            m[10:30, 10:30] = 1
            return m, float(state)

    frames = [np.full((40, 60, 3), t, np.uint8) for t in range(9)]
    seg = Slow()
    _, scores = segment_video(frames, seg, FlowTracker(), (10, 10, 20, 20), ahead=2)
    assert seg.encoded == [2, 2, 2, 2, 1]
    assert scores.tolist() == list(range(9))  # each frame's own state, in order
    # while chunk k is segmented at most k + 1 + ahead chunks have been asked for
    for t, n in enumerate(seg.seen_when_segmenting):
        assert n <= t // 2 + 1 + 2, (t, n)
    assert seg.seen_when_segmenting[1] == 3  # by the end of frame 1, chunks 0-2 were encoded


def test_sam_pipeline_end_to_end(tmp_path):
    root = tmp_path / "v" / "clip"
    root.mkdir(parents=True)
    for t in range(5):
        f = np.full((72, 128, 3), 100, np.uint8)
        cv2.rectangle(f, (30 + 3 * t, 10), (60 + 3 * t, 60), (10, 10, 200), -1)
        cv2.imwrite(str(root / f"{t:03d}.png"), f)
    seg = SamSegmenter(small_sam(), "cpu")
    encoded = []  # frames given to the image encoder
    encode = seg.encode
    seg.encode = lambda fr: encoded.extend(f.tobytes() for f in fr) or encode(fr)
    rep = run_pseudo_mask(tmp_path / "v", tmp_path / "pm.h5", seg, progress=False)
    assert rep.videos_done == 1 and rep.frames == 5
    # no prompts: the finder encodes frame 0 for its candidates, and the video is not encoded
    # again for it -- each frame goes through the (costly) encoder once
    assert len(encoded) == 5 and len(set(encoded)) == 5
    with MaskStore(tmp_path / "pm.h5") as st:
        assert st.frame_index(("clip",), "pm").tolist() == [0, 1, 2, 3, 4]


def test_shard_and_finder(monkeypatch):
    assert parse_shard("1/4") == (1, 4)
    with pytest.raises(InputError):
        parse_shard("4/4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")
    assert parse_shard(None) == (3, 8)
    frames = []
    for t in range(8):
        f = np.full((100, 160, 3), 80, np.uint8)
        cv2.circle(f, (40 + 6 * t, 50), 10, (255, 255, 255), -1)
        frames.append(f)
    x, y, w, h = find_athlete(frames)
    assert 25 <= x + w / 2 <= 95 and 30 <= y + h / 2 <= 70


@pytest.mark.slow
def test_the_same_command_under_torchrun_shards_by_rank(synth_small, tmp_path):
    import os
    import subprocess

    r = subprocess.run(
        [
            *hmtools_under_torchrun(2, 30500),
            *_pm_args(synth_small),
            "--segmenter",
            "motion",
            "--out",
            str(tmp_path / "pm.h5"),
            "-q",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    shards = [tmp_path / f"pm.shard{k}of2.h5" for k in range(2)]
    ids = []
    for p in shards:
        with MaskStore(p) as st:
            ids.append(set(st.video_ids()))
    assert ids[0] and ids[1] and not ids[0] & ids[1]  # each rank did its own half
    merge_stores(shards, tmp_path / "pm.h5", progress=False)
    with MaskStore(tmp_path / "pm.h5") as pm, MaskStore(synth_small / "Synth-HM.h5") as gt:
        assert sorted(pm.video_ids()) == sorted(gt.video_ids())


def _avi(path, frames: int, w: int = 64, h: int = 48) -> None:
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    assert wr.isOpened()
    for t in range(frames):
        f = np.full((h, w, 3), 90, np.uint8)
        cv2.circle(f, (10 + t % 40, 24), 6, (0, 0, 255), -1)
        wr.write(f)
    wr.release()


def test_a_video_too_long_for_memory_is_a_logged_failure_not_a_crash(tmp_path, monkeypatch):
    import hmtools.annotation.pseudo_mask as pm

    root = tmp_path / "videos"
    root.mkdir()
    _avi(root / "clip.avi", 20)  # 20 x 64 x 48 x 4 B = 0.23 MiB
    _avi(root / "broadcast.avi", 300)  # 3.5 MiB
    res = CliRunner().invoke(
        main,
        ["pseudo-mask", str(root), "--out", str(tmp_path / "pm.h5"), "--segmenter", "motion"]
        + ["--max-video-gb", str(2 / 1024), "-q"],
    )
    assert res.exit_code == 3, res.output
    fails = (tmp_path / "pm.failures.csv").read_text()
    assert "broadcast.avi: 300 frames of 64x48" in fails and "cut it into clips" in fails
    with MaskStore(tmp_path / "pm.h5") as st:
        assert st.video_ids() == [("clip",)] and len(st.frame_index(("clip",), "pm")) == 20

    real = cv2.VideoCapture

    class NoCount:  # a container that does not say how many frames it has
        def __init__(self, path):
            self.cap = real(path)

        def get(self, prop):
            return 0 if prop == cv2.CAP_PROP_FRAME_COUNT else self.cap.get(prop)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(pm.cv2, "VideoCapture", NoCount)
    job = pm.list_videos(root)[0]
    assert job.video_path.name == "broadcast.avi"
    with pytest.raises(InputError, match="at least 256 frames"):
        job.read(2 * 2**20)
    assert len(job.read(8 * 2**20)[1]) == 300
    folder = pm.VideoJob(("f",), [(0, root / "x.png")])
    cv2.imwrite(str(root / "x.png"), np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(InputError, match="x.png|videos"):
        folder.read(100)


def test_finder_checks_motion_candidates_with_the_segmenter():
    """The diver stands still but for one arm; a bystander stands by a blinking light. Motion
    alone boxes the arm; the segmenter, asked about boxes around the motion, finds the whole
    diver, and its more confident mask of the bystander (away from the main motion) is not
    taken."""
    h, w = 120, 200
    body = (120, 30, 20, 70)  # x, y, w, h
    person = (112, 16, 36, 84)  # the diver's mask: the body and the arm
    bystander = (20, 40, 20, 60)
    frames = []
    for t in range(13):
        f = np.full((h, w, 3), 60, np.uint8)
        for x, y, bw, bh in (body, bystander):
            cv2.rectangle(f, (x, y), (x + bw - 1, y + bh - 1), (200, 180, 160), -1)
        cv2.circle(f, (130 + (8 if t % 2 else -8), 26), 5, (40, 40, 230), -1)  # the waving arm
        if t % 2:  # and a blinking light beside the bystander: motion, but not the athlete
            cv2.circle(f, (48, 60), 2, (90, 90, 90), -1)
        frames.append(f)

    class Oracle:  # a segmenter that finds a person only where its box overlaps one
        name = "oracle"

        def encode(self, fs):
            return list(fs)

        def segment(self, state, box, prev):
            out = np.zeros((h, w), np.uint8)
            for (x, y, bw, bh), score in ((bystander, 0.99), (person, 0.8)):
                if box_iou(box, (x, y, bw, bh)) > 0:
                    out[y : y + bh, x : x + bw] = 1
                    return out, score
            return out, 0.0

    mx, my, mw, mh = find_athlete(frames)
    assert mh < 30  # motion alone: the arm
    box = find_athlete(frames, segmenter=Oracle())
    assert box_iou(box, person) > 0.9


def test_finder_keeps_both_synchronised_divers():
    h, w = 120, 200
    people = [(60, 16, 30, 84), (110, 16, 30, 84)]  # two divers side by side
    frames = []
    for t in range(13):
        f = np.full((h, w, 3), 60, np.uint8)
        for x, y, bw, bh in people:
            cv2.rectangle(f, (x, y + 14), (x + bw - 1, y + bh - 1), (200, 180, 160), -1)
            cv2.circle(f, (x + 15 + (6 if t % 2 else -6), y + 8), 5, (40, 40, 230), -1)
        frames.append(f)

    class Oracle:  # one person per box: the one it overlaps most
        name = "oracle"

        def encode(self, fs):
            return list(fs)

        def segment(self, state, box, prev):
            out = np.zeros((h, w), np.uint8)
            ious = [box_iou(box, p) for p in people]
            if max(ious) > 0:
                x, y, bw, bh = people[int(np.argmax(ious))]
                out[y : y + bh, x : x + bw] = 1
            return out, 0.9 if max(ious) > 0 else 0.0

    box = find_athlete(frames, segmenter=Oracle())
    assert box_iou(box, (60, 16, 80, 84)) > 0.9


def test_a_tracked_box_much_too_large_shrinks_back_to_the_mask():
    """The tracked box starts three times too large each way (as after a mask that leaked onto
    the board); the segmenter's masks are right and lie inside it, so they correct it: from the
    next frame on the segmenter is asked about the athlete's own box. (The old rule -- only masks
    within 4x of the tracked box's area -- refused them all, and the box stayed 9x too large.)"""
    scene = [_scene(t) for t in range(8)]
    frames, truth = [f for f, _ in scene], [m for _, m in scene]
    x, y, w, h = mask_box(truth[0])
    asked = []

    class Oracle:  # the athlete's true mask wherever the box overlaps it
        name = "oracle"

        def encode(self, fs):
            return list(range(len(fs)))

        def segment(self, t, box, prev):
            asked.append(box)
            hit = box_iou(box, mask_box(truth[t])) > 0
            return (truth[t] if hit else np.zeros_like(truth[t])), 0.9

    big = (x - w, y - h, 3 * w, 3 * h)
    segment_video(frames, Oracle(), FlowTracker(), big)
    assert box_iou(asked[0], mask_box(truth[0])) < 0.15
    for t in range(1, 8):
        assert box_iou(asked[t], mask_box(truth[t])) > 0.7, (t, asked[t], mask_box(truth[t]))


def test_which_masks_may_correct_the_tracked_box():
    tracked = (100.0, 100.0, 90.0, 150.0)
    assert plausible_correction((110, 110, 60, 120), tracked)  # similar size
    assert plausible_correction((120, 130, 30, 50), tracked)  # 1/9 of it, inside: a tight mask
    assert not plausible_correction((120, 130, 8, 10), tracked)  # a speck
    assert not plausible_correction((300, 300, 30, 50), tracked)  # small and elsewhere
    assert not plausible_correction((40, 60, 300, 400), tracked)  # a leak 9x the box


def test_segment_from_a_middle_frame_runs_both_ways():
    """A prompt on frame 12: the tracker follows the square forward to the end and backward to
    frame 0 (a fresh tracker each way, each starting on the prompt frame)."""
    from hmtools.annotation.pseudo_mask import segment_from
    from hmtools.annotation.trackers import mask_box
    from tests.test_propagate import _scene

    frames, truth = _scene(n=24)
    seen: list[int] = []

    class BoxSegmenter:  # the mask is the box it is given; records which frames it saw
        def encode(self, fr):
            return [int(np.argmax([np.array_equal(f, g) for g in frames])) for f in fr]

        def segment(self, state, box, prev):
            seen.append(state)
            x, y, w, h = (int(round(v)) for v in box)
            m = np.zeros(truth.shape[1:], np.uint8)
            m[y : y + h, x : x + w] = 1
            return m, 0.9

    box = mask_box(truth[12])
    masks, scores = segment_from(frames, BoxSegmenter(), "flow", box, 12)
    assert masks.shape == truth.shape and np.all(scores == np.float32(0.9))
    assert seen == list(range(12, 24)) + list(range(12, -1, -1))
    ious = [
        np.count_nonzero(masks[t] & truth[t]) / np.count_nonzero(masks[t] | truth[t])
        for t in (0, 6, 18, 23)
    ]
    assert min(ious) > 0.7, ious
