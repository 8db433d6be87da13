"""Integration: the real MiniLM on the built-in movie-snippets data, through the API and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import unfreeze
from unfreeze import Classifier
from unfreeze.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def movie_train():
    return unfreeze.load_data("movie-snippets:train")


@pytest.fixture(scope="module")
def movie_test():
    return unfreeze.load_data("movie-snippets:test")


def _write_csv(dataset, path):
    pd.DataFrame({"text": dataset.texts, "label": dataset.labels}).to_csv(path, index=False)
    return path


def _invoke(args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def test_minilm_features_beat_a_clear_bar_on_movie_snippets(minilm, movie_train, movie_test):
    train = unfreeze.sample(movie_train, n_total=400, seed=0)
    test = unfreeze.sample(movie_test, n_total=400, seed=0)
    assert len(train) == len(test) == 400
    assert not set(train.texts) & set(test.texts)  # the fixed split keeps them apart
    clf = Classifier(model=minilm, progress=False).fit(train.inputs, train.labels)
    assert clf.backbone_.num_blocks == 6 and clf.backbone_.hidden_size == 384
    assert clf.pooling_ == "mean"
    accuracy = clf.score(test.inputs, test.labels)
    assert accuracy > 0.68, accuracy
    assert set(clf.predict(test.inputs[:20]).tolist()) <= {"negative", "positive"}


def test_cli_fit_predict_evaluate_round_trip(minilm, movie_train, movie_test, tmp_path):
    train_csv = _write_csv(unfreeze.sample(movie_train, n_total=160, seed=1), tmp_path / "train.csv")
    test_set = unfreeze.sample(movie_test, n_total=80, seed=1)
    test_csv = _write_csv(test_set, tmp_path / "test.csv")
    bundle = tmp_path / "bundle"

    fit = _invoke(["fit", train_csv, "--output", bundle, "--model", minilm, "--test", test_csv, "--C", "1.0"])
    assert "trained features C=1.0 on 160 examples" in fit.output
    assert re.search(r"^test\s+[01]\.\d{4}", fit.output, re.M), fit.output
    assert (bundle / "unfreeze.json").exists()

    # predict takes a file without labels and keeps its columns
    inputs_csv = tmp_path / "inputs.csv"
    pd.DataFrame({"id": range(len(test_set)), "text": test_set.texts}).to_csv(inputs_csv, index=False)
    preds_csv = tmp_path / "preds.csv"
    _invoke(["predict", bundle, inputs_csv, "--output", preds_csv])
    preds = pd.read_csv(preds_csv)
    assert list(preds.columns) == ["id", "text", "prediction", "proba_negative", "proba_positive"]
    assert len(preds) == len(test_set)
    np.testing.assert_allclose(preds[["proba_negative", "proba_positive"]].sum(axis=1), 1.0, atol=1e-9)

    clf = Classifier.load(bundle)
    assert preds["prediction"].tolist() == clf.predict(test_set.texts).tolist()
    np.testing.assert_allclose(
        preds[["proba_negative", "proba_positive"]].to_numpy(), clf.predict_proba(test_set.texts), rtol=0, atol=1e-12
    )

    evaluated = _invoke(["evaluate", bundle, test_csv, "--json"])
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    expected = clf.evaluate(test_set.texts, test_set.labels)
    assert metrics == pytest.approx(expected)
    # the metrics the fit stored in the bundle are the same test scores
    stored = json.loads((bundle / "unfreeze.json").read_text())["metrics"]
    assert stored["test"] == pytest.approx(expected)
    assert stored["n_train"] == 160 and stored["n_test"] == 80


def test_cli_probe_prints_every_layer_and_writes_a_png(minilm, movie_train, movie_test, tmp_path):
    train_csv = _write_csv(unfreeze.sample(movie_train, n_total=200, seed=2), tmp_path / "train.csv")
    test_csv = _write_csv(unfreeze.sample(movie_test, n_total=100, seed=2), tmp_path / "test.csv")
    plot = tmp_path / "plots" / "probe.png"
    result = _invoke(["probe", train_csv, "--test", test_csv, "--model", minilm, "--plot", plot])

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = re.findall(
        r"^(\d+(?: \(embeddings\))?|concat -4,-3,-2,-1)\s+([01]\.\d{4})\s+([01]\.\d{4})\s*$", result.stdout, re.M
    )
    names = [r[0] for r in rows]
    assert names == ["0 (embeddings)", "1", "2", "3", "4", "5", "6", "concat -4,-3,-2,-1"], result.stdout
    test_scores = [float(r[2]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in test_scores)
    # contextual layers carry sentiment: the best layer is clearly above chance
    assert max(test_scores[1:]) > 0.65, result.stdout
    assert f"plot: {plot}" in result.stdout
