"""Spatial action parsing: the mask-guided action attention after I3D Stage 2 (Eqs. 2-5)."""

from __future__ import annotations

import torch
from torch import nn


class MaskGuidedAttention(nn.Module):
    """``A = sigmoid(f_A([mean_c, max_c]))`` (Eq. 2) with ``f_A`` a 1x1x1 conv over the two pooled
    maps; features are re-weighted by ``A + 1`` (Eq. 5) or ``A`` (ablation ``plus_one=False``).

    Input ``[B, C2, T2, H2, W2]``; returns ``(features, A)`` with ``A`` ``[B, T2, H2, W2]``.
    """

    def __init__(self, plus_one: bool = True):
        super().__init__()
        self.f_a = nn.Conv3d(2, 1, kernel_size=1)  # learns the weights of A_mea and A_max
        self.plus_one = plus_one

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a_mea = x.mean(dim=1, keepdim=True)  # Eq. 2: channel mean
        a_max = x.amax(dim=1, keepdim=True)  # Eq. 2: channel max
        a = torch.sigmoid(self.f_a(torch.cat([a_mea, a_max], 1)))  # Eq. 2
        out = x * (a + 1) if self.plus_one else x * a  # Eq. 5
        return out, a[:, 0]
