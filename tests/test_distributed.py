"""Data-parallel training of one fit over 2 CPU processes (gloo): `torchrun` and `accelerate launch`.

One bundle, written by rank 0; every example trained on once per epoch across the ranks;
and, with dropout off, the same model as one process trains (the gradient of a batch
split over ranks is the one-process gradient of that batch).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import sentiment_task_varied as sentiment_task
from unfreeze import Classifier

pytestmark = pytest.mark.slow  # subprocesses and clusters: left out of `make test-fast`

RANKS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(args: list[str], launcher: str = "torchrun") -> subprocess.CompletedProcess:
    if launcher == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(RANKS)]
    else:  # accelerate's multi-process launcher; with --device cpu the ranks talk over gloo
        head = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(RANKS),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(_free_port()),
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(head + args, capture_output=True, text=True, timeout=600, env=env)


def _write_csv(path: Path, texts: list[str], labels: list) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return path


def test_torchrun_fits_one_cell_on_two_processes_and_rank_0_writes_the_one_bundle(tiny_model_dir, tmp_path):
    train = _write_csv(tmp_path / "train.csv", *sentiment_task(48, seed=3))
    test = _write_csv(tmp_path / "test.csv", *sentiment_task(40, seed=4))
    runs = tmp_path / "runs"
    out = runs / "ddp"
    done = _launch(
        [
            "-m",
            "unfreeze",
            "fit",
            str(train),
            "--test",
            str(test),
            "--model",
            tiny_model_dir("bert"),
            "--strategy",
            "freeze",
            "--k",
            "0",
            "--epochs",
            "8",
            "--lr",
            "3e-3",
            "--batch-size",
            "8",
            "--validation-fraction",
            "0",
            "--device",
            "cpu",
            "-o",
            str(out),
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 0 alone prints and writes: one report, one bundle, nothing else left in the folder
    assert done.stdout.count("bundle: ") == 1 and done.stdout.count("trained freeze") == 1, done.stdout
    assert [p.name for p in runs.iterdir()] == ["ddp"]
    assert sorted(p.name for p in out.iterdir()) == ["trained.safetensors", "unfreeze.json"]
    saved = json.loads((out / "unfreeze.json").read_text())
    record = saved["fit_record"]
    assert record["world_size"] == RANKS
    # every example once per epoch, summed over what each rank actually trained on
    assert [(h["examples"], h["distinct_examples"]) for h in record["history"]] == [(48, 48)] * 8
    assert record["examples_seen"] == 8 * 48 and record["steps"] == 8 * 6
    assert len(record["epoch_seconds"]) == 8 and all(s > 0 for s in record["epoch_seconds"])
    metrics = saved["metrics"]
    assert metrics["train"]["accuracy"] >= 0.85  # it learned
    assert metrics["test"]["accuracy"] > 0.5
    # the test metrics came from sharded, gathered predictions: one process scoring the bundle agrees
    test_texts, test_labels = sentiment_task(40, seed=4)
    reloaded = Classifier.load(out, device="cpu")
    assert reloaded.evaluate(test_texts, test_labels) == metrics["test"]


SAME_MODEL_SCRIPT = textwrap.dedent("""
    import json, sys
    import unfreeze.training.model as model_module
    from unfreeze import Classifier
    from unfreeze.training import distributed

    # dropout draws different masks on a rank's share of a batch than on the whole batch: off, the
    # two runs must agree
    original = model_module.TextClassificationModel.__init__
    model_module.TextClassificationModel.__init__ = lambda self, *a, **kw: original(self, *a, **{**kw, "dropout": 0.0})
    args = json.loads(sys.argv[1])
    clf = Classifier(model=args["model"], strategy="freeze", k=1, epochs=3, learning_rate=3e-3, batch_size=8,
                     validation_fraction=0.2, class_weight="balanced", patience=None, device="cpu", progress=False,
                     cache=False)
    clf.fit(args["X"], args["y"])
    proba = clf.predict_proba(args["X_test"])
    if distributed.is_main_process():
        with open(args["out"], "w") as handle:
            json.dump({"proba": proba.tolist(), "record": clf.fit_record_}, handle)
    distributed.finish()
""")


def test_two_processes_train_the_model_one_process_trains(tiny_model_dir, tmp_path):
    """Uneven shares (a last batch of 5, 9 validation rows), class weights and the frozen-prefix cache."""
    folder = Path(tiny_model_dir("bert"))
    no_dropout = tmp_path / "model"
    no_dropout.mkdir()
    for item in folder.iterdir():
        (no_dropout / item.name).write_bytes(item.read_bytes())
    config = json.loads((no_dropout / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (no_dropout / "config.json").write_text(json.dumps(config))
    texts, labels = sentiment_task(60, seed=5)
    keep = [i for i, y in enumerate(labels) if y == 1][:29] + [i for i, y in enumerate(labels) if y == 0][:17]
    args = {
        "model": str(no_dropout),
        "X": [texts[i] for i in keep],
        "y": [labels[i] for i in keep],
        "X_test": sentiment_task(20, seed=6)[0],
    }
    script = tmp_path / "fit.py"
    script.write_text(SAME_MODEL_SCRIPT)

    results = {}
    for name in ("one", "two"):
        run_args = {**args, "out": str(tmp_path / f"{name}.json")}
        if name == "one":
            done = subprocess.run(
                [sys.executable, str(script), json.dumps(run_args)],
                capture_output=True,
                text=True,
                timeout=600,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        else:
            done = _launch([str(script), json.dumps(run_args)], launcher="accelerate")
        assert done.returncode == 0, done.stderr[-3000:]
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())

    one, two = results["one"]["record"], results["two"]["record"]
    assert (one["world_size"], two["world_size"]) == (1, RANKS)
    assert one["steps"] == two["steps"] == 3 * 5  # 37 training rows: batches of 8, 8, 8, 8, 5
    assert [h["examples"] for h in two["history"]] == [h["distinct_examples"] for h in two["history"]] == [37] * 3
    for a, b in zip(one["history"], two["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a["val_accuracy"] == b["val_accuracy"]
    np.testing.assert_allclose(results["two"]["proba"], results["one"]["proba"], atol=1e-5)
