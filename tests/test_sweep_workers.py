"""Several cells at once on one machine (``unfreeze sweep --workers N``): worker processes, one store.

The rows are those of the one-at-a-time run (the same numbers, cell by cell); the cells
really ran in several processes; a worker that dies stops the sweep with one line and the
same command resumes it; the option's errors are one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from test_cli_errors import assert_user_error
from test_sweep import backend_spec, run_contents, write_toy_csv
from unfreeze.cli import app
from unfreeze.errors import UnfreezeError
from unfreeze.sweep import ResultsStore, SweepSpec
from unfreeze.sweep.runner import run_sweep
from unfreeze.sweep.workers import check_workers, worker_device

pytestmark = pytest.mark.slow  # worker processes import torch: left out of `make test-fast`


@pytest.fixture(scope="module")
def workers_spec(tmp_path_factory, tiny_model_dir) -> SweepSpec:
    # two seeds, so a worker meets a second seed's prefix
    return backend_spec(tmp_path_factory.mktemp("workers-data"), tiny_model_dir("bert"))


@pytest.fixture(scope="module")
def one_at_a_time(workers_spec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one-at-a-time") / "run"
    run_sweep(workers_spec, out, progress=False)
    return out


def test_two_workers_record_the_one_at_a_time_rows(workers_spec, one_at_a_time, tmp_path):
    counts = run_sweep(workers_spec, tmp_path / "run", progress=False, workers=2)
    assert counts == {"total": 20, "skipped": 0, "done": 16, "failed": 4}
    alone, together = run_contents(one_at_a_time), run_contents(tmp_path / "run")
    assert together.keys() == alone.keys()
    for key in alone:
        assert together[key] == alone[key], alone[key]["cell"]
    records = ResultsStore(tmp_path / "run").records()
    # the cells ran in two processes besides this one, and each row says which
    assert {r["runner"]["worker"] for r in records} == {0, 1}
    assert len({r["runner"]["pid"] for r in records}) == 2 and os.getpid() not in {r["runner"]["pid"] for r in records}
    assert all(r["runner"]["backend"] == "local" for r in records)
    failed = [r for r in records if r["status"] == "failed"]
    assert {r["cell"]["strategy"] for r in failed} == {"reinit"}
    assert json.loads((tmp_path / "run" / "probe.json").read_text()) == json.loads(
        (one_at_a_time / "probe.json").read_text()
    )
    assert run_sweep(workers_spec, tmp_path / "run", progress=False, workers=2) == {
        "total": 20,
        "skipped": 20,
        "done": 0,
        "failed": 0,
    }


def test_a_worker_that_dies_stops_the_sweep_in_one_line_and_the_same_call_resumes(
    workers_spec, one_at_a_time, tmp_path, monkeypatch
):
    # the workers are spawned: they see the environment, not this process's patches (fixtures/kill_worker)
    monkeypatch.setenv("UNFREEZE_TEST_KILL_SEED", "1")
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(Path(__file__).parent / "fixtures" / "kill_worker"), os.environ.get("PYTHONPATH", "")]),
    )
    spec = workers_spec
    with pytest.raises(UnfreezeError, match=r"A worker process died .* Run the same command again"):
        run_sweep(spec, tmp_path / "run", progress=False, workers=2)
    recorded = run_contents(tmp_path / "run")
    alone = run_contents(one_at_a_time)
    assert 0 < len(recorded) < len(alone)
    for key, row in recorded.items():  # what was recorded is whole and right
        assert row == alone[key]
    monkeypatch.delenv("UNFREEZE_TEST_KILL_SEED")
    counts = run_sweep(spec, tmp_path / "run", progress=False, workers=2)
    assert counts["skipped"] == len(recorded) and counts["done"] + counts["failed"] == 20 - len(recorded)
    assert run_contents(tmp_path / "run") == alone


def test_worker_devices():
    assert worker_device("cuda", 3, 2) == "cuda:1"  # a plain cuda spreads the workers over the GPUs
    assert worker_device("cuda", 2, 1) == "cuda"  # one GPU: every worker shares it
    assert worker_device("cuda:1", 0, 4) == "cuda:1"  # a named GPU stays the one
    assert worker_device("cpu", 1, 0) == "cpu"
    assert worker_device(None, 1, 2) is None


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_positive_whole_number(value):
    with pytest.raises(UnfreezeError, match=r"--workers must be a whole number >= 1"):
        check_workers(value)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--workers", "0"], "--workers must be a whole number >= 1"),
        (["--workers", "2", "--backend", "ray"], "--workers applies to the local backend"),
    ],
)
def test_bad_workers_on_the_command_line_are_one_line_errors(runner, tmp_path, args, words):
    csv = write_toy_csv(tmp_path / "train.csv", 32, 0)
    result = runner.invoke(
        app, ["sweep", str(csv), "--strategies", "features", "--sizes", "8", "-o", str(tmp_path / "run"), *args]
    )
    assert_user_error(result, words)
    assert not (tmp_path / "run").exists()
