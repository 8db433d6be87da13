"""What every analysis gets and gives (:class:`Context`, :class:`AnalysisResult`), and the helpers they share:
scores by seed, bootstrap intervals, formatting, plots. No torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import UnfreezeError

NAN = math.nan


@dataclass
class Context:
    """What an analysis knows besides the rows."""

    metric: str
    params: dict
    num_blocks: int | None = None
    sizes: list[int] = field(default_factory=list)  # the planned training sizes (n_train), ascending
    per_class: dict[int, int] = field(default_factory=dict)  # n_train -> examples per class, when sizes are per class
    majority: dict[str, float] = field(default_factory=dict)  # the majority-class baseline's test metrics
    out_dir: Path | None = None  # where plots go (None: none drawn)
    title: str = ""
    sign: float = 1.0  # -1 where a lower ``metric`` is better (RMSE, Hamming loss: ``Task.sign``)

    def size_name(self, n: int) -> str:
        return f"{self.per_class[n]} per class (n={n})" if n in self.per_class else f"n={n}"

    def size_at(self, at: object) -> int | None:
        """The training size a verdict is read at: "largest", "smallest", or a size (per class when the
        study's sizes are per class); None when the study has no such size."""
        if not self.sizes:
            return None
        if at == "largest":
            return max(self.sizes)
        if at == "smallest":
            return min(self.sizes)
        if self.per_class:
            matches = [n for n, per in self.per_class.items() if per == at]
            return matches[0] if matches else None
        return at if at in self.sizes else None


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = [
            f"**{self.title}**",
            "",
            "| " + " | ".join(self.headers) + " |",
            "|" + "|".join("---" for _ in self.headers) + "|",
        ]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


@dataclass
class AnalysisResult:
    quantities: dict[str, float]
    meanings: dict[str, str]
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str | None, str]] = field(default_factory=list)  # (file name, None if unsaved; caption)
    notes: list[str] = field(default_factory=list)


@dataclass
class AnalysisKind:
    name: str
    summary: str
    params: dict  # declared parameters and their defaults
    quantities: Callable[[dict], dict[str, str]]  # params -> {quantity: meaning}
    run: Callable[[pd.DataFrame, Context], AnalysisResult]
    quick_sizes: int = 1  # how many of the smallest sizes --quick keeps
    labels: Callable[[dict], list[str]] = lambda params: []  # configuration labels the analysis reads
    check: Callable[[dict, Path], None] = lambda params, path: None

    def check_params(self, given: dict, path: Path) -> dict:
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            keys = ", ".join(sorted(self.params)) or "none"
            raise UnfreezeError(
                f"{path}: unknown key {unknown[0]!r} in [analysis] (analysis {self.name}). Keys: {keys}."
            )
        params = {**self.params, **given}
        self.check(params, path)
        return params

    def quantity_names(self, params: dict) -> set[str]:
        return set(self.quantities(params))


def done_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "done"] if not frame.empty else frame


def seed_scores(frame: pd.DataFrame, config: str, n: int, column: str) -> pd.Series:
    """One configuration's ``column`` by seed at training size ``n`` (finished cells only)."""
    rows = done_rows(frame)
    if rows.empty or column not in rows:
        return pd.Series(dtype=float)
    rows = rows[(rows["config"] == config) & (rows["n_train"] == n)]
    return rows.groupby("seed")[column].mean().dropna()


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the 95% bootstrap interval of the mean over seeds (NaN interval with one value)."""
    from ...report.stats import bootstrap_interval

    values = [float(v) for v in values if v == v]
    if not values:
        return NAN, NAN, NAN
    interval = bootstrap_interval(values)
    mean = float(np.mean(values))
    return (mean, *interval) if interval else (mean, NAN, NAN)


def paired(candidate: pd.Series, reference: pd.Series) -> tuple[float, float, float, int]:
    """Mean paired difference candidate - reference over their shared seeds, its interval, and the seeds."""
    from ...report.stats import paired_difference

    if candidate.empty or reference.empty or not set(candidate.index) & set(reference.index):
        return NAN, NAN, NAN, 0
    diff = paired_difference(candidate, reference)
    low, high = diff.interval if diff.interval else (NAN, NAN)
    return diff.mean, low, high, diff.seeds


def fmt(value: float, digits: int = 3, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def fmt_ci(mean: float, low: float, high: float, sign: bool = False, digits: int = 3) -> str:
    """ "0.812 [0.801, 0.823]", or the mean alone with "(one seed)" when there is no interval."""
    if mean != mean:
        return "n/a"
    if low != low or high != high:
        return f"{fmt(mean, digits, sign)} (no interval)"
    return f"{fmt(mean, digits, sign)} [{fmt(low, digits, sign)}, {fmt(high, digits, sign)}]"


def mean_of(frame: pd.DataFrame, config: str, n: int, column: str) -> float:
    values = seed_scores(frame, config, n, column)
    return float(values.mean()) if not values.empty else NAN


def axis_rows(frame: pd.DataFrame, strategy: str, param: str) -> pd.DataFrame:
    rows = done_rows(frame)
    if rows.empty or param not in rows:
        return rows.iloc[0:0] if not rows.empty else rows
    return rows[(rows["strategy"] == strategy) & rows[param].notna()]


def pyplot():
    from ...report import plots  # matplotlib with the Agg backend

    return plots.plt


def save_figure(fig, context: Context, name: str) -> str | None:
    if context.out_dir is None:
        return None
    fig.tight_layout()
    fig.savefig(context.out_dir / name, dpi=110)
    pyplot().close(fig)
    return name


def errorbar(ax, x, means, lows, highs, **kwargs):
    means, lows, highs = (np.asarray(v, float) for v in (means, lows, highs))
    low_err = np.where(np.isnan(lows), 0.0, means - lows)
    high_err = np.where(np.isnan(highs), 0.0, highs - means)
    ax.errorbar(x, means, yerr=[low_err, high_err], capsize=3, marker="o", ms=4, **kwargs)


def metric_label(context: Context, split: str = "test") -> str:
    return f"{split} {context.metric.replace('_', '-')}"


def score_column(context: Context, split: str = "test") -> str:
    return f"{split}_{context.metric}"


def check_at(params: dict, path: Path) -> None:
    at = params["at"]
    if at not in ("largest", "smallest") and (not isinstance(at, int) or isinstance(at, bool) or at < 1):
        raise UnfreezeError(
            f'{path}: [analysis] at must be "largest", "smallest" or a training size '
            f"(per class when the study's sizes are). Got {at!r}."
        )
