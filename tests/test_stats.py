"""``hmtools stats`` and the pm-vs-gtm agreement on stores built by hand with known answers."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.masks import ORIGIN_CORRECTED, LayerData, StoreWriter
from hmtools.masks.agreement import bound_pixels, boundary_f, seg2bmap

H, W = 40, 60  # diagonal 72 px: DAVIS's tolerance is ceil(0.008 * 72.1) = 1 px


def _square(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _reference_f(pred: np.ndarray, gt: np.ndarray, r: float) -> float:
    """The DAVIS F-measure computed the slow way: every boundary pixel of one mask is matched if
    a boundary pixel of the other lies within Euclidean distance r."""
    bp, bg = np.argwhere(seg2bmap(pred)), np.argwhere(seg2bmap(gt))
    if len(bp) == 0 and len(bg) == 0:
        return 1.0
    if len(bp) == 0 or len(bg) == 0:
        return 0.0
    d = np.sqrt(((bp[:, None, :] - bg[None, :, :]) ** 2).sum(-1))
    p = float((d.min(1) <= r).mean())
    rc = float((d.min(0) <= r).mean())
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


def test_boundary_f_known_values():
    gt = _square(10, 20, 10, 20)
    assert bound_pixels((H, W)) == 1 and bound_pixels((256, 455)) == 5
    # the boundary of a 10 x 10 square is the ring of the 11 x 11 box above-left of it
    ring = seg2bmap(gt)
    assert ring.sum() == 40 and ring[9, 9] and ring[19, 19] and not ring[20, 20]
    assert boundary_f(gt, gt) == 1.0
    assert boundary_f(_square(10, 20, 11, 21), gt) == 1.0  # 1 px off: within the tolerance
    # 2 px off: on each ring 10 + 10 + 2 + 0 of 40 pixels match (worked out by hand): F = 0.55
    assert boundary_f(_square(10, 20, 12, 22), gt) == pytest.approx(0.55)
    assert boundary_f(_square(10, 20, 40, 50), gt) == 0.0
    assert boundary_f(np.zeros_like(gt), gt) == 0.0  # missed
    assert boundary_f(gt, np.zeros_like(gt)) == 0.0  # false alarm
    assert boundary_f(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    rng = np.random.default_rng(0)
    for _ in range(20):  # against the slow reference on random blobs and sizes
        h, w = rng.integers(20, 120, 2)
        a = np.zeros((h, w), np.uint8)
        b = np.zeros((h, w), np.uint8)
        cv2.ellipse(a, (int(w / 2), int(h / 2)), (int(w / 4), int(h / 5)), 0, 0, 360, 1, -1)
        cv2.ellipse(b, (int(w / 2) + 2, int(h / 2)), (int(w / 5), int(h / 4)), 20, 0, 360, 1, -1)
        r = bound_pixels((h, w))
        assert boundary_f(a, b) == pytest.approx(_reference_f(a, b, r))


def _store(path):
    """Video V (5 frames): athlete frames with pm IoU 1, 0.5 and empty (a miss); two frames
    without an athlete, one of them with a pm mask (a false alarm). Video S (synchronised,
    10 frames): gtm on frames 0-3 only, pm equal to it there and on frames 4-5."""
    gt_v = np.stack([_square(10, 20, 10, 20)] * 3 + [np.zeros((H, W), np.uint8)] * 2)
    pm_v = np.stack(
        [
            _square(10, 20, 10, 20),  # IoU 1
            _square(10, 20, 10, 30),  # IoU 100 / 200 = 0.5
            np.zeros((H, W), np.uint8),  # missed
            np.zeros((H, W), np.uint8),  # both empty
            _square(5, 9, 40, 50),  # false alarm
        ]
    )
    gt_s = np.stack([_square(5, 25, 5, 25)] * 4)
    with StoreWriter(path, name="Toy-HM") as w:
        w.add_video(("V_Men3m_final", 0), height=H, width=W, num_frames=5, action_type="107b")
        w.write_layer(
            ("V_Men3m_final", 0),
            "gtm",
            LayerData.from_masks(range(5), gt_v, origin=ORIGIN_CORRECTED),
        )
        w.write_layer(("V_Men3m_final", 0), "pm", LayerData.from_masks(range(5), pm_v, score=0.9))
        w.add_video(
            ("S_Men3mSynchronised", 1), height=H, width=W, num_frames=10, action_type="205c"
        )
        w.write_layer(
            ("S_Men3mSynchronised", 1), "gtm", LayerData.from_masks(range(4), gt_s, origin=3)
        )
        w.write_layer(
            ("S_Men3mSynchronised", 1), "pm", LayerData.from_masks(range(6), np.concatenate([gt_s, gt_s[:2]]))
        )  # fmt: skip
    return pm_v, gt_v


def test_stats_report_known_answers(tmp_path):
    pm_v, gt_v = _store(tmp_path / "toy.h5")
    res = CliRunner().invoke(
        main, ["stats", str(tmp_path / "toy.h5"), "--out", str(tmp_path / "rep"), "-q"]
    )
    assert res.exit_code == 0, res.output
    rep = tmp_path / "rep"
    s = json.loads((rep / "summary.json").read_text())
    assert s["layers"]["gtm"] == {
        "masks": 9, "nonempty": 7, "empty": 2, "videos": 2, "frames_without_mask": 6,
        "athlete_frame_coverage": 1.0,
    }  # fmt: skip
    assert s["layers"]["pm"]["masks"] == 11 and s["layers"]["pm"]["nonempty"] == 9
    assert s["layers"]["pm"]["empty"] == 2 and s["layers"]["pm"]["frames_without_mask"] == 4
    assert s["layers"]["pm"]["athlete_frame_coverage"] == pytest.approx(6 / 7)
    a = s["pm_vs_gtm"]
    # frames with both: V 0-4, S 0-3; athlete frames: V 0-2 and S 0-3 (IoU 1 each)
    assert a["frames"] == 9 and a["athlete_frames"] == 7
    assert a["iou_athlete_mean"] == pytest.approx((1 + 0.5 + 0 + 4) / 7)
    assert a["iou_athlete_median"] == 1.0
    assert a["missed"] == 1 and a["false_alarms"] == 1 and a["both_empty"] == 1
    f1 = _reference_f(pm_v[1], gt_v[1], 1)
    assert 0 < f1 < 1
    assert a["boundary_f_mean"] == pytest.approx((1 + f1 + 0 + 4) / 7)
    assert a["jf_mean"] == pytest.approx((a["iou_athlete_mean"] + a["boundary_f_mean"]) / 2)
    per = pd.read_csv(rep / "agreement_per_video.csv").set_index("video")
    assert per.index[0] == "V_Men3m_final/0"  # worst first
    v = per.loc["V_Men3m_final/0"]
    assert (v["frames"], v["athlete_frames"], v["missed"], v["false_alarms"]) == (5, 3, 1, 1)
    assert v["iou_mean"] == pytest.approx(0.5) and v["iou_median"] == pytest.approx(0.5)
    per_at = pd.read_csv(rep / "agreement_per_action_type.csv").set_index("action_type")
    assert per_at.loc["205c", "iou_mean"] == 1.0 and per_at.loc["107b", "athlete_frames"] == 3
    counts = pd.read_csv(rep / "masks_per_action_type.csv")
    got = {(r.action_type, r.layer): (r.nonempty, r.empty) for r in counts.itertuples()}
    assert got == {
        ("107b", "gtm"): (3, 2), ("107b", "pm"): (3, 2), ("205c", "gtm"): (4, 0), ("205c", "pm"): (6, 0),
    }  # fmt: skip
    groups = pd.read_csv(rep / "masks_per_group.csv")
    got = {(r.group, r.layer): r.nonempty for r in groups.itertuples()}
    assert got == {("individual", "gtm"): 3, ("individual", "pm"): 3, ("synchronised", "gtm"): 4, ("synchronised", "pm"): 6}  # fmt: skip
    org = pd.read_csv(rep / "origins.csv")
    assert set(zip(org.layer, org.origin, org.masks, strict=True)) == {
        ("gtm", "corrected", 5), ("gtm", "ground_truth", 4), ("pm", "pseudo", 11),
    }  # fmt: skip
    text = (rep / "report.md").read_text()
    assert "```" not in text and "| layer | videos | masks | nonempty |" in text
    assert "missed 1, false alarms 1" in res.output
    for png in ("masks_per_action_type.png", "area_and_boxes.png", "agreement_per_video.png"):
        img = cv2.imread(str(rep / png))
        assert img is not None and img.shape[0] > 100 and img.std() > 10  # not a blank image


def test_stats_on_synthetic_dataset_with_example_montage(synth_small, tmp_path):
    res = _cli(
        "stats",
        synth_small / "Synth-HM.h5",
        "--annotations",
        synth_small / "Annotations",
        "--frames-root",
        synth_small / "frames",
        "--out",
        tmp_path / "r",
        "-q",
    )
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    per_video = pd.read_csv(tmp_path / "r" / "per_video.csv")
    assert s["layers"]["gtm"]["masks"] == per_video["num_frames"].sum()
    assert "pm_vs_gtm" not in s  # one layer only
    img = cv2.imread(str(tmp_path / "r" / "examples.png"))
    assert img is not None and img.std() > 10


def test_overlay_montage_and_animation(synth_small, tmp_path):
    from tests.conftest import store_with_pm

    store = store_with_pm(synth_small, tmp_path / "both.h5")
    first = "/".join(
        map(str, sorted((p.parent.name, p.name) for p in (synth_small / "frames").glob("*/*"))[0])
    )
    r = _cli(
        "overlay",
        store,
        "--frames-root",
        synth_small / "frames",
        "--video",
        first,
        "--animate",
        "--worst",
        "4",
        "--out",
        tmp_path / "o",
        "-q",
    )
    assert r.exit_code == 0, r.output
    d = tmp_path / "o" / first
    sheet = cv2.imread(str(d / "worst.png"))
    assert sheet is not None and sheet.shape[1] > 600  # 3 tiles of 320 px a row
    from PIL import Image

    with Image.open(d / "overlay.gif") as gif:
        assert gif.n_frames > 10
    r = _cli("overlay", store, "--frames-root", tmp_path, "--out", tmp_path / "x", "-q")
    assert r.exit_code == 1 and "no frame folder" in r.output and not (tmp_path / "x").exists()
