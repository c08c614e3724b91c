"""Model configurations. ``full`` is the paper's setting; ``small`` runs the same modules on CPU.

Where the paper is silent the choices are documented, with reasons and parameter counts, in
``hmtools/models/SPEC.md``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hmtools.errors import InputError


@dataclass
class ModelConfig:
    name: str = "full"
    # input: L frames -> N snippets of beta frames with stride alpha, crop x crop pixels
    length: int = 103
    num_snippets: int = 20
    snippet_len: int = 8
    stride: int = 5
    crop: int = 224
    resize_hw: tuple[int, int] = (256, 455)
    # backbone
    i3d_width: float = 1.0
    sap_stage: str = "stage2"
    sve_arch: str = "resnet34"
    freeze_bn: bool = True
    # TAP
    num_queries: int = 6  # L_q
    query_dim: int = 256  # C_q
    attn_dim: int = 256
    heads: int = 8
    tau_init: float = 0.07 * 256
    ffn_dim: int = 2048
    # FineReg
    enc_dims: tuple[int, int] = (256, 128)
    reg_dims: tuple[int, int] = (64, 32)
    # ablation switches
    use_sap: bool = True
    use_tap: bool = True
    use_sve: bool = True
    sap_plus_one: bool = True
    use_mask_loss: bool = True
    use_temporal_loss: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def stage2_stride(self) -> int:
        """Spatial down-sampling of I3D at the SAP stage (4 after Stage 2, 8 / 16 / 32 later)."""
        return {"stage1": 4, "stage2": 4, "stage3": 16, "stage4": 32}[self.sap_stage]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FULL = ModelConfig()
SMALL = ModelConfig(
    name="small",
    length=32,
    num_snippets=4,
    snippet_len=8,
    stride=8,
    crop=112,
    resize_hw=(128, 227),
    i3d_width=0.25,
    sve_arch="small",
    query_dim=64,
    attn_dim=64,
    heads=4,
    tau_init=0.07 * 64,
    ffn_dim=128,
    enc_dims=(64, 32),
    reg_dims=(32, 16),
)
CONFIGS: dict[str, ModelConfig] = {"full": FULL, "small": SMALL}


def load_config(spec: str | os.PathLike | ModelConfig, **overrides: object) -> ModelConfig:
    """A named config (``full``, ``small``), a YAML file (a ``base:`` name plus overrides), or a
    config object; keyword overrides are applied last."""
    if isinstance(spec, ModelConfig):
        cfg = spec
    elif str(spec) in CONFIGS:
        cfg = CONFIGS[str(spec)]
    else:
        path = Path(spec)
        if not path.exists():
            raise InputError(f"unknown config {spec!r}: use full, small or a YAML file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML ({e})") from None
        base = CONFIGS.get(str(data.pop("base", "full")))
        if base is None:
            raise InputError(f"{path}: base must be one of {', '.join(CONFIGS)}")
        overrides = {**data, **overrides}
        cfg = base
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise InputError(f"unknown model option(s): {', '.join(bad)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(cfg, **fixed)
