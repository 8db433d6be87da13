"""The one training loop, shared by freeze, full, reinit and LoRA.

AdamW (bias-corrected) with linear warm-up and decay, gradient clipping, batches
grouped by length, validation each epoch with early stopping and the best weights
restored. With k >= 1 frozen blocks the frozen prefix runs once, before the first
epoch (see prefix.py). Under ``accelerate launch`` / ``torchrun`` the same loop trains
data-parallel (see distributed.py); in one process that code is never reached.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..metrics import classification_metrics
from ..models.backbone import Backbone, Encoded
from . import distributed
from .memory import PeakMemory
from .model import TextClassificationModel
from .prefix import compute_prefix_states


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_steps: int | None = None
    grad_clip: float = 1.0
    patience: int | None = 2
    class_weight: str | None = None
    seed: int = 0
    prefix_cache: bool = True
    progress: bool = True


@dataclass
class TrainRecord:
    """What a fit did: the numbers a result row needs to be trusted."""

    epochs_run: int = 0
    steps: int = 0
    best_epoch: int = 0
    examples_seen: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    prefix_seconds: float = 0.0
    peak_memory_bytes: int = 0
    trainable_parameters: int = 0
    total_parameters: int = 0
    device: str = "cpu"
    world_size: int = 1
    epoch_seconds: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def count_step(self, examples: int, tokens: int) -> None:
        self.steps += 1
        self.examples_seen += examples
        self.tokens_seen += tokens


def length_grouped_order(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort within windows of 50 batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window].tolist(), key=lambda i: -lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _pad_states(states: list[torch.Tensor], idx: list[int], device: torch.device) -> torch.Tensor:
    width = max(states[i].shape[0] for i in idx)
    out = torch.zeros((len(idx), width, states[idx[0]].shape[1]), dtype=states[idx[0]].dtype)
    for row, i in enumerate(idx):
        out[row, : states[i].shape[0]] = states[i]
    return out.to(device)


def _logits(model: nn.Module, batch: dict, prefix: tuple[int, list[torch.Tensor], int] | None, rows: list[int],
            device: torch.device) -> torch.Tensor:
    """The model's logits on ``batch`` (the examples ``rows``), from the cached prefix states when given."""
    with _autocast(device):
        if prefix is None:
            return model(batch)
        k, states, tuple_length = prefix
        return model(batch, k, _pad_states(states, rows, device), tuple_length)


def _autocast(device: torch.device):
    # bf16 on CUDA: same range as fp32, no loss scaling; the CPU stays in fp32
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def predict_logits(model: TextClassificationModel, backbone: Backbone, encoded: Encoded, batch_size: int = 32,
                   prefix: tuple[int, list[torch.Tensor], int] | None = None) -> np.ndarray:
    """Logits for every example in input order; ``prefix`` = (k, cached states, tuple length).

    Data-parallel (after a launched training), each rank predicts every W-th example and
    the rows are gathered: every rank returns all of them.
    """
    acc = distributed.active()
    if acc is None or len(encoded) == 0:
        return _predict_local(model, backbone, encoded, batch_size, prefix)
    mine = list(range(acc.process_index, len(encoded), acc.num_processes))
    part_prefix = None if prefix is None else (prefix[0], [prefix[1][i] for i in mine], prefix[2])
    part = _predict_local(model, backbone, encoded.subset(mine), batch_size, part_prefix)
    return distributed.gather_rows(part, len(encoded), acc)


@torch.inference_mode()
def _predict_local(model: TextClassificationModel, backbone: Backbone, encoded: Encoded, batch_size: int,
                   prefix: tuple[int, list[torch.Tensor], int] | None) -> np.ndarray:
    was_training = model.training
    model.eval()
    device = backbone.device
    out = np.empty((len(encoded), model.head.out_features), dtype=np.float32)
    try:
        for idx, batch in backbone.batches(encoded, batch_size):
            out[idx] = _logits(model, batch, prefix, idx, device).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


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
) -> TrainRecord:
    """Train ``model`` in place; returns the record. The best validation epoch's weights are kept.

    ``prefix_pool`` = (pool key, keys of the training inputs, keys of the validation inputs)
    lets a sweep share prefix states across fits (see prefix.shared_prefix_states).
    """
    device = backbone.device
    model.to(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    record = TrainRecord(device=str(device))
    trainable = [p for p in model.parameters() if p.requires_grad]
    record.trainable_parameters = sum(p.numel() for p in trainable)
    record.total_parameters = sum(p.numel() for p in model.parameters())

    acc = distributed.accelerator(device)  # None in one process: the plain loop below, unchanged
    record.world_size = acc.num_processes if acc is not None else 1
    start = time.perf_counter()
    with PeakMemory(device) as memory:
        use_prefix = config.prefix_cache and frozen_k >= 1
        train_prefix = val_prefix = None
        if use_prefix:
            pool_key, train_keys, val_keys = prefix_pool or (None, None, None)
            states, tuple_length = compute_prefix_states(backbone, train_encoded, [frozen_k], pool_key=pool_key,
                                                         keys=train_keys)
            train_prefix = (frozen_k, states[frozen_k], tuple_length)
            if val_encoded is not None:
                val_states, _ = compute_prefix_states(backbone, val_encoded, [frozen_k], pool_key=pool_key,
                                                      keys=val_keys)
                val_prefix = (frozen_k, val_states[frozen_k], tuple_length)
            record.prefix_seconds = time.perf_counter() - start

        optimizer = _optimizer(model, config)
        # DDP wraps the model for the training forward; the optimiser and schedule are not
        # prepared: every rank draws the same global batches and steps once per batch, as on one device
        forward = model if acc is None else acc.prepare_model(model)
        steps_per_epoch = math.ceil(len(train_encoded) / config.batch_size)
        total_steps = config.max_steps or config.epochs * steps_per_epoch
        epochs = math.ceil(total_steps / steps_per_epoch)
        from transformers import get_linear_schedule_with_warmup

        scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
        loss_fn = nn.CrossEntropyLoss(weight=_class_weights(y_train, model.head.out_features, config.class_weight,
                                                             device))
        labels = torch.as_tensor(y_train, dtype=torch.long)
        lengths = train_encoded.lengths
        best_score, best_state, bad_epochs = None, None, 0
        show = config.progress and distributed.is_main_process()
        bar = tqdm(total=total_steps, desc="training", unit="step", disable=not show or None, leave=False)
        try:
            for epoch in range(1, epochs + 1):
                epoch_start = time.perf_counter()
                set_train_mode(model, backbone, frozen_k)
                epoch_loss, epoch_batches = 0.0, 0
                seen = np.zeros(len(train_encoded))  # how often each example was trained on, this epoch
                for idx in length_grouped_order(lengths, config.batch_size, rng):
                    if record.steps >= total_steps:
                        break
                    if acc is None:
                        logits = _logits(model, backbone.collate(train_encoded, idx), train_prefix, idx, device)
                        loss = loss_fn(logits.float(), labels[idx].to(device))
                        optimizer_step(loss, trainable, optimizer, scheduler, config.grad_clip)
                        seen[idx] += 1
                        epoch_loss += loss.item()
                    else:
                        epoch_loss += _data_parallel_step(forward, acc, backbone, train_encoded, idx, labels, loss_fn,
                                                          train_prefix, trainable, optimizer, scheduler, config,
                                                          device, seen)
                    record.count_step(len(idx), sum(lengths[i] for i in idx))
                    epoch_batches += 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{epoch_loss / epoch_batches:.4f}")
                if acc is not None:
                    # each rank's share of the loss and of the examples, summed: the whole batch's
                    epoch_loss = float(distributed.sum_across(np.array([epoch_loss]), acc)[0])
                    seen = distributed.sum_across(seen, acc)
                record.epochs_run = epoch
                entry = {"epoch": epoch, "train_loss": epoch_loss / max(epoch_batches, 1),
                         "examples": int(seen.sum()), "distinct_examples": int((seen > 0).sum())}
                if val_encoded is not None and y_val is not None:
                    logits_val = predict_logits(model, backbone, val_encoded, config.batch_size * 2, val_prefix)
                    val_loss = float(nn.functional.cross_entropy(torch.from_numpy(logits_val),
                                                                 torch.as_tensor(y_val, dtype=torch.long)))
                    metrics = classification_metrics(y_val.tolist(), logits_val.argmax(axis=1).tolist())
                    entry.update({"val_loss": val_loss, **{f"val_{k}": v for k, v in metrics.items()}})
                    score = (metrics["accuracy"], -val_loss)
                    if best_score is None or score > best_score:
                        best_score, bad_epochs, record.best_epoch = score, 0, epoch
                        best_state = {name: p.detach().cpu().clone() for name, p in model.named_parameters()
                                      if p.requires_grad}
                    else:
                        bad_epochs += 1
                record.history.append(entry)
                record.epoch_seconds.append(time.perf_counter() - epoch_start)
                if config.patience is not None and best_score is not None and bad_epochs >= config.patience:
                    break
                if record.steps >= total_steps:
                    break
        finally:
            bar.close()
            if acc is not None:
                acc.free_memory()  # drop the DDP wrapper: its gradient hooks must not outlive this fit
        if best_state is not None:
            _restore(model, best_state)
        elif not record.best_epoch:
            record.best_epoch = record.epochs_run
        model.eval()
    record.seconds = time.perf_counter() - start
    record.peak_memory_bytes = memory.peak_bytes
    return record


def _data_parallel_step(forward: nn.Module, acc, backbone: Backbone, encoded: Encoded, idx: list[int],
                        labels: torch.Tensor, loss_fn: nn.CrossEntropyLoss, train_prefix, trainable, optimizer,
                        scheduler, config: TrainConfig, device: torch.device, seen: np.ndarray) -> float:
    """One optimiser step on global batch ``idx``, this rank computing its share; returns its share of the loss.

    The loss is this rank's summed (weighted) loss over the whole batch's count (or weight),
    times the number of ranks: DDP averages gradients over ranks, so the step's gradient is
    the batch-mean gradient that one process would take, whatever the split.
    """
    mine, stand_in = distributed.shard(idx, acc)
    logits = _logits(forward, backbone.collate(encoded, mine), train_prefix, mine, device)
    per_example = nn.functional.cross_entropy(logits.float(), labels[mine].to(device), weight=loss_fn.weight,
                                              reduction="none")
    weights = loss_fn.weight
    total = float(len(idx)) if weights is None else float(weights[labels[idx].to(device)].sum())
    share = per_example.sum() / total * (0.0 if stand_in else 1.0)
    optimizer_step(share * acc.num_processes, trainable, optimizer, scheduler, config.grad_clip, acc.backward)
    if not stand_in:
        seen[mine] += 1
    return share.item()


def optimizer_step(loss: torch.Tensor, trainable: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                   scheduler, grad_clip: float, backward=None) -> None:
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


def _restore(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in state:
                param.copy_(state[name].to(param.device))


def _optimizer(model: TextClassificationModel, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norm weights; the new head gets its own rate."""
    head_ids = {id(p) for p in model.head.parameters()}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in head_ids:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay, "lr": config.learning_rate},
        {"params": no_decay, "weight_decay": 0.0, "lr": config.learning_rate},
        {"params": list(model.head.parameters()), "weight_decay": config.weight_decay,
         "lr": config.head_learning_rate},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def _class_weights(y: np.ndarray, n_classes: int, mode: str | None, device: torch.device) -> torch.Tensor | None:
    if mode is None:
        return None
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = len(y) / (n_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32, device=device)
