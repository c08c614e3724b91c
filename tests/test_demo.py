"""The README's main command end to end: synth -> pseudo-mask -> merge -> stats -> experiment."""

from __future__ import annotations

import json

import cv2
import pytest
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.masks import MaskStore
from tests.conftest import needs_kinetics


@pytest.mark.slow
@needs_kinetics
def test_demo_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--videos", "24", "--epochs", "2", "--quiet"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    for step in ("[1/5] hmtools synth", "[2/5] hmtools pseudo-mask", "[5/5] hmtools experiment"):
        assert step in res.output
    rep = json.loads((out / "experiment" / "report.json").read_text())
    for layer in ("gtm", "pm"):
        assert -1 <= rep[layer]["test_spearman_rho"] <= 1 and rep[layer]["epochs"] == 2
    # pm are real pseudo masks: neither empty nor a copy of the ground truth
    assert 0.05 < rep["mask_iou_pm_vs_gtm"] < 0.999
    with MaskStore(out / "Synth-HM.h5") as st:
        assert set(st.layer_names()) >= {"gtm", "pm"} and len(st.video_ids()) == 24
    md = (out / "experiment" / "report.md").read_text()
    assert f"{rep['gtm']['test_spearman_rho']:.4f}" in md
    d = rep["gtm_minus_pm_rho"]  # is the gap more than the test set's chance?
    assert d["test_videos"] >= 3 and f"{d['estimate']:.3f}, 95 % bootstrap interval" in res.output
    assert cv2.imread(str(out / "experiment" / "report.png")).std() > 5
    assert (out / "stats" / "report.md").exists()
    assert str(out / "experiment" / "report.md") in res.output
    # the summary says whether the demo shows learning, and where to look when it cannot
    assert "GTM: gain over the exemplar means" in res.output
    lo = rep["gtm"]["gain_over_exemplar_mean_ci95"][0]
    assert ("This demo is a pipeline check" in res.output) == (lo <= 0)
    assert lo > 0 or "benchmarks/learning.py" in res.output
    again = CliRunner().invoke(main, ["demo", "--out", str(out), "--videos", "4", "--quiet"])
    assert again.exit_code != 0 and "not empty" in again.output
