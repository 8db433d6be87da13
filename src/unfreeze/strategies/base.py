"""What every strategy shares: its parameters, its validation, its fit entry point.

A strategy is a small parameter object (a dataclass, scikit-learn's get/set_params) that
knows how to fit on a prepared :class:`FitContext` and returns a fitted predictor
(``unfreeze.predictors``). Everything a strategy needs to say about itself lives on its
class: its name, the ``Training`` settings it reads, its default learning rate and epochs,
the parameters a sweep varies. Adding a strategy is one module with one such class and a
``register_strategy`` call (or an entry point in the group ``unfreeze.strategies``).

Importing this module is cheap (no torch): the command line reads the declarations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..params import Params, check_int

if TYPE_CHECKING:
    from torch import nn

    from ..models.backbone import Backbone, TextInput
    from ..predictors import Predictor
    from ..training.loop import TrainConfig


@dataclass
class FitContext:
    """Everything a strategy's fit needs besides its own parameters, resolved and validated.

    ``backbone`` is the shared, never-modified model for strategies that do not change
    weights (``changes_weights = False``), and a private copy otherwise.
    """

    backbone: Backbone
    base_fingerprint: str
    pooling: str
    layers: tuple[int, ...]
    max_length: int
    batch_size: int
    seed: int
    cache: bool
    progress: bool
    n_classes: int
    training: TrainConfig | None = None  # resolved with the strategy's defaults; None for strategies that do not train


@dataclass
class FitResult:
    """What a strategy's fit produced: the fitted predictor and the numbers a result row needs."""

    predictor: Predictor
    record: dict
    n_truncated: int = 0
    max_length: int = 0


@dataclass(repr=False)
class Strategy(Params):
    """Base class of every strategy. Subclasses are dataclasses whose fields are their parameters."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line: what is trained (CLI help, `unfreeze strategies`)
    # the Training settings this strategy reads; setting any other one is an error
    training_settings: ClassVar[frozenset[str]] = frozenset()
    default_learning_rate: ClassVar[float | None] = None
    default_epochs: ClassVar[int | None] = None
    # False: the strategy never changes the backbone's weights, so fits share one loaded copy
    changes_weights: ClassVar[bool] = True
    # the parameters a sweep's cell names carry (and varies when given lists), with the
    # values a sweep uses when none are given
    sweep_defaults: ClassVar[dict[str, list]] = {}

    @property
    def owner_name(self) -> str:  # type: ignore[override]
        return self.name

    # -- validation ------------------------------------------------------------------------

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
        """Validate what depends on the model (ranges that name L); ``check`` has run before.

        (Pooled layers below the frozen blocks of a strategy that trains are refused by the
        Classifier for every strategy.)"""

    def frozen_blocks(self, num_blocks: int) -> int:
        """Blocks at the bottom whose output never changes during training (the prefix cache's k)."""
        return 0

    def pooled_layers(self, num_blocks: int, layers: Sequence[int]) -> tuple[int, ...]:
        """The untouched model's pooled hidden states this strategy reads, given the Classifier's ``layers``.

        Only meaningful with ``changes_weights = False``: a sweep's shared embedding pass
        computes the union of them once. Default: ``layers``; ``mix`` reads its own set,
        ``bilstm`` none (it reads token states)."""
        return tuple(layers)

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, context: FitContext, inputs: list[TextInput], y: np.ndarray) -> FitResult:
        raise NotImplementedError

    def prepare(self, backbone: Backbone) -> nn.Module:
        """Freeze / re-initialise / adapt the body in place; returns the body module to train.

        Also called when a bundle is loaded, to rebuild the structure (PEFT adapters) that
        the saved tensors go into.
        """
        return backbone.model

    def describe(self) -> str:
        """'freeze k=4': the name and the parameters that differ from their defaults."""
        return " ".join([self.name, *(f"{k}={v}" for k, v in self.changed().items())])


def freeze_bottom(backbone: Backbone, k: int) -> None:
    """Freeze the embedding side, the bottom k blocks and the pooler; train the rest.

    With k = L only the head trains (the final norm freezes too). k = 0 trains everything
    but the pooler, which the head does not read.
    """
    embedding_side, blocks, final, _pooler = backbone.parameter_groups()  # the pooler stays frozen: unused
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    trained = [p for block in blocks[k:] for p in block]
    if k == 0:
        trained += embedding_side
    if k < len(blocks):
        trained += final
    for p in trained:
        p.requires_grad_(True)


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded hold-out; none when too small to hold every class twice over."""
    everything = np.arange(len(y))
    counts = np.bincount(y)
    n_val = int(round(fraction * len(y)))
    if fraction == 0 or n_val < len(counts) or counts.min() < 4:
        return everything, everything[:0]
    rng = np.random.default_rng(seed)
    val = []
    for c in range(len(counts)):
        members = rng.permutation(np.flatnonzero(y == c))
        val.extend(members[: max(1, int(round(len(members) * fraction)))].tolist())
    val_set = set(val)
    return np.array([i for i in everything if i not in val_set]), np.array(sorted(val))


@dataclass(repr=False)
class TunedStrategy(Strategy):
    """A strategy trained by the one training loop: a prepared body, pooling, and a linear head.

    Subclasses say what is trained (``prepare``), what stays frozen (``frozen_blocks``)
    and what the model must allow (``check_model``); fitting and prediction are shared.
    """

    training_settings: ClassVar[frozenset[str]] = frozenset(
        ("epochs", "learning_rate", "head_learning_rate", "weight_decay", "warmup_ratio", "max_steps", "grad_clip",
         "validation_fraction", "patience", "class_weight", "prefix_cache"))
    default_learning_rate: ClassVar[float | None] = 5e-5
    default_epochs: ClassVar[int | None] = 3

    def fit(self, context: FitContext, inputs: list[TextInput], y: np.ndarray) -> FitResult:
        import torch

        from ..embed import input_keys
        from ..predictors import NetworkPredictor
        from ..training import TextClassificationModel, train

        backbone, config = context.backbone, context.training
        assert config is not None
        frozen_k = self.frozen_blocks(backbone.num_blocks)
        torch.manual_seed(context.seed)  # re-initialised blocks, adapters
        backbone.model = self.prepare(backbone)
        encoded = backbone.encode(inputs, context.max_length)
        torch.manual_seed(context.seed)  # the head's initial weights
        network = TextClassificationModel(backbone, context.n_classes, context.pooling, context.layers)
        train_idx, val_idx = validation_split(y, config.validation_fraction, context.seed)
        val = (encoded.subset(val_idx), y[val_idx]) if len(val_idx) else (None, None)
        keys = input_keys(inputs)
        # the prefix below k is the base model's, unchanged by prepare: its states are shared
        prefix_pool = ((context.base_fingerprint, encoded.max_length), [keys[i] for i in train_idx],
                       [keys[i] for i in val_idx])
        record = train(network, backbone, frozen_k, encoded.subset(train_idx), y[train_idx], config, *val,
                       prefix_pool=prefix_pool)
        predictor = NetworkPredictor(backbone, network, frozen_k, context.base_fingerprint, context.max_length,
                                     context.batch_size, prefix_cache=config.prefix_cache)
        return FitResult(predictor, record.as_dict(), encoded.n_truncated, encoded.max_length)


def replace(strategy: Strategy, **changes: object) -> Strategy:
    """A copy of ``strategy`` with some parameters changed (the original is left alone)."""
    return dataclasses.replace(strategy, **changes)  # type: ignore[type-var]


__all__ = ["FitContext", "FitResult", "Strategy", "TunedStrategy", "check_int", "freeze_bottom", "replace",
           "validation_split"]
