"""Multi-label and regression estimators on tiny models: features' heads agree with scikit-learn on the same
embeddings, thresholds come from out-of-fold scores, bundles round-trip, scikit-learn's model selection and
API checks work, setfit fits label sets and refuses scores."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import f1_score, r2_score
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks
from threadpoolctl import threadpool_limits

from conftest import sentiment_task_fixed
from unfreeze import Classifier
from unfreeze.errors import UnfreezeError
from unfreeze.estimators import Regressor
from unfreeze.features.logistic import C_GRID
from unfreeze.features.ovr import CONSTANT_LOGIT, OneVsRestHead
from unfreeze.features.ridge import ALPHA_GRID
from unfreeze.tasks import MultiLabel, make_task
from unfreeze.tasks.multilabel import rarest_label_groups
from unfreeze.training.contrastive import count_pairs, pair_batches


def tagged(n: int, seed: int) -> tuple[list[str], list[tuple[str, ...]]]:
    """Sentiment texts; labels: the polarity, and "plot" when the word plot occurs (about 4 texts in 10)."""
    texts, polarity = sentiment_task_fixed(n, seed)
    labels = [
        tuple(sorted({"pos" if p else "neg"} | ({"plot"} if "plot" in t.split() else set())))
        for t, p in zip(texts, polarity)
    ]
    return texts, labels


def scored(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Sentiment texts with a score: 2 for a positive word, plus 0.5 per "really", plus a little noise."""
    texts, polarity = sentiment_task_fixed(n, seed)
    rng = np.random.default_rng(seed)
    return texts, np.array(
        [2.0 * p + 0.5 * t.split().count("really") + 0.1 * rng.normal() for t, p in zip(texts, polarity)]
    )


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> dict:
    return {"model": tiny_model_dir("bert"), "progress": False}


@pytest.fixture(scope="module")
def multilabel_fit(tiny):
    texts, labels = tagged(32, 0)
    return Classifier(task="multilabel", **tiny).fit(texts, labels), texts, labels


@pytest.fixture(scope="module")
def regression_fit(tiny):
    texts, y = scored(32, 0)
    return Regressor(**tiny).fit(texts, y), texts, y


def indicator(clf: Classifier, labels) -> np.ndarray:
    return clf.task_.encode(labels).astype(np.int64)


def our_folds(z: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> list:
    """The folds OneVsRestHead cross-validates on: stratified by each row's rarest label."""
    groups = rarest_label_groups(y.astype(np.float32), min_group=folds)
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(z, groups))


# -- features, multilabel ---------------------------------------------------------------------------------------


def test_features_multilabel_is_one_vs_rest_logistic_regression_on_the_same_embeddings(multilabel_fit):
    clf, texts, labels = multilabel_fit
    test_texts, test_labels = tagged(16, 1)
    assert list(clf.classes_) == ["neg", "plot", "pos"]
    assert clf.fit_record_["C"] == pytest.approx(C_GRID[9])
    scaler = StandardScaler().fit(clf.predictor_.features(texts))
    ovr = OneVsRestClassifier(LogisticRegression(C=clf.fit_record_["C"], max_iter=2000))
    ovr.fit(scaler.transform(clf.predictor_.features(texts)), indicator(clf, labels))
    theirs = ovr.decision_function(scaler.transform(clf.predictor_.features(test_texts)))
    np.testing.assert_allclose(clf.decision_function(test_texts), theirs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(test_texts), 1 / (1 + np.exp(-theirs)), rtol=1e-5, atol=1e-7)
    # labels in, labels out: tuples of the fitted labels, decided at the tuned threshold
    predicted = clf.predict(test_texts)
    threshold = clf.task_.threshold_values()
    assert predicted == [
        tuple(label for label, p, t in zip(clf.classes_, row, threshold) if p >= t) for row in 1 / (1 + np.exp(-theirs))
    ]
    assert clf.score(test_texts, test_labels) == pytest.approx(
        np.mean([p == t for p, t in zip(predicted, test_labels)])
    )


def test_the_one_C_is_the_best_cross_validated_micro_f1_of_scikit_learn_fits():
    rng = np.random.default_rng(2)
    scales = np.linspace(0.5, 5, 10)
    x = rng.normal(size=(80, 10)) * scales  # unequal scales: standardising matters
    y = ((x / scales) @ rng.normal(size=(10, 3)) + rng.normal(scale=2.0, size=(80, 3)) > 0.8).astype(np.int64)
    head = OneVsRestHead().fit(x, y)
    z = StandardScaler().fit_transform(x)
    scores = []
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")
        for C in C_GRID[: len(head.cv_scores_)]:
            ovr = OneVsRestClassifier(LogisticRegression(C=C, max_iter=2000))
            oof = cross_val_predict(ovr, z, y, cv=our_folds(z, y), method="decision_function")
            scores.append(f1_score(y, (oof >= 0).astype(int), average="micro"))
    np.testing.assert_allclose(head.cv_scores_, scores)
    assert head.C_ == C_GRID[int(np.argmax(scores))] == C_GRID[6]
    assert len(head.cv_scores_) == 10  # the path stopped three Cs past its peak


def test_parallel_folds_give_the_serial_result(monkeypatch):
    import unfreeze.features.ovr as ovr_module

    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 8))
    y = (x[:, :3] + rng.normal(scale=1.0, size=(60, 3)) > 0.3).astype(np.int64)
    serial = OneVsRestHead().fit(x, y)
    calls = []
    real = ovr_module.ThreadPoolExecutor

    def recording(workers):
        calls.append(workers)
        return real(workers)

    monkeypatch.setattr(ovr_module, "PARALLEL_FOLDS_ABOVE", 0)
    monkeypatch.setattr(ovr_module, "_usable_cores", lambda: 2)
    monkeypatch.setattr(ovr_module, "ThreadPoolExecutor", recording)
    parallel = OneVsRestHead().fit(x, y)
    assert calls == [2]
    assert parallel.C_ == serial.C_
    np.testing.assert_array_equal(parallel.cv_scores_, serial.cv_scores_)
    np.testing.assert_array_equal(parallel.oof_logits_, serial.oof_logits_)
    np.testing.assert_array_equal(parallel.coef_, serial.coef_)


def test_thresholds_are_tuned_on_out_of_fold_scores_of_every_training_text(multilabel_fit):
    clf, texts, labels = multilabel_fit
    assert clf.fit_record_["decision_tuned"] is True
    assert clf.fit_record_["examples_seen"] == 32  # no validation split held out
    assert "decision_note" not in clf.fit_record_
    z = StandardScaler().fit_transform(clf.predictor_.features(texts))
    y = indicator(clf, labels)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")
        ovr = OneVsRestClassifier(LogisticRegression(C=clf.fit_record_["C"], max_iter=2000))
        oof = cross_val_predict(ovr, z, y, cv=our_folds(z, y), method="decision_function")
    # the head's out-of-fold scores are scikit-learn's (up to where warm-started lbfgs stops)
    head = clf.predictor_.head
    np.testing.assert_allclose(head.oof_logits_, oof, atol=0.05)
    reference = make_task("multilabel")
    reference.fit_labels(labels)
    reference.tune(y, head.oof_logits_)
    np.testing.assert_array_equal(clf.task_.threshold_, reference.threshold_)
    assert clf.task_.threshold_.tolist() == [0.3, 0.3, 0.3]
    assert clf.fit_record_["decision"]["threshold"] == clf.task_.threshold_.tolist()


def test_per_label_thresholds_from_out_of_fold_scores_survive_the_bundle(tiny, tmp_path):
    texts, labels = tagged(32, 0)
    clf = Classifier(task=MultiLabel(thresholds="per-label"), **tiny).fit(texts, labels)
    reference = make_task("multilabel", thresholds="per-label")
    reference.fit_labels(labels)
    reference.tune(reference.encode(labels), clf.predictor_.head.oof_logits_)
    assert clf.task_.threshold_.tolist() == reference.threshold_.tolist() == [0.2, 0.5, 0.7]
    loaded = Classifier.load(clf.save(tmp_path / "per-label"))
    assert loaded.task_.threshold_.tolist() == [0.2, 0.5, 0.7]
    test_texts, _ = tagged(16, 1)
    assert loaded.predict(test_texts) == clf.predict(test_texts)


def test_a_given_C_still_tunes_on_out_of_fold_scores_of_cold_fits():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6))
    y = np.column_stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0.5, x[:, 3] > 1.5]).astype(np.int64)
    head = OneVsRestHead(C=0.5, out_of_fold=True).fit(x, y)
    assert head.C_ == 0.5 and head.cv_scores_.shape == (1,)
    z = StandardScaler().fit_transform(x)
    oof = cross_val_predict(
        OneVsRestClassifier(LogisticRegression(C=0.5, max_iter=2000)),
        z,
        y,
        cv=our_folds(z, y),
        method="decision_function",
    )
    np.testing.assert_allclose(head.oof_logits_, oof, rtol=1e-6, atol=1e-8)  # one C: no warm start, sklearn's fits
    assert not hasattr(OneVsRestHead(C=0.5).fit(x, y), "oof_logits_")  # not asked: no folds run


def test_a_rare_label_absent_from_a_fold_and_balanced_weights(tiny):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 4))
    y = np.column_stack([x[:, 0] > 0, np.arange(30) == 7]).astype(np.int64)  # label 1: one row, in one fold only
    head = OneVsRestHead().fit(x, y)
    # where the row is held out, its fold's training part never has the label: a constant score, not a crash
    assert head.oof_logits_[7, 1] == -CONSTANT_LOGIT
    assert not head.constant_.any()
    plain = OneVsRestHead(C=0.1).fit(x, y).predict_proba(x)
    balanced = OneVsRestHead(C=0.1, class_weight="balanced").fit(x, y).predict_proba(x)
    assert balanced[7, 1] > 0.5 > plain[7, 1]  # the rare label's positive weighs 29 times more


def test_a_given_validation_set_tunes_the_thresholds_instead(tiny):
    texts, labels = tagged(24, 0)
    val_texts, val_labels = tagged(12, 5)
    clf = Classifier(task="multilabel", **tiny).fit(texts, labels, validation=(val_texts, val_labels))
    assert "decision_tuned" not in clf.fit_record_
    reference = make_task("multilabel")
    reference.fit_labels(labels)
    reference.tune(reference.encode(val_labels), clf.decision_function(val_texts))
    np.testing.assert_array_equal(clf.task_.threshold_, reference.threshold_)


def test_an_indicator_matrix_in_gives_an_indicator_matrix_out(tiny, multilabel_fit):
    listed, texts, labels = multilabel_fit
    y = indicator(listed, labels)
    clf = Classifier(task="multilabel", **tiny).fit(texts, y)
    test_texts, test_labels = tagged(16, 1)
    predicted = clf.predict(test_texts)
    assert isinstance(predicted, np.ndarray) and predicted.shape == (16, 3) and set(np.unique(predicted)) <= {0, 1}
    np.testing.assert_array_equal(predicted, indicator(listed, listed.predict(test_texts)))
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.score(test_texts, indicator(listed, test_labels)) == listed.score(test_texts, test_labels)


def test_a_label_always_on_or_off_gets_a_constant_output(tiny):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5))
    y = np.column_stack([x[:, 0] > 0, np.zeros(30), np.ones(30)]).astype(np.int64)
    head = OneVsRestHead().fit(x, y)
    logits = head.logits(rng.normal(size=(7, 5)))
    np.testing.assert_array_equal(logits[:, 1], -CONSTANT_LOGIT)
    np.testing.assert_array_equal(logits[:, 2], CONSTANT_LOGIT)
    assert head.constant_.tolist() == [False, True, True]
    texts, polarity = sentiment_task_fixed(16, 0)
    clf = Classifier(task="multilabel", **tiny).fit(texts, np.column_stack([polarity, np.zeros(16)]))
    assert clf.predict(texts)[:, 1].tolist() == [0] * 16


# -- features, regression ---------------------------------------------------------------------------------------


def test_features_regression_is_ridge_cv_on_the_same_embeddings(regression_fit):
    reg, texts, y = regression_fit
    test_texts, test_y = scored(16, 1)
    scaler = StandardScaler().fit(reg.predictor_.features(texts))
    ridge = RidgeCV(alphas=ALPHA_GRID).fit(scaler.transform(reg.predictor_.features(texts)), (y - y.mean()) / y.std())
    theirs = ridge.predict(scaler.transform(reg.predictor_.features(test_texts))) * y.std() + y.mean()
    np.testing.assert_allclose(reg.predict(test_texts), theirs, rtol=1e-6, atol=1e-6)
    assert reg.fit_record_["alpha"] == ridge.alpha_ == pytest.approx(ALPHA_GRID[2])
    assert reg.score(test_texts, test_y) == pytest.approx(r2_score(test_y, theirs))  # score is R^2
    assert round(reg.score(test_texts, test_y), 4) == 0.9222
    assert reg.evaluate(test_texts, test_y)["r2"] == pytest.approx(reg.score(test_texts, test_y))


def test_strengths_belong_to_their_heads(tiny):
    texts, y = scored(12, 0)
    with pytest.raises(UnfreezeError, match=r"C=1.0 is the logistic head's strength.*give alpha instead"):
        Regressor(C=1.0, **tiny).fit(texts, y)
    texts, labels = tagged(12, 0)
    with pytest.raises(UnfreezeError, match=r"alpha=1.0 is the ridge head's strength.*give C instead"):
        Classifier(task="multilabel", alpha=1.0, **tiny).fit(texts, labels)


# -- bundles ------------------------------------------------------------------------------------------------------


def test_multilabel_bundle_round_trip(multilabel_fit, tmp_path):
    clf, _, _ = multilabel_fit
    test_texts, _ = tagged(16, 1)
    path = clf.save(tmp_path / "ml")
    config = json.loads((path / "unfreeze.json").read_text())
    assert config["task"]["name"] == "multilabel" and config["predictor"]["head"]["type"] == "ovr_logistic"
    assert not [p for p in path.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib")]
    loaded = Classifier.load(path)
    np.testing.assert_array_equal(loaded.decision_function(test_texts), clf.decision_function(test_texts))
    np.testing.assert_array_equal(loaded.task_.threshold_values(), clf.task_.threshold_values())
    assert loaded.predict(test_texts) == clf.predict(test_texts)


def test_regression_bundle_round_trip(regression_fit, tmp_path):
    reg, _, _ = regression_fit
    test_texts, _ = scored(16, 1)
    path = reg.save(tmp_path / "reg")
    config = json.loads((path / "unfreeze.json").read_text())
    assert config["task"]["name"] == "regression" and config["predictor"]["head"]["type"] == "ridge"
    loaded = Regressor.load(path)
    assert is_regressor(loaded)
    np.testing.assert_array_equal(loaded.predict(test_texts), reg.predict(test_texts))


# -- scikit-learn ---------------------------------------------------------------------------------------------------


def test_regressor_and_multilabel_classifier_are_what_scikit_learn_expects():
    assert is_regressor(Regressor()) and not is_classifier(Regressor())
    assert is_classifier(Classifier(task="multilabel"))


def test_cross_val_score_and_grid_search_with_the_regressor(tiny):
    texts, y = scored(24, 0)
    folds = KFold(3, shuffle=True, random_state=0)
    base = Regressor(**tiny)
    scores = cross_val_score(base, texts, y, cv=folds)
    manual = []
    for train, test in folds.split(texts):
        fitted = clone(base).fit([texts[i] for i in train], y[train])
        manual.append(r2_score(y[test], fitted.predict([texts[i] for i in test])))
    np.testing.assert_allclose(scores, manual)
    search = GridSearchCV(base, {"strategy__alpha": [0.01, 1000.0]}, cv=folds).fit(texts, y)
    means = [cross_val_score(base.set_params(strategy__alpha=a), texts, y, cv=folds).mean() for a in (0.01, 1000.0)]
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], means)
    assert search.best_params_ == {"strategy__alpha": [0.01, 1000.0][int(np.argmax(means))]}
    assert search.best_estimator_.fit_record_["alpha"] == search.best_params_["strategy__alpha"]


def test_cross_val_score_and_grid_search_with_an_indicator_matrix(tiny):
    texts, labels = tagged(24, 0)
    classes = ["neg", "plot", "pos"]
    y = np.array([[int(c in row) for c in classes] for row in labels])
    folds = KFold(3, shuffle=True, random_state=0)
    base = Classifier(task="multilabel", **tiny)
    scores = cross_val_score(base, texts, y, cv=folds)
    manual = []
    for train, test in folds.split(texts):
        fitted = clone(base).fit([texts[i] for i in train], y[train])
        manual.append(np.mean((fitted.predict([texts[i] for i in test]) == y[test]).all(axis=1)))  # subset accuracy
    np.testing.assert_allclose(scores, manual)
    search = GridSearchCV(base, {"strategy__C": [0.001, 10.0]}, cv=folds, scoring="f1_micro").fit(texts, y)
    assert search.best_estimator_.predict(texts[:3]).shape == (3, 3)
    assert search.best_estimator_.fit_record_["C"] == search.best_params_["strategy__C"]


# the checks of scikit-learn's estimator_checks that apply to an estimator of texts: its API and parameters (the
# others fit on numeric arrays; check_do_not_raise_errors_in_init_or_set_params passes -1 as **shorthand)
API_CHECKS = (
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_no_attributes_set_in_init",
    "check_estimators_unfitted",
    "check_estimator_repr",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_mixin_order",
)


@pytest.mark.parametrize("check", API_CHECKS)
@pytest.mark.parametrize("make", [Regressor, lambda: Classifier(task="multilabel")], ids=["Regressor", "multilabel"])
def test_scikit_learn_api_checks(check, make):
    estimator = make()
    getattr(estimator_checks, check)(type(estimator).__name__, estimator)


# -- setfit ---------------------------------------------------------------------------------------------------------


def test_setfit_pairs_label_sets_by_a_shared_label():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    pairs = [p for batch in pair_batches(y, 3, 7, np.random.default_rng(0)) for p in zip(*batch)]
    # as the setfit library: a positive and a negative pair per text and round (the text without a label lends
    # its positive turn to another), positive exactly when the two share a label
    assert len(pairs) == count_pairs(y, 3) == 2 * len(y) * 3
    for left, right, target in pairs:
        assert bool((y[left] * y[right]).any()) == (target == 1.0), (left, right, target)
    assert not any(left == 3 and t == 1.0 for left, _, t in pairs)


def test_setfit_fits_label_sets_and_beats_the_most_frequent_sets(tiny):
    texts, labels = tagged(32, 0)
    test_texts, test_labels = tagged(24, 1)
    # one learning rate: no rate search, so no validation split; the thresholds come from out-of-fold scores
    clf = Classifier(strategy="setfit", task="multilabel", num_iterations=4, learning_rate=2e-5, **tiny)
    clf.fit(texts, labels)
    assert type(clf.predictor_.head).__name__ == "OneVsRestHead" and clf.fit_record_["decision_tuned"] is True
    truth = indicator(clf, test_labels)
    micro = f1_score(truth, indicator(clf, clf.predict(test_texts)), average="micro")
    # the trivial baseline: every label that is on in most training texts, for every text
    common = (indicator(clf, labels).mean(axis=0) >= 0.5).astype(int)
    baseline = f1_score(truth, np.tile(common, (len(truth), 1)), average="micro")
    assert micro > baseline + 0.1, (micro, baseline)


def test_setfit_refuses_a_regression_naming_the_strategies_that_can(tiny):
    texts, y = scored(12, 0)
    with pytest.raises(UnfreezeError) as error:
        Regressor(strategy="setfit", **tiny).fit(texts, y)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("Strategy 'setfit' cannot fit a regression task; strategies that can: features, freeze")
    assert "setfit" not in message.split("can:")[1]
