"""`unfreeze export` and `--runtime onnx`: any bundle exports (features, multi-head, fine-tuned), checks
itself on the training inputs stored with the bundle, and predicts through the CLI, the Python API and
the HTTP service as PyTorch does (within 1e-4); bad input is one line, exit 2, nothing half-written."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import applicable, assert_user_error, sentiment_task_varied
from unfreeze import Classifier, MultiHeadClassifier
from unfreeze.cli import app

ATOL = 1e-4
TOPICS = ("sport", "news", "art")
NEW = [
    "x",
    "a good film about sport and nothing else, told slowly over three long hours of screen time",
    "bad news",
    "good good good",
    "the movie was quite terrible",
    "a lovely story and very great actors",
]


def need_onnx_extra() -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'unfreeze[onnx]') is not installed")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (the onnx extra)")


@pytest.fixture(autouse=True)
def onnx_extra(request):
    """Every test needs the onnx extra except the one that checks what happens without it."""
    if "without_onnxruntime" not in request.node.name:
        need_onnx_extra()


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def sentiment(n: int, seed: int) -> tuple[list[str], list[str]]:
    texts, y = sentiment_task_varied(n, seed)
    return texts, ["pos" if v else "neg" for v in y]


@pytest.fixture(scope="module")
def bundles(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """A features, a freeze and a multi-head bundle on the tiny BERT, and a labelled CSV of new texts."""
    root = tmp_path_factory.mktemp("export-cli")
    model = tiny_model_dir("bert")
    texts, labels = sentiment(48, 0)
    out = {
        "features": Classifier(model=model, strategy="features", C=1.0, progress=False, cache=False, device="cpu")
        .fit(texts, labels)
        .save(root / "features"),
        "freeze": Classifier(
            model=model, strategy="freeze", k=1, epochs=1, progress=False, device="cpu", validation_fraction=0.0
        )
        .fit(texts, labels)
        .save(root / "freeze"),
    }
    suite = MultiHeadClassifier(model, batch_size=8, progress=False, device="cpu")
    suite.add_head("sentiment", texts, labels, C=1.0, cache=False)
    other, _ = sentiment(30, 1)  # the topic head is fitted on other texts: its labels are unknown on the first ones
    suite.add_head(
        "topic", other, [TOPICS[i % 3] for i in range(len(other))], pooling="cls", layers="-2,-1", C=1.0, cache=False
    )
    out["multihead"] = suite.save(root / "multihead")
    new_texts, new_labels = sentiment(24, 7)
    out["data"] = root / "new.csv"
    pd.DataFrame({"text": NEW + new_texts, "label": ["neg"] * len(NEW) + new_labels}).to_csv(out["data"], index=False)
    return out


@pytest.fixture(scope="module")
def exported(bundles) -> dict[str, str]:
    """Each bundle exported through the CLI into BUNDLE/onnx (TorchScript: ten times quicker to export than
    dynamo, which test_export_onnx.py covers; one dynamo export below); what each export printed."""
    need_onnx_extra()
    printed = {}
    for name in ("features", "freeze", "multihead"):
        extra = [] if name == "freeze" else ["--int8"]
        result = CliRunner().invoke(app, ["export", str(bundles[name]), "--exporter", "torchscript", *extra])
        assert result.exit_code == 0, (result.output, result.exception)
        printed[name] = result.stdout
    return printed


# -- what the bundle stores for a later export ------------------------------------------------------


def test_bundles_store_a_seeded_sample_of_training_inputs(bundles, tiny_model_dir, tmp_path):
    config = json.loads((bundles["features"] / "unfreeze.json").read_text())
    sample = config["check_texts"]
    texts, labels = sentiment(48, 0)
    assert len(sample["texts"]) == len(sample["labels"]) == 48  # all of them: fewer than 64
    assert all(labels[texts.index(t)] == y for t, y in zip(sample["texts"], sample["labels"]))
    # a larger training set: 64 of them, the same 64 for the same seed, others for another seed
    many, many_labels = sentiment(150, 3)
    fits = [
        Classifier(model=tiny_model_dir("bert"), C=1.0, progress=False, cache=False, seed=seed, device="cpu").fit(
            many, many_labels
        )
        for seed in (0, 0, 1)
    ]
    assert len(fits[0].check_texts_["texts"]) == 64
    assert fits[0].check_texts_ == fits[1].check_texts_ != fits[2].check_texts_
    # multi-head: per head, kept when heads are added to a features bundle (its head becomes 'default')
    multi = json.loads((bundles["multihead"] / "unfreeze.json").read_text())
    assert [len(multi["heads"][h]["check_texts"]["texts"]) for h in ("sentiment", "topic")] == [48, 30]
    suite = MultiHeadClassifier.load(bundles["features"])
    suite.save(tmp_path / "suite")
    assert json.loads((tmp_path / "suite" / "unfreeze.json").read_text())["heads"]["default"]["check_texts"] == sample


def test_check_set_joins_the_heads_inputs(bundles):
    from unfreeze.export.exporter import _check_set

    config = json.loads((bundles["multihead"] / "unfreeze.json").read_text())
    from unfreeze.tasks import task_from_state

    # each head's task: its classes (a head of any task may be checked: its labels are the task's)
    classes = {"sentiment": task_from_state(None, ["neg", "pos"]), "topic": task_from_state(None, list(TOPICS))}
    check = _check_set(config, classes, None, None, None)
    assert len(check.inputs) == 48 + 30 and check.note is None
    known = {name: [i for i, y in enumerate(column) if y is not None] for name, column in check.labels.items()}
    assert known == {"sentiment": list(range(48)), "topic": list(range(48, 78))}
    # given data: labels count for the heads whose labels they are
    given = _check_set(config, classes, ["a", "b"], ["pos", "neg"], "two texts")
    assert list(given.labels) == ["sentiment"] and given.origin == "two texts"
    strangers = _check_set(config, classes, ["a"], ["maybe"], None)
    assert strangers.labels == {} and "not this bundle's labels" in strangers.note


# -- export, then predict with it -----------------------------------------------------------------


def test_export_prints_where_and_its_check(bundles, exported):
    for name in ("features", "freeze", "multihead"):
        lines = exported[name].splitlines()
        assert lines[0].startswith(f"exported {bundles[name]} (") and f"-> {bundles[name] / 'onnx'} in " in lines[0]
        assert "model.onnx (" in lines[0]
        n = 78 if name == "multihead" else 48
        assert lines[1] == f"checked against PyTorch on {n} training inputs stored with the bundle:"
        assert lines[2].startswith("  fp32: max |probability difference| vs PyTorch ") and "(allowed 1e-04)" in lines[2]
    assert "features, 1 head on pooled states" in exported["features"]
    assert "freeze, a tuned network" in exported["freeze"] and "int8" not in exported["freeze"]
    # int8: label agreement and the accuracy change, per head, on the rows whose labels the head knows
    int8 = [line for line in exported["multihead"].splitlines() if "int8 [" in line]
    assert [line.split("]")[0].strip() for line in int8] == ["int8 [sentiment", "int8 [topic"]
    assert all("labels agree with PyTorch on" in line and "accuracy" in line for line in int8)
    for name in ("features", "freeze", "multihead"):
        manifest = json.loads((bundles[name] / "onnx" / "export.json").read_text())
        digest = hashlib.sha256((bundles[name] / "unfreeze.json").read_bytes()).hexdigest()
        assert manifest["source"]["config_sha256"] == digest
        assert manifest["check"]["fp32_max_abs_diff"] <= ATOL
        assert [p.name for p in bundles[name].iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.mark.parametrize("name", ["features", "freeze", "multihead"])
def test_predict_runtime_onnx_matches_torch(runner, bundles, exported, tmp_path, name):
    bundle, data = bundles[name], bundles["data"]
    assert runner.invoke(app, ["predict", str(bundle), str(data), "-o", str(tmp_path / "torch.csv")]).exit_code == 0
    result = runner.invoke(
        app, ["predict", str(bundle), str(data), "-o", str(tmp_path / "onnx.csv"), "--runtime", "onnx"]
    )
    assert result.exit_code == 0, result.output
    expected, got = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / "onnx.csv")
    assert list(got.columns) == list(expected.columns)
    proba = [c for c in expected.columns if "proba_" in c]
    assert np.abs(got[proba].to_numpy() - expected[proba].to_numpy()).max() <= ATOL
    predictions = [c for c in expected.columns if c.endswith("prediction")]
    assert got[predictions].equals(expected[predictions])
    if name == "multihead":  # every head answered, from one export
        assert predictions == ["sentiment.prediction", "topic.prediction"]
        assert set(got["topic.prediction"]) <= set(TOPICS)


def test_predict_int8_and_its_errors(runner, bundles, exported, tmp_path):
    bundle, data = bundles["features"], bundles["data"]
    result = runner.invoke(
        app,
        [
            "predict",
            str(bundle),
            str(data),
            "-o",
            str(tmp_path / "int8.csv"),
            "--runtime",
            "onnx",
            "--precision",
            "int8",
        ],
    )
    assert result.exit_code == 0, result.output
    torch_labels = Classifier.load(bundle).predict(pd.read_csv(data)["text"].tolist())
    assert np.mean(pd.read_csv(tmp_path / "int8.csv")["prediction"].to_numpy() == torch_labels) >= 0.9
    # the freeze bundle was exported without --int8
    out = tmp_path / "no.csv"
    result = runner.invoke(
        app, ["predict", str(bundles["freeze"]), str(data), "-o", str(out), "--runtime", "onnx", "--precision", "int8"]
    )
    assert_user_error(result, "has no int8 graph", "--int8")
    result = runner.invoke(app, ["predict", str(bundle), str(data), "-o", str(out), "--precision", "int8"])
    assert_user_error(result, "needs the ONNX runtime (--runtime onnx)")
    # --int8, the old spelling of --precision int8, still works for a release, with one warning line
    result = runner.invoke(app, ["predict", str(bundle), str(data), "-o", str(out), "--int8"])
    assert result.exit_code == 2 and result.stderr.splitlines()[0] == (
        "warning: --int8 is now --precision int8; the old spelling will be removed in the next release."
    )
    assert "needs the ONNX runtime (--runtime onnx)" in result.stderr.splitlines()[1]
    result = runner.invoke(
        app, ["predict", str(bundle), str(data), "-o", str(out), "--runtime", "onnx", "--device", "cuda"]
    )
    assert_user_error(result, "--device cuda applies to the torch runtime")
    assert not out.exists()


def test_python_api_runtime_onnx(bundles, exported, tmp_path):
    from unfreeze.errors import UnfreezeError
    from unfreeze.export.onnx_predictor import OnnxPredictor

    texts, labels = sentiment(20, 11)
    for name in ("features", "freeze"):
        expected = Classifier.load(bundles[name])
        clf = Classifier.load(bundles[name], runtime="onnx")
        assert isinstance(clf.predictor_, OnnxPredictor) and clf.backbone_ is None
        assert list(clf.classes_) == list(expected.classes_) and clf.strategy_.name == expected.strategy_.name
        assert np.abs(clf.predict_proba(texts) - expected.predict_proba(texts)).max() <= ATOL
        assert np.abs(clf.decision_function(texts) - expected.decision_function(texts)).max() <= 1e-3
        assert list(clf.predict(texts)) == list(expected.predict(texts))
        assert clf.score(texts, labels) == expected.score(texts, labels)
        with pytest.raises(UnfreezeError, match="only predicts"):
            clf.save(tmp_path / name)
        assert not (tmp_path / name).exists()
    int8 = Classifier.load(bundles["features"], runtime="onnx", precision="int8")
    assert int8.predictor_.precision == "int8" and int8.predict(texts).shape == (20,)

    suite, torch_suite = (
        MultiHeadClassifier.load(bundles["multihead"], runtime="onnx"),
        MultiHeadClassifier.load(bundles["multihead"]),
    )
    got, expected = suite.predict_proba(texts), torch_suite.predict_proba(texts)
    assert list(got) == ["sentiment", "topic"]
    assert all(np.abs(got[h] - expected[h]).max() <= ATOL for h in got)
    assert list(suite.predict(texts, ["topic"])) == ["topic"]
    topic = Classifier.load(bundles["multihead"], head="topic", runtime="onnx")
    assert list(topic.predict(texts)) == list(torch_suite.predict(texts)["topic"])
    with pytest.raises(UnfreezeError, match="holds 2 heads"):
        Classifier.load(bundles["multihead"], runtime="onnx")
    with pytest.raises(UnfreezeError, match="load the bundle with the torch runtime to add heads"):
        suite.add_head("more", texts, labels)
    with pytest.raises(UnfreezeError, match=r"'runtime' parameter of Classifier\.load must be one of 'torch', 'onnx'"):
        Classifier.load(bundles["features"], runtime="tensorrt")
    with pytest.raises(UnfreezeError, match="pass runtime='onnx' with them"):
        MultiHeadClassifier.load(bundles["multihead"], precision="int8")


def test_check_on_given_data_reports_the_accuracy_change(runner, bundles, tmp_path):
    bundle = tmp_path / "features"
    shutil.copytree(bundles["features"], bundle, ignore=shutil.ignore_patterns("onnx"))
    result = runner.invoke(
        app, ["export", str(bundle), "--exporter", "torchscript", "--int8", "--check", str(bundles["data"])]
    )
    assert result.exit_code == 0, result.output
    assert f"checked against PyTorch on 30 inputs of {bundles['data']}:" in result.stdout
    assert "int8 [default]: labels agree with PyTorch on" in result.stdout and "accuracy" in result.stdout
    # again: an export is there, so --overwrite (alias --force) is needed to replace it
    before = (bundle / "onnx" / "export.json").read_text()
    result = runner.invoke(app, ["export", str(bundle), "--exporter", "torchscript"])
    assert_user_error(result, "already holds an ONNX export", "--overwrite")
    assert (bundle / "onnx" / "export.json").read_text() == before
    result = runner.invoke(app, ["export", str(bundle), "--exporter", "torchscript", "--overwrite"])
    assert result.exit_code == 0 and "int8" not in result.stdout, result.output
    assert "int8" not in json.loads((bundle / "onnx" / "export.json").read_text())["graphs"]
    assert_user_error(runner.invoke(app, ["export", str(bundle), "--overwrite", "--keep-ffn-output"]), "add --int8")
    assert_user_error(runner.invoke(app, ["export", str(bundle), "--overwrite", "--full-range"]), "add --int8")
    result = runner.invoke(
        app, ["export", str(bundle), "--exporter", "torchscript", "--overwrite", "--int8", "--keep-ffn-output"]
    )
    assert result.exit_code == 0, result.output
    quantization = json.loads((bundle / "onnx" / "export.json").read_text())["quantization"]
    assert quantization["keep_ffn_output"] is True and quantization["reduce_range"] is True
    result = runner.invoke(
        app, ["export", str(bundle), "--exporter", "torchscript", "--overwrite", "--int8", "--full-range"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((bundle / "onnx" / "export.json").read_text())["quantization"]["reduce_range"] is False


def test_a_bundle_without_stored_inputs_is_checked_on_builtin_sentences(runner, bundles, tmp_path):
    bundle = tmp_path / "old"
    shutil.copytree(bundles["features"], bundle, ignore=shutil.ignore_patterns("onnx"))
    config = json.loads((bundle / "unfreeze.json").read_text())
    del config["check_texts"]  # as a bundle saved before the sample was kept
    (bundle / "unfreeze.json").write_text(json.dumps(config))
    out = tmp_path / "elsewhere" / "export"
    result = runner.invoke(app, ["export", str(bundle), "-o", str(out), "--exporter", "torchscript"])
    assert result.exit_code == 0, result.output
    assert "note: this bundle stores no training inputs to check on" in result.stdout
    assert "checked against PyTorch on 8 built-in sentences:" in result.stdout
    # an export elsewhere is found with --onnx
    assert Classifier.load(bundle, runtime="onnx", onnx=out).predict(NEW).shape == (len(NEW),)


@pytest.mark.slow
def test_dynamo_export_of_a_multihead_bundle(runner, bundles, tmp_path):
    """The default exporter (torch.export-based) through the CLI: every head answered within 1e-4."""
    bundle = tmp_path / "suite"
    shutil.copytree(bundles["multihead"], bundle, ignore=shutil.ignore_patterns("onnx"))
    result = runner.invoke(app, ["export", str(bundle)])
    assert result.exit_code == 0, result.output
    assert json.loads((bundle / "onnx" / "export.json").read_text())["exporter"] == "dynamo"
    got = MultiHeadClassifier.load(bundle, runtime="onnx").predict_proba(NEW)
    expected = MultiHeadClassifier.load(bundle).predict_proba(NEW)
    assert all(np.abs(got[h] - expected[h]).max() <= ATOL for h in ("sentiment", "topic"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy, params", [("setfit", dict(num_iterations=1, C=1.0)), ("lora", dict(r=2)), ("reinit", dict(m=1))]
)
def test_other_strategies_export(tiny_model_dir, tmp_path, strategy, params):
    from unfreeze.export.exporter import export_bundle

    texts, labels = sentiment(24, 2)
    clf = Classifier(
        model=tiny_model_dir("bert"),
        strategy=strategy,
        progress=False,
        device="cpu",
        **applicable(strategy, {"epochs": 1, **params}),
    ).fit(texts, labels)
    clf.save(tmp_path / strategy)
    done = export_bundle(tmp_path / strategy, exporter="torchscript")
    assert done.kind == ("heads" if strategy == "setfit" else "network")
    got = Classifier.load(tmp_path / strategy, runtime="onnx").predict_proba(NEW)
    assert np.abs(got - Classifier.load(tmp_path / strategy).predict_proba(NEW)).max() <= ATOL


# -- bad input: one line, exit 2, nothing half-written ------------------------------------------------


def test_exporting_a_folder_that_is_not_a_bundle(runner, tmp_path):
    (tmp_path / "notes.txt").write_text("not a bundle")
    result = runner.invoke(app, ["export", str(tmp_path), "--exporter", "torchscript"])
    assert_user_error(result, f"{tmp_path} is not an unfreeze bundle (no unfreeze.json)")
    assert listing(tmp_path) == ["notes.txt"]
    result = runner.invoke(app, ["export", str(tmp_path / "missing")])
    assert_user_error(result, "the folder does not exist")
    assert not (tmp_path / "missing").exists()


def test_an_unsupported_architecture_is_named(runner, bundles, tmp_path, monkeypatch):
    import torch
    from transformers.models.bert import modeling_bert

    bundle = tmp_path / "features"
    shutil.copytree(bundles["features"], bundle, ignore=shutil.ignore_patterns("onnx"))
    before = listing(tmp_path)
    forward = modeling_bert.BertModel.forward

    def with_an_op_onnx_lacks(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        h = out.last_hidden_state
        # eigenvalues have no ONNX translation; adding zero of them keeps the op in the graph
        out.last_hidden_state = h + torch.linalg.eigvalsh(h @ h.transpose(-1, -2)).sum(-1)[..., None, None] * 0
        return out

    monkeypatch.setattr(modeling_bert.BertModel, "forward", with_an_op_onnx_lacks)
    result = runner.invoke(app, ["export", str(bundle), "--exporter", "torchscript"])
    assert_user_error(result, "Cannot export BertModel (model type 'bert') to ONNX", "linalg_eigvalsh")
    assert listing(tmp_path) == before


def test_a_strategy_whose_predictor_cannot_be_exported(runner, bundles, tmp_path, monkeypatch):
    from unfreeze.inference.predictors import PREDICTORS, Predictor

    class MixPredictor(Predictor):  # as a future strategy may bring
        type_name = "mix"

    monkeypatch.setitem(PREDICTORS, "mix", MixPredictor)
    bundle = tmp_path / "mix"
    shutil.copytree(bundles["features"], bundle, ignore=shutil.ignore_patterns("onnx"))
    config = json.loads((bundle / "unfreeze.json").read_text())
    config["strategy"]["name"], config["predictor"]["type"] = "mix", "mix"
    (bundle / "unfreeze.json").write_text(json.dumps(config))
    before = listing(tmp_path)
    result = runner.invoke(app, ["export", str(bundle)])
    assert_user_error(
        result,
        "strategy 'mix' (predictor MixPredictor) has no ONNX export",
        # the predictor classes that have one (Predictor.exports_onnx), each with what it is
        "EmbeddingHead (a head on pooled hidden states)",
        "NetworkPredictor (a tuned network)",
    )
    assert "MixPredictor (" not in result.stderr
    assert listing(tmp_path) == before


def test_a_failed_check_leaves_no_export(runner, bundles, tmp_path, monkeypatch):
    import unfreeze.export.onnx as onnx_module

    bundle = tmp_path / "features"
    shutil.copytree(bundles["features"], bundle, ignore=shutil.ignore_patterns("onnx"))
    before = listing(tmp_path)
    real = onnx_module.torch_heads_proba
    monkeypatch.setattr(
        onnx_module, "torch_heads_proba", lambda *a, **k: {n: p * 0.999 + 0.0005 for n, p in real(*a, **k).items()}
    )
    result = runner.invoke(app, ["export", str(bundle), "--exporter", "torchscript"])
    assert_user_error(result, "does not match PyTorch", "nothing was exported")
    assert listing(tmp_path) == before


def test_runtime_onnx_on_a_bundle_without_export(runner, bundles, tmp_path):
    bundle = tmp_path / "freeze"
    shutil.copytree(bundles["freeze"], bundle, ignore=shutil.ignore_patterns("onnx"))
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["predict", str(bundle), str(bundles["data"]), "-o", str(out), "--runtime", "onnx"])
    assert_user_error(result, f"{bundle} has no ONNX export", f"run `unfreeze export {bundle}` first")
    assert not out.exists()
    result = runner.invoke(app, ["serve", str(bundle), "--runtime", "onnx"])
    assert_user_error(result, "has no ONNX export")


def test_a_corrupted_graph_is_refused(runner, bundles, exported, tmp_path):
    bundle = tmp_path / "features"
    shutil.copytree(bundles["features"], bundle)
    graph = bundle / "onnx" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    graph.write_bytes(bytes(data))
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["predict", str(bundle), str(bundles["data"]), "-o", str(out), "--runtime", "onnx"])
    assert_user_error(result, f"the export at {graph} is damaged", "unfreeze export")
    assert not out.exists()
    result = runner.invoke(app, ["serve", str(bundle), "--runtime", "onnx"])  # fails before it listens
    assert_user_error(result, "is damaged")


def test_an_export_of_another_bundle_is_refused(runner, bundles, exported, tmp_path):
    data, out = str(bundles["data"]), tmp_path / "out.csv"
    result = runner.invoke(
        app,
        [
            "predict",
            str(bundles["features"]),
            data,
            "-o",
            str(out),
            "--runtime",
            "onnx",
            "--onnx",
            str(bundles["freeze"] / "onnx"),
        ],
    )
    assert_user_error(
        result, f"belongs to another bundle ({bundles['freeze'].resolve()}", f"not to {bundles['features']}"
    )
    # a copy of a bundle with its export is the same bundle
    copy = tmp_path / "copy"
    shutil.copytree(bundles["multihead"], copy)
    assert runner.invoke(app, ["predict", str(copy), data, "-o", str(out), "--runtime", "onnx"]).exit_code == 0
    # ...until it changes: a removed head makes its export out of date
    assert runner.invoke(app, ["heads", "remove", str(copy), "topic"]).exit_code == 0
    out.unlink()
    result = runner.invoke(app, ["predict", str(copy), data, "-o", str(out), "--runtime", "onnx"])
    assert_user_error(result, "is out of date", f"{copy} changed after it was exported", "--overwrite")
    assert not out.exists()
    # an export the API wrote without recording its bundle cannot be trusted either
    manifest_file = copy / "onnx" / "export.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["source"] = {}
    manifest_file.write_text(json.dumps(manifest))
    result = runner.invoke(app, ["predict", str(copy), data, "-o", str(out), "--runtime", "onnx"])
    assert_user_error(result, "does not record the bundle it was made from")


def test_without_onnxruntime_says_how_to_install(runner, bundles, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    bundle = tmp_path / "features"
    shutil.copytree(bundles["features"], bundle, ignore=shutil.ignore_patterns("onnx"))
    before = listing(tmp_path)
    hint = "pip install 'unfreeze[onnx]'"
    assert_user_error(runner.invoke(app, ["export", str(bundle)]), hint)
    assert_user_error(
        runner.invoke(
            app, ["predict", str(bundle), str(bundles["data"]), "-o", str(tmp_path / "o.csv"), "--runtime", "onnx"]
        ),
        hint,
    )
    assert_user_error(runner.invoke(app, ["serve", str(bundle), "--runtime", "onnx"]), hint)
    from unfreeze.errors import UnfreezeError

    with pytest.raises(UnfreezeError, match=r"install it with: pip install 'unfreeze\[onnx\]'"):
        Classifier.load(bundle, runtime="onnx")
    assert listing(tmp_path) == before


# -- the HTTP service with the ONNX runtime ------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_suite(tiny_model_dir, tmp_path_factory) -> Path:
    """test_serve.py's two-head bundle, exported (fp32 and int8)."""
    from test_serve import SENTIMENT, TEXTS, TOPIC
    from unfreeze.export.exporter import export_bundle

    need_onnx_extra()
    suite = MultiHeadClassifier(tiny_model_dir("bert"), batch_size=8, progress=False)
    suite.add_head("sentiment", TEXTS, SENTIMENT, C=1.0, cache=False)
    suite.add_head("topic", TEXTS, TOPIC, pooling="cls", layers="-2,-1", C=1.0, cache=False)
    bundle = suite.save(tmp_path_factory.mktemp("serve-onnx") / "suite")
    export_bundle(bundle, int8=True, exporter="torchscript")
    return bundle


@pytest.fixture(scope="module")
def onnx_server(onnx_suite):
    from test_serve import LIMITS, Server

    running = Server(onnx_suite, *LIMITS, "--max-wait-ms", "50", "--runtime", "onnx")
    yield running
    assert running.stop() == 0  # SIGTERM: a clean shutdown


@pytest.mark.slow
def test_serve_onnx_answers_as_pytorch(onnx_server, onnx_suite):
    import httpx

    from test_serve import NEW_TEXTS

    expected = MultiHeadClassifier.load(onnx_suite).predict_proba(NEW_TEXTS)
    body = onnx_server.post({"texts": NEW_TEXTS}).json()
    assert set(body["results"]) == {"sentiment", "topic"}
    for name, proba in expected.items():
        result = body["results"][name]
        np.testing.assert_allclose(result["probabilities"], proba, atol=ATOL)
        assert result["predictions"] == [result["labels"][j] for j in proba.argmax(axis=1)]
    assert body["results"]["topic"]["labels"] == [0, 1, 2]  # int labels stay ints
    heads = httpx.get(f"{onnx_server.url}/heads").json()
    assert heads["runtime"] == "onnx"
    assert [(h["name"], h["pooling"], h["layers"]) for h in heads["heads"]] == [
        ("sentiment", "mean", [2]),
        ("topic", "cls", [1, 2]),
    ]
    assert list(onnx_server.post({"texts": NEW_TEXTS[:2], "heads": ["topic"]}).json()["results"]) == ["topic"]


@pytest.mark.slow
def test_serve_onnx_limits_and_malformed_requests(onnx_server):
    import httpx

    from test_serve import MALFORMED

    for case, body, headers, status, words in MALFORMED:
        if isinstance(body, bytes):
            response = httpx.post(f"{onnx_server.url}/predict", content=body, headers=headers, timeout=30)
        else:
            response = onnx_server.post(body)
        assert response.status_code == status, (case, response.text)
        assert words is None or words in response.text, case
    assert httpx.get(f"{onnx_server.url}/health").json()["status"] == "ok"


@pytest.mark.slow
def test_serve_onnx_batches_concurrent_requests(onnx_server, onnx_suite):
    import concurrent.futures

    import httpx

    from test_serve import TEXTS

    expected = MultiHeadClassifier.load(onnx_suite).predict_proba(TEXTS[:16])
    before = httpx.get(f"{onnx_server.url}/health").json()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: onnx_server.post({"texts": [TEXTS[i]]}), range(16)))
    after = httpx.get(f"{onnx_server.url}/health").json()
    for i, response in enumerate(responses):
        assert response.status_code == 200
        np.testing.assert_allclose(
            response.json()["results"]["sentiment"]["probabilities"][0], expected["sentiment"][i], atol=ATOL
        )
    assert after["texts"] - before["texts"] == 16
    assert after["batches"] - before["batches"] < 16


@pytest.mark.slow
def test_serve_onnx_int8(onnx_suite):
    import httpx

    from test_serve import NEW_TEXTS, Server

    server = Server(onnx_suite, "--runtime", "onnx", "--precision", "int8")
    try:
        assert httpx.get(f"{server.url}/heads").json()["runtime"] == "onnx-int8"
        body = server.post({"texts": NEW_TEXTS}).json()
        expected = MultiHeadClassifier.load(onnx_suite, runtime="onnx", precision="int8").predict_proba(NEW_TEXTS)
        for name, proba in expected.items():
            np.testing.assert_allclose(body["results"][name]["probabilities"], proba, atol=1e-6)
    finally:
        assert server.stop() == 0
