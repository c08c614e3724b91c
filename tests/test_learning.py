"""The training loop learns: on held-out dives the small config's Spearman rho beats the
exemplar-mean predictor's (Delta = 0) and the score loss falls.

A regression test of the training loop, not the benchmark (``benchmarks/learning.py`` measures
the default small config on held-out sets of 166 clips per data seed, with intervals): the 40
test clips of this split are few (rho's 95 % interval is ~0.5 wide). To keep CI within its
budget it trains the small config with all of Stage 3 frozen (``frozen_until="stage3"``: the
whole I3D below the SAP cached) and without the SVE (a from-scratch ResNet that is ~60 % of a
small-config step on the CPU, profiled): the LayerNorm and the symmetric L_E that ended the
collapse are the same (this variant, without SVE, reached rho 0.454 against the exemplar mean's
0.310 on 166 held-out clips, SPEC.md). 120 training clips x 20 epochs; the final epoch is judged (no selection on the test
set)."""

from __future__ import annotations

import pytest

from hmtools.datasets.synth import generate
from hmtools.engine import train
from tests.conftest import needs_kinetics, synth_train_config


@pytest.mark.slow
@needs_kinetics
def test_small_config_learns_execution_on_held_out_dives(tmp_path):
    root = tmp_path / "synth"
    generate(root, 160, 1, height=128, progress=False)
    cfg = synth_train_config(
        root,
        tmp_path / "run",
        model="small",
        model_overrides={"frozen_until": "stage3", "use_sve": False},
        epochs=20,
        warmup_epochs=1,
        workers=0,
        eval_every=20,
    )
    res = train(cfg, progress=False)
    final = res.history[-1]
    rho, baseline = final["test_spearman_rho"], final["test_exemplar_mean_rho"]
    # measured on this data (2026-12-04): final rho 0.468 against the exemplar mean's 0.367;
    # the margins leave room for float-level differences between machines
    assert rho >= baseline + 0.05, (rho, baseline)
    assert rho >= 0.42, rho
    # and the score loss (Eq. 9) fell on the training pairs
    assert final["train_loss_e"] < 0.8 * res.history[0]["train_loss_e"]
