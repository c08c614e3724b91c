"""Inception-v1 inflated 3-D ConvNet (I3D, Carreira & Zisserman 2017), split into the four
stages Uni-FineParser needs.

Module names follow the TensorFlow end points in the lower-case spelling of the widely used
PyTorch port (``conv3d_1a_7x7.conv3d.weight``, ``mixed_3b.branch_1.1.batch3d.running_mean``,
...), so its ``model_rgb.pth`` state dict maps one to one (see :mod:`hmtools.models.weights`).
Convolutions and max-pools use TensorFlow "SAME" padding computed from the actual input size
(asymmetric for stride 2), BatchNorm has eps 1e-3 and no learned scale, as in the original.

Stages for an 8 x 224 x 224 snippet (Table 1 of the paper):

    stage1  conv3d_1a_7x7, maxPool3d_2a_3x3                 ->  64 x 4 x 56 x 56
    stage2  conv3d_2b_1x1, conv3d_2c_3x3                    -> 192 x 4 x 56 x 56  (SAP here)
    stage3  maxPool3d_3a_3x3, mixed_3b..3c, maxPool3d_4a,
            mixed_4b..4f                                     -> 832 x 2 x 14 x 14
    stage4  maxPool3d_5a_2x2, mixed_5b..5c                  -> 1024 x 1 x 7 x 7
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (in_channels, [b0, b1a, b1b, b2a, b2b, b3]) of each Inception module
MIXED: dict[str, tuple[int, tuple[int, ...]]] = {
    "mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}

STAGES: dict[str, tuple[str, ...]] = {
    "stage1": ("conv3d_1a_7x7", "maxPool3d_2a_3x3"),
    "stage2": ("conv3d_2b_1x1", "conv3d_2c_3x3"),
    "stage3": (
        "maxPool3d_3a_3x3",
        "mixed_3b",
        "mixed_3c",
        "maxPool3d_4a_3x3",
        "mixed_4b",
        "mixed_4c",
        "mixed_4d",
        "mixed_4e",
        "mixed_4f",
    ),
    "stage4": ("maxPool3d_5a_2x2", "mixed_5b", "mixed_5c"),
}
#: every module in forward order (what ``ModelConfig.frozen_until`` and the prefix cache count)
MODULES: tuple[str, ...] = tuple(name for st in STAGES.values() for name in st)
STAGE_CHANNELS = {"stage1": 64, "stage2": 192, "stage3": 832, "stage4": 1024}


def same_padding(
    size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]
) -> list[int]:
    """TensorFlow SAME padding for ``F.pad`` (last dim first): total ``max((ceil(n/s)-1)*s + k
    - n, 0)`` per dim, the smaller half before."""
    pads: list[int] = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding, no bias) + BatchNorm (eps 1e-3, no scale) + ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        *,
        use_bn: bool = True,
        bias: bool = False,
        activation: bool = True,
    ):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=bias)
        self.batch3d = nn.BatchNorm3d(cout, eps=1e-3, affine=True) if use_bn else None
        if self.batch3d is not None:  # TF's BN has no scale: keep gamma at 1, not trained
            self.batch3d.weight.requires_grad_(False)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(k > 1 for k in self.kernel):
            x = F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        x = self.conv3d(x)
        if self.batch3d is not None:
            x = self.batch3d(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max-pool with TF SAME padding (padded with -inf, so borders never win)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(
            x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride), value=float("-inf")
        )
        return F.max_pool3d(x, self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | max-pool 3x3 -> 1x1, concatenated."""

    def __init__(self, cin: int, c: tuple[int, ...]):
        super().__init__()
        self.branch_0 = Unit3D(cin, c[0])
        self.branch_1 = nn.Sequential(Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3)))
        self.branch_3 = nn.Sequential(MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1
        )


class InceptionI3d(nn.Module):
    """I3D without its Kinetics classifier, run stage by stage. ``width`` scales every channel
    count (1.0 is the real network, the only width pretrained weights fit).

    ``forward(x)`` maps ``[B, 3, T, H, W]`` (RGB in [-1, 1]) to the Stage-4 map
    ``[B, 1024, T/8, H/32, W/32]``; :meth:`run` runs any range of stages.
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0):
        super().__init__()

        def w(c: int) -> int:
            return c if width == 1.0 else max(4, int(round(c * width)))

        self.width = width
        self.conv3d_1a_7x7 = Unit3D(in_channels, w(64), (7, 7, 7), (2, 2, 2))
        self.maxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = Unit3D(w(64), w(64))
        self.conv3d_2c_3x3 = Unit3D(w(64), w(192), (3, 3, 3))
        self.maxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.maxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.maxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        cin = w(192)
        self.channels = {"stage1": w(64), "stage2": w(192)}
        for name, (_, c) in MIXED.items():
            cs = tuple(w(x) for x in c)
            self.add_module(name, Mixed(cin, cs))
            cin = cs[0] + cs[2] + cs[4] + cs[5]
            self.channels[
                "stage3"
                if name.startswith("mixed_4")
                else "stage4"
                if name.startswith("mixed_5")
                else "stage2_5"
            ] = cin

        # Variance-preserving init (He et al. 2015). Frozen BatchNorm at its initial statistics
        # is the identity, so with PyTorch's default conv init a from-scratch I3D's activations
        # shrink layer by layer (small config, measured: Stage-3/4 std 0.02 or less, every clip
        # giving nearly the same features; ~0.9 with this init). Pretrained weights replace it.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def run(self, x: torch.Tensor, stages: tuple[str, ...]) -> torch.Tensor:
        for st in stages:
            for name in STAGES[st]:
                x = getattr(self, name)(x)
        return x

    def run_modules(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Modules ``MODULES[start:stop]`` (forward order) on ``x``."""
        for name in MODULES[start:stop]:
            x = getattr(self, name)(x)
        return x

    def endpoints(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate end point (for checking a weight conversion)."""
        out = {}
        for st in STAGES:
            for name in STAGES[st]:
                x = getattr(self, name)(x)
                out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, tuple(STAGES))

    def freeze_batchnorm(self) -> None:
        """Put every BatchNorm in eval mode and stop its affine parameters from training (the
        paper's setting: batch 2 cannot estimate statistics)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.eval()
                for p in m.parameters():
                    p.requires_grad_(False)
