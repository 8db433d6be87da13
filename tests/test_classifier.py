"""Classifier: the scikit-learn contract, parameter validation, determinism, learning."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score

from conftest import FAMILIES, sentiment_task_fixed
from unfreeze import Classifier, Features, Freeze, Lora, Training, UnfreezeError
from unfreeze.errors import InvalidParameterError

X, Y = sentiment_task_fixed(40, seed=0)
X_TEST, Y_TEST = sentiment_task_fixed(40, seed=1)


def make(tiny_model_dir, family="bert", **params) -> Classifier:
    defaults = dict(model=tiny_model_dir(family), C=1.0, progress=False, device="cpu")
    return Classifier(**{**defaults, **params})


# -- scikit-learn contract --------------------------------------------------------------------


def test_constructor_only_stores_parameters():
    # no validation and no loading at construction: even junk is stored as given
    junk_strategy = Features(C=-1, cv="x")
    clf = Classifier(model="no/such/model", strategy=junk_strategy, training=Training(epochs=-3), layers="junk")
    assert clf.get_params(deep=False)["strategy"] is junk_strategy
    assert clf.get_params()["strategy__C"] == -1 and clf.get_params()["training__epochs"] == -3
    assert not [k for k in vars(clf) if k.endswith("_")]
    assert Classifier(strategy="nope").strategy == "nope"  # a name is stored as given too


def test_the_short_form_builds_the_strategy_and_training_objects():
    clf = Classifier(strategy="freeze", k=4, epochs=2, learning_rate=1e-4)
    assert clf.strategy == Freeze(k=4)
    assert clf.training == Training(epochs=2, learning_rate=1e-4)
    assert repr(clf.strategy) == "Freeze(k=4)"
    # a strategy object given with more of its parameters: the object given is not changed
    given = Lora(r=4)
    clf = Classifier(strategy=given, lora_alpha=8)
    assert clf.strategy == Lora(r=4, lora_alpha=8) and given == Lora(r=4)


def test_get_params_matches_the_constructor_and_set_params_round_trips(tiny_model_dir):
    clf = make(tiny_model_dir)
    params = clf.get_params(deep=False)
    names = [
        p.name
        for p in inspect.signature(Classifier.__init__).parameters.values()
        if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    assert sorted(params) == sorted(names)
    assert params["model"] == tiny_model_dir("bert") and clf.get_params()["strategy__C"] == 1.0
    same = clf.set_params(pooling="cls", layers="-2,-1", strategy__C=0.5)
    assert same is clf
    assert clf.get_params()["pooling"] == "cls"
    assert clf.layers == "-2,-1" and clf.strategy.C == 0.5
    with pytest.raises(ValueError):
        clf.set_params(not_a_parameter=1)
    with pytest.raises(ValueError):
        clf.set_params(strategy__not_a_parameter=1)


def test_nested_parameters_reach_a_strategy_given_by_name_and_the_default_training():
    clf = Classifier(strategy="freeze")
    clf.set_params(strategy__k=3, training__learning_rate=1e-4)
    assert clf.strategy == Freeze(k=3) and clf.training == Training(learning_rate=1e-4)
    other = Classifier(strategy="freeze")
    assert other.training is None  # set_params did not change a shared default object


def test_clone_is_unfitted_with_the_same_parameters(tiny_model_dir):
    clf = make(tiny_model_dir, pooling="max", layers=[0, -1], seed=3).fit(X, Y)
    copy = clone(clf)
    assert copy is not clf
    assert copy.get_params() == clf.get_params()
    assert copy.strategy is not clf.strategy  # nested objects are cloned too
    assert not hasattr(copy, "predictor_") and not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError):
        copy.predict_proba(X[:2])


def test_grid_search_over_nested_strategy_and_training_parameters(tiny_model_dir):
    search = GridSearchCV(
        Classifier(
            model=tiny_model_dir("bert"),
            strategy=Freeze(k=1),
            training=Training(epochs=1, validation_fraction=0),
            batch_size=8,
            progress=False,
            device="cpu",
        ),
        {"strategy__k": [1, 2], "training__learning_rate": [1e-4, 3e-3]},
        cv=2,
    )
    search.fit(np.asarray(X), np.asarray(Y))
    tried = [(p["strategy__k"], p["training__learning_rate"]) for p in search.cv_results_["params"]]
    assert sorted(tried) == [(1, 1e-4), (1, 3e-3), (2, 1e-4), (2, 3e-3)]
    assert search.best_estimator_.strategy_.k == search.best_params_["strategy__k"]
    assert search.best_estimator_.training_.learning_rate == search.best_params_["training__learning_rate"]
    # the fits differ: the parameters really reached them
    assert (
        len(set(np.round(search.cv_results_["mean_test_score"], 6))) > 1
        or len({round(s, 6) for s in search.cv_results_["split0_test_score"]}) > 1
    )


def test_fit_returns_self_and_fitted_attributes_end_in_underscore(tiny_model_dir):
    clf = make(tiny_model_dir, pooling="auto", layers="0,-1")
    before = set(vars(clf))
    assert clf.fit(X, Y) is clf
    added = set(vars(clf)) - before
    assert added, "fit stored no fitted state"
    assert all(name.endswith("_") and not name.startswith("_") for name in added), added
    assert {"classes_", "predictor_", "strategy_", "pooling_", "layers_", "backbone_"} <= added
    assert clf.pooling_ == "mean"  # auto on an encoder
    assert clf.layers_ == (0, 2)
    assert list(clf.classes_) == [0, 1]
    # the parameters are untouched by fit
    assert clf.pooling == "auto" and clf.layers == "0,-1"


@pytest.mark.parametrize(
    "method",
    ["predict_proba", "decision_function", "predict", "score", "evaluate"],
)
def test_methods_before_fit_raise_not_fitted(method, tiny_model_dir):
    clf = make(tiny_model_dir)
    args = (X[:2],) if method in ("predict_proba", "decision_function", "predict") else (X[:2], Y[:2])
    with pytest.raises(NotFittedError):
        getattr(clf, method)(*args)


def test_cross_val_score_runs_and_scores_are_accuracies(tiny_model_dir):
    scores = cross_val_score(make(tiny_model_dir), np.asarray(X), np.asarray(Y), cv=3)
    assert scores.shape == (3,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.mean() > 0.6  # the task is learnable, so folds are not at chance


def test_score_equals_accuracy_of_predict(tiny_model_dir):
    clf = make(tiny_model_dir).fit(X, Y)
    predicted = clf.predict(X_TEST)
    assert clf.score(X_TEST, Y_TEST) == pytest.approx(np.mean(predicted == np.asarray(Y_TEST)))
    metrics = clf.evaluate(X_TEST, Y_TEST)
    assert metrics["accuracy"] == pytest.approx(clf.score(X_TEST, Y_TEST))
    assert set(metrics) == {"accuracy", "macro_f1", "mcc"}


def test_decision_function_agrees_with_predict(tiny_model_dir):
    clf = make(tiny_model_dir).fit(X, Y)
    scores = clf.decision_function(X_TEST)
    assert scores.shape == (len(X_TEST),)
    assert np.array_equal(clf.predict(X_TEST), clf.classes_[(scores > 0).astype(int)])


# -- every family: fit / predict ------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_predict_smoke_every_family(family, tiny_model_dir):
    int_labels = [7 if y else 3 for y in Y]  # not 0/1: predictions must come back in these values
    clf = make(tiny_model_dir, family).fit(X, int_labels)
    proba = clf.predict_proba(X_TEST[:10])
    assert proba.shape == (10, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    predicted = clf.predict(X_TEST[:10])
    assert predicted.shape == (10,)
    assert set(predicted.tolist()) <= {3, 7}
    assert np.array_equal(predicted, clf.classes_[proba.argmax(axis=1)])

    # three string classes
    names = ["neg", "pos", "meh"]
    str_labels = [names[i % 3] for i in range(len(X))]
    clf3 = make(tiny_model_dir, family).fit(X, str_labels)
    proba3 = clf3.predict_proba(X_TEST[:10])
    assert proba3.shape == (10, 3)
    np.testing.assert_allclose(proba3.sum(axis=1), 1.0, atol=1e-9)
    assert list(clf3.classes_) == sorted(names)
    assert set(clf3.predict(X_TEST[:10]).tolist()) <= set(names)
    assert clf3.pooling_ == ("last" if family in ("gpt2", "llama") else "mean")


def test_text_pairs_are_accepted(tiny_model_dir):
    pairs = [(text, "second part") for text in X]
    clf = make(tiny_model_dir).fit(pairs, Y)
    assert clf.predict_proba(pairs[:5]).shape == (5, 2)
    # the pair changes the input, so the probabilities differ from the single texts'
    single = make(tiny_model_dir).fit(X, Y)
    assert not np.allclose(clf.predict_proba(pairs[:5]), single.predict_proba(X[:5]))


def test_long_texts_are_truncated_and_counted(tiny_model_dir):
    texts = [t + " and more words" * 10 if i % 4 == 0 else t for i, t in enumerate(X)]
    clf = make(tiny_model_dir, max_length=12).fit(texts, Y)
    assert clf.n_truncated_ == sum(1 for i in range(len(X)) if i % 4 == 0)
    assert clf.max_length_ == 12


# -- invalid parameters ----------------------------------------------------------------------------

SKLEARN_SHAPE = r"^The '{name}' parameter of {owner} must be .+\. Got {got}\.$"


@pytest.mark.parametrize(
    ("name", "value", "owner"),
    [
        ("strategy", "nope", "Classifier"),
        ("pooling", "avg", "Classifier"),
        ("max_length", 0, "Classifier"),
        ("max_length", 2.5, "Classifier"),
        ("batch_size", 0, "Classifier"),
        ("seed", -1, "Classifier"),
        ("cache", "yes", "Classifier"),
        ("training", {"epochs": 2}, "Classifier"),
        ("C", 0, "features"),
        ("C", -1.0, "features"),
        ("C", "big", "features"),
        ("cv", 1, "features"),
        ("class_weight", "auto", "Training"),
    ],
)
def test_invalid_parameters_are_rejected_before_loading_the_model(name, value, owner):
    # a model that cannot load: validation must come first and name the parameter
    clf = Classifier(model="no/such/model", progress=False, **{name: value})
    with pytest.raises(InvalidParameterError) as info:
        clf.fit(X, Y)
    assert re.match(SKLEARN_SHAPE.format(name=name, owner=owner, got=re.escape(repr(value))), str(info.value)), str(
        info.value
    )


def test_invalid_pooling_lists_the_valid_modes():
    with pytest.raises(InvalidParameterError) as info:
        Classifier(model="no/such/model", pooling="avg").fit(X, Y)
    for mode in ("'mean'", "'cls'", "'last'", "'max'"):
        assert mode in str(info.value)


@pytest.mark.parametrize("layers", [3, -4, "0,5", "junk", [1, 1]])
def test_layers_out_of_range_for_the_model(layers, tiny_model_dir):
    with pytest.raises(InvalidParameterError, match=r"^The 'layers' parameter of Classifier must be .+ Got .+\.$"):
        make(tiny_model_dir, layers=layers).fit(X, Y)


def test_bad_inputs_are_user_errors(tiny_model_dir):
    clf = make(tiny_model_dir)
    with pytest.raises(UnfreezeError, match="single string"):
        clf.fit("just one text", [0])
    with pytest.raises(UnfreezeError, match="empty"):
        clf.fit([], [])
    with pytest.raises(UnfreezeError, match="X has 40 inputs but y has 39 labels"):
        clf.fit(X, Y[:-1])
    with pytest.raises(UnfreezeError, match="single class"):
        clf.fit(X, [1] * len(X))


# -- determinism and learning ----------------------------------------------------------------------


def test_same_seed_gives_identical_probabilities(tiny_model_dir):
    # C=None: the cross-validated choice of C is seeded too; no cache, so both run the model
    a = make(tiny_model_dir, C=None, cv=3, seed=5, cache=False).fit(X, Y)
    b = make(tiny_model_dir, C=None, cv=3, seed=5, cache=False).fit(X, Y)
    assert a.predictor_.head.C_ == b.predictor_.head.C_ == a.fit_record_["C"]
    assert np.array_equal(a.predict_proba(X_TEST), b.predict_proba(X_TEST))


def test_tiny_random_model_learns_a_word_level_task(tiny_model_dir):
    clf = make(tiny_model_dir, pooling="mean", layers="0,-1", C=None, cv=3).fit(X, Y)
    assert clf.score(X, Y) >= 0.9
    assert clf.score(X_TEST, Y_TEST) >= 0.7  # held out: above chance (0.5) by a clear margin


def test_shuffled_labels_are_not_learned_as_well(tiny_model_dir):
    # the learnable task above is not an artefact: scrambling labels removes the signal on test
    rng = np.random.default_rng(0)
    scrambled = list(rng.permutation(Y))
    clf = make(tiny_model_dir, pooling="mean", layers="0,-1", C=None, cv=3).fit(X, scrambled)
    learned = make(tiny_model_dir, pooling="mean", layers="0,-1", C=None, cv=3).fit(X, Y)
    assert learned.score(X_TEST, Y_TEST) > clf.score(X_TEST, Y_TEST)
