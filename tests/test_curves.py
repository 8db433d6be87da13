"""Learning curves: fits recover synthetic parameters, back-tests pick a form, intervals, target sizes."""

from __future__ import annotations

import numpy as np
import pytest

from unfreeze.advise.curves import backtest, choose_form, fit_form, fitted_params, predict, size_for

SIZES = [32, 64, 128, 256, 512, 1024, 2048]


def synthetic(function, noise=0.0, seeds=(0,), sizes=SIZES):
    rng = np.random.default_rng(7)
    return {n: {s: float(function(n) + rng.normal(0, noise)) for s in seeds} for n in sizes}


def flat(scores):
    ns = [n for n, by in scores.items() for _ in by]
    ys = [v for by in scores.values() for v in by.values()]
    return ns, ys


@pytest.mark.parametrize("a, b, c", [(0.9, 0.8, 0.5), (0.95, 2.0, 0.7), (0.8, 0.3, 0.3)])
def test_pow3_recovers_the_parameters_of_a_synthetic_power_law(a, b, c):
    scores = synthetic(lambda n: a - b * n**-c)
    got = fitted_params("pow3", *flat(scores))
    assert got == pytest.approx([a, b, c], rel=1e-3)


def test_pow4_and_mmf_recover_their_own_curves():
    pow4 = synthetic(lambda n: 0.9 - 3.0 * (n + 50.0) ** -0.6)
    assert fitted_params("pow4", *flat(pow4)) == pytest.approx([0.9, 3.0, 0.6, 50.0], rel=2e-2)
    mmf = synthetic(lambda n: (0.5 * 200.0 + 0.92 * n**1.2) / (200.0 + n**1.2))
    assert fitted_params("mmf", *flat(mmf)) == pytest.approx([0.5, 200.0, 0.92, 1.2], rel=2e-2)


def test_noisy_seeds_still_extrapolate_close_and_the_interval_covers_the_truth():
    truth = lambda n: 0.9 - 0.8 * n**-0.5  # noqa: E731
    scores = synthetic(truth, noise=0.01, seeds=(0, 1, 2, 3, 4), sizes=SIZES[:5])
    prediction = predict(scores, "pow3", [2048])[2048]
    assert abs(prediction["score"] - truth(2048)) < 0.02
    assert prediction["low"] <= truth(2048) <= prediction["high"]
    one_seed = predict({n: {0: v[0]} for n, v in scores.items()}, "pow3", [2048])[2048]
    assert one_seed["low"] is None and one_seed["high"] is None


def test_backtest_prefers_a_curve_to_the_last_value_when_scores_still_rise():
    curves = {
        f"config {i}": synthetic(
            lambda n, i=i: 0.9 - (0.5 + i / 10) * n**-0.4, noise=0.002, seeds=(0, 1), sizes=SIZES[:5]
        )
        for i in range(3)
    }
    result = backtest(curves)
    assert set(result) == {"pow3", "pow4", "mmf", "blend", "last"}
    assert result["pow3"]["mae"] < result["last"]["mae"]
    assert choose_form(result, 4) != "last"
    # on a flat curve the baseline is (near) exact and is chosen
    flat_curves = {"flat": synthetic(lambda n: 0.7, noise=0.0, sizes=SIZES[:4])}
    flat_result = backtest(flat_curves)
    assert flat_result["last"]["mae"] == pytest.approx(0.0)
    # one back-tested configuration is no evidence for a form that extrapolates: the baseline
    one = backtest({"config 0": curves["config 0"]})
    assert one["pow3"]["mae"] < one["last"]["mae"] and choose_form(one, 4) == "last"
    assert choose_form(one, 4, min_configurations=1) != "last"


def test_heldout_noise_is_the_mean_standard_error_over_seeds_at_each_configurations_largest_size():
    from unfreeze.advise.curves import heldout_noise

    curves = {
        "two seeds": {64: {0: 0.5, 1: 0.6}, 128: {0: 0.6, 1: 0.8}},  # sd 0.1414 over 2 seeds: 0.1
        "three seeds": {64: {0: 0.5, 1: 0.5, 2: 0.5}, 128: {0: 0.7, 1: 0.7, 2: 0.76}},  # sd 0.0346 / sqrt(3): 0.02
        "one seed held": {64: {0: 0.5, 1: 0.6}, 128: {0: 0.9}},  # no spread to read: skipped
        "one size": {64: {0: 0.1, 1: 0.9}},  # not back-tested: skipped
    }
    assert heldout_noise(curves) == pytest.approx((0.1 + 0.02) / 2)
    assert heldout_noise({"one size": curves["one size"]}) is None


def test_blend_is_the_mean_of_pow3_and_the_last_value_and_is_chosen_where_it_back_tests_best():
    scores = synthetic(lambda n: 0.85 - 0.3 * n**-0.5, noise=0.02, seeds=(0, 1, 2), sizes=SIZES[:4])
    n, y = flat(scores)
    at = np.array([512.0, 4096.0])
    assert fit_form("blend", n, y)(at) == pytest.approx(0.5 * (fit_form("pow3", n, y)(at) + fit_form("last", n, y)(at)))
    # noisy seeds, little left to gain from 256 to 512 examples: pow3 through three noisy means overshoots, the
    # baseline misses the growth, half of each is closer than either
    curves = {
        f"config {i}": synthetic(
            lambda n, i=i: 0.85 - (0.3 + i / 20) * n**-0.5, noise=0.02, seeds=(0, 1, 2), sizes=SIZES[:4]
        )
        for i in range(4)
    }
    result = backtest(curves)
    assert result["blend"]["mae"] < min(result["pow3"]["mae"], result["last"]["mae"])
    assert choose_form(result, 3) == "blend"


def test_size_for_a_target_inverts_the_curve_and_says_never_above_the_asymptote():
    scores = synthetic(lambda n: 0.9 - 0.8 * n**-0.5, sizes=SIZES[:4])
    needed = size_for(scores, "pow3", 0.88)
    exact = (0.8 / 0.02) ** 2  # 0.9 - 0.8 n^-0.5 = 0.88 -> n = 1600
    assert abs(needed - exact) / exact < 0.01
    assert size_for(scores, "pow3", 0.95) is None
    assert size_for(scores, "pow3", 0.5) == 32  # already reached at a measured size
    assert fit_form("last", *flat(scores))(np.array([10_000]))[0] == pytest.approx(0.9 - 0.8 * 256**-0.5)


def test_a_spearman_curve_with_negative_early_points_is_not_clipped_at_zero():
    # Spearman lies in [-1, 1]: an mmf curve that starts at -0.4 is recovered and predicted below 0
    truth = lambda n: (-0.4 * 200.0 + 0.8 * n**1.2) / (200.0 + n**1.2)  # noqa: E731
    scores = synthetic(truth, sizes=SIZES[:5])
    assert fitted_params("mmf", *flat(scores), metric="spearman") == pytest.approx([-0.4, 200.0, 0.8, 1.2], rel=2e-2)
    early = predict(scores, "mmf", [4], metric="spearman")[4]["score"]
    assert early == pytest.approx(truth(4), abs=1e-3) and early < -0.35
    # the same points read as accuracy stay in [0, 1]: the curve's start is bounded at 0
    assert fitted_params("mmf", *flat(scores))[0] == pytest.approx(0.0, abs=1e-6)
    assert predict(scores, "mmf", [4])[4]["score"] >= 0.0


def test_predictions_are_clipped_to_the_metric_s_range():
    negative = {8: {0: -0.3, 1: -0.2}, 16: {0: -0.25, 1: -0.15}}
    assert predict(negative, "last", [32], metric="spearman")[32] == {"score": -0.2, "low": -0.25, "high": -0.15}
    assert predict(negative, "last", [32])[32] == {"score": 0.0, "low": 0.0, "high": 0.0}  # accuracy
    # R^2 has no lower bound: -3.5 stays -3.5, and no metric passes its highest value
    assert predict({8: {0: -3.5}}, "last", [16], metric="r2")[16]["score"] == -3.5
    assert predict({8: {0: -3.5}}, "last", [16], metric="mcc")[16]["score"] == -1.0
    assert predict({8: {0: 1.2}}, "last", [16], metric="pearson")[16]["score"] == 1.0


def test_a_prediction_interval_stays_inside_its_metrics_range_not_zero_to_one():
    from unfreeze.advise.plan import bounded

    # a score of 0.05 at 4,000, two size steps past 1,000 with an error of 0.1 per step: +-0.2
    predicted = {4000: {"score": 0.05, "low": None, "high": None}}
    spearman = bounded(predicted, [250, 500, 1000], 0.1, "spearman")["4000"]
    assert spearman["low"] == pytest.approx(-0.15) and spearman["high"] == pytest.approx(0.25)
    accuracy = bounded(predicted, [250, 500, 1000], 0.1)["4000"]
    assert accuracy["low"] == 0.0 and accuracy["high"] == pytest.approx(0.25)
