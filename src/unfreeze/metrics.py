"""The metrics every single-label fit reports (accuracy, macro-F1, Matthews correlation), the token
tasks' entity-level scores, and the table that prints any task's metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import UnfreezeError

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
    "entity_f1": (0.0, 1.0),
    "entity_precision": (0.0, 1.0),
    "entity_recall": (0.0, 1.0),
    "token_accuracy": (0.0, 1.0),
}
TOKEN_METRICS = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy")
# the tagging schemes entities are read in, by seqeval's class name; the aliases users write
TAG_SCHEMES = ("IOB1", "IOB2", "IOBES", "BILOU")
SCHEME_ALIASES = {"BIO": "IOB2", "BIOES": "IOBES"}


def classification_metrics(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """Accuracy, macro-F1 and MCC of predictions ``y_pred`` against ``y_true``."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef  # imported on use: the CLI starts fast

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
    }


def token_metrics(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], scheme: str = "IOB2") -> dict:
    """Entity-level micro precision, recall and F1 (seqeval, strict: an entity counts only when its tags
    are valid in ``scheme`` and its span and type match) and token accuracy, of tag sequences ``y_pred``
    against ``y_true`` (one list of tag strings per sentence)."""
    from seqeval.metrics import f1_score, precision_score, recall_score  # imported on use: the CLI starts fast

    _check_tag_rows(y_true, y_pred)
    strict = {"mode": "strict", "scheme": _scheme_class(scheme), "zero_division": 0}
    flat_true = [tag for row in y_true for tag in row]
    flat_pred = [tag for row in y_pred for tag in row]
    same = sum(t == p for t, p in zip(flat_true, flat_pred))
    return {
        "entity_f1": float(f1_score(y_true, y_pred, **strict)),
        "entity_precision": float(precision_score(y_true, y_pred, **strict)),
        "entity_recall": float(recall_score(y_true, y_pred, **strict)),
        "token_accuracy": same / len(flat_true) if flat_true else 0.0,
    }


def entity_report(
    y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], scheme: str = "IOB2"
) -> dict[str, dict[str, float]]:
    """Per entity type (sorted): precision, recall, f1 (strict, as :func:`token_metrics`) and support
    (entities of the type in ``y_true``)."""
    from seqeval.metrics import classification_report

    _check_tag_rows(y_true, y_pred)
    report = classification_report(
        y_true, y_pred, mode="strict", scheme=_scheme_class(scheme), output_dict=True, zero_division=0
    )
    return {
        kind: {
            "precision": float(v["precision"]),
            "recall": float(v["recall"]),
            "f1": float(v["f1-score"]),
            "support": float(v["support"]),
        }
        for kind, v in sorted(report.items())
        if not kind.endswith(" avg")
    }


def tag_scheme(name: str) -> str:
    """The canonical name of tagging scheme ``name`` (case-insensitive; BIO = IOB2, BIOES = IOBES)."""
    upper = name.upper()
    canonical = SCHEME_ALIASES.get(upper, upper)
    if canonical not in TAG_SCHEMES:
        raise UnfreezeError(
            f"Unknown tagging scheme {name!r}; choose one of: {', '.join(TAG_SCHEMES)} (BIO = IOB2, BIOES = IOBES)."
        )
    return canonical


def _scheme_class(name: str) -> type:
    import seqeval.scheme

    return getattr(seqeval.scheme, tag_scheme(name))


def _check_tag_rows(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> None:
    if len(y_true) != len(y_pred) or any(len(t) != len(p) for t, p in zip(y_true, y_pred)):
        raise ValueError("y_true and y_pred must hold the same number of sentences and tags per sentence")


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
