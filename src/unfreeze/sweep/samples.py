"""A sweep's data: the training pool and the test set, loaded once, and each seed's training sample
(with its held-out validation split when the sweep asks for one)."""

from __future__ import annotations

from dataclasses import dataclass

from ..data import TextDataset, hold_out, sample, train_test_split
from ..data.splits import load_splits
from ..errors import UnfreezeError
from ..storage.cache import sha256_json
from .grid import SweepSpec


@dataclass
class SweepData:
    train_pool: TextDataset
    test: TextDataset
    fingerprint: str


def load_sweep_data(spec: SweepSpec) -> SweepData:
    """The pool every training sample is drawn from, and the test set (``fit``'s rules; a file with
    neither ``test`` nor ``test_size`` holds out 20%: a sweep needs a test set)."""
    pool, test = load_splits(
        spec.data,
        spec.test,
        spec.test_size,
        spec.text_col,
        spec.label_col,
        spec.text_pair_col,
        seed=0,
        task=spec.task,
        label_sep=spec.label_sep,
    )
    if test is None:
        pool, test = train_test_split(pool, 0.2, seed=0)
    if spec.n_test is not None and spec.n_test < len(test):
        test = sample(test, n_total=spec.n_test, seed=0)
    largest = max(spec.n_train)
    if largest + spec.validation_size > len(pool):
        held = f" besides the --validation-size {spec.validation_size} held out" if spec.validation_size else ""
        raise UnfreezeError(
            f"--n-train {largest}{held} is more than the {len(pool)} training examples of "
            f"{spec.data}. Use at most {len(pool) - spec.validation_size}."
        )
    return SweepData(pool, test, sha256_json([pool.fingerprint(), test.fingerprint()]))


def seed_samples(spec: SweepSpec, pool: TextDataset, n_train: int, seed: int) -> tuple[TextDataset, TextDataset | None]:
    """A cell's training sample and its fixed validation set (None: the sample holds its own split).

    With ``validation_size`` the seed's validation set is held out of the pool first and the
    nested training samples come from the rest."""
    if not spec.validation_size:
        return sample(pool, n_total=n_train, seed=seed), None
    validation, rest = hold_out(pool, spec.validation_size, seed)
    if 0 < spec.validation_used < len(validation):  # the first of its stratified order: nested, every class kept
        validation = validation.subset(list(range(spec.validation_used)))
    return sample(rest, n_total=n_train, seed=seed), validation
