"""What every strategy shares: its parameters, its validation, its fit entry point.

A strategy is a small parameter object (a dataclass, scikit-learn's get/set_params) that
knows how to fit on a prepared :class:`FitContext` and returns a fitted predictor
(``unfreeze.inference.predictors``). Everything a strategy needs to say about itself lives on its
class: its name, the ``Training`` settings it reads, its default learning rate and epochs,
the parameters a sweep varies. Adding a strategy is one module with one such class and a
``register_strategy`` call (or an entry point in the group ``unfreeze.strategies``).

Importing this module is cheap (no torch): the command line reads the declarations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np

from ..params import Params, check_int

if TYPE_CHECKING:
    from torch import nn

    from ..inference.predictors import NetworkPredictor, Predictor
    from ..models.backbone import Backbone, TextInput
    from ..tasks import Task
    from ..training import TextClassificationModel
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
    # held out by the caller (the learning-rate search scores every rate on it): a strategy
    # that validates uses it instead of splitting its own; None: the strategy splits (or not)
    validation: tuple[list[TextInput], np.ndarray] | None = None
    # the untouched base model in the precision of work without gradients (a shared bf16 copy
    # where the hardware runs bf16 fast): a strategy that trains runs its frozen-prefix pass on
    # it; None: use ``backbone``
    inference_backbone: Backbone | None = None
    # the precisions that ran, "fp32" or "bf16": work without gradients, and training compute
    inference_precision: str = "fp32"
    training_precision: str = "fp32"
    # the fitted task (``unfreeze.tasks``): the head's size (``n_classes`` = its ``n_outputs``), the loss, the
    # scores; None only where nothing trains (a bundle being loaded)
    task: Task | None = None

    @property
    def fitted_task(self) -> Task:
        """The task, fitted on the training labels (a fit always has one)."""
        assert self.task is not None, "a FitContext that fits needs its task"
        return self.task

    @property
    def prefix_backbone(self) -> Backbone:
        """The model a frozen-prefix pass runs on (its bottom blocks are the base model's)."""
        return self.inference_backbone or self.backbone


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
    # learning_rate="auto" tries default_learning_rate times each factor (three rates a
    # factor 3 apart) and keeps the best on the validation split
    learning_rate_factors: ClassVar[tuple[float, ...]] = (1 / 3, 1.0, 3.0)
    # the epoch ceiling while the rate is searched (early stopping on the validation split
    # ends a run sooner); None: default_epochs
    tuned_epochs: ClassVar[int | None] = None
    # False: the strategy never changes the backbone's weights, so fits share one loaded copy
    changes_weights: ClassVar[bool] = True
    # the parameters a sweep's cell names carry (and varies when given lists), with the
    # values a sweep uses when none are given
    sweep_defaults: ClassVar[dict[str, list]] = {}
    # the tasks (``unfreeze.tasks``) this strategy can fit; a head and loss from the task serve all three
    tasks: ClassVar[frozenset[str]] = frozenset({"single", "multilabel", "regression"})
    # True: the strategy tunes a task's decision (multilabel thresholds) itself, on out-of-fold outputs of every
    # training text, and says ``decision_tuned`` in its fit record; the estimator then holds out no validation
    # split for it (features, setfit)
    tunes_decision: ClassVar[bool] = False
    # True: its training steps draw batches of similar lengths (``training.sampling.length_grouped_order``), so a
    # step costs about the padded tokens of such a batch (the advisor scales its timed step by them); False: batches
    # of random lengths (setfit's pairs)
    length_grouped: ClassVar[bool] = True

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

    def kept_blocks(self, num_blocks: int) -> int:
        """Blocks the fitted model has, out of the base model's ``num_blocks`` (layer specs count on it).

        Every block but for a strategy that removes some (``truncate``), which also checks its range here.
        """
        return num_blocks

    @classmethod
    def sweep_defaults_for(cls, num_blocks: int) -> dict[str, list]:
        """``sweep_defaults`` for a model of ``num_blocks`` blocks; a strategy whose sensible sweep values
        depend on the model (truncate's blocks kept) overrides this."""
        return cls.sweep_defaults

    @classmethod
    def advise_defaults_for(cls, num_blocks: int) -> dict[str, list]:
        """The values the advisor compares when its user names none: by default the sweep's; a strategy whose
        parameter decides how much is trained (freeze's k) gives the advisor a spread of them."""
        return cls.sweep_defaults_for(num_blocks)

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

    def learning_rate_grid(self) -> tuple[float, ...]:
        """The rates ``learning_rate="auto"`` tries, ascending; empty for a strategy without a learning rate."""
        if "learning_rate" not in self.training_settings or not self.default_learning_rate:
            return ()
        return tuple(sorted({float(f"{self.default_learning_rate * f:.3g}") for f in self.learning_rate_factors}))

    def epochs_for(self, searched: bool) -> int | None:
        """The default number of epochs: ``tuned_epochs`` when the rate is searched, else ``default_epochs``."""
        return (self.tuned_epochs or self.default_epochs) if searched else self.default_epochs

    def describe(self) -> str:
        """'freeze k=4': the name and the parameters that differ from their defaults."""
        return " ".join([self.name, *(f"{k}={v}" for k, v in self.changed().items())])

    def fit_lines(self, record: dict) -> list[str]:
        """Lines ``unfreeze fit`` prints about what this strategy's fit learned or kept (``record``: its fit
        record); none by default."""
        return []


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


class LoopHooks(NamedTuple):
    """How the shared loop trains a strategy's network (``TunedStrategy.loop_hooks``).

    ``frozen_k``: bottom blocks whose output never changes (cached once, run in eval mode);
    ``lr_scales``: id of a parameter -> factor of the body's learning rate, or None for one rate;
    ``on_epoch``: called with the epoch number as each epoch starts (see ``training.loop.train``).
    """

    frozen_k: int
    lr_scales: dict[int, float] | None = None
    on_epoch: Callable[[int], dict | None] | None = None


def window_keys(encoded: object) -> list[str]:
    """One key per tokenised example (a token task's windows), from its token ids: its states' key in a pool."""
    import hashlib

    return [
        hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).hexdigest()
        for ids in encoded.input_ids  # type: ignore[attr-defined]
    ]


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded hold-out of single-label class indices ``y`` (``SingleLabel.split``); none when too
    small to hold every class twice over. A fit splits by its own task (``Task.split``)."""
    from ..tasks import SingleLabel

    return SingleLabel().split(y, fraction, seed)


def training_split(
    context: FitContext, inputs: list[TextInput], y: np.ndarray
) -> tuple[list[TextInput], np.ndarray, np.ndarray, np.ndarray]:
    """``(inputs, y, train_idx, val_idx)`` a strategy that validates trains on (``y``: the task's targets).

    With ``context.validation`` (held out by the caller, as the learning-rate search does) it
    is appended to the inputs and is the validation set; otherwise ``validation_fraction`` of
    the inputs is split off as the task splits (``Task.split``: stratified by class for single)."""
    if context.validation is not None:
        val_inputs, val_y = context.validation
        everything = [*inputs, *val_inputs]
        return (
            everything,
            # the targets keep their type: class indices, label indicators, scores, or tag ids
            context.fitted_task.join([y, val_y]),
            np.arange(len(y)),
            np.arange(len(y), len(everything)),
        )
    assert context.training is not None
    train_idx, val_idx = context.fitted_task.split(y, context.training.validation_fraction, context.seed)
    return inputs, y, train_idx, val_idx


@dataclass(repr=False)
class TunedStrategy(Strategy):
    """A strategy trained by the one training loop: a prepared body, pooling, and a linear head.

    Subclasses say what is trained (``prepare``), what stays frozen (``frozen_blocks``)
    and what the model must allow (``check_model``); fitting and prediction are shared.
    """

    training_settings: ClassVar[frozenset[str]] = frozenset(
        (
            "epochs",
            "learning_rate",
            "head_learning_rate",
            "weight_decay",
            "warmup_ratio",
            "max_steps",
            "grad_clip",
            "validation_fraction",
            "patience",
            "class_weight",
            "prefix_cache",
            "group_by_length",
        )
    )
    default_learning_rate: ClassVar[float | None] = 5e-5
    default_epochs: ClassVar[int | None] = 3
    # measured (MiniLM, movie-snippets, 400-512 examples): 1.5e-4 beats the default 5e-5 by 5 points for full
    # fine-tuning; the rates that help lie above the default, so the grid starts there
    learning_rate_factors: ClassVar[tuple[float, ...]] = (1.0, 3.0, 9.0)
    tuned_epochs: ClassVar[int | None] = 4
    # the loop trains any task's network (``Task.network``): a tag per token too
    tasks: ClassVar[frozenset[str]] = Strategy.tasks | {"tokens"}

    def fit(self, context: FitContext, inputs: list[TextInput], y: np.ndarray) -> FitResult:
        import torch

        from ..features.embed import input_keys
        from ..training import train

        backbone, config = context.backbone, context.training
        assert config is not None
        frozen_k = self.frozen_blocks(backbone.num_blocks)
        torch.manual_seed(context.seed)  # re-initialised blocks, adapters
        backbone.model = self.prepare_to_fit(context)
        inputs, y, train_idx, val_idx = training_split(context, inputs, y)
        task = context.fitted_task
        # the examples the network trains on: one per input, or (tokens) windows; split by input before
        encoded, targets, rows = task.encode_inputs(backbone, inputs, y, context.max_length)
        assert targets is not None
        if rows is None:
            keys = input_keys(inputs)
        else:  # a window belongs to the side of its input: windows of one sentence never straddle the split
            train_idx, val_idx = (np.flatnonzero(np.isin(rows, part)) for part in (train_idx, val_idx))
            keys = window_keys(encoded)
        y = targets
        torch.manual_seed(context.seed)  # the head's initial weights
        network = task.network(backbone, context.pooling, context.layers)
        val = (encoded.subset(val_idx), y[val_idx]) if len(val_idx) else (None, None)
        # the prefix below k is the base model's, unchanged by prepare: it runs on the shared base model
        # (in the inference precision), and its states are shared under that model's fingerprint
        prefix_backbone = context.prefix_backbone
        prefix_key = (
            prefix_backbone.fingerprint() if context.inference_backbone is not None else context.base_fingerprint
        )
        prefix_pool = ((prefix_key, encoded.max_length), [keys[i] for i in train_idx], [keys[i] for i in val_idx])
        hooks = self.loop_hooks(backbone, config, frozen_k, len(train_idx), context.layers)
        record = train(
            network,
            backbone,
            hooks.frozen_k,
            encoded.subset(train_idx),
            y[train_idx],
            config,
            *val,
            prefix_pool=prefix_pool,
            lr_scales=hooks.lr_scales,
            on_epoch=hooks.on_epoch,
            prefix_backbone=context.inference_backbone,
            task=context.fitted_task,
        )
        predictor = self.make_predictor(context, network, hooks.frozen_k, prefix_key)
        return FitResult(
            predictor, {**record.as_dict(), **self.fit_facts(backbone)}, encoded.n_truncated, encoded.max_length
        )

    def prepare_to_fit(self, context: FitContext) -> nn.Module:
        """``prepare`` at fit time; a strategy that needs the fit's context (its seed) overrides this."""
        return self.prepare(context.backbone)

    def make_predictor(
        self, context: FitContext, network: TextClassificationModel, frozen_k: int, prefix_key: str
    ) -> NetworkPredictor:
        """The fitted predictor: the trained network over the prepared body."""
        from ..inference.predictors import NetworkPredictor

        assert context.training is not None
        return NetworkPredictor(
            context.backbone,
            network,
            frozen_k,
            prefix_key,
            context.max_length,
            context.batch_size,
            prefix_cache=context.training.prefix_cache,
            prefix_backbone=context.inference_backbone,
            precision=context.inference_precision,
        )

    def fit_facts(self, backbone: Backbone) -> dict:
        """What the fit record adds about the trained model (none by default)."""
        return {}

    def loop_hooks(
        self, backbone: Backbone, config: TrainConfig, frozen_k: int, n_train: int, layers: Sequence[int]
    ) -> LoopHooks:
        """How the loop trains the prepared body: ``frozen_k`` (``frozen_blocks``) cached, layer-wise
        learning-rate decay when ``config.layer_decay`` is below 1, no per-epoch callback.

        Called after ``prepare``, with the number of training examples (after the validation split).
        """
        if config.layer_decay == 1.0:
            return LoopHooks(frozen_k)
        from ..training.loop import layer_lr_scales

        return LoopHooks(frozen_k, layer_lr_scales(backbone, config.layer_decay))


# the settings of a tuned strategy that trains whole blocks, layer-wise decay included
# (freeze, full, reinit, truncate; LoRA's adapters and SetFit do not read it)
LAYER_DECAY_SETTINGS: frozenset[str] = TunedStrategy.training_settings | {"layer_decay"}


def replace(strategy: Strategy, **changes: object) -> Strategy:
    """A copy of ``strategy`` with some parameters changed (the original is left alone)."""
    return dataclasses.replace(strategy, **changes)


__all__ = [
    "LAYER_DECAY_SETTINGS",
    "FitContext",
    "FitResult",
    "LoopHooks",
    "Strategy",
    "TunedStrategy",
    "check_int",
    "freeze_bottom",
    "replace",
    "training_split",
    "validation_split",
]
