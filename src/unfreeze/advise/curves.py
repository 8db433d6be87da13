"""Learning curves: score against training size, extrapolated with a form chosen by back-testing.

Forms (Viering & Loog 2022, "The shape of learning curves", and Domhan et al. 2015):

- ``pow3``: ``a - b * n**-c`` (the power law with an asymptote ``a``);
- ``pow4``: ``a - b * (n + d)**-c`` (a shifted power law: a slow start);
- ``mmf``: ``(a*b + c * n**d) / (b + n**d)`` (Morgan-Mercer-Flodin, a sigmoid in log n);
- ``blend``: the mean of the ``pow3`` and ``last`` predictions, a forecast combination
  (Bates & Granger 1969; Domhan et al. 2015 combine curve forms too): half the gain ``pow3``
  extrapolates. Where the pilot's scores are noisy next to what one more size adds, an
  extrapolation through three noisy means overshoots and the baseline ignores the growth;
  the blend halves both errors' worst cases;
- ``last``: the score at the largest size seen (the baseline every form must beat).

A form is chosen by back-testing: fit on every size but the largest, predict the largest,
and compare the absolute errors over configurations. Intervals are a bootstrap over seeds
(the seeds are resampled, the curve refitted). Scores stay inside the metric's range
(``unfreeze.metrics.score_range``: accuracy in [0, 1], Spearman in [-1, 1], R^2 up to 1): the
asymptotes are bounded by it and predictions clipped to it. Needs scipy and numpy only (no torch).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..metrics import score_range

FORMS = ("pow3", "pow4", "mmf", "blend", "last")
BOOTSTRAP = 200


def _pow3(n, a, b, c):
    return a - b * np.power(n, -c)


def _pow4(n, a, b, c, d):
    return a - b * np.power(n + d, -c)


def _mmf(n, a, b, c, d):
    nd = np.power(n, d)
    return (a * b + c * nd) / (b + nd)


@dataclass(frozen=True)
class Form:
    name: str
    function: Callable
    start: Callable[[np.ndarray, np.ndarray, float], list[float]]  # (n, y, the score's highest value)
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    scores: tuple[int, ...]  # the parameters that are scores: bounded by the metric's range, not lower/upper

    @property
    def n_params(self) -> int:
        return len(self.lower)

    def bounds(self, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) of the parameters for scores in [low, high]."""
        lower, upper = np.array(self.lower, dtype=float), np.array(self.upper, dtype=float)
        lower[list(self.scores)], upper[list(self.scores)] = low, high
        return lower, upper


def _start_pow(n, y, high):
    top = float(min(high, max(y) + 0.02))
    return [top, max(top - float(y[np.argmin(n)]), 1e-3) * float(min(n)) ** 0.5, 0.5]


_FORMS: dict[str, Form] = {
    # a is the asymptote, a score; b >= 0 makes the curve rise with n
    "pow3": Form("pow3", _pow3, _start_pow, (0.0, 0.0, 0.01), (1.0, 1e6, 3.0), (0,)),
    "pow4": Form(
        "pow4",
        _pow4,
        lambda n, y, high: [*_start_pow(n, y, high), 1.0],
        (0.0, 0.0, 0.01, 0.0),
        (1.0, 1e6, 3.0, 1e5),
        (0,),
    ),
    # a (the score at n = 0) and c (the asymptote) are scores
    "mmf": Form(
        "mmf",
        _mmf,
        lambda n, y, high: [float(min(y)) - 0.05, float(np.median(n)), float(min(high, max(y) + 0.02)), 1.0],
        (0.0, 1e-6, 0.0, 0.05),
        (1.0, 1e9, 1.0, 5.0),
        (0, 2),
    ),
}


def fit_form(
    name: str, n: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, metric: str = "accuracy"
) -> Callable[[np.ndarray], np.ndarray]:
    """The fitted curve of form ``name`` through points (n, y) (several y per n allowed) of a higher-is-better
    ``metric``, its asymptotes inside the metric's range: a function of n."""
    n_arr, y_arr = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    if name == "last":
        largest = n_arr.max()
        value = float(y_arr[n_arr == largest].mean())
        return lambda x: np.full(np.shape(x), value, dtype=float)
    if name == "blend":
        power, last = fit_form("pow3", n_arr, y_arr, metric), fit_form("last", n_arr, y_arr)
        return lambda x: 0.5 * (power(x) + last(x))
    form = _FORMS[name]
    from scipy.optimize import curve_fit

    low, high = score_range(metric)
    lower, upper = form.bounds(low, high)
    start = np.clip(form.start(n_arr, y_arr, high), lower + 1e-9, upper - 1e-9)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            params, _ = curve_fit(form.function, n_arr, y_arr, p0=start, bounds=(lower, upper), maxfev=20_000)
        except (RuntimeError, ValueError):
            params = start  # no convergence: the starting curve, which back-tests judge like any other
    return FittedCurve(form.function, tuple(float(p) for p in params))


@dataclass(frozen=True)
class FittedCurve:
    """A parametric curve with its fitted parameters: called on sizes, it gives scores."""

    function: Callable[..., np.ndarray]
    params: tuple[float, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.function(np.asarray(x, dtype=float), *self.params)


def fitted_params(name: str, n: Sequence[float], y: Sequence[float], metric: str = "accuracy") -> np.ndarray:
    """The fitted parameters of form ``name`` (for tests and the JSON)."""
    curve = fit_form(name, n, y, metric)
    return np.asarray(curve.params) if isinstance(curve, FittedCurve) else np.array([])


def usable_forms(n_sizes: int) -> list[str]:
    """Forms that can be fitted to ``n_sizes`` distinct sizes: a form with p parameters needs p - 1 sizes
    (the bounds pin the rest) and the baseline needs one."""
    return [f for f in FORMS if f == "last" or _FORMS["pow3" if f == "blend" else f].n_params - 1 <= n_sizes]


@dataclass
class Curve:
    """One configuration's learning curve: the points, the chosen form, predictions with intervals."""

    configuration: str
    sizes: list[int]
    means: list[float]
    seeds: int
    form: str
    predictions: dict[int, dict] = field(default_factory=dict)  # n -> {"score", "low", "high"}
    target: dict | None = None

    def as_dict(self) -> dict:
        return {
            "configuration": self.configuration,
            "sizes": self.sizes,
            "means": self.means,
            "seeds": self.seeds,
            "form": self.form,
            "predictions": {str(n): p for n, p in self.predictions.items()},
            "target": self.target,
        }


def points(scores: dict[int, dict[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """{n: {seed: score}} as arrays of (n, score), one point per (n, seed)."""
    ns, ys = [], []
    for n, by_seed in sorted(scores.items()):
        for value in by_seed.values():
            ns.append(n)
            ys.append(value)
    return np.asarray(ns, dtype=float), np.asarray(ys, dtype=float)


def backtest(
    curves: dict[str, dict[int, dict[int, float]]], forms: Sequence[str] = FORMS, metric: str = "accuracy"
) -> dict[str, dict]:
    """Hold out each configuration's largest size, fit every form on the smaller sizes, predict it.

    Returns {form: {"mae": mean absolute error over configurations, "errors": {configuration: error}}}
    (a form that cannot be fitted with the sizes left is absent). Configurations with fewer than
    two sizes cannot be back-tested and are skipped.
    """
    errors: dict[str, dict[str, float]] = {f: {} for f in forms}
    for name, scores in curves.items():
        sizes = sorted(scores)
        if len(sizes) < 2:
            continue
        held = sizes[-1]
        actual = float(np.mean(list(scores[held].values())))
        n, y = points({s: scores[s] for s in sizes[:-1]})
        for form in forms:
            if form not in usable_forms(len(sizes) - 1):
                continue
            predicted = float(fit_form(form, n, y, metric)(np.array([held]))[0])
            errors[form][name] = abs(predicted - actual)
    return {form: {"mae": float(np.mean(list(e.values()))), "errors": e} for form, e in errors.items() if e}


def heldout_noise(curves: dict[str, dict[int, dict[int, float]]]) -> float | None:
    """The mean over configurations of the standard error of the score a back-test predicts (the mean over seeds
    at each configuration's largest size): a back-test cannot show a curve closer than the noise of what it is
    checked against. None where no configuration has two seeds there."""
    errors = []
    for scores in curves.values():
        if len(scores) < 2:
            continue
        held = list(scores[max(scores)].values())
        if len(held) > 1:
            errors.append(float(np.std(held, ddof=1)) / math.sqrt(len(held)))
    return float(np.mean(errors)) if errors else None


def choose_form(backtests: dict[str, dict], n_sizes: int, min_configurations: int = 2) -> str:
    """The form with the smallest back-test error among those usable with ``n_sizes`` sizes ("last" when
    nothing could be back-tested, when no form beats it, or when fewer than ``min_configurations``
    configurations were back-tested: one noisy curve is no evidence for a form that extrapolates)."""
    usable = [
        f
        for f in usable_forms(n_sizes)
        if f in backtests and (f == "last" or len(backtests[f]["errors"]) >= min_configurations)
    ]
    if not usable:
        return "last"
    return min(usable, key=lambda f: (backtests[f]["mae"], FORMS.index(f)))


def predict(
    scores: dict[int, dict[int, float]],
    form: str,
    at: Sequence[int],
    confidence: float = 0.95,
    draws: int = BOOTSTRAP,
    seed: int = 0,
    metric: str = "accuracy",
) -> dict[int, dict]:
    """Predicted score of ``metric`` at each size in ``at`` (inside its range), with a bootstrap interval
    over seeds (None with one seed).

    Each draw resamples the seeds (with replacement; a seed's scores at every size go together,
    as they share one nested sample) and refits the curve.
    """
    n, y = points(scores)
    low, high = score_range(metric)
    curve = fit_form(form, n, y, metric)
    out = {int(a): {"score": float(np.clip(curve(np.array([a]))[0], low, high)), "low": None, "high": None} for a in at}
    seeds = sorted({s for by_seed in scores.values() for s in by_seed})
    if len(seeds) < 2:
        return out
    rng = np.random.default_rng(seed)
    predictions = []
    fitted: dict[tuple, np.ndarray | None] = {}  # 3 seeds have 10 distinct resamples: each is fitted once
    for _ in range(draws):
        chosen = tuple(sorted(rng.choice(seeds, size=len(seeds), replace=True).tolist()))
        if chosen not in fitted:
            resampled = {
                size: {i: by_seed[s] for i, s in enumerate(chosen) if s in by_seed} for size, by_seed in scores.items()
            }
            resampled = {size: v for size, v in resampled.items() if v}
            bn, by = points(resampled)
            fitted[chosen] = (
                np.clip(fit_form(form, bn, by, metric)(np.asarray(at, dtype=float)), low, high) if resampled else None
            )
        if fitted[chosen] is not None:
            predictions.append(fitted[chosen])
    if predictions:
        table = np.asarray(predictions)
        tail = (1 - confidence) / 2
        for j, a in enumerate(at):
            out[int(a)]["low"] = float(np.quantile(table[:, j], tail))
            out[int(a)]["high"] = float(np.quantile(table[:, j], 1 - tail))
    return out


def size_for(
    scores: dict[int, dict[int, float]], form: str, target: float, limit: float = 1e7, metric: str = "accuracy"
) -> int | None:
    """The smallest training size whose predicted score reaches ``target`` (None when the curve never does
    below ``limit``); sizes already seen count as they were measured."""
    for size in sorted(scores):
        if np.mean(list(scores[size].values())) >= target:
            return int(size)
    if form == "last":
        return None
    n, y = points(scores)
    curve = fit_form(form, n, y, metric)
    grid = np.unique(np.round(np.geomspace(max(n.min(), 1), limit, 4000)))
    reached = np.flatnonzero(curve(grid) >= target)
    return int(grid[reached[0]]) if len(reached) else None


def plot_curves(
    curves: list[Curve],
    raw: dict[str, dict[int, dict[int, float]]],
    path,
    metric: str,
    full_size: int,
    colors: dict[str, str] | None = None,
) -> None:
    """Measured points (mean over seeds), each chosen curve to 4x the labelled size, its interval band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.4))
    for i, curve in enumerate(curves):
        color = (colors or {}).get(curve.configuration, f"C{i % 10}")
        scores = raw[curve.configuration]
        sizes = sorted(scores)
        ax.plot(sizes, [np.mean(list(scores[s].values())) for s in sizes], "o", color=color, ms=4)
        n, y = points(scores)
        grid = np.geomspace(min(sizes), 4 * full_size, 60)
        line = np.clip(fit_form(curve.form, n, y, metric)(grid), *score_range(metric))
        ax.plot(grid, line, "-", color=color, lw=1.3, label=f"{curve.configuration} ({curve.form})")
        marks = sorted(curve.predictions)
        lows = [curve.predictions[m]["low"] for m in marks]
        if all(v is not None for v in lows):
            ax.fill_between(marks, lows, [curve.predictions[m]["high"] for m in marks], color=color, alpha=0.12, lw=0)
    ax.axvline(full_size, color="0.5", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training examples (log; dotted: all labelled data)")
    ax.set_ylabel(f"validation {metric.replace('_', '-')}")
    ax.set_title("Learning curves, extrapolated (band: bootstrap over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))


__all__ = [
    "BOOTSTRAP",
    "FORMS",
    "Curve",
    "backtest",
    "choose_form",
    "fit_form",
    "fitted_params",
    "plot_curves",
    "predict",
    "size_for",
    "usable_forms",
]
