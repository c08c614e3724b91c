"""Bootstrap intervals of Spearman's rho over test videos (what `hmtools experiment` reports to
say whether gtm beat pm beyond the test set's chance)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from hmtools.engine.evaluate import rho_interval


def test_interval_covers_the_estimate_and_narrows_with_more_videos():
    rng = np.random.default_rng(3)
    widths = []
    for n in (40, 400):
        t = rng.normal(size=n)
        pred = t + rng.normal(size=n)
        r = rho_interval(t, pred, seed=1)
        assert r["estimate"] == pytest.approx(spearmanr(t, pred).statistic)
        lo, hi = r["ci"]
        assert lo < r["estimate"] < hi and r["share_positive"] == 1.0
        widths.append(hi - lo)
    # the standard error of rho falls like 1/sqrt(n): ~3x narrower for 10x the videos
    assert 2.0 < widths[0] / widths[1] < 5.0, widths
    assert 0.2 < widths[0] < 0.6, widths  # ~40 videos: rho is known to +-0.15 or so


def test_paired_difference_separates_a_real_gap_from_chance():
    rng = np.random.default_rng(5)
    t = rng.normal(size=41)
    good = t + 0.5 * rng.normal(size=41)
    worse = t + 3.0 * rng.normal(size=41)
    same = good + 1e-6 * rng.normal(size=41)  # the same ranking up to ties
    gap = rho_interval(t, good, worse, seed=0)
    assert gap["ci"][0] > 0 and gap["share_positive"] > 0.95
    assert gap["estimate"] == pytest.approx(
        spearmanr(t, good).statistic - spearmanr(t, worse).statistic
    )
    tie = rho_interval(t, good, same, seed=0)
    assert tie["ci"][0] <= 0 <= tie["ci"][1] and abs(tie["estimate"]) < 0.01
    # reversed order, reversed sign
    rev = rho_interval(t, worse, good, seed=0)
    assert rev["estimate"] == pytest.approx(-gap["estimate"]) and rev["ci"][1] < 0


def test_too_few_videos_is_an_error():
    with pytest.raises(ValueError, match="at least 3 videos"):
        rho_interval(np.array([1.0, 2.0]), np.array([2.0, 1.0]))


def test_experiment_intervals_are_none_without_both_runs_predictions(tmp_path):
    """Runs finished by an older hmtools have no predictions_last.csv: the report keeps its
    keys with None instead of failing after hours of training."""
    from hmtools.engine.experiment import _intervals

    r = _intervals(tmp_path)
    assert r["difference"] is None
    for layer in ("gtm", "pm"):
        assert set(r[layer]) == {
            "test_spearman_rho_ci95",
            "gain_over_exemplar_mean_rho",
            "gain_over_exemplar_mean_ci95",
        }
        assert all(v is None for v in r[layer].values())
