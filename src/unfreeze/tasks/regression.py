"""``regression``: a number per text (one output, mean squared error on standardised scores, Spearman).

The head learns the scores standardised (mean 0, scale 1 over the training labels), so one
learning rate serves scores of any scale; outputs are given back in the user's units.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import UnfreezeError
from .base import Task, as_rows, held_out

if TYPE_CHECKING:
    import torch

QUANTILE_BINS = 5  # the validation split is stratified by these bins of the score


class Regression(Task):
    """One real-valued score per text (or per text pair)."""

    name: ClassVar[str] = "regression"
    summary: ClassVar[str] = "a number per text (one output, mean squared error; ranked by Spearman)"
    metrics: ClassVar[tuple[str, ...]] = ("spearman", "pearson", "rmse", "mae", "r2")
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"rmse", "mae"})
    is_classification: ClassVar[bool] = False
    weighs_classes: ClassVar[bool] = False
    strata_are_classes: ClassVar[bool] = False
    checks_swapped_columns: ClassVar[bool] = False
    features_head: ClassVar[str | None] = "ridge"
    target_dtype: ClassVar[str] = "float32"

    def __init__(self) -> None:
        self.mean_: float | None = None
        self.scale_: float | None = None

    @property
    def fitted(self) -> bool:
        return self.mean_ is not None

    # -- labels as the data layer reads them: a finite float per row; no classes -------------------

    @classmethod
    def read_labels(
        cls, values: Sequence[object], label_sep: str | None, source: str, column: str | None, warn_mixed: bool = True
    ) -> list:
        from ..data.labels import regression_labels

        return regression_labels(values, source, column)  # label_sep is refused before (check_label_sep)

    @classmethod
    def classes_of(cls, labels: Sequence[Any]) -> list:
        return []

    @classmethod
    def class_counts(cls, labels: Sequence[Any]) -> dict:
        return {}

    @classmethod
    def check_variety(cls, labels: Sequence[Any], require_classes: int, source: str) -> None:
        if require_classes >= 2 and len(set(labels)) < 2:
            raise UnfreezeError(
                f"Every score of {source} is {labels[0]:g}; regression needs scores that differ. Check the label "
                "column (--label-col)."
            )

    @classmethod
    def strata(cls, labels: Sequence[Any]) -> list:
        """Each score's quantile bin, 0 to ``QUANTILE_BINS`` - 1."""
        values = np.asarray(labels, dtype=np.float64)
        if len(values) == 0:
            return []
        edges = np.quantile(values, np.arange(1, QUANTILE_BINS) / QUANTILE_BINS)
        return np.searchsorted(edges, values, side="right").tolist()

    @classmethod
    def check_per_class(cls, source: str) -> None:
        raise UnfreezeError(
            f"{source} holds scores (regression), which have no classes to take --n-per-class of. "
            "Use --n-train (stratified by score)."
        )

    def fit_labels(self, y: Any, what: str = "y") -> np.ndarray:
        values = _numbers(y, what)
        if len(np.unique(values)) < 2:
            raise UnfreezeError(f"{what} holds a single value ({values[0]!r}); a regression needs at least two.")
        self.mean_, self.scale_ = float(values.mean()), float(values.std())
        return self._standardise(values)

    def encode(self, y: Any, what: str = "y", unseen: bool = False) -> np.ndarray:
        return self._standardise(_numbers(y, what))

    def _standardise(self, values: np.ndarray) -> np.ndarray:
        assert self.mean_ is not None and self.scale_ is not None, "fit_labels first"
        return ((values - self.mean_) / self.scale_).astype(np.float32)

    def values(self, targets: np.ndarray) -> np.ndarray:
        """Standardised targets (or head outputs) back in the user's units."""
        assert self.mean_ is not None and self.scale_ is not None, "fit_labels first"
        return np.asarray(targets, dtype=np.float64) * self.scale_ + self.mean_

    @property
    def n_outputs(self) -> int:
        return 1

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return (logits.float()[:, 0] - targets.float()) ** 2

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        return self.values(np.asarray(logits).reshape(len(logits), -1)[:, 0])

    def decide(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float64)

    def decide_targets(self, targets: np.ndarray) -> np.ndarray:
        return self.values(targets)

    def scores_of_outputs(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        return regression_metrics(self.values(targets), np.asarray(outputs, dtype=np.float64))

    def split(self, targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return held_out(quantile_bins(np.asarray(targets, dtype=np.float64)), fraction, seed)

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "mean": self.mean_, "scale": self.scale_}

    @classmethod
    def from_state(cls, meta: dict[str, Any], classes: np.ndarray | None = None) -> Regression:
        task = cls()
        mean, scale = meta.get("mean"), meta.get("scale")
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in (mean, scale)) or not scale:
            raise UnfreezeError("The bundle's regression task has no valid mean and scale: it is damaged. Fit again.")
        task.mean_, task.scale_ = float(mean), float(scale)  # type: ignore[arg-type]
        return task


def regression_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlation, RMSE, MAE and R^2 of ``predicted`` against ``truth``.

    A correlation with a constant side is undefined; it counts as 0 (no ranking information)."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    constant = np.ptp(truth) == 0 or np.ptp(predicted) == 0 or len(truth) < 2
    return {
        "spearman": 0.0 if constant else float(spearmanr(truth, predicted).statistic),
        "pearson": 0.0 if constant else float(pearsonr(truth, predicted).statistic),
        "rmse": float(math.sqrt(mean_squared_error(truth, predicted))),
        "mae": float(mean_absolute_error(truth, predicted)),
        "r2": float(r2_score(truth, predicted)) if len(truth) >= 2 else 0.0,
    }


def quantile_bins(values: np.ndarray, bins: int = QUANTILE_BINS) -> np.ndarray:
    """Each value's quantile bin (0..bins-1), for stratified splits and samples of scores."""
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    _, dense = np.unique(np.searchsorted(edges, values, side="right"), return_inverse=True)
    return dense.astype(np.int64)


def _numbers(y: Any, what: str) -> np.ndarray:
    rows = as_rows(y, what)
    if not rows:
        raise UnfreezeError(f"{what} is empty.")
    for i, value in enumerate(rows):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise UnfreezeError(
                f"{what} row {i} is {value!r}, not a number; a regression takes one number per text. "
                "For classes, use task='single'."
            )
        if not math.isfinite(value):
            raise UnfreezeError(f"{what} row {i} is {value!r}; scores must be finite numbers.")
    return np.asarray(rows, dtype=np.float64)
