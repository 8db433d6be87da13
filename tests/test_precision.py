"""Precision: bf16 for work without gradients where it is fast, recorded everywhere, never mixed in caches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import unfreeze.machine.hardware as hardware
from conftest import sentiment_task_fixed
from unfreeze import Classifier, MultiHeadClassifier, UnfreezeError
from unfreeze.cli import app
from unfreeze.errors import InvalidParameterError
from unfreeze.models.loaded import shared_backbone

X, Y = sentiment_task_fixed(40, 0)
X_TEST, _ = sentiment_task_fixed(20, 1)


@pytest.fixture(autouse=True)
def real_bf16_detection(monkeypatch):
    """conftest pins UNFREEZE_FAST_BF16=0 for the other tests; here detection (or its mocks) decides."""
    monkeypatch.delenv("UNFREEZE_FAST_BF16", raising=False)


@pytest.fixture
def fast_bf16(monkeypatch):
    """Pretend this CPU runs bf16 fast (AVX-512 BF16 or AMX), whatever it is."""
    monkeypatch.setattr(hardware, "fast_bf16", lambda device="cpu": True)


@pytest.fixture
def slow_bf16(monkeypatch):
    monkeypatch.setattr(hardware, "fast_bf16", lambda device="cpu": False)
    monkeypatch.setattr(hardware, "_warned", set())


def fit(model, strategy="features", **params) -> Classifier:
    defaults = dict(progress=False, device="cpu", cache=False)
    if strategy in ("features", "setfit"):
        defaults["C"] = 1.0
    return Classifier(model, strategy=strategy, **{**defaults, **params}).fit(X, Y)


@pytest.mark.parametrize(
    ("strategy", "params", "tolerance"),
    [
        ("features", {}, 0.02),
        ("freeze", dict(k=1, max_steps=4, learning_rate=1e-3), 0.01),
        ("setfit", dict(num_iterations=1, max_steps=2), 0.03),
        ("mix", dict(max_steps=3, learning_rate=1e-3), 0.02),
    ],
)
def test_bf16_and_fp32_agree_within_tolerance_and_bf16_really_ran(strategy, params, tolerance, tiny_model_dir):
    fp32 = fit(tiny_model_dir("bert"), strategy, precision="fp32", **params)
    bf16 = fit(tiny_model_dir("bert"), strategy, precision="bf16", **params)
    assert fp32.fit_record_["precision"] == {"inference": "fp32", "training": "fp32"}
    assert bf16.fit_record_["precision"] == {"inference": "bf16", "training": "bf16"}
    a, b = fp32.predict_proba(X_TEST), bf16.predict_proba(X_TEST)
    assert np.abs(a - b).max() <= tolerance
    assert not np.array_equal(a, b)  # bf16 really ran somewhere
    if strategy in ("features", "mix"):  # a frozen model: the whole forward pass ran on a bf16 copy
        assert bf16.backbone_.dtype == torch.bfloat16 and fp32.backbone_.dtype == torch.float32


def test_auto_is_bf16_without_gradients_only_where_it_is_fast(tiny_model_dir, fast_bf16):
    fast = fit(tiny_model_dir("bert"), "freeze", k=1, max_steps=2, learning_rate=1e-3, precision="auto")
    assert fast.fit_record_["precision"]["inference"] == "bf16"
    assert fast.fit_record_["precision"]["training"] == ("bf16" if hardware.AUTO_BF16_TRAINING["cpu"] else "fp32")


def test_auto_is_fp32_where_bf16_is_slow_and_bf16_asked_for_warns_once(tiny_model_dir, slow_bf16):
    clf = fit(tiny_model_dir("bert"), precision="auto")
    assert clf.fit_record_["precision"] == {"inference": "fp32", "training": "fp32"}
    with pytest.warns(hardware.SlowPrecisionWarning, match="no fast bf16: it works but runs slower"):
        slow = fit(tiny_model_dir("bert"), precision="bf16")
    assert slow.fit_record_["precision"]["inference"] == "bf16"


def test_embedding_caches_never_serve_another_precision(tiny_model_dir, fresh_cache):
    model = tiny_model_dir("bert")
    fp32 = Classifier(model, C=1.0, precision="fp32", progress=False).fit(X, Y)
    bf16 = Classifier(model, C=1.0, precision="bf16", progress=False)
    bf16.fit(X, Y)
    # two cache files: one per precision (the bf16 copy's fingerprint is part of the key)
    files = sorted((fresh_cache / "embeddings").glob("*.safetensors"))
    assert len(files) == 2
    served_fp32 = fp32.predictor_.embed(X)
    served_bf16 = bf16.predictor_.embed(X)
    assert served_fp32.from_cache and served_bf16.from_cache
    assert not np.array_equal(served_fp32.features((2,)), served_bf16.features((2,)))
    assert shared_backbone(model, "cpu").fingerprint() != shared_backbone(model, "cpu", torch.bfloat16).fingerprint()


def test_prefix_states_in_a_sweep_pool_are_keyed_by_precision(tiny_model_dir, tmp_path):
    from unfreeze.sweep import ResultsStore, SweepSpec
    from unfreeze.sweep.runner import run_sweep

    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in zip(X, Y)) + "\n")
    rows = {}
    for precision in ("fp32", "bf16"):
        spec = SweepSpec(
            data=str(data),
            model=tiny_model_dir("bert"),
            strategies=["features", "freeze"],
            k=[1],
            n_train=[16],
            seeds=[0],
            epochs=1,
            batch_size=8,
            learning_rate="fixed",
            precision=precision,
        )
        run_sweep(spec, tmp_path / precision, progress=False)
        rows[precision] = {r["cell"]["label"]: r for r in ResultsStore(tmp_path / precision).records()}
    for label in ("features", "freeze k=1"):
        assert rows["fp32"][label]["fit"]["precision"]["inference"] == "fp32"
        assert rows["bf16"][label]["fit"]["precision"]["inference"] == "bf16"
        assert rows["fp32"][label]["key"] != rows["bf16"][label]["key"]  # precision is part of a cell's key


def test_a_bundle_predicts_in_the_precision_it_was_fitted_in_unless_told(tiny_model_dir, tmp_path):
    bf16 = fit(tiny_model_dir("bert"), precision="bf16")
    bf16.save(tmp_path / "b")
    config = json.loads((tmp_path / "b" / "unfreeze.json").read_text())
    assert config["fit_record"]["precision"]["inference"] == "bf16" and config["classifier"]["precision"] == "bf16"
    loaded = Classifier.load(tmp_path / "b")
    assert loaded.predictor_.precision == "bf16" and loaded.backbone_.dtype == torch.bfloat16
    np.testing.assert_allclose(loaded.predict_proba(X_TEST), bf16.predict_proba(X_TEST), atol=1e-7)
    told = Classifier.load(tmp_path / "b", precision="fp32")
    assert told.predictor_.precision == "fp32" and told.backbone_.dtype == torch.float32
    assert not np.array_equal(told.predict_proba(X_TEST), loaded.predict_proba(X_TEST))
    with pytest.raises(InvalidParameterError, match=r"'precision' parameter of Classifier\.load"):
        Classifier.load(tmp_path / "b", precision="fp16")


def test_a_multi_head_bundle_shares_one_precision(tiny_model_dir, tmp_path):
    suite = MultiHeadClassifier(tiny_model_dir("bert"), progress=False, device="cpu", precision="bf16")
    suite.add_head("a", X, Y, C=1.0, cache=False)
    suite.save(tmp_path / "suite")
    loaded = MultiHeadClassifier.load(tmp_path / "suite")
    assert loaded.inference_precision == "bf16"
    np.testing.assert_allclose(loaded.predict_proba(X_TEST)["a"], suite.predict_proba(X_TEST)["a"], atol=1e-7)
    np.testing.assert_allclose(
        loaded.as_classifier("a").predict_proba(X_TEST), loaded.predict_proba(X_TEST)["a"], atol=1e-7
    )
    other = fit(tiny_model_dir("bert"), precision="fp32")
    with pytest.raises(UnfreezeError, match="fitted on fp32 embeddings; this bundle's forward pass runs in bf16"):
        loaded.add_classifier("b", other)


def test_the_command_line_says_which_precision_ran_and_refuses_an_unknown_one(tiny_model_dir, tmp_path, slow_bf16):
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in zip(X, Y)) + "\n")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "fit",
            str(data),
            "--model",
            tiny_model_dir("bert"),
            "--C",
            "1",
            "--precision",
            "bf16",
            "-o",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "precision bf16" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no fast bf16" in warnings[0]
    bad = runner.invoke(
        app, ["fit", str(data), "--model", tiny_model_dir("bert"), "--precision", "fp16", "-o", str(tmp_path / "c")]
    )
    assert bad.exit_code == 2 and bad.stderr.strip() == "error: Unknown precision 'fp16'; use one of: auto, fp32, bf16."
    assert not (tmp_path / "c").exists()
    served = runner.invoke(
        app, ["predict", str(tmp_path / "b"), str(data), "-o", str(tmp_path / "p.csv"), "--precision", "int8"]
    )
    assert served.exit_code == 2 and "needs the ONNX runtime" in served.stderr
