"""Run folders know what wrote them, and every writing command goes through the output guard.

Each refusal: exit 2, one line naming the option or file that is wrong, and every file of the
user's folder unchanged (sha256 before and after). Folders of earlier releases, which record no
kind, still resume: their kind is read from the files they hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_user_error, sentiment_task_fixed, snapshot
from unfreeze.cli import app
from unfreeze.errors import UnfreezeError
from unfreeze.storage.outputs import check_output, check_run_kind, is_advise_plan, run_kind_of

SWEEP_JSON = {"run_kind": "sweep", "spec": {"strategies": ["features"]}, "num_blocks": 2}
ADVISE_JSON = {"run_kind": "advise", "spec": {"data": "d.csv"}, "plan_id": "abc", "sizes": [8, 16]}
PLAN_JSON = {"budget_seconds": 60, "recommendation": None, "plan": [], "rungs": []}
CELL_ROW = {
    "key": "k1",
    "status": "done",
    "cell": {"strategy": "features", "label": "features", "n_train": 8, "seed": 0},
}


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def sweep_folder(path: Path, recorded: bool = True) -> Path:
    write_json(
        path / "sweep.json", SWEEP_JSON if recorded else {k: v for k, v in SWEEP_JSON.items() if k != "run_kind"}
    )
    (path / "results.jsonl").write_text(json.dumps(CELL_ROW) + "\n")
    (path / "report.html").write_text("<html>the sweep's report</html>")
    return path


def advise_folder(path: Path, recorded: bool = True) -> Path:
    write_json(
        path / "advise.json", ADVISE_JSON if recorded else {k: v for k, v in ADVISE_JSON.items() if k != "run_kind"}
    )
    rows = [{"kind": "advise-start", "key": "advise-start:abc", "plan_id": "abc"}, CELL_ROW]
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_json(path / "plan.json", PLAN_JSON)
    (path / "report.html").write_text("<html>the advisor's report</html>")
    return path


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """The user's working folder: data, notes, one run folder of each kind."""
    root = tmp_path / "work"
    root.mkdir()
    texts, labels = sentiment_task_fixed(40, seed=0)
    lines = ["text,label"] + [f"{t},{'pos' if y else 'neg'}" for t, y in zip(texts, labels, strict=True)]
    (root / "data.csv").write_text("\n".join(lines) + "\n")
    (root / "notes.txt").write_text("my notes")
    mine = root / "mine"
    mine.mkdir()
    (mine / "intrinsic.png").write_bytes(b"\x89PNG my own plot")
    (mine / "sweep.json").write_text("my own sweep notes, not JSON")
    (root / "plan.json").write_text('{"mine": true}')
    write_json(root / "old-plan.json", PLAN_JSON)
    sweep_folder(root / "sweep")
    advise_folder(root / "advise")
    write_json(root / "study" / "study.json", {"format": "unfreeze-study", "name": "s"})
    write_json(root / "intrinsic" / "intrinsic.json", {"run_kind": "intrinsic-dim", "metric": "accuracy"})
    sweep_folder(root / "intrinsic")
    write_json(root / "intrinsic" / "sweep.json", {**SWEEP_JSON, "run_kind": "intrinsic-dim"})
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def unchanged(folders):
    before = snapshot(folders)
    yield folders
    assert snapshot(folders) == before


# -- the kinds: recorded, or read from the files of an earlier release ----------------------------


def test_each_folder_knows_its_kind(folders, tmp_path):
    assert {name: run_kind_of(folders / name) for name in ("sweep", "advise", "study", "intrinsic", "mine")} == {
        "sweep": "sweep",
        "advise": "advise",
        "study": "study",
        "intrinsic": "intrinsic-dim",
        "mine": None,
    }
    # earlier releases recorded no kind: the files they hold say it
    assert run_kind_of(sweep_folder(tmp_path / "old-sweep", recorded=False)) == "sweep"
    assert run_kind_of(advise_folder(tmp_path / "old-advise", recorded=False)) == "advise"
    old_intrinsic = sweep_folder(tmp_path / "old-intrinsic", recorded=False)
    write_json(old_intrinsic / "intrinsic.json", {"metric": "accuracy"})
    assert run_kind_of(old_intrinsic) == "intrinsic-dim"
    rows_only = tmp_path / "rows-only"
    rows_only.mkdir()
    (rows_only / "results.jsonl").write_text(json.dumps(CELL_ROW) + "\n")
    assert run_kind_of(rows_only) == "sweep"
    (rows_only / "results.jsonl").write_text('{"kind": "advise-start", "key": "a"}\n')
    assert run_kind_of(rows_only) == "advise"


@pytest.mark.parametrize(
    ("folder", "kind", "words"),
    [
        ("sweep", "advise", ["is a sweep's run folder, not an advise run's"]),
        ("advise", "sweep", ["is an advise run's run folder, not a sweep's"]),
        ("advise", "study", ["not a study's"]),
        ("intrinsic", "sweep", ["an intrinsic-dim run's"]),
        ("sweep", "intrinsic-dim", ["a sweep's"]),
        ("mine", "intrinsic-dim", ["holds no sweep or other run", "intrinsic.png"]),
    ],
)
def test_another_kind_of_run_folder_is_refused(unchanged, folder, kind, words):
    with pytest.raises(UnfreezeError) as caught:
        check_output(unchanged / folder, "run", run_kind=kind)
    message = str(caught.value)
    assert "\n" not in message and "Choose another -o" in message
    for word in words:
        assert word in message, message


def test_folders_of_earlier_releases_resume(tmp_path):
    old_sweep = sweep_folder(tmp_path / "old-sweep", recorded=False)
    old_advise = advise_folder(tmp_path / "old-advise", recorded=False)
    assert check_output(old_sweep, "run", run_kind="sweep") == old_sweep
    assert check_output(old_advise, "run", run_kind="advise") == old_advise
    assert check_output(tmp_path / "new", "run", run_kind="advise") == tmp_path / "new"
    assert check_run_kind(old_sweep, ("sweep",), "report") == "sweep"


def test_only_a_plan_this_tool_wrote_is_replaced(unchanged):
    assert is_advise_plan(unchanged / "old-plan.json") and not is_advise_plan(unchanged / "plan.json")
    with pytest.raises(UnfreezeError, match="not a file this tool wrote"):
        check_output(unchanged / "plan.json", "file", overwrite=True, option="--json-out", ours=is_advise_plan)
    with pytest.raises(UnfreezeError, match="Pass --overwrite"):
        check_output(unchanged / "old-plan.json", "file", option="--json-out", ours=is_advise_plan)
    assert check_output(unchanged / "old-plan.json", "file", overwrite=True, ours=is_advise_plan)


# -- the commands: one line, exit 2, nothing of the user's changed ------------------------------------


def advise_args(*more: str) -> list[str]:
    return ["advise", "data.csv", "--budget", "1m", "--strategies", "features", *more]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["intrinsic-dim", "data.csv", "-o", "mine"], ["mine is a folder that holds no sweep", "-o"]),
        (["intrinsic-dim", "data.csv", "-o", "."], ["the current folder", "-o"]),
        (["intrinsic-dim", "data.csv", "-o", "notes.txt"], ["notes.txt is a file", "-o"]),
        (["intrinsic-dim", "data.csv", "-o", "sweep"], ["a sweep's run folder, not an intrinsic-dim run's"]),
        (advise_args("-o", "sweep"), ["sweep is a sweep's run folder, not an advise run's", "-o"]),
        (advise_args("-o", "intrinsic"), ["an intrinsic-dim run's run folder"]),
        (advise_args("-o", "run", "--json-out", "plan.json"), ["plan.json already exists and is not a file this tool"]),
        (advise_args("-o", "run", "--json-out", "plan.json", "--overwrite"), ["plan.json", "--json-out"]),
        (advise_args("-o", "run", "--json-out", "old-plan.json"), ["old-plan.json already exists", "--overwrite"]),
        (advise_args("-o", "run", "--fit", "run"), ["--fit run is the run folder -o run", "Give --fit another"]),
        (advise_args("-o", "run", "--fit", "run/bundle"), ["--fit run/bundle overlaps the run folder"]),
        (advise_args("-o", "run", "--json-out", "run"), ["--json-out run is the folder -o run"]),
        (
            ["sweep", "data.csv", "--strategies", "features", "--sizes", "8", "-o", "advise"],
            ["advise is an advise run's run folder, not a sweep's"],
        ),
        (
            ["sweep", "data.csv", "--strategies", "features", "--sizes", "8", "-o", "intrinsic"],
            ["an intrinsic-dim run's run folder"],
        ),
        (["report", "advise"], ["advise is an advise run's run folder", "report reads a sweep's or an intrinsic-dim"]),
        (["report", "study"], ["a study's run folder", "unfreeze study"]),
    ],
)
def test_a_command_refuses_what_is_not_its_own(runner, unchanged, args, words):
    assert_user_error(runner.invoke(app, args), *words)
    assert not (unchanged / "run").exists()


def test_a_study_refuses_an_advise_folder(runner, unchanged):
    study = sorted((Path(__file__).parents[1] / "studies").glob("*.toml"))[0]
    assert_user_error(runner.invoke(app, ["study", str(study), "-o", "advise"]), "not a study's")


def test_advise_names_the_validation_size_that_takes_the_data(runner, unchanged, tiny_model_dir):
    result = runner.invoke(
        app, advise_args("--model", tiny_model_dir("bert"), "--validation-size", "1000", "-o", "run")
    )
    # 40 rows, of which the test split takes 8: too few for the default first rung (64) whatever the validation
    assert_user_error(
        result,
        "--validation-size 1000 takes too much of the 32 labelled examples",
        "Give a smaller --validation-size and --min-size (now 64)",
    )
    result = runner.invoke(
        app, advise_args("--model", tiny_model_dir("bert"), "--validation-size", "30", "--min-size", "8", "-o", "run")
    )
    assert_user_error(result, "--validation-size 30 takes too much", "Give --validation-size 24 or less")
    assert not (unchanged / "run").exists()


def test_report_reads_an_intrinsic_folder(unchanged):
    assert check_run_kind(unchanged / "intrinsic", ("sweep", "intrinsic-dim"), "report") == "intrinsic-dim"
    with pytest.raises(UnfreezeError, match="report reads a sweep's"):
        check_run_kind(unchanged / "advise", ("sweep",), "report")


# -- earlier releases' folders resume for real; heads and exports say what is wrong before work ------


def test_an_earlier_sweep_folder_without_a_kind_resumes(runner, folders, tiny_model_dir):
    args = [
        "sweep",
        "data.csv",
        "--model",
        tiny_model_dir("bert"),
        "--strategies",
        "features",
        "--sizes",
        "8",
        "-o",
        "fresh",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    spec_file = folders / "fresh" / "sweep.json"
    saved = json.loads(spec_file.read_text())
    assert saved["run_kind"] == "sweep"
    del saved["run_kind"]  # as an earlier release wrote it
    spec_file.write_text(json.dumps(saved))
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "already done" in again.output or "skipped" in again.output or "1 skipped" in again.output
    assert runner.invoke(app, ["report", "fresh"]).exit_code == 0
    # an advisor's cells that an earlier release appended to a sweep's store: report reads the sweep's rows only
    rows = (folders / "fresh" / "results.jsonl").read_text().splitlines()
    advised = {**json.loads(rows[-1]), "key": "advised-cell", "advise": {"plan_id": "abc", "rung": 0}}
    advised.pop("test", None)
    with open(folders / "fresh" / "results.jsonl", "a") as handle:
        handle.write(json.dumps(advised) + "\n")
    reported = runner.invoke(app, ["report", "fresh"])
    assert reported.exit_code == 0, reported.output
    assert "advised-cell" not in (folders / "fresh" / "results.csv").read_text()


def test_a_head_that_would_be_refused_is_refused_before_it_is_fitted(runner, folders, tiny_model_dir, monkeypatch):
    from unfreeze.inference.multihead import MultiHeadClassifier

    bundle = folders / "heads"
    base = ["heads", "add", str(bundle), "topic", "data.csv", "--model", tiny_model_dir("bert")]
    assert runner.invoke(app, base).exit_code == 0
    before = snapshot(folders)

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted a head that is then refused")

    monkeypatch.setattr(MultiHeadClassifier, "add_head", no_fit)
    assert_user_error(runner.invoke(app, base), "already has a head named 'topic'", "--replace")
    assert snapshot(folders) == before


def test_an_export_copied_from_another_bundle_is_called_so(tmp_path):
    from unfreeze.export.locate import check_belongs
    from unfreeze.inference.bundle import FORMAT, SINGLE_KIND

    bundle = tmp_path / "mine"
    write_json(
        bundle / "unfreeze.json",
        {
            "format": FORMAT,
            "format_version": 3,
            "kind": SINGLE_KIND,
            "strategy": {"name": "freeze"},
            "classifier": {},
            "predictor": {},
            "labels": ["neg", "pos"],
            "pooling": "mean",
            "layers": [-1],
            "max_length": 32,
            "backbone": {"reference": "tiny", "fingerprint": "f1"},
        },
    )
    source = {
        "bundle": str(tmp_path / "theirs"),
        "config_sha256": "0" * 64,
        "kind": SINGLE_KIND,
        "strategy": "features",
        "model": "tiny",
        "fingerprint": "f1",
    }
    manifest = {"source": source, "created": "yesterday"}
    with pytest.raises(UnfreezeError) as caught:
        check_belongs(bundle, bundle / "onnx", manifest)
    assert "belongs to another bundle" in str(caught.value) and "out of date" not in str(caught.value)
    # the same model and strategy: it may be this bundle before it changed, or a copy; the line says both
    with pytest.raises(UnfreezeError) as caught:
        check_belongs(bundle, bundle / "onnx", {**manifest, "source": {**source, "strategy": "freeze"}})
    assert "out of date" in str(caught.value) and "copied here from another bundle" in str(caught.value)


@pytest.mark.slow
def test_an_earlier_advise_folder_without_a_kind_resumes(runner, folders, tiny_model_dir):
    args = advise_args(
        "--model",
        tiny_model_dir("bert"),
        "--seeds",
        "0",
        "--min-size",
        "8",
        "--validation-size",
        "8",
        "--max-length",
        "16",
        "--budget",
        "20s",
        "-o",
        "advised",
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = folders / "advised" / "advise.json"
    saved = json.loads(record.read_text())
    assert saved["run_kind"] == "advise"
    del saved["run_kind"]  # as an earlier release wrote it
    record.write_text(json.dumps(saved))
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0] == result.stdout.splitlines()[0]  # the same plan, replayed
    assert_user_error(runner.invoke(app, ["report", "advised"]), "an advise run's run folder")
