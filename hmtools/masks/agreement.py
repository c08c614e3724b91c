"""How well one mask layer agrees with another (pseudo masks ``pm`` against ground truth ``gtm``),
frame by frame, with the split figures a dataset builder needs.

Definitions (what ``hmtools stats`` writes to ``summary.json`` under ``pm_vs_gtm``; every figure
is over the frames that have a mask in both layers):

- ``frames``: frames with a mask in both layers.
- ``athlete_frames``: those whose ``gtm`` mask is not empty (the frame shows an athlete).
- ``iou_athlete_mean`` / ``_median``: region similarity J (IoU) over the athlete frames; a ``pm``
  mask that is empty there scores 0. Frames where both masks are empty are *not* counted (they
  would score 1 and hide how often ``pm`` finds nobody).
- ``missed``: athlete frames whose ``pm`` mask is empty.
- ``false_alarms``: frames whose ``gtm`` mask is empty but whose ``pm`` mask is not.
- ``boundary_f_mean``: the DAVIS boundary F-measure (Perazzi et al. 2016, as the DAVIS 2017
  evaluation code computes it: boundaries by :func:`seg2bmap`, matched within a disk of
  ``ceil(0.008 * image diagonal)`` pixels, F = 2PR / (P + R)) over the athlete frames.
- ``jf_mean``: DAVIS's J&F, the mean of ``iou_athlete_mean`` and ``boundary_f_mean``.

IoU is computed on the RLEs (no decoding); the boundary F-measure decodes both masks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from hmtools.masks import rle as rle_ops
from hmtools.masks.schema import LAYER_GTM, LAYER_PM
from hmtools.masks.store import MaskStore
from hmtools.progress import progress_bar

#: DAVIS's boundary tolerance: a fraction of the image diagonal (0.008, i.e. 5 px at 455 x 256).
BOUND_TH = 0.008

FRAME_COLUMNS = ["video", "action_type", "frame", "gt_area", "pm_area", "iou", "boundary_f"]


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The one-pixel boundary of a binary mask, as DAVIS defines it: a pixel is on the boundary
    when it differs from its right, lower or lower-right neighbour (the last row and column
    compare with what they have)."""
    seg = np.asarray(seg).astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: float) -> np.ndarray:
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def bound_pixels(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """The matching tolerance in pixels: ``bound_th`` itself when >= 1, else that fraction of the
    image diagonal, rounded up."""
    return int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*shape)))


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """DAVIS boundary F-measure of ``pred`` against ``gt`` (both binary ``[H, W]``).

    No boundary in either: 1. Only ``gt`` has one: 0 (precision 1, recall 0). Only ``pred``:
    0 (precision 0, recall 1)."""
    fg, gb = seg2bmap(pred), seg2bmap(gt)
    n_fg, n_gt = int(fg.sum()), int(gb.sum())
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    disk = _disk(bound_pixels(pred.shape[:2], bound_th))
    fg_dil = cv2.dilate(fg.astype(np.uint8), disk).astype(bool)
    gt_dil = cv2.dilate(gb.astype(np.uint8), disk).astype(bool)
    precision = float((fg & gt_dil).sum()) / n_fg
    recall = float((gb & fg_dil).sum()) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def layer_agreement(
    store_path: str | os.PathLike,
    pred: str = LAYER_PM,
    truth: str = LAYER_GTM,
    *,
    boundary: bool = True,
    action_types: dict | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per frame that has a mask in both layers (:data:`FRAME_COLUMNS`): the areas, IoU
    (1 where both are empty) and, with ``boundary``, the DAVIS boundary F (NaN without)."""
    rows = []
    with MaskStore(store_path) as store:
        infos = [i for i in store.videos() if pred in i.layers and truth in i.layers]
        for info in progress_bar(infos, desc="agreement", unit="video", disable=not progress):
            a = store.read_layer(info.video_id, pred)
            b = store.read_layer(info.video_id, truth)
            frames, ia, ib = np.intersect1d(a.frame_index, b.frame_index, return_indices=True)
            if not len(frames):
                continue
            ra, rb = [a.rles[i] for i in ia], [b.rles[i] for i in ib]
            iou = rle_ops.iou(ra, rb, info.height, info.width)
            bf = np.full(len(frames), np.nan)
            if boundary:
                for j in range(len(frames)):
                    if a.area[ia[j]] == 0 and b.area[ib[j]] == 0:
                        bf[j] = 1.0
                    elif a.area[ia[j]] == 0 or b.area[ib[j]] == 0:
                        bf[j] = 0.0
                    else:
                        ma, mb = rle_ops.decode([ra[j], rb[j]], info.height, info.width)
                        bf[j] = boundary_f(ma, mb)
            at = (action_types or {}).get(info.video_id) or info.action_type or "unknown"
            rows.append(
                pd.DataFrame(
                    {
                        "video": info.name,
                        "action_type": at,
                        "frame": frames,
                        "gt_area": b.area[ib].astype(np.int64),
                        "pm_area": a.area[ia].astype(np.int64),
                        "iou": iou,
                        "boundary_f": bf,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=FRAME_COLUMNS)


@dataclass
class Agreement:
    """The split figures of :func:`layer_agreement`'s rows (see module doc)."""

    frames: int
    athlete_frames: int
    iou_athlete_mean: float
    iou_athlete_median: float
    missed: int
    false_alarms: int
    boundary_f_mean: float
    jf_mean: float
    both_empty: int

    def to_dict(self) -> dict:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in vars(self).items()
        }


def _nanmean(x: pd.Series) -> float:
    return float(x.mean()) if len(x) and x.notna().any() else float("nan")


def summarize(rows: pd.DataFrame) -> Agreement:
    """The figures of ``summary.json``'s ``pm_vs_gtm`` from per-frame rows."""
    ath = rows[rows["gt_area"] > 0]
    j = _nanmean(ath["iou"])
    f = _nanmean(ath["boundary_f"])
    return Agreement(
        frames=int(len(rows)),
        athlete_frames=int(len(ath)),
        iou_athlete_mean=j,
        iou_athlete_median=float(ath["iou"].median()) if len(ath) else float("nan"),
        missed=int((ath["pm_area"] == 0).sum()),
        false_alarms=int(((rows["gt_area"] == 0) & (rows["pm_area"] > 0)).sum()),
        boundary_f_mean=f,
        jf_mean=(j + f) / 2,
        both_empty=int(((rows["gt_area"] == 0) & (rows["pm_area"] == 0)).sum()),
    )


def per_group(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """The split figures per ``video`` or ``action_type``: athlete frames, IoU mean / median on
    them, misses, false alarms, boundary F and J&F; worst (lowest J&F) first."""
    out = []
    for key, g in rows.groupby(by, sort=True):
        a = summarize(g)
        out.append(
            {
                by: key,
                "frames": a.frames,
                "athlete_frames": a.athlete_frames,
                "iou_mean": a.iou_athlete_mean,
                "iou_median": a.iou_athlete_median,
                "missed": a.missed,
                "false_alarms": a.false_alarms,
                "boundary_f_mean": a.boundary_f_mean,
                "jf_mean": a.jf_mean,
            }
        )
    cols = [by, "frames", "athlete_frames", "iou_mean", "iou_median", "missed", "false_alarms"]
    df = pd.DataFrame(out, columns=[*cols, "boundary_f_mean", "jf_mean"])
    key = "jf_mean" if df["jf_mean"].notna().any() else "iou_mean"  # boundary F may be off
    return df.sort_values(key, na_position="last", kind="stable").reset_index(drop=True)
