"""``setfit``: contrastive tuning of the body on sentence pairs, then a logistic head.

Tunstall et al. 2022 (SetFit). For ``num_iterations`` rounds, every example is paired
with one random example of its class (target similarity 1) and one of another class
(target 0); the body learns with a cosine-similarity loss. Pairs are drawn lazily,
batch by batch: memory is O(batch), never O(n^2).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from torch import nn

from ..models.backbone import Backbone
from .base import StrategyConfig, check_int, freeze_bottom


@dataclass
class SetFitConfig(StrategyConfig):
    """num_iterations: pair rounds per example; k: bottom blocks frozen during contrastive tuning."""

    name: ClassVar[str] = "setfit"
    kind: ClassVar[str] = "setfit"
    num_iterations: int = 20
    k: int | None = None

    def __post_init__(self) -> None:
        check_int(self.num_iterations, "num_iterations", self.name, 1)
        if self.k is not None:
            check_int(self.k, "k", self.name, 0)

    def check(self, backbone: Backbone) -> None:
        check_int(self.k or 0, "k", self.name, 0, backbone.num_blocks - 1, " for this model (k = L tunes nothing)")

    def frozen_blocks(self, num_blocks: int) -> int:
        return self.k or 0

    def prepare(self, backbone: Backbone) -> nn.Module:
        freeze_bottom(backbone, self.k or 0)
        return backbone.model


def count_pairs(n_examples: int, num_iterations: int) -> int:
    return 2 * n_examples * num_iterations


def pair_batches(labels: np.ndarray, num_iterations: int, batch_size: int,
                 rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (left indices, right indices, target similarity) batches of pairs, lazily.

    Per round and example: one positive partner (same class, another example when the
    class has one) and one negative partner (any other class), in shuffled order.
    """
    labels = np.asarray(labels)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    others = {c: np.flatnonzero(labels != c) for c in by_class}
    pending: list[tuple[int, int, float]] = []
    for _ in range(num_iterations):
        for i in rng.permutation(len(labels)):
            same = by_class[labels[i]]
            j = same[rng.integers(len(same))]
            if len(same) > 1:
                while j == i:
                    j = same[rng.integers(len(same))]
            pending.append((int(i), int(j), 1.0))
            other = others[labels[i]]
            pending.append((int(i), int(other[rng.integers(len(other))]), 0.0))
            while len(pending) >= batch_size:
                chunk, pending = pending[:batch_size], pending[batch_size:]
                yield _as_arrays(chunk)
    if pending:
        yield _as_arrays(pending)


def _as_arrays(chunk: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    left, right, target = zip(*chunk)
    return np.array(left), np.array(right), np.array(target, dtype=np.float32)
