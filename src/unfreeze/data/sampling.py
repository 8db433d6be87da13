"""Seeded, stratified splits and samples.

Samples are *nested*: for a fixed seed, the sample of n examples is a prefix of the
sample of any larger n (see ``stratified_order``), so curves over training-set size
compare growing sets rather than independent draws.

Strata are the classes for one label per text; for several labels per text, each row's
rarest label (rows with none form a stratum of their own); for scores, 5 quantile bins
(see ``strata``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ..errors import InvalidParameterError, UnfreezeError
from .dataset import TextDataset, task_kind

if TYPE_CHECKING:
    import numpy as np


def stratified_order(labels: list, seed: int) -> np.ndarray:
    """A seeded ordering of all indices in which every prefix is stratified.

    Each class is shuffled (seeded), then the classes are interleaved so that every
    prefix of n indices holds between floor(n * p_c) and ceil(n * p_c) members of each
    class c: within one example of its share. At each position, among the classes that
    one more member keeps within ceil(n * p_c), the one whose floor(n * p_c) would be
    missed soonest comes next (Balinski and Young's quota method: earliest deadline first).
    """
    import numpy as np  # here, not at import: `unfreeze.data` loads without numpy, so input errors answer fast

    rng = np.random.default_rng(seed)
    keys = [repr(label) for label in labels]
    classes = sorted(set(keys))
    members: dict[str, list[int]] = {c: [] for c in classes}
    for i, key in enumerate(keys):
        members[key].append(i)
    queues = [rng.permutation(np.asarray(members[c], dtype=np.int64)).tolist() for c in classes]
    counts = [len(q) for q in queues]
    tiebreak = rng.permutation(len(classes)).tolist()  # seeded order among equal deadlines
    total, taken, order = len(keys), [0] * len(classes), []
    for n in range(1, total + 1):
        best, best_key = 0, None
        for c, count in enumerate(counts):
            if taken[c] * total < n * count:  # integer form of taken + 1 <= ceil(n * count / total)
                deadline = (-(-(taken[c] + 1) * total // count), tiebreak[c])  # first size needing one more of c
                if best_key is None or deadline < best_key:
                    best, best_key = c, deadline
        order.append(queues[best][taken[best]])
        taken[best] += 1
    return np.asarray(order, dtype=np.int64)


def strata(dataset: TextDataset) -> list:
    """What stratified sampling balances, one key per row, by the task's ``Task.strata``: the label (single);
    the row's rarest label, ties to the first in sorted order, ``()`` for a row with none (multilabel); the
    score's quantile bin, 0 to 4 (regression)."""
    return task_kind(dataset.task).strata(dataset.labels)


def sample(
    dataset: TextDataset, n_total: int | None = None, n_per_class: int | None = None, seed: int = 0
) -> TextDataset:
    """Draw n examples in total (stratified, see ``strata``) or n per class, seeded and nested over n.

    Multi-label data takes n per class as n rows per rarest label (and n rows with no label, when some
    have none): every label is then carried by at least n rows. Regression has no classes."""
    if (n_total is None) == (n_per_class is None):
        raise UnfreezeError("Give exactly one of n_total (--n-train) and n_per_class (--n-per-class).")
    task = task_kind(dataset.task)
    keys = task.strata(dataset.labels)
    if n_per_class is not None:
        if not isinstance(n_per_class, int) or isinstance(n_per_class, bool) or n_per_class < 1:
            raise InvalidParameterError(
                f"The examples per class (n_per_class, --n-per-class) must be an int >= 1. Got {n_per_class!r}."
            )
        task.check_per_class(dataset.name)
        counts = dict(Counter(keys))  # rows per stratum: per class for single
        short = {c: n for c, n in counts.items() if n < n_per_class}
        if short:
            cls, have = next(iter(sorted(short.items(), key=lambda item: repr(item[0]))))
            what = task.stratum_shortfall(cls, have, dataset.name)
            raise UnfreezeError(
                f"{what}; a sample of {n_per_class} per class needs {n_per_class}. Lower --n-per-class to at most "
                f"{min(counts.values())}."
            )
        order = stratified_order(keys, seed)
        taken: dict[object, int] = {c: 0 for c in counts}
        picked = []
        for i in order:  # the first n of each class in the nested order
            key = keys[i]
            if taken[key] < n_per_class:
                taken[key] += 1
                picked.append(i)
        return dataset.subset(picked)
    assert n_total is not None
    if not isinstance(n_total, int) or isinstance(n_total, bool) or n_total < 1:
        # named as the user gives it: --n-train on the command line, n_total in Python
        raise InvalidParameterError(f"The training-set size (n_total, --n-train) must be an int >= 1. Got {n_total!r}.")
    if n_total > len(dataset):
        raise UnfreezeError(
            f"A sample of {n_total} examples was asked from {dataset.name}, which has {len(dataset)}. "
            f"Lower --n-train to at most {len(dataset)}."
        )
    n_classes = len(dataset.classes)
    if task.strata_are_classes and n_total < n_classes:
        raise UnfreezeError(
            f"A stratified sample of {n_total} cannot hold all {n_classes} classes of {dataset.name}. "
            f"Use --n-train {n_classes} or more."
        )
    return dataset.subset(stratified_order(keys, seed)[:n_total])


# the validation set's order must not be the training samples' order (seeded apart)
VALIDATION_SEED_OFFSET = 1_000_003


def hold_out(dataset: TextDataset, n_total: int, seed: int = 0) -> tuple[TextDataset, TextDataset]:
    """A seeded stratified sample of ``n_total`` examples, and the rest of ``dataset``.

    A sweep's fixed validation set per seed: the nested training samples of that seed are
    drawn from the rest, so every training size is judged on the same examples and none of
    them ever trains.
    """
    held = sample(dataset, n_total=n_total, seed=seed + VALIDATION_SEED_OFFSET)  # its checks, its order
    taken = set(stratified_order(strata(dataset), seed + VALIDATION_SEED_OFFSET)[:n_total].tolist())
    return held, dataset.subset([i for i in range(len(dataset)) if i not in taken])


def train_test_split(dataset: TextDataset, test_size: float = 0.2, seed: int = 0) -> tuple[TextDataset, TextDataset]:
    """Seeded stratified split (``strata``); every class keeps at least one example on each side (a stratum
    of multi-label or regression data with a single row stays in train)."""
    if not (isinstance(test_size, float | int) and not isinstance(test_size, bool) and 0 < test_size < 1):
        raise InvalidParameterError(
            f"The test fraction (test_size, --test-size) must be a float in (0, 1), e.g. 0.2. Got {test_size!r}."
        )
    counts = dataset.class_counts()
    rare = [c for c, n in counts.items() if n < 2] if task_kind(dataset.task).strata_are_classes else []
    if rare:
        raise UnfreezeError(
            f"Class {rare[0]!r} of {dataset.name} has a single example; a stratified split needs at least 2 per class."
        )
    import numpy as np

    labels = np.asarray([repr(key) for key in strata(dataset)])
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for cls in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_test = min(max(1, round(len(members) * test_size)), len(members) - 1)
        test_idx.extend(members[:n_test].tolist())
    test_set = set(test_idx)
    train_idx = [i for i in range(len(dataset)) if i not in test_set]
    return dataset.subset(train_idx, f"{dataset.name}:train"), dataset.subset(sorted(test_idx), f"{dataset.name}:test")
