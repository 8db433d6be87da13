"""Every strategy that trains a network fits multi-label and regression tasks through the Task object:
each learns a word-level task on tiny models, the loss is the task's (and its class weights), validation
scores and the best epoch are the task's, and the learning-rate search picks by the task's score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FILLER
from unfreeze import Classifier, Regressor
from unfreeze.errors import UnfreezeError
from unfreeze.strategies import FitResult
from unfreeze.strategies.freeze import Freeze
from unfreeze.tasks import make_task
from unfreeze.training.contrastive import count_pairs, pair_batches

SPORT = ["football", "tennis", "goal"]
FOOD = ["pizza", "bread", "cheese"]
GOOD = ["good", "great", "excellent"]
LABEL_SETS = [(), ("sport",), ("food",), ("food", "sport")]


def with_words(rng: np.random.Generator, groups: list[list[str]]) -> str:
    """3-5 filler words with one word of each group in ``groups`` inserted at random places."""
    words = list(rng.choice(FILLER, size=int(rng.integers(3, 6))))
    for group in groups:
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(group)))
    return " ".join(words)


def multilabel_data(n: int, seed: int, sets: list[tuple] = LABEL_SETS) -> tuple[list[str], list[tuple]]:
    """Texts whose labels are the topics of the words in them: a sport word, a food word, both or neither."""
    rng = np.random.default_rng(seed)
    labels = [sets[i % len(sets)] for i in range(n)]
    return [with_words(rng, [SPORT if t == "sport" else FOOD for t in chosen]) for chosen in labels], labels


def regression_data(n: int, seed: int) -> tuple[list[str], list[float]]:
    """Texts whose score is how many praise words they hold (0 to 3)."""
    rng = np.random.default_rng(seed)
    scores = [float(i % 4) for i in range(n)]
    return [with_words(rng, [GOOD] * int(s)) for s in scores], scores


# lr and epochs enough for a tiny random model (hidden 32, 2 blocks) to learn 16 examples
NETWORKS = {
    "freeze-k1": dict(strategy="freeze", k=1, learning_rate=3e-3, head_learning_rate=3e-2),
    "full": dict(strategy="freeze", k=0, learning_rate=3e-3, head_learning_rate=3e-2),
    "reinit": dict(strategy="reinit", m=1, learning_rate=3e-3, head_learning_rate=3e-2),
    "lora": dict(strategy="lora", r=4, learning_rate=3e-2, head_learning_rate=3e-2),
    "truncate": dict(strategy="truncate", j=1, learning_rate=3e-3, head_learning_rate=3e-2),
    "gradual": dict(strategy="gradual", learning_rate=3e-3, head_learning_rate=3e-2),
    "mix": dict(strategy="mix", learning_rate=3e-2),
    "bilstm": dict(strategy="bilstm", token_layers="all", learning_rate=1e-2),
    "subspace": dict(strategy="subspace", d=64, learning_rate=3e-2, head_learning_rate=1e-1),
}


def estimator(tiny_model_dir, task: str, **params):
    common = dict(model=tiny_model_dir("bert"), batch_size=8, progress=False, device="cpu", cache=False, **params)
    return Regressor(**common) if task == "regression" else Classifier(task=task, **common)


# -- every network strategy learns each task ---------------------------------------------------------


@pytest.mark.parametrize("name", list(NETWORKS))
def test_each_network_strategy_learns_a_multilabel_task(name, tiny_model_dir):
    texts, labels = multilabel_data(16, seed=0)
    clf = estimator(tiny_model_dir, "multilabel", epochs=20, validation_fraction=0.0, **NETWORKS[name])
    clf.fit(texts, labels)
    assert clf.predict_proba(texts).shape == (16, 2) and list(clf.classes_) == ["food", "sport"]
    predicted = clf.predict(texts)
    assert all(isinstance(p, tuple) and set(p) <= {"food", "sport"} for p in predicted)
    # predicting every label for every text: precision 1/2, recall 1, micro-F1 2/3
    baseline = clf.task_.scores_of_outputs(clf.task_.encode(labels), np.ones((16, 2)))["micro_f1"]
    assert baseline == pytest.approx(2 / 3)
    assert clf.evaluate(texts, labels)["micro_f1"] >= 0.72
    losses = [h["train_loss"] for h in clf.fit_record_["history"]]
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_each_network_strategy_learns_a_regression_task(name, tiny_model_dir):
    texts, scores = regression_data(16, seed=0)
    reg = estimator(tiny_model_dir, "regression", epochs=20, validation_fraction=0.0, **NETWORKS[name])
    reg.fit(texts, scores)
    predicted = reg.predict(texts)
    assert predicted.shape == (16,) and predicted.dtype == np.float64
    metrics = reg.evaluate(texts, scores)
    assert metrics["spearman"] > 0.8
    # the head learns standardised scores; predictions come back in the scores' units (0..3, mean 1.5)
    assert abs(predicted.mean() - 1.5) < 0.5 and metrics["rmse"] < float(np.std(scores))
    assert reg.fit_record_["history"][-1]["train_loss"] < 0.5 * reg.fit_record_["history"][0]["train_loss"]


# -- validation: the task's scores in the history, its selection picks the best epoch --------------------


@pytest.mark.parametrize("name", ["freeze-k1", "mix"])  # the shared loop and the loop on cached states
def test_regression_history_scores_the_task_and_keeps_its_best_epoch(name, tiny_model_dir):
    texts, scores = regression_data(16, seed=0)
    val_texts, val_scores = regression_data(8, seed=1)
    reg = estimator(tiny_model_dir, "regression", epochs=6, **NETWORKS[name])
    reg.fit(texts, scores, validation=(val_texts, val_scores))
    history = reg.fit_record_["history"]
    assert all(
        {f"val_{m}" for m in ("spearman", "pearson", "rmse", "mae", "r2")} | {"val_loss"} <= set(h) for h in history
    )
    best = max(range(len(history)), key=lambda i: (history[i]["val_spearman"], -history[i]["val_loss"]))
    assert reg.fit_record_["best_epoch"] == best + 1
    # the kept weights are the best epoch's: their validation scores are the history's (float scores, not
    # class indices: the held-out scores kept their values)
    targets = reg.task_.encode(val_scores)
    assert targets.dtype == np.float32 and sorted(set(targets.tolist())) != [0.0]
    logits = reg.predictor_.logits(val_texts)
    again = reg.task_.scores(targets, logits)
    for metric, value in again.items():
        assert history[best][f"val_{metric}"] == pytest.approx(value, abs=1e-5)
    assert history[best]["val_loss"] == pytest.approx(float(np.mean((logits[:, 0] - targets) ** 2)), rel=1e-5)


def test_multilabel_history_has_every_metric_and_its_binary_cross_entropy(tiny_model_dir):
    texts, labels = multilabel_data(16, seed=0)
    val_texts, val_labels = multilabel_data(8, seed=1)
    clf = estimator(tiny_model_dir, "multilabel", epochs=4, **NETWORKS["full"])
    clf.fit(texts, labels, validation=(val_texts, val_labels))
    history = clf.fit_record_["history"]
    names = {"val_micro_f1", "val_macro_f1", "val_samples_f1", "val_subset_accuracy", "val_hamming_loss", "val_loss"}
    assert all(names <= set(h) for h in history)
    best = max(range(len(history)), key=lambda i: (history[i]["val_micro_f1"], -history[i]["val_loss"]))
    assert clf.fit_record_["best_epoch"] == best + 1
    targets = clf.task_.encode(val_labels)
    logits = torch.from_numpy(clf.predictor_.logits(val_texts))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(targets))
    assert history[best]["val_loss"] == pytest.approx(float(bce), rel=1e-5)


# -- the learning-rate search chooses by the task's score -------------------------------------------------


class ScriptedPredictor:
    """Raw outputs chosen per text: what a fit at one learning rate would have predicted."""

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs

    def logits(self, inputs) -> np.ndarray:
        return np.stack([self.outputs[text] for text in inputs]).astype(np.float32)


def scripted_fits(monkeypatch, by_rate: dict[float, dict[str, np.ndarray]]) -> list[float]:
    """Make every freeze fit return the scripted predictor of its learning rate; the rates it was fitted at."""
    fitted: list[float] = []

    def fit(self, context, inputs, y):
        rate = context.training.learning_rate
        fitted.append(rate)
        return FitResult(ScriptedPredictor(by_rate[rate]), {"epochs_run": 1, "best_epoch": 1})

    monkeypatch.setattr(Freeze, "fit", fit)
    return fitted


def test_the_rate_search_picks_the_better_spearman_not_the_lower_loss(tiny_model_dir, monkeypatch):
    texts, scores = regression_data(8, seed=0)
    val_texts, val_scores = regression_data(8, seed=1)
    targets = make_task("regression")
    targets.fit_labels(scores)
    truth = targets.encode(val_scores)
    # 1e-3: close to the truth but two texts of different scores swapped (low loss, Spearman < 1);
    # 1e-2: ten times the truth (a large loss, a perfect ranking)
    close = truth * 0.9
    swap = [int(np.argmax(truth == truth.min())), int(np.argmax(truth == np.sort(np.unique(truth))[1]))]
    close[swap] = close[swap[::-1]]
    by_rate = {
        1e-3: {t: np.array([v]) for t, v in zip(val_texts, close)},
        1e-2: {t: np.array([v]) for t, v in zip(val_texts, truth * 10)},
    }
    fitted = scripted_fits(monkeypatch, by_rate)
    reg = estimator(tiny_model_dir, "regression", strategy="freeze", k=1, learning_rate=[1e-3, 1e-2])
    reg.fit(texts, scores, validation=(val_texts, val_scores))
    assert fitted == [1e-3, 1e-2]
    record = reg.fit_record_
    low, high = record["lr_search"]
    assert low["val_loss"] < high["val_loss"] and low["val_spearman"] < high["val_spearman"] == pytest.approx(1.0)
    assert record["learning_rate"] == 1e-2
    assert all(t["val_score"] == t["val_spearman"] and "val_accuracy" not in t for t in record["lr_search"])
    assert record["validation"] == {
        "spearman": pytest.approx(1.0),
        "loss": pytest.approx(float(np.mean((truth * 10 - truth) ** 2)), rel=1e-5),
        "n": 8,
        "score": pytest.approx(1.0),
        "metric": "spearman",
    }


def test_the_rate_search_picks_the_better_micro_f1_for_multilabel(tiny_model_dir, monkeypatch):
    texts, labels = multilabel_data(8, seed=0)
    val_texts, val_labels = multilabel_data(8, seed=1)
    task = make_task("multilabel")
    task.fit_labels(labels)
    sign = task.encode(val_labels) * 2 - 1  # +1 where the label holds, -1 where not
    # 1e-3: every decision right but barely (logits +-0.1: a high loss); 1e-2: confident, one label wrong
    confident = sign * 6.0
    confident[0, 0] = -confident[0, 0]
    by_rate = {
        1e-3: {t: row for t, row in zip(val_texts, sign * 0.1)},
        1e-2: {t: row for t, row in zip(val_texts, confident)},
    }
    scripted_fits(monkeypatch, by_rate)
    clf = estimator(tiny_model_dir, "multilabel", strategy="freeze", k=1, learning_rate=[1e-3, 1e-2])
    clf.fit(texts, labels, validation=(val_texts, val_labels))
    low, high = clf.fit_record_["lr_search"]
    assert low["val_micro_f1"] == low["val_score"] == 1.0 > high["val_micro_f1"]
    assert low["val_loss"] > high["val_loss"]
    assert clf.fit_record_["learning_rate"] == 1e-3


# -- class weights: pos_weight for multi-label, refused for regression --------------------------------------


@pytest.mark.parametrize("name", ["freeze-k1", "mix"])
def test_balanced_class_weight_is_each_labels_pos_weight(name, tiny_model_dir, monkeypatch):
    seen = []
    original = torch.nn.functional.binary_cross_entropy_with_logits

    def spy(*args, pos_weight=None, **kwargs):
        seen.append(None if pos_weight is None else pos_weight.clone())
        return original(*args, pos_weight=pos_weight, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy_with_logits", spy)
    # food on 8 of 16 texts, sport on 4: pos_weight = negatives / positives = (1, 3)
    texts, labels = multilabel_data(16, seed=0, sets=[("food",), ("food", "sport"), (), ()])
    params = {**NETWORKS[name], "max_steps": 2, "validation_fraction": 0.0}
    estimator(tiny_model_dir, "multilabel", class_weight="balanced", **params).fit(texts, labels)
    assert len(seen) == 2
    for weight in seen:
        torch.testing.assert_close(weight, torch.tensor([1.0, 3.0]))
    seen.clear()
    estimator(tiny_model_dir, "multilabel", **params).fit(texts, labels)
    assert seen == [None, None]


def test_balanced_class_weight_is_refused_for_regression(tiny_model_dir):
    texts, scores = regression_data(8, seed=0)
    reg = estimator(tiny_model_dir, "regression", strategy="freeze", k=1, class_weight="balanced")
    with pytest.raises(UnfreezeError, match="class_weight='balanced' weighs classes; a regression task has none"):
        reg.fit(texts, scores)


# -- SetFit's pairs of multi-label targets ----------------------------------------------------------------


def test_multilabel_pairs_share_a_label_and_negatives_share_none():
    indicator = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 1]], np.float32)
    batches = list(pair_batches(indicator, 3, 5, np.random.default_rng(0)))
    left, right, target = (np.concatenate([b[i] for b in batches]) for i in range(3))
    shared = (indicator[left] * indicator[right]).sum(axis=1) > 0
    # as the setfit library pairs them: positive exactly when the two share a label (two empty sets share none)
    assert np.array_equal(shared, target == 1.0)
    # as many positives as negatives, one of each per example and round, as the library draws them: the two texts
    # without a label anchor no positive (they share no label), their turns go to labelled texts
    assert count_pairs(indicator, 3) == len(target) == 2 * 3 * len(indicator)
    assert (target == 1.0).sum() == (target == 0.0).sum() == 3 * len(indicator)
    positive_anchors = np.bincount(left[target == 1.0], minlength=len(indicator))
    assert positive_anchors[4] == positive_anchors[5] == 0 and positive_anchors[[0, 1, 2, 3, 6]].min() >= 3
    assert np.bincount(left[target == 0.0], minlength=len(indicator)).tolist() == [3] * len(indicator)
    assert np.all(left[target == 1.0] != right[target == 1.0])  # every labelled example has another partner here


def test_pairs_of_a_kind_no_two_texts_form_are_not_counted():
    nothing = np.zeros((4, 3), np.float32)  # no text has a label: no positive pair exists
    pairs = list(pair_batches(nothing, 2, 3, np.random.default_rng(0)))
    assert count_pairs(nothing, 2) == sum(len(b[0]) for b in pairs) == 8
    assert all(set(b[2].tolist()) == {0.0} for b in pairs)
    shared = np.array([[1, 0], [1, 1], [1, 0]], np.float32)  # every text shares label 0: no negative pair exists
    pairs = list(pair_batches(shared, 2, 4, np.random.default_rng(0)))
    assert count_pairs(shared, 2) == sum(len(b[0]) for b in pairs) == 6
    assert all(set(b[2].tolist()) == {1.0} for b in pairs)


# -- data-parallel steps: each rank's share of the task's loss adds up to one process's batch loss ----------


class FakeRank:
    """What ``_data_parallel_step`` reads of an Accelerator: this rank's index and the world size."""

    def __init__(self, index: int, world: int) -> None:
        self.process_index, self.num_processes = index, world
        self.backward = None


class RecordingRun:
    """Stands in for ``TrainingRun``: keeps the loss each rank's step would back-propagate."""

    def __init__(self) -> None:
        self.config = type("Config", (), {"compute": "fp32"})()
        self.losses: list[torch.Tensor] = []

    def step(self, loss, examples, tokens, backward=None, loss_value=None, epoch=0) -> None:
        self.losses.append(loss)


@pytest.mark.parametrize("kind", ["single", "multilabel", "regression"])
def test_data_parallel_shares_of_the_task_loss_give_the_one_process_gradient(kind, tiny_backbone):
    from unfreeze.training.loop import _data_parallel_step
    from unfreeze.training.model import TextClassificationModel

    backbone = tiny_backbone("bert")
    texts, labels = {
        "single": (multilabel_data(5, seed=0)[0], [0, 1, 1, 1, 0]),
        "multilabel": multilabel_data(5, seed=0, sets=[("food",), ("food", "sport"), ()]),
        "regression": regression_data(5, seed=0),
    }[kind]
    task = make_task(kind)
    fitted = task.fit_labels(labels)
    targets = task.target_tensor(fitted)
    # balanced weights where the task has them: a weighted batch is normalised by its total weight
    weight = task.loss_weight(fitted, "balanced" if task.weighs_classes else None, backbone.device)
    torch.manual_seed(0)
    model = TextClassificationModel(backbone, task.n_outputs, "mean", (2,)).eval()  # eval: no dropout
    encoded = backbone.encode(texts, 32)
    params = [*model.head.parameters(), *backbone.blocks[-1].parameters()]
    idx = list(range(5))  # uneven shares: rows 0, 2, 4 and rows 1, 3
    averaged = [torch.zeros_like(p) for p in params]
    for rank in range(2):
        run = RecordingRun()
        _data_parallel_step(
            run, model, FakeRank(rank, 2), backbone, encoded, idx, targets, task, weight, None, backbone.device,
            np.zeros(5), 0, 1,
        )  # fmt: skip
        for total, gradient in zip(averaged, torch.autograd.grad(run.losses[0], params)):
            total += gradient / 2  # DDP averages the ranks' gradients
    whole = task.batch_loss(model(backbone.collate(encoded, idx)), targets, weight)
    for got, expected in zip(averaged, torch.autograd.grad(whole, params)):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)


# -- bundles of the trained networks keep each task's head -------------------------------------------------


@pytest.mark.parametrize("name", ["freeze-k1", "mix", "bilstm", "subspace"])
def test_trained_networks_of_both_tasks_round_trip_through_a_bundle(name, tiny_model_dir, tmp_path):
    for kind, (texts, labels) in [("multilabel", multilabel_data(8, 0)), ("regression", regression_data(8, 0))]:
        fitted = estimator(tiny_model_dir, kind, epochs=1, validation_fraction=0.0, **NETWORKS[name])
        fitted.fit(texts, labels)
        fitted.save(tmp_path / kind)
        loaded = type(fitted).load(tmp_path / kind, device="cpu")
        assert loaded.task_.name == kind and loaded.predictor_.n_outputs() in (None, 2 if kind == "multilabel" else 1)
        np.testing.assert_allclose(loaded.outputs(texts), fitted.outputs(texts), atol=1e-6)


# -- batches by length: the task's choice, unless Training.group_by_length says -----------------------------


@pytest.mark.parametrize(
    ("task", "given", "grouped"),
    [
        ("single", None, True),
        ("regression", None, True),
        ("multilabel", None, False),  # label sets grow with length: batches of one length are of one kind
        ("multilabel", True, True),
        ("single", False, False),
    ],
)
@pytest.mark.parametrize("name", ["freeze-k1", "bilstm"])
def test_training_batches_are_grouped_by_length_as_the_task_or_the_setting_says(
    task, given, grouped, name, tiny_model_dir, monkeypatch
):
    from unfreeze.training import cached, loop, sampling

    served = []

    def spy(lengths, batch_size, rng, by_length):
        served.append(by_length)
        return sampling.batch_order(lengths, batch_size, rng, by_length)

    monkeypatch.setattr(loop, "batch_order", spy)
    monkeypatch.setattr(cached, "batch_order", spy)
    if task == "multilabel":
        texts, labels = multilabel_data(16, seed=0)
    elif task == "regression":
        texts, labels = regression_data(16, seed=0)
    else:
        texts, labels = multilabel_data(16, seed=0)
        labels = ["food" if "food" in chosen else "other" for chosen in labels]
    settings = dict(NETWORKS[name], epochs=1, validation_fraction=0.0)
    if given is not None:
        settings["group_by_length"] = given
    estimator(tiny_model_dir, task, **settings).fit(texts, labels)
    assert served and set(served) == {grouped}


def test_shuffled_batches_cover_every_index_once_and_ignore_length():
    from unfreeze.training.sampling import batch_order, length_grouped_order

    lengths = list(range(1, 201))
    batches = batch_order(lengths, 16, np.random.default_rng(0), grouped=False)
    assert sorted(i for b in batches for i in b) == list(range(200)) and [len(b) for b in batches][:-1] == [16] * 12
    grouped = batch_order(lengths, 16, np.random.default_rng(0), grouped=True)
    assert grouped == length_grouped_order(lengths, 16, np.random.default_rng(0))

    def spread(order):
        return np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in order])

    # shuffled batches mix lengths (a batch of 16 of 200 spans most of them); grouped ones are sorted in windows
    assert spread(batches) > 100 and spread(grouped) < 0.5 * spread(batches)
