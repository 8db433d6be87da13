"""``features``: nothing in the model is trained; a linear head on pooled states.

BERT paper Table 7 (feature-based); the common CPU baseline. Embeddings come from (and
go to) the embedding cache, so a second fit on the same texts runs no forward pass. The
head is the task's (``unfreeze.features.heads``): an L2 logistic regression (one class per
text), one per label (multilabel), or ridge regression (scores), each with its strength
chosen by cross-validation unless given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..params import float_in, int_at_least, setting
from .base import FitContext, FitResult, Strategy

if TYPE_CHECKING:
    from ..features.heads import FittedHead


@dataclass(repr=False)
class Features(Strategy):
    """A linear head on the pooled hidden states of the frozen model.

    Parameters
    ----------
    C : float or None
        Inverse L2 strength of the logistic head (single and multilabel tasks; multilabel: one C
        for every label); None chooses it by cross-validation.
    cv : int
        Folds for choosing C.
    alpha : float or None
        L2 strength of the ridge head (regression); None chooses it by leave-one-out
        cross-validation (scikit-learn's ``RidgeCV``).
    """

    name: ClassVar[str] = "features"
    summary: ClassVar[str] = "nothing in the model; an L2 logistic regression on pooled hidden states"
    training_settings: ClassVar[frozenset[str]] = frozenset({"class_weight"})
    changes_weights: ClassVar[bool] = False
    # multilabel thresholds are tuned on the head's out-of-fold scores over every training text
    tunes_decision: ClassVar[bool] = True

    C: float | None = setting(
        None,
        "Inverse L2 strength of the logistic head (default: chosen by CV).",
        float_in(0.0, optional=True),
        flag="--C",
    )
    cv: int = setting(5, "Folds for choosing C by cross-validation.", int_at_least(2))
    alpha: float | None = setting(
        None,
        "L2 strength of the ridge head of a regression (default: chosen by leave-one-out CV).",
        float_in(0.0, optional=True),
    )

    def frozen_blocks(self, num_blocks: int) -> int:
        return num_blocks

    def fit(self, context: FitContext, inputs: list, y: np.ndarray) -> FitResult:
        from ..inference.predictors import EmbeddingHead
        from ..training.memory import PeakMemory

        backbone = context.backbone
        predictor = EmbeddingHead(
            backbone,
            context.pooling,
            context.layers,
            context.max_length,
            context.batch_size,
            head=None,
            use_cache=context.cache,
            progress=context.progress,
            precision=context.inference_precision,
        )
        class_weight = context.training.class_weight if context.training is not None else None
        head = task_head(context, self.C, self.alpha, self.cv, class_weight)
        started = time.perf_counter()
        with PeakMemory(backbone.device) as memory:
            embedded = predictor.embed(inputs)
            features = embedded.features(context.layers)
            predictor.head = head.fit(features, y)
        record = {
            "trainable_parameters": 0,
            "total_parameters": backbone.n_parameters(),
            "peak_memory_bytes": memory.peak_bytes,
            "device": str(backbone.device),
            "state_bytes_per_example": features.nbytes / max(len(inputs), 1),
            "step_seconds": time.perf_counter() - started,  # embedding and the head's fit: both grow with n
            "examples_seen": len(inputs),
            **head.record(),
            **tune_out_of_fold(context, head, y),
        }
        return FitResult(predictor, record, embedded.n_truncated, embedded.max_length)


def task_head(
    context: FitContext,
    C: float | None,
    alpha: float | None,
    cv: int,
    class_weight: str | None,
    owner: str = "features",
) -> FittedHead:
    """The unfitted head for the context's task (single when it has none); a task that tunes its decision
    without a validation split gets out-of-fold scores from the head's folds."""
    from ..features.heads import make_head

    task = context.task
    out_of_fold = task is not None and task.tunes_on_validation and context.validation is None
    return make_head(
        task.name if task is not None else "single",
        owner,
        C=C,
        alpha=alpha,
        cv=cv,
        seed=context.seed,
        class_weight=class_weight,
        out_of_fold=out_of_fold,
    )


def tune_out_of_fold(context: FitContext, head: FittedHead, y: np.ndarray) -> dict:
    """Tune the task's decision (multilabel thresholds) on the head's out-of-fold scores when there is no
    validation split: the fit record then says ``decision_tuned``, and the estimator does not tune again."""
    oof = getattr(head, "oof_logits_", None)
    task = context.task
    if task is None or not task.tunes_on_validation or context.validation is not None or oof is None:
        return {}
    task.tune(y, oof)
    return {"decision_tuned": True, "decision_source": "out-of-fold scores of the head's cross-validation"}
