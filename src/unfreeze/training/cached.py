"""Training a small network on states of the frozen model computed once (``mix``, ``bilstm``).

The backbone never runs here: the caller has computed what the network reads (pooled
states per layer, token states) and hands over ``forward(rows)``, the logits of those
examples. The loop is the shared skeleton (:class:`~unfreeze.training.loop.TrainingRun`:
budget, AdamW groups from ``param_groups``, warm-up and decay, clipping, progress, record)
plus what ``train`` does around it: batches of similar length, and the epochs of
``epochs.run_epochs`` (validation each epoch, early stopping, the best epoch's weights restored).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .epochs import EarlyStopping, run_epochs
from .loop import TrainConfig, TrainingRun, TrainRecord, batch_order, param_groups
from .memory import PeakMemory

if TYPE_CHECKING:
    from ..tasks import Task

Forward = Callable[[list[int]], torch.Tensor]  # example rows -> raw outputs [len(rows), the task's n_outputs]


def train_cached(
    module: nn.Module,
    forward: Forward,
    head: Sequence[nn.Parameter],
    y: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    task: Task,
    lengths: Sequence[int] | None = None,
) -> TrainRecord:
    """Train ``module`` in place on the examples ``train_rows``; the best epoch on ``val_rows`` is kept.

    ``y`` holds the targets of the fitted ``task`` (``unfreeze.tasks``), whose loss trains the module and
    whose ``selection`` picks the best epoch. ``head`` are the parameters trained at ``head_learning_rate``
    (none: every trainable parameter of the module trains at ``learning_rate``). ``lengths`` (tokens per
    example) groups batches by length unless ``config.group_by_length`` is False; without it batches are plain
    shuffles.
    """
    torch.manual_seed(config.seed)  # dropout
    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()
    train_rows, val_rows = np.asarray(train_rows, dtype=np.int64), np.asarray(val_rows, dtype=np.int64)
    row_lengths = [int(lengths[i]) if lengths is not None else 1 for i in train_rows]
    with PeakMemory(device) as memory:
        run = TrainingRun(
            config,
            param_groups(list(module.named_parameters()), config, list(head)),
            len(train_rows),
            device,
            "training",
        )
        weight = task.loss_weight(y[train_rows], config.class_weight, device)
        labels = task.target_tensor(y)
        stopping = EarlyStopping(
            [(name, p) for name, p in module.named_parameters() if p.requires_grad], config.patience, run.record, task
        )

        def train_epoch(epoch: int) -> dict:
            module.train()
            seen = np.zeros(len(train_rows))
            grouped = lengths is not None and config.group_by_length is not False
            for positions in batch_order(row_lengths, config.batch_size, rng, grouped):
                if run.budget_spent:
                    break
                rows = train_rows[positions].tolist()
                logits = forward(rows)
                tokens = sum(row_lengths[p] for p in positions) if lengths is not None else 0
                loss = task.batch_loss(logits, labels[rows].to(device), weight)
                run.step(loss, len(rows), tokens, epoch=epoch)
                seen[positions] += 1
            run.end_steps()
            return {
                "epoch": epoch,
                "train_loss": run.mean_epoch_loss,
                "examples": int(seen.sum()),
                "distinct_examples": int((seen > 0).sum()),
            }

        def validate(epoch: int) -> dict:
            logits = predict_cached(module, forward, val_rows.tolist(), config.batch_size * 2)
            return stopping.validate(epoch, logits, y[val_rows])

        try:
            run_epochs(run, stopping, train_epoch, validate if len(val_rows) else None)
        finally:
            run.close()
        stopping.restore(module)
        module.eval()
    run.record.seconds = time.perf_counter() - start
    run.record.peak_memory_bytes = memory.peak_bytes
    return run.record


@torch.inference_mode()
def predict_cached(module: nn.Module, forward: Forward, rows: list[int], batch_size: int) -> np.ndarray:
    """Logits of ``rows`` in their order, in eval mode (no dropout)."""
    was_training = module.training
    module.eval()
    try:
        parts = [forward(rows[i : i + batch_size]).float().cpu().numpy() for i in range(0, len(rows), batch_size)]
    finally:
        module.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


__all__ = ["predict_cached", "train_cached"]
