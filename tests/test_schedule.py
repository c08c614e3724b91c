"""The learning-rate schedule per optimiser group (hmtools.engine.train.group_lambdas): the
paper's warm-up and cosine, and the frozen-backbone start (``backbone_frozen_epochs``)."""

from __future__ import annotations

import pytest
import torch

from hmtools.engine import TrainConfig
from hmtools.engine.train import group_lambdas, lr_lambda
from hmtools.errors import InputError

GROUPS = [{"name": "i3d"}, {"name": "heads"}, {"name": "tau"}]


def test_without_a_frozen_start_every_group_follows_the_run_schedule():
    cfg = TrainConfig(epochs=10, warmup_epochs=2)
    ref = lr_lambda(2, 10)
    for f in group_lambdas(GROUPS, cfg):
        assert [f(e) for e in range(10)] == [ref(e) for e in range(10)]


def test_frozen_start_holds_the_backbone_then_gives_it_a_whole_schedule():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, backbone_frozen_epochs=3)
    i3d, heads, tau = group_lambdas(GROUPS, cfg)
    assert [i3d(e) for e in range(3)] == [0.0, 0.0, 0.0]
    own = lr_lambda(2, 7)  # warm-up and cosine over the 7 epochs left
    assert [i3d(e) for e in range(3, 10)] == [own(e) for e in range(7)]
    assert i3d(3) == 0.5 and i3d(4) == 1.0 and i3d(9) < 0.1
    ref = lr_lambda(2, 10)
    assert [heads(e) for e in range(10)] == [ref(e) for e in range(10)]
    assert [tau(e) for e in range(10)] == [ref(e) for e in range(10)]
    # frozen for the whole run: a probe of the heads on the frozen backbone
    whole = TrainConfig(epochs=4, warmup_epochs=1, backbone_frozen_epochs=4)
    assert [group_lambdas(GROUPS, whole)[0](e) for e in range(4)] == [0.0] * 4
    with pytest.raises(InputError, match="backbone_frozen_epochs=-1"):
        group_lambdas(GROUPS, TrainConfig(backbone_frozen_epochs=-1))


def test_adam_moves_no_backbone_weight_while_frozen():
    torch.manual_seed(0)
    backbone, head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(
        [
            {"params": backbone.parameters(), "lr": 1e-2, "name": "i3d"},
            {"params": head.parameters(), "lr": 1e-2, "name": "heads"},
        ],
        weight_decay=1e-3,
    )
    cfg = TrainConfig(epochs=4, warmup_epochs=1, backbone_frozen_epochs=2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, group_lambdas(opt.param_groups, cfg))
    b0, h0 = backbone.weight.detach().clone(), head.weight.detach().clone()
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for epoch in range(4):
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.mse_loss(head(backbone(x)), y).backward()
            assert backbone.weight.grad.abs().sum() > 0  # gradients reach it: the rate holds it
            opt.step()
        sched.step()
        if epoch < 2:
            assert torch.equal(backbone.weight, b0)
            assert not torch.equal(head.weight, h0)
    assert not torch.equal(backbone.weight, b0)


def test_cli_passes_the_frozen_start_and_refuses_a_negative_one(tmp_path):
    from click.testing import CliRunner

    from hmtools.cli import main
    from hmtools.cli.engine import _config
    from hmtools.cli.engine import train as train_cmd

    kw = {p.name: p.default for p in train_cmd.params}
    kw.update(model="small", data_root=tmp_path, annotations=tmp_path, masks_file=None)
    assert _config(kw, tmp_path, "gtm").backbone_frozen_epochs == 0
    kw["backbone_frozen_epochs"] = 3
    assert _config(kw, tmp_path, "gtm").backbone_frozen_epochs == 3
    res = CliRunner().invoke(
        main, ["train", "--data-root", str(tmp_path), "--annotations", str(tmp_path),
               "--out", str(tmp_path / "r"), "--backbone-frozen-epochs", "-1"],
    )  # fmt: skip
    assert res.exit_code == 2 and "--backbone-frozen-epochs" in res.output
