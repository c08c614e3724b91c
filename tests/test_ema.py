"""The weight average (hmtools.engine.ema): the EMA's arithmetic, buffers, state round trip."""

from __future__ import annotations

import pytest
import torch

from hmtools.engine.ema import WeightEMA, ema_decay


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def test_decay_reaches_back_the_horizon():
    assert ema_decay(2, 50) == pytest.approx(0.99)
    assert ema_decay(0.01, 10) == 0.0  # shorter than a step: the latest weights
    with pytest.raises(ValueError, match="> 0"):
        ema_decay(0, 10)


def test_average_is_the_exponential_moving_average_of_the_steps():
    m = _model()
    ema = WeightEMA(m, decay=0.75)
    # before any step the average is the model itself
    assert torch.equal(ema.averaged()[0].weight, m[0].weight)
    values = [1.0, 3.0, -2.0, 5.0]
    expect = None
    for v in values:
        with torch.no_grad():
            m[0].weight.fill_(v)
        ema.update()
        expect = v if expect is None else 0.75 * expect + 0.25 * v
    assert ema.steps == len(values)
    assert torch.allclose(ema.averaged()[0].weight, torch.full((2, 3), expect))
    assert not torch.allclose(ema.averaged()[0].weight, m[0].weight)
    # buffers are the trained model's own, integers included
    m.train()
    m(torch.randn(8, 3))
    avg = ema.averaged()
    assert torch.equal(avg[1].running_mean, m[1].running_mean)
    assert avg[1].num_batches_tracked.dtype == torch.long
    assert int(avg[1].num_batches_tracked) == int(m[1].num_batches_tracked) == 1


def test_state_round_trip_continues_the_same_average():
    a, b = _model(), _model()
    ea, eb = WeightEMA(a, 0.5), WeightEMA(b, 0.5)
    for v in (1.0, 2.0):
        with torch.no_grad():
            a[0].bias.fill_(v)
        ea.update()
    eb.load_state_dict(ea.state_dict())
    assert eb.steps == 2
    for m, e in ((a, ea), (b, eb)):
        with torch.no_grad():
            m[0].bias.fill_(4.0)
        e.update()
    assert torch.allclose(ea.averaged()[0].bias, eb.averaged()[0].bias)
    assert torch.allclose(eb.averaged()[0].bias, torch.full((2,), 0.25 * 1 + 0.25 * 2 + 0.5 * 4))


@pytest.mark.parametrize(("config", "expect"), [("small", 0.0), ("full", 0.0)])
def test_cli_defaults_the_average_by_config(config, expect, tmp_path):
    """``hmtools train``: no weight average by default (the paper's raw weights; the small
    config's average lost 0.09 on an unseen seed, SPEC.md); an explicit --ema-epochs wins."""
    from hmtools.cli.engine import _config
    from hmtools.cli.engine import train as train_cmd

    kw = {p.name: p.default for p in train_cmd.params}
    kw.update(model=config, data_root=tmp_path, annotations=tmp_path, masks_file=None)
    assert _config(kw, tmp_path, "gtm").ema_epochs == expect
    kw["ema_epochs"] = 3.0
    assert _config(kw, tmp_path, "gtm").ema_epochs == 3.0
