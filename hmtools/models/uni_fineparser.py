"""Uni-FineParser (Section 3): I3D with the spatial action parser (SAP) after a chosen stage,
static visual encoding (SVE), the temporal action parser (TAP) and fine-grained contrastive
regression (FineReg). ``F(X, Z) + y_Z`` (Eq. 1).

The model is used in two steps so that voting over M exemplars (Eq. 10) encodes each video once:
:meth:`encode` turns one batch of videos into step features (and, in training, the attention
maps the losses need); :meth:`regress` compares query and exemplar features. ``forward`` does
both for a training pair and returns the prediction and the losses of Eq. 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from hmtools.models.config import ModelConfig
from hmtools.models.finereg import FineReg
from hmtools.models.i3d import MODULES, InceptionI3d
from hmtools.models.losses import attention_loss, score_loss, temporal_loss
from hmtools.models.sap import MaskGuidedAttention
from hmtools.models.sve import StaticVisualEncoder
from hmtools.models.tap import TemporalActionParser


@dataclass
class Encoded:
    """One batch of videos after the backbone and TAP."""

    steps: torch.Tensor  # [B, L_q, d] step features X^T (or [B, 1, d] without TAP)
    a1: torch.Tensor | None  # [B, L_q, N] TAP attention maps
    a2: torch.Tensor | None
    spatial: torch.Tensor | None  # [B, N, T2, H2, W2] SAP attention A


class Prefix(NamedTuple):
    """The input side of the SAP for a batch of videos: I3D up to the SAP stage
    ``[B*N, C, T, H, W]`` and the SVE's central frames ``[B*N, 3, 2, h, w]`` (or None).

    With the prefix frozen (``ModelConfig.prefix_frozen``) it does not change in training, so
    the engine computes it once per clip view and reuses it (``hmtools.engine.cache``)."""

    features: torch.Tensor
    frames: torch.Tensor | None


class UniFineParser(nn.Module):
    """See module doc. Input videos ``[B, 3, L, H, W]`` in [-1, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.i3d = InceptionI3d(width=cfg.i3d_width)
        c4 = self.i3d.channels["stage4"]
        self.sap = MaskGuidedAttention(cfg.sap_plus_one) if cfg.use_sap else None
        self.sve = StaticVisualEncoder(cfg.sve_arch) if cfg.use_sve else None
        if self.sve is not None and self.sve.out_dim != c4:
            raise ValueError(f"SVE gives {self.sve.out_dim}-d features, I3D Stage 4 {c4}-d")
        if cfg.use_tap:
            self.tap: TemporalActionParser | None = TemporalActionParser(
                cfg.num_queries,
                cfg.query_dim,
                c4,
                cfg.attn_dim,
                cfg.heads,
                cfg.tau_init,
                cfg.ffn_dim,
            )
            d = cfg.attn_dim
        else:
            self.tap = None
            d = c4
        self.finereg = FineReg(d, cfg.enc_dims, cfg.reg_dims)
        # pre-norm of the TAP's input X^F and of FineReg's input X^T (SPEC.md: measured)
        self.norm_f = nn.LayerNorm(c4) if cfg.feature_norm else nn.Identity()
        self.norm_t = nn.LayerNorm(d) if cfg.feature_norm else nn.Identity()
        if not 0.0 <= cfg.feature_dropout < 1.0:
            raise ValueError(f"feature_dropout must be in [0, 1), not {cfg.feature_dropout}")
        # a regulariser of the heads beyond the paper (SPEC.md: measured); off in evaluation
        self.drop_f = nn.Dropout(cfg.feature_dropout)
        if cfg.sve_bn not in ("batch", "frozen"):
            raise ValueError(f"sve_bn must be batch or frozen, not {cfg.sve_bn!r}")
        _ = cfg.frozen_modules  # checks frozen_until
        if cfg.freeze_bn:
            self.freeze_batchnorm()
        for m in self._frozen_modules():
            m.requires_grad_(False)

    def _frozen_bn(self) -> list[nn.Module]:
        """The BatchNorms kept in eval mode: I3D's (``freeze_bn``) and the SVE's with
        ``sve_bn="frozen"``."""
        mods: list[nn.Module] = []
        if self.cfg.freeze_bn:
            mods.append(self.i3d)
        if self.sve is not None and self.cfg.sve_bn == "frozen":
            mods.append(self.sve)
        return [
            m
            for root in mods
            for m in root.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]

    def freeze_batchnorm(self) -> None:
        """I3D's BatchNorms (and the SVE's with ``sve_bn="frozen"``) in eval mode with frozen
        affine parameters: batches of 2 videos cannot estimate I3D's statistics, and frozen BN
        makes a DDP step equal to the same global batch in one process. The SVE's BatchNorm
        (``sve_bn="batch"``, the official code's) normalises over the batch's 2 x N x B frames."""
        for m in self._frozen_bn():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> UniFineParser:
        super().train(mode)
        self.freeze_batchnorm()
        for m in self._frozen_modules():  # frozen modules never change
            m.eval()
        return self

    # -- encoding -------------------------------------------------------------------------
    def snippets(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, L, H, W]`` -> ``[B*N, 3, beta, H, W]`` (N snippets, stride alpha)."""
        c = self.cfg
        starts = [i * c.stride for i in range(c.num_snippets)]
        if starts[-1] + c.snippet_len > video.shape[2]:
            raise ValueError(
                f"video has {video.shape[2]} frames, the config needs {starts[-1] + c.snippet_len}"
            )
        sn = torch.stack([video[:, :, s : s + c.snippet_len] for s in starts], 1)
        return sn.flatten(0, 1)

    def _frozen_modules(self) -> list[nn.Module]:
        """The I3D modules up to ``frozen_until``."""
        return [getattr(self.i3d, name) for name in MODULES[: self.cfg.frozen_modules]]

    def encode_prefix(self, video: torch.Tensor) -> Prefix:
        """The frozen I3D modules below the SAP (``ModelConfig.cached_modules``; none: the
        snippets themselves) and the SVE's frames, for ``[B, 3, L, H, W]`` videos."""
        x = self.snippets(video)
        k = self.cfg.cached_modules
        if k:
            with torch.no_grad():
                h = self.i3d.run_modules(x, 0, k)
        else:
            h = x
        frames = StaticVisualEncoder.central_frames(x) if self.sve is not None else None
        return Prefix(h, frames)

    def encode(self, video: torch.Tensor | None = None, *, prefix: Prefix | None = None) -> Encoded:
        """Step features of a batch of videos, from the videos or from their :class:`Prefix`."""
        c = self.cfg
        if prefix is None:
            if video is None:
                raise ValueError("encode needs a video or a prefix")
            prefix = self.encode_prefix(video)
        h = self.i3d.run_modules(prefix.features, c.cached_modules, c.sap_after)
        b = h.shape[0] // c.num_snippets
        spatial = None
        if self.sap is not None:
            h, a = self.sap(h)  # Eqs. 2, 5
            spatial = a.view(b, c.num_snippets, *a.shape[1:])
        h = self.i3d.run_modules(h, c.sap_after, len(MODULES))
        feat = h.mean(dim=(2, 3, 4)).view(b, c.num_snippets, -1)  # B_4^A(X_i), [B, N, C4]
        if self.sve is not None:
            if prefix.frames is None:
                raise ValueError("this model has an SVE: the prefix needs its frames")
            # X^F = B_4^A + X^V
            feat = feat + self.sve.forward_frames(prefix.frames).view(b, c.num_snippets, -1)
        return self.parse(feat, spatial)

    def parse(self, feat: torch.Tensor, spatial: torch.Tensor | None = None) -> Encoded:
        """The heads' side of :meth:`encode`: snippet features X^F ``[B, N, C4]`` -> step
        features X^T (LayerNorm, feature dropout in training, TAP, LayerNorm)."""
        feat = self.drop_f(self.norm_f(feat))
        if self.tap is not None:
            steps, a1, a2 = self.tap(feat)
            return Encoded(self.norm_t(steps), a1, a2, spatial)
        return Encoded(self.norm_t(feat.mean(1, keepdim=True)), None, None, spatial)

    def regress(
        self, q: Encoded | torch.Tensor, z: Encoded | torch.Tensor, y_exemplar: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y_hat, deltas)`` of queries against exemplars (Eq. 7)."""
        xq = q.steps if isinstance(q, Encoded) else q
        xz = z.steps if isinstance(z, Encoded) else z
        deltas = self.finereg(xq, xz)
        return FineReg.predict(deltas, y_exemplar), deltas

    # -- training pair --------------------------------------------------------------------
    def forward(
        self,
        query: torch.Tensor | Prefix,
        exemplar: torch.Tensor | Prefix,
        y_exemplar: torch.Tensor,
        y_query: torch.Tensor | None = None,
        *,
        masks: tuple[torch.Tensor, torch.Tensor] | None = None,
        soft_labels: tuple[torch.Tensor, torch.Tensor] | None = None,
        symmetric: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Encode both videos in one batch, regress, and return ``pred`` plus the losses
        (Eq. 8) whose targets were given: ``loss_a`` (masks, Eq. 4), ``loss_t`` (soft labels,
        Eq. 6), ``loss_e`` (y_query, Eq. 9) and their sum ``loss``. ``symmetric``: ``loss_e``
        is the mean of Eq. 9 for (query, exemplar) and for the reversed pair (exemplar, query)
        predicting the exemplar's score. ``query`` / ``exemplar``
        are videos ``[B, 3, L, H, W]`` or their :class:`Prefix` (same result, see ``encode``)."""
        b = y_exemplar.shape[0]
        if isinstance(query, Prefix):  # cached prefixes (hmtools.engine.cache)
            both = Prefix(
                torch.cat([query.features, exemplar.features], 0),
                None if query.frames is None else torch.cat([query.frames, exemplar.frames], 0),
            )
            enc = self.encode(prefix=both)
        else:
            enc = self.encode(torch.cat([query, exemplar], 0))
        qe = Encoded(enc.steps[:b], None, None, None)
        ze = Encoded(enc.steps[b:], None, None, None)
        pred, deltas = self.regress(qe, ze, y_exemplar)
        out: dict[str, torch.Tensor] = {"pred": pred, "deltas": deltas}
        if symmetric and y_query is not None:  # the pair in both orders (the official code's)
            out["pred_reverse"], _ = self.regress(ze, qe, y_query)
        total = pred.new_zeros(())
        if masks is not None and enc.spatial is not None and self.cfg.use_mask_loss:
            out["loss_a"] = attention_loss(enc.spatial, torch.cat(masks, 0))
            total = total + out["loss_a"]
        if soft_labels is not None and enc.a1 is not None and self.cfg.use_temporal_loss:
            out["loss_t"] = temporal_loss(enc.a1, enc.a2, torch.cat(soft_labels, 0))
            total = total + out["loss_t"]
        if y_query is not None:
            out["loss_e"] = score_loss(pred, y_query)  # Eq. 9
            if "pred_reverse" in out:  # Eq. 9 on both orders, averaged
                out["loss_e"] = 0.5 * (out["loss_e"] + score_loss(out["pred_reverse"], y_exemplar))
            total = total + out["loss_e"]
        out["loss"] = total
        return out

    # -- bookkeeping ------------------------------------------------------------------------
    def components(self) -> dict[str, nn.Module]:
        parts: dict[str, nn.Module] = {"i3d": self.i3d}
        for name in ("sap", "sve", "tap", "finereg"):
            m = getattr(self, name)
            if m is not None:
                parts[name] = m
        if self.cfg.feature_norm:
            parts["feature_norm"] = nn.ModuleList([self.norm_f, self.norm_t])
        return parts

    def param_groups(self, lr: float, backbone_lr: float, tau_lr: float) -> list[dict]:
        """Optimizer groups as the paper trains: I3D at ``backbone_lr`` (1e-4), the TAP
        temperatures at their own lr, everything else at ``lr``. Frozen parameters are left
        out."""
        taus = {id(p) for p in (self.tap.temperatures() if self.tap else [])}
        backbone = [p for p in self.i3d.parameters() if p.requires_grad]
        ids = {id(p) for p in backbone} | taus
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        groups = [
            {"params": backbone, "lr": backbone_lr, "name": "i3d"},
            {"params": rest, "lr": lr, "name": "heads"},
        ]
        if taus:
            groups.append({"params": self.tap.temperatures(), "lr": tau_lr, "name": "tau"})
        return groups
