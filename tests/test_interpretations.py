"""Hand-worked examples of the rules in hmtools/interpretations.py."""

from __future__ import annotations

import numpy as np
import pytest

from hmtools import interpretations as it


def test_sampled_transitions():
    # 4 annotated transitions: keep the first and the last change
    labels = [4] * 10 + [25] * 30 + [31] * 20 + [32] * 20 + [36] * 23
    assert it.sampled_transitions(labels).tolist() == [9, 79]
    assert it.sampled_transitions([1, 1, 2, 2, 3]).tolist() == [1, 3]
    assert it.sampled_transitions([1, 1, 2, 2]).tolist() == [1, 1]  # one change repeats
    assert it.sampled_transitions([5] * 4).tolist() == [3, 3]


def test_step_bounds():
    assert it.step_bounds([14, 69], 20, 5) == [(0, 3), (3, 14), (14, 20)]
    assert it.step_bounds([102, 102], 20, 5) == [(0, 20), (20, 20), (20, 20)]


@pytest.mark.parametrize(
    "lq, centres",
    [
        (1, [9.5]),  # fewer queries than steps: equal parts of N
        (3, [1.0, 8.0, 16.5]),  # one part per step: steps [0,3) [3,14) [14,20)
        (5, [1.0, 4.333, 8.0, 11.667, 16.5]),  # 1 + 3 + 1 queries; part centre (a + b - 1) / 2
        (6, [1.0, 4.333, 8.0, 11.667, 15.0, 18.0]),
        (9, [1.0, 3.6, 5.8, 8.0, 10.2, 12.4, 14.5, 16.5, 18.5]),
        (20, list(range(20))),  # one snippet per query
    ],
)
def test_soft_label_centres(lq, centres):
    lab = it.temporal_soft_labels([14, 69], 20, 5, lq)
    assert lab.shape == (lq, 20)
    np.testing.assert_allclose(lab.sum(1), 1, rtol=1e-6)
    k = np.arange(20)
    for row, c in zip(lab, centres, strict=True):
        g = np.exp(-((k - c) ** 2) / (2 * 1.3**2))
        np.testing.assert_allclose(row, g / g.sum(), atol=2e-3)


def test_query_shares():
    parts = it.query_parts([14, 69], 20, 5, 6)
    assert [round(a, 3) for a, _ in parts] == [0, 3, 6.667, 10.333, 14, 17]
    parts = it.query_parts([14, 69], 20, 5, 9)  # 1 + 5 + 3 queries
    assert [round(b - a, 3) for a, b in parts] == [3, 2.2, 2.2, 2.2, 2.2, 2.2, 2, 2, 2]


def test_anchor_switch():
    left = it.temporal_soft_labels([14, 69], 20, 5, 3, anchor="left")
    right = it.temporal_soft_labels([14, 69], 20, 5, 3, anchor="right")
    assert left[1].argmax() == 3 and right[1].argmax() == 13
    with pytest.raises(ValueError):
        it.temporal_soft_labels([14, 69], 20, 5, 3, anchor="middle")


def test_mask_target_pairs_mean_and_pool():
    m = np.zeros((8, 8, 8), np.float32)
    m[0, :4, :4] = 1  # pair 0: only the first frame -> 0.5
    m[2:4] = 1  # pair 1: both frames full -> 1
    t = it.mask_target(m, (2, 2))
    assert t.shape == (4, 2, 2)
    np.testing.assert_allclose(t[0], [[0.5, 0], [0, 0]])
    np.testing.assert_allclose(t[1], 1)
    assert t.max() <= 1


def test_sampling_positions():
    # official loader: linspace(first, last + shift, L) - first
    pos = it.finediving_positions(120, 500, 619, 103, shift=-3)
    assert pos[0] == 0 and pos[-1] == 116 and len(pos) == 103
    assert it.window_positions(200, 103).tolist() == list(range(97, 200))
    assert it.window_positions(103, 103, shift=-3, num_files=110).tolist()[0] == 0


def test_metrics():
    assert it.relative_l2([0, 10], [1, 10]) == pytest.approx(0.5)  # ((1/10)^2 + 0)/2 * 100
    assert it.fisher_z_mean([0.5, 0.5]) == pytest.approx(0.5)
    assert it.fisher_z_mean([0.9, 0.1]) > np.mean([0.9, 0.1])
