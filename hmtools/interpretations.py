"""Every place where hmtools had to interpret the Uni-FineParser paper (or the official code)
because the paper is silent or inconsistent. One module, so the decisions are read and changed
in one place; datasets, models and the engine import them from here.

1. Frame sampling (FineDiving): as the official loader does -- ``np.linspace`` over the clip's
   file-name frame numbers from the first to the last (+ a training shift of the end), frames
   taken at ``number - first`` in sorted order. MTL-AQA / AQA-7: the L frames ending at
   ``end_frame`` (MTL-AQA: sorted positions ``end - L .. end - 1``; AQA-7: ``img_00001..``).
2. Step transitions are recomputed from the per-frame labels at the sampled positions: the
   first frame of every new label, keeping the first and the last change, minus one (the last
   frame of the step before), so every clip has 2 transitions / 3 steps even when the
   annotation has 4 transitions. A clip whose sampled labels show one change repeats it; none
   puts both at the end.
3. Temporal soft labels (Eq. 6 targets, "Interpretations" in the design): a transition at
   sampled frame t belongs to snippet floor(t / alpha); snippets [0, B1), [B1, B2), [B2, N) are
   the 3 steps with B = floor(t / alpha) + 1. The L_q queries are shared out to the steps in
   proportion to their lengths (each non-empty step gets at least one when L_q allows; largest
   remainders get the rest) and each step is cut into equal contiguous parts; query j's label
   is a Gaussian over snippet index (sigma = 1.3) centred on its part's anchor (left / centre /
   right, Table 11), normalised over the N snippets. With fewer queries than non-empty steps
   the N snippets are cut into L_q equal parts.
4. Eq. 3 sums two binary masks (values 0..2) while A is in [0, 1]: the target is the mean of
   each adjacent frame pair (2t, 2t+1), adaptive-average-pooled to A's spatial size.
5. Eq. 4 normalises by T1*W1*H1 although A is T2 x W2 x H2: we normalise by A's own size
   (a plain mean of |A - M|).
6. Eq. 12 as printed has no square; the reported values (0.2294) and the official code use
   R-l2 = mean(((y - y_hat) / (y_max - y_min))^2) * 100 with y_max / y_min over the evaluated
   set's true scores.
7. MTL-AQA has 1,412 annotated samples (1,059 train + 353 test), not 1,369 as printed.
8. MTL-AQA and AQA-7 have no step labels: L_T is switched off there (TAP still runs) and the run
   says so.
9. AQA-7: Split-4 lists, one model per sport class; the mean Spearman rho over classes is
   averaged through Fisher's z (tanh(mean(atanh(rho)))).
10. Fig. 4's groups (``hmtools stats``): FineDiving splits individual from synchronised diving;
   the annotations do not say which, the video names do ("...Synchronised...", "...Synchro...").
   A name without it counts as individual (the MTL-AQA videos inside FineDiving, "01".."26",
   among them). AQA-7 groups by sport (the first part of its ids); MTL-AQA's annotations name
   no event, so its videos form one group; folder videos form one group too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SOFT_LABEL_SIGMA = 1.3
ANCHORS = ("left", "centre", "right")
MTL_AQA_SAMPLES = 1412  # item 7


# -- 1. frame sampling ----------------------------------------------------------------------
def finediving_positions(
    num_files: int, first: int, last: int, length: int, shift: int = 0
) -> np.ndarray:
    """Sorted-file positions of the ``length`` sampled frames of a FineDiving clip whose file
    numbers run ``first..last`` (item 1). ``shift`` moves the end frame (training jitter)."""
    end = last + shift
    nums = np.linspace(first, end, length).astype(np.int64)
    return np.clip(nums - first, 0, num_files - 1)


def window_positions(
    end: int, length: int, shift: int = 0, num_files: int | None = None
) -> np.ndarray:
    """Sorted-file positions ``end + shift - length .. end + shift - 1`` (MTL-AQA, AQA-7),
    clamped inside ``[0, num_files)``."""
    e = end + shift
    if num_files is not None:
        e = int(np.clip(e, length, num_files))
    return np.arange(e - length, e, dtype=np.int64)


# -- 2. transitions -------------------------------------------------------------------------
def sampled_transitions(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Two transitions (last frame of step 1 and of step 2) from sampled per-frame labels."""
    lab = np.asarray(labels)
    firsts = []
    seen: set = set()
    for i, v in enumerate(lab.tolist()):
        if v not in seen:
            seen.add(v)
            firsts.append(i)
    if len(firsts) < 2:
        return np.array([len(lab) - 1, len(lab) - 1], np.int64)
    return np.array([firsts[1] - 1, firsts[-1] - 1], np.int64)


# -- 3. soft labels -------------------------------------------------------------------------
def step_bounds(transitions: Sequence[int], num_snippets: int, alpha: int) -> list[tuple[int, int]]:
    """Snippet ranges ``[a, b)`` of the 3 steps (item 3)."""
    b1, b2 = (min(num_snippets, max(0, int(t) // alpha + 1)) for t in transitions[:2])
    b2 = max(b1, b2)
    return [(0, b1), (b1, b2), (b2, num_snippets)]


def _share(lengths: list[int], n: int) -> list[int]:
    """Largest-remainder apportionment of ``n`` queries to steps, >= 1 per non-empty step."""
    total = sum(lengths)
    ideal = [n * x / total for x in lengths]
    counts = [max(1, int(np.floor(v))) if x > 0 else 0 for v, x in zip(ideal, lengths, strict=True)]
    while sum(counts) > n:  # take from the step with the smallest deficit that has > 1
        i = min((i for i, c in enumerate(counts) if c > 1), key=lambda i: ideal[i] - counts[i])
        counts[i] -= 1
    while sum(counts) < n:
        i = max((i for i, x in enumerate(lengths) if x > 0), key=lambda i: ideal[i] - counts[i])
        counts[i] += 1
    return counts


def query_parts(
    transitions: Sequence[int], num_snippets: int, alpha: int, num_queries: int
) -> list[tuple[float, float]]:
    """The ``num_queries`` contiguous parts ``[a, b)`` (in snippets, possibly fractional)."""
    bounds = step_bounds(transitions, num_snippets, alpha)
    lengths = [b - a for a, b in bounds]
    nonempty = sum(x > 0 for x in lengths)
    if num_queries < nonempty:
        edges = np.linspace(0, num_snippets, num_queries + 1)
        return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    parts = []
    for (a, b), q in zip(bounds, _share(lengths, num_queries), strict=True):
        edges = np.linspace(a, b, q + 1)
        parts += [(float(x), float(y)) for x, y in zip(edges[:-1], edges[1:], strict=True)]
    return parts


def temporal_soft_labels(
    transitions: Sequence[int],
    num_snippets: int,
    alpha: int,
    num_queries: int,
    sigma: float = SOFT_LABEL_SIGMA,
    anchor: str = "centre",
) -> np.ndarray:
    """``float32 [L_q, N]``: query j's Gaussian over snippet index; each row sums to 1."""
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}")
    k = np.arange(num_snippets, dtype=np.float64)
    rows = []
    for a, b in query_parts(transitions, num_snippets, alpha, num_queries):
        last = max(a, b - 1)  # index of the part's last snippet
        c = {"left": a, "centre": (a + last) / 2, "right": last}[anchor]
        g = np.exp(-((k - c) ** 2) / (2 * sigma**2))
        rows.append(g / g.sum())
    return np.asarray(rows, np.float32)


# -- 4. mask target (Eq. 3) -----------------------------------------------------------------
def mask_target(masks: np.ndarray, out_hw: tuple[int, int], group: int = 2) -> np.ndarray:
    """Eq. 3 target for one snippet: ``masks`` float [T, H, W] in [0, 1] -> [T/group, h, w]: the
    mean of frames (2t, 2t+1), adaptive-average-pooled to ``out_hw`` (item 4). With the SAP
    after a later stage (I3D halves time again in Stages 3 and 4) ``group`` consecutive frames
    are averaged, the same rule at A's own temporal size."""
    import torch
    import torch.nn.functional as F

    m = torch.from_numpy(np.ascontiguousarray(masks, np.float32))
    T = m.shape[0] - m.shape[0] % group
    groups = m[:T].reshape(T // group, group, *m.shape[1:]).mean(1)
    return F.adaptive_avg_pool2d(groups[:, None], out_hw)[:, 0].numpy()


# -- 6. metrics ------------------------------------------------------------------------------
def relative_l2(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """R-l2 x 100 with the square (item 6)."""
    y, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    span = y.max() - y.min()
    if span == 0:
        return float("nan")
    return float(np.mean(((y - p) / span) ** 2) * 100)


def fisher_z_mean(rhos: Sequence[float]) -> float:
    """Average correlation through Fisher's z (item 9)."""
    r = np.clip(np.asarray(rhos, np.float64), -0.999999, 0.999999)
    return float(np.tanh(np.arctanh(r).mean()))


# -- 10. Fig. 4 groups -----------------------------------------------------------------------
def event_group(video_id: Sequence[str | int], action_type: str = "") -> str:
    """The group of Fig. 4 a video's masks count in (item 10)."""
    first = video_id[0]
    if len(video_id) == 2 and isinstance(first, str) and isinstance(video_id[1], int):
        from hmtools.datasets.records import AQA7_CLASSES

        if first in AQA7_CLASSES:
            return first
        return "synchronised" if "synchro" in first.lower() else "individual"
    if len(video_id) == 2 and isinstance(first, int):
        return "mtl-aqa (no event in the annotations)"
    return "all"
