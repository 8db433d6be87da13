"""``multilabel``: a set of labels per text (one sigmoid per label, binary cross-entropy, micro-F1).

Labels come as lists (or sets, tuples) of labels per text, or as scikit-learn's binary
indicator matrix [n, K]; predictions come back in the same form. A text may carry no label.
The decision threshold is 0.5 until :meth:`MultiLabel.tune` chooses it on validation outputs:
one for every label (``thresholds="global"``) or one per label (``"per-label"``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import UnfreezeError, invalid_parameter
from .base import Task, as_rows, held_out

if TYPE_CHECKING:
    import torch

THRESHOLD_MODES = ("global", "per-label")
# the thresholds tune() tries; ties go to the one nearest 0.5
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
_SETS = (list, tuple, set, frozenset)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


class MultiLabel(Task):
    """Any number of labels per text, each decided by its own sigmoid and threshold."""

    name: ClassVar[str] = "multilabel"
    summary: ClassVar[str] = "a set of labels per text (a sigmoid per label, binary cross-entropy; ranked by micro-F1)"
    metrics: ClassVar[tuple[str, ...]] = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"hamming_loss"})
    tunes_on_validation: ClassVar[bool] = True
    min_classes: ClassVar[int] = 1
    reads_label_sep: ClassVar[bool] = True
    tunes_thresholds: ClassVar[bool] = True
    strata_are_classes: ClassVar[bool] = False
    checks_swapped_columns: ClassVar[bool] = False
    features_head: ClassVar[str | None] = "ovr_logistic"
    target_dtype: ClassVar[str] = "float32"
    # a longer text carries more labels (CoNLL's datelines and score lines have none or one type): batches of
    # one length were batches of one kind of label set and cost 0.043 micro-F1 at k=3 against shuffled batches
    groups_by_length: ClassVar[bool] = False

    def __init__(self, thresholds: str = "global") -> None:
        if thresholds not in THRESHOLD_MODES:
            raise invalid_parameter("thresholds", "multilabel", "'global' or 'per-label'", thresholds)
        self.thresholds = thresholds
        self.classes_: np.ndarray | None = None
        self.indicator_ = False  # y was a binary indicator matrix: predictions are one too
        self.threshold_: np.ndarray | None = None  # [K]; None: 0.5 everywhere (not tuned)

    def params(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds}

    @property
    def fitted(self) -> bool:
        return self.classes_ is not None

    # -- labels as the data layer reads them: a sorted tuple of labels per row ----------------------

    @classmethod
    def read_labels(
        cls, values: Sequence[object], label_sep: str | None, source: str, column: str | None, warn_mixed: bool = True
    ) -> list:
        from ..data.labels import multilabel_labels

        return multilabel_labels(values, label_sep, source, column)

    @classmethod
    def classes_of(cls, labels: Sequence[Any]) -> list:
        """Every label some row carries."""
        from ..data.dataset import _label_sort_key

        return sorted({label for row in labels for label in row}, key=_label_sort_key)

    @classmethod
    def class_counts(cls, labels: Sequence[Any]) -> dict:
        """Rows carrying each label."""
        counts = Counter(label for row in labels for label in row)
        return {label: counts[label] for label in cls.classes_of(labels)}

    @classmethod
    def check_variety(cls, labels: Sequence[Any], require_classes: int, source: str) -> None:
        if require_classes >= 2 and not cls.classes_of(labels):
            raise UnfreezeError(
                f"No row of {source} carries a label (every row's set is empty); a multi-label classifier needs "
                "rows with labels. Check the label column (--label-col) and --label-sep."
            )

    @classmethod
    def strata(cls, labels: Sequence[Any]) -> list:
        """Each row's rarest label, ties to the first in sorted order; ``()`` for a row with none."""
        counts = cls.class_counts(labels)
        rank = {label: i for i, label in enumerate(counts)}  # sorted order breaks ties
        return [min(row, key=lambda label: (counts[label], rank[label])) if row else () for row in labels]

    @classmethod
    def stratum_shortfall(cls, key: object, count: int, source: str) -> str:
        if key == ():
            return f"{source} has {count} row(s) with no label"
        return f"Label {key!r} of {source} is the rarest label of {count} row(s)"

    # -- labels ------------------------------------------------------------------------------

    def fit_labels(self, y: Any, what: str = "y") -> np.ndarray:
        matrix = _indicator(y, what)
        if matrix is not None:
            self.indicator_, self.classes_ = True, np.arange(matrix.shape[1])
            targets = matrix
        else:
            rows = _label_sets(y, what)
            classes = sorted({label for row in rows for label in row}, key=lambda v: (isinstance(v, str), v))
            if not classes:
                raise UnfreezeError(f"{what} holds no label at all; a multi-label classifier needs at least one.")
            self.indicator_, self.classes_ = False, np.array(classes, dtype=object if _mixed(classes) else None)
            targets = self._binarize(rows, what)
        if not targets.any():
            raise UnfreezeError(f"{what} holds no label at all; a multi-label classifier needs at least one.")
        self.threshold_ = None
        return targets

    def encode(self, y: Any, what: str = "y", unseen: bool = False) -> np.ndarray:
        assert self.classes_ is not None, "fit_labels first"
        matrix = _indicator(y, what)
        if matrix is not None:
            if matrix.shape[1] != len(self.classes_):
                raise UnfreezeError(
                    f"{what} is an indicator matrix of {matrix.shape[1]} columns; the fitted task has "
                    f"{len(self.classes_)} labels. Give one column per label, in the fitted order."
                )
            return matrix
        return self._binarize(_label_sets(y, what), what, unseen)

    def _binarize(self, rows: list[tuple], what: str, unseen: bool = False) -> np.ndarray:
        assert self.classes_ is not None
        index = {label: i for i, label in enumerate(self.classes_.tolist())}
        unknown = list(dict.fromkeys(label for row in rows for label in row if label not in index))
        if unknown and unseen:
            index.update({label: len(index) + i for i, label in enumerate(unknown)})
        elif unknown:
            raise UnfreezeError(
                f"{what} labels {', '.join(map(repr, unknown[:3]))} are not among the fitted labels "
                f"({', '.join(map(repr, self.classes_.tolist()[:5]))}). Give labels it was fitted on."
            )
        out = np.zeros((len(rows), len(index)), dtype=np.float32)
        for i, row in enumerate(rows):
            out[i, [index[label] for label in row]] = 1.0
        return out

    # -- training ----------------------------------------------------------------------------

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        from torch import nn

        # the mean over labels, as Hugging Face's multi_label_classification loss averages them
        per_label = nn.functional.binary_cross_entropy_with_logits(
            logits.float(), targets.float(), pos_weight=weight, reduction="none"
        )
        return per_label.mean(dim=1)

    def loss_weight(self, targets: np.ndarray, mode: str | None, device: Any) -> torch.Tensor | None:
        """``balanced``: each label's positives weigh (negatives / positives), PyTorch's ``pos_weight``."""
        if mode is None:
            return None
        import torch

        positives = np.asarray(targets).sum(axis=0)
        weights = (len(targets) - positives) / np.maximum(positives, 1)
        return torch.tensor(weights, dtype=torch.float32, device=device)

    # -- outputs and scores --------------------------------------------------------------------

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(np.asarray(logits, dtype=np.float64))

    def threshold_values(self) -> np.ndarray:
        return self.threshold_ if self.threshold_ is not None else np.full(self.n_outputs, 0.5)

    def indicators(self, outputs: np.ndarray) -> np.ndarray:
        return (np.asarray(outputs) >= self.threshold_values()).astype(np.int64)

    def decide(self, outputs: np.ndarray) -> Any:
        chosen = self.indicators(outputs)
        if self.indicator_:
            return chosen
        assert self.classes_ is not None
        labels = self.classes_.tolist()
        return [tuple(labels[j] for j in np.flatnonzero(row)) for row in chosen]

    def decide_targets(self, targets: np.ndarray) -> Any:
        chosen = (np.asarray(targets) > 0.5).astype(np.int64)
        if self.indicator_:
            return chosen
        assert self.classes_ is not None
        labels = self.classes_.tolist()
        return [tuple(labels[j] for j in np.flatnonzero(row)) for row in chosen]

    def scores_of_outputs(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        truth, chosen = np.asarray(targets).astype(np.int64), self.indicators(outputs)
        if truth.shape[1] > chosen.shape[1]:  # labels the fit never saw (``encode(unseen=True)``): never predicted
            chosen = np.hstack([chosen, np.zeros((len(chosen), truth.shape[1] - chosen.shape[1]), np.int64)])
        return multilabel_metrics(truth, chosen)

    def tune(self, targets: np.ndarray, logits: np.ndarray) -> None:
        """Choose the threshold(s) that maximise micro-F1 (global) or each label's F1 (per-label)."""
        from sklearn.metrics import f1_score

        truth = np.asarray(targets).astype(np.int64)
        proba = self.outputs(logits)
        if not len(truth):
            return
        order = np.argsort(np.abs(THRESHOLD_GRID - 0.5), kind="stable")  # ties: nearest 0.5 first
        if self.thresholds == "global":
            values = [
                f1_score(truth, (proba >= t).astype(np.int64), average="micro", zero_division=0)
                for t in THRESHOLD_GRID[order]
            ]
            self.threshold_ = np.full(self.n_outputs, float(THRESHOLD_GRID[order][int(np.argmax(values))]))
            return
        chosen = np.full(self.n_outputs, 0.5)
        for j in range(self.n_outputs):
            if truth[:, j].any():
                values = [
                    f1_score(truth[:, j], (proba[:, j] >= t).astype(np.int64), zero_division=0)
                    for t in THRESHOLD_GRID[order]
                ]
                chosen[j] = float(THRESHOLD_GRID[order][int(np.argmax(values))])
        self.threshold_ = chosen

    def split(self, targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Stratified by each row's rarest label (rows without a label are a group of their own); groups too
        small to split join the rest."""
        return held_out(rarest_label_groups(np.asarray(targets)), fraction, seed)

    # -- persistence ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "thresholds": self.thresholds,
            "threshold": None if self.threshold_ is None else [float(t) for t in self.threshold_],
            "indicator": self.indicator_,
        }

    @classmethod
    def from_state(cls, meta: dict[str, Any], classes: np.ndarray | None = None) -> MultiLabel:
        task = cls(thresholds=meta.get("thresholds", "global"))
        task.classes_ = None if classes is None else np.asarray(classes)
        task.indicator_ = bool(meta.get("indicator", False))
        threshold = meta.get("threshold")
        task.threshold_ = None if threshold is None else np.asarray(threshold, dtype=np.float64)
        if task.classes_ is not None and task.threshold_ is not None and len(task.threshold_) != len(task.classes_):
            raise UnfreezeError(
                f"The bundle's multilabel task has {len(task.threshold_)} thresholds for {len(task.classes_)} "
                "labels: it is damaged. Fit and save it again."
            )
        return task

    def describe(self) -> str:
        return self.name if self.thresholds == "global" else f"{self.name} (thresholds per label)"


def multilabel_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Micro-, macro- and samples-F1, subset accuracy and Hamming loss of indicator matrices."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    return {
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "samples_f1": float(f1_score(truth, predicted, average="samples", zero_division=0)),
        "subset_accuracy": float(accuracy_score(truth, predicted)),
        "hamming_loss": float(hamming_loss(truth, predicted)),
    }


def rarest_label_groups(targets: np.ndarray, min_group: int = 4) -> np.ndarray:
    """Each row's group for a stratified split: its rarest label, K for a row without one; groups of fewer
    than ``min_group`` rows are merged into one, and that into the largest group when still too small."""
    counts = targets.sum(axis=0)
    k = targets.shape[1]
    rarity = np.where(targets > 0, counts[None, :], np.inf)
    groups = np.where(targets.any(axis=1), rarity.argmin(axis=1), k).astype(np.int64)
    sizes = np.bincount(groups, minlength=k + 1)
    small = sizes < min_group
    if small[groups].any():
        merged = k + 1
        groups = np.where(small[groups], merged, groups)
        sizes = np.bincount(groups, minlength=k + 2)
        if 0 < sizes[merged] < min_group:
            groups = np.where(groups == merged, int(np.argmax(sizes[:merged])), groups)
    _, dense = np.unique(groups, return_inverse=True)
    return dense.astype(np.int64)


def _indicator(y: Any, what: str) -> np.ndarray | None:
    """``y`` as a float32 indicator matrix when it is one (2-D numbers of 0 and 1); None for label lists."""
    shape = getattr(y, "shape", None)
    if shape is None or len(shape) != 2:
        return None
    matrix = np.asarray(y.toarray() if hasattr(y, "toarray") else y)
    if matrix.dtype.kind not in "biuf" or not np.isin(matrix, (0, 1)).all():
        raise UnfreezeError(
            f"{what} is a 2-D array but not a binary indicator matrix (only 0 and 1, one column per label)."
        )
    return matrix.astype(np.float32)


def _label_sets(y: Any, what: str) -> list[tuple]:
    rows = as_rows(y, what)
    out: list[tuple] = []
    for i, row in enumerate(rows):
        if not isinstance(row, _SETS):
            raise UnfreezeError(
                f"{what} row {i} is {row!r}, not a list of labels; a multilabel task takes a list (or set) "
                "of labels per text, or a binary indicator matrix. (A string of labels: split it with --label-sep.)"
            )
        labels = set(row)
        for label in labels:
            if isinstance(label, bool) or not isinstance(label, (int, str, np.integer, np.str_)):
                raise UnfreezeError(f"{what} row {i} holds {label!r}; labels are strings or integers.")
        out.append(tuple(sorted(labels, key=lambda v: (isinstance(v, str), v))))
    return out


def _mixed(classes: list) -> bool:
    return len({isinstance(c, str) for c in classes}) > 1
