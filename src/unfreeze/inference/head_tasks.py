"""A head on pooled features, whatever its task: read back from its state, and its outputs in its task's shape.

A multi-head bundle (and an ONNX ``heads`` export) may hold heads of different tasks on one
backbone: a logistic head for one class per text, a one-vs-rest head for label sets, a ridge
head for scores. Each is a linear map of the pooled features to raw scores
(``decision_function``); the head's task (``unfreeze.tasks``) turns them into its outputs:
class probabilities (single: the head's own ``predict_proba``, as before tasks existed),
per-label probabilities (multilabel) or values (regression).

numpy only; scikit-learn and the head classes are imported where a head is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..tasks import Task, task_from_state


def head_from_state(tensors: Mapping[str, Any], meta: dict) -> Any:
    """The fitted head a bundle stored (``head.state()``; ``unfreeze.features.heads`` knows every type);
    ValueError for a type this release does not know."""
    from ..features.heads import head_from_state as read

    return read(tensors, meta)


def head_width(fitted: Any) -> int | None:
    """How many raw scores the fitted head gives per input (a binary logistic head: 2), None when unknown."""
    width = getattr(fitted, "n_outputs", None)
    if callable(width):
        width = width()
    return int(width) if isinstance(width, (int, np.integer)) else None


def task_of(head: Any) -> Task:
    """The fitted task of a named head (``features.logistic.Head``): its own, or single for a head of an
    earlier release."""
    task = getattr(head, "task", None)
    return task if task is not None else task_from_state(None, head.classes)


def head_scores(fitted: Any, features: np.ndarray, n_outputs: int) -> np.ndarray:
    """The head's raw scores [n, n_outputs] (a network's logits would be the same numbers): its ``logits``, or
    its ``decision_function`` (an export's numpy head) in that shape."""
    if hasattr(fitted, "logits"):
        return np.asarray(fitted.logits(features))
    scores = np.asarray(fitted.decision_function(features))
    if scores.ndim == 2:
        return scores
    # one column: scikit-learn's binary logistic (the log-odds of class 1, beside a 0 for class 0), or one output
    return np.column_stack([np.zeros_like(scores), scores]) if n_outputs == 2 else scores.reshape(-1, 1)


class PooledScores:
    """A fitted head over features already pooled: the ``logits``/``proba`` of a predictor, for
    ``Task.outputs_of`` (single asks for ``proba``, the head's own probabilities; the others for ``logits``)."""

    def __init__(self, fitted: Any, features: np.ndarray, n_outputs: int) -> None:
        self.fitted, self.features, self.n_outputs = fitted, features, n_outputs

    def logits(self, inputs: Any = None) -> np.ndarray:
        return head_scores(self.fitted, self.features, self.n_outputs)

    def proba(self, inputs: Any = None) -> np.ndarray:
        return np.asarray(self.fitted.predict_proba(self.features))


def head_outputs(fitted: Any, task: Task, features: np.ndarray) -> np.ndarray:
    """The task's outputs of a head on pooled ``features``: probabilities [n, K] or values [n]."""
    return task.outputs_of(PooledScores(fitted, features, task.n_outputs), None)


__all__ = [
    "PooledScores",
    "head_from_state",
    "head_outputs",
    "head_scores",
    "head_width",
    "task_of",
]
