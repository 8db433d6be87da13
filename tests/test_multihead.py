"""Multi-head bundles: heads agree with single-head bundles, one forward pass serves them all,
and adding or removing a head never leaves a bundle that fails to load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import unfreeze.inference.multihead as multihead_module
from unfreeze import Classifier, Features, MultiHeadClassifier, UnfreezeError
from unfreeze.cli import app
from unfreeze.inference.multihead import add_heads, remove_head

TEXTS = [
    f"{w} film number {i} with {'good' if i % 2 else 'bad'} acting and {'sport' if i % 3 else 'news'}"
    for i, w in enumerate(["a", "the", "one", "this", "that", "some", "my", "our", "your", "his"] * 3)
]
SENTIMENT = ["pos" if i % 2 else "neg" for i in range(len(TEXTS))]
TOPIC = [i % 3 for i in range(len(TEXTS))]
LENGTH = ["long" if len(t) > 44 else "short" for t in TEXTS]
NEW_TEXTS = [
    "a good film about sport",
    "bad news",
    "something else entirely, and much longer than the others",
    "good good good",
    "x",
]
# (name, labels, pooling, layers): every pooling, a lower layer, the embeddings, a concatenation
HEAD_SPECS = [
    ("sentiment", SENTIMENT, "mean", "-1"),
    ("topic", TOPIC, "cls", "-2,-1"),
    ("length", LENGTH, "max", "0"),
    ("again", SENTIMENT, "last", "1"),
]
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def single(model_dir: str, labels, pooling: str, layers: str) -> Classifier:
    return Classifier(
        model=model_dir,
        strategy=Features(C=1.0),
        pooling=pooling,
        layers=layers,
        progress=False,
        cache=False,
        device="cpu",
        batch_size=4,
    ).fit(TEXTS, labels)


def suite_of(model_dir: str, specs=HEAD_SPECS) -> MultiHeadClassifier:
    suite = MultiHeadClassifier(model_dir, batch_size=4, device="cpu", progress=False)
    for name, labels, pooling, layers in specs:
        suite.add_head(name, TEXTS, labels, pooling=pooling, layers=layers, C=1.0, cache=False)
    return suite


def heads_on_disk(path: Path) -> list[str]:
    return list(MultiHeadClassifier.load(path).heads)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_heads_agree_with_single_head_bundles(tiny_model_dir, tmp_path, family):
    model_dir = tiny_model_dir(family)
    suite_of(model_dir).save(tmp_path / "suite")
    loaded = MultiHeadClassifier.load(tmp_path / "suite")
    together = loaded.predict_proba(NEW_TEXTS)
    assert list(together) == [name for name, *_ in HEAD_SPECS]
    for name, labels, pooling, layers in HEAD_SPECS:
        single(model_dir, labels, pooling, layers).save(tmp_path / name)
        alone = Classifier.load(tmp_path / name)
        np.testing.assert_allclose(together[name], alone.predict_proba(NEW_TEXTS), atol=1e-6)
        assert loaded.predict(NEW_TEXTS)[name].tolist() == alone.predict(NEW_TEXTS).tolist()
        assert loaded.heads[name].classes.tolist() == sorted(set(labels))
    # the heads really differ: otherwise agreement would prove little
    assert not np.allclose(together["sentiment"], together["again"])


def test_one_forward_pass_per_batch_for_all_heads(tiny_model_dir):
    suite = suite_of(tiny_model_dir("bert"))
    calls = []
    handle = suite.backbone.model.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        suite.predict_proba(NEW_TEXTS * 2)  # 10 texts, batch_size 4
        assert len(calls) == 3
        calls.clear()
        for name in suite.heads:  # the same heads one at a time: one pass each
            suite.predict_proba(NEW_TEXTS * 2, heads=[name])
        assert len(calls) == 3 * len(suite.heads)
    finally:
        handle.remove()


def test_heads_subset_and_unknown_head(tiny_model_dir):
    suite = suite_of(tiny_model_dir("bert"), HEAD_SPECS[:2])
    assert list(suite.predict_proba(NEW_TEXTS, heads=["topic"])) == ["topic"]
    with pytest.raises(UnfreezeError, match=r"Unknown head 'nope'; this bundle has: sentiment, topic"):
        suite.predict(NEW_TEXTS, heads=["nope"])
    with pytest.raises(UnfreezeError, match="already has a head named 'topic'"):
        suite.add_head("topic", TEXTS, TOPIC)


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "x" * 65, "with space", "dot."])
def test_head_names_are_plain(tiny_model_dir, name):
    suite = MultiHeadClassifier(tiny_model_dir("bert"), progress=False)
    with pytest.raises(UnfreezeError, match="is not allowed"):
        suite.add_head(name, TEXTS, SENTIMENT)


def test_bundle_files_are_json_and_safetensors(tiny_model_dir, tmp_path):
    suite_of(tiny_model_dir("bert"), HEAD_SPECS[:2]).save(tmp_path / "suite")
    config = json.loads((tmp_path / "suite" / "unfreeze.json").read_text())
    assert config["kind"] == "multihead" and set(config["heads"]) == {"sentiment", "topic"}
    files = sorted(p.relative_to(tmp_path / "suite").as_posix() for p in (tmp_path / "suite").rglob("*") if p.is_file())
    assert files[-1] == "unfreeze.json" and len(files) == 3
    assert all(f.startswith("heads/") and f.endswith(".safetensors") for f in files[:-1])
    for f in files:
        assert not (tmp_path / "suite" / f).read_bytes().startswith(PICKLE_MAGIC)


def test_single_head_features_bundle_becomes_default_head(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("bert")
    original = single(model_dir, SENTIMENT, "mean", "-1")
    original.save(tmp_path / "b")
    expected = original.predict_proba(NEW_TEXTS)
    suite = MultiHeadClassifier(model_dir, batch_size=4, progress=False)
    suite.add_head("topic", TEXTS, TOPIC, C=1.0, cache=False)
    add_heads(tmp_path / "b", suite)
    assert heads_on_disk(tmp_path / "b") == ["default", "topic"]
    assert not (tmp_path / "b" / "head.safetensors").exists()  # the old file went with the conversion
    np.testing.assert_allclose(
        MultiHeadClassifier.load(tmp_path / "b").predict_proba(NEW_TEXTS)["default"], expected, atol=1e-6
    )
    with pytest.raises(UnfreezeError, match="holds 2 heads"):
        Classifier.load(tmp_path / "b")
    np.testing.assert_allclose(
        Classifier.load(tmp_path / "b", head="default").predict_proba(NEW_TEXTS), expected, atol=1e-6
    )


def test_fine_tuned_bundle_takes_no_heads(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("bert")
    Classifier(
        model=model_dir, strategy="freeze", k=1, epochs=1, progress=False, device="cpu", validation_fraction=0.0
    ).fit(TEXTS, SENTIMENT).save(tmp_path / "tuned")
    suite = MultiHeadClassifier(model_dir, progress=False)
    suite.add_head("topic", TEXTS, TOPIC, C=1.0, cache=False)
    with pytest.raises(UnfreezeError, match=r"strategy 'freeze'.*no other head can share it"):
        add_heads(tmp_path / "tuned", suite)


def test_bundle_on_another_model_is_refused(tiny_model_dir, tmp_path):
    suite_of(tiny_model_dir("bert"), HEAD_SPECS[:1]).save(tmp_path / "suite")
    other = suite_of(tiny_model_dir("bert", seed=1), HEAD_SPECS[1:2])
    with pytest.raises(UnfreezeError, match="another model"):
        add_heads(tmp_path / "suite", other)
    assert heads_on_disk(tmp_path / "suite") == ["sentiment"]


# -- atomic changes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("failing_step", [0, 1, 2])
def test_a_failed_add_leaves_the_old_heads(tiny_model_dir, tmp_path, monkeypatch, failing_step):
    """A failure at each durable write (the new head files, then the config switch) leaves a
    bundle that loads with exactly its old heads and predictions."""
    model_dir = tiny_model_dir("bert")
    suite_of(model_dir, HEAD_SPECS[:1]).save(tmp_path / "suite")
    before = MultiHeadClassifier.load(tmp_path / "suite").predict_proba(NEW_TEXTS)
    newcomers = suite_of(model_dir, HEAD_SPECS[1:3])  # two head files, then unfreeze.json
    real_fsync, calls = multihead_module._fsync, []

    def failing_fsync(file):
        calls.append(file)
        if len(calls) - 1 == failing_step:
            raise OSError("disk full")
        real_fsync(file)

    monkeypatch.setattr(multihead_module, "_fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        add_heads(tmp_path / "suite", newcomers)
    monkeypatch.undo()
    after = MultiHeadClassifier.load(tmp_path / "suite")
    assert list(after.heads) == ["sentiment"]
    np.testing.assert_allclose(after.predict_proba(NEW_TEXTS)["sentiment"], before["sentiment"])
    leftovers = [p.name for p in (tmp_path / "suite").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_failed_remove_keeps_the_head(tiny_model_dir, tmp_path, monkeypatch):
    suite_of(tiny_model_dir("bert"), HEAD_SPECS[:2]).save(tmp_path / "suite")

    def failing_fsync(file):
        raise OSError("disk full")

    monkeypatch.setattr(multihead_module, "_fsync", failing_fsync)
    with pytest.raises(OSError):
        remove_head(tmp_path / "suite", "topic")
    monkeypatch.undo()
    assert heads_on_disk(tmp_path / "suite") == ["sentiment", "topic"]
    assert remove_head(tmp_path / "suite", "topic").heads.keys() == {"sentiment"}
    assert heads_on_disk(tmp_path / "suite") == ["sentiment"]
    assert len(list((tmp_path / "suite" / "heads").iterdir())) == 1  # the removed head's file is gone


def _heads_add(bundle: Path, name: str, data: Path, model_dir: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "unfreeze",
        "heads",
        "add",
        str(bundle),
        name,
        str(data),
        "--model",
        model_dir,
        "--C",
        "1",
        "--no-cache",
        "--batch-size",
        "8",
    ]


def _write_csv(path: Path, n: int) -> Path:
    rows = [f"{TEXTS[i % len(TEXTS)]} copy {i},{SENTIMENT[i % len(TEXTS)]}" for i in range(n)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_killed_head_adds_never_break_the_bundle(tiny_model_dir, tmp_path):
    """SIGKILL `unfreeze heads add` at several moments: the bundle always loads, with the old
    heads or with the new one, and a later add still works."""
    model_dir = tiny_model_dir("bert")
    suite_of(model_dir, HEAD_SPECS[:1]).save(tmp_path / "suite")
    data = _write_csv(tmp_path / "train.csv", 400)
    env = {**os.environ, "PYTHONPATH": str(Path(multihead_module.__file__).parents[2])}
    # the first run, uninterrupted, says how long an add takes; the kills land across that span
    start = time.perf_counter()
    subprocess.run(_heads_add(tmp_path / "suite", "timed", data, model_dir), env=env, check=True, capture_output=True)
    span = time.perf_counter() - start
    remove_head(tmp_path / "suite", "timed")
    for i, fraction in enumerate([0.5, 0.8, 0.9, 0.97]):
        proc = subprocess.Popen(
            _heads_add(tmp_path / "suite", f"new{i}", data, model_dir),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(span * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        heads = heads_on_disk(tmp_path / "suite")
        assert heads[0] == "sentiment" and set(heads[1:]) <= {f"new{j}" for j in range(i + 1)}, heads
    subprocess.run(_heads_add(tmp_path / "suite", "last", data, model_dir), env=env, check=True, capture_output=True)
    assert heads_on_disk(tmp_path / "suite")[-1] == "last"


@pytest.mark.slow
def test_concurrent_adds_keep_both_heads(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("bert")
    data = _write_csv(tmp_path / "train.csv", 60)
    env = {**os.environ, "PYTHONPATH": str(Path(multihead_module.__file__).parents[2])}
    procs = [
        subprocess.Popen(
            _heads_add(tmp_path / "suite", name, data, model_dir),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("left", "right")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    assert sorted(heads_on_disk(tmp_path / "suite")) == ["left", "right"]


# -- the `unfreeze heads` commands --------------------------------------------------------------------


def test_heads_commands(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("bert")
    runner = CliRunner()
    sentiment = _write_csv(tmp_path / "sentiment.csv", 40)
    topic = tmp_path / "topic.csv"
    topic.write_text("text,label\n" + "\n".join(f"{t},{c}" for t, c in zip(TEXTS, TOPIC)) + "\n")
    bundle = tmp_path / "suite"

    def run(*args):
        return runner.invoke(app, [str(a) for a in args])

    result = run("heads", "add", bundle, "sentiment", sentiment, "--model", model_dir, "--C", "1")
    assert result.exit_code == 0, result.output
    assert "now has 1 head(s): sentiment" in result.output
    result = run("heads", "add", bundle, "topic", topic, "--pooling", "cls", "--layers=-2,-1", "--test-size", "0.3")
    assert result.exit_code == 0, result.output
    splits = [line.split()[0] for line in result.output.splitlines()[2:]]  # the metrics table's rows
    assert splits == ["train", "test"], result.output
    listed = json.loads(run("heads", "list", bundle, "--json").output)
    assert [(h["name"], h["pooling"], h["layers"]) for h in listed["heads"]] == [
        ("sentiment", "mean", [2]),
        ("topic", "cls", [1, 2]),
    ]
    assert listed["heads"][1]["test_accuracy"] is not None and listed["heads"][0]["test_accuracy"] is None

    again = run("heads", "add", bundle, "topic", topic)
    assert again.exit_code == 2 and "already has a head named 'topic'" in again.stderr
    wrong_model = run("heads", "add", bundle, "other", topic, "--model", tiny_model_dir("bert", seed=1))
    assert wrong_model.exit_code == 2 and "every head of a bundle shares one backbone" in wrong_model.stderr

    import pandas as pd

    inputs = tmp_path / "inputs.csv"
    pd.DataFrame({"text": NEW_TEXTS}).to_csv(inputs, index=False)
    result = run("predict", bundle, inputs, "-o", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output

    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == [
        "text",
        "sentiment.prediction",
        "sentiment.proba_neg",
        "sentiment.proba_pos",
        "topic.prediction",
        "topic.proba_0",
        "topic.proba_1",
        "topic.proba_2",
    ]
    expected = MultiHeadClassifier.load(bundle).predict_proba(NEW_TEXTS)
    np.testing.assert_allclose(
        out[["topic.proba_0", "topic.proba_1", "topic.proba_2"]].to_numpy(), expected["topic"], atol=1e-6
    )
    only = run("predict", bundle, inputs, "-o", tmp_path / "only.csv", "--head", "topic")
    assert only.exit_code == 0 and not any(c.startswith("sentiment") for c in pd.read_csv(tmp_path / "only.csv"))

    score = run("evaluate", bundle, topic, "--head", "topic", "--json")
    assert score.exit_code == 0, score.output
    topic_head = MultiHeadClassifier.load(bundle).as_classifier("topic")
    assert json.loads(score.output) == pytest.approx(topic_head.evaluate(TEXTS, TOPIC))
    ambiguous = run("evaluate", bundle, topic)
    assert ambiguous.exit_code == 2 and "holds 2 heads" in ambiguous.stderr

    unknown = run("heads", "remove", bundle, "nope")
    assert unknown.exit_code == 2 and "Unknown head 'nope'" in unknown.stderr
    result = run("heads", "remove", bundle, "sentiment")
    assert result.exit_code == 0 and "now has 1 head(s): topic" in result.output
    last = run("heads", "remove", bundle, "topic")
    assert last.exit_code == 2 and "only head" in last.stderr
    assert heads_on_disk(bundle) == ["topic"]
    bad_name = run("heads", "add", tmp_path / "fresh", "../up", sentiment, "--model", model_dir)
    assert bad_name.exit_code == 2 and "is not allowed" in bad_name.stderr
    assert not (tmp_path / "fresh").exists()


def test_replace_refits_a_head_and_list_shows_single_head_bundles(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("bert")
    runner = CliRunner()
    data = _write_csv(tmp_path / "train.csv", 40)
    bundle = tmp_path / "suite"
    assert runner.invoke(app, ["heads", "add", str(bundle), "h", str(data), "--model", model_dir]).exit_code == 0
    before = MultiHeadClassifier.load(bundle).heads["h"]
    result = runner.invoke(app, ["heads", "add", str(bundle), "h", str(data), "--pooling", "cls", "--replace"])
    assert result.exit_code == 0, result.output
    after = MultiHeadClassifier.load(bundle).heads["h"]
    assert (before.pooling, after.pooling) == ("mean", "cls")
    assert len(list((bundle / "heads").iterdir())) == 1  # the replaced head's file is gone

    single(model_dir, TOPIC, "max", "0").save(tmp_path / "single")
    listed = json.loads(runner.invoke(app, ["heads", "list", str(tmp_path / "single"), "--json"]).output)
    assert [(h["name"], h["pooling"], h["layers"], h["labels"]) for h in listed["heads"]] == [
        ("default", "max", [0], [0, 1, 2])
    ]
