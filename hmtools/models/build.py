"""Build Uni-FineParser from a config name, load weights, count parameters and FLOPs."""

from __future__ import annotations

import os

import torch

from hmtools.models.config import ModelConfig, load_config
from hmtools.models.uni_fineparser import UniFineParser
from hmtools.models.weights import LoadReport, load_i3d, load_resnet


def build_model(
    config: str | os.PathLike | ModelConfig = "full",
    *,
    i3d_weights: str | os.PathLike | None = None,
    resnet_weights: str | os.PathLike | None = None,
    **overrides: object,
) -> tuple[UniFineParser, list[LoadReport]]:
    """The model for ``config`` with pretrained weights from local files (never downloaded)."""
    cfg = load_config(config, **overrides)
    model = UniFineParser(cfg)
    reports = []
    if i3d_weights is not None:
        if cfg.i3d_width != 1.0:
            raise ValueError(
                f"config {cfg.name!r} has a {cfg.i3d_width}-wide I3D: pretrained "
                "weights only fit width 1.0"
            )
        reports.append(load_i3d(model.i3d, i3d_weights))
    if resnet_weights is not None and model.sve is not None:
        reports.append(load_resnet(model.sve.backbone, resnet_weights))
    return model, reports


def count_params(model: UniFineParser) -> dict[str, int]:
    """Parameters per component (every nn.Parameter, trainable or frozen) and the total."""
    out = {k: sum(p.numel() for p in m.parameters()) for k, m in model.components().items()}
    out["total"] = sum(p.numel() for p in model.parameters())
    return out


def count_flops(cfg: ModelConfig) -> dict[str, float]:
    """FLOPs of one training-pair forward (query + exemplar), counted by
    ``torch.utils.flop_counter`` on meta tensors (nothing is computed). FlopCounterMode counts
    2 FLOPs per multiply-accumulate; ``gmacs`` is half of it."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = UniFineParser(cfg).eval().requires_grad_(False)
        video = torch.empty(2, 3, cfg.length, cfg.crop, cfg.crop)
        counter = FlopCounterMode(display=False)
        with counter:
            enc = model.encode(video)
            model.regress(enc.steps[:1], enc.steps[1:], torch.zeros(1))
    flops = counter.get_total_flops()
    return {"gflops_pair": flops / 1e9, "gmacs_pair": flops / 2e9, "gflops_per_video": flops / 2e9}
