"""``mix``: ELMo's scalar mix of the frozen model's pooled states and a linear head.

What trains (the mix and the head, never the backbone), one forward pass however many
epochs, weights that sum to one and are reported (record, CLI, report plot), bundles that
hold only the mix, determinism, one-line errors, sweeps (the shared embedding pass serves
every layer the mix reads; local and Ray), and a grid with every strategy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from conftest import sentiment_task_varied
from test_cli_errors import assert_user_error
from test_ray_backend import ray_cluster  # noqa: F401  (the module-scoped local Ray cluster fixture)
from test_sweep import write_toy_csv
from unfreeze import Classifier, Mix, Training
from unfreeze.cli import app
from unfreeze.errors import UnfreezeError
from unfreeze.strategies.frozen import resolve_layer_choice

TRAINING = Training(epochs=4, validation_fraction=0.0)


@pytest.fixture(scope="module")
def task():
    return sentiment_task_varied(48, 0), sentiment_task_varied(16, 1)


@pytest.fixture(scope="module")
def fitted(tiny_model_dir, task):
    (texts, labels), _ = task
    return Classifier(
        tiny_model_dir("bert"), strategy=Mix(), training=TRAINING, batch_size=8, progress=False, device="cpu"
    ).fit(texts, labels)


def _counting_forward(backbone, monkeypatch) -> dict:
    calls = {"n": 0}
    original = backbone.model.forward

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(backbone.model, "forward", counting)
    return calls


# -- what trains ---------------------------------------------------------------------------------


def test_only_the_mix_weights_gamma_and_head_train_never_the_backbone(tiny_model_dir, task):
    from unfreeze.models.loaded import shared_backbone

    (texts, labels), _ = task
    backbone = shared_backbone(tiny_model_dir("bert"), "cpu")
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    clf = Classifier(
        tiny_model_dir("bert"), strategy=Mix(), training=TRAINING, batch_size=8, progress=False, device="cpu"
    ).fit(texts, labels)
    assert clf.backbone_ is backbone  # the shared model: nothing copied, nothing changed
    after = backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    module = clf.predictor_.module
    n_states, hidden = backbone.num_blocks + 1, backbone.hidden_size
    assert {n: tuple(p.shape) for n, p in module.named_parameters()} == {
        "weights": (n_states,),
        "gamma": (),
        "head.weight": (2, hidden),
        "head.bias": (2,),
    }
    assert clf.fit_record_["trainable_parameters"] == n_states + 1 + 2 * hidden + 2
    assert clf.fit_record_["total_parameters"] == backbone.n_parameters() + n_states + 1 + 2 * hidden + 2
    # the mix itself moved away from its start (equal weights, gamma 1)
    assert not torch.allclose(module.weights.detach(), torch.zeros(n_states))
    assert float(module.gamma.detach()) != 1.0
    history = clf.fit_record_["history"]
    assert len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]


def test_epochs_cost_no_forward_pass_and_a_second_fit_none_at_all(tiny_model_dir, task, monkeypatch, fresh_cache):
    from unfreeze.models.loaded import shared_backbone

    (texts, labels), _ = task
    backbone = shared_backbone(tiny_model_dir("bert"), "cpu")
    calls = _counting_forward(backbone, monkeypatch)
    batches = -(-len(texts) // 8)
    for epochs, expected in ((1, batches), (6, batches)):
        calls["n"] = 0
        Classifier(
            tiny_model_dir("bert"),
            strategy=Mix(),
            training=Training(epochs=epochs, learning_rate="fixed"),
            batch_size=8,
            progress=False,
            device="cpu",
            cache=False,
        ).fit(texts, labels)
        assert calls["n"] == expected  # one pass for every layer, whatever the epochs
    # a rate search fits once per rate on the same texts: the shared pool serves every rate after the first
    calls["n"] = 0
    searched = Classifier(
        tiny_model_dir("bert"),
        strategy=Mix(),
        training=Training(epochs=2),
        batch_size=8,
        progress=False,
        device="cpu",
        cache=False,
    ).fit(texts, labels)
    assert len(searched.fit_record_["lr_search"]) == 3
    assert calls["n"] <= batches + 2  # the training texts once, the validation texts once
    calls["n"] = 0
    Classifier(
        tiny_model_dir("bert"), strategy=Mix(), training=TRAINING, batch_size=8, progress=False, device="cpu"
    ).fit(texts, labels)
    assert calls["n"] == batches  # fills the on-disk cache ...
    calls["n"] = 0
    clf = Classifier(
        tiny_model_dir("bert"),
        strategy=Mix(),
        training=Training(epochs=3),
        batch_size=8,
        progress=False,
        device="cpu",
        seed=1,
    ).fit(texts, labels)
    assert calls["n"] == 0 and clf.fit_record_["states_from_cache"]  # ... which serves the next fit entirely


# -- the layer weights ---------------------------------------------------------------------------


def test_layer_weights_sum_to_one_and_are_reported(fitted, tiny_backbone):
    record = fitted.fit_record_
    n_states = tiny_backbone("bert").num_blocks + 1
    assert record["mixed_layers"] == list(range(n_states))
    weights = np.array(record["layer_weights"])
    assert weights.shape == (n_states,) and (weights > 0).all()
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert list(fitted.predictor_.layer_weights().values()) == pytest.approx(record["layer_weights"])
    assert record["gamma"] == pytest.approx(float(fitted.predictor_.module.gamma.detach()))


@pytest.mark.parametrize(
    "choice, expected", [("all", (0, 1, 2)), ("last2", (1, 2)), ("-1", (2,)), ("0,-1", (0, 2)), ([2, 0], (2, 0))]
)
def test_a_chosen_set_of_layers_is_mixed(tiny_model_dir, task, choice, expected):
    (texts, labels), _ = task
    assert resolve_layer_choice(choice, 2, "mix_layers", "mix") == expected
    clf = Classifier(
        tiny_model_dir("bert"),
        strategy=Mix(mix_layers=choice),
        training=Training(epochs=1),
        batch_size=8,
        progress=False,
        device="cpu",
    ).fit(texts, labels)
    assert clf.fit_record_["mixed_layers"] == list(expected)
    assert sum(clf.fit_record_["layer_weights"]) == pytest.approx(1.0, abs=1e-6)


def test_the_layer_norm_option_changes_what_is_mixed(tiny_model_dir, task):
    (texts, labels), (test_texts, _) = task
    kwargs = dict(training=TRAINING, batch_size=8, progress=False, device="cpu")
    normed = Classifier(tiny_model_dir("bert"), strategy=Mix(), **kwargs).fit(texts, labels)
    raw = Classifier(tiny_model_dir("bert"), strategy=Mix(layer_norm=False), **kwargs).fit(texts, labels)
    assert not np.allclose(normed.predict_proba(test_texts), raw.predict_proba(test_texts))
    states = torch.randn(3, 3, 32) * torch.tensor([1.0, 10.0, 100.0])[None, :, None]
    mixed = normed.predictor_.module.mixed(states)
    assert mixed.shape == (3, 32)


# -- bundles, determinism ------------------------------------------------------------------------


def test_bundle_holds_only_the_mix_and_round_trips_identically(fitted, task, tmp_path):
    from unfreeze.inference.bundle_predictor import BundlePredictor

    _, (test_texts, _) = task
    path = fitted.save(tmp_path / "bundle")
    assert sorted(p.name for p in path.iterdir()) == ["mix.safetensors", "unfreeze.json"]
    tensors = load_file(str(path / "mix.safetensors"))
    assert sorted(tensors) == ["gamma", "head.bias", "head.weight", "weights"]
    assert (path / "mix.safetensors").stat().st_size < 4096  # no backbone weights
    config = json.loads((path / "unfreeze.json").read_text())
    assert config["predictor"]["type"] == "scalar_mix" and config["strategy"]["name"] == "mix"
    assert config["fit_record"]["layer_weights"] == fitted.fit_record_["layer_weights"]
    loaded = Classifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(test_texts), fitted.predict_proba(test_texts))
    np.testing.assert_array_equal(loaded.predict(test_texts), fitted.predict(test_texts))
    # predict and serve: a single-head bundle is its one head, 'default'
    served = BundlePredictor(path)
    assert list(served.heads) == ["default"] and served.heads["default"]["strategy"] == "mix"
    np.testing.assert_array_equal(served.predict_proba(test_texts)["default"], fitted.predict_proba(test_texts))


def test_same_seed_same_numbers_another_seed_others(tiny_model_dir, task, fitted):
    (texts, labels), (test_texts, _) = task
    kwargs = dict(strategy=Mix(), training=TRAINING, batch_size=8, progress=False, device="cpu")
    again = Classifier(tiny_model_dir("bert"), **kwargs).fit(texts, labels)
    assert again.fit_record_["layer_weights"] == fitted.fit_record_["layer_weights"]
    assert again.fit_record_["history"] == fitted.fit_record_["history"]
    np.testing.assert_array_equal(again.predict_proba(test_texts), fitted.predict_proba(test_texts))
    other = Classifier(tiny_model_dir("bert"), seed=1, **kwargs).fit(texts, labels)
    assert other.fit_record_["layer_weights"] != fitted.fit_record_["layer_weights"]


# -- bad settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("choice", ["banana", "last0", "1.5", "", [0.5]])
def test_malformed_layer_choices_fail_before_a_model_loads(choice):
    with pytest.raises(UnfreezeError, match=r"The 'mix_layers' parameter of mix must be 'all', 'lastN'"):
        Classifier("no-such-model", strategy=Mix(mix_layers=choice)).fit(["a", "b"], [0, 1])


@pytest.mark.parametrize("choice", ["last4", "3", "-4", "1,1"])
def test_layer_choices_this_model_lacks_are_refused(tiny_model_dir, choice):
    with pytest.raises(UnfreezeError, match=r"The 'mix_layers' parameter of mix must be") as error:
        Classifier(tiny_model_dir("bert"), strategy=Mix(mix_layers=choice), progress=False).fit(["a", "b"], [0, 1])
    assert "\n" not in str(error.value)


def test_the_training_settings_it_declares_are_read(tiny_model_dir, task):
    from unfreeze.strategies import BiLSTM

    # the BiLSTM's batches pad to their longest sentence, so it groups them by length too; the mix's pooled states
    # have no length
    assert Mix.training_settings | {"group_by_length"} == BiLSTM.training_settings
    assert "prefix_cache" not in Mix.training_settings and "head_learning_rate" not in Mix.training_settings
    (texts, labels), (test_texts, _) = task
    kwargs = dict(strategy=Mix(), batch_size=8, progress=False, device="cpu")
    capped = Classifier(
        tiny_model_dir("bert"), training=Training(epochs=50, max_steps=7, validation_fraction=0.0), **kwargs
    ).fit(texts, labels)
    assert capped.fit_record_["steps"] == 7 and capped.fit_record_["epochs_run"] == 2  # 6 steps per epoch
    stopped = Classifier(
        tiny_model_dir("bert"), training=Training(epochs=50, patience=1, validation_fraction=0.25), **kwargs
    ).fit(texts, labels)
    history = stopped.fit_record_["history"]
    assert "val_accuracy" in history[0] and len(history) < 50  # validated each epoch, stopped early
    assert stopped.fit_record_["best_epoch"] == len(history) - 1
    skewed = [0] * 36 + [1] * 12
    plain = Classifier(tiny_model_dir("bert"), training=TRAINING, **kwargs).fit(texts, skewed)
    balanced = Classifier(
        tiny_model_dir("bert"), training=Training(epochs=4, validation_fraction=0.0, class_weight="balanced"), **kwargs
    ).fit(texts, skewed)
    assert balanced.predict_proba(test_texts)[:, 1].mean() > plain.predict_proba(test_texts)[:, 1].mean()


def test_training_settings_mix_does_not_read_are_refused():
    with pytest.raises(UnfreezeError, match="'prefix_cache' is not used by strategy 'mix'"):
        Classifier(strategy=Mix(), training=Training(prefix_cache=False)).fit(["a", "b"], [0, 1])


def test_cli_fit_prints_the_weights_and_predict_uses_the_bundle(runner, tiny_model_dir, tmp_path):
    train = write_toy_csv(tmp_path / "train.csv", 32, 0)
    out = tmp_path / "bundle"
    result = runner.invoke(
        app,
        [
            "fit",
            str(train),
            "--model",
            tiny_model_dir("bert"),
            "--strategy",
            "mix",
            "--mix-layers",
            "last2",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("layer weights"))
    config = json.loads((out / "unfreeze.json").read_text())
    weights = config["fit_record"]["layer_weights"]
    assert line.startswith(
        f"layer weights (hidden state: weight; 0 = embeddings): 1: {weights[0]:.3f}  2: {weights[1]:.3f}  gamma"
    )
    predicted = runner.invoke(app, ["predict", str(out), str(train), "-o", str(tmp_path / "pred.csv")])
    assert predicted.exit_code == 0, predicted.output
    import pandas as pd

    frame = pd.read_csv(tmp_path / "pred.csv")
    expected = Classifier.load(out).predict_proba(frame["text"].tolist())
    np.testing.assert_allclose(frame[["proba_neg", "proba_pos"]].to_numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--mix-layers", "last9"], ["'mix_layers' parameter of mix", "within this model's 3 hidden states", "last9"]),
        (["--mix-layers", "banana"], ["'mix_layers' parameter of mix", "'all', 'lastN'", "banana"]),
        (["--layer-norm", "--no-prefix-cache"], ["'prefix_cache' is not used by strategy 'mix'"]),
        (["--k", "1"], ["'k' setting does not apply to strategy 'mix'"]),
        # the mix and its head are all new weights: one learning rate trains them
        (["--head-learning-rate", "0.1"], ["'head_learning_rate' is not used by strategy 'mix'"]),
    ],
)
def test_cli_bad_settings_are_one_line_and_exit_2(runner, tiny_model_dir, tmp_path, args, words):
    train = write_toy_csv(tmp_path / "train.csv", 16, 0)
    out = tmp_path / "bundle"
    result = runner.invoke(
        app, ["fit", str(train), "--model", tiny_model_dir("bert"), "--strategy", "mix", *args, "-o", str(out)]
    )
    assert_user_error(result, *words)
    assert not out.exists()


# -- sweeps and the report -----------------------------------------------------------------------


def test_in_a_sweep_one_embedding_pass_serves_every_mix_and_features_cell(
    tiny_model_dir, tmp_path, monkeypatch, fresh_cache
):
    from unfreeze import embed as embed_module
    from unfreeze.report import build_report
    from unfreeze.sweep import ResultsStore, SweepSpec
    from unfreeze.sweep.runner import run_sweep

    passes = []
    original = embed_module._forward_pooled

    def counting(backbone, encoded, layer_indices, *args, **kwargs):
        passes.append((len(encoded), tuple(layer_indices)))
        return original(backbone, encoded, layer_indices, *args, **kwargs)

    monkeypatch.setattr(embed_module, "_forward_pooled", counting)
    # each cell also times its prediction with the caches set aside, as a user's would run: not counted here
    import unfreeze.sweep.cell as cell_module

    monkeypatch.setattr(cell_module, "prediction_seconds_per_text", lambda clf, inputs: 0.0)
    spec = SweepSpec(
        data=str(write_toy_csv(tmp_path / "train.csv", 48, 0)),
        test=str(write_toy_csv(tmp_path / "test.csv", 16, 1)),
        model=tiny_model_dir("bert"),
        strategies=["features", "mix"],
        grid={"mix": {"mix_layers": ["all", "last2"]}},
        n_train=[12, 24],
        seeds=[0],
        epochs=3,
        batch_size=8,
    )
    counts = run_sweep(spec, tmp_path / "run", progress=False)
    assert counts["done"] == 6 and counts["failed"] == 0
    # one pass over the distinct texts of the largest sample and the test set, with every layer
    assert len(passes) == 1 and passes[0][1] == (0, 1, 2) and passes[0][0] <= 24 + 16
    rows = ResultsStore(tmp_path / "run").records()
    mix_rows = [r for r in rows if r["cell"]["strategy"] == "mix"]
    assert sorted({r["cell"]["label"] for r in mix_rows}) == ["mix mix_layers=all", "mix mix_layers=last2"]
    assert all(sum(r["fit"]["layer_weights"]) == pytest.approx(1.0, abs=1e-6) for r in mix_rows)
    report = build_report(tmp_path / "run")
    assert "mix_weights.png" in report["figures"] and (tmp_path / "run" / "mix_weights.png").stat().st_size > 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert "mix mix_layers=last2" in page and page.count("data:image/png;base64,") == len(report["figures"])


def test_the_weights_plot_draws_one_line_per_configuration_and_size(tmp_path):
    import pandas as pd

    from unfreeze.report import plots

    frame = pd.DataFrame(
        [
            {
                "status": "done",
                "strategy": "mix",
                "label": "mix",
                "n_train": n,
                "seed": s,
                "mixed_layers": [0, 1, 2],
                "layer_weights": [0.2, 0.3, 0.5],
            }
            for n in (8, 16)
            for s in (0, 1)
        ]
        + [
            {
                "status": "done",
                "strategy": "features",
                "label": "features",
                "n_train": 8,
                "seed": 0,
                "mixed_layers": None,
                "layer_weights": None,
            }
        ]
    )
    path = plots.layer_weights(frame, tmp_path / "w.png", num_blocks=2)
    assert path is not None and path.stat().st_size > 0
    assert plots.layer_weights(frame[frame["strategy"] == "features"], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


@pytest.mark.slow
def test_every_strategy_in_one_sweep_grid_and_in_the_report(tiny_model_dir, tmp_path):
    from unfreeze.report import build_report
    from unfreeze.report.tables import STRATEGY_ORDER
    from unfreeze.strategies import registered
    from unfreeze.sweep import ResultsStore, SweepSpec
    from unfreeze.sweep.runner import run_sweep

    strategies = [s for s in STRATEGY_ORDER if s in registered()]
    assert set(strategies) == set(registered()) and len(strategies) == 11  # every built-in strategy, in table order
    spec = SweepSpec(
        data=str(write_toy_csv(tmp_path / "train.csv", 48, 0)),
        test=str(write_toy_csv(tmp_path / "test.csv", 16, 1)),
        model=tiny_model_dir("bert"),
        strategies=strategies,
        k=[1],
        grid={
            "bilstm": {"token_layers": ["last2"], "hidden_size": [8]},
            "setfit": {"num_iterations": [1]},
            "subspace": {"d": [50]},
        },
        n_train=[16],
        seeds=[0],
        epochs=1,
        batch_size=8,
        validation_fraction=0.0,
    )
    counts = run_sweep(spec, tmp_path / "run", progress=False)
    rows = ResultsStore(tmp_path / "run").records()
    assert counts["failed"] == 0, [r.get("error") for r in rows if r["status"] == "failed"]
    assert {r["cell"]["strategy"] for r in rows} == set(strategies)
    report = build_report(tmp_path / "run")
    labels = set(report["summary"]["label"])
    assert {"mix", "bilstm token_layers=last2 hidden_size=8"} <= labels
    assert "mix_weights.png" in report["figures"]
    frame = report["frame"]
    bilstm = frame[frame["strategy"] == "bilstm"].iloc[0]
    assert bilstm["trainable_parameters"] > 0 and bilstm["status"] == "done"


@pytest.mark.slow
def test_a_ray_sweep_gives_the_local_rows(ray_cluster, tiny_model_dir, tmp_path):  # noqa: F811
    """The Ray backend's embedding task embeds every layer mix reads; rows equal the local backend's."""
    from test_ray_backend import _run_ray
    from test_sweep import run_contents
    from unfreeze.sweep import SweepSpec
    from unfreeze.sweep.runner import run_sweep

    address, _ = ray_cluster
    spec = SweepSpec(
        data=str(write_toy_csv(tmp_path / "train.csv", 48, 0)),
        test=str(write_toy_csv(tmp_path / "test.csv", 16, 1)),
        model=tiny_model_dir("bert"),
        strategies=["features", "mix", "bilstm"],
        grid={"bilstm": {"token_layers": ["last2"], "hidden_size": [8]}},
        n_train=[12],
        seeds=[0, 1],
        epochs=2,
        batch_size=8,
    )
    run_sweep(spec, tmp_path / "local", progress=False)
    counts = _run_ray(address, spec, tmp_path / "ray")
    assert counts == {"total": 6, "skipped": 0, "done": 6, "failed": 0}
    local, remote = run_contents(tmp_path / "local"), run_contents(tmp_path / "ray")
    assert remote.keys() == local.keys()
    for key in local:
        assert remote[key] == local[key], local[key]["cell"]
