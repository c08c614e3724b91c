"""The losses of Eq. 8: L = L_A (Eq. 4) + L_T (Eq. 6) + L_E (Eq. 9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_loss(a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4: mean |A - M_gt| over A's own T2 x H2 x W2 positions (hmtools.interpretations 5)."""
    return (a - target).abs().mean()


def temporal_loss(
    a1: torch.Tensor, a2: torch.Tensor, soft: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Eq. 6: KL(T || A1) + KL(T || A2), summed over snippets, averaged over queries and batch.

    ``a1``, ``a2``, ``soft``: [B, L_q, N], rows summing to 1.
    """

    def kl(a: torch.Tensor) -> torch.Tensor:
        return (soft * (torch.log(soft + eps) - torch.log(a + eps))).sum(-1).mean()

    return kl(a1) + kl(a2)


def score_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 9: squared error of the predicted score, averaged over the batch."""
    return F.mse_loss(pred, target)
