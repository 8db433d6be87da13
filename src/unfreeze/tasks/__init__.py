"""Tasks: what a label is and how a model is trained, scored and decided for it.

A task is one module with one :class:`Task` subclass, registered by name like the
strategies: ``single`` (one class per text), ``multilabel`` (a set of labels per text),
``regression`` (a number per text), ``tokens`` (a tag per word). Strategies ask the task for the head's size, the
loss and the scores; they never branch on its name.

Importing this package is cheap (no torch, no scikit-learn): the command line reads it.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnfreezeError
from .base import Task
from .multilabel import MultiLabel
from .regression import Regression
from .single import SingleLabel
from .tokens import Tokens

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


for _cls in (SingleLabel, MultiLabel, Regression, Tokens):
    register_task(_cls)

DEFAULT_TASK = SingleLabel.name


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def task_class(name: object, owner: str = "task") -> type[Task]:
    """The registered task class called ``name``; one-line error naming the valid ones otherwise."""
    if isinstance(name, str) and name in TASKS:
        return TASKS[name]
    raise UnfreezeError(f"Unknown task {name!r} ({owner}). Choose one of: {', '.join(TASKS)}.")


def make_task(name: object = DEFAULT_TASK, **params: object) -> Task:
    """A fresh, unfitted task object: ``make_task("multilabel", thresholds="per-label")``."""
    if isinstance(name, Task):
        return name.fresh()
    return task_class(name)(**params)


def task_from_state(meta: dict | None, classes: Any = None) -> Task:
    """The fitted task a bundle stored (``Task.state()``) with the bundle's ``classes``; a bundle of an earlier
    release stores none: single."""
    import numpy as np

    array = None if classes is None else np.asarray(classes)
    if not meta:
        return SingleLabel.from_state({}, array)
    return task_class(meta.get("name"), "bundle").from_state(meta, array)


__all__ = [
    "DEFAULT_TASK",
    "TASKS",
    "MultiLabel",
    "Regression",
    "SingleLabel",
    "Task",
    "Tokens",
    "make_task",
    "register_task",
    "task_class",
    "task_from_state",
    "task_names",
]
