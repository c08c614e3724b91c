from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.masks import ORIGIN_CORRECTED, LayerData, StoreWriter


def _store(path):
    """Two action types; pm squares overlap gtm squares with IoU exactly 1/3 (10x10 vs shifted
    by 5 px: intersection 50, union 150) on every frame of video A, and equal on video B."""
    gt = np.zeros((6, 40, 60), np.uint8)
    gt[:, 10:20, 10:20] = 1
    pm = np.zeros_like(gt)
    pm[:, 10:20, 15:25] = 1
    with StoreWriter(path, name="Toy-HM") as w:
        w.add_video(("A", 0), height=40, width=60, num_frames=6, action_type="107b")
        w.write_layer(("A", 0), "gtm", LayerData.from_masks(range(6), gt, origin=ORIGIN_CORRECTED))
        w.write_layer(("A", 0), "pm", LayerData.from_masks(range(6), pm, score=0.9))
        w.add_video(("B", 1), height=40, width=60, num_frames=10, action_type="205c")
        w.write_layer(("B", 1), "gtm", LayerData.from_masks(range(4), gt[:4], origin=3))
        w.write_layer(("B", 1), "pm", LayerData.from_masks(range(10), np.concatenate([gt[:4], gt])))


def test_stats_report_values(tmp_path):
    _store(tmp_path / "toy.h5")
    res = CliRunner().invoke(
        main, ["stats", str(tmp_path / "toy.h5"), "--out", str(tmp_path / "rep"), "-q"]
    )
    assert res.exit_code == 0, res.output
    assert "pm vs gtm: mean IoU" in res.output
    rep = tmp_path / "rep"
    mpa = pd.read_csv(rep / "masks_per_action_type.csv")
    assert list(mpa.columns) == ["action_type", "layer", "masks"]
    got = {(r.action_type, r.layer): r.masks for r in mpa.itertuples()}
    assert got == {("107b", "gtm"): 6, ("107b", "pm"): 6, ("205c", "gtm"): 4, ("205c", "pm"): 10}
    iou = pd.read_csv(rep / "iou_per_video.csv").set_index("video")
    assert abs(iou.loc["A/0", "mean_iou"] - 1 / 3) < 1e-9 and iou.loc["B/1", "mean_iou"] == 1.0
    assert iou.index[0] == "A/0"  # most correction first
    assert iou.loc["B/1", "frames"] == 4
    cov = pd.read_csv(rep / "coverage.csv").set_index("layer")
    assert cov.loc["gtm", "masks"] == 10 and abs(cov.loc["gtm", "coverage"] - 10 / 16) < 1e-9
    org = pd.read_csv(rep / "origins.csv")
    assert set(zip(org.layer, org.origin, org.masks, strict=True)) == {
        ("gtm", "corrected", 6),
        ("gtm", "ground_truth", 4),
        ("pm", "pseudo", 16),
    }
    text = (rep / "report.md").read_text()
    assert "masks per action type" in text and "iou_per_video.png" in text
    for png in ("masks_per_action_type.png", "area_and_boxes.png", "iou_per_video.png"):
        img = cv2.imread(str(rep / png))
        assert img is not None and img.shape[0] > 100 and img.std() > 10  # not a blank image


def test_stats_on_synthetic_dataset(synth_small, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "stats",
            str(synth_small / "Synth-HM.h5"),
            "--annotations",
            str(synth_small / "Annotations"),
            "--out",
            str(tmp_path),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    mpa = pd.read_csv(tmp_path / "masks_per_action_type.csv")
    per_video = pd.read_csv(tmp_path / "per_video.csv")
    assert mpa["masks"].sum() == per_video["masks"].sum() == per_video["num_frames"].sum()
    assert "coverage 100.0%" in res.output
