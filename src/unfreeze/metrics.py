"""The metrics every fit reports: accuracy, macro-F1 and Matthews correlation."""

from __future__ import annotations

from collections.abc import Sequence

METRICS = ("accuracy", "macro_f1", "mcc")


def classification_metrics(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """Accuracy, macro-F1 and MCC of predictions ``y_pred`` against ``y_true``."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef  # imported on use: the CLI starts fast

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
    }


def format_metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """Rows like {"train": {...}, "test": {...}} as an aligned text table."""
    lines = [f"{'split':<8}" + "".join(f"{m:>10}" for m in METRICS)]
    for split, values in rows.items():
        lines.append(f"{split:<8}" + "".join(f"{values[m]:>10.4f}" for m in METRICS))
    return "\n".join(lines)
