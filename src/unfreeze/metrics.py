"""The metrics every single-label fit reports (accuracy, macro-F1, Matthews correlation), and the table
that prints any task's metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

METRICS = ("accuracy", "macro_f1", "mcc")
WIDTH = 10  # a metric's column; a longer name (subset_accuracy) widens its own
# the values each higher-is-better score can take (what the advisor's learning curves stay inside):
# correlations reach -1, and R^2 is unbounded below (a model worse than predicting the mean)
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "macro_f1": (0.0, 1.0),
    "mcc": (-1.0, 1.0),
    "micro_f1": (0.0, 1.0),
    "samples_f1": (0.0, 1.0),
    "subset_accuracy": (0.0, 1.0),
    "spearman": (-1.0, 1.0),
    "pearson": (-1.0, 1.0),
    "r2": (-math.inf, 1.0),
}


def classification_metrics(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """Accuracy, macro-F1 and MCC of predictions ``y_pred`` against ``y_true``."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef  # imported on use: the CLI starts fast

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
    }


def score_range(metric: str) -> tuple[float, float]:
    """(lowest, highest) value of a higher-is-better ``metric``; unbounded for a metric not in ``SCORE_RANGES``."""
    return SCORE_RANGES.get(metric, (-math.inf, math.inf))


def format_metrics_table(rows: dict[str, dict[str, float]], metrics: Sequence[str] | None = None) -> str:
    """Rows like {"train": {...}, "test": {...}} as an aligned text table.

    ``metrics``: the columns, in order (a task's ``metrics``); None: the first row's metrics, in its order
    (every task's scores list them in the task's order)."""
    columns = list(metrics) if metrics is not None else list(next(iter(rows.values()), {}) or METRICS)
    widths = [max(WIDTH, len(m) + 2) for m in columns]
    lines = [f"{'split':<8}" + "".join(f"{m:>{w}}" for m, w in zip(columns, widths))]
    for split, values in rows.items():
        lines.append(f"{split:<8}" + "".join(f"{values[m]:>{w}.4f}" for m, w in zip(columns, widths)))
    return "\n".join(lines)
