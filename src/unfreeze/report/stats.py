"""Honest comparisons of configurations: paired by seed, with bootstrap intervals. No torch.

Configurations of a sweep (or of the advisor) share their samples seed by seed: the
32-example sample of seed 1 is the same for every strategy (nested samples), so two
configurations are compared on the differences of their scores seed by seed, not on
two independent means. The interval of the mean paired difference is a percentile
bootstrap over seeds; with few seeds its distribution is enumerated exactly (every
resample, weighted by how many orderings give it), so the same scores always give the same
interval and a test can compute it by hand. With one seed there is no interval at all,
and the callers say so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
# up to this many seeds the bootstrap distribution is enumerated exactly (C(2S-1, S) multisets)
EXACT_UP_TO = 10
MONTE_CARLO_DRAWS = 20_000


def bootstrap_distribution(values: Sequence[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap distribution of the mean of ``values``: (means, probabilities), sorted by mean.

    Exact for up to ``EXACT_UP_TO`` values (each multiset of resampled indices with its
    multinomial weight), else ``MONTE_CARLO_DRAWS`` seeded draws.
    """
    x = np.asarray(values, dtype=float)
    s = len(x)
    if s == 0:
        raise ValueError("no values to bootstrap")
    if s <= EXACT_UP_TO:
        means, weights = [], []
        log_total = s * math.log(s)
        for combo in itertools.combinations_with_replacement(range(s), s):
            counts = np.bincount(combo, minlength=s)
            log_ways = math.lgamma(s + 1) - sum(math.lgamma(c + 1) for c in counts)
            means.append(float(counts @ x) / s)
            weights.append(math.exp(log_ways - log_total))
        means_arr, weights_arr = np.asarray(means), np.asarray(weights)
    else:
        rng = np.random.default_rng(seed)
        means_arr = x[rng.integers(0, s, size=(MONTE_CARLO_DRAWS, s))].mean(axis=1)
        weights_arr = np.full(MONTE_CARLO_DRAWS, 1.0 / MONTE_CARLO_DRAWS)
    order = np.argsort(means_arr, kind="stable")
    return means_arr[order], weights_arr[order] / weights_arr.sum()


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` (values sorted ascending)."""
    cumulative = np.cumsum(weights)
    index = int(np.searchsorted(cumulative, q - 1e-12, side="left"))
    return float(values[min(index, len(values) - 1)])


def bootstrap_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values``; None for fewer than two values."""
    if len(values) < 2:
        return None
    means, weights = bootstrap_distribution(values, seed)
    tail = (1 - confidence) / 2
    return weighted_quantile(means, weights, tail), weighted_quantile(means, weights, 1 - tail)


@dataclass
class PairedDifference:
    """``candidate - reference`` over the seeds both have."""

    mean: float
    interval: tuple[float, float] | None  # None with one shared seed: no error bars
    seeds: int

    def significant(self) -> bool:
        """The interval excludes zero (False without an interval: nothing can be claimed)."""
        return self.interval is not None and (self.interval[1] < 0 or self.interval[0] > 0)

    def within(self, tolerance: float) -> bool:
        """Not shown to be worse than the reference by more than ``tolerance``.

        The interval reaches above ``-tolerance`` (on some resample of the seeds the candidate
        does at least that well), or the point difference is within ``tolerance`` (a tie). A
        candidate that is never better on any seed has an interval ending exactly at zero: with
        few seeds that is not significant, and it is not acceptable either. With one seed: the
        point difference alone.
        """
        return acceptable(self.mean, None if self.interval is None else self.interval[1], tolerance)


def acceptable(difference: float, high: float | None, tolerance: float) -> bool:
    """The rule of ``PairedDifference.within`` from a point difference and its interval's upper end."""
    if difference >= -tolerance - 1e-12:
        return True
    return high is not None and high > -tolerance + 1e-12


def paired_difference(candidate: pd.Series, reference: pd.Series, confidence: float = CONFIDENCE) -> PairedDifference:
    """Scores indexed by seed; the difference over the seeds both have."""
    common = sorted(set(candidate.dropna().index) & set(reference.dropna().index))
    if not common:
        raise ValueError("the two configurations share no seed")
    diffs = candidate.loc[common].to_numpy(float) - reference.loc[common].to_numpy(float)
    return PairedDifference(float(diffs.mean()), bootstrap_interval(diffs, confidence), len(common))


def compare_to_best(
    scores: pd.DataFrame,
    costs: pd.Series | None = None,
    tolerance: float = 0.0,
    confidence: float = CONFIDENCE,
    sign: float = 1.0,
) -> pd.DataFrame:
    """Every configuration against the best, paired by seed.

    Parameters
    ----------
    scores : DataFrame
        One column per configuration, one row per seed (NaN where a configuration lacks a seed).
    costs : Series or None
        Cost of each configuration (fit seconds), for choosing the cheapest acceptable one.
    tolerance : float
        A configuration is acceptable when it is not shown worse than the best by more than this.
    sign : float
        +1 where a higher score is better, -1 where a lower one is (RMSE, Hamming loss: ``Task.sign``).

    Returns
    -------
    DataFrame indexed by configuration: mean, seeds, diff (to the best), low, high (in the scores' units),
    significant, acceptable, best, cost, and ``pick`` (True for the cheapest acceptable one); sorted best first.
    """
    # compared as higher-is-better scores; the means and differences are given back in the scores' own units
    signed = scores * sign
    means = signed.mean()
    best = means.idxmax()
    rows = []
    for name in signed.columns:
        if name == best:
            diff = PairedDifference(
                0.0, (0.0, 0.0) if signed[name].notna().sum() > 1 else None, int(signed[name].notna().sum())
            )
        else:
            diff = paired_difference(signed[name], signed[best], confidence)
        ends = sorted(sign * end for end in diff.interval) if diff.interval else (math.nan, math.nan)
        rows.append(
            {
                "configuration": name,
                "mean": float(sign * means[name]),
                "seeds": diff.seeds,
                "diff": sign * diff.mean + 0.0,
                "low": ends[0] + 0.0,
                "high": ends[1] + 0.0,
                "significant": diff.significant(),
                "acceptable": name == best or diff.within(tolerance),
                "best": name == best,
                "cost": float(costs[name]) if costs is not None else math.nan,
                "_signed": float(means[name]),
            }
        )
    table = pd.DataFrame(rows).set_index("configuration").sort_values("_signed", ascending=False, kind="stable")
    table = table.drop(columns="_signed")
    table["pick"] = False
    acceptable = table[table["acceptable"]]
    if costs is not None and acceptable["cost"].notna().any():
        table.loc[acceptable["cost"].idxmin(), "pick"] = True
    else:
        table.loc[best, "pick"] = True
    return table


def score_matrix(frame: pd.DataFrame, column: str, n_train: int | None = None, label: str = "label") -> pd.DataFrame:
    """Done rows as a seeds x configurations matrix of ``column`` (at one training size when given)."""
    done = frame[frame["status"] == "done"] if "status" in frame else frame
    if n_train is not None:
        done = done[done["n_train"] == n_train]
    if column not in done:
        return pd.DataFrame()
    return done.pivot_table(index="seed", columns=label, values=column, aggfunc="mean")


__all__ = [
    "CONFIDENCE",
    "PairedDifference",
    "acceptable",
    "bootstrap_distribution",
    "bootstrap_interval",
    "compare_to_best",
    "paired_difference",
    "score_matrix",
    "weighted_quantile",
]
