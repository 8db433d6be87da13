"""Seeded, stratified, nested samples and splits: properties checked over several seeds."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from unfreeze.data import TextDataset, hold_out, sample, stratified_order, train_test_split
from unfreeze.errors import InvalidParameterError, UnfreezeError

SEEDS = [0, 1, 2, 7, 1234]


def make_dataset(counts: dict, pairs: bool = False, shuffle_seed: int = 99) -> TextDataset:
    """Unique texts ``"<label>-<i>"`` with the given class sizes, in a shuffled row order."""
    rows = [(f"{label}-{i}", label) for label, n in counts.items() for i in range(n)]
    order = np.random.default_rng(shuffle_seed).permutation(len(rows))
    rows = [rows[i] for i in order]
    texts = [t for t, _ in rows]
    return TextDataset(
        texts=texts,
        labels=[label for _, label in rows],
        text_pairs=[f"pair of {t}" for t in texts] if pairs else None,
        name="toy",
    )


BINARY = {0: 700, 1: 300}
MULTI = {"sports": 400, "politics": 250, "tech": 200, "arts": 100, "science": 50}
BALANCED = {"a": 300, "b": 300, "c": 300}
DATASETS = {"binary": BINARY, "multi": MULTI, "balanced": BALANCED}


def label_of(text: str) -> str:
    return text.rsplit("-", 1)[0]


def assert_consistent(sub: TextDataset, full: TextDataset) -> None:
    """Every sampled row is a row of ``full``: no duplicates, labels and pairs still aligned."""
    assert len(set(sub.texts)) == len(sub.texts)
    assert set(sub.texts) <= set(full.texts)
    for text, label in zip(sub.texts, sub.labels):
        assert label_of(text) == str(label)
    if full.text_pairs is not None:
        assert sub.text_pairs == [f"pair of {t}" for t in sub.texts]


# -- stratified_order ----------------------------------------------------------------------


@pytest.mark.parametrize("counts", DATASETS.values(), ids=DATASETS.keys())
@pytest.mark.parametrize("seed", SEEDS)
def test_stratified_order_is_a_permutation_with_stratified_prefixes(counts, seed):
    ds = make_dataset(counts)
    order = stratified_order(ds.labels, seed)
    assert sorted(order.tolist()) == list(range(len(ds)))
    labels = np.asarray([repr(label) for label in ds.labels])[order]
    total = len(ds)
    for cls, n_cls in counts.items():
        running = np.cumsum(labels == repr(cls))
        expected = np.arange(1, total + 1) * n_cls / total
        # every prefix holds its share of every class, within one example
        assert np.abs(running - expected).max() < 1, cls


def test_stratified_order_handles_tiny_and_unbalanced_classes():
    rng = np.random.default_rng(5)
    for trial in range(40):
        k = int(rng.integers(2, 7))
        counts = {f"c{j}": int(n) for j, n in enumerate(rng.integers(1, 40, k))}
        ds = make_dataset(counts, shuffle_seed=trial)
        order = stratified_order(ds.labels, trial)
        labels = np.asarray(ds.labels)[order]
        for cls, n_cls in counts.items():
            running = np.cumsum(labels == cls)
            expected = np.arange(1, len(ds) + 1) * n_cls / len(ds)
            assert np.abs(running - expected).max() < 1, (counts, cls)


# -- sample: n_total -----------------------------------------------------------------------


@pytest.mark.parametrize("counts", DATASETS.values(), ids=DATASETS.keys())
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [5, 32, 100, 128, 333])
def test_n_total_is_stratified_within_one_example(counts, seed, n):
    ds = make_dataset(counts)
    sub = sample(ds, n_total=n, seed=seed)
    assert len(sub) == n
    assert_consistent(sub, ds)
    got = Counter(sub.labels)
    for cls, n_cls in counts.items():
        expected = n * n_cls / len(ds)
        assert abs(got[cls] - expected) < 1, (cls, got[cls], expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [5, 20, 40])
def test_n_total_holds_every_class_with_a_whole_share(seed, n):
    # a class is guaranteed once its share n * p_c reaches one example (proportional
    # allocation, as in scikit-learn: a rarer class may be absent from a tiny sample)
    ds = make_dataset(MULTI)
    got = set(sample(ds, n_total=n, seed=seed).labels)
    assert got >= {cls for cls, n_cls in MULTI.items() if n * n_cls / len(ds) >= 1}
    if n >= 20:
        assert got == set(MULTI)


@pytest.mark.parametrize("seed", SEEDS)
def test_n_total_same_seed_same_sample(seed):
    ds = make_dataset(MULTI, pairs=True)
    a, b = sample(ds, n_total=64, seed=seed), sample(ds, n_total=64, seed=seed)
    assert a.texts == b.texts and a.labels == b.labels and a.text_pairs == b.text_pairs
    assert a.fingerprint() == b.fingerprint()
    assert_consistent(a, ds)


def test_n_total_different_seeds_different_samples():
    ds = make_dataset(MULTI)
    samples = {seed: frozenset(sample(ds, n_total=64, seed=seed).texts) for seed in SEEDS}
    assert len(set(samples.values())) == len(SEEDS)
    # not merely reordered: the drawn examples differ substantially
    for s1 in SEEDS:
        for s2 in SEEDS:
            if s1 < s2:
                assert len(samples[s1] & samples[s2]) < 48


@pytest.mark.parametrize("counts", DATASETS.values(), ids=DATASETS.keys())
@pytest.mark.parametrize("seed", SEEDS)
def test_n_total_samples_are_nested(counts, seed):
    ds = make_dataset(counts)
    small, medium, large = (sample(ds, n_total=n, seed=seed) for n in (32, 128, 512))
    assert medium.texts[:32] == small.texts
    assert large.texts[:128] == medium.texts
    assert set(small.texts) < set(medium.texts) < set(large.texts)


def test_n_total_of_everything_is_a_reordering():
    ds = make_dataset(BINARY)
    sub = sample(ds, n_total=len(ds), seed=3)
    assert sorted(sub.texts) == sorted(ds.texts)


def test_sample_does_not_touch_the_source():
    ds = make_dataset(BINARY)
    before = (list(ds.texts), list(ds.labels))
    sample(ds, n_total=50, seed=0)
    sample(ds, n_per_class=20, seed=0)
    assert (ds.texts, ds.labels) == before


# -- sample: n_per_class -------------------------------------------------------------------


@pytest.mark.parametrize("counts", DATASETS.values(), ids=DATASETS.keys())
@pytest.mark.parametrize("seed", SEEDS)
def test_n_per_class_exact_counts(counts, seed):
    ds = make_dataset(counts, pairs=True)
    sub = sample(ds, n_per_class=16, seed=seed)
    assert Counter(sub.labels) == {cls: 16 for cls in counts}
    assert_consistent(sub, ds)


@pytest.mark.parametrize("seed", SEEDS)
def test_n_per_class_seeded(seed):
    ds = make_dataset(MULTI)
    assert sample(ds, n_per_class=8, seed=seed).texts == sample(ds, n_per_class=8, seed=seed).texts
    other = sample(ds, n_per_class=8, seed=seed + 1000)
    assert set(other.texts) != set(sample(ds, n_per_class=8, seed=seed).texts)


@pytest.mark.parametrize("counts", [BINARY, BALANCED], ids=["binary", "balanced"])
@pytest.mark.parametrize("seed", SEEDS)
def test_n_per_class_samples_are_nested(counts, seed):
    ds = make_dataset(counts)
    sizes = (32, 128, 256)
    subs = [sample(ds, n_per_class=n, seed=seed) for n in sizes]
    for smaller, larger in itertools.pairwise(subs):
        assert set(smaller.texts) < set(larger.texts)
        # per class, the smaller sample is the first members of the larger one
        for cls in counts:
            small_cls = [t for t, lab in zip(smaller.texts, smaller.labels) if lab == cls]
            large_cls = [t for t, lab in zip(larger.texts, larger.labels) if lab == cls]
            assert large_cls[: len(small_cls)] == small_cls


@pytest.mark.parametrize("seed", SEEDS)
def test_n_per_class_nested_with_many_classes(seed):
    ds = make_dataset(MULTI)
    subs = [sample(ds, n_per_class=n, seed=seed) for n in (4, 16, 50)]
    assert set(subs[0].texts) < set(subs[1].texts) < set(subs[2].texts)


# -- sample: errors ------------------------------------------------------------------------


def test_n_total_larger_than_data():
    ds = make_dataset(BINARY)
    with pytest.raises(UnfreezeError) as info:
        sample(ds, n_total=len(ds) + 1, seed=0)
    message = str(info.value)
    assert f"{len(ds) + 1}" in message and "at most 1000" in message and "--n-train" in message


def test_n_per_class_larger_than_a_class_names_it():
    ds = make_dataset(MULTI)
    with pytest.raises(UnfreezeError) as info:
        sample(ds, n_per_class=60, seed=0)
    message = str(info.value)
    assert "'science'" in message  # the only class with fewer than 60
    assert "50 example(s)" in message
    assert "at most 50" in message and "--n-per-class" in message
    assert "\n" not in message


def test_n_per_class_names_the_short_class_not_the_first():
    ds = make_dataset({"big": 100, "mid": 80, "small": 3})
    with pytest.raises(UnfreezeError, match=r"'small'.*at most 3"):
        sample(ds, n_per_class=10)


def test_n_total_below_number_of_classes():
    ds = make_dataset(MULTI)
    with pytest.raises(UnfreezeError) as info:
        sample(ds, n_total=4, seed=0)
    message = str(info.value)
    assert "5 classes" in message and "--n-train 5" in message


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"n_total": 10, "n_per_class": 2}],
    ids=["neither", "both"],
)
def test_exactly_one_size(kwargs):
    with pytest.raises(UnfreezeError, match="exactly one"):
        sample(make_dataset(BINARY), **kwargs)


@pytest.mark.parametrize("kwargs", [{"n_total": 0}, {"n_total": -3}, {"n_total": 2.5}, {"n_per_class": 0}])
def test_sizes_must_be_positive_ints(kwargs):
    with pytest.raises(InvalidParameterError, match=r"must be an int >= 1\. Got"):
        sample(make_dataset(BINARY), **kwargs)


# -- train_test_split ----------------------------------------------------------------------


@pytest.mark.parametrize("counts", DATASETS.values(), ids=DATASETS.keys())
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("test_size", [0.2, 0.25, 0.5])
def test_split_is_stratified_disjoint_and_complete(counts, seed, test_size):
    ds = make_dataset(counts, pairs=True)
    train, test = train_test_split(ds, test_size=test_size, seed=seed)
    assert set(train.texts).isdisjoint(test.texts)
    assert sorted(train.texts + test.texts) == sorted(ds.texts)
    assert len(train) + len(test) == len(ds)
    assert_consistent(train, ds)
    assert_consistent(test, ds)
    test_counts = Counter(test.labels)
    for cls, n_cls in counts.items():
        assert abs(test_counts[cls] - n_cls * test_size) <= 1, cls
    assert train.name == "toy:train" and test.name == "toy:test"


@pytest.mark.parametrize("seed", SEEDS)
def test_split_is_seeded(seed):
    ds = make_dataset(MULTI)
    a_train, a_test = train_test_split(ds, 0.2, seed)
    b_train, b_test = train_test_split(ds, 0.2, seed)
    assert a_train.texts == b_train.texts and a_test.texts == b_test.texts
    _, other_test = train_test_split(ds, 0.2, seed + 1)
    assert set(other_test.texts) != set(a_test.texts)


def test_split_keeps_every_class_on_both_sides():
    ds = make_dataset({"a": 2, "b": 3, "c": 100})
    for seed in SEEDS:
        for test_size in (0.05, 0.5, 0.95):
            train, test = train_test_split(ds, test_size, seed)
            assert set(train.labels) == {"a", "b", "c"}
            assert set(test.labels) == {"a", "b", "c"}


def test_split_refuses_a_single_example_class():
    ds = make_dataset({"common": 50, "rare": 1})
    with pytest.raises(UnfreezeError) as info:
        train_test_split(ds, 0.2, 0)
    message = str(info.value)
    assert "'rare'" in message and "single example" in message and "\n" not in message


@pytest.mark.parametrize("test_size", [0, 1, 1.5, -0.1, "0.2"])
def test_split_test_size_range(test_size):
    with pytest.raises(InvalidParameterError, match="test_size"):
        train_test_split(make_dataset(BINARY), test_size, 0)


# -- hold_out ------------------------------------------------------------------------------


@pytest.mark.parametrize("counts", DATASETS.values(), ids=DATASETS.keys())
@pytest.mark.parametrize("seed", [0, 7])
def test_hold_out_is_a_fixed_stratified_set_outside_every_training_sample_of_its_seed(counts, seed):
    full = make_dataset(counts)
    held, rest = hold_out(full, 100, seed)
    assert_consistent(held, full)
    assert_consistent(rest, full)
    assert len(held) == 100 and len(rest) == len(full) - 100 and not set(held.texts) & set(rest.texts)
    for label, n in counts.items():  # stratified: each class within one example of its share
        assert abs(Counter(held.labels)[label] - 100 * n / len(full)) <= 1
    assert hold_out(full, 100, seed)[0].texts == held.texts
    # the seed's nested training samples come from the rest: none of them touches the held-out set
    small, large = sample(rest, n_total=50, seed=seed), sample(rest, n_total=300, seed=seed)
    assert set(small.texts) <= set(large.texts) and not set(large.texts) & set(held.texts)
    # it is not the seed's own first training sample (the two orders are seeded apart)
    assert set(held.texts) != set(sample(full, n_total=100, seed=seed).texts)
