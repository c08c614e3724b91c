"""Model configurations. ``full`` is the paper's setting; ``small`` runs the same modules on CPU
on the pretrained I3D; ``tiny`` is a from-scratch plumbing config for fast tests.

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
    freeze_bn: bool = True  # I3D's BatchNorm (the SVE's: sve_bn)
    # the I3D modules up to and including this one (a module name as in i3d.STAGES, or a stage
    # name for all of it; "" = none) keep their pretrained weights. What lies below the SAP of
    # that part is computed once per clip view and cached in training (TrainConfig.cache_views)
    frozen_until: str = ""
    # the SVE ResNet's BatchNorm: "batch" (statistics of the batch in training, running ones
    # in evaluation -- the official FineParser code) or "frozen" (eval mode: a from-scratch
    # ResNet then passes its growing activations on unnormalised, SPEC.md)
    sve_bn: str = "batch"
    # LayerNorm on the snippet features X^F before the TAP and on the step features X^T before
    # FineReg (the official FineParser decoder's pre-norm; without it the score offsets collapse
    # to a constant, SPEC.md)
    feature_norm: bool = True
    # dropout on the (normalised) snippet features X^F as the TAP reads them, in training only;
    # 0 = off. Beyond the paper: a regulariser of the heads, measured in SPEC.md
    feature_dropout: float = 0.0
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
        """Spatial down-sampling of I3D at the SAP stage (4 after Stages 1-2, 16, 32 later)."""
        return {"stage1": 4, "stage2": 4, "stage3": 16, "stage4": 32}[self.sap_stage]

    @property
    def sap_temporal_stride(self) -> int:
        """Temporal down-sampling of I3D at the SAP stage (2 after Stages 1-2, 4, 8 later)."""
        return {"stage1": 2, "stage2": 2, "stage3": 4, "stage4": 8}[self.sap_stage]

    @property
    def sap_index(self) -> int:
        """1-based number of the stage the SAP follows."""
        return int(self.sap_stage[-1])

    @property
    def frozen_modules(self) -> int:
        """How many I3D modules (in forward order) are frozen (``frozen_until``)."""
        from hmtools.models.i3d import MODULES, STAGES

        f = self.frozen_until
        if not f:
            return 0
        if f in STAGES:
            f = STAGES[f][-1]
        if f not in MODULES:
            raise ValueError(
                f"frozen_until {self.frozen_until!r}: not an I3D module or stage "
                f"({', '.join(STAGES)} or one of {', '.join(MODULES)})"
            )
        return MODULES.index(f) + 1

    @property
    def sap_after(self) -> int:
        """How many I3D modules run before the SAP."""
        from hmtools.models.i3d import MODULES, STAGES

        return MODULES.index(STAGES[self.sap_stage][-1]) + 1

    @property
    def cached_modules(self) -> int:
        """The I3D modules whose output the engine may cache: the frozen ones below the SAP."""
        return min(self.frozen_modules, self.sap_after)

    @property
    def prefix_frozen(self) -> bool:
        """Part of the I3D below the SAP is frozen: its output can be computed once and reused."""
        return self.cached_modules > 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FULL = ModelConfig()
# The CPU experiment config: the paper's modules at 32 frames / 112 px on the Kinetics I3D. The
# SAP follows Stage 3 and the 7 x 7 part of Stage 3 (mixed_4b..4f) trains with Stage 4, so L_A
# shapes real parameters; what lies below (Stages 1-2 and the 14 x 14 part of Stage 3, 71 % of
# the forward) is frozen and cached per clip view (SPEC.md "CPU configs": why and what was
# measured).
SMALL = ModelConfig(
    name="small",
    length=32,
    num_snippets=4,
    snippet_len=8,
    stride=8,
    crop=112,
    resize_hw=(128, 227),
    i3d_width=1.0,
    sap_stage="stage3",
    frozen_until="maxPool3d_4a_3x3",
    sve_arch="small512",
    query_dim=64,
    attn_dim=64,
    heads=4,
    tau_init=0.07 * 64,
    ffn_dim=128,
    enc_dims=(64, 32),
    reg_dims=(32, 16),
)
# The plumbing config: every module at a quarter of the I3D width, from scratch, fast enough for
# unit tests of training, resume and DDP (it does not learn the synthetic scores; SPEC.md).
TINY = dataclasses.replace(
    SMALL,
    name="tiny",
    i3d_width=0.25,
    sap_stage="stage2",
    frozen_until="",
    sve_arch="small",
)
CONFIGS: dict[str, ModelConfig] = {"full": FULL, "small": SMALL, "tiny": TINY}


def load_config(spec: str | os.PathLike | ModelConfig, **overrides: object) -> ModelConfig:
    """A named config (``full``, ``small``, ``tiny``), a YAML file (a ``base:`` name plus overrides), or a
    config object; keyword overrides are applied last."""
    if isinstance(spec, ModelConfig):
        cfg = spec
    elif str(spec) in CONFIGS:
        cfg = CONFIGS[str(spec)]
    else:
        path = Path(spec)
        if not path.exists():
            raise InputError(f"unknown config {spec!r}: use full, small, tiny or a YAML file")
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
