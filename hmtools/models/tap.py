"""Temporal action parsing (TAP): a DETR-like decoder with L_q learnable step queries,
Cross-Attention -> Self-Attention -> Cross-Attention (Section 3.2, Eq. 6 supervises A1, A2)."""

from __future__ import annotations

import torch
from torch import nn


class TemperedCrossAttention(nn.Module):
    """Single-head cross-attention ``A = softmax(Q K^T / tau)`` with a learnable temperature.

    ``q`` [B, L_q, d_q], ``x`` [B, N, C]; returns ``(A V`` [B, L_q, d], ``A`` [B, L_q, N]).
    """

    def __init__(self, d_query: int, d_feat: int, d_model: int, tau_init: float):
        super().__init__()
        self.w_q = nn.Linear(d_query, d_model)
        self.w_k = nn.Linear(d_feat, d_model)
        self.w_v = nn.Linear(d_feat, d_model)
        self.tau = nn.Parameter(torch.tensor(float(tau_init)))  # learnable temperature

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qq, k, v = self.w_q(q), self.w_k(x), self.w_v(x)
        a = torch.softmax(qq @ k.transpose(1, 2) / self.tau, dim=-1)
        return a @ v, a


class TemporalActionParser(nn.Module):
    """``X^T = T(X^F)``: returns step features ``[B, L_q, d]`` and the attention maps A1, A2.

    Cross-attention 1 with the learnable queries Q; multi-head self-attention among the step
    features; cross-attention 2 with query ``X_2^F + Q`` (the paper's residual with the query
    embeddings) -- both cross-attentions on the snippet features ``X^F`` [B, N, C4].
    """

    def __init__(
        self,
        num_queries: int = 6,
        d_query: int = 256,
        d_feat: int = 1024,
        d_model: int = 256,
        heads: int = 8,
        tau_init: float = 0.07 * 256,
        ffn_dim: int = 2048,
    ):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, d_query) * 0.02)
        self.cross1 = TemperedCrossAttention(d_query, d_feat, d_model, tau_init)
        # the "multi-head self-attention layer": a standard transformer layer (MHSA + FFN, post
        # LayerNorm, DETR's sizes) -- see SPEC.md
        self.self_attn = nn.TransformerEncoderLayer(
            d_model, heads, ffn_dim, dropout=0.0, batch_first=True
        )
        self.to_query = nn.Identity() if d_query == d_model else nn.Linear(d_query, d_model)
        self.cross2 = TemperedCrossAttention(d_model, d_feat, d_model, tau_init)
        self.out_dim = d_model

    def temperatures(self) -> list[nn.Parameter]:
        return [self.cross1.tau, self.cross2.tau]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        q = self.queries.unsqueeze(0).expand(b, -1, -1)
        x1, a1 = self.cross1(q, x)
        x2 = self.self_attn(x1)
        x3, a2 = self.cross2(x2 + self.to_query(q), x)
        return x3, a1, a2
