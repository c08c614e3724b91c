"""Naive foreground baselines: what a mask generator must beat on the synthetic benchmark."""

from __future__ import annotations

import cv2
import numpy as np


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected foreground component of a 0/1 mask."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, np.uint8)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (lab == k).astype(np.uint8)


def frame_difference_masks(frames: np.ndarray) -> np.ndarray:
    """Frame-difference + Otsu foreground for a clip ``[T, H, W, 3]`` -> ``uint8 [T, H, W]``.

    The double difference ``min(|I_t - I_{t-1}|, |I_{t+1} - I_t|)`` keeps what moved at ``t``;
    Otsu picks the threshold per frame, a closing fills the silhouette and the largest component
    is kept. It knows nothing about people: camera motion, clutter and moving bystanders fool it.
    """
    gray = np.stack(
        [cv2.GaussianBlur(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (5, 5), 0) for f in frames]
    ).astype(np.int16)
    T = len(gray)
    out = np.zeros(gray.shape, np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    for t in range(T):
        a = np.abs(gray[t] - gray[max(t - 1, 0)]) if t > 0 else None
        b = np.abs(gray[min(t + 1, T - 1)] - gray[t]) if t < T - 1 else None
        d = a if b is None else b if a is None else np.minimum(a, b)
        d8 = np.clip(d, 0, 255).astype(np.uint8)
        if d8.max() == 0:
            continue
        _, m = cv2.threshold(d8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
        out[t] = largest_component(m)
    return out
