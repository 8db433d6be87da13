"""Experiment tracking: --track mlflow and unfreeze track log a run folder's cells to a real local MLflow store,
read back with MlflowClient; exporting again logs nothing new; a missing extra or a bad value is one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import assert_user_error, sentiment_task_fixed
from unfreeze.cli import app

try:
    import mlflow
except ImportError:  # the extra is missing: only the tests that need no store run
    mlflow = None
needs_mlflow = pytest.mark.skipif(mlflow is None, reason="the mlflow extra (pip install 'unfreeze[mlflow]') is missing")


@pytest.fixture(autouse=True)
def _file_store(monkeypatch):
    # MLflow 3 refuses its file store unless allowed (unfreeze allows it for the stores it opens); the tests'
    # own clients read the same stores
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    texts, labels = sentiment_task_fixed(24, 0)
    path = tmp_path_factory.mktemp("tracking") / "train.csv"
    path.write_text("text,label\n" + "\n".join(f"{t},{'pos' if y else 'neg'}" for t, y in zip(texts, labels)) + "\n")
    return path


def sweep_args(data: Path, model: str, output: Path) -> list[str]:
    return [
        "sweep",
        str(data),
        "--model",
        model,
        "--strategies",
        "features,freeze",
        "--k",
        "0",
        "--sizes",
        "16",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "-o",
        str(output),
    ]


@pytest.fixture(scope="module")
def untracked(data, tiny_model_dir, tmp_path_factory) -> Path:
    """A two-cell sweep (features; freeze k=0, two epochs validated on 2 of the 16 examples) run without
    tracking."""
    from typer.testing import CliRunner

    run = tmp_path_factory.mktemp("untracked") / "run"
    result = CliRunner().invoke(app, sweep_args(data, tiny_model_dir("bert"), run))
    assert result.exit_code == 0, result.output
    return run


def store(uri: str):
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("unfreeze")
    runs = client.search_runs([experiment.experiment_id]) if experiment is not None else []
    return client, runs


def children_by_key(runs) -> dict[str, object]:
    return {r.data.tags["unfreeze.cell_key"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}


def assert_runs_of_the_folder(client, runs, run_dir: Path) -> None:
    """One parent run for the folder and one child per cell, holding the cell's row."""
    rows = {json.loads(line)["key"]: json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()}
    sweep = json.loads((run_dir / "sweep.json").read_text())
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 3
    parent = parents[0]
    assert parent.data.tags["unfreeze.kind"] == "sweep"
    assert parent.data.tags["unfreeze.data_fingerprint"] == sweep["data_fingerprint"]
    assert parent.data.params["strategies"] == "features,freeze" and parent.data.metrics["cells_done"] == 2
    assert {"report.html", "results.csv", "sweep.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = children_by_key(runs)
    assert set(children) == set(rows)
    for key, child in children.items():
        row = rows[key]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["unfreeze.data_fingerprint"] == sweep["data_fingerprint"]
        assert child.info.status == "FINISHED"
        assert child.data.params["strategy"] == row["cell"]["strategy"]
        assert child.data.params["n_train"] == "16" and child.data.params["seed"] == "0"
        for split in ("train", "test"):
            for metric, value in row[split].items():
                assert child.data.metrics[f"{split}_{metric}"] == pytest.approx(value)
        assert child.data.metrics["fit_seconds"] == pytest.approx(row["fit"]["seconds"])
        assert child.data.metrics["peak_memory_bytes"] == row["fit"]["peak_memory_bytes"]
        assert child.data.metrics["trainable_parameters"] == row["fit"]["trainable_parameters"]
    freeze = next(c for c in children.values() if c.data.params["strategy"] == "freeze")
    assert freeze.data.params["k"] == "0" and freeze.data.params["settings.epochs"] == "2"
    curve = rows[freeze.data.tags["unfreeze.cell_key"]]["fit"]["curve"]
    history = client.get_metric_history(freeze.info.run_id, "epoch_val_loss")
    assert [(m.step, m.value) for m in history] == [(e["epoch"], pytest.approx(e["val_loss"])) for e in curve]
    assert [m.step for m in client.get_metric_history(freeze.info.run_id, "epoch_train_loss")] == [1, 2]
    features = next(c for c in children.values() if c.data.params["strategy"] == "features")
    assert features.data.metrics["trainable_parameters"] == 0
    assert not client.get_metric_history(features.info.run_id, "epoch_val_loss")  # no epochs, no curve


@needs_mlflow
def test_a_tracked_sweep_logs_a_parent_run_and_a_child_per_cell(untracked, data, tiny_model_dir, tmp_path, runner):
    # the same sweep in a copy of its folder: it resumes (nothing to train) and, ending, logs the folder
    run = tmp_path / "run"
    shutil.copytree(untracked, run)
    uri = f"file:{tmp_path / 'mlruns'}"
    result = runner.invoke(
        app, [*sweep_args(data, tiny_model_dir("bert"), run), "--track", "mlflow", "--tracking-uri", uri]
    )
    assert result.exit_code == 0, result.output
    assert "mlflow: 2 cell runs logged, 0 replaced, 0 already there" in result.stdout
    assert_runs_of_the_folder(*store(uri), run)


@needs_mlflow
def test_track_exports_a_folder_once_and_a_rewritten_cell_replaces_its_run(untracked, tmp_path, runner, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(untracked, run)
    uri = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{uri}")  # the usual variable, when --tracking-uri is not given
    first = runner.invoke(app, ["track", str(run)])
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("mlflow: 2 cell runs logged, 0 replaced, 0 already there")
    client, runs = store(f"file:{uri}")
    assert_runs_of_the_folder(client, runs, run)
    ids = {r.info.run_id for r in runs}

    again = runner.invoke(app, ["track", str(run), "--tracking-uri", str(uri)])  # a plain path names the same store
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("mlflow: 0 cell runs logged, 0 replaced, 2 already there")
    assert {r.info.run_id for r in store(f"file:{uri}")[1]} == ids  # nothing new

    # a cell run again (a retried failure, say) appends a newer row: its run is replaced, the other stays
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    newer = {**rows[0], "finished": rows[0]["finished"] + 1.0, "test": {**rows[0]["test"], "accuracy": 0.125}}
    with open(run / "results.jsonl", "a") as handle:
        handle.write(json.dumps(newer) + "\n")
    third = runner.invoke(app, ["track", str(run)])
    assert third.stdout.startswith("mlflow: 0 cell runs logged, 1 replaced, 1 already there")
    runs = store(f"file:{uri}")[1]
    assert len(runs) == 3 and len({r.info.run_id for r in runs} - ids) == 1
    assert children_by_key(runs)[rows[0]["key"]].data.metrics["test_accuracy"] == 0.125


@needs_mlflow
def test_fit_track_logs_one_run_to_mlruns_here(data, tiny_model_dir, tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", str(data), "--model", tiny_model_dir("bert"), "--C", "1", "--test-size", "0.25", "-o", "bundle"]
    result = runner.invoke(app, [*args, "--track", "mlflow"])
    assert result.exit_code == 0, result.output
    client, runs = store(f"file:{tmp_path / 'mlruns'}")  # the default store: ./mlruns
    assert len(runs) == 1
    logged = runs[0]
    bundle = json.loads((tmp_path / "bundle" / "unfreeze.json").read_text())
    assert logged.data.params["strategy"] == "features" and logged.data.params["C"] == "1.0"
    assert logged.data.params["n_train"] == "18" and logged.data.params["model"] == tiny_model_dir("bert")
    for split in ("train", "test"):
        for metric, value in bundle["metrics"][split].items():
            assert logged.data.metrics[f"{split}_{metric}"] == pytest.approx(value)
    assert logged.data.metrics["trainable_parameters"] == 0
    assert logged.data.tags["unfreeze.kind"] == "fit"
    assert [a.path for a in client.list_artifacts(logged.info.run_id)] == ["unfreeze.json"]
    assert f"mlflow: run {logged.info.run_id} logged" in result.stdout


def test_a_missing_extra_or_a_bad_value_is_one_line_and_writes_nothing(data, tmp_path, runner, monkeypatch):
    run = tmp_path / "run"
    bad = runner.invoke(app, ["sweep", str(data), "--sizes", "8", "-o", str(run), "--track", "wandb"])
    assert_user_error(bad, "--track", "Trackers: mlflow")
    alone = runner.invoke(app, ["sweep", str(data), "--sizes", "8", "-o", str(run), "--tracking-uri", "x"])
    assert_user_error(alone, "--tracking-uri goes with --track mlflow")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError, as without the extra
    for command in (["sweep", str(data), "--sizes", "8", "-o", str(run)], ["fit", str(data), "-o", str(run)]):
        missing = runner.invoke(app, [*command, "--track", "mlflow"])
        line = assert_user_error(missing, "--track mlflow needs MLflow: pip install 'unfreeze[mlflow]'")
        assert line == "error: --track mlflow needs MLflow: pip install 'unfreeze[mlflow]'"
    assert_user_error(runner.invoke(app, ["track", str(tmp_path)]), "needs MLflow")
    assert not run.exists() and not (tmp_path / "mlruns").exists()


@needs_mlflow
def test_track_refuses_a_folder_that_is_no_run_or_a_store_it_cannot_use_in_one_line(untracked, tmp_path, runner):
    (tmp_path / "notes").mkdir()
    assert_user_error(runner.invoke(app, ["track", str(tmp_path / "notes")]), "sweep, advise or study")
    assert not (tmp_path / "mlruns").exists()
    refused = runner.invoke(app, ["track", str(untracked), "--tracking-uri", "nosuch://store"])
    assert_user_error(refused, f"MLflow could not log {untracked} to nosuch://store: ")


@needs_mlflow
def test_track_exports_a_study_folder_with_a_child_per_arm_and_cell(tmp_path, runner):
    study = Path(__file__).resolve().parents[1] / "docs/findings/features-vs-finetune/movie-snippets--minilm-l6"
    uri = f"file:{tmp_path / 'mlruns'}"
    result = runner.invoke(app, ["track", str(study), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    client, runs = store(uri)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    arms = {arm.name: json.loads((arm / "sweep.json").read_text()) for arm in (study / "arms").iterdir()}
    assert parent.data.tags["unfreeze.kind"] == "study" and parent.data.params["name"] == "features-vs-finetune"
    assert parent.data.tags["unfreeze.data_fingerprint"] == arms["full"]["data_fingerprint"]
    assert {"FINDINGS.md", "study.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    for name in arms:
        rows = [json.loads(line) for line in (study / "arms" / name / "results.jsonl").read_text().splitlines()]
        logged = {r.data.tags["unfreeze.cell_key"]: r for r in children if r.data.tags["unfreeze.arm"] == name}
        assert set(logged) == {row["key"] for row in rows}
        for row in rows:
            assert logged[row["key"]].data.metrics["test_accuracy"] == pytest.approx(row["test"]["accuracy"])
    assert len(children) == sum(len((study / "arms" / n / "results.jsonl").read_text().splitlines()) for n in arms)


@needs_mlflow
def test_track_exports_an_advise_folder_s_cells_not_its_decision_rows(untracked, tmp_path, runner):
    # an advise folder as the advisor leaves it: advise.json, and its decisions among the cells' rows
    run = tmp_path / "advised"
    run.mkdir()
    sweep = json.loads((untracked / "sweep.json").read_text())
    meta = {"run_kind": "advise", "spec": {"data": "train.csv"}, "data_fingerprint": sweep["data_fingerprint"]}
    (run / "advise.json").write_text(json.dumps(meta))
    rows = (untracked / "results.jsonl").read_text().splitlines()
    decision = json.dumps({"kind": "advise-rung", "key": "advise-rung:0", "kept": ["freeze k=0"]})
    (run / "results.jsonl").write_text("\n".join([rows[0], decision, *rows[1:]]) + "\n")
    (run / "report.html").write_text("<html></html>")
    uri = f"file:{tmp_path / 'mlruns'}"
    result = runner.invoke(app, ["track", str(run), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    client, runs = store(uri)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["unfreeze.kind"] == "advise" and parent.data.params["data"] == "train.csv"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"advise.json", "report.html"}
    assert set(children_by_key(runs)) == {json.loads(row)["key"] for row in rows}


def test_a_failed_cell_is_a_failed_run_with_its_error_and_no_scores():
    from unfreeze.tracking.runs import cell_run

    row = {
        "key": "abc",
        "status": "failed",
        "error": "ValueError: The 'm' parameter of reinit must be an int in [1, 2]. Got 9.",
        "cell": {"strategy": "reinit", "m": 9, "n_train": 32, "seed": 1, "label": "reinit m=9"},
        "settings": {"epochs": 2, "search": {"rates": [1e-4, 3e-4]}},
    }
    run = cell_run(row, {"unfreeze.arm": "a"})
    assert run.failed and run.name == "reinit m=9 n=32 seed=1" and not run.metrics and not run.steps
    assert run.params == {
        "strategy": "reinit",
        "m": "9",
        "n_train": "32",
        "seed": "1",
        "settings.epochs": "2",
        "settings.search.rates": "0.0001,0.0003",
    }
    assert run.tags["unfreeze.error"] == row["error"] and run.tags["unfreeze.status"] == "failed"
    assert run.tags["unfreeze.cell_key"] == "abc" and run.tags["unfreeze.arm"] == "a"
