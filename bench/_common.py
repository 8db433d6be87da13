"""Shared by the bench scripts: data, timing, the closing lines."""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def movie_snippets(n_train: int, n_test: int, seed: int):
    """A seeded stratified training sample and a fixed test sample of movie-snippets."""
    from unfreeze.data import load_data, sample

    train = sample(load_data("movie-snippets:train"), n_total=n_train, seed=seed)
    test = sample(load_data("movie-snippets:test"), n_total=n_test, seed=0)
    return train, test


@contextmanager
def timer(out: list):
    start = time.perf_counter()
    yield
    out.append(time.perf_counter() - start)


def mean(values) -> float:
    return statistics.fmean(values) if values else float("nan")


def print_closing(ratio: float, accuracy_delta: float | None = None) -> None:
    print(f"ratio: {ratio:.2f}")
    if accuracy_delta is not None:
        print(f"accuracy-delta: {accuracy_delta:+.4f}")
