"""An exponential moving average of the model's weights over the optimiser steps (beyond the
paper: ``TrainConfig.ema_epochs``, measured in SPEC.md).

torch's :class:`~torch.optim.swa_utils.AveragedModel` keeps the average of the parameters; the
buffers (BatchNorm statistics) are not averaged but copied from the trained model whenever the
average is read, so that integer buffers stay integers and running statistics match the weights
that produced them as closely as the raw model's do.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_decay(horizon_epochs: float, steps_per_epoch: int) -> float:
    """The per-step decay whose average reaches back ``horizon_epochs`` epochs:
    ``1 - 1 / (horizon_epochs * steps_per_epoch)`` (the weight of a step falls by e over the
    horizon)."""
    if horizon_epochs <= 0:
        raise ValueError(f"an EMA horizon must be > 0 epochs, not {horizon_epochs}")
    return 1.0 - 1.0 / max(1.0, horizon_epochs * max(1, steps_per_epoch))


class WeightEMA:
    """The EMA of ``model``'s parameters; :meth:`update` after each optimiser step,
    :meth:`averaged` for the model to evaluate or save."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
        self.avg.requires_grad_(False)
        self._model = model

    def update(self) -> None:
        self.avg.update_parameters(self._model)

    @property
    def steps(self) -> int:
        return int(self.avg.n_averaged)

    @torch.no_grad()
    def averaged(self) -> torch.nn.Module:
        """The averaged model (the trained model's buffers copied in); before the first step,
        the trained model's weights (AveragedModel starts from a copy of them)."""
        for a, b in zip(self.avg.module.buffers(), self._model.buffers(), strict=True):
            a.copy_(b)
        return self.avg.module

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the averaged weights and the number of steps averaged."""
        return {"model": self.averaged().state_dict(), "steps": self.steps, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.avg.module.load_state_dict(state["model"])
        self.avg.n_averaged.fill_(int(state["steps"]))
