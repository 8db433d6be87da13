"""Which head a task's features get, and which strength belongs to it: C (logistic) or alpha (ridge).

Kept apart from ``features.heads`` (which imports scikit-learn) so that the CLI refuses a strength
the task's head does not take before anything loads.
"""

from __future__ import annotations

from ..errors import UnfreezeError

# the head a task's model gets (the keys are task names: this is the registry that maps them)
TASK_HEADS: dict[str, str] = {"single": "logistic", "multilabel": "ovr_logistic", "regression": "ridge"}


def head_kind(task: str, owner: str, C: float | None = None, alpha: float | None = None) -> str:
    """The head type of ``task``'s features (a key of ``features.heads.HEAD_TYPES``); one line when a strength
    of the other kind of head is given (C belongs to the logistic heads, alpha to ridge)."""
    if task not in TASK_HEADS:
        raise UnfreezeError(f"Strategy {owner!r} has no head for a {task} task.")
    kind = TASK_HEADS[task]
    if kind == "ridge" and C is not None:
        raise UnfreezeError(
            f"C={C} is the logistic head's strength; a {task} task's head is ridge regression: "
            f"give alpha instead (--alpha), or drop C."
        )
    if kind != "ridge" and alpha is not None:
        raise UnfreezeError(
            f"alpha={alpha} is the ridge head's strength (regression); a {task} task's head is a logistic "
            "regression: give C instead (--C), or drop alpha."
        )
    return kind
