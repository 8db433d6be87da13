"""truncate: the top L-j blocks really leave the model (parameters, bundle size, forward passes), the
family's forward still works on the rest, exactly the right parameters train, bundles round trip,
bad settings are one line, and sweeps and reports take it."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import FAMILIES, sentiment_task_varied
from test_strategies import BLOCK_PREFIX, FINAL_NORM, HAS_POOLER, L
from unfreeze import Classifier, Truncate
from unfreeze.cli import app
from unfreeze.models.backbone import Backbone
from unfreeze.models.loaded import forget_backbones
from unfreeze.strategies.truncate import drop_top_blocks

X, Y = sentiment_task_varied(40, seed=0)
X_TEST, _ = sentiment_task_varied(12, seed=1)
HIDDEN = 32
HEAD = HIDDEN * 2 + 2


def make(model_dir: str, **params) -> Classifier:
    defaults = dict(
        model=model_dir,
        strategy="truncate",
        progress=False,
        device="cpu",
        cache=False,
        batch_size=8,
        validation_fraction=0,
        max_steps=2,
    )
    return Classifier(**{**defaults, **params})


def block_names(model: torch.nn.Module, family: str, i: int) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.startswith(f"{BLOCK_PREFIX[family]}.{i}.")}


# -- the truncated model is the bottom of the full one --------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_truncated_forward_gives_the_full_models_hidden_state_j(family, tiny_backbone):
    """Block j's output of the full model (HF ``hidden_states[j]``) is the truncated model's last state,
    after the family's final norm where it has one: the config and the block list agree."""
    base = tiny_backbone(family)
    batch = base.collate(base.encode(X[:6], 64), list(range(6)))
    with torch.no_grad():
        full = base.model(**batch, output_hidden_states=True).hidden_states
    cut = Backbone(copy.deepcopy(base.model), base.tokenizer, base.reference)
    drop_top_blocks(cut, 1)
    assert len(cut.blocks) == cut.num_blocks == 1
    assert cut.model.config.num_hidden_layers == 1
    with torch.no_grad():
        last = cut.model(**batch).last_hidden_state
    expected = full[1]
    if family in FINAL_NORM:  # decoders: intermediate states are before the final norm
        expected = getattr(base.model, FINAL_NORM[family])(expected)
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(last[mask], expected[mask], atol=1e-5, rtol=1e-5)
    assert len(base.blocks) == L  # the shared model is untouched


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("j", "k"), [(1, 0), (2, 1), (2, 0)])
def test_truncate_removes_the_top_blocks_and_trains_exactly_the_kept_ones_above_k(family, j, k, tiny_model_dir):
    from transformers import AutoModel

    fresh = AutoModel.from_pretrained(tiny_model_dir(family))
    params = dict(fresh.named_parameters())
    numel = lambda names: sum(params[n].numel() for n in names)  # noqa: E731
    removed = set().union(*(block_names(fresh, family, i) for i in range(j, L)))
    kept_blocks = [block_names(fresh, family, i) for i in range(j)]
    final = {n for n in params if family in FINAL_NORM and n.startswith(FINAL_NORM[family] + ".")}
    pooler = {n for n in params if n.startswith("pooler.")}
    embedding_side = set(params) - set().union(*kept_blocks) - removed - final - pooler
    expected = set().union(*kept_blocks[k:]) | final | (embedding_side if k == 0 else set())

    clf = make(tiny_model_dir(family), j=j, k=k).fit(X, Y)
    body = clf.backbone_.model
    assert clf.backbone_.num_blocks == j and body.config.num_hidden_layers == j
    names = {n for n, _ in body.named_parameters()}
    assert names == set(params) - removed  # the top blocks are gone, nothing else
    assert clf.fit_record_["total_parameters"] == numel(set(params) - removed) + HEAD
    assert clf.fit_record_["trainable_parameters"] == numel(expected) + HEAD
    assert {n for n, p in body.named_parameters() if p.requires_grad} == expected
    assert (family in HAS_POOLER) == bool(pooler)
    # what did not train did not change
    for name, param in body.named_parameters():
        if name not in expected:
            assert torch.equal(param, params[name]), name
    assert clf.layers_ == (j,)  # -1 is block j's output


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_prediction_runs_only_the_kept_blocks(family, tiny_model_dir):
    clf = make(tiny_model_dir(family), j=1).fit(X, Y)
    calls = []
    handles = [block.register_forward_hook(lambda *_: calls.append(1)) for block in clf.backbone_.blocks]
    try:
        clf.predict_proba(X_TEST)
    finally:
        for handle in handles:
            handle.remove()
    batches = -(-len(X_TEST) // 8)
    assert len(calls) == batches  # one block per batch: the removed block never runs


def test_layers_count_on_the_truncated_model(tiny_model_dir):
    clf = make(tiny_model_dir("bert"), j=1, layers="0,-1").fit(X, Y)
    assert clf.layers_ == (0, 1)
    assert clf.predictor_.network.head.in_features == 2 * HIDDEN
    with pytest.raises(Exception, match="'layers' parameter of Classifier must be an int in \\[-2, 1\\]"):
        make(tiny_model_dir("bert"), j=1, layers="2").fit(X, Y)


def test_default_j_keeps_two_thirds():
    assert Truncate().resolved_j(12) == 8
    assert Truncate().resolved_j(6) == 4
    assert Truncate().resolved_j(2) == 1
    assert Truncate(j=5).resolved_j(12) == 5
    assert Truncate.sweep_defaults_for(12) == {"j": [6, 8, 12]}
    assert Truncate.sweep_defaults_for(6) == {"j": [3, 4, 6]}
    assert Truncate.sweep_defaults_for(1) == {"j": [1]}


# -- bundles: smaller, and identical predictions ---------------------------------------------------------


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize(("j", "k"), [(1, 0), (2, 1)])
def test_bundle_round_trip_re_truncates_and_predicts_identically(family, j, k, tiny_model_dir, tmp_path):
    clf = make(tiny_model_dir(family), j=j, k=k, seed=4, learning_rate=1e-2).fit(X, Y)
    expected = clf.predict_proba(X_TEST)
    path = clf.save(tmp_path / "bundle")
    forget_backbones()
    loaded = Classifier.load(path, device="cpu")
    assert loaded.backbone_.num_blocks == j
    assert loaded.backbone_.model.config.num_hidden_layers == j
    assert np.array_equal(loaded.predict_proba(X_TEST), expected)
    config = json.loads((path / "unfreeze.json").read_text())
    assert config["strategy"] == {"name": "truncate", "params": {"j": j, "k": k}}


def test_the_saved_model_shrinks_by_the_removed_blocks(tiny_model_dir, tmp_path):
    """With k = 0 the bundle holds every kept weight: one block fewer is one block's bytes fewer."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    fresh = AutoModel.from_pretrained(tiny_model_dir("bert"))
    block_bytes = sum(p.numel() * 4 for n, p in fresh.named_parameters() if n.startswith("encoder.layer.1."))
    sizes, counts = {}, {}
    for j in (1, 2):
        path = make(tiny_model_dir("bert"), j=j).fit(X, Y).save(tmp_path / f"j{j}")
        saved = load_file(str(path / "trained.safetensors"))
        sizes[j] = (path / "trained.safetensors").stat().st_size
        counts[j] = sum(t.numel() for t in saved.values())
        assert any(".encoder.layer.1." in n for n in saved) == (j == 2)
    assert counts[2] - counts[1] == block_bytes // 4
    assert sizes[2] - sizes[1] >= block_bytes  # plus the removed tensors' header entries


def test_the_frozen_prefix_cache_works_below_k(tiny_model_dir):
    fitted = {
        cache: make(
            tiny_model_dir("bert"), j=2, k=1, prefix_cache=cache, seed=3, epochs=2, max_steps=None, learning_rate=1e-3
        ).fit(X, Y)
        for cache in (True, False)
    }
    assert fitted[True].fit_record_["prefix_seconds"] > 0 and fitted[False].fit_record_["prefix_seconds"] == 0
    np.testing.assert_allclose(fitted[True].predict_proba(X_TEST), fitted[False].predict_proba(X_TEST), atol=1e-4)


# -- bad settings: one line, exit 2, nothing written ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--j", "9"], "The 'j' parameter of truncate must be an int in [1, 2] for this model. Got 9."),
        (["--j", "0"], "The 'j' parameter of truncate must be an int >= 1. Got 0."),
        (
            ["--j", "2", "--k", "2"],
            "The 'k' parameter of truncate must be an int in [0, 1] for this model with j=2. Got 2.",
        ),
        (
            ["--j", "1", "--k", "1"],
            "The 'k' parameter of truncate must be an int in [0, 0] for this model with j=1. Got 1.",
        ),
        (
            ["--j", "1", "--layer-decay", "0"],
            "The 'layer_decay' parameter of Training must be a float in (0.0, 1.0]. Got 0.0.",
        ),
    ],
    ids=["j-above-L", "j-zero", "k-equals-j", "k-equals-j-1", "layer-decay-0"],
)
def test_bad_settings_at_the_command_line(args, message, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("UNFREEZE_DEBUG", raising=False)
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(X, Y)))
    out = tmp_path / "bundle"
    result = CliRunner().invoke(
        app,
        [
            "fit",
            str(data),
            "--model",
            tiny_model_dir("bert"),
            "--strategy",
            "truncate",
            *args,
            "--max-steps",
            "1",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"error: {message}"]
    assert not out.exists()


@pytest.mark.slow
def test_python_m_unfreeze_fit_j_above_L_is_one_line_exit_2(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(X, Y)))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "unfreeze",
            "fit",
            str(data),
            "--model",
            tiny_model_dir("bert"),
            "--strategy",
            "truncate",
            "--j",
            "9",
            "-o",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: The 'j' parameter of truncate must be an int in [1, 2] for this model. Got 9."
    ]
    assert not (tmp_path / "b").exists()


# -- sweeps and reports ------------------------------------------------------------------------------------


def test_sweep_grid_of_j_from_the_model_the_flat_option_or_the_grid():
    from unfreeze.sweep import SweepSpec, expand

    spec = SweepSpec(strategies=["freeze", "truncate", "gradual"], n_train=[32])
    cells = expand(spec, 12)
    assert [c.label for c in cells] == ["freeze k=0", "truncate j=6", "truncate j=8", "truncate j=12", "gradual"]
    assert [c.label for c in expand(replace_spec(spec, j=[4, 6]), 12) if c.strategy == "truncate"] == [
        "truncate j=4",
        "truncate j=6",
    ]
    grid = replace_spec(spec, grid={"truncate": {"j": "4,6", "k": [0, 2]}, "gradual": {"factor": [1, 2.6]}})
    assert [c.label for c in expand(grid, 12) if c.strategy != "freeze"] == [
        "truncate j=4 k=0",
        "truncate j=4 k=2",
        "truncate j=6 k=0",
        "truncate j=6 k=2",
        "gradual factor=1",
        "gradual factor=2.6",
    ]
    # j is a cell coordinate, not a setting: the other cells keep their keys
    assert "j" not in replace_spec(spec, j=[4]).training_settings()
    key = expand(spec, 12)[0].key("d", "m", spec.training_settings())
    assert expand(replace_spec(spec, j=[4]), 12)[0].key("d", "m", replace_spec(spec, j=[4]).training_settings()) == key


def replace_spec(spec, **changes):
    from dataclasses import replace

    return replace(spec, **changes)


@pytest.mark.slow
def test_one_sweep_of_every_strategy_and_the_report_includes_the_new_ones(tiny_model_dir, tmp_path, monkeypatch):
    import pandas as pd

    from unfreeze.sweep import ResultsStore

    monkeypatch.delenv("UNFREEZE_DEBUG", raising=False)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    for path, (texts, labels) in ((train, sentiment_task_varied(32, 0)), (test, sentiment_task_varied(16, 1))):
        path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(texts, labels)))
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            str(train),
            "--test",
            str(test),
            "--model",
            tiny_model_dir("bert"),
            "-o",
            str(run),
            "--strategies",
            "features,freeze,full,reinit,lora,setfit,truncate,gradual",
            "--j",
            "1,2",
            "--grid",
            "gradual.schedule=0+1,1+1",
            "--grid",
            "setfit.num_iterations=1",
            "--sizes",
            "16",
            "--seeds",
            "0",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--validation-fraction",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    records = ResultsStore(run).records()
    failed = [(r["cell"]["label"], r.get("error")) for r in records if r["status"] != "done"]
    assert not failed
    labels = {r["cell"]["label"] for r in records}
    assert {
        "features",
        "freeze k=0",
        "full",
        "reinit m=1",
        "lora r=8",
        "setfit num_iterations=1",
        "truncate j=1",
        "truncate j=2",
        "gradual schedule=0+1",
        "gradual schedule=1+1",
    } == labels
    assert all(r["predict_seconds_per_text"] > 0 for r in records)
    truncated = {r["cell"]["j"]: r["fit"]["total_parameters"] for r in records if r["cell"]["strategy"] == "truncate"}
    assert truncated[1] < truncated[2]
    frame = pd.read_csv(run / "results.csv")
    assert {"truncate", "gradual"} <= set(frame["strategy"])
    page = (run / "report.html").read_text()
    assert "truncate j=1" in page and "gradual schedule=1+1" in page and "predict ms/text" in page
    assert (run / "blocks_kept.png").stat().st_size > 0 and "blocks_kept.png" in page


def test_in_a_sweep_one_prefix_pass_serves_truncate_and_gradual_cells(tiny_model_dir, tmp_path, monkeypatch):
    """truncate k=1 and a gradual schedule that never reaches block 0 train from the sweep's one
    pass over the base model's bottom block (the blocks below k are the base model's), exactly."""
    import unfreeze.training.prefix as prefix
    from test_sweep import write_toy_csv
    from unfreeze.sweep import ResultsStore, SweepSpec
    from unfreeze.sweep.runner import run_sweep

    passes = []
    original = prefix._forward_prefix

    def counting(backbone, encoded, wanted, batch_size):
        passes.append((len(backbone.blocks), list(wanted), len(encoded)))
        return original(backbone, encoded, wanted, batch_size)

    monkeypatch.setattr(prefix, "_forward_prefix", counting)
    spec = SweepSpec(
        data=str(write_toy_csv(tmp_path / "train.csv", 48, 0)),
        test=str(write_toy_csv(tmp_path / "test.csv", 20, 1)),
        model=tiny_model_dir("bert"),
        strategies=["truncate", "gradual"],
        grid={"truncate": {"j": [2], "k": [1]}, "gradual": {"schedule": ["1"]}},
        n_train=[16],
        seeds=[0],
        epochs=2,
        batch_size=8,
        validation_fraction=0.25,
    )
    run_sweep(spec, tmp_path / "cached", progress=False)
    # the warm-up pass (the seed's training sample, the test set) and nothing else: every cell's
    # training, validation and scoring read the pool
    assert passes == [(L, [1], 16), (L, [1], 20)]
    passes.clear()
    run_sweep(spec, tmp_path / "uncached", progress=False, shared_cache=False)
    assert passes == []
    cached = {r["key"]: r for r in ResultsStore(tmp_path / "cached").records()}
    uncached = {r["key"]: r for r in ResultsStore(tmp_path / "uncached").records()}
    assert cached.keys() == uncached.keys() and len(cached) == 2
    for key, record in cached.items():
        assert record["status"] == "done", record.get("error")
        assert abs(record["test"]["accuracy"] - uncached[key]["test"]["accuracy"]) <= 1 / 20
