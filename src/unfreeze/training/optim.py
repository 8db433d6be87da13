"""The optimiser side of a fit: AdamW's parameter groups, learning rates per layer, the step budget, one step.

``param_groups`` follows timm's ``param_groups_layer_decay``: no weight decay on biases and
norm weights, a new head at its own rate, and (with ``lr_scales``) a pair of groups per
rate. ``loop.TrainingRun`` owns the optimiser and schedule these feed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # loop.py imports this module
    from ..models.backbone import Backbone
    from .loop import TrainConfig


def param_groups(
    named: list[tuple[str, nn.Parameter]],
    config: TrainConfig,
    head: Sequence[nn.Parameter] = (),
    lr_scales: dict[int, float] | None = None,
) -> list[dict]:
    """AdamW groups: no weight decay on biases and norm weights; a new head gets its own rate.

    ``lr_scales`` (id of a parameter -> factor of the body's learning rate; missing: 1)
    gives each rate its own pair of groups: layer-wise decay and discriminative rates
    (timm's ``param_groups_layer_decay``). Without it: one decay and one no-decay group.
    """
    head_ids = {id(p) for p in head}
    by_scale: dict[float, tuple[list[nn.Parameter], list[nn.Parameter]]] = {}
    for name, param in named:
        if not param.requires_grad or id(param) in head_ids:
            continue
        decay, no_decay = by_scale.setdefault(1.0 if lr_scales is None else lr_scales.get(id(param), 1.0), ([], []))
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = []
    for scale, (decay, no_decay) in by_scale.items():
        if scale == 1.0:
            lr = config.learning_rate
        elif isinstance(config.learning_rate, (int, float)):
            lr = config.learning_rate * scale
        else:
            raise ValueError("TrainConfig.learning_rate must be resolved to one rate before scaling it per layer")
        groups += [
            {"params": decay, "weight_decay": config.weight_decay, "lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr},
        ]
    groups.append({"params": list(head), "weight_decay": config.weight_decay, "lr": config.head_learning_rate})
    return [g for g in groups if g["params"]]


def layer_lr_scales(backbone: Backbone, decay: float) -> dict[int, float]:
    """Layer-wise learning-rate decay: block i from the top trains at ``decay ** i`` times the body's rate,
    the embedding side at ``decay ** L`` (the lowest), what runs after the last block at 1."""
    embedding_side, blocks, final, pooler = backbone.parameter_groups()
    top = len(blocks) - 1
    scales = {id(p): decay ** (top - i) for i, block in enumerate(blocks) for p in block}
    scales.update({id(p): decay ** len(blocks) for p in embedding_side})
    scales.update({id(p): 1.0 for p in final + pooler})
    return scales


def planned_epochs(config: TrainConfig, examples_per_epoch: int) -> int:
    """Epochs the budget runs (``max_steps``, when set, wins over ``epochs``), early stopping aside."""
    steps_per_epoch = max(1, math.ceil(examples_per_epoch / config.batch_size))
    steps = config.max_steps
    if not steps:
        if config.epochs is None:
            raise ValueError("TrainConfig.epochs must be resolved when max_steps is not set")
        steps = config.epochs * steps_per_epoch
    return math.ceil(steps / steps_per_epoch)


def optimizer_step(
    loss: torch.Tensor,
    trainable: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler,
    grad_clip: float,
    backward=None,
) -> None:
    """Backward, clip the gradient norm, step the optimiser and the schedule, clear the gradients."""
    if backward is None:
        loss.backward()
    else:
        backward(loss)  # Accelerate's: DDP all-reduces the gradients during it
    if grad_clip:
        nn.utils.clip_grad_norm_(trainable, grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
