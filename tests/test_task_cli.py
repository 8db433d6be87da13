"""`unfreeze fit / evaluate / predict` for every task (issue 28): multi-label (JSON lines lists, CSV with
--label-sep) and regression, with the features strategy on a tiny model; the task's metric columns, the
output columns per task, bundles that keep their task (thresholds included), and bad input in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import assert_user_error, snapshot
from test_bundle_fixtures import RELEASES, moved_release
from unfreeze import Classifier, Regressor
from unfreeze.cli import app
from unfreeze.errors import UnfreezeError
from unfreeze.inference.classifier_bundle import load_estimator

WORDS = {"sports": "football", "politics": "election", "tech": "computer"}
# every label set a text may carry, in turn: none, one, two
SETS = [(), ("sports",), ("politics",), ("tech",), ("sports", "tech"), ("politics", "tech")]
N = 24
ML_HEADER = "split     micro_f1  macro_f1  samples_f1  subset_accuracy  hamming_loss"
REG_HEADER = "split     spearman   pearson      rmse       mae        r2"
SINGLE_HEADER = "split     accuracy  macro_f1       mcc"


def text(i: int, labels: tuple) -> str:
    return " ".join(["the", "story", *[WORDS[label] for label in labels], "today", str(i)])


def score(i: int) -> float:
    return float(len(SETS[i % len(SETS)])) + 0.5 * (i % 3)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("task-data")
    rows = [(text(i, SETS[i % len(SETS)]), SETS[i % len(SETS)]) for i in range(N)]
    out = {name: root / name for name in ("ml.jsonl", "ml.csv", "reg.csv", "single.csv", "inputs.csv")}
    out["ml.jsonl"].write_text("".join(json.dumps({"text": t, "label": list(labels)}) + "\n" for t, labels in rows))
    out["ml.csv"].write_text("text,label\n" + "".join(f"{t},{'|'.join(labels)}\n" for t, labels in rows))
    out["reg.csv"].write_text("text,label\n" + "".join(f"{t},{score(i)}\n" for i, (t, _) in enumerate(rows)))
    out["single.csv"].write_text(
        "text,label\n" + "".join(f"{t},{'news' if labels else 'none'}\n" for t, labels in rows)
    )
    out["inputs.csv"].write_text("text\n" + "".join(f"{t}\n" for t, _ in rows[:6]))
    return out


def fit(runner, tiny_model_dir, data: Path, out: Path, *more: str):
    args = ["fit", str(data), "--model", tiny_model_dir("bert"), "--device", "cpu", "--strategy", "features"]
    return runner.invoke(app, [*args, *more, "-o", str(out)])


@pytest.fixture(scope="module")
def bundles(files, tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """One bundle per task, fitted once: multi-label from JSON lines and from CSV (per-label thresholds),
    regression, single."""
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("task-bundles")
    runner = CliRunner()
    made = {}
    for name, data, more in (
        ("ml", files["ml.jsonl"], ["--task", "multilabel"]),
        ("ml_csv", files["ml.csv"], ["--task", "multilabel", "--label-sep", "|", "--thresholds", "per-label"]),
        ("reg", files["reg.csv"], ["--task", "regression"]),
        ("single", files["single.csv"], []),
    ):
        result = fit(runner, tiny_model_dir, data, root / name, *more)
        assert result.exit_code == 0, result.output
        made[name] = root / name
        (root / f"{name}.out").write_text(result.stdout)
    return made


def config(bundle: Path) -> dict:
    return json.loads((bundle / "unfreeze.json").read_text())


# -- fit: the task's metrics, the task in the bundle -----------------------------------------------------------


def test_fit_multilabel_prints_its_metrics_and_saves_its_task(bundles):
    lines = (bundles["ml"].parent / "ml.out").read_text().splitlines()
    assert ML_HEADER in lines
    train = next(line for line in lines if line.startswith("train "))
    assert len(train.split()) == 6  # the split and five metrics
    saved = config(bundles["ml"])
    assert saved["labels"] == ["politics", "sports", "tech"]
    assert saved["task"]["name"] == "multilabel" and saved["task"]["thresholds"] == "global"
    assert saved["classifier"]["task"] == "multilabel"
    assert set(saved["metrics"]["train"]) == {"micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"}
    chosen = saved["task"]["threshold"]
    assert len(chosen) == 3 and len(set(chosen)) == 1  # one global threshold
    assert f"decision thresholds: {chosen[0]:g} for every label (chosen on " in "\n".join(lines)
    # the table prints what the bundle records
    assert train == "train   " + "".join(
        f"{saved['metrics']['train'][m]:>{max(10, len(m) + 2)}.4f}"
        for m in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")
    )


def test_fit_regression_prints_its_metrics_and_saves_mean_and_scale(bundles):
    lines = (bundles["reg"].parent / "reg.out").read_text().splitlines()
    assert REG_HEADER in lines
    saved = config(bundles["reg"])
    assert saved["labels"] == [] and "task" not in saved["classifier"]
    scores = np.array([score(i) for i in range(N)])
    assert saved["task"] == {
        "name": "regression",
        "mean": pytest.approx(scores.mean()),
        "scale": pytest.approx(scores.std()),
    }
    assert set(saved["metrics"]["train"]) == {"spearman", "pearson", "rmse", "mae", "r2"}


def test_fit_single_prints_the_table_as_before(bundles):
    lines = (bundles["single"].parent / "single.out").read_text().splitlines()
    assert SINGLE_HEADER in lines
    assert config(bundles["single"])["task"] == {"name": "single"}
    assert config(bundles["single"])["classifier"]["task"] == "single"


def test_per_label_thresholds_survive_save_and_load(bundles, tmp_path):
    saved = config(bundles["ml_csv"])["task"]
    assert saved["thresholds"] == "per-label" and len(saved["threshold"]) == 3
    printed = ", ".join(f"{label} {t:g}" for label, t in zip(["politics", "sports", "tech"], saved["threshold"]))
    if len(set(saved["threshold"])) > 1:
        assert f"decision thresholds: {printed} (chosen on " in (bundles["ml_csv"].parent / "ml_csv.out").read_text()
    clf = load_estimator(bundles["ml_csv"], device="cpu")
    assert isinstance(clf, Classifier) and clf.task_.thresholds == "per-label"
    np.testing.assert_array_equal(clf.task_.threshold_, saved["threshold"])
    # the parameter comes back with its setting, and a second save keeps every bit of the task
    assert clf.get_params()["task"].thresholds == "per-label"
    clf.save(tmp_path / "again")
    assert config(tmp_path / "again")["task"] == saved


# -- loading: the bundle's task picks the estimator -----------------------------------------------------------


def test_a_bundle_loads_as_its_tasks_estimator(bundles):
    assert isinstance(load_estimator(bundles["reg"], device="cpu"), Regressor)
    assert isinstance(Regressor.load(bundles["reg"], device="cpu"), Regressor)
    assert isinstance(load_estimator(bundles["ml"], device="cpu"), Classifier)
    with pytest.raises(UnfreezeError, match=r"holds a regression model.*use Regressor\.load"):
        Classifier.load(bundles["reg"], device="cpu")
    with pytest.raises(UnfreezeError, match=r"holds a multilabel model.*use Classifier\.load"):
        Regressor.load(bundles["ml"], device="cpu")


@pytest.mark.parametrize("release", RELEASES)
def test_bundles_of_earlier_releases_load_as_single(release, tmp_path):
    folder, expected = moved_release(release, tmp_path)
    clf = load_estimator(folder / "features", device="cpu")
    assert isinstance(clf, Classifier) and clf.task_.name == "single"
    assert clf.classes_.tolist() == expected["bundles"]["features"]["labels"]


# -- evaluate: the bundle's task reads the labels ---------------------------------------------------------------


@pytest.mark.parametrize(("bundle", "data", "more"), [("ml", "ml.jsonl", []), ("ml", "ml.csv", ["--label-sep", "|"])])
def test_evaluate_multilabel_reads_lists_or_separated_strings(runner, bundles, files, bundle, data, more):
    result = runner.invoke(app, ["evaluate", str(bundles[bundle]), str(files[data]), "--device", "cpu", *more])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == ML_HEADER
    as_json = runner.invoke(app, ["evaluate", str(bundles[bundle]), str(files[data]), "--json", *more])
    clf = load_estimator(bundles[bundle], device="cpu")
    texts = [text(i, SETS[i % len(SETS)]) for i in range(N)]
    assert json.loads(as_json.stdout) == pytest.approx(clf.evaluate(texts, [SETS[i % len(SETS)] for i in range(N)]))


def test_evaluate_regression(runner, bundles, files):
    result = runner.invoke(app, ["evaluate", str(bundles["reg"]), str(files["reg.csv"]), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == REG_HEADER
    scores = json.loads(runner.invoke(app, ["evaluate", str(bundles["reg"]), str(files["reg.csv"]), "--json"]).stdout)
    clf = Regressor.load(bundles["reg"], device="cpu")
    texts = [text(i, SETS[i % len(SETS)]) for i in range(N)]
    assert scores == pytest.approx(clf.evaluate(texts, [score(i) for i in range(N)]))
    assert scores["r2"] == pytest.approx(clf.score(texts, [score(i) for i in range(N)]))


# -- predict: the columns per task ------------------------------------------------------------------------------


def test_predict_multilabel_csv_joins_labels_and_writes_a_probability_per_label(runner, bundles, files, tmp_path):
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(bundles["ml"]), str(files["inputs.csv"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns) == ["text", "prediction", "proba_politics", "proba_sports", "proba_tech"]
    clf = load_estimator(bundles["ml"], device="cpu")
    texts = frame["text"].tolist()
    assert frame["prediction"].tolist() == ["|".join(labels) for labels in clf.predict(texts)]
    np.testing.assert_allclose(frame.iloc[:, 2:].to_numpy(), clf.predict_proba(texts), atol=1e-12)
    # another separator
    semi = tmp_path / "semi.csv"
    runner.invoke(app, ["predict", str(bundles["ml"]), str(files["inputs.csv"]), "-o", str(semi), "--label-sep", ";"])
    assert pd.read_csv(semi, keep_default_na=False)["prediction"].tolist() == [
        ";".join(labels) for labels in clf.predict(texts)
    ]


def test_predict_multilabel_json_lines_writes_lists(runner, bundles, files, tmp_path):
    out = tmp_path / "pred.jsonl"
    result = runner.invoke(app, ["predict", str(bundles["ml"]), str(files["inputs.csv"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(rows[0]) == ["text", "prediction", "proba_politics", "proba_sports", "proba_tech"]
    clf = load_estimator(bundles["ml"], device="cpu")
    assert [row["prediction"] for row in rows] == [list(labels) for labels in clf.predict([r["text"] for r in rows])]


def test_predict_regression_writes_the_value(runner, bundles, files, tmp_path):
    out = tmp_path / "pred.tsv"
    result = runner.invoke(app, ["predict", str(bundles["reg"]), str(files["inputs.csv"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, sep="\t")
    assert list(frame.columns) == ["text", "prediction"]
    expected = Regressor.load(bundles["reg"], device="cpu").predict(frame["text"].tolist())
    np.testing.assert_allclose(frame["prediction"].to_numpy(), expected, rtol=1e-12)


def test_predict_single_writes_the_csv_it_always_wrote(runner, bundles, files, tmp_path):
    from unfreeze.inference.bundle_predictor import BundlePredictor

    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(bundles["single"]), str(files["inputs.csv"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    # what predict wrote before tasks existed, byte for byte
    frame = pd.read_csv(files["inputs.csv"])
    predictor = BundlePredictor(bundles["single"], device="cpu")
    proba = predictor.predict_proba(frame["text"].tolist())["default"]
    labels = predictor.heads["default"]["labels"]
    frame["prediction"] = [labels[j] for j in proba.argmax(axis=1)]
    for j, label in enumerate(labels):
        frame[f"proba_{label}"] = proba[:, j]
    assert out.read_text() == frame.to_csv(index=False)


# -- bad input: one line, exit 2, nothing written ----------------------------------------------------------------


def test_a_label_never_seen_in_training_is_refused_at_evaluate(runner, bundles, tmp_path):
    unseen = tmp_path / "unseen.jsonl"
    unseen.write_text('{"text": "a football story", "label": ["sports", "weather"]}\n')
    result = runner.invoke(app, ["evaluate", str(bundles["ml"]), str(unseen)])
    assert_user_error(result, "'weather'", "no training text", "'politics', 'sports', 'tech'")
    single = tmp_path / "single.csv"
    single.write_text("text,label\na story,none\nanother story,gossip\n")
    result = runner.invoke(app, ["evaluate", str(bundles["single"]), str(single)])
    assert_user_error(result, "'gossip'", "no training text")


def test_a_regression_bundle_evaluated_on_words_is_refused(runner, bundles, files):
    result = runner.invoke(app, ["evaluate", str(bundles["reg"]), str(files["single.csv"])])
    assert_user_error(result, "Row 1", "not a number", "--task regression")


def test_evaluate_task_must_be_the_bundles(runner, bundles, files):
    result = runner.invoke(app, ["evaluate", str(bundles["ml"]), str(files["ml.jsonl"]), "--task", "single"])
    assert_user_error(result, "--task single", "bundle's task (multilabel)")
    result = runner.invoke(app, ["evaluate", str(bundles["single"]), str(files["ml.csv"]), "--label-sep", "|"])
    assert_user_error(result, "--label-sep", "--task multilabel")


def test_per_label_thresholds_with_single_is_refused(runner, files, tiny_model_dir, tmp_path):
    before = snapshot(tmp_path)
    result = fit(runner, tiny_model_dir, files["single.csv"], tmp_path / "b", "--thresholds", "per-label")
    assert_user_error(result, "--thresholds per-label", "single")
    result = fit(
        runner, tiny_model_dir, files["reg.csv"], tmp_path / "b", "--task", "regression", "--thresholds", "per-label"
    )
    assert_user_error(result, "--thresholds per-label", "regression")
    assert snapshot(tmp_path) == before


def test_predict_refuses_a_separator_inside_a_label(runner, bundles, files, tmp_path):
    before = snapshot(tmp_path)
    out = tmp_path / "pred.csv"
    result = runner.invoke(
        app, ["predict", str(bundles["ml"]), str(files["inputs.csv"]), "-o", str(out), "--label-sep", "o"]
    )
    assert_user_error(result, "Label 'politics'", "separator 'o'", "--label-sep", ".jsonl")
    result = runner.invoke(
        app, ["predict", str(bundles["ml"]), str(files["inputs.csv"]), "-o", str(out), "--label-sep", ""]
    )
    assert_user_error(result, "--label-sep", "non-empty")
    assert snapshot(tmp_path) == before


# -- a multi-head bundle of several tasks; sentence pairs -------------------------------------------------------


@pytest.fixture(scope="module")
def suite(files, tiny_model_dir, tmp_path_factory) -> Path:
    """A multi-head bundle: a multi-label head and a regression head on one backbone (`unfreeze heads add`)."""
    from typer.testing import CliRunner

    bundle = tmp_path_factory.mktemp("task-suite") / "suite"
    model = tiny_model_dir("bert")
    for name, data, more in (
        ("tags", files["ml.jsonl"], ["--task", "multilabel"]),
        ("score", files["reg.csv"], ["--task", "regression"]),
    ):
        args = ["heads", "add", str(bundle), name, str(data), "--model", model, "--device", "cpu", *more]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    return bundle


def test_predict_writes_each_heads_columns_in_its_tasks_shape(runner, suite, bundles, files, tmp_path):
    from unfreeze import MultiHeadClassifier

    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(suite), str(files["inputs.csv"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns) == [
        "text",
        "tags.prediction",
        "tags.proba_politics",
        "tags.proba_sports",
        "tags.proba_tech",
        "score.prediction",
    ]
    predicted = MultiHeadClassifier.load(suite, device="cpu").predict(frame["text"].tolist())
    assert frame["tags.prediction"].tolist() == ["|".join(labels) for labels in predicted["tags"]]
    np.testing.assert_allclose(frame["score.prediction"].to_numpy(), predicted["score"], rtol=1e-12)


def test_evaluate_one_head_of_a_suite_by_its_task(runner, suite, files):
    result = runner.invoke(app, ["evaluate", str(suite), str(files["reg.csv"]), "--head", "score", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == REG_HEADER
    result = runner.invoke(app, ["evaluate", str(suite), str(files["ml.jsonl"]), "--head", "tags", "--json"])
    assert set(json.loads(result.stdout)) == {"micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"}
    # two heads of different tasks read their labels differently: one task at a time
    result = runner.invoke(app, ["evaluate", str(suite), str(files["reg.csv"]), "--head", "score", "--head", "tags"])
    assert_user_error(result, "score (regression)", "tags (multilabel)", "--head")


def test_regression_on_sentence_pairs(runner, tiny_model_dir, tmp_path):
    pairs = tmp_path / "pairs.csv"
    rows = [(text(i, SETS[i % len(SETS)]), text(i + 1, SETS[(i + 1) % len(SETS)]), score(i)) for i in range(N)]
    pairs.write_text("first,second,label\n" + "".join(f"{a},{b},{s}\n" for a, b, s in rows))
    more = ["--task", "regression", "--text-col", "first", "--text-pair-col", "second"]
    assert fit(runner, tiny_model_dir, pairs, tmp_path / "b", *more).exit_code == 0
    out = tmp_path / "pred.jsonl"
    args = ["predict", str(tmp_path / "b"), str(pairs), "-o", str(out), "--text-col", "first"]
    result = runner.invoke(app, [*args, "--text-pair-col", "second"])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    expected = Regressor.load(tmp_path / "b", device="cpu").predict([(a, b) for a, b, _ in rows])
    np.testing.assert_allclose([row["prediction"] for row in written], expected, rtol=1e-12)
    assert list(written[0]) == ["first", "second", "label", "prediction"]


def test_a_strategy_that_cannot_serve_the_task_is_refused(runner, files, tiny_model_dir, tmp_path):
    before = snapshot(tmp_path)
    args = ["fit", str(files["reg.csv"]), "--task", "regression", "--strategy", "setfit", "-o", str(tmp_path / "c")]
    result = runner.invoke(app, [*args, "--model", tiny_model_dir("bert")])
    assert_user_error(result, "'setfit' cannot fit a regression task", "features, freeze")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "task",
    [
        "regression",
        [1],
        {"name": 3},
        {"name": "multilabel", "threshold": [0.5]},
        {"name": "multilabel", "threshold": "x"},
        {"name": "regression", "mean": None},
    ],
)
def test_a_damaged_task_in_a_bundle_is_said_in_one_line(runner, bundles, files, tmp_path, task):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["ml"], bundle)
    saved = config(bundle)
    (bundle / "unfreeze.json").write_text(json.dumps({**saved, "task": task}))
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["predict", str(bundle), str(files["inputs.csv"]), "-o", str(tmp_path / "p.csv")])
    assert_user_error(result, f"The bundle at {bundle} is damaged", "task")
    result = runner.invoke(app, ["evaluate", str(bundle), str(files["ml.jsonl"])])
    assert_user_error(result, f"The bundle at {bundle} is damaged", "task")
    with pytest.raises(UnfreezeError, match="is damaged"):
        load_estimator(bundle, device="cpu")
    assert snapshot(tmp_path) == before


# -- options the data's task refuses: one line, before any model or data loads ------------------------------------


@pytest.fixture
def nothing_loads(monkeypatch):
    """Loading data (or a model) is an error: the options model must refuse first."""

    def refuse(*args, **kwargs):
        raise AssertionError("data loaded before the options were checked")

    monkeypatch.setattr("unfreeze.cli.fit.load_train_test", refuse)
    monkeypatch.setattr("unfreeze.cli.heads.load_train_test", refuse)


def refused(runner, tmp_path, command: list, more: list[str], words: list[str]) -> None:
    """``command`` (with a model that does not exist) fails in one line holding ``words``; nothing written."""
    before = snapshot(tmp_path)
    args = [*map(str, command), "--model", str(tmp_path / "no-model"), *more]
    assert_user_error(runner.invoke(app, args), *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "data, more, words",
    [
        ("reg.csv", ["--task", "regression", "--C", "1"], ["C=1.0 is the logistic head's strength", "--alpha"]),
        ("sts-b", ["--C", "0.5"], ["C=0.5", "a regression task's head is ridge"]),  # a built-in's own task
        ("ml.csv", ["--task", "multilabel", "--alpha", "2"], ["alpha=2.0 is the ridge head's strength", "--C"]),
        ("single.csv", ["--alpha", "2"], ["alpha=2.0", "a single task's head is a logistic regression"]),
    ],
)
def test_heads_add_refuses_the_other_task_s_strength_before_loading(
    runner, files, tmp_path, nothing_loads, data, more, words
):
    refused(runner, tmp_path, ["heads", "add", str(tmp_path / "suite"), "h", files.get(data, data)], more, words)


@pytest.mark.parametrize(
    "data, more, words",
    [
        ("reg.csv", ["--task", "regression", "--metric", "accuracy"], ["'accuracy' is not a metric of the regression"]),
        ("sts-b", ["--metric", "micro_f1"], ["'micro_f1' is not a metric of the regression task", "spearman, pearson"]),
        ("single.csv", ["--metric", "spearman"], ["'spearman' is not a metric of the single task", "accuracy"]),
        ("ml.csv", ["--task", "multilabel", "--metric", "nope"], ["Unknown metric 'nope'"]),
    ],
)
def test_probe_refuses_a_metric_the_task_does_not_report_before_loading(
    runner, files, tmp_path, nothing_loads, data, more, words
):
    refused(runner, tmp_path, ["probe", files.get(data, data), "--plot", str(tmp_path / "p.png")], more, words)


@pytest.mark.parametrize(
    "data, more, words",
    [
        ("reg.csv", ["--task", "regression", "--strategy", "features", "--C", "1"], ["C=1.0", "ridge regression"]),
        ("sts-b", ["--strategy", "setfit"], ["'setfit' cannot fit a regression task", "features, freeze"]),
        ("ml.csv", ["--task", "multilabel", "--strategy", "features", "--alpha", "3"], ["alpha=3.0", "give C"]),
    ],
)
def test_fit_refuses_a_strategy_or_strength_the_task_cannot_take_before_loading(
    runner, files, tmp_path, nothing_loads, data, more, words
):
    refused(runner, tmp_path, ["fit", files.get(data, data), "-o", str(tmp_path / "b")], more, words)
