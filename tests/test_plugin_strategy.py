"""A strategy defined outside unfreeze works everywhere a built-in one does, with no edit inside unfreeze.

The toy strategy (nearest class centroid of frozen pooled states, with a temperature) lives
in a package written to a temporary folder and declares itself through the entry point
group ``unfreeze.strategies``, as a third-party package would. Fresh processes then run it
through the Python API, ``unfreeze fit``, ``predict``, ``sweep`` (a grid over its own
parameter), ``report`` and ``strategies``. A second test registers a strategy in-process
with ``register_strategy`` and round-trips it through a sweep and a bundle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import unfreeze.strategies as strategies_module
from conftest import sentiment_task_fixed
from unfreeze import Classifier, register_strategy
from unfreeze.inference.predictors import Predictor, PredictorState, register_predictor
from unfreeze.params import float_in, setting
from unfreeze.strategies import FitResult, Strategy

SRC = Path(__file__).resolve().parents[1] / "src"

TOY_PLUGIN = textwrap.dedent('''
    """A toy strategy from outside unfreeze: the nearest class centroid of frozen pooled states."""
    from dataclasses import dataclass
    from typing import ClassVar

    import numpy as np

    from unfreeze.params import float_in, setting
    from unfreeze.inference.predictors import Predictor, PredictorState, register_predictor
    from unfreeze.strategies import FitResult, Strategy


    @register_predictor
    @dataclass
    class CentroidPredictor(Predictor):
        type_name: ClassVar[str] = "toy_centroids"
        backbone: object
        pooling: str
        layers: tuple
        max_length: int
        batch_size: int
        centroids: object
        temperature: float
        progress: bool = False

        def features(self, inputs):
            from unfreeze.features.embed import embed

            return embed(self.backbone, inputs, self.layers, self.pooling, self.max_length, self.batch_size,
                         progress=False).features(self.layers)

        def logits(self, inputs):
            distances = ((self.features(inputs)[:, None, :] - self.centroids[None]) ** 2).sum(-1)
            return -distances / self.temperature

        def state(self):
            return PredictorState({"centroids": {"centroids": self.centroids}},
                                  {"type": self.type_name, "temperature": self.temperature})

        @classmethod
        def from_state(cls, context, strategy, state):
            return cls(context.backbone, context.pooling, context.layers, context.max_length, context.batch_size,
                       np.asarray(state.files["centroids"]["centroids"]), state.meta["temperature"])


    @dataclass(repr=False)
    class Centroid(Strategy):
        """Nothing is trained: each class is the mean of its examples' pooled states."""

        name: ClassVar[str] = "centroid"
        summary: ClassVar[str] = "nothing trained; the nearest class centroid of pooled states"
        changes_weights: ClassVar[bool] = False
        sweep_defaults: ClassVar[dict] = {"temperature": [1.0]}

        temperature: float = setting(1.0, "Softmax temperature over negative squared distances.", float_in(0.0))

        def fit(self, context, inputs, y):
            predictor = CentroidPredictor(context.backbone, context.pooling, context.layers, context.max_length,
                                          context.batch_size, None, self.temperature)
            features = predictor.features(inputs)
            predictor.centroids = np.stack([features[y == c].mean(axis=0) for c in range(context.n_classes)])
            return FitResult(predictor, {"trainable_parameters": 0,
                                         "total_parameters": context.backbone.n_parameters()},
                             0, context.max_length)
''')


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict:
    """An environment in which the toy package is installed (on the path, with its entry point declared)."""
    site = tmp_path_factory.mktemp("plugin-site")
    (site / "toy_centroid.py").write_text(TOY_PLUGIN)
    dist = site / "toy_centroid-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-centroid\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[unfreeze.strategies]\ncentroid = toy_centroid:Centroid\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SRC)])}


def _csv(path: Path, n: int, seed: int) -> Path:
    texts, labels = sentiment_task_fixed(n, seed)
    path.write_text("text,label\n" + "\n".join(f"{t},{'pos' if y else 'neg'}" for t, y in zip(texts, labels)) + "\n")
    return path


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_an_installed_plugin_strategy_runs_through_api_cli_sweep_bundle_and_report(
    plugin_env, tiny_model_dir, tmp_path
):
    model = tiny_model_dir("bert")
    train, test = _csv(tmp_path / "train.csv", 40, 0), _csv(tmp_path / "test.csv", 20, 1)

    listed = run(plugin_env, "-m", "unfreeze", "strategies")
    assert listed.returncode == 0, listed.stderr
    assert "centroid" in listed.stdout and "--temperature" in listed.stdout

    api = run(
        plugin_env,
        "-c",
        textwrap.dedent(f"""
        import json, numpy as np
        from unfreeze import Classifier, load_data
        train, test = load_data({str(train)!r}), load_data({str(test)!r})
        clf = Classifier({model!r}, strategy="centroid", temperature=0.5, progress=False).fit(train.texts, train.labels)
        clf.save({str(tmp_path / "api-bundle")!r})
        again = Classifier.load({str(tmp_path / "api-bundle")!r})
        print(json.dumps({{"repr": repr(clf.strategy_),
                           "same": bool(np.array_equal(again.predict_proba(test.texts), clf.predict_proba(test.texts))),
                           "accuracy": clf.score(test.texts, test.labels)}}))
    """),
    )
    assert api.returncode == 0, api.stderr
    result = json.loads(api.stdout.strip().splitlines()[-1])
    assert result["repr"] == "Centroid(temperature=0.5)" and result["same"]

    fit = run(
        plugin_env,
        "-m",
        "unfreeze",
        "fit",
        str(train),
        "--model",
        model,
        "--strategy",
        "centroid",
        "--temperature",
        "2",
        "--test",
        str(test),
        "-o",
        str(tmp_path / "bundle"),
    )
    assert fit.returncode == 0, fit.stderr
    assert "trained centroid temperature=2.0 on 40 examples" in fit.stdout
    config = json.loads((tmp_path / "bundle" / "unfreeze.json").read_text())
    assert config["strategy"] == {"name": "centroid", "params": {"temperature": 2.0}}
    assert (tmp_path / "bundle" / "centroids.safetensors").exists()
    bad = run(
        plugin_env,
        "-m",
        "unfreeze",
        "fit",
        str(train),
        "--model",
        model,
        "--strategy",
        "centroid",
        "--temperature",
        "-1",
        "-o",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 2 and "The 'temperature' parameter of centroid must be a float > 0.0" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()

    predicted = run(
        plugin_env, "-m", "unfreeze", "predict", str(tmp_path / "bundle"), str(test), "-o", str(tmp_path / "out.csv")
    )
    assert predicted.returncode == 0, predicted.stderr
    import pandas as pd

    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["text", "label", "prediction", "proba_neg", "proba_pos"]
    np.testing.assert_allclose(out[["proba_neg", "proba_pos"]].sum(axis=1), 1.0, atol=1e-9)

    swept = run(
        plugin_env,
        "-m",
        "unfreeze",
        "sweep",
        str(train),
        "--test",
        str(test),
        "--model",
        model,
        "--strategies",
        "features,centroid",
        "--grid",
        "centroid.temperature=0.5,2",
        "--sizes",
        "8,16",
        "--seeds",
        "0",
        "-o",
        str(tmp_path / "run"),
    )
    assert swept.returncode == 0, swept.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    labels = sorted({r["cell"]["label"] for r in rows})
    assert labels == ["centroid temperature=0.5", "centroid temperature=2.0", "features"]
    assert all(r["status"] == "done" for r in rows) and len(rows) == 6
    reported = run(plugin_env, "-m", "unfreeze", "report", str(tmp_path / "run"))
    assert reported.returncode == 0, reported.stderr
    assert "centroid temperature=0.5" in reported.stdout
    assert "centroid temperature=0.5" in (tmp_path / "run" / "report.html").read_text()


@register_predictor
@dataclass
class MajorityPredictor(Predictor):
    """Predicts the training set's class frequencies for every input."""

    type_name: ClassVar[str] = "test_majority"
    backbone: object
    priors: np.ndarray
    batch_size: int = 32
    progress: bool = False

    def logits(self, inputs):
        return np.tile(np.log(self.priors), (len(inputs), 1))

    def state(self):
        return PredictorState({"priors": {"priors": self.priors}}, {"type": self.type_name})

    @classmethod
    def from_state(cls, context, strategy, state):
        return cls(context.backbone, np.asarray(state.files["priors"]["priors"]))


@dataclass(repr=False)
class Majority(Strategy):
    """A baseline that reads no text: the class frequencies, smoothed."""

    name: ClassVar[str] = "test-majority"
    changes_weights: ClassVar[bool] = False
    sweep_defaults: ClassVar[dict] = {"smoothing": [1.0]}
    smoothing: float = setting(1.0, "Add this count to every class.", float_in(0.0, low_inclusive=True))

    def fit(self, context, inputs, y):
        counts = np.bincount(y, minlength=context.n_classes) + self.smoothing
        return FitResult(
            MajorityPredictor(context.backbone, counts / counts.sum()),
            {"trainable_parameters": 0, "total_parameters": 0},
        )


@pytest.fixture
def majority_registered(monkeypatch):
    monkeypatch.setattr(strategies_module, "_REGISTRY", dict(strategies_module.registered()))
    register_strategy(Majority)


def test_a_strategy_registered_in_process_fits_saves_loads_and_sweeps(majority_registered, tiny_model_dir, tmp_path):
    from unfreeze.sweep import ResultsStore, SweepSpec
    from unfreeze.sweep.runner import run_sweep

    texts, labels = sentiment_task_fixed(30, 0)
    labels = [0] * 20 + [1] * 10
    clf = Classifier(tiny_model_dir("bert"), strategy="test-majority", smoothing=0.0).fit(texts, labels)
    np.testing.assert_allclose(clf.predict_proba(["anything"]), [[2 / 3, 1 / 3]])
    clf.save(tmp_path / "bundle")
    np.testing.assert_allclose(Classifier.load(tmp_path / "bundle").predict_proba(["x", "y"]), [[2 / 3, 1 / 3]] * 2)
    with pytest.raises(Exception, match="'r' setting does not apply to strategy 'test-majority'"):
        Classifier(strategy="test-majority", r=3)

    data = _csv(tmp_path / "train.csv", 40, 0)
    spec = SweepSpec(
        data=str(data),
        model=tiny_model_dir("bert"),
        strategies=["test-majority"],
        grid={"test-majority": {"smoothing": [0, 5]}},
        n_train=[8],
        seeds=[0],
    )
    counts = run_sweep(spec, tmp_path / "run", progress=False)
    assert counts["done"] == 2
    rows = ResultsStore(tmp_path / "run").records()
    assert sorted(r["cell"]["label"] for r in rows) == ["test-majority smoothing=0", "test-majority smoothing=5"]
