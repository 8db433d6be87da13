"""What ``/predict`` answers for one head, in its task's shape, and the OpenAPI models that describe it.

One entry per task (``unfreeze.tasks``), keyed by the task's name: this is the registry that
maps them. Each gives the head's result model (pydantic) and the result itself from the
head's outputs (``Task.outputs``) for every text:

- ``single``: ``{"labels": [...], "predictions": [label per text], "probabilities": [[...] per text]}``,
  as before tasks existed;
- ``multilabel``: ``{"task": "multilabel", "labels": [...], "thresholds": [...], "predictions":
  [{"labels": [the chosen labels], "scores": {label: probability}} per text]}``;
- ``regression``: ``{"task": "regression", "predictions": [{"value": x} per text]}``.

A bundle's spec lists only the result models of the tasks its heads have: a bundle of
single-label heads is described exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..tasks import Task


@dataclass(frozen=True)
class Shape:
    """A task's result: its model (given the label type) and the result of a head's outputs."""

    model: Callable[[Any], Any]
    result: Callable[[Task, list, np.ndarray], dict]


def _single_model(Label: Any) -> Any:
    from pydantic import BaseModel, Field

    class HeadResult(BaseModel):
        labels: list[Label] = Field(description="The head's classes, in the order of the probability columns.")
        predictions: list[Label] = Field(description="One label per text.")
        probabilities: list[list[float]] = Field(description="One row per text, one column per label.")

    return HeadResult


def _single_result(task: Task, labels: list, outputs: np.ndarray) -> dict:
    return {
        "labels": labels,
        "predictions": [labels[j] for j in outputs.argmax(axis=1).tolist()],
        "probabilities": outputs.tolist(),
    }


def _multilabel_model(Label: Any) -> Any:
    from pydantic import BaseModel, Field

    class LabelSet(BaseModel):
        labels: list[Label] = Field(description="The labels whose probability reaches their threshold (maybe none).")
        scores: dict[str, float] = Field(description="Each label's own probability (they need not sum to 1).")

    class MultiLabelHeadResult(BaseModel):
        task: Literal["multilabel"]
        labels: list[Label] = Field(description="The head's labels.")
        thresholds: list[float] = Field(description="Each label's decision threshold, in the order of labels.")
        predictions: list[LabelSet] = Field(description="One label set per text.")

    return MultiLabelHeadResult


def _multilabel_result(task: Task, labels: list, outputs: np.ndarray) -> dict:
    thresholds = task.threshold_values()  # type: ignore[attr-defined]  # the registry's multilabel task
    chosen = np.asarray(outputs) >= thresholds
    names = [str(label) for label in labels]  # JSON object keys are strings
    return {
        "task": "multilabel",
        "labels": labels,
        "thresholds": [float(t) for t in thresholds],
        "predictions": [
            {
                "labels": [labels[j] for j in np.flatnonzero(row)],
                "scores": dict(zip(names, (float(p) for p in scores), strict=True)),
            }
            for row, scores in zip(chosen, np.asarray(outputs), strict=True)
        ],
    }


def _regression_model(Label: Any) -> Any:
    from pydantic import BaseModel, Field

    class Value(BaseModel):
        value: float = Field(description="The predicted score, in the units of the training labels.")

    class RegressionHeadResult(BaseModel):
        task: Literal["regression"]
        predictions: list[Value] = Field(description="One value per text.")

    return RegressionHeadResult


def _regression_result(task: Task, labels: list, outputs: np.ndarray) -> dict:
    return {"task": "regression", "predictions": [{"value": float(v)} for v in np.asarray(outputs).reshape(-1)]}


SHAPES: dict[str, Shape] = {
    "single": Shape(_single_model, _single_result),
    "multilabel": Shape(_multilabel_model, _multilabel_result),
    "regression": Shape(_regression_model, _regression_result),
}


def result_models(task_names: list[str], Label: Any) -> Any:
    """The type of one head's result for heads of these tasks: one model, or the union of theirs."""
    models = tuple(_shape(name).model(Label) for name in dict.fromkeys(task_names))
    if len(models) == 1:
        return models[0]
    from typing import Union

    return Union[models]  # noqa: UP007 - built at run time from the bundle's tasks


def head_result(task: Task, labels: list, outputs: np.ndarray) -> dict:
    """One head's answer for every text, in its task's shape."""
    return _shape(task.name).result(task, labels, np.asarray(outputs))


def _shape(name: str) -> Shape:
    if name not in SHAPES:
        raise KeyError(f"the service has no response shape for task {name!r} (it has: {', '.join(SHAPES)})")
    return SHAPES[name]


__all__ = ["SHAPES", "Shape", "head_result", "result_models"]
