"""The training loop: determinism, early stopping with best weights, budgets and records, batching,
SetFit's pairs, bundles of trained models, and learning itself."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import unfreeze.training.loop as loop
from conftest import applicable, sentiment_task_varied
from unfreeze import Classifier
from unfreeze.models.backbone import Backbone
from unfreeze.models.loaded import forget_backbones
from unfreeze.strategies import Freeze
from unfreeze.training import TextClassificationModel, TrainConfig, train
from unfreeze.training.contrastive import count_pairs, pair_batches
from unfreeze.training.loop import class_weights, length_grouped_order
from unfreeze.training.sampling import grouping_window

X, Y = sentiment_task_varied(40, seed=0)
X_TEST, _ = sentiment_task_varied(20, seed=1)


def make(tiny_model_dir, family="bert", **params) -> Classifier:
    defaults = dict(
        model=tiny_model_dir(family),
        progress=False,
        device="cpu",
        cache=False,
        batch_size=8,
        **applicable(params.get("strategy", "features"), dict(C=1.0, validation_fraction=0)),
    )
    return Classifier(**{**defaults, **params})


# -- determinism -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "params"),
    [
        ("freeze", dict(k=1, epochs=2)),
        ("freeze", dict(k=0, epochs=1, validation_fraction=0.25)),
        ("lora", dict(r=2, epochs=2)),
        ("reinit", dict(m=1, max_steps=3)),
        ("setfit", dict(num_iterations=1, max_steps=3)),
    ],
    ids=["freeze-k1", "freeze-k0-val", "lora", "reinit", "setfit"],
)
def test_same_seed_same_probabilities_other_seed_other_probabilities(strategy, params, tiny_model_dir):
    a = make(tiny_model_dir, strategy=strategy, seed=7, **params).fit(X, Y).predict_proba(X_TEST)
    b = make(tiny_model_dir, strategy=strategy, seed=7, **params).fit(X, Y).predict_proba(X_TEST)
    c = make(tiny_model_dir, strategy=strategy, seed=8, **params).fit(X, Y).predict_proba(X_TEST)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-6)


# -- early stopping and best weights ------------------------------------------------------------------


def private_bert(tiny_backbone) -> Backbone:
    base = tiny_backbone("bert")
    return Backbone(copy.deepcopy(base.model), base.tokenizer, base.reference)


def test_best_epoch_weights_are_restored_and_patience_stops(tiny_backbone, monkeypatch):
    """Scripted validation accuracies 0.5, 1.0, 0.5, 0.5: best epoch 2, stop after 2 bad epochs, epoch-2 weights."""
    backbone = private_bert(tiny_backbone)
    Freeze(k=1).prepare(backbone)
    torch.manual_seed(0)
    model = TextClassificationModel(backbone, 2, "mean", (2,))
    encoded = backbone.encode(X, 64)
    y = np.asarray(Y)
    train_enc, val_enc, y_train, y_val = encoded.subset(range(30)), encoded.subset(range(30, 40)), y[:30], y[30:]
    script = [0.5, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0]
    snapshots = []

    def scripted(model_, backbone_, encoded_, batch_size, prefix=None, bf16=False):
        assert model_ is model and len(encoded_) == len(y_val)
        assert prefix is not None  # validation reads the cached prefix too
        snapshots.append({n: p.detach().clone() for n, p in model_.named_parameters() if p.requires_grad})
        right = int(script[len(snapshots) - 1] * len(y_val))
        predicted = np.where(np.arange(len(y_val)) < right, y_val, 1 - y_val)
        logits = np.zeros((len(y_val), 2), dtype=np.float32)
        logits[np.arange(len(y_val)), predicted] = 2.0
        return logits

    monkeypatch.setattr(loop, "predict_logits", scripted)
    config = TrainConfig(epochs=8, batch_size=8, learning_rate=1e-2, patience=2, seed=0, progress=False)
    record = train(model, backbone, 1, train_enc, y_train, config, val_enc, y_val)

    assert record.epochs_run == 4 and len(snapshots) == 4
    assert record.best_epoch == 2
    assert record.steps == 4 * 4  # 30 examples, 8 per batch
    assert [h["epoch"] for h in record.history] == [1, 2, 3, 4]
    assert [h["val_accuracy"] for h in record.history] == [0.5, 1.0, 0.5, 0.5]
    # training moved the weights between epochs, and the final ones are epoch 2's
    assert not torch.equal(snapshots[1]["head.weight"], snapshots[3]["head.weight"])
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert torch.equal(param.detach(), snapshots[1][name]), name
    assert not model.training


def test_equal_accuracy_is_broken_by_validation_loss(tiny_backbone, monkeypatch):
    backbone = private_bert(tiny_backbone)
    Freeze(k=2).prepare(backbone)
    model = TextClassificationModel(backbone, 2, "mean", (2,))
    encoded = backbone.encode(X, 64)
    y = np.asarray(Y)
    margins = [1.0, 3.0, 2.0, 0.5]  # all correct; epoch 2 has the lowest loss
    calls = []

    def scripted(model_, backbone_, encoded_, batch_size, prefix=None, bf16=False):
        calls.append(1)
        logits = np.zeros((10, 2), dtype=np.float32)
        logits[np.arange(10), y[30:]] = margins[len(calls) - 1]
        return logits

    monkeypatch.setattr(loop, "predict_logits", scripted)
    record = train(
        model,
        backbone,
        2,
        encoded.subset(range(30)),
        y[:30],
        TrainConfig(epochs=4, batch_size=8, learning_rate=5e-5, patience=None, progress=False),
        encoded.subset(range(30, 40)),
        y[30:],
    )
    assert record.epochs_run == 4  # patience None: never stops early
    assert record.best_epoch == 2
    losses = [h["val_loss"] for h in record.history]
    assert int(np.argmin(losses)) + 1 == 2


def test_real_early_stopping_with_a_diverging_learning_rate(tiny_model_dir):
    clf = make(
        tiny_model_dir,
        strategy="freeze",
        k=0,
        epochs=12,
        patience=1,
        learning_rate=1.0,
        head_learning_rate=1.0,
        validation_fraction=0.25,
    ).fit(X, Y)
    record = clf.fit_record_
    history = record["history"]
    assert record["epochs_run"] < 12, "patience=1 should stop a diverging run early"
    assert len(history) == record["epochs_run"]
    assert [h["epoch"] for h in history] == list(range(1, record["epochs_run"] + 1))
    for entry in history:
        assert {"epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_mcc"} <= set(entry)
        assert 0 <= entry["val_accuracy"] <= 1
    scores = [(h["val_accuracy"], -h["val_loss"]) for h in history]
    assert record["best_epoch"] == scores.index(max(scores)) + 1
    assert record["epochs_run"] - record["best_epoch"] == 1  # stopped after exactly `patience` bad epochs
    assert record["examples_seen"] == 30 * record["epochs_run"]  # 10 of 40 held out


def test_validation_history_and_best_epoch_on_a_learnable_task(tiny_model_dir):
    clf = make(
        tiny_model_dir, strategy="freeze", k=1, epochs=5, patience=None, learning_rate=3e-3, validation_fraction=0.25
    ).fit(X, Y)
    record = clf.fit_record_
    assert record["epochs_run"] == 5 and len(record["history"]) == 5
    scores = [(h["val_accuracy"], -h["val_loss"]) for h in record["history"]]
    assert record["best_epoch"] == scores.index(max(scores)) + 1


def test_without_validation_the_last_epoch_is_kept(tiny_model_dir):
    clf = make(tiny_model_dir, strategy="freeze", k=1, epochs=3).fit(X, Y)
    record = clf.fit_record_
    assert record["epochs_run"] == 3 and record["best_epoch"] == 3
    assert all(set(h) == {"epoch", "train_loss", "examples", "distinct_examples"} for h in record["history"])


# -- budgets and the record ----------------------------------------------------------------------------


def test_max_steps_and_the_counts_of_what_was_seen(tiny_model_dir, monkeypatch):
    served = []
    original = loop.batch_order

    def spy(lengths, batch_size, rng, grouped):
        batches = original(lengths, batch_size, rng, grouped)
        served.append((list(lengths), batches))
        return batches

    monkeypatch.setattr(loop, "batch_order", spy)
    clf = make(tiny_model_dir, strategy="freeze", k=1, epochs=1, max_steps=7).fit(X, Y)
    record = clf.fit_record_
    assert record["steps"] == 7
    assert record["epochs_run"] == 2  # 5 steps per epoch, so the budget runs into a second epoch
    consumed = [b for _, batches in served for b in batches][:7]
    lengths = served[0][0]
    assert record["examples_seen"] == sum(len(b) for b in consumed) == 7 * 8
    assert record["tokens_seen"] == sum(lengths[i] for b in consumed for i in b)
    encoded = clf.backbone_.encode(X, 256)
    assert lengths == encoded.lengths

    assert record["seconds"] > 0 and record["seconds"] <= clf.fit_seconds_
    assert record["peak_memory_bytes"] > 0
    assert record["device"] == "cpu"
    assert record["total_parameters"] == sum(p.numel() for p in clf.predictor_.network.parameters())
    assert record["trainable_parameters"] == sum(
        p.numel() for p in clf.predictor_.network.parameters() if p.requires_grad
    )
    assert record["prefix_seconds"] > 0  # k=1: the prefix cache ran
    assert record["seed"] == 0


def test_full_epochs_see_every_example_and_token(tiny_model_dir):
    clf = make(tiny_model_dir, strategy="freeze", k=0, epochs=2).fit(X, Y)
    record = clf.fit_record_
    lengths = clf.backbone_.encode(X, 256).lengths
    assert record["steps"] == 2 * 5
    assert record["examples_seen"] == 2 * len(X)
    assert record["tokens_seen"] == 2 * sum(lengths)
    assert record["prefix_seconds"] == 0  # k=0: nothing to cache


def test_max_steps_in_setfit(tiny_model_dir):
    clf = make(tiny_model_dir, strategy="setfit", num_iterations=5, max_steps=3).fit(X, Y)
    record = clf.fit_record_
    assert record["steps"] == 3
    assert record["examples_seen"] == 3 * 8 * 2  # 8 pairs per batch, two texts each
    assert record["peak_memory_bytes"] > 0 and record["device"] == "cpu"


# -- class weights --------------------------------------------------------------------------------------


def test_balanced_class_weights():
    y = np.array([0, 0, 0, 1])
    weights = class_weights(y, 3, "balanced", torch.device("cpu"))
    # n / (n_classes * count); a class absent from y counts as 1
    torch.testing.assert_close(weights, torch.tensor([4 / 9, 4 / 3, 4 / 3]))
    assert class_weights(y, 3, None, torch.device("cpu")) is None
    even = class_weights(np.array([0, 1, 0, 1]), 2, "balanced", torch.device("cpu"))
    torch.testing.assert_close(even, torch.ones(2))


def test_class_weight_reaches_the_loss(tiny_model_dir, monkeypatch):
    seen = []
    original = torch.nn.functional.cross_entropy

    def spy(*args, weight=None, **kwargs):  # the weights of every training step's loss
        seen.append(None if weight is None else weight.clone())
        return original(*args, weight=weight, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    texts, labels = X[:16], [0] * 12 + [1] * 4
    balanced = make(tiny_model_dir, strategy="freeze", k=1, max_steps=4, class_weight="balanced").fit(texts, labels)
    plain = make(tiny_model_dir, strategy="freeze", k=1, max_steps=4).fit(texts, labels)
    assert len(seen) == 8  # 4 steps each, no validation
    for weight in seen[:4]:
        torch.testing.assert_close(weight, torch.tensor([16 / 24, 16 / 8]))
    assert seen[4:] == [None] * 4
    assert not np.allclose(balanced.predict_proba(X_TEST), plain.predict_proba(X_TEST))


# -- length-grouped batches -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "batch_size"), [(1, 4), (10, 4), (37, 8), (1000, 4)])
def test_length_grouped_order_covers_every_index_once(n, batch_size):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=n).tolist()
    batches = length_grouped_order(lengths, batch_size, np.random.default_rng(1))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in batches)
    window = grouping_window(n, batch_size)
    assert len(batches) == sum(-(-len(range(s, min(s + window, n))) // batch_size) for s in range(0, n, window))


def test_a_small_training_set_gets_new_batches_every_epoch_as_transformers_groups_by_length():
    # transformers' LengthGroupedSampler: megabatches of batch_size x min(n // (4 x batch_size), 50)
    assert [grouping_window(n, 32) for n in (40, 127, 128, 1000, 6400, 100_000)] == [32, 32, 32, 224, 1600, 1600]
    lengths = np.random.default_rng(0).permutation(1000).tolist()  # no two alike: ties do not reshuffle
    rng = np.random.default_rng(1)
    epochs = [{tuple(sorted(b)) for b in length_grouped_order(lengths, 32, rng)} for _ in range(2)]
    # one window of 50 batches sorted all 1,000 texts: every batch came back the next epoch
    assert len(epochs[0] & epochs[1]) <= 2


def test_length_grouped_batches_are_homogeneous_and_shuffled():
    lengths = np.random.default_rng(0).integers(1, 200, size=1000).tolist()
    batches = length_grouped_order(lengths, 8, np.random.default_rng(1))

    def mean_spread(bs):
        return np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in bs])

    order = np.random.default_rng(2).permutation(1000).tolist()
    random_batches = [order[i : i + 8] for i in range(0, 1000, 8)]
    assert mean_spread(batches) < 0.1 * mean_spread(random_batches)
    # the batches themselves come in random order, not longest first
    firsts = [max(lengths[i] for i in b) for b in batches]
    assert firsts != sorted(firsts, reverse=True) and firsts != sorted(firsts)
    # seeded
    assert length_grouped_order(lengths, 8, np.random.default_rng(1)) == batches
    assert length_grouped_order(lengths, 8, np.random.default_rng(3)) != batches


# -- SetFit pairs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_iterations", [1, 3])
@pytest.mark.parametrize("batch_size", [4, 7, 64])
def test_setfit_pairs_are_half_positive_half_negative(num_iterations, batch_size):
    labels = np.array([0, 0, 0, 1, 1, 2, 0, 1])  # class 2 has a single member
    batches = list(pair_batches(labels, num_iterations, batch_size, np.random.default_rng(0)))
    left = np.concatenate([b[0] for b in batches])
    right = np.concatenate([b[1] for b in batches])
    target = np.concatenate([b[2] for b in batches])
    total = count_pairs(labels, num_iterations)
    assert total == 2 * len(labels) * num_iterations
    assert len(left) == len(right) == len(target) == total
    assert all(len(b[0]) == batch_size for b in batches[:-1]) and 1 <= len(batches[-1][0]) <= batch_size
    assert target.dtype == np.float32 and set(target.tolist()) == {0.0, 1.0}
    positive, negative = target == 1.0, target == 0.0
    assert positive.sum() == negative.sum() == total // 2
    assert np.all(labels[left[positive]] == labels[right[positive]])
    assert np.all(labels[left[negative]] != labels[right[negative]])
    singleton = labels[left] == 2
    assert np.all(left[positive & ~singleton] != right[positive & ~singleton])  # a partner, not itself
    assert np.all(right[positive & singleton] == left[positive & singleton])  # its only class member
    # every example is paired once with each kind per round
    for i in range(len(labels)):
        assert (left[positive] == i).sum() == num_iterations
        assert (left[negative] == i).sum() == num_iterations


def test_setfit_pairs_are_seeded_and_varied():
    labels = np.array([0, 1] * 10)

    def draw(seed):
        return [tuple(map(tuple, b)) for b in pair_batches(labels, 2, 8, np.random.default_rng(seed))]

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)


class CountingRng:
    """A numpy generator that counts draws and refuses to draw far more than one batch needs."""

    def __init__(self, seed: int, limit: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.calls = 0
        self.limit = limit

    def _count(self) -> None:
        self.calls += 1
        if self.calls > self.limit:
            raise AssertionError("pair_batches drew far more than one batch needs: it is not lazy")

    def permutation(self, n):
        self._count()
        return self.rng.permutation(n)

    def integers(self, *args, **kwargs):
        self._count()
        return self.rng.integers(*args, **kwargs)


def test_setfit_pairs_are_drawn_lazily():
    import inspect

    labels = np.array([0, 1, 2, 0, 1, 2] * 5)
    rng = CountingRng(0, limit=200)
    batches = pair_batches(labels, 10**12, 4, rng)
    assert inspect.isgenerator(batches)
    assert rng.calls == 0  # nothing drawn before the first batch is asked for
    first = next(batches)
    assert len(first[0]) == 4
    assert rng.calls <= 10  # one permutation, a few partner draws: O(batch) work
    second = next(batches)
    assert len(second[0]) == 4
    # with a real generator: a trillion rounds, and the first batch is still immediate
    start = time.perf_counter()
    next(pair_batches(labels, 10**12, 16, np.random.default_rng(0)))
    assert time.perf_counter() - start < 1.0


# -- bundles of trained models ---------------------------------------------------------------------

BUNDLE_CASES = [
    ("freeze", dict(k=1)),
    ("full", {}),
    ("reinit", dict(m=1)),
    ("reinit", dict(m=1, k=1)),
    ("lora", dict(r=2)),
    ("lora", dict(r=2, top_blocks=1)),
    ("setfit", dict(num_iterations=1)),
    ("setfit", dict(num_iterations=1, k=1)),
]


def saved_tensor_names(path) -> set[str]:
    return set(load_file(str(path / "trained.safetensors")))


@pytest.mark.parametrize("family", ["bert", "gpt2"])
@pytest.mark.parametrize(
    ("strategy", "params"),
    BUNDLE_CASES,
    ids=[f"{s}-{'-'.join(f'{k}{v}' for k, v in p.items())}" for s, p in BUNDLE_CASES],
)
def test_trained_bundles_round_trip_to_identical_probabilities(
    strategy, params, family, tiny_model_dir, tmp_path, monkeypatch
):
    clf = make(tiny_model_dir, family, strategy=strategy, seed=5, max_steps=3, learning_rate=1e-2, **params).fit(X, Y)
    expected = clf.predict_proba(X_TEST)
    path = clf.save(tmp_path / "bundle")
    files = sorted(p.name for p in path.rglob("*"))
    assert all(name.endswith((".json", ".safetensors")) for name in files), files
    assert "trained.safetensors" in files and "unfreeze.json" in files

    forget_backbones()  # reload the base model from disk
    loaded = Classifier.load(path, device="cpu")
    assert loaded.backbone_.model is not clf.backbone_.model
    assert np.array_equal(loaded.predict_proba(X_TEST), expected)
    assert np.array_equal(loaded.predict(X_TEST), clf.predict(X_TEST))

    # the bundle holds what training changed, nothing else
    names = saved_tensor_names(path)
    trained_body = {n for n, p in clf.backbone_.model.named_parameters() if p.requires_grad}
    if strategy == "setfit":
        assert names == trained_body
    else:
        assert names == {f"body.{n}" for n in trained_body} | {"head.weight", "head.bias"}


@pytest.mark.parametrize("top_blocks", [None, 1])
def test_lora_bundle_holds_only_adapters_and_head(top_blocks, tiny_model_dir, tmp_path):
    clf = make(tiny_model_dir, strategy="lora", r=2, top_blocks=top_blocks, max_steps=2).fit(X, Y)
    path = clf.save(tmp_path / "lora")
    saved = load_file(str(path / "trained.safetensors"))
    adapters = {n for n in saved if ".lora_A." in n or ".lora_B." in n}
    assert set(saved) - adapters == {"head.weight", "head.bias"}
    blocks = [1] if top_blocks else [0, 1]
    assert len(adapters) == 2 * 3 * len(blocks)  # A and B for query, key, value in each adapted block
    assert {int(n.split(".encoder.layer.")[1].split(".")[0]) for n in adapters} == set(blocks)
    assert all(t.shape[0] == 2 or t.shape[1] == 2 for n, t in saved.items() if n in adapters)  # rank 2
    assert saved["head.weight"].shape == (2, 32)
    # the base weights are not copied: the bundle is small
    assert sum(t.numel() for t in saved.values()) == clf.fit_record_["trainable_parameters"]


# -- learning ---------------------------------------------------------------------------------------


def test_full_fine_tuning_learns_a_word_level_task(tiny_model_dir):
    texts, labels = sentiment_task_varied(48, seed=3)
    clf = make(tiny_model_dir, strategy="freeze", k=0, epochs=8, learning_rate=3e-3, seed=0).fit(texts, labels)
    assert clf.score(texts, labels) >= 0.85
    losses = [h["train_loss"] for h in clf.fit_record_["history"]]
    assert losses[-1] < 0.8 * losses[0]


# -- the recorded training loss is the mean over the batches that ran --------------------------------


@pytest.mark.parametrize(
    ("strategy", "params"),
    [
        ("freeze", dict(k=1, epochs=1, max_steps=3)),
        ("freeze", dict(k=1, epochs=2)),
        ("setfit", dict(num_iterations=2, max_steps=3)),
        ("setfit", dict(num_iterations=1, epochs=2)),
    ],
    ids=["freeze-budget", "freeze-epochs", "setfit-budget", "setfit-epochs"],
)
def test_history_train_loss_is_the_mean_of_the_batch_losses(strategy, params, tiny_model_dir, monkeypatch):
    losses = []
    functional = torch.nn.functional
    originals = {name: getattr(functional, name) for name in ("cross_entropy", "mse_loss")}

    def recorder(name):
        def wrapped(*args, **kwargs):
            value = originals[name](*args, **kwargs)
            if torch.is_grad_enabled() and value.requires_grad:  # training steps, not validation
                losses.append(value.item())
            return value

        return wrapped

    for name in originals:
        monkeypatch.setattr(functional, name, recorder(name))
    clf = make(tiny_model_dir, strategy=strategy, learning_rate=1e-3, **params).fit(X, Y)
    record = clf.fit_record_
    assert len(losses) == record["steps"]
    per_epoch = -(-count_pairs(np.asarray(Y), params["num_iterations"]) // 8) if strategy == "setfit" else 5
    got = [h["train_loss"] for h in record["history"]]
    expected = [float(np.mean(losses[i : i + per_epoch])) for i in range(0, len(losses), per_epoch)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
