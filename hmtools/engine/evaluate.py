"""Evaluation: multi-exemplar voting (Eq. 10), Spearman rho, relative l2 (x100), step tIoU."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import ConstantInputWarning, spearmanr

from hmtools import interpretations as interp
from hmtools.datasets.clips import ClipConfig, ClipDataset, ExemplarIndex
from hmtools.datasets.records import Sample
from hmtools.models import Encoded, UniFineParser


@dataclass
class EvalResult:
    spearman_rho: float
    rl2_x100: float
    aiou_50: float | None
    aiou_75: float | None
    predictions: pd.DataFrame
    #: rho of the exemplars' mean score alone (every delta 0): what voting gives for free
    exemplar_mean_rho: float = float("nan")

    def metrics(self, prefix: str = "test_") -> dict[str, float | None]:
        return {
            f"{prefix}spearman_rho": self.spearman_rho,
            f"{prefix}rl2_x100": self.rl2_x100,
            f"{prefix}aiou_50": self.aiou_50,
            f"{prefix}aiou_75": self.aiou_75,
            f"{prefix}exemplar_mean_rho": self.exemplar_mean_rho,
        }


def query_steps(train: list[Sample], clip_cfg: ClipConfig) -> np.ndarray | None:
    """Which step (0, 1, 2) each TAP query stands for: its step in the soft-label layout of the
    training clips, by majority (used to read step segments off the attention maps)."""
    votes = np.zeros((clip_cfg.num_queries, 3), np.int64)
    for s in train:
        if s.step_transitions is None or s.frame_labels is None:
            return None
        pos = interp.finediving_positions(
            len(s.frame_labels), 0, len(s.frame_labels) - 1, clip_cfg.length
        )
        trans = interp.sampled_transitions(s.frame_labels[pos])
        bounds = interp.step_bounds(trans, clip_cfg.num_snippets, clip_cfg.stride)
        for j, (a, b) in enumerate(
            interp.query_parts(trans, clip_cfg.num_snippets, clip_cfg.stride, clip_cfg.num_queries)
        ):
            mid = (a + b) / 2
            step = next((k for k, (x, y) in enumerate(bounds) if x <= mid < y), 2)
            votes[j, step] += 1
    return votes.argmax(1)


def step_tiou(
    a2: np.ndarray, q_steps: np.ndarray, transitions: np.ndarray, cfg: ClipConfig
) -> float:
    """Mean temporal IoU over the 3 steps between the segments read off A2 (each snippet goes
    to the step of its most attended query; steps taken in order) and the true segments."""
    snip_step = q_steps[a2.argmax(0)]  # [N]
    counts = [int((snip_step == k).sum()) for k in range(3)]
    edges_p = np.cumsum([0, *counts]) * cfg.stride
    edges_p[-1] = cfg.length
    t1, t2 = (int(t) + 1 for t in transitions[:2])
    edges_g = [0, t1, t2, cfg.length]
    ious = []
    for k in range(3):
        a0, a1 = edges_p[k], edges_p[k + 1]
        b0, b1 = edges_g[k], edges_g[k + 1]
        inter = max(0, min(a1, b1) - max(a0, b0))
        union = max(a1, b1) - min(a0, b0)
        ious.append(inter / union if union > 0 else 1.0)
    return float(np.mean(ious))


def _encode(model: UniFineParser, ds: ClipDataset, i: int, pc, device) -> tuple[dict, Encoded]:
    """Item ``i`` of ``ds`` and its encoding, through the prefix cache ``pc`` when given."""
    if pc is not None:
        item = pc.item(i)
        return item, model.encode(prefix=pc.prefix([item], device))
    item = ds[i]
    return item, model.encode(item["video"][None].to(device))


@torch.no_grad()
def evaluate(
    model: UniFineParser,
    test: list[Sample],
    train: list[Sample],
    clip_cfg: ClipConfig,
    exemplars: ExemplarIndex,
    *,
    voters: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    caches: tuple | None = None,
) -> EvalResult:
    """Predict every test sample by voting over ``voters`` training exemplars (Eq. 10):
    ``y_hat = mean_j (F(X, Z_j) + y_Zj)``; with the ``dd`` regime the model regresses
    score / difficulty and the vote is multiplied by the query's difficulty. Exemplars are
    encoded once and reused. Masks are never read. ``caches``: optional
    ``(test, train)`` :class:`~hmtools.engine.cache.PrefixCache` of the same test-time clips,
    to reuse a frozen prefix across evaluations."""
    from hmtools.progress import progress_bar

    was_training = model.training
    model.eval()
    test_ds = ClipDataset(test, clip_cfg, train=False)
    train_ds = ClipDataset(train, clip_cfg, train=False)
    row = {s.id: k for k, s in enumerate(train)}
    cache: dict[int, torch.Tensor] = {}
    dd = exemplars.selection == "dd"
    q_steps = query_steps(train, clip_cfg) if model.tap is not None else None
    test_pc, train_pc = caches if caches is not None else (None, None)
    rows, tious = [], []
    for i, s in enumerate(progress_bar(test, desc="eval", unit="video", disable=not progress)):
        item, enc = _encode(model, test_ds, i, test_pc, device)
        ks = exemplars.test_exemplars(s, voters, np.random.default_rng([seed, i]))
        preds, base = [], []
        for k in ks:
            if k not in cache:
                cache[k] = _encode(model, train_ds, row[train[k].id], train_pc, device)[1].steps
            ez = train[k]
            y_z = ez.final_score / ez.difficulty if dd else ez.final_score
            p, _ = model.regress(enc.steps, cache[k], torch.tensor([y_z], device=device))
            preds.append(float(p) * (s.difficulty if dd else 1.0))
            base.append(y_z * (s.difficulty if dd else 1.0))
        if q_steps is not None and "transitions" in item and enc.a2 is not None:
            tious.append(
                step_tiou(enc.a2[0].cpu().numpy(), q_steps, item["transitions"].numpy(), clip_cfg)
            )
        rows.append(
            {
                "video": s.name,
                "action_type": s.action_type,
                "true": s.final_score,
                "predicted": float(np.mean(preds)),
                "exemplar_mean": float(np.mean(base)),
                "exemplars": len(preds),
                "spread_std": float(np.std(preds)),
                "spread_min": float(np.min(preds)),
                "spread_max": float(np.max(preds)),
            }
        )
    model.train(was_training)
    df = pd.DataFrame(rows)
    rho = float(spearmanr(df["true"], df["predicted"]).statistic) if len(df) > 1 else float("nan")
    rl2 = interp.relative_l2(df["true"], df["predicted"])
    base_rho = (
        float(spearmanr(df["true"], df["exemplar_mean"]).statistic) if len(df) > 1 else float("nan")
    )
    t = np.asarray(tious)
    return EvalResult(
        rho,
        rl2,
        float((t >= 0.5).mean()) if len(t) else None,
        float((t >= 0.75).mean()) if len(t) else None,
        df,
        base_rho,
    )


def _rho(true: np.ndarray, pred: np.ndarray) -> float:
    """Spearman's rho, 0 for a constant input (a resample of ties has no rank order)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        r = spearmanr(true, pred).statistic
    return float(r) if np.isfinite(r) else 0.0


def rho_interval(
    true: np.ndarray,
    pred: np.ndarray,
    other: np.ndarray | None = None,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float | list[float]]:
    """Bootstrap (percentile, over test videos) of Spearman's rho of ``pred`` against ``true``
    -- or, with ``other``, of the paired difference rho(pred) - rho(other) on the same videos
    (each resample draws the same videos for both). With ~40 test videos rho has a standard
    error of ~0.14, so differences between runs need this before they mean anything.

    Returns ``{"estimate": rho or the difference, "ci": [low, high], "share_positive":
    fraction of resamples above 0}``."""
    from scipy.stats import bootstrap

    t = np.asarray(true, float)
    a = np.asarray(pred, float)
    b = None if other is None else np.asarray(other, float)
    if len(t) < 3:
        raise ValueError(f"a bootstrap of rho needs at least 3 videos, not {len(t)}")

    def stat(*cols: np.ndarray) -> float:
        d = _rho(cols[0], cols[1])
        return d - _rho(cols[0], cols[2]) if len(cols) == 3 else d

    data = (t, a) if b is None else (t, a, b)
    res = bootstrap(
        data,
        stat,
        paired=True,
        vectorized=False,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    dist = np.asarray(res.bootstrap_distribution)
    return {
        "estimate": stat(*data),
        "ci": [float(res.confidence_interval.low), float(res.confidence_interval.high)],
        "share_positive": float((dist > 0).mean()),
    }
