"""The tokens task trains and predicts through the product's own loop: a tiny BERT learns a word-level tagging
rule, the frozen prefix is cached per window, long sentences come back with one tag per word, the validation
split is by sentence, a fitted tagger round-trips through a bundle, and what the task cannot take is refused in
one line."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import FILLER
from unfreeze import Classifier
from unfreeze.errors import UnfreezeError
from unfreeze.features.alignment import align_words
from unfreeze.tasks import Tokens

NAMES = ["john", "mary", "paul", "anna"]
# lr and epochs enough for a tiny random model (hidden 32, 2 blocks) to learn 24 sentences
RATES = dict(learning_rate=3e-3, head_learning_rate=3e-2)


def tagged(n: int, seed: int, length: tuple[int, int] = (4, 8)) -> tuple[list[list[str]], list[list[str]]]:
    """Filler sentences with one name: a word of NAMES is B-PER, the word after it ("smith") I-PER, others O."""
    rng = np.random.default_rng(seed)
    sentences, tags = [], []
    for _ in range(n):
        words = [str(w) for w in rng.choice(FILLER, size=int(rng.integers(*length)))]
        row = ["O"] * len(words)
        at = int(rng.integers(0, len(words) + 1))
        words[at:at] = [str(rng.choice(NAMES)), "smith"]
        row[at:at] = ["B-PER", "I-PER"]
        sentences.append(words)
        tags.append(row)
    return sentences, tags


def tagger(tiny_model_dir, **params) -> Classifier:
    common = dict(model=tiny_model_dir("bert"), batch_size=8, progress=False, device="cpu", cache=False)
    return Classifier(task="tokens", **{**common, **params})


@pytest.mark.parametrize(
    ("strategy", "floor"),
    # measured (24 sentences, 15 epochs, seeds 0-2): freeze k=1 entity F1 0.80-0.83, full 1.0
    [(dict(strategy="freeze", k=1), 0.75), (dict(strategy="full"), 0.95)],
)
def test_a_tiny_bert_learns_a_word_level_tagging_rule(strategy, floor, tiny_model_dir):
    X, y = tagged(24, seed=0)
    clf = tagger(tiny_model_dir, epochs=15, validation_fraction=0.0, **strategy, **RATES).fit(X, y)
    predicted = clf.predict(X)
    assert [len(p) for p in predicted] == [len(s) for s in X]
    assert {t for row in predicted for t in row} <= {"B-PER", "I-PER", "O"}
    assert list(clf.classes_) == ["B-PER", "I-PER", "O"]
    metrics = clf.evaluate(X, y)
    assert clf.score(X, y) == metrics["entity_f1"] >= floor
    assert set(metrics) == {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"}
    losses = [h["train_loss"] for h in clf.fit_record_["history"]]
    assert losses[-1] < 0.3 * losses[0]
    # the probabilities: one row of three per word, summing to one
    proba = clf.predict_proba(X[:2])
    assert [p.shape for p in proba] == [(len(X[0]), 3), (len(X[1]), 3)]
    assert all(np.allclose(p.sum(axis=1), 1.0) for p in proba)


# the other strategies the shared loop trains (tiny-model rates as in test_task_training.py); measured entity F1
# on the training sentences, seed 0: reinit 1.0, lora 0.98, truncate 1.0, gradual 1.0, subspace 1.0
OTHERS = {
    "reinit": dict(strategy="reinit", m=1, **RATES),
    "lora": dict(strategy="lora", r=4, learning_rate=3e-2, head_learning_rate=1e-1),
    "truncate": dict(strategy="truncate", j=1, **RATES),
    "gradual": dict(strategy="gradual", **RATES),
    "subspace": dict(strategy="subspace", d=64, learning_rate=3e-2, head_learning_rate=1e-1),
}


@pytest.mark.parametrize("name", list(OTHERS))
def test_every_strategy_of_the_shared_loop_learns_the_tagging_rule(name, tiny_model_dir):
    X, y = tagged(24, seed=0)
    clf = tagger(tiny_model_dir, epochs=15, validation_fraction=0.0, **OTHERS[name]).fit(X, y)
    assert clf.score(X, y) >= 0.85
    losses = [h["train_loss"] for h in clf.fit_record_["history"]]
    assert losses[-1] < 0.3 * losses[0]


def test_freeze_caches_the_frozen_prefix_of_the_windows_and_predicts_as_without_it(tiny_model_dir):
    X, y = tagged(24, seed=0)
    params = dict(strategy="freeze", k=1, epochs=4, validation_fraction=0.0, **RATES)
    cached = tagger(tiny_model_dir, **params).fit(X, y)
    plain = tagger(tiny_model_dir, prefix_cache=False, **params).fit(X, y)
    assert cached.fit_record_["prefix_seconds"] > 0 and plain.fit_record_["prefix_seconds"] == 0
    for a, b in zip(cached.predict_proba(X), plain.predict_proba(X)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert cached.predict(X) == plain.predict(X)


def test_a_sentence_longer_than_max_length_gets_one_tag_per_word(tiny_model_dir):
    X, y = tagged(24, seed=0)
    long_words, long_tags = tagged(1, seed=5, length=(60, 61))
    clf = tagger(tiny_model_dir, max_length=16, strategy="full", epochs=2, validation_fraction=0.0, **RATES)
    clf.fit([*X, *long_words], [*y, *long_tags])
    windows = align_words(clf.backbone_.tokenizer, long_words, None, 16)
    assert windows.n_windows > 4  # the sentence is read through several windows, none cut
    predicted = clf.predict([*long_words, X[0]])
    assert [len(p) for p in predicted] == [len(long_words[0]), len(X[0])]
    # evaluate reads the same one prediction per word
    right = np.mean([a == b for a, b in zip(predicted[0], long_tags[0])])
    assert clf.evaluate(long_words, long_tags)["token_accuracy"] == pytest.approx(right)


def test_the_validation_split_is_by_sentence(tiny_model_dir, monkeypatch):
    import unfreeze.training.loop as loop

    seen: dict[str, Any] = {}
    real = loop.train

    def spy(model, backbone, frozen_k, train_encoded, y_train, config, val_encoded=None, y_val=None, **kw):
        seen.update(train=train_encoded.input_ids, val=val_encoded.input_ids, y_val=y_val)
        return real(model, backbone, frozen_k, train_encoded, y_train, config, val_encoded, y_val, **kw)

    monkeypatch.setattr(loop, "train", spy)
    X, y = tagged(24, seed=0, length=(20, 30))  # 22-31 words: several windows of 16 tokens each
    clf = tagger(tiny_model_dir, max_length=16, strategy="freeze", k=1, epochs=1, validation_fraction=0.25, **RATES)
    clf.fit(X, y)
    task = Tokens()
    _, val_sentences = task.split(task.fit_labels(y), 0.25, 0)
    assert 0 < len(val_sentences) < 24
    windows = align_words(clf.backbone_.tokenizer, X, None, 16)
    by_sentence = [windows.window_ids(i).tolist() for i in range(windows.n_windows)]
    expected_val = [w for i, w in enumerate(by_sentence) if windows.sentence[i] in set(val_sentences.tolist())]
    expected_train = [w for i, w in enumerate(by_sentence) if windows.sentence[i] not in set(val_sentences.tolist())]
    assert len(expected_val) > len(val_sentences)  # sentences of several windows, all on one side
    assert seen["val"] == expected_val and seen["train"] == expected_train
    # the validation targets: every window's tag ids at its first sub-words, -100 elsewhere
    assert len(seen["y_val"]) == len(expected_val)
    history = clf.fit_record_["history"]
    assert {"val_loss", "val_entity_f1"} <= set(history[0])


def test_what_the_tokens_task_cannot_take_is_refused_in_one_line(tiny_model_dir):
    X, y = tagged(8, seed=0)
    with pytest.raises(
        UnfreezeError, match=r"^Strategy 'setfit' cannot fit a tokens task; strategies that can: .*freeze"
    ):
        tagger(tiny_model_dir, strategy="setfit").fit(X, y)
    bad = [list(row) for row in y]
    bad[3] = bad[3][:-1]
    with pytest.raises(UnfreezeError, match=r"^Row 3 has \d+ words in X but \d+ tags in y; give one tag per word\.$"):
        tagger(tiny_model_dir, strategy="full").fit(X, bad)
    with pytest.raises(UnfreezeError, match=r"^X\[1\] is str 'john smith'; the tokens task takes a list of words"):
        tagger(tiny_model_dir, strategy="full").fit([X[0], "john smith"], y[:2])
    with pytest.raises(UnfreezeError, match=r"^X\[0\] is an empty sentence"):
        tagger(tiny_model_dir, strategy="full").fit([[], X[1]], [[], y[1]])


@pytest.mark.parametrize("name", ["freeze", "subspace"])  # the network predictor, and one of its own
def test_a_tagger_round_trips_through_a_bundle(name, tiny_model_dir, tmp_path):
    X, y = tagged(24, seed=0)
    params = dict(strategy="freeze", k=1, **RATES) if name == "freeze" else OTHERS[name]
    clf = tagger(tiny_model_dir, epochs=3, validation_fraction=0.0, **params).fit(X, y)
    back = Classifier.load(clf.save(tmp_path / "tagger"))
    assert isinstance(back.task_, Tokens) and list(back.classes_) == ["B-PER", "I-PER", "O"]
    for a, b in zip(clf.predict_proba(X), back.predict_proba(X)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert back.predict(X) == clf.predict(X) and back.score(X, y) == clf.score(X, y)
    if name == "freeze":
        from unfreeze.export.exporter import export_bundle

        with pytest.raises(UnfreezeError, match=r"^Cannot export .*: a tokens model has no ONNX export yet"):
            export_bundle(tmp_path / "tagger")


def test_a_given_validation_set_picks_the_best_epoch_by_entity_f1_and_auto_searches_rates(tiny_model_dir):
    X, y = tagged(24, seed=0)
    X_val, y_val = tagged(8, seed=1, length=(8, 12))  # longer than the training sentences: targets padded apart
    clf = tagger(tiny_model_dir, strategy="full", epochs=3, learning_rate=3e-3, head_learning_rate=3e-2)
    clf.fit(X, y, validation=(X_val, y_val))
    history = clf.fit_record_["history"]
    best = history[clf.fit_record_["best_epoch"] - 1]
    assert best["val_entity_f1"] == max(h["val_entity_f1"] for h in history)
    # one window per sentence: the validation score at the first sub-words is the score of the words
    assert clf.evaluate(X_val, y_val)["entity_f1"] == pytest.approx(best["val_entity_f1"])
    searched = tagger(tiny_model_dir, strategy="freeze", k=1, epochs=2).fit(X, y)  # learning_rate="auto"
    assert searched.fit_record_["tuned"] and searched.fit_record_["validation"]["metric"] == "entity_f1"
    assert len(searched.fit_record_["lr_search"]) == 3
