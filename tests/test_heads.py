"""LogisticHead: the fast choice of C agrees with scikit-learn's exhaustive search; fits are
deterministic; class weights; exact save/load; heads of release 0.1.0 load and refit unchanged."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_info, threadpool_limits

import unfreeze.features.logistic as heads_module
from unfreeze.errors import InvalidParameterError
from unfreeze.features.logistic import C_GRID, LogisticHead

RELEASE = Path(__file__).parent / "fixtures" / "bundles" / "release-0.1.0"
# Agreement with the exhaustive search: the test accuracy of the head at our C is within
# this of the head at LogisticRegressionCV's C, and our C's cross-validated accuracy (as
# the exhaustive search measured it) is within this of the best.
ACCURACY_TOLERANCE = 0.005


def dataset(seed: int, n: int = 600, d: int = 40, classes: int = 2, flip: float = 0.1, sep: float = 0.8, weights=None):
    x, y = make_classification(
        n_samples=n,
        n_features=d,
        n_informative=8,
        n_redundant=4,
        n_classes=classes,
        n_clusters_per_class=1,
        flip_y=flip,
        class_sep=sep,
        weights=weights,
        random_state=seed,
    )
    x = x * np.linspace(0.1, 10, d) + np.linspace(-3, 3, d)  # unequal scales and offsets: standardising matters
    half = n // 2
    return x[:half], y[:half], x[half:], y[half:]


def exhaustive(z: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
    """LogisticRegressionCV on every C of the grid: its C and the mean fold accuracy per C."""
    # one BLAS thread: several make this reference search many times slower on a busy machine
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")  # convergence, and sklearn's announced attribute changes
        search = LogisticRegressionCV(
            Cs=C_GRID, cv=StratifiedKFold(5, shuffle=True, random_state=seed), scoring="accuracy", max_iter=2000
        ).fit(z, y)
    scores = search.scores_
    scores = next(iter(scores.values())) if isinstance(scores, dict) else scores
    return float(np.atleast_1d(search.C_)[0]), np.asarray(scores).reshape(scores.shape[0], -1).mean(axis=0)


def accuracy(head_or_model, x, y) -> float:
    return float(np.mean(head_or_model.predict_proba(x).argmax(axis=1) == y))


# (seed, classes, label noise, class separation): noisy sets with an interior optimum,
# a clean one whose best C is the weakest regularisation, and three classes
CASES = [(0, 2, 0.1, 0.8), (1, 2, 0.2, 0.5), (2, 2, 0.05, 1.0), (3, 3, 0.1, 0.8), (4, 2, 0.0, 3.0), (5, 3, 0.2, 0.6)]


@pytest.mark.parametrize("seed,classes,flip,sep", CASES)
def test_chosen_C_agrees_with_exhaustive_search(seed, classes, flip, sep):
    x, y, x_test, y_test = dataset(seed, classes=classes, flip=flip, sep=sep)
    head = LogisticHead(seed=seed).fit(x, y)
    best_C, scores = exhaustive(head._standardise(x), y, seed)

    ours = int(np.flatnonzero(C_GRID == head.C_)[0])
    assert scores[ours] >= scores.max() - ACCURACY_TOLERANCE, (head.C_, best_C, scores)
    # the mean fold accuracies our path measured are the exhaustive search's, up to where it stopped
    visited = len(head.cv_scores_)
    np.testing.assert_allclose(head.cv_scores_, scores[:visited], atol=1.5 / len(y))
    reference = LogisticRegression(C=best_C, max_iter=2000).fit(head._standardise(x), y)
    assert (
        abs(accuracy(head, x_test, y_test) - np.mean(reference.predict(head._standardise(x_test)) == y_test))
        <= ACCURACY_TOLERANCE
    )


def test_the_path_stops_past_the_peak_and_runs_on_while_accuracy_holds():
    x, y, _, _ = dataset(1, flip=0.2, sep=0.5)  # noisy: strong regularisation wins
    noisy = LogisticHead().fit(x, y)
    assert len(noisy.cv_scores_) < len(C_GRID)  # it stopped early ...
    assert exhaustive(noisy._standardise(x), y, 0)[0] == noisy.C_  # ... and still found the same C
    x, y, _, _ = dataset(4, flip=0.0, sep=3.0)  # separable: accuracy stays at its best for every weaker C
    clean = LogisticHead().fit(x, y)
    assert len(clean.cv_scores_) == len(C_GRID)
    assert exhaustive(clean._standardise(x), y, 0)[0] == clean.C_


def test_fit_is_deterministic_for_a_seed():
    x, y, x_test, _ = dataset(0, classes=3)
    a, b = LogisticHead(seed=3).fit(x, y), LogisticHead(seed=3).fit(x, y)
    assert a.C_ == b.C_
    np.testing.assert_array_equal(a.cv_scores_, b.cv_scores_)
    np.testing.assert_array_equal(a.model_.coef_, b.model_.coef_)
    np.testing.assert_array_equal(a.predict_proba(x_test), b.predict_proba(x_test))
    other = LogisticHead(seed=4).fit(x, y)
    assert not np.array_equal(other.cv_scores_[:3], a.cv_scores_[:3])  # the seed really moves the folds


def test_parallel_folds_give_the_serial_result(monkeypatch):
    x, y, _, _ = dataset(1, flip=0.2, sep=0.5)
    serial = LogisticHead().fit(x, y)
    calls = []
    real = heads_module.ThreadPoolExecutor

    def recording(workers):
        calls.append(workers)
        return real(workers)

    monkeypatch.setattr(heads_module, "PARALLEL_FOLDS_ABOVE", 0)
    monkeypatch.setattr(heads_module, "_usable_cores", lambda: 2)
    monkeypatch.setattr(heads_module, "ThreadPoolExecutor", recording)
    parallel = LogisticHead().fit(x, y)
    assert calls == [2]
    assert parallel.C_ == serial.C_
    np.testing.assert_array_equal(parallel.cv_scores_, serial.cv_scores_)
    np.testing.assert_array_equal(parallel.model_.coef_, serial.model_.coef_)


def test_blas_runs_on_one_thread_during_the_fit(monkeypatch):
    """Small fits slow down many times over with several BLAS threads; the limit must hold in every fit."""
    seen = []

    class Recording(LogisticRegression):
        def fit(self, *args, **kwargs):
            seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(heads_module, "LogisticRegression", Recording)
    x, y, _, _ = dataset(0)
    LogisticHead().fit(x, y)
    assert seen and set(seen) == {1}


def test_too_few_examples_per_class_fall_back_to_C_1():
    x, y, _, _ = dataset(0, n=40)
    y = y.copy()
    y[:] = 0
    y[:1] = 1  # one example of class 1: no two folds can hold it
    assert LogisticHead().fit(x[:20], y[:20]).C_ == 1.0
    assert LogisticHead(C=0.3).fit(x, np.arange(len(x)) % 2).C_ == 0.3  # a given C is used as is


def test_balanced_class_weight_favours_the_rare_class():
    x, y, x_test, y_test = dataset(7, n=1200, flip=0.05, sep=0.6, weights=[0.9, 0.1])
    assert np.mean(y == 1) < 0.15
    plain = LogisticHead(C=1.0).fit(x, y)
    balanced = LogisticHead(C=1.0, class_weight="balanced").fit(x, y)
    plain_pred = plain.predict_proba(x_test).argmax(1)
    balanced_pred = balanced.predict_proba(x_test).argmax(1)
    # more predictions of the rare class, and more of the rare examples found
    assert np.sum(balanced_pred == 1) > 1.5 * np.sum(plain_pred == 1)
    rare = y_test == 1
    assert np.mean(balanced_pred[rare] == 1) > np.mean(plain_pred[rare] == 1) + 0.1
    # the weights reach the cross-validated search too
    assert LogisticHead(class_weight="balanced").fit(x, y).model_.class_weight == "balanced"


def test_an_unknown_class_weight_is_refused():
    x, y, _, _ = dataset(0)
    with pytest.raises(InvalidParameterError, match=r"'class_weight' parameter of LogisticHead .* Got 'even'"):
        LogisticHead(class_weight="even").fit(x, y)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
@pytest.mark.parametrize("classes", [2, 4])
def test_save_load_round_trip_is_exact(tmp_path, classes, class_weight):
    x, y, x_test, _ = dataset(2, classes=classes)
    head = LogisticHead(class_weight=class_weight).fit(x, y)
    meta = head.save(tmp_path, prefix="h")
    json.dumps(meta)  # the description is plain JSON
    assert [p.name for p in tmp_path.iterdir()] == ["h.safetensors"]
    assert (tmp_path / "h.safetensors").read_bytes()[:2] not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
    loaded = LogisticHead.load(tmp_path, json.loads(json.dumps(meta)), prefix="h")
    assert loaded.C_ == head.C_ and loaded.class_weight == class_weight
    np.testing.assert_array_equal(loaded.predict_proba(x_test), head.predict_proba(x_test))
    np.testing.assert_array_equal(loaded.decision_function(x_test), head.decision_function(x_test))
    np.testing.assert_array_equal(loaded.model_.classes_, head.model_.classes_)
    # saving the loaded head writes the same bytes
    loaded.save(tmp_path, prefix="again")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "h.safetensors").read_bytes()
    assert ("class_weight" in meta) == (class_weight is not None)  # default heads keep release 0.1.0's JSON


# -- release 0.1.0 ------------------------------------------------------------------------------------


def release_fixtures():
    spec = importlib.util.spec_from_file_location("make_fixtures", RELEASE.parent / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def release_features(texts, layers):
    from unfreeze.features.embed import embed
    from unfreeze.models import Backbone

    backbone = Backbone.load(str(RELEASE / "model"), device="cpu")
    return embed(backbone, texts, layers, "mean", max_length=64, use_cache=False, progress=False).features(layers)


@pytest.mark.parametrize("name,layers", [("features", [1, 2]), ("features-cv", [2])])
def test_release_heads_load_and_predict_as_written(tmp_path, name, layers):
    config = json.loads((RELEASE / name / "unfreeze.json").read_text())
    expected = json.loads((RELEASE / "expected.json").read_text())
    head = LogisticHead.load(RELEASE / name, config["head"])
    proba = head.predict_proba(release_features(expected["texts"], layers))
    np.testing.assert_allclose(proba, expected["bundles"][name]["proba"], rtol=0, atol=1e-6)
    assert head.save(tmp_path) == config["head"]
    assert (tmp_path / "head.safetensors").read_bytes() == (RELEASE / name / "head.safetensors").read_bytes()


def test_refitting_the_release_cv_head_chooses_the_same_C():
    fixtures = release_fixtures()
    labels = sorted(set(fixtures.LABELS))
    y = np.array([labels.index(label) for label in fixtures.LABELS])
    head = LogisticHead(seed=0).fit(release_features(fixtures.TRAIN, [2]), y)
    written = json.loads((RELEASE / "features-cv" / "unfreeze.json").read_text())["head"]
    assert written["C"] == head.C_
    expected = json.loads((RELEASE / "expected.json").read_text())
    proba = head.predict_proba(release_features(expected["texts"], [2]))
    np.testing.assert_allclose(proba, expected["bundles"]["features-cv"]["proba"], rtol=0, atol=1e-6)
