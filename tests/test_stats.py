"""Paired comparisons with bootstrap intervals, checked against hand computations; the recommendation rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from unfreeze.report.stats import bootstrap_interval, compare_to_best, paired_difference


def hand_percentile_interval(diffs, confidence=0.95):
    """Every one of the S^S equally likely resamples, its mean, and the percentile rule by hand."""
    s = len(diffs)
    means = sorted(sum(diffs[i] for i in pick) / s for pick in itertools.product(range(s), repeat=s))
    n = len(means)
    tail = (1 - confidence) / 2
    # the smallest mean whose share of resamples at or below it reaches the quantile
    low = next(m for i, m in enumerate(means) if (i + 1) / n >= tail - 1e-12)
    high = next(m for i, m in enumerate(means) if (i + 1) / n >= 1 - tail - 1e-12)
    return low, high


@pytest.mark.parametrize(
    "diffs", [[0.02, 0.04, 0.0], [-0.01, 0.03, 0.02, -0.02], [0.1, -0.3], [0.01, 0.01, 0.05, -0.02, 0.0]]
)
def test_the_paired_interval_matches_a_hand_computation(diffs):
    candidate = pd.Series([0.8 + d for d in diffs], index=range(len(diffs)))
    reference = pd.Series([0.8] * len(diffs), index=range(len(diffs)))
    result = paired_difference(candidate, reference)
    assert result.seeds == len(diffs)
    assert result.mean == pytest.approx(np.mean(diffs))
    low, high = hand_percentile_interval(diffs)
    assert result.interval == pytest.approx((low, high))


def test_pairing_uses_only_shared_seeds_and_one_seed_has_no_interval():
    a = pd.Series({0: 0.70, 1: 0.75, 2: 0.71})
    b = pd.Series({1: 0.70, 2: 0.69, 5: 0.9})
    d = paired_difference(a, b)
    assert d.seeds == 2 and d.mean == pytest.approx((0.05 + 0.02) / 2)
    one = paired_difference(pd.Series({3: 0.6}), pd.Series({3: 0.7}))
    assert one.interval is None and not one.significant() and one.mean == pytest.approx(-0.1)
    assert bootstrap_interval([0.3]) is None


def test_pairing_removes_the_seed_effect_that_unpaired_comparison_keeps():
    # seed difficulty varies a lot; B is worse than A by exactly 0.01 on every seed
    a = pd.Series({0: 0.60, 1: 0.80, 2: 0.70, 3: 0.90})
    b = a - 0.01
    d = paired_difference(b, a)
    assert d.interval == pytest.approx((-0.01, -0.01)) and d.significant()


def test_the_recommendation_is_the_cheapest_not_shown_worse_and_respects_the_tolerance():
    scores = pd.DataFrame(
        {
            "big": [0.90, 0.92, 0.91],
            "small": [0.89, 0.93, 0.90],
            "tiny": [0.80, 0.82, 0.81],
            "never better": [0.89, 0.92, 0.90],
        },
        index=[0, 1, 2],
    )
    costs = pd.Series({"big": 100.0, "small": 10.0, "tiny": 1.0, "never better": 5.0})
    table = compare_to_best(scores, costs)
    assert table.index[0] == "big" and bool(table.loc["big", "best"])
    # differences -0.01, +0.01, -0.01: the interval [-0.01, +0.01] reaches above 0
    assert table.loc["small", "acceptable"] and not table.loc["small", "significant"]
    # -0.01, 0, -0.01: never better on any seed; the interval ends at 0: not significant, not acceptable
    assert table.loc["never better", "high"] == pytest.approx(0.0)
    assert not table.loc["never better", "significant"] and not table.loc["never better", "acceptable"]
    assert table.loc["tiny", "significant"] and not table.loc["tiny", "acceptable"]
    assert table.index[table["pick"]].tolist() == ["small"]
    loose = compare_to_best(scores, costs, tolerance=0.15)
    assert loose.index[loose["pick"]].tolist() == ["tiny"]


def test_one_seed_recommends_the_best_unless_a_tolerance_is_given():
    scores = pd.DataFrame({"big": [0.90], "small": [0.895]}, index=[0])
    costs = pd.Series({"big": 100.0, "small": 1.0})
    table = compare_to_best(scores, costs)
    assert math.isnan(table.loc["small", "low"])
    assert table.index[table["pick"]].tolist() == ["big"]
    assert compare_to_best(scores, costs, tolerance=0.01)["pick"].idxmax() == "small"


def test_many_seeds_use_a_seeded_monte_carlo_that_repeats():
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.01, 0.02, size=14)
    first, second = bootstrap_interval(diffs), bootstrap_interval(diffs)
    assert first == second and first[0] < diffs.mean() < first[1]
