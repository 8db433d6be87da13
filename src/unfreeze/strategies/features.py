"""``features``: nothing in the model is trained; an L2 logistic regression on pooled states.

BERT paper Table 7 (feature-based); the common CPU baseline. Embeddings come from (and
go to) the embedding cache, so a second fit on the same texts runs no forward pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..params import float_in, int_at_least, setting
from .base import FitContext, FitResult, Strategy


@dataclass(repr=False)
class Features(Strategy):
    """A logistic head on the pooled hidden states of the frozen model.

    Parameters
    ----------
    C : float or None
        Inverse L2 strength of the logistic head; None chooses it by stratified cross-validation.
    cv : int
        Folds for choosing C.
    """

    name: ClassVar[str] = "features"
    summary: ClassVar[str] = "nothing in the model; an L2 logistic regression on pooled hidden states"
    training_settings: ClassVar[frozenset[str]] = frozenset({"class_weight"})
    changes_weights: ClassVar[bool] = False

    C: float | None = setting(
        None,
        "Inverse L2 strength of the logistic head (default: chosen by CV).",
        float_in(0.0, optional=True),
        flag="--C",
    )
    cv: int = setting(5, "Folds for choosing C by cross-validation.", int_at_least(2))

    def frozen_blocks(self, num_blocks: int) -> int:
        return num_blocks

    def fit(self, context: FitContext, inputs: list, y: np.ndarray) -> FitResult:
        from ..features.logistic import LogisticHead
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
        started = time.perf_counter()
        with PeakMemory(backbone.device) as memory:
            embedded = predictor.embed(inputs)
            features = embedded.features(context.layers)
            predictor.head = LogisticHead(C=self.C, cv=self.cv, seed=context.seed, class_weight=class_weight).fit(
                features, y
            )
        record = {
            "trainable_parameters": 0,
            "total_parameters": backbone.n_parameters(),
            "peak_memory_bytes": memory.peak_bytes,
            "device": str(backbone.device),
            "state_bytes_per_example": features.nbytes / max(len(inputs), 1),
            "step_seconds": time.perf_counter() - started,  # embedding and the head's fit: both grow with n
            "examples_seen": len(inputs),
            "C": predictor.head.C_,
        }
        return FitResult(predictor, record, embedded.n_truncated, embedded.max_length)
