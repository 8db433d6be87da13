"""Heads of every task through the product's outer layers: a multi-head bundle with a single-label, a
multi-label and a regression head on one backbone predicts each in its task's shape from one forward pass,
serves all three over HTTP (one forward pass per batch; each head's answer in its task's shape, described in
the OpenAPI schema), and exports to ONNX (the graph's raw scores, the head's task applied after it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import assert_user_error
from unfreeze import Classifier, Features, MultiHeadClassifier, Regressor, UnfreezeError
from unfreeze.cli import app
from unfreeze.inference.head_tasks import task_of

TEXTS = [
    f"{w} film number {i} with {'good' if i % 2 else 'bad'} acting and {'sport' if i % 3 else 'news'}"
    for i, w in enumerate(["a", "the", "one", "this", "that", "some", "my", "our", "your", "his"] * 3)
]
SENTIMENT = ["pos" if i % 2 else "neg" for i in range(len(TEXTS))]
TAGS = [tuple(t for t, on in (("good", i % 2), ("sport", i % 3)) if on) for i in range(len(TEXTS))]
SCORE = [round(len(t) / 10 + (i % 2), 2) for i, t in enumerate(TEXTS)]
NEW_TEXTS = ["a good film about sport", "bad news", "something else entirely", "good good good", "x"]
TASK_OF_HEAD = {"sentiment": "single", "tags": "multilabel", "score": "regression"}


def estimators(model: str) -> dict:
    """The three heads fitted alone, as single-head estimators with the same settings as the suite's."""
    common = dict(model=model, progress=False, cache=False, device="cpu", batch_size=8)
    return {
        "sentiment": Classifier(strategy=Features(C=1.0), **common).fit(TEXTS, SENTIMENT),
        "tags": Classifier(strategy=Features(C=1.0), task="multilabel", **common).fit(TEXTS, TAGS),
        "score": Regressor(strategy=Features(alpha=1.0), **common).fit(TEXTS, SCORE),
    }


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> str:
    return tiny_model_dir("bert")


@pytest.fixture(scope="module")
def suite_bundle(model, tmp_path_factory) -> Path:
    suite = MultiHeadClassifier(model, batch_size=8, progress=False, device="cpu")
    suite.add_head("sentiment", TEXTS, SENTIMENT, C=1.0, cache=False)
    suite.add_head("tags", TEXTS, TAGS, C=1.0, cache=False, task="multilabel")
    suite.add_head("score", TEXTS, SCORE, alpha=1.0, cache=False, task="regression")
    return suite.save(tmp_path_factory.mktemp("tasks") / "suite")


@pytest.fixture(scope="module")
def alone(model) -> dict:
    return estimators(model)


def test_each_head_predicts_in_its_tasks_shape_as_its_estimator_alone(suite_bundle, alone):
    config = json.loads((suite_bundle / "unfreeze.json").read_text())
    assert {name: entry["task"]["name"] for name, entry in config["heads"].items()} == TASK_OF_HEAD
    assert config["heads"]["score"]["labels"] == [] and config["heads"]["tags"]["labels"] == ["good", "sport"]
    suite = MultiHeadClassifier.load(suite_bundle)
    outputs = suite.outputs(NEW_TEXTS)
    assert [outputs[h].shape for h in TASK_OF_HEAD] == [(5, 2), (5, 2), (5,)]
    for name, clf in alone.items():
        np.testing.assert_allclose(outputs[name], clf.outputs(NEW_TEXTS), rtol=1e-9, atol=1e-12)
    predicted = suite.predict(NEW_TEXTS)
    assert predicted["sentiment"].tolist() == alone["sentiment"].predict(NEW_TEXTS).tolist()
    assert predicted["tags"] == alone["tags"].predict(NEW_TEXTS)  # label sets, with the tuned thresholds
    assert all(isinstance(labels, tuple) for labels in predicted["tags"])
    np.testing.assert_allclose(predicted["score"], alone["score"].predict(NEW_TEXTS), rtol=1e-9)
    thresholds = task_of(suite.heads["tags"]).threshold_values()
    assert thresholds.tolist() == alone["tags"].task_.threshold_values().tolist()
    # the multilabel decision is the stored thresholds' (not 0.5)
    assert predicted["tags"] == [
        tuple(label for label, p, t in zip(["good", "sport"], row, thresholds) if p >= t) for row in outputs["tags"]
    ]
    # probabilities: every classification head; a regression head has values, not probabilities
    assert list(suite.predict_proba(NEW_TEXTS)) == ["sentiment", "tags"]
    with pytest.raises(UnfreezeError, match="'score' predicts values"):
        suite.predict_proba(NEW_TEXTS, ["score"])
    # one head as its own estimator: a Regressor for the regression head
    as_one = suite.as_classifier("score")
    assert isinstance(as_one, Regressor)
    np.testing.assert_allclose(as_one.predict(NEW_TEXTS), predicted["score"], rtol=1e-12)


def test_one_head_loads_as_its_tasks_estimator(suite_bundle, alone):
    from unfreeze.estimators import TextEstimator

    score = Regressor.load(suite_bundle, head="score")
    assert isinstance(score, Regressor)
    np.testing.assert_allclose(score.predict(NEW_TEXTS), alone["score"].predict(NEW_TEXTS), rtol=1e-9)
    assert isinstance(TextEstimator.load(suite_bundle, head="score"), Regressor)
    tags = TextEstimator.load(suite_bundle, head="tags")
    assert isinstance(tags, Classifier) and tags.predict(NEW_TEXTS) == alone["tags"].predict(NEW_TEXTS)
    with pytest.raises(UnfreezeError, match=r"Head 'score' of .* is a regression head: load it with Regressor.load"):
        Classifier.load(suite_bundle, head="score")
    with pytest.raises(UnfreezeError, match=r"Head 'tags' of .* is a multilabel head: load it with Classifier.load"):
        Regressor.load(suite_bundle, head="tags")


def test_a_head_of_an_earlier_release_loads_as_single(suite_bundle, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for file in suite_bundle.rglob("*"):
        if file.is_file():
            (old / file.relative_to(suite_bundle)).parent.mkdir(parents=True, exist_ok=True)
            (old / file.relative_to(suite_bundle)).write_bytes(file.read_bytes())
    config = json.loads((old / "unfreeze.json").read_text())
    del config["heads"]["sentiment"]["task"]  # what earlier releases wrote
    (old / "unfreeze.json").write_text(json.dumps(config))
    before = MultiHeadClassifier.load(suite_bundle).predict(NEW_TEXTS)
    loaded = MultiHeadClassifier.load(old)
    assert task_of(loaded.heads["sentiment"]).name == "single"
    assert loaded.predict(NEW_TEXTS)["sentiment"].tolist() == before["sentiment"].tolist()
    # a regression head whose task is lost cannot pass for a single-label one
    del config["heads"]["score"]["task"]
    (old / "unfreeze.json").write_text(json.dumps(config))
    with pytest.raises(UnfreezeError, match=r"damaged.*'score'"):
        MultiHeadClassifier.load(old)


def test_heads_add_takes_a_bundle_of_any_task_and_data_of_any_task(model, alone, tmp_path, runner):
    bundle = tmp_path / "scores"
    alone["score"].save(bundle)  # a regression features bundle: its head becomes 'default'
    data = tmp_path / "tags.csv"
    data.write_text("text,label\n" + "".join(f'"{t}",{"|".join(tags)}\n' for t, tags in zip(TEXTS, TAGS)))
    args = ["heads", "add", str(bundle), "tags", str(data), "--task", "multilabel", "--label-sep", "|"]
    result = runner.invoke(app, [*args, "--model", model, "--C", "1", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("added multilabel head 'tags' (2 labels, pooling mean, layers 2, C=1) fitted on")
    listed = json.loads(runner.invoke(app, ["heads", "list", str(bundle), "--json"]).output)
    assert [(h["name"], h["task"], h["labels"], h["metric"]) for h in listed["heads"]] == [
        ("default", "regression", [], "spearman"),
        ("tags", "multilabel", ["good", "sport"], "micro_f1"),
    ]
    table = runner.invoke(app, ["heads", "list", str(bundle)]).output.splitlines()
    assert table[1].split() == ["head", "task", "labels", "pooling", "layers", "test", "score", "data"]
    assert table[2].split()[:5] == ["default", "regression", "0", "mean", "2"]
    suite = MultiHeadClassifier.load(bundle)
    np.testing.assert_allclose(suite.predict(NEW_TEXTS)["default"], alone["score"].predict(NEW_TEXTS), rtol=1e-9)
    assert suite.predict(NEW_TEXTS)["tags"] == alone["tags"].predict(NEW_TEXTS)
    # a strength of the other kind of head: one line, nothing fitted
    scores = tmp_path / "scores.csv"
    scores.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in zip(TEXTS, SCORE)))
    args = ["heads", "add", str(bundle), "more", str(scores), "--task", "regression", "--C", "1", "--no-cache"]
    result = runner.invoke(app, [*args, "--model", model])
    assert_user_error(result, "the logistic head's strength", "give alpha instead (--alpha)")


# -- serving over HTTP ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class InProcessServer:
    """The service on a loopback port, in a thread of this process (so the model's forward calls can be counted)."""

    def __init__(self, predictor, **limits) -> None:
        import uvicorn

        from unfreeze.serve.app import ServeLimits, create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(predictor, ServeLimits(**limits)), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def test_three_tasks_served_over_http_in_one_forward_pass(suite_bundle):
    from unfreeze.inference.bundle_predictor import BundlePredictor

    predictor = BundlePredictor(suite_bundle, device="cpu")
    expected = MultiHeadClassifier.load(suite_bundle)
    outputs, predicted = expected.outputs(NEW_TEXTS), expected.predict(NEW_TEXTS)
    calls = []
    hook = predictor.suite.inference_backbone.model.register_forward_hook(lambda *_: calls.append(1))
    server = InProcessServer(predictor, max_wait_ms=50.0)
    try:
        response = httpx.post(f"{server.url}/predict", json={"texts": NEW_TEXTS}, timeout=30)
        assert response.status_code == 200, response.text
        health = httpx.get(f"{server.url}/health").json()
        heads = httpx.get(f"{server.url}/heads").json()["heads"]
        spec = httpx.get(f"{server.url}/openapi.json").json()
    finally:
        server.stop()
        hook.remove()
    assert len(calls) == 1 and health["batches"] == 1  # five texts, three heads: one pass of the backbone
    results = response.json()["results"]
    assert list(results) == list(TASK_OF_HEAD)
    single = results["sentiment"]  # as before tasks existed
    assert list(single) == ["labels", "predictions", "probabilities"] and single["labels"] == ["neg", "pos"]
    np.testing.assert_allclose(single["probabilities"], outputs["sentiment"], atol=1e-9)
    assert single["predictions"] == predicted["sentiment"].tolist()
    tags = results["tags"]
    assert tags["task"] == "multilabel" and tags["labels"] == ["good", "sport"]
    assert tags["thresholds"] == task_of(expected.heads["tags"]).threshold_values().tolist()
    assert [tuple(p["labels"]) for p in tags["predictions"]] == predicted["tags"]
    np.testing.assert_allclose(
        [[p["scores"][k] for k in ("good", "sport")] for p in tags["predictions"]], outputs["tags"]
    )
    assert results["score"]["task"] == "regression"
    np.testing.assert_allclose([p["value"] for p in results["score"]["predictions"]], predicted["score"], rtol=1e-9)
    assert [(h["name"], h["task"], h["labels"]) for h in heads] == [
        ("sentiment", "single", ["neg", "pos"]),
        ("tags", "multilabel", ["good", "sport"]),
        ("score", "regression", []),
    ]
    schemas = spec["components"]["schemas"]
    answer = schemas["PredictResponse"]["properties"]["results"]["additionalProperties"]
    assert sorted(ref["$ref"].rsplit("/", 1)[1] for ref in answer["anyOf"]) == [
        "HeadResult",
        "MultiLabelHeadResult",
        "RegressionHeadResult",
    ]
    assert set(schemas["MultiLabelHeadResult"]["required"]) == {"task", "labels", "thresholds", "predictions"}
    assert schemas["RegressionHeadResult"]["properties"]["task"]["const"] == "regression"


@pytest.mark.skipif(
    shutil.which("schemathesis", path=os.path.dirname(sys.executable)) is None,
    reason="schemathesis is not installed (it comes with the dev extra)",
)
@pytest.mark.slow
def test_schemathesis_finds_every_tasks_answer_in_the_spec(suite_bundle, tmp_path):
    """Requests generated from the three-task bundle's spec, served by `unfreeze serve`: no 5xx, and every
    answer (of each task's shape) matches the spec."""
    from test_serve import Server

    server = Server(suite_bundle, "--max-texts", "8", "--max-chars", "200")
    try:
        result = subprocess.run(
            [
                os.path.join(os.path.dirname(sys.executable), "schemathesis"),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "40",
                "--seed",
                "1",
                "--generation-database",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # schemathesis writes a cache in its cwd
        )
        health = httpx.get(f"{server.url}/health").json()
    finally:
        assert server.stop() == 0
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert health["texts"] > 40  # schemathesis really reached the model


def test_a_single_label_bundle_keeps_its_schema(alone, tmp_path):
    from fastapi.testclient import TestClient

    from unfreeze.inference.bundle_predictor import BundlePredictor
    from unfreeze.serve.app import create_app

    alone["sentiment"].save(tmp_path / "single")
    with TestClient(create_app(BundlePredictor(tmp_path / "single", device="cpu"))) as client:
        spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    answer = schemas["PredictResponse"]["properties"]["results"]["additionalProperties"]
    assert answer == {"$ref": "#/components/schemas/HeadResult"}
    assert not {"MultiLabelHeadResult", "RegressionHeadResult"} & set(schemas)


# -- ONNX export ---------------------------------------------------------------------------------------


def test_the_three_heads_export_to_onnx(suite_bundle):
    pytest.importorskip("onnxruntime")
    from unfreeze.export import export_bundle, read_manifest

    # torchscript: the faster of torch's exporters (the graphs do not depend on the task; both are tested
    # in test_export_onnx.py)
    exported = export_bundle(suite_bundle, int8=True, exporter="torchscript")
    manifest = read_manifest(exported.path)
    assert {name: entry["task"]["name"] for name, entry in manifest["heads"].items()} == TASK_OF_HEAD
    check = exported.result.check
    assert check.fp32_max_abs_diff <= 1e-4 and check.fp32_agreement == 1.0
    # int8, checked on the training inputs stored with each head, by each task's own score
    assert {name: (c.metric, c.agreement is None) for name, c in check.int8.items()} == {
        "sentiment": ("accuracy", False),
        "tags": ("micro_f1", False),
        "score": ("spearman", True),  # values: no labels to agree on
    }
    assert all(c.accuracy_torch is not None for c in check.int8.values())
    lines = "\n".join(exported.lines())
    assert "int8 [score]: max |value difference| (relative)" in lines and "; spearman " in lines
    assert "fp32: max |output difference| vs PyTorch" in lines  # not only probabilities
    torch_suite = MultiHeadClassifier.load(suite_bundle)
    onnx_suite = MultiHeadClassifier.load(suite_bundle, runtime="onnx")
    expected, got = torch_suite.outputs(NEW_TEXTS), onnx_suite.outputs(NEW_TEXTS)
    for name in TASK_OF_HEAD:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-4, rtol=1e-4)
    assert onnx_suite.predict(NEW_TEXTS)["tags"] == torch_suite.predict(NEW_TEXTS)["tags"]
    # the service on the export answers in the same shapes
    from fastapi.testclient import TestClient

    from unfreeze.inference.bundle_predictor import BundlePredictor
    from unfreeze.serve.app import create_app

    with TestClient(create_app(BundlePredictor(suite_bundle, runtime="onnx"))) as client:
        results = client.post("/predict", json={"texts": NEW_TEXTS}).json()["results"]
    assert [tuple(p["labels"]) for p in results["tags"]["predictions"]] == torch_suite.predict(NEW_TEXTS)["tags"]
    values = [p["value"] for p in results["score"]["predictions"]]
    np.testing.assert_allclose(values, expected["score"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(results["sentiment"]["probabilities"], expected["sentiment"], atol=1e-4)


def test_multilabel_and_regression_bundles_load_with_the_onnx_runtime(model, alone, tmp_path):
    pytest.importorskip("onnxruntime")
    from unfreeze.export import export_bundle

    tuned = dict(model=model, strategy="freeze", k=1, epochs=2, progress=False, cache=False, device="cpu")
    # a features multilabel bundle (its head after the graph), regression and multilabel networks (the graph's
    # logits)
    bundles = {
        "tags": alone["tags"],
        "network": Regressor(**tuned).fit(TEXTS, SCORE),
        "tags_network": Classifier(**tuned, task="multilabel").fit(TEXTS, TAGS),
    }
    for name, clf in bundles.items():
        clf.save(tmp_path / name)
        check = export_bundle(tmp_path / name, exporter="torchscript").result.check
        # a network of values decides no labels: nothing is said to agree
        assert (check.fp32_agreement is None, check.outputs) == (
            (True, "output") if name == "network" else (False, "probability")
        )
    tags = Classifier.load(tmp_path / "tags", runtime="onnx")
    assert tags.task_.name == "multilabel" and tags.predict(NEW_TEXTS) == alone["tags"].predict(NEW_TEXTS)
    np.testing.assert_allclose(tags.predict_proba(NEW_TEXTS), alone["tags"].predict_proba(NEW_TEXTS), atol=1e-4)
    loaded = Regressor.load(tmp_path / "network", runtime="onnx")
    values = loaded.predict(NEW_TEXTS)
    assert loaded.task_.name == "regression" and values.shape == (5,)
    np.testing.assert_allclose(values, bundles["network"].predict(NEW_TEXTS), rtol=1e-4, atol=1e-4)
    tags_network = Classifier.load(tmp_path / "tags_network", runtime="onnx")
    assert tags_network.predict(NEW_TEXTS) == bundles["tags_network"].predict(NEW_TEXTS)
    np.testing.assert_allclose(
        tags_network.predict_proba(NEW_TEXTS), bundles["tags_network"].predict_proba(NEW_TEXTS), atol=1e-4
    )
    with pytest.raises(UnfreezeError, match="regression model, which Classifier does not load"):
        Classifier.load(tmp_path / "network", runtime="onnx")
