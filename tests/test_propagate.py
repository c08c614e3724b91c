"""The correction loop: review-queue chooses frames, propagate carries corrections."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from hmtools.annotation.propagate import propagate_video
from hmtools.annotation.review import QueueModel, parse_budget, read_queue, review_queue
from hmtools.cli import main
from hmtools.errors import InputError
from hmtools.masks import (
    ORIGIN_CORRECTED,
    ORIGIN_PROPAGATED,
    ORIGINS,
    LayerData,
    MaskStore,
    StoreWriter,
    rle,
)
from hmtools.masks.validate import validate_store
from tests.conftest import shared_path


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _scene(n: int = 24, h: int = 144, w: int = 192, seed: int = 0, sq: int = 40):
    """A textured background and a textured square that moves right and down."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (sq, sq, 3), dtype=np.uint8), (0, 0), 1)
    frames, masks = [], []
    for t in range(n):
        f = bg.copy()
        x, y = 20 + 2 * t, 20 + t
        f[y : y + sq, x : x + sq] = tex
        m = np.zeros((h, w), np.uint8)
        m[y : y + sq, x : x + sq] = 1
        frames.append(f)
        masks.append(m)
    return frames, np.stack(masks)


def _same(a: LayerData, b: LayerData) -> bool:
    return a.rles == b.rles and all(
        np.array_equal(getattr(a, k), getattr(b, k), equal_nan=k == "score")
        for k in ("frame_index", "area", "bbox", "score", "origin")
    )


def _iou(a, b):
    u = np.count_nonzero(a | b)
    return 1.0 if u == 0 else np.count_nonzero(a & b) / u


def test_propagation_carries_corrections_between_and_beyond_them():
    frames, truth = _scene()
    corrected = {0: truth[0], 16: truth[16]}
    masks, scores = propagate_video(frames, corrected)  # flow only
    assert masks.shape == truth.shape and masks.dtype == np.uint8
    assert np.array_equal(masks[0], truth[0]) and np.array_equal(masks[16], truth[16])
    assert np.isnan(scores[0]) and np.isnan(scores[16])
    ious = [_iou(masks[t] > 0, truth[t] > 0) for t in range(len(frames))]
    assert min(ious[1:16]) > 0.9, ious  # between the corrections: both directions
    assert min(ious[17:21]) > 0.9, ious  # after the last one: forward only
    inner = scores[1:16]  # the two directions' agreement (each alone drifts: low mid-gap)
    assert np.all((inner > 0.3) & (inner <= 1))
    tail = scores[17:]  # one direction, no segmenter: decays with the distance
    assert np.all(np.diff(tail) < 0) and tail[0] > 0.85
    # the square moved by 2 px a frame: not carrying it (the correction copied) scores less
    assert np.mean(ious[1:16]) > np.mean(
        [_iou(truth[0] > 0, truth[t] > 0) for t in range(1, 9)]
        + [_iou(truth[16] > 0, truth[t] > 0) for t in range(9, 16)]
    )
    with pytest.raises(InputError, match="no corrected frame"):
        propagate_video(frames, {})


def _queue_store(path, with_gtm: bool = True):
    """Video A: 100 frames, a still mask for 0-49, a fast moving one for 50-99; video B: 40
    still frames and no correction."""
    h, w = 40, 120
    a = np.zeros((100, h, w), np.uint8)
    for t in range(100):
        x = 10 if t < 50 else 10 + 2 * (t - 50)
        a[t, 10:30, x : x + 10] = 1
    b = np.zeros((40, h, w), np.uint8)
    b[:, 5:15, 5:15] = 1
    with StoreWriter(path) as wr:
        wr.add_video(("A",), height=h, width=w, num_frames=100)
        wr.write_layer(("A",), "pm", LayerData.from_masks(range(100), a, 0.9))
        if with_gtm:
            wr.write_layer(("A",), "gtm", LayerData.from_masks([0, 99], a[[0, 99]], None, 1))
        wr.add_video(("B",), height=h, width=w, num_frames=40)
        wr.write_layer(("B",), "pm", LayerData.from_masks(range(40), b, 0.9))


def test_review_queue_goes_where_masks_change_and_never_requeues(tmp_path):
    store = tmp_path / "s.h5"
    _queue_store(store)
    q = review_queue(store, "10%")
    a = q[q["video"] == "A"]["frame"].tolist()
    assert len(a) == 10 and not {0, 99} & set(a)  # already corrected: never again
    assert sum(f >= 50 for f in a) >= 7, a  # the fast half gets most of them
    assert len(q[q["video"] == "B"]) == 4
    # a global budget: the video without any correction gets its first frame first
    q2 = review_queue(store, "1")
    assert q2["video"].tolist() == ["B"]
    q3 = review_queue(store, "6")
    assert len(q3) == 6 and set(q3["video"]) == {"A", "B"}
    assert review_queue(store, "0%").empty
    assert parse_budget("12") == ("frames", 12) and parse_budget("2.5%") == ("percent", 2.5)
    for bad in ("x", "-3", "120%"):
        with pytest.raises(InputError, match="--budget"):
            parse_budget(bad)
    # the harmonic model is the other documented choice; a typo is refused
    assert len(review_queue(store, "5%", model=QueueModel(combine="harmonic"))) > 0
    with pytest.raises(ValueError, match="combine"):
        review_queue(store, "5%", model=QueueModel(combine="nope"))
    # the CLI writes exactly video,frame
    r = _cli("review-queue", store, "--budget", "10%", "--out", tmp_path / "q.csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.reader((tmp_path / "q.csv").open()))
    assert rows[0] == ["video", "frame"] and len(rows) == 15
    assert read_queue(tmp_path / "q.csv")["A"] == set(a)


def _frames_and_store(tmp_path):
    """Two folder videos of the moving-square scene, pm = truth dilated, gtm on two frames."""
    root = tmp_path / "frames"
    truth = {}
    with StoreWriter(tmp_path / "in.h5") as w:
        for k, name in enumerate(("v1", "v2")):
            frames, masks = _scene(seed=k)
            (root / name).mkdir(parents=True)
            for t, f in enumerate(frames):
                cv2.imwrite(str(root / name / f"{t:05d}.png"), f)
            truth[name] = masks
            pm = np.stack([cv2.dilate(m, np.ones((5, 5), np.uint8)) for m in masks])
            w.add_video((name,), height=masks.shape[1], width=masks.shape[2], num_frames=len(masks))
            w.write_layer((name,), "pm", LayerData.from_masks(range(len(masks)), pm, 0.8))
            if name == "v1":
                w.write_layer(
                    (name,),
                    "gtm",
                    LayerData.from_masks([2, 14], masks[[2, 14]], None, ORIGIN_CORRECTED),
                )
    return root, truth


def test_propagate_cli_writes_a_complete_layer(tmp_path):
    root, truth = _frames_and_store(tmp_path)
    out = tmp_path / "out.h5"
    r = _cli(
        "propagate",
        tmp_path / "in.h5",
        "--frames-root",
        root,
        "--segmenter",
        "none",
        "--out",
        out,
        "-q",
    )
    assert r.exit_code == 0, r.output
    assert "1 videos propagated" in r.output and "1 copied unchanged" in r.output
    assert validate_store(out) == []
    with MaskStore(out) as s, MaskStore(tmp_path / "in.h5") as src:
        d = s.read_layer(("v1",), "pm")
        assert d.frame_index.tolist() == list(range(24))
        assert d.origin[2] == d.origin[14] == ORIGIN_CORRECTED
        assert set(d.origin.tolist()) - {ORIGIN_CORRECTED} == {ORIGIN_PROPAGATED}
        m = d.decode(144, 192)
        assert np.array_equal(m[2], truth["v1"][2]) and np.array_equal(m[14], truth["v1"][14])
        j = rle.iou(d.rles, rle.encode(truth["v1"]), 144, 192)
        pm_j = rle.iou(src.read_layer(("v1",), "pm").rles, rle.encode(truth["v1"]), 144, 192)
        assert j[3:14].mean() > pm_j[3:14].mean()  # better than the pseudo masks there
        assert np.all(np.isfinite(d.score[d.origin == ORIGIN_PROPAGATED]))
        # the other video and the other layers are copied as they were
        assert _same(s.read_layer(("v2",), "pm"), src.read_layer(("v2",), "pm"))
        assert _same(s.read_layer(("v1",), "gtm"), src.read_layer(("v1",), "gtm"))
    assert ORIGINS[ORIGIN_PROPAGATED] == "propagated"
    r = _cli("stats", out, "--out", tmp_path / "st", "-q")
    assert r.exit_code == 0, r.output
    origins = (tmp_path / "st" / "origins.csv").read_text()
    assert "propagated,22" in origins
    # an existing output is never replaced without --overwrite
    r = _cli(
        "propagate",
        tmp_path / "in.h5",
        "--frames-root",
        root,
        "--segmenter",
        "none",
        "--out",
        out,
        "-q",
    )
    assert r.exit_code == 1 and "--overwrite" in r.output
    # shards: every video in exactly one shard, merged back complete
    for k in (0, 1):
        r = _cli(
            "propagate",
            tmp_path / "in.h5",
            "--frames-root",
            root,
            "--segmenter",
            "none",
            "--shard",
            f"{k}/2",
            "--out",
            tmp_path / "sh.h5",
            "-q",
        )
        assert r.exit_code == 0, r.output
    r = _cli(
        "merge",
        tmp_path / "sh.shard0of2.h5",
        tmp_path / "sh.shard1of2.h5",
        "--out",
        tmp_path / "m.h5",
    )
    assert r.exit_code == 0, r.output
    with MaskStore(tmp_path / "m.h5") as s, MaskStore(out) as o:
        assert _same(s.read_layer(("v1",), "pm"), o.read_layer(("v1",), "pm"))


def test_propagate_logs_a_broken_video_and_resumes(tmp_path):
    root, _ = _frames_and_store(tmp_path)
    with StoreWriter(tmp_path / "in.h5", mode="append") as w:  # v2 gets a correction too
        d = w.read_layer(("v2",), "pm").take([5])
        d.origin = np.array([ORIGIN_CORRECTED], np.uint8)
        w.write_layer(("v2",), "gtm", d)
    (root / "v2" / "00007.png").write_bytes(b"broken")
    out = tmp_path / "out.h5"
    r = _cli(
        "propagate",
        tmp_path / "in.h5",
        "--frames-root",
        root,
        "--segmenter",
        "none",
        "--out",
        out,
        "-q",
    )
    assert r.exit_code == 3, r.output
    assert "v2" in (tmp_path / "out.failures.csv").read_text()
    with MaskStore(out) as s:  # v2 kept its pseudo masks
        assert set(s.read_layer(("v2",), "pm").origin.tolist()) == {0}
    assert (tmp_path / "out.h5.propagate.parts").is_dir()  # kept for --resume
    cv2.imwrite(str(root / "v2" / "00007.png"), np.zeros((144, 192, 3), np.uint8))
    r = _cli(
        "propagate",
        tmp_path / "in.h5",
        "--frames-root",
        root,
        "--segmenter",
        "none",
        "--out",
        out,
        "--resume",
        "-q",
    )
    assert r.exit_code == 0 and "1 already done" in r.output, r.output
    with MaskStore(out) as s:
        assert ORIGIN_PROPAGATED in s.read_layer(("v2",), "pm").origin


@pytest.mark.slow
def test_the_loop_on_a_synthetic_dataset(synth_small, tmp_path):
    """pseudo-mask -> review-queue -> (annotator: the true masks of the queued frames, packed
    with pack and joined with merge) -> propagate, as the issue's unseen-video check runs it."""
    pm = tmp_path / "pm.h5"
    r = _cli(
        "pseudo-mask",
        synth_small / "frames",
        "--dataset",
        "finediving",
        "--annotations",
        synth_small / "Annotations",
        "--out",
        pm,
        "-q",
    )
    assert r.exit_code == 0, r.output
    r = _cli("review-queue", pm, "--budget", "10%", "--out", tmp_path / "q.csv")
    assert r.exit_code == 0, r.output
    queue = read_queue(tmp_path / "q.csv")
    gt_root = tmp_path / "gt"
    with MaskStore(synth_small / "Synth-HM.h5") as s:
        for info in s.videos():
            want = queue.get(info.name, set())
            fi, m = s.read_masks(info.video_id, "gtm")
            d = gt_root.joinpath(*map(str, info.video_id))
            d.mkdir(parents=True)
            for f, mk in zip(fi, m, strict=True):
                if int(f) in want:
                    cv2.imwrite(str(d / f"{int(f):05d}.png"), mk * 255)
    assert sum(len(v) for v in queue.values()) > 8
    assert _cli("pack", gt_root, "--layer", "gtm", "--out", tmp_path / "gt.h5", "-q").exit_code == 0
    assert _cli("merge", pm, tmp_path / "gt.h5", "--out", tmp_path / "both.h5").exit_code == 0
    r = _cli(
        "propagate",
        tmp_path / "both.h5",
        "--frames-root",
        synth_small / "frames",
        "--dataset",
        "finediving",
        "--annotations",
        synth_small / "Annotations",
        "--out",
        tmp_path / "prop.h5",
        "-q",
    )
    assert r.exit_code == 0, r.output
    with (
        MaskStore(tmp_path / "prop.h5") as p,
        MaskStore(synth_small / "Synth-HM.h5") as t,
        MaskStore(pm) as before,
    ):
        gain = []
        for info in t.videos():
            truth = t.read_layer(info.video_id, "gtm")
            for layer_store, acc in ((p, "after"), (before, "before")):
                d = layer_store.read_layer(info.video_id, "pm")
                j = rle.iou(d.rles, truth.rles, info.height, info.width)
                gain.append((acc, float(j.mean())))
        after = np.mean([g for a, g in gain if a == "after"])
        pre = np.mean([g for a, g in gain if a == "before"])
        assert after > pre + 0.05, (after, pre)
    r = _cli("review-queue", tmp_path / "prop.h5", "--budget", "5%", "--out", tmp_path / "q2.csv")
    assert r.exit_code == 0
    again = read_queue(tmp_path / "q2.csv")
    assert not any(again.get(v, set()) & f for v, f in queue.items())  # never requeued


@pytest.mark.slow
def test_davis_ten_percent_uniform_corrections(tmp_path):
    """On real frames: 9 evenly spaced true masks of dance-twirl carried to the other 81 frames
    (BlazePose re-prompted). Measured 0.88 (the issue's goal, 0.90, is not reached:
    benchmarks/propagation.py); this guards against regressions."""
    root = shared_path("davis-person", "dance-twirl")
    from hmtools.annotation.segmenters import default_weight_free, make_segmenter

    frames = [cv2.imread(str(p)) for p in sorted((root / "JPEGImages").glob("*.jpg"))]
    truth = np.stack(
        [
            (cv2.imread(str(p), 0) > 127).astype(np.uint8)
            for p in sorted((root / "Annotations").glob("*.png"))
        ]
    )
    pos = np.round(np.linspace(0, len(frames) - 1, 9)).astype(int)
    masks, scores = propagate_video(
        frames, {int(p): truth[p] for p in pos}, make_segmenter(default_weight_free())
    )
    j = np.mean([_iou(masks[t] > 0, truth[t] > 0) for t in range(len(frames))])
    assert j > 0.86, j
    s = scores[~np.isnan(scores)]
    ious = np.array(
        [_iou(masks[t] > 0, truth[t] > 0) for t in range(len(frames)) if not np.isnan(scores[t])]
    )
    assert np.corrcoef(s, ious)[0, 1] > 0.2  # the two directions' agreement tracks the error
    json.dumps(float(j))
