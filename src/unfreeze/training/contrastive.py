"""SetFit's contrastive body tuning: cosine similarity of pooled pairs regressed onto 1 / 0.

The loop's skeleton (budget, optimiser, schedule, clipping, bar, record) is the main
loop's ``TrainingRun``; what differs is the batches (pairs drawn lazily) and the loss.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..models.backbone import Backbone, Encoded
from .forward import forward_rows, set_train_mode
from .loop import TrainConfig, TrainingRun, TrainRecord, cached_prefixes, param_groups
from .memory import PeakMemory
from .model import TextClassificationModel
from .prefix import PrefixStates


def train_contrastive(
    model: TextClassificationModel,
    backbone: Backbone,
    frozen_k: int,
    encoded: Encoded,
    y: np.ndarray,
    num_iterations: int,
    config: TrainConfig,
    prefix_backbone: Backbone | None = None,
) -> TrainRecord:
    """Tune the body in place on lazily drawn pairs; ``model`` supplies pooling (its head is unused).

    ``prefix_backbone`` runs the frozen-prefix pass (see ``loop.train``)."""
    device = backbone.device
    model.to(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    lengths = encoded.lengths
    start = time.perf_counter()
    with PeakMemory(device) as memory:
        prefix = None
        prefix_seconds = 0.0
        if config.prefix_cache and frozen_k >= 1:
            (prefix,) = cached_prefixes(prefix_backbone or backbone, frozen_k, [encoded])
            prefix_seconds = time.perf_counter() - start
        run = TrainingRun(
            config,
            param_groups(list(model.body.named_parameters()), config),
            count_pairs(y, num_iterations),
            device,
            "contrastive tuning",
        )
        record = run.record
        record.prefix_seconds = record.step_seconds = prefix_seconds
        record.total_parameters = sum(p.numel() for p in model.body.parameters())
        try:
            for epoch in range(1, run.n_epochs + 1):
                run.start_epoch()
                set_train_mode(model, backbone, frozen_k)
                for left, right, target in pair_batches(y, num_iterations, config.batch_size, rng):
                    if run.budget_spent:
                        break
                    # one forward over the distinct examples of the batch, then pair them up
                    unique, inverse = np.unique(np.concatenate([left, right]), return_inverse=True)
                    pooled = _pooled_by_length(
                        model, backbone, encoded, unique.tolist(), prefix, device, bf16=config.compute == "bf16"
                    )
                    a, b = pooled[inverse[: len(left)]], pooled[inverse[len(left) :]]
                    similarity = nn.functional.cosine_similarity(a, b)
                    loss = nn.functional.mse_loss(similarity, torch.as_tensor(target, device=device))
                    run.step(
                        loss, 2 * len(left), sum(lengths[i] for i in left) + sum(lengths[i] for i in right), epoch=epoch
                    )
                run.end_steps()
                record.history.append({"epoch": epoch, "train_loss": run.mean_epoch_loss})
                run.end_epoch(epoch)
                if run.budget_spent:
                    break
        finally:
            run.close()
        model.eval()
    record.best_epoch = record.epochs_run
    record.seconds = time.perf_counter() - start
    record.peak_memory_bytes = memory.peak_bytes
    return record


def _pooled_by_length(
    model: TextClassificationModel,
    backbone: Backbone,
    encoded: Encoded,
    idx: list[int],
    prefix: PrefixStates | None,
    device: torch.device,
    buckets: int = 2,
    bf16: bool = False,
) -> torch.Tensor:
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
        parts.append(
            forward_rows(model, backbone.collate(encoded, rows), prefix, rows, device, pooled=True, bf16=bf16).float()
        )
        positions.extend(chunk)
    pooled = torch.cat(parts)
    inverse = torch.empty(len(positions), dtype=torch.long)
    inverse[torch.tensor(positions)] = torch.arange(len(positions))
    return pooled[inverse.to(pooled.device)]


def count_pairs(labels: np.ndarray, num_iterations: int) -> int:
    """How many pairs ``pair_batches`` yields for ``labels``: per round, one positive and one negative pair per
    example (as the setfit library draws ``num_iterations`` x n of each), none of a kind no two examples form."""
    _, same_of, others_of = _partners(np.asarray(labels))
    kinds = any(len(s) for s in same_of) + any(len(o) for o in others_of)
    return num_iterations * len(labels) * kinds


def pair_batches(
    labels: np.ndarray, num_iterations: int, batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (left indices, right indices, target similarity) batches of pairs, lazily: ``count_pairs`` of them.

    Per round and example: one positive partner (same class, another example when the
    class has one) and one negative partner (any other class), in shuffled order.
    ``labels``: class indices [n], or a label indicator matrix [n, K] (several labels per
    text), where partners sharing a label are positive and those sharing none negative, as
    the setfit library pairs multi-label data. A text without a label shares none, so it has
    no positive partner, and one that shares a label with every other has no negative one: its
    turn goes to a random example that has one, so that, as in the library (which draws n pairs
    of each kind a round from all the pairs of that kind), every round has n positive and n
    negative pairs.
    """
    labels = np.asarray(labels)
    group, same_of, others_of = _partners(labels)
    has_same = np.array([len(s) > 0 for s in same_of])[group]
    has_other = np.array([len(o) > 0 for o in others_of])[group]
    with_same, with_other = np.flatnonzero(has_same), np.flatnonzero(has_other)
    pending: list[tuple[int, int, float]] = []
    for _ in range(num_iterations):
        for i in rng.permutation(len(labels)):
            if len(with_same):
                a = i if has_same[i] else with_same[rng.integers(len(with_same))]
                same = same_of[group[a]]
                j = same[rng.integers(len(same))]
                if len(same) > 1:
                    while j == a:
                        j = same[rng.integers(len(same))]
                pending.append((int(a), int(j), 1.0))
            if len(with_other):
                a = i if has_other[i] else with_other[rng.integers(len(with_other))]
                other = others_of[group[a]]
                pending.append((int(a), int(other[rng.integers(len(other))]), 0.0))
            while len(pending) >= batch_size:
                chunk, pending = pending[:batch_size], pending[batch_size:]
                yield _as_arrays(chunk)
    if pending:
        yield _as_arrays(pending)


def _partners(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Each example's group (its class, or its set of labels), and per group the examples that pair
    positively (same class; a shared label) and negatively with its members."""
    if labels.ndim == 1:
        classes, group = np.unique(labels, return_inverse=True)
        related = np.eye(len(classes), dtype=bool)
    else:
        sets, group = np.unique(labels > 0.5, axis=0, return_inverse=True)
        related = (sets.astype(np.int64) @ sets.T.astype(np.int64)) > 0  # a shared label; never the empty set
    group = group.reshape(-1)
    same = [np.flatnonzero(related[g][group]) for g in range(len(related))]
    others = [np.flatnonzero(~related[g][group]) for g in range(len(related))]
    return group, same, others


def _as_arrays(chunk: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    left, right, target = zip(*chunk)
    return np.array(left), np.array(right), np.array(target, dtype=np.float32)
