"""gradual (ULMFiT) and layer_decay: the trainable set of every step follows the schedule, frozen
parameters stay put, every parameter trains at its block's rate, the frozen-prefix cache still serves
the blocks no epoch reaches, bundles round trip, bad settings are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import unfreeze.training.loop as loop
from conftest import sentiment_task_varied
from test_strategies import FINAL_NORM, L, Structure
from unfreeze import Classifier, Gradual, UnfreezeError
from unfreeze.cli import app
from unfreeze.models.loaded import forget_backbones

X, Y = sentiment_task_varied(40, seed=0)
X_TEST, _ = sentiment_task_varied(12, seed=1)
STEPS_PER_EPOCH = 5  # 40 examples, batches of 8, no validation split
HEAD_NAMES = {"head.weight", "head.bias"}


@pytest.fixture(scope="module")
def structure(tiny_model_dir):
    from transformers import AutoModel

    built = {}

    def get(family: str) -> Structure:
        if family not in built:
            built[family] = Structure(AutoModel.from_pretrained(tiny_model_dir(family)), family)
        return built[family]

    return get


def make(model_dir: str, strategy="gradual", **params) -> Classifier:
    defaults = dict(
        model=model_dir,
        strategy=strategy,
        progress=False,
        device="cpu",
        cache=False,
        batch_size=8,
        validation_fraction=0,
        learning_rate=1e-3,
        seed=0,
    )
    return Classifier(**{**defaults, **params})


def body(names: set[str]) -> set[str]:
    return {f"body.{n}" for n in names}


# -- the schedule ----------------------------------------------------------------------------------------


def test_unfrozen_blocks_per_epoch():
    assert Gradual().unfrozen_by_epoch(6, 4) == [0, 1, 2, 3]
    assert Gradual().unfrozen_by_epoch(2, 5) == [0, 1, 2, 2, 2]  # never more than L
    assert Gradual().unfrozen_by_epoch(6, 1) == [0]
    assert Gradual(schedule="1,1,2").unfrozen_by_epoch(6, 5) == [1, 2, 4, 4, 4]  # then it stays
    assert Gradual(schedule="1+1+2").unfrozen_by_epoch(6, 2) == [1, 2]
    assert Gradual(schedule=[0, 3]).unfrozen_by_epoch(6, 3) == [0, 3, 3]
    assert Gradual(schedule="1,1,2").frozen_blocks(6) == 2  # no epoch reaches the bottom two
    assert Gradual().frozen_blocks(6) == 0  # the default schedule may reach every block


def test_planned_epochs_follow_the_budget():
    config = loop.TrainConfig(epochs=3, learning_rate=1e-3, batch_size=8)
    assert loop.planned_epochs(config, 40) == 3
    config.max_steps = 7  # 5 steps per epoch: the budget ends in epoch 2
    assert loop.planned_epochs(config, 40) == 2
    assert Gradual().unfrozen_by_epoch(2, loop.planned_epochs(config, 40)) == [0, 1]


def record_steps(monkeypatch) -> list[dict]:
    """For every optimiser step: the parameters with a gradient and those whose value changed (by id)."""
    steps = []
    original = loop.optimizer_step

    def spy(loss, trainable, optimizer, scheduler, grad_clip, backward=None):
        # the loss has not been back-propagated yet: gradients of this step appear inside original
        before = {id(p): p.detach().clone() for p in trainable}
        original(loss, trainable, optimizer, scheduler, grad_clip, backward)
        stepped = {
            id(p)
            for p in trainable
            if optimizer.state.get(p, {}).get("step") is not None
            and int(optimizer.state[p]["step"]) > counts.get(id(p), 0)
        }
        for p in trainable:
            if id(p) in stepped:
                counts[id(p)] = int(optimizer.state[p]["step"])
        steps.append(
            {
                "stepped": stepped,
                "changed": {id(p) for p in trainable if not torch.equal(before[id(p)], p)},
                "held": {id(p) for p in trainable},
            }
        )

    counts: dict[int, int] = {}
    monkeypatch.setattr(loop, "optimizer_step", spy)
    return steps


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize(
    ("schedule", "epochs", "unfrozen"),
    [
        (None, 3, [0, 1, 2]),
        ("1,1", 3, [1, 2, 2]),
        ("0,0,1", 3, [0, 0, 1]),
    ],
    ids=["default", "1-1", "0-0-1"],
)
def test_each_step_trains_exactly_the_blocks_the_schedule_has_unfrozen(
    family, schedule, epochs, unfrozen, structure, tiny_model_dir, monkeypatch
):
    s = structure(family)
    steps = record_steps(monkeypatch)
    # no warm-up: every step has a learning rate above 0, so every decayed weight it trains moves
    clf = make(tiny_model_dir(family), schedule=schedule, epochs=epochs, patience=None, warmup_ratio=0.0).fit(X, Y)
    names = {id(p): n for n, p in clf.predictor_.network.named_parameters()}
    assert [h["unfrozen_blocks"] for h in clf.fit_record_["history"]] == unfrozen
    assert len(steps) == epochs * STEPS_PER_EPOCH
    ever = body(s.trained_names(L - max(unfrozen))) | HEAD_NAMES
    for i, step in enumerate(steps):
        epoch = i // STEPS_PER_EPOCH
        expected = body(s.trained_names(L - unfrozen[epoch])) | HEAD_NAMES  # freeze(k = L - unfrozen)
        assert {names[p] for p in step["held"]} == ever  # the optimiser holds what any epoch trains
        assert {names[p] for p in step["stepped"]} == expected, f"step {i} (epoch {epoch + 1})"
        changed = {names[p] for p in step["changed"]}
        assert changed <= expected  # AdamW leaves a parameter without a gradient alone, weight decay included
        decayed = {
            n
            for n in expected
            if n in names.values() and clf.predictor_.network.get_parameter(n).ndim >= 2 and "norm" not in n.lower()
        }
        assert decayed <= changed
    # afterwards everything that trained is marked trainable again (what the bundle stores)
    assert {n for n, p in clf.predictor_.network.named_parameters() if p.requires_grad} == ever
    assert clf.fit_record_["trainable_parameters"] == sum(
        p.numel() for n, p in clf.predictor_.network.named_parameters() if n in ever
    )


# -- learning rates per block ----------------------------------------------------------------------------


def optimiser_rates(monkeypatch) -> list[dict[int, float]]:
    """id of each parameter -> its group's initial learning rate, for every optimiser created."""
    created = []
    base = torch.optim.AdamW

    class Recording(base):
        def __init__(self, groups, *args, **kwargs):
            super().__init__(groups, *args, **kwargs)
            created.append(
                {
                    id(p): g["initial_lr"] if "initial_lr" in g else g["lr"]
                    for g in self.param_groups
                    for p in g["params"]
                }
            )

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    return created


def expected_rates(s: Structure, trained: set[str], lr: float, decay: float) -> dict[str, float]:
    """Block i from the top at lr * decay**i; the embeddings lowest; the final norm at lr."""
    rates = {}
    for name in trained:
        block = next((i for i, names in enumerate(s.blocks) if name in names), None)
        if block is not None:
            rates[name] = lr * decay ** (L - 1 - block)
        elif name in s.final:
            rates[name] = lr
        else:
            assert name in s.embedding_side
            rates[name] = lr * decay**L
    return rates


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize(
    ("strategy", "params", "decay"),
    [
        ("gradual", dict(factor=2.0, schedule="2"), 0.5),
        ("gradual", dict(schedule="2"), 1 / 2.6),
        ("freeze", dict(k=0, layer_decay=0.5), 0.5),
        ("freeze", dict(k=1, layer_decay=0.8), 0.8),
        ("full", dict(layer_decay=0.9), 0.9),
        ("reinit", dict(m=1, layer_decay=0.5), 0.5),
        ("truncate", dict(j=2, layer_decay=0.5), 0.5),
    ],
    ids=["gradual-2", "gradual-ulmfit", "freeze-k0", "freeze-k1", "full", "reinit", "truncate"],
)
def test_every_parameter_trains_at_its_blocks_rate(
    family, strategy, params, decay, structure, tiny_model_dir, monkeypatch
):
    s = structure(family)
    created = optimiser_rates(monkeypatch)
    clf = make(tiny_model_dir(family), strategy, max_steps=1, head_learning_rate=3e-3, **params).fit(X, Y)
    (rates,) = created
    network = clf.predictor_.network
    got = {n: rates[id(p)] for n, p in network.named_parameters() if id(p) in rates}
    trained = {n.removeprefix("body.") for n in got} - HEAD_NAMES
    assert got["head.weight"] == got["head.bias"] == 3e-3
    want = expected_rates(s, trained, 1e-3, decay)
    body_rates = {n.removeprefix("body."): r for n, r in got.items() if n not in HEAD_NAMES}
    assert body_rates == {n: pytest.approx(r, rel=1e-12) for n, r in want.items()}
    k = params.get("k", 0)
    assert trained == s.trained_names(k)  # the rates change nothing about what trains


def test_layer_decay_one_is_the_single_rate_of_before(tiny_model_dir, monkeypatch):
    created = optimiser_rates(monkeypatch)
    a = make(tiny_model_dir("bert"), "freeze", k=0, max_steps=3).fit(X, Y)
    b = make(tiny_model_dir("bert"), "freeze", k=0, max_steps=3, layer_decay=1.0).fit(X, Y)
    assert set(created[0].values()) == set(created[1].values()) == {1e-3}
    assert np.array_equal(a.predict_proba(X_TEST), b.predict_proba(X_TEST))
    c = make(tiny_model_dir("bert"), "freeze", k=0, max_steps=3, layer_decay=0.5).fit(X, Y)
    assert not np.allclose(a.predict_proba(X_TEST), c.predict_proba(X_TEST), atol=1e-7)


def test_param_groups_without_scales_are_decay_no_decay_head():
    weight, bias, head = (
        torch.nn.Parameter(torch.zeros(2, 2)),
        torch.nn.Parameter(torch.zeros(2)),
        torch.nn.Parameter(torch.zeros(2, 2)),
    )
    config = loop.TrainConfig(learning_rate=1e-4, head_learning_rate=1e-2, weight_decay=0.1)
    groups = loop.param_groups([("w", weight), ("b", bias), ("head", head)], config, [head])
    assert [(g["params"], g["lr"], g["weight_decay"]) for g in groups] == [
        ([weight], 1e-4, 0.1),
        ([bias], 1e-4, 0.0),
        ([head], 1e-2, 0.1),
    ]
    scaled = loop.param_groups(
        [("w", weight), ("b", bias), ("head", head)], config, [head], {id(weight): 0.5, id(bias): 0.25}
    )
    assert [(g["params"], g["lr"], g["weight_decay"]) for g in scaled] == [
        ([weight], 5e-5, 0.1),
        ([bias], 2.5e-5, 0.0),
        ([head], 1e-2, 0.1),
    ]


@pytest.mark.parametrize("strategy", ["lora", "setfit", "gradual", "features"])
def test_strategies_that_do_not_read_layer_decay_refuse_it_by_name(strategy, tiny_model_dir):
    with pytest.raises(UnfreezeError) as caught:
        Classifier(
            tiny_model_dir("bert"), strategy=strategy, layer_decay=0.5, progress=False, device="cpu", cache=False
        ).fit(X, Y)
    message = str(caught.value)
    assert "'layer_decay'" in message and f"strategy {strategy!r}" in message
    assert "strategies that use it: freeze, full, reinit, truncate." in message


# -- the frozen-prefix cache and bundles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "epochs", "cached_k"),
    [("1", 2, 1), (None, 2, 1), (None, 3, 0)],
    ids=["schedule-1", "default-2-epochs", "default-3-epochs"],
)
def test_blocks_no_epoch_reaches_are_a_cached_prefix(schedule, epochs, cached_k, tiny_model_dir, monkeypatch):
    import unfreeze.training.prefix as prefix

    asked = []
    original = prefix.compute_prefix_states

    def spy(backbone, encoded, ks, *args, **kwargs):
        asked.append(list(ks))
        return original(backbone, encoded, ks, *args, **kwargs)

    monkeypatch.setattr(loop, "compute_prefix_states", spy)
    fitted = {
        cache: make(
            tiny_model_dir("bert"),
            schedule=schedule,
            epochs=epochs,
            prefix_cache=cache,
            validation_fraction=0.25,
            patience=None,
            seed=2,
        ).fit(X, Y)
        for cache in (True, False)
    }
    assert asked == ([[cached_k], [cached_k]] if cached_k else [])  # training and validation texts
    assert fitted[True].predictor_.frozen_k == cached_k
    np.testing.assert_allclose(
        [h["train_loss"] for h in fitted[True].fit_record_["history"]],
        [h["train_loss"] for h in fitted[False].fit_record_["history"]],
        atol=1e-5,
    )
    np.testing.assert_allclose(fitted[True].predict_proba(X_TEST), fitted[False].predict_proba(X_TEST), atol=1e-4)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
@pytest.mark.parametrize("schedule", [None, "1"])
def test_bundle_round_trip_predicts_identically(family, schedule, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    clf = make(tiny_model_dir(family), schedule=schedule, epochs=2, learning_rate=1e-2, seed=5).fit(X, Y)
    expected = clf.predict_proba(X_TEST)
    path = clf.save(tmp_path / "bundle")
    saved = set(load_file(str(path / "trained.safetensors")))
    # epoch 2 reached the top block: it, the final norm and the head are what trained
    block1 = {n for n, _ in clf.predictor_.network.named_parameters() if ".1." in n and ("layer" in n or ".h." in n)}
    assert block1 and block1 <= saved
    assert not any(".0." in n for n in saved)
    if family in FINAL_NORM:
        assert f"body.{FINAL_NORM[family]}.weight" in saved
    forget_backbones()
    loaded = Classifier.load(path, device="cpu")
    assert np.array_equal(loaded.predict_proba(X_TEST), expected)


def test_a_schedule_cannot_run_data_parallel(tiny_backbone, monkeypatch):
    monkeypatch.setattr(loop.distributed, "accelerator", lambda device: object())
    with pytest.raises(UnfreezeError, match="cannot run data-parallel"):
        loop.train(
            torch.nn.Linear(2, 2),
            tiny_backbone("bert"),
            0,
            None,
            None,
            loop.TrainConfig(epochs=1, learning_rate=1e-3),
            on_epoch=lambda epoch: None,
        )


# -- bad settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            dict(schedule="1,x"),
            "The 'schedule' parameter of gradual must be None or comma-separated ints >= 0 (blocks "
            "unfrozen at the start of each epoch), e.g. '1,1,2' or '1+1+2'. Got '1,x'.",
        ),
        (dict(schedule="-1"), "The 'schedule' parameter of gradual must be None or comma-separated ints >= 0"),
        (dict(schedule=""), "The 'schedule' parameter of gradual must be None or comma-separated ints >= 0"),
        (
            dict(schedule="2,1"),
            "The 'schedule' parameter of gradual must be a schedule that unfreezes at most 2 blocks "
            "in all for this model. Got '2,1'.",
        ),
        (dict(factor=0.5), "The 'factor' parameter of gradual must be a float >= 1.0. Got 0.5."),
    ],
)
def test_bad_gradual_settings(params, message, tiny_model_dir):
    with pytest.raises(UnfreezeError) as caught:
        make(tiny_model_dir("bert"), max_steps=1, **params).fit(X, Y)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--strategy", "gradual", "--schedule", "3"],
            "The 'schedule' parameter of gradual must be a schedule that unfreezes at most 2 blocks in all "
            "for this model. Got '3'.",
        ),
        (
            ["--strategy", "lora", "--layer-decay", "0.5"],
            "The training setting 'layer_decay' is not used by strategy 'lora'",
        ),
        (
            ["--strategy", "freeze", "--layer-decay", "1.5"],
            "The 'layer_decay' parameter of Training must be a float in (0.0, 1.0]. Got 1.5.",
        ),
    ],
)
def test_bad_settings_at_the_command_line(args, message, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("UNFREEZE_DEBUG", raising=False)
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(X, Y)))
    out = tmp_path / "bundle"
    result = CliRunner().invoke(
        app, ["fit", str(data), "--model", tiny_model_dir("bert"), *args, "--max-steps", "1", "-o", str(out)]
    )
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {message}")
    assert not out.exists()


@pytest.mark.parametrize(
    ("strategy", "params"),
    [("gradual", dict(epochs=2)), ("truncate", dict(j=1, epochs=1)), ("full", dict(layer_decay=0.7, epochs=1))],
    ids=["gradual", "truncate", "full-layer-decay"],
)
def test_same_seed_same_probabilities_other_seed_other_probabilities(strategy, params, tiny_model_dir):
    a = make(tiny_model_dir("bert"), strategy, seed=7, **params).fit(X, Y).predict_proba(X_TEST)
    b = make(tiny_model_dir("bert"), strategy, seed=7, **params).fit(X, Y).predict_proba(X_TEST)
    c = make(tiny_model_dir("bert"), strategy, seed=8, **params).fit(X, Y).predict_proba(X_TEST)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-6)
