"""The Ray backend of sweeps, on a real local Ray cluster (`ray start --head` in a temporary folder).

Rows identical in content to the local backend's; a worker SIGKILLed mid-cell (retried by
Ray, recorded once; or, with no retries left, recorded as failed); the driver SIGKILLed
mid-sweep and the sweep resumed; and the command line's options and errors. The cluster
runs on this machine only and is stopped when the module's tests end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from test_cli_errors import assert_user_error
from test_sweep import backend_spec, run_contents, write_toy_csv
from unfreeze.cli import app
from unfreeze.errors import UnfreezeError
from unfreeze.sweep import ResultsStore, SweepSpec
from unfreeze.sweep.store import VOLATILE_FIELDS, record_content

pytestmark = pytest.mark.slow  # subprocesses and clusters: left out of `make test-fast`

NEEDS_RAY = "the Ray backend tests need the 'ray' package: pip install 'unfreeze[ray]'"
TASK_TITLE = "ray::unfreeze-cell-"  # Ray titles a running task's worker process "ray::<task name>"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _have_ray() -> bool:
    return importlib.util.find_spec("ray") is not None


needs_ray = pytest.mark.skipif(not _have_ray(), reason=NEEDS_RAY)


@pytest.fixture(scope="module")
def ray_cluster():
    """A 2-CPU Ray head on this machine; yields (address, the `ray start` process). Stopped at the end.

    The drivers are separate processes (the CLI, or a short script), as in real use: Ray reads
    its settings once per process, when it is imported, so this process never connects.
    """
    if not _have_ray():
        pytest.skip(NEEDS_RAY)
    # Ray >= 2.5x may require a token: a fresh one for this cluster, seen by its workers and by
    # the drivers the tests start (never the user's ~/.ray/auth_token)
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    # short: Ray's unix socket paths live under the temp dir and must stay under 108 bytes
    temp = tempfile.mkdtemp(prefix="uray-", dir="/tmp")
    port = _free_port()
    command = [
        sys.executable,
        "-c",
        "from ray.scripts.scripts import main; main()",
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--temp-dir",
        temp,
        "--num-cpus",
        "2",
        "--num-gpus",
        "0",
        "--include-dashboard",
        "false",
        "--dashboard-port",
        str(_free_port()),
        "--ray-client-server-port",
        str(_free_port()),
        "--dashboard-agent-listen-port",
        str(_free_port()),
        "--object-store-memory",
        str(200 * 2**20),
        "--disable-usage-stats",
    ]
    log_path = Path(temp) / "ray-start.log"
    log = open(log_path, "wb")  # noqa: SIM115 - open for the cluster's whole life; closed at teardown
    # its own session: on teardown we signal this process and what it started, nothing else
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while b"will now block forever" not in log_path.read_bytes():  # printed once the node is up
            if proc.poll() is not None:
                pytest.fail("ray start exited: " + log_path.read_text()[-2000:])
            assert time.monotonic() < deadline, "ray start did not come up: " + log_path.read_text()[-2000:]
            time.sleep(0.5)
        yield address, proc
    finally:
        import psutil

        started = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Ray's agents may outlive it for a moment (they notice the raylet is gone): wait, then end
        # the stragglers, by pid, so none writes into the folder removed below
        _, alive = psutil.wait_procs(started, timeout=30)
        for straggler in alive:
            straggler.kill()
        psutil.wait_procs(alive, timeout=10)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def ray_spec(tmp_path_factory, tiny_model_dir) -> SweepSpec:
    return backend_spec(tmp_path_factory.mktemp("ray-data"), tiny_model_dir("bert"))


@pytest.fixture(scope="module")
def local_reference(ray_spec, tmp_path_factory) -> Path:
    """The same sweep run by the local backend, for comparison."""
    from unfreeze.sweep.runner import run_sweep

    out = tmp_path_factory.mktemp("local-reference") / "run"
    run_sweep(ray_spec, out, progress=False)
    return out


DRIVER = textwrap.dedent("""
    import json, sys
    from unfreeze.sweep import SweepSpec
    from unfreeze.sweep.ray_backend import RayOptions
    from unfreeze.sweep.runner import run_sweep
    args = json.loads(sys.argv[1])
    options = RayOptions(address=args["address"], max_retries=args["max_retries"])
    counts = run_sweep(SweepSpec(**args["spec"]), args["out"], retry_failed=args["retry_failed"], progress=False,
                       backend="ray", ray_options=options)
    print(json.dumps(counts))
""")


def _run_ray(
    address: str, spec: SweepSpec, out: Path, retry_failed: bool = False, max_retries: int = 3
) -> dict[str, int]:
    """run_sweep(backend="ray") in a driver process of its own; returns its counts."""
    args = {
        "address": address,
        "spec": spec.as_dict(),
        "out": str(out),
        "retry_failed": retry_failed,
        "max_retries": max_retries,
    }
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(args)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- results -----------------------------------------------------------------------------------


def test_ray_rows_are_identical_in_content_to_the_local_backend(ray_cluster, ray_spec, local_reference, tmp_path):
    address, _ = ray_cluster
    counts = _run_ray(address, ray_spec, tmp_path / "run")
    assert counts == {"total": 20, "skipped": 0, "done": 16, "failed": 4}
    local, remote = run_contents(local_reference), run_contents(tmp_path / "run")
    assert remote.keys() == local.keys()
    for key in local:
        assert remote[key] == local[key], local[key]["cell"]
    # what may differ is only where and when: the rows name the backend and the worker
    records = ResultsStore(tmp_path / "run").records()
    assert all(r["runner"]["backend"] == "ray" and r["runner"]["node_id"] for r in records)
    assert {r["runner"]["backend"] for r in ResultsStore(local_reference).records()} == {"local"}
    assert set(VOLATILE_FIELDS) <= set(records[0])
    # a cell's own exception is a failed row, as locally, and the sweep went on
    failed = [r for r in records if r["status"] == "failed"]
    assert {r["cell"]["strategy"] for r in failed} == {"reinit"}
    assert "The 'm' parameter of reinit must be an int in [1, 2]" in failed[0]["error"]
    # the probe ran as a task and wrote the same curve
    assert json.loads((tmp_path / "run" / "probe.json").read_text()) == json.loads(
        (local_reference / "probe.json").read_text()
    )
    # resume: nothing left to do
    assert _run_ray(address, ray_spec, tmp_path / "run") == {"total": 20, "skipped": 20, "done": 0, "failed": 0}


class _Killer(threading.Thread):
    """SIGKILLs the first worker process seen running a sweep cell (found by its Ray process title)."""

    def __init__(self, cluster_proc: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.root = cluster_proc.pid
        self.killed: tuple[int, str] | None = None  # (pid, cell key)
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set() and self.killed is None:
            for proc in psutil.Process(self.root).children(recursive=True):  # only this test's cluster
                try:
                    title = proc.cmdline()[0] if proc.cmdline() else ""
                except psutil.Error:
                    continue
                if title.startswith(TASK_TITLE):
                    proc.send_signal(signal.SIGKILL)
                    self.killed = (proc.pid, title.removeprefix(TASK_TITLE).strip())
                    return
            time.sleep(0.01)


def test_a_worker_killed_mid_cell_is_retried_and_the_cell_recorded_once(
    ray_cluster, ray_spec, local_reference, tmp_path
):
    address, cluster_proc = ray_cluster
    killer = _Killer(cluster_proc)
    killer.start()
    try:
        counts = _run_ray(address, ray_spec, tmp_path / "run")
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, "no cell was seen running"
    pid, key = killer.killed
    records = ResultsStore(tmp_path / "run").records()
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 20 and key in keys  # every cell once, the killed one included
    assert counts["done"] + counts["failed"] == 20
    row = next(r for r in records if r["key"] == key)
    assert row["runner"]["pid"] != pid  # the row came from the retry, in another worker
    # and the retried cell's result is the one the local backend gets
    assert run_contents(tmp_path / "run") == run_contents(local_reference)


def test_a_worker_killed_with_no_retries_left_is_a_failed_row_and_retry_failed_reruns_it(
    ray_cluster, ray_spec, tmp_path
):
    address, cluster_proc = ray_cluster
    spec = replace(ray_spec, strategies=["freeze"], k=[1, 2], n_train=[16], seeds=[0], probe=False)
    killer = _Killer(cluster_proc)
    killer.start()
    try:
        counts = _run_ray(address, spec, tmp_path / "run", max_retries=0)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, "no cell was seen running"
    assert counts == {"total": 2, "skipped": 0, "done": 1, "failed": 1}
    failed = next(r for r in ResultsStore(tmp_path / "run").records() if r["status"] == "failed")
    assert failed["key"] == killer.killed[1]
    assert "WorkerCrashedError" in failed["error"] or "died" in failed["error"], failed["error"]
    again = _run_ray(address, spec, tmp_path / "run", retry_failed=True)
    assert again == {"total": 2, "skipped": 1, "done": 1, "failed": 0}
    assert {r["status"] for r in ResultsStore(tmp_path / "run").latest().values()} == {"done"}


def test_resume_after_the_driver_is_killed(ray_cluster, ray_spec, local_reference, tmp_path):
    """SIGKILL `unfreeze sweep --backend ray` once some rows are stored; the same command finishes the sweep."""
    address, _ = ray_cluster
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "unfreeze",
        "sweep",
        "--config",
        str(_write_config(ray_spec, tmp_path)),
        "-o",
        str(out),
        "--backend",
        "ray",
        "--address",
        address,
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = ResultsStore(out)
    deadline = time.monotonic() + 240
    while len(store.records()) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the sweep stored too few rows in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    at_kill = len(store.records())
    assert at_kill < 20, "the sweep finished before the kill"
    time.sleep(3)
    assert len(store.records()) == at_kill  # the workers never write: the dead driver's cells in flight are lost
    final = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"{at_kill} already done" in final.stdout
    keys = [r["key"] for r in store.records()]
    assert len(keys) == len(set(keys))  # each cell recorded exactly once
    assert set(keys) == set(run_contents(local_reference))  # and the set is the grid


def _write_config(spec: SweepSpec, folder: Path) -> Path:
    lines = ["[sweep]"]
    for name, value in spec.as_dict().items():
        if value is not None:
            lines.append(f"{name} = {json.dumps(value)}")
        elif name == "learning_rate":  # the spec's None; left out, the command line would search rates
            lines.append('learning_rate = "fixed"')
    path = folder / "sweep.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rows_record_where_they_ran_and_the_local_backend_says_local(local_reference):
    record = ResultsStore(local_reference).records()[0]
    assert record["runner"]["backend"] == "local" and record["runner"]["pid"] == os.getpid()
    # the comparable content leaves out exactly the volatile fields
    content = record_content(record)
    assert not set(VOLATILE_FIELDS) & set(content)
    assert "seconds" not in content["fit"] and "trainable_parameters" in content["fit"]


# -- options and errors (no cluster needed) -------------------------------------------------------


@pytest.fixture
def csv_file(tmp_path) -> Path:
    return write_toy_csv(tmp_path / "data.csv", 20, 0)


def _sweep(runner, csv_file: Path, tmp_path: Path, *args: str):
    out = tmp_path / "runs" / "sweep"
    return runner.invoke(app, ["sweep", str(csv_file), "-o", str(out), *args]), out


def test_without_ray_installed_the_ray_backend_says_how_to_install_it(runner, csv_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result, out = _sweep(runner, csv_file, tmp_path, "--backend", "ray")
    line = assert_user_error(result)
    assert line == "error: the Ray backend needs the 'ray' package: pip install 'unfreeze[ray]'"
    assert not out.exists()
    # a fresh interpreter without ray imports the backend module and the Python API says the same
    check = (
        "import sys; sys.modules['ray'] = None\n"
        "from unfreeze.errors import UnfreezeError\n"
        "import unfreeze.sweep.ray_backend\n"
        "from unfreeze.sweep import SweepSpec\n"
        "from unfreeze.sweep.runner import run_sweep\n"
        "try:\n    run_sweep(SweepSpec(), 'unused', backend='ray')\n"
        "except UnfreezeError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "the Ray backend needs the 'ray' package: pip install 'unfreeze[ray]'"
    assert not Path("unused").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--backend", "slurm"], ["Unknown backend 'slurm'", "local, ray"]),
        (["--address", "auto"], ["--address applies to the Ray backend only", "--backend ray"]),
        (["--gpus-per-cell", "1"], ["--gpus-per-cell applies to the Ray backend only"]),
        (["--backend", "ray", "--cpus-per-cell", "-1"], ["--cpus-per-cell must be a number > 0", "-1"]),
        (["--backend", "ray", "--cpus-per-cell", "0"], ["--cpus-per-cell must be a number > 0"]),
        (["--backend", "ray", "--gpus-per-cell", "-0.5"], ["--gpus-per-cell must be a number >= 0"]),
        (["--backend", "ray", "--gpus-per-cell", "1.5"], ["--gpus-per-cell above 1 must be a whole number"]),
    ],
    ids=[
        "unknown-backend",
        "address-without-ray",
        "gpus-without-ray",
        "negative-cpus",
        "zero-cpus",
        "negative-gpus",
        "fractional-gpus-above-one",
    ],
)
def test_bad_backend_options_are_one_line_errors(runner, csv_file, tmp_path, args, words):
    if "ray" in args and not _have_ray():
        pytest.skip(NEEDS_RAY)
    result, out = _sweep(runner, csv_file, tmp_path, *args)
    assert_user_error(result, *words)
    assert not out.exists()


@needs_ray
def test_an_address_where_nothing_listens_is_a_one_line_error(csv_file, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "unfreeze",
            "sweep",
            str(csv_file),
            "-o",
            str(tmp_path / "out"),
            "--sizes",
            "8",
            "--backend",
            "ray",
            "--address",
            f"127.0.0.1:{_free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Could not connect to the Ray cluster at 127.0.0.1:"), (
        result.stderr
    )
    assert "nothing answers" in lines[0] and "ray start --head" in lines[0]


def test_a_sweep_refuses_a_data_parallel_launch(runner, csv_file, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result, out = _sweep(runner, csv_file, tmp_path)
    assert_user_error(result, "A sweep runs in one process", "--backend ray")
    assert not out.exists()


def test_ray_options_validate_in_python_too():
    from unfreeze.sweep.ray_backend import RayOptions

    assert RayOptions(cpus_per_cell=0.5, gpus_per_cell=0.25).gpus_per_cell == 0.25
    with pytest.raises(UnfreezeError, match="max_retries must be an int >= 0"):
        RayOptions(max_retries=-1)
