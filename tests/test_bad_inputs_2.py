"""Bad inputs, second pass (issue 27): a diverging fit, files that are not files, characters that are
no text, csv's internals, huge headers, labels spelled like nothing, one-class test sets, a bad
--host, study files that divide by zero or nest too deep.

Each case: exit 2 with one line (or, where the input is legitimate, the right result), nothing of
the user's changed (checksums before and after), no traceback.
"""

from __future__ import annotations

import json
import os
import threading

import pytest

from conftest import snapshot
from test_bad_inputs import assert_cli_error, csv_text, one_line
from unfreeze.data import load_data
from unfreeze.data.readers import read_inputs, read_table
from unfreeze.errors import TrainingDivergedError, UnfreezeError

ROWS = [(f"text number {i} is {'good' if i % 2 else 'bad'}", i % 2) for i in range(40)]


def strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, as strict readers do."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def user(tmp_path):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "good.csv").write_text(csv_text(ROWS))
    (folder / "notes.txt").write_text("mine")
    return folder


def fit_args(tiny_model_dir, data, out, *more):
    return ["fit", str(data), "--model", tiny_model_dir("bert"), "--device", "cpu", "--no-cache", *more, "-o", str(out)]


# -- 1. a loss that becomes NaN stops the fit; JSON written is strict ----------------------------------


def test_a_diverging_fit_stops_in_one_line_naming_the_rate(runner, tmp_path, user, tiny_model_dir):
    from unfreeze.cli import app

    before = snapshot(tmp_path)
    result = runner.invoke(
        app, fit_args(tiny_model_dir, user / "good.csv", user / "bundle", "--strategy", "full", "--lr", "1e9")
    )
    assert_cli_error(result, "loss became NaN", "epoch 1", "learning rate 1e+09", "--learning-rate")
    assert snapshot(tmp_path) == before  # no bundle


def test_a_diverging_rate_is_a_lost_trial_of_a_search(runner, tmp_path, user, tiny_model_dir):
    from unfreeze.cli import app

    result = runner.invoke(
        app,
        fit_args(
            tiny_model_dir,
            user / "good.csv",
            user / "bundle",
            "--strategy",
            "full",
            "--lr",
            "1e9,1e-3",
            "--epochs",
            "1",
        ),
    )
    assert result.exit_code == 0, result.output
    assert "1e+09 (diverged)" in result.output
    config = strict_loads((user / "bundle" / "unfreeze.json").read_text())
    record = config["fit_record"]
    assert record["learning_rate"] == 1e-3
    assert [("diverged" in t) for t in record["lr_search"]] == [True, False]


def test_the_library_raises_the_divergence_as_an_unfreeze_error(tiny_model_dir):
    from unfreeze import Classifier

    texts, labels = zip(*ROWS)
    clf = Classifier(
        model=tiny_model_dir("bert"), strategy="full", learning_rate=1e9, device="cpu", cache=False, progress=False
    )
    with pytest.raises(TrainingDivergedError) as info:
        clf.fit(list(texts), list(labels))
    assert isinstance(info.value, UnfreezeError)
    one_line(str(info.value), "NaN", "1e+09")


def test_strict_json_writes_null_for_what_is_not_finite(tmp_path):
    import numpy as np

    from unfreeze.inference.bundle import write_bundle
    from unfreeze.storage import strict_json

    value = {"a": float("nan"), "b": [float("inf"), 1.5, np.float32("nan"), np.float64(2.0)], "c": (-float("inf"),)}
    assert strict_loads(strict_json.dumps(value)) == {"a": None, "b": [None, 1.5, None, 2.0], "c": [None]}
    write_bundle(tmp_path / "b", {"fit_record": {"val_loss": float("nan")}}, {})
    assert strict_loads((tmp_path / "b" / "unfreeze.json").read_text()) == {"fit_record": {"val_loss": None}}


def test_a_sweep_records_a_diverging_cell_as_failed_with_the_reason(runner, tmp_path, user, tiny_model_dir):
    from unfreeze.cli import app

    config = user / "sweep.toml"
    config.write_text(
        f'model = "{tiny_model_dir("bert")}"\nstrategies = ["full"]\nn_train = [30]\nseeds = [0]\n'
        "epochs = 3\nlearning_rate = 1e9\n"
    )
    result = runner.invoke(
        app,
        [
            "sweep",
            str(user / "good.csv"),
            "--test",
            str(user / "good.csv"),
            "--config",
            str(config),
            "--device",
            "cpu",
            "--no-cache",
            "-o",
            str(tmp_path / "run"),
        ],
    )
    assert "Traceback" not in result.output
    rows = [strict_loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed"]
    one_line(rows[0]["error"], "loss became NaN", "learning rate 1e+09")


# -- 2. inputs: regular files only, no lone surrogates, csv errors said plainly, short lists ---------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("reader", [read_table, read_inputs])
def test_a_fifo_is_refused_not_read(tmp_path, reader):
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read():
        try:
            reader(fifo)
        except BaseException as exc:  # noqa: BLE001 - the outcome is what is tested
            outcome.append(exc)

    thread = threading.Thread(target=read, daemon=True)  # a regression would block on the pipe: never joined
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], UnfreezeError)
    one_line(str(outcome[0]), "named pipe (FIFO)", "not a regular file")


SURROGATE_JSONL = '{"text": "ok text", "label": 1}\n{"text": "bad \\ud800 text", "label": 0}\n'


def test_a_lone_surrogate_is_refused_with_its_row(runner, tmp_path, user, tiny_model_dir):
    from unfreeze.cli import app

    result = runner.invoke(app, fit_args(tiny_model_dir, user / "good.csv", user / "bundle", "--C", "1"))
    assert result.exit_code == 0, result.output
    data = user / "data.jsonl"
    data.write_text(SURROGATE_JSONL)
    before = snapshot(tmp_path)
    for args in (
        fit_args(tiny_model_dir, data, user / "b2"),
        ["predict", str(user / "bundle"), str(data), "--device", "cpu", "-o", str(user / "out.csv")],
    ):
        result = runner.invoke(app, args)
        assert_cli_error(result, "Row 2", "lone surrogate", "\\ud800", str(data), "refused")
    assert snapshot(tmp_path) == before


def test_a_surrogate_pair_is_one_character_and_reads(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text("".join(f'{{"text": "smile \\ud83d\\ude00 {i}", "label": {i % 2}}}\n' for i in range(4)))
    data = load_data(path)
    assert data.texts[0] == "smile \U0001f600 0"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            "text," + "x" * 200_000 + "\nhello,1\n",
            ["header line", "over 131,072 characters", "close every opening quote"],
        ),
        ("text,label\rgood movie,1\rbad movie,0\r", ["carriage return alone", "\\n line endings", "tr '\\r' '\\n'"]),
        ('text,label\ngood movie,1\n"bad movie,0\nok,1\n', ['quote (") opened on line 3 is never closed']),
        (
            "text,label\ngood movie,1\nbad, movie,0\nok,1\n",
            ["line 3 has 3 fields but its header names 2", "unquoted ','"],
        ),
    ],
)
def test_csv_errors_say_what_is_wrong_with_the_file(tmp_path, content, words):
    path = tmp_path / "data.csv"
    path.write_text(content, newline="")
    with pytest.raises(UnfreezeError) as info:
        load_data(path)
    message = one_line(str(info.value), str(path), *words)
    assert not any(internal in message for internal in ("universal-newline", "field limit", "C error", "tokenizing"))


def test_an_error_quotes_a_few_column_names_and_counts_the_rest(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(100_000)) + "\n" + ",".join("1" * 100_000) + "\n")
    with pytest.raises(UnfreezeError) as info:
        load_data(path)
    message = one_line(str(info.value), "c0, c1, c2, c3, c4 and 99,995 more")
    assert len(message) < 300


# -- 3. messages: None is a label, a test set may hold one class, --host is the host -----------------------


def test_labels_spelled_none_are_labels(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(csv_text([(f"movie {i} was ok", "None" if i % 2 else "Some") for i in range(10)]))
    assert load_data(path).classes == ["None", "Some"]
    empty = tmp_path / "empty.csv"
    empty.write_text(csv_text([("a text", ""), ("b text", "x")]))
    with pytest.raises(UnfreezeError, match="no label"):
        load_data(empty)


def test_a_one_class_test_file_is_scored(runner, tmp_path, user, tiny_model_dir):
    from unfreeze.cli import app

    test_file = user / "one.csv"
    test_file.write_text(csv_text([(f"movie {i} was fine", 1) for i in range(6)]))
    result = runner.invoke(
        app, fit_args(tiny_model_dir, user / "good.csv", user / "bundle", "--C", "1", "--test", str(test_file))
    )
    assert result.exit_code == 0, result.output
    assert "test " in result.output
    result = runner.invoke(app, ["evaluate", str(user / "bundle"), str(test_file), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    # training data still needs two classes
    result = runner.invoke(app, fit_args(tiny_model_dir, test_file, user / "b2"))
    assert_cli_error(result, "single class", "at least two")


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("192.0.2.1", ["--host '192.0.2.1'", "not an address of this machine"]),  # TEST-NET-1: never local
        ("a" * 300, ["cannot be resolved", "not a valid host name"]),
    ],
)
def test_a_bad_host_is_blamed_on_the_host(host, words):
    from unfreeze.serve.app import listening_socket

    with pytest.raises(UnfreezeError) as info:
        listening_socket(host, 0)
    message = one_line(str(info.value), *words, "--host 127.0.0.1")
    assert "--port" not in message


def test_an_ipv6_host_is_bound_with_an_ipv6_socket():
    import socket

    from unfreeze.serve.app import listening_socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        sock = listening_socket("::1", 0)
    except UnfreezeError as exc:
        pytest.skip(f"::1 not configured here ({exc})")
    assert sock.family == socket.AF_INET6
    sock.close()


# -- 4. study files: L/0, a rule of 30,000 terms ------------------------------------------------------


def _study(tmp_path, k: str = '[0, "L"]', holds: str = "slope_low > 0"):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "studies" / "freeze-depth.toml").read_text()
    text = text.replace('k = [0, "L/3", "2L/3", "L-1", "L"]', f"k = {k}")
    text = text.replace(
        'holds = "slope_low > 0 and (interaction_p >= 0.05 or interaction_eta2 < 0.06)"', f'holds = "{holds}"'
    )
    path = tmp_path / "user" / "study.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"k": '["L/0"]'}, ["arm 'main'", "'L/0' divides the depth L by zero", "L/N with N >= 1"]),
        ({"holds": " + ".join(["slope"] * 30_000) + " > 0"}, ["[verdict] holds", "characters long", "at most 2,000"]),
        ({"holds": " + ".join(["slope"] * 200) + " > 0"}, ["[verdict] holds", "nests deeper than 50"]),
        ({"holds": "-" * 900 + "slope > 0"}, ["[verdict] holds", "nests deeper"]),
    ],
)
def test_study_files_that_cannot_be_meant_are_one_line(runner, tmp_path, change, words):
    from unfreeze.cli import app

    path = _study(tmp_path, **change)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["study", str(path), "-o", str(tmp_path / "user" / "run")])
    assert_cli_error(result, str(path), *words)
    assert snapshot(tmp_path) == before


def test_a_rule_of_reasonable_size_still_reads():
    from unfreeze.studies.rules import check_rule, evaluate

    rule = " and ".join(["slope > 0"] * 100)
    check_rule(rule, {"slope"}, "rule")
    assert evaluate(rule, {"slope": 1.0}) is True


# -- options typed on the command line reach the sweep (typer's own click keeps the context) ---------------


def test_sweep_takes_the_model_and_settings_typed_on_the_command_line(runner, tmp_path, user, monkeypatch):
    import unfreeze.cli.sweep as sweep_cli
    from unfreeze.cli import app

    seen = {}
    monkeypatch.setattr(sweep_cli, "run_and_report", lambda spec, *args, **kwargs: seen.update(spec=spec))
    result = runner.invoke(
        app, ["sweep", str(user / "good.csv"), "--model", "my-model", "--max-length", "32", "-o", str(tmp_path / "run")]
    )
    assert result.exit_code == 0, result.output
    assert (seen["spec"].model, seen["spec"].max_length) == ("my-model", 32)


def test_the_python_api_refuses_a_lone_surrogate_with_its_index(tiny_model_dir):
    from unfreeze import Classifier

    clf = Classifier(model=tiny_model_dir("bert"), strategy="features", device="cpu", cache=False, progress=False)
    with pytest.raises(UnfreezeError) as info:
        clf.fit(["a good text", ("bad text", "x \udc00"), "good", "bad"], [1, 0, 1, 0])
    one_line(str(info.value), "X[1]", "lone surrogate", "\\udc00")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("command", ["study", "sweep"])
def test_a_fifo_as_a_study_or_sweep_file_is_refused(runner, tmp_path, command):
    from unfreeze.cli import app

    fifo = tmp_path / "file.toml"
    os.mkfifo(fifo)
    args = ["study", str(fifo)] if command == "study" else ["sweep", "data.csv", "--config", str(fifo)]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "run")])
    assert_cli_error(result, "not a regular file")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fit_on_a_fifo_exits_at_once_in_a_real_process(tmp_path):
    import subprocess
    import sys

    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if k != "UNFREEZE_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "unfreeze", "fit", str(fifo), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    one_line(lines[0], "named pipe (FIFO)")
    assert not (tmp_path / "out").exists()
