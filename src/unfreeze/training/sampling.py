"""How a training set is drawn and weighted: shuffled batches, grouped by length or not; balanced class weights."""

from __future__ import annotations

import numpy as np
import torch


def grouping_window(n: int, batch_size: int) -> int:
    """The texts sorted together by length: transformers' ``group_by_length`` megabatch
    (``trainer_pt_utils.get_length_grouped_indices``), ``batch_size`` times ``min(n // (4 * batch_size), 50)``
    (at least one batch). At least four windows per epoch keep the batches of a small training set changing
    from epoch to epoch (one window of 50 batches gave 1,000 texts of distinct lengths the same batches every
    epoch). numpy's seeded generator draws the permutation, as every other draw of a fit."""
    return batch_size * max(1, min(n // (4 * batch_size), 50))


def length_grouped_order(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort within windows (``grouping_window``), shuffle the
    batches."""
    order = rng.permutation(len(lengths))
    window = grouping_window(len(lengths), batch_size)
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window].tolist(), key=lambda i: -lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def shuffled_order(n: int, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Plain shuffled batches (``Training.group_by_length=False``)."""
    order = rng.permutation(n).tolist()
    return [order[j : j + batch_size] for j in range(0, n, batch_size)]


def batch_order(lengths: list[int], batch_size: int, rng: np.random.Generator, grouped: bool) -> list[list[int]]:
    """An epoch's batches: grouped by length (``length_grouped_order``) or plainly shuffled."""
    if grouped:
        return length_grouped_order(lengths, batch_size, rng)
    return shuffled_order(len(lengths), batch_size, rng)


def class_weights(y: np.ndarray, n_classes: int, mode: str | None, device: torch.device) -> torch.Tensor | None:
    """Inverse-frequency weights of the loss for ``mode="balanced"`` (scikit-learn's formula), else None."""
    if mode is None:
        return None
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = len(y) / (n_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32, device=device)
