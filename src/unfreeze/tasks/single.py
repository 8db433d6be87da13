"""``single``: one class per text (softmax over K classes, cross-entropy, accuracy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import UnfreezeError
from .base import Task, as_rows, held_out

if TYPE_CHECKING:
    import torch


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


class SingleLabel(Task):
    """One label per text, from two or more classes."""

    name: ClassVar[str] = "single"
    summary: ClassVar[str] = "one class per text (softmax, cross-entropy; ranked by accuracy)"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1", "mcc")
    min_classes: ClassVar[int] = 2
    exclusive_classes: ClassVar[bool] = True

    def __init__(self) -> None:
        self.classes_: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.classes_ is not None

    def fit_labels(self, y: Any, what: str = "y") -> np.ndarray:
        from sklearn.utils.multiclass import check_classification_targets

        rows = as_rows(y, what)
        if any(isinstance(v, (list, tuple, set, frozenset)) for v in rows):
            raise UnfreezeError(
                f"{what} holds lists of labels, but the task is single (one class per text). "
                "Use task='multilabel' (--task multilabel) for several labels per text."
            )
        y_arr = np.asarray(rows)
        check_classification_targets(y_arr)
        classes, targets = np.unique(y_arr, return_inverse=True)
        if len(classes) < 2:
            raise UnfreezeError(f"{what} has a single class ({classes[0]!r}); a classifier needs at least two.")
        self.classes_ = classes
        return targets.astype(np.int64)

    def encode(self, y: Any, what: str = "y", unseen: bool = False) -> np.ndarray:
        assert self.classes_ is not None, "fit_labels first"
        index = {label: i for i, label in enumerate(self.classes_.tolist())}
        rows = as_rows(y, what)
        unknown = list(dict.fromkeys(v for v in rows if not _hashable(v) or v not in index))
        if unknown and unseen and all(_hashable(v) for v in unknown):
            index.update({label: len(index) + i for i, label in enumerate(unknown)})
        elif unknown:
            raise UnfreezeError(
                f"{what} labels {', '.join(map(repr, unknown[:3]))} are not in y's classes "
                f"({', '.join(map(repr, self.classes_.tolist()[:5]))}): the classes of the labels it was fitted on. "
                "Give labels of those classes."
            )
        return np.array([index[v] for v in rows], dtype=np.int64)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        from torch import nn

        return nn.functional.cross_entropy(logits.float(), targets, weight=weight, reduction="none")

    def loss_weight(self, targets: np.ndarray, mode: str | None, device: Any) -> torch.Tensor | None:
        from ..training.sampling import class_weights

        return class_weights(np.asarray(targets), self.n_outputs, mode, device)

    def loss_total(self, targets: torch.Tensor, weight: torch.Tensor | None) -> float:
        return float(len(targets)) if weight is None else float(weight[targets].sum())

    def batch_loss(
        self, logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        from torch import nn

        # PyTorch's own (weighted) mean: the same value and gradient, to the bit, as before tasks existed
        return nn.functional.cross_entropy(logits.float(), targets, weight=weight)

    def validation_loss(self, targets: np.ndarray, logits: np.ndarray) -> float:
        import torch
        from torch import nn

        return float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.as_tensor(targets, dtype=torch.long)))

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(logits))

    def decide(self, outputs: np.ndarray) -> np.ndarray:
        assert self.classes_ is not None, "fit_labels first"
        return self.classes_[np.asarray(outputs).argmax(axis=1)]

    def decide_targets(self, targets: np.ndarray) -> np.ndarray:
        assert self.classes_ is not None, "fit_labels first"
        return self.classes_[np.asarray(targets, dtype=np.int64)]

    def outputs_of(self, predictor: Any, inputs: Any) -> np.ndarray:
        # the predictor's own probabilities: scikit-learn's for a logistic head, as before tasks existed
        return predictor.proba(inputs)

    def scores_of_outputs(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        from ..metrics import classification_metrics

        return classification_metrics(np.asarray(targets).tolist(), np.asarray(outputs).argmax(axis=1).tolist())

    def split(self, targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return held_out(np.asarray(targets, dtype=np.int64), fraction, seed)

    def state(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_state(cls, meta: dict[str, Any], classes: np.ndarray | None = None) -> SingleLabel:
        # the classes live beside the task in a bundle (``classes``), as before tasks existed
        task = cls()
        task.classes_ = None if classes is None else np.asarray(classes)
        return task


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
