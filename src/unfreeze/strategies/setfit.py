"""``setfit``: contrastive tuning of the body on sentence pairs, then a logistic head.

Tunstall et al. 2022 (SetFit). For ``num_iterations`` rounds, every example is paired
with one random example of its class (target similarity 1) and one of another class
(target 0); the body learns with a cosine-similarity loss (``training.contrastive``). Pairs
are drawn lazily, batch by batch: memory is O(batch), never O(n^2).

Multi-label, as the setfit library's ``multi_target_strategy="one-vs-rest"``: two texts
that share a label are a positive pair, two that share none a negative one, and the head
is one logistic regression per label (``features.ovr.OneVsRestHead``, the features
strategy's). A regression has no classes to pair by: setfit does not fit one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..params import check_int, float_in, int_at_least, setting
from .base import FitContext, FitResult, Strategy, freeze_bottom

if TYPE_CHECKING:
    from torch import nn

    from ..models.backbone import Backbone


@dataclass(repr=False)
class SetFit(Strategy):
    """Contrastive tuning of the body above ``k`` on pairs, then a logistic head on its embeddings.

    Parameters
    ----------
    num_iterations : int
        Pair rounds per example (each round: one positive and one negative pair per example).
    k : int or None
        Bottom blocks frozen during contrastive tuning, in [0, L - 1]; None means 0.
    C : float or None
        Inverse L2 strength of the logistic head; None chooses it by cross-validation.
    cv : int
        Folds for choosing C.
    """

    name: ClassVar[str] = "setfit"
    summary: ClassVar[str] = "the body, contrastively on sentence pairs, then a logistic-regression head"
    # pairs need classes (or labels) to agree on
    tasks: ClassVar[frozenset[str]] = frozenset({"single", "multilabel"})
    # multilabel thresholds are tuned on the head's out-of-fold scores (no validation split is held out)
    tunes_decision: ClassVar[bool] = True
    length_grouped: ClassVar[bool] = False  # random pairs of texts
    # no linear head, no validation split: the logistic head picks C by cross-validation
    training_settings: ClassVar[frozenset[str]] = frozenset(
        (
            "epochs",
            "learning_rate",
            "weight_decay",
            "warmup_ratio",
            "max_steps",
            "grad_clip",
            "class_weight",
            "prefix_cache",
        )
    )
    default_learning_rate: ClassVar[float | None] = 2e-5  # SetFit's body rate
    default_epochs: ClassVar[int | None] = 1
    sweep_defaults: ClassVar[dict[str, list]] = {"num_iterations": [20]}

    num_iterations: int = setting(20, "Pair rounds per example.", int_at_least(1))
    k: int | None = setting(None, "Bottom blocks frozen during contrastive tuning (default 0).", int_at_least(0, True))
    C: float | None = setting(
        None,
        "Inverse L2 strength of the logistic head (default: chosen by CV).",
        float_in(0.0, optional=True),
        flag="--C",
    )
    cv: int = setting(5, "Folds for choosing C by cross-validation.", int_at_least(2))

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
        check_int(self.k or 0, "k", self.name, 0, backbone.num_blocks - 1, " for this model (k = L tunes nothing)")

    def frozen_blocks(self, num_blocks: int) -> int:
        return self.k or 0

    def prepare(self, backbone: Backbone) -> nn.Module:
        freeze_bottom(backbone, self.k or 0)
        return backbone.model

    def fit(self, context: FitContext, inputs: list, y: np.ndarray) -> FitResult:
        import torch

        from ..inference.predictors import EmbeddingHead
        from ..training import TextClassificationModel
        from ..training.contrastive import train_contrastive
        from .features import task_head, tune_out_of_fold

        backbone, config = context.backbone, context.training
        assert config is not None
        torch.manual_seed(context.seed)
        backbone.model = self.prepare(backbone)
        encoded = backbone.encode(inputs, context.max_length)
        torch.manual_seed(context.seed)
        # the network supplies pooling over the chosen layers; its linear head is not used
        network = TextClassificationModel(backbone, context.n_classes, context.pooling, context.layers)
        record = train_contrastive(
            network,
            backbone,
            self.frozen_blocks(backbone.num_blocks),
            encoded,
            y,
            self.num_iterations,
            config,
            prefix_backbone=context.inference_backbone,
        )
        backbone.model.eval()
        # a tuned body is embedded afresh (the embedding cache is for the base model's weights), in the
        # precision of work without gradients: a bf16 copy of it where that is fast
        predictor = EmbeddingHead(
            backbone,
            context.pooling,
            context.layers,
            context.max_length,
            context.batch_size,
            head=None,
            use_cache=False,
            progress=context.progress,
            tuned=True,
            precision=context.inference_precision,
        )
        features = predictor.embed(inputs).features(context.layers)
        # the out-of-fold scores come from a body tuned on every training text, the held-out ones included:
        # somewhat confident, but thresholds chosen on them beat the untuned 0.5 (the setfit library's)
        head = task_head(context, self.C, None, self.cv, config.class_weight, self.name)
        predictor.head = head.fit(features, y)
        return FitResult(
            predictor,
            {**record.as_dict(), **head.record(), **tune_out_of_fold(context, head, y)},
            encoded.n_truncated,
            encoded.max_length,
        )
