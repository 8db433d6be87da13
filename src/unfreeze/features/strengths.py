"""Which head a task's features get, and which strength belongs to it: C (logistic) or alpha (ridge).

Kept apart from ``features.heads`` (which imports scikit-learn) so that the CLI refuses a strength
the task's head does not take before anything loads.
"""

from __future__ import annotations

from ..errors import UnfreezeError

# the strength each head type takes: C (the inverse L2 strength of the logistic heads) or alpha (ridge's)
STRENGTHS: dict[str, str] = {"logistic": "C", "ovr_logistic": "C", "ridge": "alpha"}


def head_kind(task: str, owner: str, C: float | None = None, alpha: float | None = None) -> str:
    """The head type of ``task``'s features (the task's ``features_head``, a key of ``features.heads.HEAD_TYPES``);
    one line when a strength of the other kind of head is given (C belongs to the logistic heads, alpha to
    ridge)."""
    from ..tasks import TASKS

    kind = TASKS[task].features_head if task in TASKS else None
    if kind is None:
        raise UnfreezeError(f"Strategy {owner!r} has no head for a {task} task.")
    if STRENGTHS[kind] == "alpha" and C is not None:
        raise UnfreezeError(
            f"C={C} is the logistic head's strength; a {task} task's head is ridge regression: "
            f"give alpha instead (--alpha), or drop C."
        )
    if STRENGTHS[kind] == "C" and alpha is not None:
        raise UnfreezeError(
            f"alpha={alpha} is the ridge head's strength (regression); a {task} task's head is a logistic "
            "regression: give C instead (--C), or drop alpha."
        )
    return kind
