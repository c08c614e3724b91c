"""Uni-FineParser in PyTorch (Section 3 of the paper): see ``SPEC.md`` for the choices where the
paper is silent.

    build_model(config, i3d_weights=..., resnet_weights=...) -> (UniFineParser, load reports)
    ModelConfig / load_config / CONFIGS ("full", "small", "tiny")
    count_params(model), count_flops(cfg)
    InceptionI3d (stages 1-4), MaskGuidedAttention (SAP, Eqs. 2-5), StaticVisualEncoder (SVE),
    TemporalActionParser (TAP, Eq. 6 maps), FineReg (Eq. 7), losses (Eqs. 4, 6, 9)
"""

from hmtools.models.build import build_model, count_flops, count_params
from hmtools.models.config import CONFIGS, ModelConfig, load_config
from hmtools.models.finereg import FineReg
from hmtools.models.i3d import InceptionI3d
from hmtools.models.sap import MaskGuidedAttention
from hmtools.models.sve import StaticVisualEncoder
from hmtools.models.tap import TemporalActionParser
from hmtools.models.uni_fineparser import Encoded, Prefix, UniFineParser

__all__ = [
    "CONFIGS",
    "Encoded",
    "FineReg",
    "InceptionI3d",
    "MaskGuidedAttention",
    "ModelConfig",
    "Prefix",
    "StaticVisualEncoder",
    "TemporalActionParser",
    "UniFineParser",
    "build_model",
    "count_flops",
    "count_params",
    "load_config",
]
