"""The heads of an export applied in numpy, and the tasks that read their scores (no torch, no ONNX Runtime).

An export stores each head on pooled features as a linear map of standardised features
(``mean``, ``scale``, ``coef``, ``intercept``): a logistic head, a one-vs-rest head, a ridge
head alike. Its raw scores (or a network graph's logits) become outputs through the head's
task, recorded in the manifest (``"task"``; an export of an earlier release has none: single).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UnfreezeError
from ..tasks import Task, task_from_state
from .session import damaged

HEAD_TENSORS = ("mean", "scale", "coef", "intercept")  # what an export stores of a head: a linear map


@dataclass
class NumpyLogisticHead:
    """A fitted head on pooled features as arrays: standardise, then linear scores; a single-label head's
    probabilities by scikit-learn's formulas (a multilabel or regression head's task reads its scores)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    @classmethod
    def load(cls, file: Path) -> NumpyLogisticHead:
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(file))
            mean, scale, coef, intercept = (np.asarray(tensors[k], dtype=np.float64) for k in HEAD_TENSORS)
            # one output (a ridge head's) may be stored as one row or as a vector
            return cls(mean, scale, np.atleast_2d(coef), np.atleast_1d(intercept))
        except Exception as exc:  # safetensors raises its own error types; any failure means a bad file
            raise damaged(file, f"head file {file.name} does not load ({exc}).") from exc

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        scores = z @ self.coef.T + self.intercept
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        scores = self.decision_function(features)
        if scores.ndim == 1:  # binary: one score, as LogisticRegression's predict_proba
            positive = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - positive, positive])
        return softmax(scores)


def softmax(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class NetworkLogits:
    """A network's logits as what ``Task.outputs_of`` asks of a predictor (single: the softmax, as before)."""

    def __init__(self, logits: np.ndarray) -> None:
        self._logits = logits

    def logits(self, inputs: object = None) -> np.ndarray:
        return self._logits

    def proba(self, inputs: object = None) -> np.ndarray:
        return softmax(self._logits)


def manifest_task(entry: dict) -> Task:
    """A manifest head entry's fitted task (``"task"``; an export of an earlier release has none: single)."""
    labels = entry.get("labels") or None
    try:
        return task_from_state(entry.get("task"), labels)
    except (TypeError, ValueError) as exc:
        raise UnfreezeError(f"An export's head entry has an invalid task ({exc}). Export it again.") from exc


def save_head(head, file: Path) -> None:
    """Write a fitted head's linear map (``HEAD_TENSORS`` of its ``state()``) for :meth:`NumpyLogisticHead.load`."""
    from safetensors.numpy import save_file

    tensors, _meta = head.state()
    missing = [k for k in HEAD_TENSORS if k not in tensors]
    if missing:
        raise UnfreezeError(
            f"A {type(head).__name__} has no {missing[0]!r} array: only linear heads on standardised features "
            "(mean, scale, coef, intercept) export."
        )
    save_file({k: np.ascontiguousarray(tensors[k], dtype=np.float64) for k in HEAD_TENSORS}, str(file))


__all__ = ["HEAD_TENSORS", "NetworkLogits", "NumpyLogisticHead", "manifest_task", "save_head", "softmax"]
