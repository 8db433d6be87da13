"""The forward passes a training loop runs: train mode for what trains, bf16 autocast, logits in batches.

A model's forward reads the frozen prefix's cached states when given (see prefix.py); data-parallel
(after a launched training), prediction splits the examples over the ranks and gathers them.
"""

from __future__ import annotations

import contextlib
from typing import cast

import numpy as np
import torch
from torch import nn

from ..models.backbone import Backbone, Encoded
from . import distributed
from .model import TextClassificationModel
from .prefix import PrefixStates


def autocast(device: torch.device, bf16: bool = False):
    """bf16 autocast for a forward when asked (``compute="bf16"``: hardware with fast bf16, see
    ``unfreeze.machine.hardware``; same range as fp32, no loss scaling), else fp32."""
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def forward_rows(
    model: nn.Module,
    batch: dict,
    prefix: PrefixStates | None,
    rows: list[int],
    device: torch.device,
    pooled: bool = False,
    bf16: bool = False,
) -> torch.Tensor:
    """The logits (or pooled features) of ``batch``, the examples ``rows``; from the cached prefix when given."""
    with autocast(device, bf16):
        # pooled features come from the classification model itself (never a data-parallel wrapper)
        run = cast(TextClassificationModel, model).pooled if pooled else model
        return run(batch) if prefix is None else run(batch, prefix.batch(rows, device))


def set_train_mode(model: TextClassificationModel, backbone: Backbone, frozen_k: int) -> None:
    """Train mode for what is trained; eval mode (no dropout) for the frozen prefix.

    The frozen part runs in eval mode with or without the prefix cache, so that the
    cache is exact rather than an approximation of a dropout-noised prefix.
    """
    model.train()
    if frozen_k == 0:
        return
    trained = {id(m) for block in list(backbone.blocks)[frozen_k:] for m in block.modules()}
    trained |= {id(m) for post in backbone.post_modules().values() for m in post.modules()}
    trained |= {id(m) for m in (model, model.head, model.dropout)}
    for module in model.modules():
        if id(module) not in trained:
            module.training = False  # not .eval(): that would recurse into trained blocks


def predict_logits(
    model: TextClassificationModel,
    backbone: Backbone,
    encoded: Encoded,
    batch_size: int = 32,
    prefix: PrefixStates | None = None,
    bf16: bool = False,
) -> np.ndarray:
    """Logits for every example in input order, from the cached prefix states when given.

    Data-parallel (after a launched training), each rank predicts every W-th example and
    the rows are gathered: every rank returns all of them.
    """
    acc = distributed.active()
    if acc is None or len(encoded) == 0:
        return _predict_local(model, backbone, encoded, batch_size, prefix, bf16)
    mine = list(range(acc.process_index, len(encoded), acc.num_processes))
    part = _predict_local(
        model, backbone, encoded.subset(mine), batch_size, None if prefix is None else prefix.subset(mine), bf16
    )
    if part.ndim == 3:  # a logit per token: every rank's rows as wide as the longest input of all
        part = np.pad(part, ((0, 0), (0, max(encoded.lengths, default=0) - part.shape[1]), (0, 0)))
    return distributed.gather_rows(part, len(encoded), acc)


@torch.inference_mode()
def _predict_local(
    model: TextClassificationModel,
    backbone: Backbone,
    encoded: Encoded,
    batch_size: int,
    prefix: PrefixStates | None,
    bf16: bool = False,
) -> np.ndarray:
    was_training = model.training
    model.eval()
    device = backbone.device
    if model.per_token:  # a logit per token [n, tokens, K]: zeros past an input's end
        out = np.zeros((len(encoded), max(encoded.lengths, default=0), model.head.out_features), dtype=np.float32)
    else:
        out = np.empty((len(encoded), model.head.out_features), dtype=np.float32)
    try:
        for idx, batch in backbone.batches(encoded, batch_size):
            logits = forward_rows(model, batch, prefix, idx, device, bf16=bf16).float().cpu().numpy()
            if logits.ndim == 3:
                out[idx, : logits.shape[1]] = logits
            else:
                out[idx] = logits
    finally:
        model.train(was_training)
    return out
