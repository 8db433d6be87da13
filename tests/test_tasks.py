"""The Task objects on their own: label encoding, outputs, decisions, scores, splits, thresholds, state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unfreeze.errors import UnfreezeError
from unfreeze.tasks import MultiLabel, Regression, SingleLabel, make_task, task_from_state, task_names
from unfreeze.tasks.multilabel import rarest_label_groups
from unfreeze.tasks.regression import quantile_bins


def test_registry_names_and_unknown_task():
    assert task_names() == ("single", "multilabel", "regression", "tokens")
    assert isinstance(make_task(), SingleLabel)
    assert make_task("multilabel", thresholds="per-label").thresholds == "per-label"
    with pytest.raises(UnfreezeError, match=r"Unknown task 'tags'.*single, multilabel, regression, tokens"):
        make_task("tags")


# -- single ----------------------------------------------------------------------------------------------------


def test_single_encodes_decides_and_scores_like_before():
    task = SingleLabel()
    targets = task.fit_labels(["neg", "pos", "pos", "neu"])
    assert task.classes_.tolist() == ["neg", "neu", "pos"] and targets.tolist() == [0, 2, 2, 1]
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 3.0, 0.0], [0.0, 1.0, 0.0]])
    assert task.decide(task.outputs(logits)).tolist() == ["neg", "pos", "neu", "neu"]
    scores = task.scores(targets, logits)
    assert scores["accuracy"] == 0.75 and set(scores) == {"accuracy", "macro_f1", "mcc"}
    expected_loss = float(torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(targets)))
    assert task.selection(targets, logits) == pytest.approx((0.75, -expected_loss))


def test_single_refuses_lists_one_class_and_unknown_labels_unless_scoring():
    with pytest.raises(UnfreezeError, match=r"lists of labels.*--task multilabel"):
        SingleLabel().fit_labels([["a"], ["b"]])
    with pytest.raises(UnfreezeError, match="single class"):
        SingleLabel().fit_labels(["a", "a"])
    task = SingleLabel()
    task.fit_labels(["a", "b"])
    with pytest.raises(UnfreezeError, match="labels 'c' are not in y's classes"):
        task.encode(["a", "c"])
    # scoring a class the fit never saw: its own index, never predicted, so always missed
    assert task.encode(["a", "c", "b", "c"], unseen=True).tolist() == [0, 2, 1, 2]
    assert task.scores_of_outputs(np.array([0, 2]), np.array([[0.9, 0.1], [0.1, 0.9]]))["accuracy"] == 0.5


def test_single_split_is_the_stratified_split_of_earlier_releases():
    from unfreeze.strategies.base import validation_split

    y = np.array([0, 1, 2] * 10 + [0] * 5)
    task = SingleLabel()
    for seed in range(5):
        train, val = task.split(y, 0.2, seed)
        old_train, old_val = validation_split(y, 0.2, seed)
        assert np.array_equal(train, old_train) and np.array_equal(val, old_val)
    assert len(task.split(np.array([0, 0, 0, 1, 1, 1]), 0.5, 0)[1]) == 0  # a class under 4: no hold-out


# -- multilabel ------------------------------------------------------------------------------------------------


def test_multilabel_reads_label_sets_and_indicator_matrices():
    task = MultiLabel()
    targets = task.fit_labels([["drama", "comedy"], ("drama",), set(), ["news"]])
    assert task.classes_.tolist() == ["comedy", "drama", "news"]
    assert targets.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]]
    logits = np.array([[3.0, 3.0, -3.0], [-3.0, 0.5, -3.0], [-3.0, -3.0, -3.0], [-3.0, -3.0, 0.1]])
    assert task.decide(task.outputs(logits)) == [("comedy", "drama"), ("drama",), (), ("news",)]
    assert task.scores(targets, logits) == {
        "micro_f1": 1.0,
        "macro_f1": 1.0,
        "samples_f1": 0.75,  # the text without labels scores 0 in scikit-learn's samples average (zero_division=0)
        "subset_accuracy": 1.0,
        "hamming_loss": 0.0,
    }
    matrix = MultiLabel()
    assert matrix.fit_labels(np.array([[1, 0], [0, 1], [1, 1]])).dtype == np.float32
    assert matrix.decide(np.array([[0.9, 0.2]])).tolist() == [[1, 0]]  # indicator in, indicator out


@pytest.mark.parametrize(
    "y, message",
    [
        (["drama", "news"], "row 0 is 'drama', not a list of labels"),
        ([[], []], "holds no label at all"),
        ([[1.5], [2]], "row 0 holds 1.5; labels are strings or integers"),
        (np.array([[0, 2], [1, 0]]), "not a binary indicator matrix"),
    ],
)
def test_multilabel_refuses_what_is_not_label_sets(y, message):
    with pytest.raises(UnfreezeError, match=message):
        MultiLabel().fit_labels(y)


def test_multilabel_unknown_labels_refused_or_scored_as_missed():
    task = MultiLabel()
    task.fit_labels([["a"], ["b"], ["a", "b"]])
    with pytest.raises(UnfreezeError, match="labels 'z' are not among the fitted labels"):
        task.encode([["a", "z"]])
    truth = task.encode([["a", "z"], ["b"]], unseen=True)
    assert truth.tolist() == [[1, 0, 1], [0, 1, 0]]
    scores = task.scores_of_outputs(truth, np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert scores["micro_f1"] == pytest.approx(0.8) and scores["hamming_loss"] == pytest.approx(1 / 6)


def test_multilabel_loss_is_the_mean_binary_cross_entropy_over_labels():
    task = MultiLabel()
    targets = task.fit_labels([["a"], ["b"]])
    logits = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(targets), reduction="none")
    assert torch.allclose(task.loss(logits, task.target_tensor(targets)), expected.mean(dim=1))
    weight = task.loss_weight(np.array([[1, 0], [1, 0], [0, 1], [1, 0]], np.float32), "balanced", "cpu")
    assert weight.tolist() == [pytest.approx(1 / 3), 3.0]  # negatives / positives per label


def test_multilabel_thresholds_tuned_globally_or_per_label():
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], np.float32)
    proba = np.array([[0.3, 0.1], [0.35, 0.2], [0.1, 0.9], [0.2, 0.7]])
    logits = np.log(proba / (1 - proba))
    task = MultiLabel()
    task.fit_labels(truth)
    task.tune(truth, logits)
    # one threshold for both labels: 0.3 catches label 0's two positives, at the price of label 1's 0.7
    assert task.threshold_.tolist() == [0.3, 0.3] and task.scores(truth, logits)["micro_f1"] == pytest.approx(6 / 7)
    per_label = MultiLabel(thresholds="per-label")
    per_label.fit_labels(truth)
    per_label.tune(truth, logits)
    assert per_label.threshold_.tolist() == [0.3, 0.75] and per_label.scores(truth, logits)["micro_f1"] == 1.0


def test_multilabel_state_round_trips_through_json():
    task = MultiLabel(thresholds="per-label")
    task.fit_labels([["x"], ["y"], ["x", "y"]])
    task.threshold_ = np.array([0.4, 0.6])
    state = json.loads(json.dumps(task.state()))
    again = task_from_state(state, ["x", "y"])
    assert isinstance(again, MultiLabel) and again.threshold_.tolist() == [0.4, 0.6]
    assert again.decide(np.array([[0.45, 0.55]])) == [("x",)]
    with pytest.raises(UnfreezeError, match="3 thresholds for 2 labels: it is damaged"):
        task_from_state({**state, "threshold": [0.5, 0.5, 0.5]}, ["x", "y"])


def test_rarest_label_groups_merge_groups_too_small_to_split():
    targets = np.array([[1, 0, 0]] * 6 + [[1, 1, 0]] * 5 + [[0, 0, 1]] * 2 + [[0, 0, 0]] * 4, np.float32)
    groups = rarest_label_groups(targets)
    # label 1 (5 rows) and "no label" (4 rows) keep their groups; label 2's two rows join label 0's six
    assert groups.tolist() == [0] * 6 + [1] * 5 + [0] * 2 + [2] * 4


# -- regression ------------------------------------------------------------------------------------------------


def test_regression_standardises_scores_and_gives_them_back():
    task = Regression()
    targets = task.fit_labels([1.0, 2.0, 3.0, 4.0])
    assert task.mean_ == 2.5 and task.scale_ == pytest.approx(np.std([1, 2, 3, 4]))
    assert targets.mean() == pytest.approx(0.0, abs=1e-6) and targets.std() == pytest.approx(1.0)
    assert task.outputs(targets[:, None]).tolist() == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert task.n_outputs == 1 and not task.is_classification
    loss = task.loss(torch.tensor([[0.5], [-1.0]]), torch.tensor([1.0, -1.0]))
    assert loss.tolist() == [0.25, 0.0]


def test_regression_scores_in_the_users_units():
    task = Regression()
    targets = task.fit_labels([0.0, 1.0, 2.0, 3.0, 5.0])
    predicted = np.array([0.5, 1.0, 2.5, 2.0, 5.0])
    scores = task.scores_of_outputs(targets, predicted)
    assert scores["spearman"] == pytest.approx(0.9)
    assert scores["rmse"] == pytest.approx(np.sqrt(np.mean([0.25, 0, 0.25, 1, 0])))
    assert scores["mae"] == pytest.approx(0.4)
    # a constant prediction has no ranking information: correlation 0, not NaN
    assert task.scores_of_outputs(targets, np.full(5, 2.0))["spearman"] == 0.0


@pytest.mark.parametrize(
    "y, message",
    [
        (["3.5", 1.0], "row 0 is '3.5', not a number"),
        ([1.0, float("nan")], "row 1 is nan; scores must be finite"),
        ([True, 1.0], "row 0 is True, not a number"),
        ([2.0, 2.0], "a single value"),
    ],
)
def test_regression_refuses_what_is_not_numbers(y, message):
    with pytest.raises(UnfreezeError, match=message):
        Regression().fit_labels(y)


def test_regression_split_is_stratified_by_score_bins_and_state_round_trips():
    scores = np.arange(50, dtype=np.float64)
    assert np.bincount(quantile_bins(scores)).tolist() == [10] * 5
    task = Regression()
    targets = task.fit_labels(scores)
    _, val = task.split(targets, 0.2, 0)
    assert np.bincount(quantile_bins(scores[val]), minlength=5).tolist() == [2] * 5
    again = task_from_state(json.loads(json.dumps(task.state())))
    assert again.mean_ == task.mean_ and again.scale_ == task.scale_
    with pytest.raises(UnfreezeError, match="no valid mean and scale: it is damaged"):
        task_from_state({"name": "regression", "mean": 1.0, "scale": 0.0})


def test_a_bundle_without_a_task_is_single_label():
    task = task_from_state(None, ["neg", "pos"])
    assert isinstance(task, SingleLabel) and task.classes_.tolist() == ["neg", "pos"]
