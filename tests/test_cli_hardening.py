"""Every writing command guards its output, checks --device, and answers bad input before loading a model."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import sentiment_task_fixed, snapshot
from unfreeze.cli import app

runner = CliRunner()


def one_line_error(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def data(tmp_path) -> Path:
    texts, labels = sentiment_task_fixed(24, 0)
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "\n".join(f"{t},{'pos' if y else 'neg'}" for t, y in zip(texts, labels)) + "\n")
    return path


@pytest.fixture
def bundle(data, tiny_model_dir, tmp_path) -> Path:
    result = runner.invoke(
        app, ["fit", str(data), "--model", tiny_model_dir("bert"), "--C", "1", "-o", str(tmp_path / "bundle")]
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "bundle"


def test_fit_replaces_its_own_bundle_only_with_overwrite(bundle, data, tiny_model_dir):
    before = snapshot(bundle)
    again = ["fit", str(data), "--model", tiny_model_dir("bert"), "--C", "0.5", "-o", str(bundle)]
    one_line_error(runner.invoke(app, again), "--overwrite")
    assert snapshot(bundle) == before
    assert runner.invoke(app, [*again, "--overwrite"]).exit_code == 0
    assert json.loads((bundle / "unfreeze.json").read_text())["strategy"]["params"]["C"] == 0.5


@pytest.mark.parametrize("where", ["file", "foreign-folder", "dot"])
def test_fit_never_writes_over_what_it_did_not_write(where, data, tiny_model_dir, tmp_path, monkeypatch):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    (tmp_path / "f.txt").write_text("also mine")
    target = {"file": tmp_path / "f.txt", "foreign-folder": notes, "dot": Path(".")}[where]
    monkeypatch.chdir(notes)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["fit", str(data), "--model", tiny_model_dir("bert"), "-o", str(target), "--overwrite"])
    one_line_error(result)
    assert snapshot(tmp_path) == before


def test_predict_guards_its_csv_and_never_replaces_its_input(bundle, data, tmp_path):
    out = tmp_path / "predictions.csv"
    out.write_text("an earlier file\n")
    before = out.read_bytes()
    one_line_error(runner.invoke(app, ["predict", str(bundle), str(data), "-o", str(out)]), "--overwrite")
    assert out.read_bytes() == before
    result = runner.invoke(app, ["predict", str(bundle), str(data), "-o", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("text,label,prediction,proba_neg,proba_pos")
    data_before = data.read_bytes()
    one_line_error(runner.invoke(app, ["predict", str(bundle), str(data), "-o", str(data), "--overwrite"]))
    assert data.read_bytes() == data_before


def test_sweep_to_an_existing_file_and_report_of_a_damaged_store(data, tiny_model_dir, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("keep")
    one_line_error(
        runner.invoke(app, ["sweep", str(data), "--model", tiny_model_dir("bert"), "--sizes", "8", "-o", str(target)])
    )
    assert target.read_text() == "keep"
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "sweep",
            str(data),
            "--model",
            tiny_model_dir("bert"),
            "--strategies",
            "features",
            "--sizes",
            "8",
            "-o",
            str(run),
        ],
    )
    assert result.exit_code == 0, result.output
    with open(run / "results.jsonl", "ab") as handle:
        handle.write(b"{}\nnull\n\x00\xffgarbage\n")
    reported = runner.invoke(app, ["report", str(run)])
    assert reported.exit_code == 0, reported.output
    assert "warning:" in reported.stderr and "3" in reported.stderr
    assert "features" in reported.stdout


@pytest.mark.parametrize("device", ["gpu", "banana", "cuda:7"])
def test_a_bad_device_is_one_line_naming_the_devices_here(device, data, tiny_model_dir, tmp_path):
    result = runner.invoke(
        app, ["fit", str(data), "--model", tiny_model_dir("bert"), "--device", device, "-o", str(tmp_path / "b")]
    )
    one_line_error(result, "Devices here: cpu")
    assert not (tmp_path / "b").exists()


def test_flags_show_no_type_in_help():
    result = runner.invoke(app, ["fit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert not any("--no-cache" in line and "<bool>" in line for line in result.output.splitlines())
    assert not any("--overwrite" in line and "<bool>" in line for line in result.output.splitlines())


@pytest.mark.slow  # a real process, as make demo runs it
def test_a_sweep_without_a_terminal_prints_a_line_per_cell(data, tiny_model_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "unfreeze",
            "sweep",
            str(data),
            "--model",
            tiny_model_dir("bert"),
            "--strategies",
            "features",
            "--sizes",
            "8,16",
            "-o",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("sweep: cell")]
    assert len(lines) == 2 and lines[0].startswith("sweep: cell 1/2 done: features, n=8, seed=0, test accuracy")


@pytest.mark.slow
def test_serve_says_a_busy_port_before_loading_and_refuses_empty_texts(bundle, tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "unfreeze", "serve", str(bundle), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.close()
    assert result.returncode == 2, result.stderr
    assert f"Cannot listen on 127.0.0.1:{port}: another program is using that port" in result.stderr
    assert "serving" not in result.stdout and "Traceback" not in result.stderr
    assert time.perf_counter() - start < 60


def test_the_service_refuses_empty_and_blank_texts_as_the_command_line_does(bundle):
    from fastapi.testclient import TestClient

    from unfreeze.inference.bundle_predictor import BundlePredictor
    from unfreeze.serve.app import create_app

    with TestClient(create_app(BundlePredictor(bundle, device="cpu"))) as client:
        for texts in ([""], ["ok", "   "], ["\n\t"]):
            response = client.post("/predict", json={"texts": texts})
            assert response.status_code == 422, texts
        assert client.post("/predict", json={"texts": ["a good film"]}).status_code == 200
