"""Sweeps: grid expansion and keys, the crash-safe store, resume after SIGKILL, failures, shared caches."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from unfreeze.errors import UnfreezeError
from unfreeze.sweep import ResultsStore, SweepSpec, expand

FIXTURES = Path(__file__).parent / "fixtures"

GOOD = ["good", "great", "fine", "lovely", "superb", "wonderful"]
BAD = ["bad", "awful", "poor", "dreadful", "terrible", "boring"]


def write_toy_csv(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(n):
        positive = i % 2 == 0
        word = rng.choice(GOOD if positive else BAD)
        lines.append(
            f"the film was {word} and {rng.choice(['long', 'short', 'new', 'old'])},{'pos' if positive else 'neg'}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def backend_spec(folder: Path, model: str) -> SweepSpec:
    """The sweep the backends are compared on: features (shared embeddings), freeze at every k (the shared
    prefix for k >= 1), a cell that fails (reinit m=5 > 2 blocks) and the probe, over two seeds."""
    train, test = write_toy_csv(folder / "train.csv", 64, 0), write_toy_csv(folder / "test.csv", 24, 1)
    return SweepSpec(
        data=str(train),
        test=str(test),
        model=model,
        strategies=["features", "freeze", "reinit"],
        k=[0, 1, 2],
        m=5,
        n_train=[8, 16],
        seeds=[0, 1],
        epochs=2,
        batch_size=8,
        validation_fraction=0.0,
        probe=True,
    )


def run_contents(run_dir: Path) -> dict[str, dict]:
    """{key: the row without its volatile fields} of a run folder: what two backends must agree on."""
    from unfreeze.sweep.store import record_content

    return {r["key"]: record_content(r) for r in ResultsStore(run_dir).records()}


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep-data")
    return write_toy_csv(folder / "train.csv", 64, 0), write_toy_csv(folder / "test.csv", 24, 1)


@pytest.fixture(scope="module")
def toy_spec(toy_data, tiny_model_dir):
    train, test = toy_data
    return SweepSpec(
        data=str(train),
        test=str(test),
        model=str(tiny_model_dir("bert")),
        strategies=["features", "freeze"],
        k=[0, 2],
        n_train=[8, 16],
        seeds=[0, 1],
        epochs=1,
        batch_size=8,
        validation_fraction=0.0,
    )


# -- grid ------------------------------------------------------------------------------------


def test_expand_covers_the_grid_in_seed_then_size_order():
    spec = SweepSpec(
        strategies=["features", "freeze", "lora", "setfit", "reinit", "full"],
        k=[0, 3, 6],
        n_train=[128, 32],
        seeds=[1, 0],
    )
    cells = expand(spec, num_blocks=6)
    per_point = 1 + 3 + 1 + 1 + 1 + 1
    assert len(cells) == per_point * 2 * 2
    assert len(set(cells)) == len(cells)
    assert [c.seed for c in cells[: per_point * 2]] == [1] * per_point * 2  # seeds outer, in the given order
    assert [c.n_train for c in cells[:per_point]] == [32] * per_point  # sizes ascending inside a seed
    assert {c.label for c in cells} == {
        "features",
        "freeze k=0",
        "freeze k=3",
        "freeze k=6",
        "lora r=8",
        "setfit num_iterations=20",
        "reinit m=1",
        "full",
    }


def test_k_all_means_every_k_and_out_of_range_k_is_refused():
    spec = SweepSpec(strategies=["freeze"], k="all", n_train=[8], seeds=[0])
    assert [dict(c.params)["k"] for c in expand(spec, 4)] == [0, 1, 2, 3, 4]
    with pytest.raises(UnfreezeError, match=r"--k value 7 is out of range: this model has 6 blocks"):
        expand(replace(spec, k=[0, 7]), 6)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"strategies": ["magic"]}, "Unknown strategy 'magic'"),
        ({"strategies": []}, "no strategies"),
        ({"k": "some"}, "comma-separated list of ints or 'all'"),
        ({"n_train": []}, "--n-train must be a non-empty list"),
        ({"n_train": [0]}, "--n-train values must be >= 1"),
        ({"seeds": ["a"]}, "--seeds must be a non-empty list of ints"),
    ],
)
def test_bad_specs_are_refused(bad, message):
    with pytest.raises(UnfreezeError, match=message):
        SweepSpec(**bad)


def test_cell_keys_of_release_0_1_0_sweeps_are_unchanged():
    """A run folder of the first release resumes: its cells keep their keys (and labels)."""
    fixture = json.loads((FIXTURES / "sweep_keys_release-0.1.0.json").read_text())
    for entry in fixture["specs"]:
        spec = SweepSpec(**entry["spec"])
        cells = expand(spec, entry["num_blocks"])
        got = [
            {
                "label": c.label,
                "n_train": c.n_train,
                "seed": c.seed,
                "key": c.key(entry["data_fingerprint"], entry["model_fingerprint"], spec.training_settings()),
            }
            for c in cells
        ]
        assert got == entry["cells"]


def test_any_strategy_parameter_can_be_swept():
    spec = SweepSpec(
        strategies=["freeze", "lora", "reinit"],
        k=[1],
        n_train=[8],
        seeds=[0],
        grid={"lora": {"r": [4, "16"], "lora_alpha": 32}, "reinit": {"m": [1, 2], "k": [0]}},
    )
    labels = [c.label for c in expand(spec, 6)]
    assert labels == [
        "freeze k=1",
        "lora r=4 lora_alpha=32",
        "lora r=16 lora_alpha=32",
        "reinit m=1 k=0",
        "reinit m=2 k=0",
    ]
    assert [c.make_strategy() for c in expand(spec, 6)][2].r == 16  # strings (the CLI's) take the declared type
    # a sweep's training settings go only to the strategies that read them
    from unfreeze.strategies import Features, SetFit

    spec = SweepSpec(epochs=4, validation_fraction=0.0, patience=None)
    assert spec.training_for(Features) == {"class_weight": None}
    assert set(spec.training_for(SetFit)) == set(SetFit.training_settings) - {"prefix_cache"}


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"magic": {"k": [1]}}, "grid names unknown strategy 'magic'"),
        ({"lora": {"rank": [4]}}, "Strategy 'lora' has no parameter 'rank' to sweep. Its parameters: r, lora_alpha"),
        ({"lora": {"r": []}}, "gives no values for lora.r"),
        ({"lora": {"r": [0]}}, "The 'r' parameter of lora must be an int >= 1. Got 0."),
        ({"reinit": {"m": ["two"]}}, "The 'm' parameter of reinit must be an int >= 1. Got 'two'."),
    ],
)
def test_a_bad_grid_is_one_line_before_anything_runs(grid, message):
    with pytest.raises(UnfreezeError, match=re.escape(message)):
        SweepSpec(strategies=["lora", "reinit"], grid=grid)


def test_cell_keys_are_stable_and_change_with_everything_that_defines_a_cell():
    spec = SweepSpec(strategies=["features", "freeze"], k=[0, 2], n_train=[8, 16], seeds=[0, 1])
    cells = expand(spec, 2)
    settings = spec.training_settings()
    keys = [c.key("data", "model", settings) for c in cells]
    assert len(set(keys)) == len(keys)
    assert keys == [c.key("data", "model", settings) for c in expand(spec, 2)]
    cell = cells[0]
    base = cell.key("data", "model", settings)
    assert cell.key("other-data", "model", settings) != base
    assert cell.key("data", "other-model", settings) != base
    assert cell.key("data", "model", replace(spec, epochs=5).training_settings()) != base
    assert cell.key("data", "model", replace(spec, max_length=64).training_settings()) != base
    # the grid's other axes do not change an existing cell's key (growing a sweep reuses results)
    assert cell.key("data", "model", replace(spec, seeds=[0, 1, 2], n_train=[8, 16, 32]).training_settings()) == base


def test_toml_scalars_are_one_element_lists_and_paths_are_relative_to_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\na,x\n")
    config = folder / "sweep.toml"
    config.write_text(
        '[sweep]\ndata = "train.csv"\nstrategies = "features, freeze"\nn_train = 16\nseeds = 2\nk = 3\n'
        "[sweep.grid.lora]\nr = 4\n"
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the data path must not depend on where the command runs
    spec = SweepSpec.from_toml(config)
    assert (spec.strategies, spec.n_train, spec.seeds, spec.k) == (["features", "freeze"], [16], [2], [3])
    assert spec.grid == {"lora": {"r": [4]}}
    assert Path(spec.data) == folder / "train.csv"
    builtin = folder / "builtin.toml"
    builtin.write_text('data = "movie-snippets:train"\n')
    assert SweepSpec.from_toml(builtin).data == "movie-snippets:train"


def test_sweep_spec_reads_toml_and_rejects_unknown_settings(tmp_path):
    good = tmp_path / "sweep.toml"
    good.write_text(
        '[sweep]\ndata = "bbc-news"\nstrategies = ["features", "lora"]\nk = "all"\n'
        "n_train = [32, 128]\nseeds = [0, 1, 2]\nr = 4\n"
    )
    spec = SweepSpec.from_toml(good)
    assert (spec.data, spec.strategies, spec.k, spec.n_train, spec.seeds, spec.r) == (
        "bbc-news",
        ["features", "lora"],
        "all",
        [32, 128],
        [0, 1, 2],
        4,
    )
    assert spec.axes("lora") == {"r": [4]}
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep]\nlearning_rat = 0.1\n")
    with pytest.raises(UnfreezeError, match="unknown sweep setting 'learning_rat'"):
        SweepSpec.from_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[sweep\n")
    with pytest.raises(UnfreezeError, match="not valid TOML"):
        SweepSpec.from_toml(broken)


# -- the store ----------------------------------------------------------------------------------


def test_store_skips_a_partial_last_line_and_repairs_it_before_appending(tmp_path):
    store = ResultsStore(tmp_path)
    store.append({"key": "a", "status": "done"})
    with open(store.path, "ab") as handle:
        handle.write(b'{"key": "b", "status": "do')  # a crash mid-write
    assert [r["key"] for r in store.records()] == ["a"]
    store.append({"key": "c", "status": "failed"})
    store.append({"key": "c", "status": "done"})
    lines = store.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
    assert [r["key"] for r in store.records()] == ["a", "c", "c"]
    assert store.latest()["c"]["status"] == "done"


# -- running -----------------------------------------------------------------------------------


def _run(spec, out, **kwargs):
    from unfreeze.sweep.runner import run_sweep

    return run_sweep(spec, out, progress=False, **kwargs)


def test_sweep_runs_every_cell_once_and_a_rerun_skips_them(toy_spec, tmp_path):
    counts = _run(toy_spec, tmp_path / "run")
    assert counts == {"total": 12, "skipped": 0, "done": 12, "failed": 0}
    records = ResultsStore(tmp_path / "run").records()
    assert len(records) == 12 and all(r["status"] == "done" for r in records)
    record = records[0]
    for field in ("train", "test", "fit", "versions", "git_revision", "device", "settings", "cell"):
        assert field in record
    assert set(record["test"]) == {"accuracy", "macro_f1", "mcc"}
    assert record["fit"]["seconds"] > 0 and record["fit"]["total_parameters"] > 0
    again = _run(toy_spec, tmp_path / "run")
    assert again == {"total": 12, "skipped": 12, "done": 0, "failed": 0}
    assert len(ResultsStore(tmp_path / "run").records()) == 12


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(toy_spec, tmp_path):
    spec = replace(toy_spec, strategies=["reinit", "features"], m=5, seeds=[0], n_train=[8])  # m > L=2: fails
    counts = _run(spec, tmp_path / "run")
    assert counts["failed"] == 1 and counts["done"] == 1
    latest = list(ResultsStore(tmp_path / "run").latest().values())
    failed = [r for r in latest if r["status"] == "failed"]
    assert failed[0]["cell"]["strategy"] == "reinit"
    assert "The 'm' parameter of reinit must be an int in [1, 2] for this model. Got 5." in failed[0]["error"]
    assert _run(spec, tmp_path / "run")["skipped"] == 2  # failed cells are not retried by default
    retried = _run(spec, tmp_path / "run", retry_failed=True)
    assert retried["failed"] == 1 and retried["skipped"] == 1


def test_shared_caches_give_the_same_results_and_save_forward_passes(toy_spec, tmp_path, monkeypatch):
    from unfreeze.models.loaded import shared_backbone

    spec = replace(toy_spec, seeds=[0])
    backbone = shared_backbone(spec.model, None)
    calls = {"n": 0}
    original = backbone.model.forward

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(backbone.model, "forward", counting)
    _run(spec, tmp_path / "cached")
    cached_calls = calls["n"]
    calls["n"] = 0
    _run(spec, tmp_path / "uncached", shared_cache=False)
    assert cached_calls < calls["n"]
    cached = {r["key"]: r for r in ResultsStore(tmp_path / "cached").records()}
    uncached = {r["key"]: r for r in ResultsStore(tmp_path / "uncached").records()}
    assert cached.keys() == uncached.keys()
    n_test = cached[next(iter(cached))]["n_test"]
    for key, record in cached.items():
        if record["cell"]["strategy"] == "features":
            assert record["test"] == uncached[key]["test"]
        else:  # the prefix cache is exact up to float rounding
            assert abs(record["test"]["accuracy"] - uncached[key]["test"]["accuracy"]) <= 1 / n_test


SWEEP_SCRIPT = textwrap.dedent("""
    import json, sys
    from unfreeze.sweep import SweepSpec
    from unfreeze.sweep.runner import run_sweep
    spec = SweepSpec(**json.loads(sys.argv[1]))
    run_sweep(spec, sys.argv[2], progress=False)
""")


def _wait_for_rows(store: ResultsStore, proc: subprocess.Popen, more_than: int, timeout: float = 120) -> bool:
    """Wait until the store has more than ``more_than`` rows; False when the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(store.records()) > more_than:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("the sweep recorded nothing within the timeout")


@pytest.mark.slow
def test_resume_after_sigkill_at_random_points(toy_spec, tmp_path):
    """Kill the sweep process at random instants after it made progress; every cell still ends exactly once."""
    spec = replace(toy_spec, strategies=["features", "freeze"], k=[0, 1, 2], n_train=[8, 12, 16], seeds=[0, 1, 2])
    out = tmp_path / "run"
    store = ResultsStore(out)
    args = [sys.executable, "-c", SWEEP_SCRIPT, json.dumps(spec.as_dict()), str(out)]
    env = dict(os.environ)
    rng = random.Random(1234)
    kills = 0
    for attempt in range(4):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # each kill lands after at least one new cell, at a random instant within the next one
        # (the first one right away: 27 cells cannot all finish in that instant)
        if not _wait_for_rows(store, proc, len(store.records())):
            break
        time.sleep(0 if attempt == 0 else rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        store.records()  # readable after every kill
    final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    assert kills >= 1
    records = ResultsStore(out).records()
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == len(expand(spec, 2))  # each cell recorded exactly once
    assert all(r["status"] == "done" for r in records)
    raw = out.joinpath("results.jsonl").read_bytes()
    assert raw.endswith(b"\n") and all(json.loads(line) for line in raw.splitlines())


def test_the_shared_embedding_pool_serves_subsets_with_repeated_texts_exactly(tiny_backbone):
    import numpy as np

    from unfreeze.features.embed import embed, shared_embeddings

    backbone = tiny_backbone("bert")
    first = ["a good film", "a bad film", "a good film", "dull", "a bad film"]  # repeats inside a call
    second = ["dull", "brilliant", "brilliant", "a good film", "so so"]  # overlaps the first call
    with shared_embeddings():
        embed(backbone, first, [1, 2], "mean", progress=False)
        embed(backbone, second, [1, 2], "mean", progress=False)
        served = embed(backbone, second + first[::-1], [2], "mean", progress=False)
    direct = embed(backbone, second + first[::-1], [2], "mean", use_cache=False, progress=False)
    assert served.from_cache and not direct.from_cache
    np.testing.assert_allclose(served.layers[2], direct.layers[2], atol=1e-6)
