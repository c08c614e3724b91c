"""The small config's training moves the predictions off the exemplar means: on this dataset's
held-out dives its Spearman rho beats the untrained model's (the exemplar-mean predictor,
Delta = 0), and the score loss falls.

What this does and does not show (hmtools/models/SPEC.md, "CPU configs"): the 40 test clips of
this split are few (rho's 95 % interval is ~0.5 wide), and they are a favourable draw. On larger
held-out sets the same config and budget (120 training clips, 20 epochs) does not beat the
exemplar mean: 0.286 [0.14, 0.42] vs 0.310 on 159 test clips (280 videos, seed 1,
``--test-share 4/7``); 0.304 [0.19, 0.41] vs 0.245 on 239 (another split of seed 1, 121
training clips). A ridge regression on the frozen backbone's features reaches only ~0.39 with
120 training clips: the
features see the splash, not the diver's tightness or entry angle. So this is a regression test
of the training loop (it learns something from the pairs), not evidence of the issue's 0.6 goal.
Learning is limited by training pairs seen (~700-1000 before the regression leaves the
exemplar-mean baseline), so this needs ~3000 pairs: 120 training clips x 20 epochs, about 8
minutes on 2 CPU cores with the frozen-prefix cache. The final epoch is judged (no selection on
the test set)."""

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
        root, tmp_path / "run", model="small", epochs=20, warmup_epochs=1, workers=0, eval_every=20
    )
    res = train(cfg, progress=False)
    final = res.history[-1]
    rho, baseline = final["test_spearman_rho"], final["test_exemplar_mean_rho"]
    # measured on this data: final rho 0.526 against the exemplar-mean 0.367 (issue goal 0.6)
    assert rho >= baseline + 0.1, (rho, baseline)
    assert rho >= 0.45, rho
    # and the score loss (Eq. 9) fell on the training pairs
    assert final["train_loss_e"] < 0.8 * res.history[0]["train_loss_e"]
