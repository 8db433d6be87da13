"""Padded tokens per text: a batch costs about its texts times its longest text, in tokens.

The collate pads every text of a batch to the batch's longest (``Backbone.collate``). Calibration
times one batch of texts drawn at random, which pads to the longest of its 32; a cell's training
draws batches of similar lengths (``training.sampling.length_grouped_order``), and validation,
prediction, the frozen prefix and embeddings run longest first (``Backbone.batches``), so their
batches carry far fewer padded tokens per text (on 1,500 movie snippets: 28 at 512 examples
against the calibration batch's 52). The pilot scales each calibrated cost per text by the
padded tokens per text of the batches a cell will run (simulated here, once per run, from the
pool's token lengths) over those of the batches calibration timed (``pilot.StepCosts.per_text``).
Only the simulation imports the training loop's sampler (and so torch); the rest is numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# how each calibrated cost's batches are drawn: length-grouped training batches; validation sorted longest first
# in batches twice the training batch (``training.loop._validate``); the frozen prefix, prediction and embeddings
# sorted longest first in training-sized batches
TABLE_OF = {"train": "train", "validate": "validate", "prefix": "sorted", "forward": "sorted"}
# the most texts of the pool whose lengths are read (a sample of a larger pool: its distribution is what counts)
MAX_POOL = 10_000
# samples drawn per simulated size: enough that the longest of 32 texts is known within a few percent
DRAWS = 64


def sorted_padded(lengths: Sequence[int], batch_size: int) -> int:
    """Padded tokens of ``lengths`` run longest first in batches of ``batch_size`` (``Backbone.batches``)."""
    if not len(lengths):
        return 0
    ordered = np.sort(np.asarray(lengths, dtype=np.int64))[::-1]
    heads = ordered[::batch_size]
    sizes = np.minimum(batch_size, len(ordered) - np.arange(0, len(ordered), batch_size))
    return int((heads * sizes).sum())


def batches_padded(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Padded tokens of the ``batches`` (indices into ``lengths``): each batch's texts times its longest."""
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if len(batch))


def grouped_padded(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> int:
    """Padded tokens of one epoch of training on ``lengths`` in the loop's length-grouped batches."""
    from ..training.sampling import length_grouped_order

    return batches_padded(lengths, length_grouped_order(list(lengths), batch_size, rng))


def padded_per_text(lengths: Sequence[int], batch_size: int, table: str, rng: np.random.Generator) -> float:
    """Padded tokens per text of ``lengths`` in the batches of ``table`` ("train", "validate" or "sorted")."""
    if not len(lengths):
        return 0.0
    if table == "train":
        return grouped_padded(lengths, batch_size, rng) / len(lengths)
    return sorted_padded(lengths, 2 * batch_size if table == "validate" else batch_size) / len(lengths)


def table_sizes(pool: int) -> list[int]:
    """The sizes the padding is simulated at: 1, 2, 3, 4, 6, 8, 11, 16, ... (a factor of about 1.4), and ``pool``."""
    steps = int(2 * math.log2(max(pool, 1))) + 1
    return sorted({m for k in range(steps) if (m := max(1, round(2 ** (k / 2)))) <= pool} | {pool}) if pool else []


def padding_tables(lengths: Sequence[int], batch_size: int, seed: int = 0) -> dict[str, list[list[float]]]:
    """Padded tokens per text of a random sample of m texts of the pool (token ``lengths``), for m at
    ``table_sizes``, in each kind of batch: {"train" | "validate" | "sorted": [[m, tokens per text], ...]}. The
    mean over ``DRAWS`` samples (fewer for large m, where one sample varies little); seeded: the same pool gives
    the same tables."""
    pool = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    tables: dict[str, list[list[float]]] = {"train": [], "validate": [], "sorted": []}
    for m in table_sizes(len(pool)):
        draws = 1 if m == len(pool) else max(2, min(DRAWS, 32_768 // m))
        totals = dict.fromkeys(tables, 0.0)
        for _ in range(draws):
            drawn = pool[rng.choice(len(pool), size=m, replace=False)].tolist()
            for name in tables:
                totals[name] += padded_per_text(drawn, batch_size, name, rng)
        for name, table in tables.items():
            table.append([m, round(totals[name] / draws, 3)])
    return tables


def padding_at(table: Sequence[Sequence[float]], texts: float) -> float:
    """Padded tokens per text at ``texts`` texts, interpolated in a table of ``padding_tables`` (its ends beyond)."""
    sizes, tokens = zip(*table)
    return float(np.interp(texts, sizes, tokens))


def pool_lengths(backbone, inputs: Sequence, max_length: int, seed: int = 0) -> list[int]:
    """Token lengths of the pool's texts as the backbone encodes them at ``max_length`` (special tokens in,
    truncated); of a seeded sample of ``MAX_POOL`` where the pool is larger."""
    if len(inputs) > MAX_POOL:
        keep = np.random.default_rng(seed).choice(len(inputs), size=MAX_POOL, replace=False)
        inputs = [inputs[i] for i in sorted(keep.tolist())]
    return backbone.encode(list(inputs), max_length).lengths


__all__ = [
    "DRAWS",
    "MAX_POOL",
    "TABLE_OF",
    "batches_padded",
    "grouped_padded",
    "padded_per_text",
    "padding_at",
    "padding_tables",
    "pool_lengths",
    "sorted_padded",
    "table_sizes",
]
