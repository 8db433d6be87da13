"""The one training loop, shared by freeze, full, reinit and LoRA, and its skeleton, which SetFit shares.

AdamW (bias-corrected) with linear warm-up and decay, gradient clipping, batches
grouped by length (unless ``group_by_length`` is off), validation each epoch with early stopping and the best weights
restored. With k >= 1 frozen blocks the frozen prefix runs once, before the first
epoch (see prefix.py). Under ``accelerate launch`` / ``torchrun`` the same loop trains
data-parallel (see distributed.py); in one process that code is never reached.

:class:`TrainingRun` is the part every loop needs: the step budget (``max_steps`` wins
over ``epochs``), the optimiser with its no-decay rule, the schedule, clipping, the
progress bar and the record. ``train`` (classification) and SetFit's contrastive tuning
each feed it batches and a loss. The optimiser's groups and step live in optim.py, the
batch order and class weights in sampling.py, the record in record.py; their names are
importable from here too, and this module calls ``optimizer_step`` and
``batch_order`` through its own names, so that patching ``loop.optimizer_step``
(a slow step, a spy) reaches every loop built on :class:`TrainingRun`.

Two hooks let a strategy shape training without a loop of its own: ``lr_scales`` (a
learning rate per parameter: layer-wise decay, discriminative rates) and ``on_epoch``
(called as each epoch starts: gradual unfreezing switches ``requires_grad`` there).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import TrainingDivergedError, UnfreezeError
from ..machine.deadline import check_deadline
from ..models.backbone import Backbone, Encoded
from . import distributed
from .epochs import EarlyStopping, classes_task, run_epochs
from .forward import autocast, forward_rows, predict_logits, set_train_mode
from .memory import PeakMemory
from .model import TextClassificationModel
from .optim import layer_lr_scales, optimizer_step, param_groups, planned_epochs
from .prefix import PrefixStates, compute_prefix_states
from .record import TrainRecord
from .sampling import batch_order, class_weights, length_grouped_order
from .settings import Training

if TYPE_CHECKING:
    from ..tasks import Task


@dataclass(repr=False)
class TrainConfig(Training):
    """``Training`` resolved for one fit: the strategy's defaults filled in, plus the classifier's
    batch size, seed and progress flag, and the precision the trained blocks compute in
    ("bf16": under bf16 autocast, weights and optimiser state in fp32; CUDA always)."""

    batch_size: int = 32
    seed: int = 0
    progress: bool = True
    compute: str = "fp32"


class TrainingRun:
    """The skeleton of a training loop: budget, optimiser, schedule, clipping, progress bar, record.

    ``examples_per_epoch`` / ``batch_size`` steps make an epoch; ``max_steps``, when set,
    wins over ``epochs``. A loop calls ``start_epoch()``, then ``step(loss, ...)`` per batch
    (backward, clipping, the optimiser and the schedule) until ``budget_spent``, then
    ``end_steps()`` (the epoch's training steps are done: what follows, validation, is timed
    apart) and ``end_epoch(epoch)``; ``close()`` at the end.
    """

    def __init__(
        self,
        config: TrainConfig,
        groups: list[dict],
        examples_per_epoch: int,
        device: torch.device,
        desc: str,
        show: bool = True,
    ) -> None:
        from transformers import get_linear_schedule_with_warmup

        if config.epochs is None or config.learning_rate is None:
            raise ValueError("TrainConfig.epochs and learning_rate must be resolved before training")
        self.config = config
        self.trainable = [p for group in groups for p in group["params"]]
        self.steps_per_epoch = max(1, math.ceil(examples_per_epoch / config.batch_size))
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.n_epochs = planned_epochs(config, examples_per_epoch)
        self.optimizer = torch.optim.AdamW(groups)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(config.warmup_ratio * self.total_steps), self.total_steps
        )
        self.record = TrainRecord(device=str(device))
        self.record.trainable_parameters = sum(p.numel() for p in self.trainable)
        self.bar = tqdm(
            total=self.total_steps, desc=desc, unit="step", disable=not (config.progress and show) or None, leave=False
        )
        self.epoch_loss = 0.0
        self.epoch_batches = 0
        self._epoch_started = 0.0

    @property
    def budget_spent(self) -> bool:
        return self.record.steps >= self.total_steps

    def start_epoch(self) -> None:
        self.epoch_loss, self.epoch_batches, self._epoch_started = 0.0, 0, time.perf_counter()

    def end_steps(self) -> None:
        self.record.step_seconds += time.perf_counter() - self._epoch_started

    def end_epoch(self, epoch: int) -> None:
        self.record.epochs_run = epoch
        self.record.epoch_seconds.append(time.perf_counter() - self._epoch_started)

    def close(self) -> None:
        self.bar.close()

    def step(
        self,
        loss: torch.Tensor,
        examples: int,
        tokens: int,
        backward=None,
        loss_value: float | None = None,
        epoch: int = 0,
    ) -> None:
        """One optimiser step on ``loss``; ``backward`` replaces ``loss.backward`` (Accelerate's, under DDP)."""
        value = loss.item() if loss_value is None else loss_value
        if not math.isfinite(value):
            # every later step would only spread NaN into the weights: a bundle predicting one class
            rate = self.config.learning_rate  # resolved to one number before training
            raise TrainingDivergedError(value, epoch, float(rate) if isinstance(rate, (int, float)) else None)
        optimizer_step(loss, self.trainable, self.optimizer, self.scheduler, self.config.grad_clip, backward)
        self.record.steps += 1
        self.record.examples_seen += examples
        self.record.tokens_seen += tokens
        self.epoch_loss += value
        self.epoch_batches += 1
        self.bar.update(1)
        self.bar.set_postfix(epoch=epoch, loss=f"{self.epoch_loss / self.epoch_batches:.4f}")
        check_deadline()  # the advisor's budget (no deadline outside it)

    @property
    def mean_epoch_loss(self) -> float:
        return self.epoch_loss / max(self.epoch_batches, 1)


def cached_prefixes(
    backbone: Backbone,
    frozen_k: int,
    encodings: list[Encoded | None],
    pool_key=None,
    keys: list[list[str] | None] | None = None,
) -> list[PrefixStates | None]:
    """The frozen prefix of each encoding (None for None), from the shared pool when one is active."""
    keys = keys or [None] * len(encodings)
    return [
        None
        if encoded is None
        else compute_prefix_states(backbone, encoded, [frozen_k], pool_key=pool_key, keys=key)[frozen_k]
        for encoded, key in zip(encodings, keys)
    ]


def train(
    model: TextClassificationModel,
    backbone: Backbone,
    frozen_k: int,
    train_encoded: Encoded,
    y_train: np.ndarray,
    config: TrainConfig,
    val_encoded: Encoded | None = None,
    y_val: np.ndarray | None = None,
    prefix_pool: tuple[tuple[str, int], list[str], list[str] | None] | None = None,
    lr_scales: dict[int, float] | None = None,
    on_epoch: Callable[[int], dict | None] | None = None,
    prefix_backbone: Backbone | None = None,
    task: Task | None = None,
) -> TrainRecord:
    """Train ``model`` in place; returns the record. The best validation epoch's weights are kept.

    ``task`` (``unfreeze.tasks``, fitted) gives the loss, its weights and the validation scores;
    ``y_train`` / ``y_val`` are its targets. None: single-label classes 0..K-1 (K: the head's outputs).

    ``prefix_pool`` = (pool key, keys of the training inputs, keys of the validation inputs)
    lets a sweep share prefix states across fits (see prefix.shared_prefix_states).
    ``prefix_backbone`` runs the frozen-prefix pass (the untouched base model, in bf16 where
    that is fast; its states are cast to fp32 at the boundary); default ``backbone``.
    ``lr_scales`` gives parameters their own learning rates (see ``param_groups``).
    ``on_epoch(epoch)`` runs at the start of every epoch (1, 2, ...) and may switch
    ``requires_grad`` of parameters the optimiser holds (those that require gradients when
    training starts): a parameter without a gradient is left untouched by AdamW, weight
    decay included. What it returns joins the epoch's history entry (gradual unfreezing).
    At the end every parameter the optimiser held requires gradients again.
    """
    device = backbone.device
    model.to(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    acc = distributed.accelerator(device)  # None in one process: the plain loop below, unchanged
    if acc is not None and on_epoch is not None:
        # DDP fixes the set of parameters it reduces when it wraps the model
        raise UnfreezeError(
            "A training schedule that unfreezes parameters per epoch (gradual) cannot run "
            "data-parallel. Run it in one process."
        )
    task = task if task is not None else classes_task(model.head.out_features)
    start = time.perf_counter()
    with PeakMemory(device) as memory:
        train_prefix, val_prefix, prefix_seconds = _frozen_prefixes(
            prefix_backbone or backbone, frozen_k, config, train_encoded, val_encoded, prefix_pool, start
        )
        run = _start_run(model, config, lr_scales, len(train_encoded), device, train_prefix, prefix_seconds, acc)
        optimised = {id(p) for p in run.trainable}
        stopping = EarlyStopping(
            [(name, p) for name, p in model.named_parameters() if id(p) in optimised],
            config.patience,
            run.record,
            task,
        )
        epoch = _Epoch(run, model, backbone, frozen_k, train_encoded, y_train, train_prefix, rng, acc, on_epoch, task)
        validate = None
        if val_encoded is not None and y_val is not None:
            validate = functools.partial(_validate, run, stopping, model, backbone, val_encoded, y_val, val_prefix)
        try:
            run_epochs(run, stopping, epoch, validate)
        finally:
            run.close()
            if acc is not None:
                acc.free_memory()  # drop the DDP wrapper: its gradient hooks must not outlive this fit
            if on_epoch is not None:
                for param in run.trainable:
                    param.requires_grad_(True)  # everything that trained: what a bundle stores
        stopping.restore(model)
        model.eval()
    run.record.seconds = time.perf_counter() - start
    run.record.peak_memory_bytes = memory.peak_bytes
    return run.record


def _frozen_prefixes(
    backbone: Backbone,
    frozen_k: int,
    config: TrainConfig,
    train_encoded: Encoded,
    val_encoded: Encoded | None,
    prefix_pool: tuple[tuple[str, int], list[str], list[str] | None] | None,
    start: float,
) -> tuple[PrefixStates | None, PrefixStates | None, float]:
    """The frozen prefix of the training and the validation inputs (from the sweep's pool when one is given),
    and the seconds since ``start`` they took; (None, None, 0.0) when the prefix is not cached."""
    if not (config.prefix_cache and frozen_k >= 1):
        return None, None, 0.0
    pool_key, train_keys, val_keys = prefix_pool or (None, None, None)
    train_prefix, val_prefix = cached_prefixes(
        backbone, frozen_k, [train_encoded, val_encoded], pool_key, [train_keys, val_keys]
    )
    return train_prefix, val_prefix, time.perf_counter() - start


def _start_run(
    model: TextClassificationModel,
    config: TrainConfig,
    lr_scales: dict[int, float] | None,
    examples: int,
    device: torch.device,
    train_prefix: PrefixStates | None,
    prefix_seconds: float,
    acc,
) -> TrainingRun:
    """The skeleton of one ``train`` call, its record started with what is known before the first step."""
    groups = param_groups(list(model.named_parameters()), config, list(model.head.parameters()), lr_scales)
    run = TrainingRun(config, groups, examples, device, "training", show=distributed.is_main_process())
    record = run.record
    record.prefix_seconds = record.step_seconds = prefix_seconds
    if train_prefix is not None and len(train_prefix):
        record.state_bytes_per_example = train_prefix.nbytes / len(train_prefix)
    record.total_parameters = sum(p.numel() for p in model.parameters())
    record.world_size = acc.num_processes if acc is not None else 1
    return run


class _Epoch:
    """One epoch of ``train``'s steps over the training set: ``epoch(n)`` runs them and returns the history entry."""

    def __init__(
        self,
        run: TrainingRun,
        model: TextClassificationModel,
        backbone: Backbone,
        frozen_k: int,
        encoded: Encoded,
        y: np.ndarray,
        prefix: PrefixStates | None,
        rng: np.random.Generator,
        acc,
        on_epoch: Callable[[int], dict | None] | None,
        task: Task,
    ) -> None:
        self.run, self.model, self.backbone, self.frozen_k = run, model, backbone, frozen_k
        self.encoded, self.prefix, self.rng, self.acc, self.on_epoch = encoded, prefix, rng, acc, on_epoch
        self.lengths = encoded.lengths
        # DDP wraps the model for the training forward; the optimiser and schedule are not
        # prepared: every rank draws the same global batches and steps once per batch, as on one device
        self.forward = model if acc is None else acc.prepare_model(model)
        # the task's loss (single: cross-entropy; multilabel: binary cross-entropy; regression: squared error)
        self.task = task
        self.weight = task.loss_weight(y, run.config.class_weight, backbone.device)
        self.labels = task.target_tensor(y)

    def __call__(self, epoch: int) -> dict:
        run, config, device, lengths, acc = self.run, self.run.config, self.backbone.device, self.lengths, self.acc
        extra = self.on_epoch(epoch) if self.on_epoch is not None else None
        set_train_mode(self.model, self.backbone, self.frozen_k)
        seen = np.zeros(len(self.encoded))  # how often each example was trained on, this epoch
        # None (a TrainConfig built without a task's choice) groups, as the default tasks do
        for idx in batch_order(lengths, config.batch_size, self.rng, config.group_by_length is not False):
            if run.budget_spent:
                break
            tokens = sum(lengths[i] for i in idx)
            if acc is None:
                logits = forward_rows(
                    self.model,
                    self.backbone.collate(self.encoded, idx),
                    self.prefix,
                    idx,
                    device,
                    bf16=config.compute == "bf16",
                )
                loss = self.task.batch_loss(logits, self.labels[idx].to(device), self.weight)
                run.step(loss, len(idx), tokens, epoch=epoch)
                seen[idx] += 1
            else:
                _data_parallel_step(
                    run,
                    self.forward,
                    acc,
                    self.backbone,
                    self.encoded,
                    idx,
                    self.labels,
                    self.task,
                    self.weight,
                    self.prefix,
                    device,
                    seen,
                    tokens,
                    epoch,
                )
        run.end_steps()
        epoch_loss = run.mean_epoch_loss
        if acc is not None:
            # each rank's share of the loss and of the examples, summed: the whole batch's
            epoch_loss = float(distributed.sum_across(np.array([epoch_loss]), acc)[0])
            seen = distributed.sum_across(seen, acc)
        return {
            "epoch": epoch,
            "train_loss": epoch_loss,
            "examples": int(seen.sum()),
            "distinct_examples": int((seen > 0).sum()),
            **(extra or {}),
        }


def _validate(
    run: TrainingRun,
    stopping: EarlyStopping,
    model: TextClassificationModel,
    backbone: Backbone,
    encoded: Encoded,
    y: np.ndarray,
    prefix: PrefixStates | None,
    epoch: int,
) -> dict:
    """Score the validation set after epoch ``epoch``, timed apart from the steps."""
    started = time.perf_counter()
    logits = predict_logits(
        model,
        backbone,
        encoded,
        run.config.batch_size * 2,
        prefix,
        bf16=run.config.compute == "bf16" and backbone.device.type == "cuda",
    )
    fields = stopping.validate(epoch, logits, y)
    run.record.validation_seconds += time.perf_counter() - started
    run.record.validation_texts += len(y)
    return fields


def _data_parallel_step(
    run: TrainingRun,
    forward: nn.Module,
    acc,
    backbone: Backbone,
    encoded: Encoded,
    idx: list[int],
    labels: torch.Tensor,
    task: Task,
    weight: torch.Tensor | None,
    train_prefix: PrefixStates | None,
    device: torch.device,
    seen: np.ndarray,
    tokens: int,
    epoch: int,
) -> None:
    """One optimiser step on global batch ``idx``, this rank computing its share.

    The loss is this rank's summed (weighted) loss over the whole batch's count (or weight),
    times the number of ranks: DDP averages gradients over ranks, so the step's gradient is
    the batch-mean gradient that one process would take, whatever the split.
    """
    mine, stand_in = distributed.shard(idx, acc)
    logits = forward_rows(
        forward, backbone.collate(encoded, mine), train_prefix, mine, device, bf16=run.config.compute == "bf16"
    )
    per_example = task.loss(logits, labels[mine].to(device), weight)
    total = task.loss_total(labels[idx].to(device), weight)
    share = per_example.sum() / total * (0.0 if stand_in else 1.0)
    run.step(share * acc.num_processes, len(idx), tokens, backward=acc.backward, loss_value=share.item(), epoch=epoch)
    if not stand_in:
        seen[mine] += 1


__all__ = [
    "TrainConfig",
    "TrainRecord",
    "TrainingRun",
    "autocast",
    "batch_order",
    "cached_prefixes",
    "class_weights",
    "forward_rows",
    "layer_lr_scales",
    "length_grouped_order",
    "optimizer_step",
    "param_groups",
    "planned_epochs",
    "predict_logits",
    "set_train_mode",
    "train",
]
