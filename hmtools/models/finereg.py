"""Fine-grained contrastive regression (Eq. 7): step-wise score differences of a pair."""

from __future__ import annotations

import torch
from torch import nn


def mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FineReg(nn.Module):
    """``Delta = E_R(E_S(concat(X_Q^T, X_Z^T)))``: E_S a 2-layer MLP, E_R a 3-layer MLP with
    ReLU, per step; ``y_hat = y_Z + mean_m Delta_m`` (Eq. 7).

    ``xq``, ``xz`` [B, L_q, d] -> deltas [B, L_q].
    """

    def __init__(
        self, d: int, enc_dims: tuple[int, int] = (256, 128), reg_dims: tuple[int, int] = (64, 32)
    ):
        super().__init__()
        self.encoder = mlp([2 * d, *enc_dims])  # E_S: two layers
        self.regressor = mlp([enc_dims[-1], *reg_dims, 1])  # E_R: three layers
        nn.init.zeros_(self.regressor[-1].bias)

    def forward(self, xq: torch.Tensor, xz: torch.Tensor) -> torch.Tensor:
        e = self.encoder(torch.cat([xq, xz], dim=-1))
        return self.regressor(torch.relu(e)).squeeze(-1)

    @staticmethod
    def predict(deltas: torch.Tensor, y_exemplar: torch.Tensor) -> torch.Tensor:
        """Eq. 7: ``y_hat = y_Z + (1 / L_q) sum_m Delta_m``."""
        return y_exemplar + deltas.mean(dim=-1)
