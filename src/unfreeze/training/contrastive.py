"""SetFit's contrastive body tuning: cosine similarity of pooled pairs regressed onto 1 / 0."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..models.backbone import Backbone, Encoded
from ..strategies.setfit import count_pairs, pair_batches
from .loop import TrainConfig, TrainRecord, _autocast, _pad_states, optimizer_step, set_train_mode
from .memory import PeakMemory
from .model import TextClassificationModel
from .prefix import compute_prefix_states


def train_contrastive(
    model: TextClassificationModel,
    backbone: Backbone,
    frozen_k: int,
    encoded: Encoded,
    y: np.ndarray,
    num_iterations: int,
    config: TrainConfig,
) -> TrainRecord:
    """Tune the body in place on lazily drawn pairs; ``model`` supplies pooling (its head is unused)."""
    device = backbone.device
    model.to(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    record = TrainRecord(device=str(device))
    trainable = [p for p in model.body.parameters() if p.requires_grad]
    record.trainable_parameters = sum(p.numel() for p in trainable)
    record.total_parameters = sum(p.numel() for p in model.body.parameters())
    n_pairs = count_pairs(len(encoded), num_iterations)
    steps_per_epoch = math.ceil(n_pairs / config.batch_size)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)  # max_steps wins over epochs, as in the main loop
    lengths = encoded.lengths

    start = time.perf_counter()
    with PeakMemory(device) as memory:
        prefix = None
        if config.prefix_cache and frozen_k >= 1:
            states, tuple_length = compute_prefix_states(backbone, encoded, [frozen_k])
            prefix = (frozen_k, states[frozen_k], tuple_length)
            record.prefix_seconds = time.perf_counter() - start
        no_decay = [p for n, p in model.body.named_parameters() if p.requires_grad and (p.ndim < 2 or "norm" in n.lower())]
        decay = [p for p in trainable if all(p is not q for q in no_decay)]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate)
        from transformers import get_linear_schedule_with_warmup

        scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
        bar = tqdm(total=total_steps, desc="contrastive tuning", unit="step", disable=not config.progress or None,
                   leave=False)
        try:
            for epoch in range(1, epochs + 1):
                set_train_mode(model, backbone, frozen_k)
                running, n_run = 0.0, 0
                for n_batch, (left, right, target) in enumerate(
                        pair_batches(y, num_iterations, config.batch_size, rng), start=1):
                    if record.steps >= total_steps:
                        break
                    # one forward over the distinct examples of the batch, then pair them up
                    unique, inverse = np.unique(np.concatenate([left, right]), return_inverse=True)
                    pooled = _pooled_by_length(model, backbone, encoded, unique.tolist(), prefix, device)
                    a, b = pooled[inverse[: len(left)]], pooled[inverse[len(left):]]
                    similarity = nn.functional.cosine_similarity(a, b)
                    loss = nn.functional.mse_loss(similarity, torch.as_tensor(target, device=device))
                    optimizer_step(loss, trainable, optimizer, scheduler, config.grad_clip)
                    record.count_step(2 * len(left), sum(lengths[i] for i in left) + sum(lengths[i] for i in right))
                    running += loss.item()
                    n_run += 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{running / n_batch:.4f}")
                record.epochs_run = epoch
                record.history.append({"epoch": epoch, "train_loss": running / max(1, n_run)})
                if record.steps >= total_steps:
                    break
        finally:
            bar.close()
        model.eval()
    record.best_epoch = record.epochs_run
    record.seconds = time.perf_counter() - start
    record.peak_memory_bytes = memory.peak_bytes
    return record


def _pooled_by_length(model: TextClassificationModel, backbone: Backbone, encoded: Encoded, idx: list[int],
                      prefix, device: torch.device, buckets: int = 2) -> torch.Tensor:
    """Pooled states of the examples ``idx`` (in that order), run in length-sorted buckets.

    The texts of a random pair batch differ in length; padding them all to the longest
    wastes compute. Two buckets sorted by length cut most of the padding and keep the
    matrices large enough to stay efficient. One graph: the loss sees every bucket.
    """
    order = sorted(range(len(idx)), key=lambda j: encoded.lengths[idx[j]])
    size = -(-len(order) // buckets)
    parts, positions = [], []
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        rows = [idx[j] for j in chunk]
        batch = backbone.collate(encoded, rows)
        with _autocast(device):
            if prefix is None:
                part = model.pooled(batch)
            else:
                k, states, tuple_length = prefix
                part = model.pooled(batch, k, _pad_states(states, rows, device), tuple_length)
        parts.append(part.float())
        positions.extend(chunk)
    pooled = torch.cat(parts)
    inverse = torch.empty(len(positions), dtype=torch.long)
    inverse[torch.tensor(positions)] = torch.arange(len(positions))
    return pooled[inverse.to(pooled.device)]
