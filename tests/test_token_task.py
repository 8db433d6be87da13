"""The tokens task (a tag per word): encoding, the loss that skips -100, outputs, scores, split, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unfreeze.errors import UnfreezeError
from unfreeze.tasks import task_names
from unfreeze.tasks.tokens import Tokens, entity_type

X = -100
Y = [["B-PER", "I-PER", "O"], ["O", "B-LOC"]]
# classes sorted: B-LOC=0, B-PER=1, I-PER=2, O=3


def fitted() -> tuple[Tokens, np.ndarray]:
    task = Tokens()
    return task, task.fit_labels(Y)


def test_offered():
    assert "tokens" in task_names()


def test_fit_and_encode():
    task, targets = fitted()
    assert task.classes_.tolist() == ["B-LOC", "B-PER", "I-PER", "O"]
    assert targets.tolist() == [[1, 2, 3], [3, 0, X]]
    assert targets.dtype == np.int64 and task.n_outputs == 4
    with pytest.raises(UnfreezeError, match=r"y_val tags 'B-MISC' are not among the tags it was fitted on"):
        task.encode([["B-MISC", "O"]], "y_val")
    assert task.encode([["B-MISC", "O"], ["I-MISC"]], unseen=True).tolist() == [[4, 3], [5, X]]
    assert task.unseen_ == ["B-MISC", "I-MISC"]
    with pytest.raises(UnfreezeError, match=r"y has a single tag \('O'\); a tagger needs at least two"):
        Tokens().fit_labels([["O", "O"]])
    with pytest.raises(UnfreezeError, match=r"y\[1\] is 'O'; the tokens task takes a list of tags per sentence"):
        Tokens().fit_labels([["O"], "O"])


def test_loss_skips_ignored_positions():
    task, targets = fitted()
    logits = torch.tensor(np.random.default_rng(0).normal(size=(2, 3, 4)), dtype=torch.float32)
    per_sentence = task.loss(logits, task.target_tensor(targets))
    log_p = torch.log_softmax(logits, dim=-1)
    expected = [-(log_p[0, 0, 1] + log_p[0, 1, 2] + log_p[0, 2, 3]), -(log_p[1, 0, 3] + log_p[1, 1, 0])]
    assert per_sentence.tolist() == pytest.approx([float(v) for v in expected], rel=1e-6)
    moved = logits.clone()
    moved[1, 2] += 50.0  # the padded position
    assert task.loss(moved, task.target_tensor(targets)).tolist() == pytest.approx(per_sentence.tolist())
    # a mean over the five tagged tokens, in training and in validation
    mean = float(sum(expected)) / 5
    assert float(task.batch_loss(logits, task.target_tensor(targets))) == pytest.approx(mean, rel=1e-6)
    assert task.validation_loss(targets, logits.numpy()) == pytest.approx(mean, rel=1e-6)


def predicting(tags: list[list[int]], width: int = 3) -> np.ndarray:
    logits = np.zeros((len(tags), width, 4), dtype=np.float32)
    for i, row in enumerate(tags):
        for j, tag in enumerate(row):
            logits[i, j, tag] = 5.0
    return logits


def test_outputs_and_decisions():
    task, targets = fitted()
    outputs = task.outputs(predicting([[1, 2, 3], [3, 3, 0]]))
    assert outputs.shape == (2, 3, 4) and np.allclose(outputs.sum(-1), 1.0)
    # per-word outputs of each sentence (what alignment.word_predictions gives)
    assert task.decide([outputs[0], outputs[1, :2]]) == [["B-PER", "I-PER", "O"], ["O", "O"]]
    assert task.decide_targets(targets) == Y


def test_scores_and_selection():
    task, targets = fitted()
    logits = predicting([[1, 2, 3], [3, 3, 0]])  # sentence 2 misses LOC; its padded position says B-LOC
    scores = task.scores(targets, logits)
    assert scores == {
        "entity_f1": pytest.approx(2 / 3),
        "entity_precision": 1.0,
        "entity_recall": 0.5,
        "token_accuracy": pytest.approx(0.8),
    }
    assert list(scores) == list(task.metrics) and task.default_metric == "entity_f1"
    value, minus_loss = task.selection(targets, logits)
    assert value == pytest.approx(2 / 3) and minus_loss == -task.validation_loss(targets, logits)
    # strict IOB2: an I-PER that no B-PER opens is no entity
    assert task.scores(targets, predicting([[2, 2, 3], [3, 0]]))["entity_precision"] == 1.0
    assert task.scores(targets, predicting([[2, 2, 3], [3, 0]]))["entity_recall"] == 0.5
    # a tag the fit never saw counts as a missed entity
    unseen = task.encode([["B-MISC", "O"]], unseen=True)
    assert task.scores(unseen, predicting([[3, 3]], width=2)) == {
        "entity_f1": 0.0,
        "entity_precision": 0.0,
        "entity_recall": 0.0,
        "token_accuracy": 0.5,
    }


def test_split_by_sentence_per_entity_type():
    task = Tokens()
    rows = [["B-PER", "O"]] * 4 + [["O", "B-LOC"]] * 4 + [["O", "O"]] * 4
    targets = task.fit_labels(rows)
    train, val = task.split(targets, 0.25, seed=0)
    assert sorted([*train, *val]) == list(range(12)) and len(val) == 3
    assert sorted(int(i) // 4 for i in val) == [0, 1, 2]  # one of each: PER, LOC, none
    assert task.split(targets, 0.25, seed=0)[1].tolist() == val.tolist()
    # two LOC sentences are too few to stratify: they join the PER group; three sentences are too few to split
    assert len(task.split(targets[:6], 0.25, seed=0)[1]) == 2
    assert len(task.split(targets[:3], 0.25, seed=0)[1]) == 0


def test_state_scheme_and_data_layer_methods():
    task, _ = fitted()
    again = Tokens.from_state(task.state(), task.classes_)
    assert task.state() == {"name": "tokens", "scheme": "IOB2"}
    assert again.classes_.tolist() == task.classes_.tolist() and again.describe() == "tokens (IOB2)"
    assert Tokens(scheme="bioes").state()["scheme"] == "IOBES" and Tokens(scheme="bioes").fresh().scheme == "IOBES"
    with pytest.raises(UnfreezeError, match="Unknown tagging scheme 'XYZ'"):
        Tokens(scheme="XYZ")
    labels = Tokens.read_labels([["B-PER", "O"], None, np.array(["O", "B-LOC"])], None, "a.jsonl", "tags")
    assert labels == [("B-PER", "O"), None, ("O", "B-LOC")]
    with pytest.raises(UnfreezeError, match=r"Row 2 of a\.jsonl has str 'O' in tags; the tokens task reads a list"):
        Tokens.read_labels([["O"], "O"], None, "a.jsonl", "tags")
    rows = [("B-PER", "I-PER", "B-LOC"), ("B-PER", "O"), ("O",)]
    assert Tokens.classes_of(rows) == ["B-LOC", "B-PER", "I-PER", "O"]
    assert Tokens.class_counts(rows) == {"B-LOC": 1, "B-PER": 2, "I-PER": 1, "O": 2}
    assert Tokens.strata(rows) == ["LOC", "PER", ()]
    assert [entity_type(t) for t in ("B-PER", "S-MISC", "O")] == ["PER", "MISC", None]
    Tokens.check_variety(rows, 2, "a.jsonl")
    with pytest.raises(UnfreezeError, match=r"No word of a\.jsonl carries an entity tag"):
        Tokens.check_variety([("O", "O")], 2, "a.jsonl")
