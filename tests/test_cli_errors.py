"""User errors at the command line: one `error: ` line on stderr, exit code 2, no traceback,
and nothing left behind. Every error here happens before a model is loaded, so these are fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unfreeze.cli import app


@pytest.fixture
def good_csv(tmp_path) -> Path:
    path = tmp_path / "good.csv"
    path.write_text("text,label\n" + "".join(f"text number {i},{i % 2}\n" for i in range(20)), encoding="utf-8")
    return path


def assert_user_error(result, *words: str) -> str:
    """Exit 2, exactly one stderr line starting with `error: `, holding ``words``; no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    # a clean exit, not an exception typer happened to map to 2
    assert isinstance(result.exception, SystemExit) or result.exception is None
    return lines[0]


def fit(runner, tmp_path, *args: str):
    """Run `unfreeze fit ... -o <tmp>/bundle`; return the result and the output path."""
    out = tmp_path / "runs" / "bundle"
    result = runner.invoke(app, ["fit", *args, "-o", str(out)])
    return result, out


def test_fit_missing_file(runner, tmp_path):
    result, out = fit(runner, tmp_path, str(tmp_path / "missing.csv"))
    assert_user_error(result, "File not found", "missing.csv", "unfreeze datasets")
    assert not out.exists()


def test_fit_unknown_format(runner, tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    result, out = fit(runner, tmp_path, str(path))
    assert_user_error(result, "Unknown format '.xlsx'", ".csv", ".jsonl")
    assert not out.exists()


def test_fit_missing_column(runner, tmp_path, good_csv):
    result, out = fit(runner, tmp_path, str(good_csv), "--label-col", "sentiment")
    assert_user_error(result, "'sentiment'", "Columns: text, label", "--label-col")
    assert not out.exists()


def test_fit_missing_text_column_in_test_file(runner, tmp_path, good_csv):
    test_file = tmp_path / "test.csv"
    test_file.write_text("review,label\ngood,1\nbad,0\n", encoding="utf-8")
    result, out = fit(runner, tmp_path, str(good_csv), "--test", str(test_file))
    assert_user_error(result, "'text'", "test.csv", "Columns: review, label")
    assert not out.exists()


def test_fit_non_utf8_file(runner, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nfine,1\nna\xefve,0\n".encode("latin-1"))
    result, out = fit(runner, tmp_path, str(path))
    assert_user_error(result, "not UTF-8", "0xef", "line 3")
    assert not out.exists()


def test_fit_malformed_jsonl(runner, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0\n', encoding="utf-8")
    result, out = fit(runner, tmp_path, str(path))
    assert_user_error(result, "line 2", "not valid JSON")
    assert not out.exists()


def test_fit_empty_texts(runner, tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("text,label\na,1\n,0\nb,1\n", encoding="utf-8")
    result, out = fit(runner, tmp_path, str(path))
    assert_user_error(result, "empty text", "row 2")
    assert not out.exists()


def test_fit_bad_pooling(runner, tmp_path, good_csv):
    result, out = fit(runner, tmp_path, str(good_csv), "--pooling", "median")
    assert_user_error(result, "pooling", "'median'", "'mean'", "'cls'")
    assert not out.exists()


def test_fit_unknown_builtin_split(runner, tmp_path):
    result, out = fit(runner, tmp_path, "tweets:validation")
    assert_user_error(result, "Unknown split 'validation'", "train, test")
    assert not out.exists()


def test_fit_sample_larger_than_data(runner, tmp_path, good_csv):
    result, out = fit(runner, tmp_path, str(good_csv), "--n-train", "500")
    assert_user_error(result, "500", "at most 20", "--n-train")
    assert not out.exists()


def test_fit_too_many_per_class(runner, tmp_path, good_csv):
    result, out = fit(runner, tmp_path, str(good_csv), "--n-per-class", "11")
    assert_user_error(result, "at most 10", "--n-per-class")
    assert not out.exists()


def test_fit_existing_output_is_untouched_by_a_failed_fit(runner, tmp_path):
    out = tmp_path / "runs" / "bundle"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("earlier run")
    result = runner.invoke(app, ["fit", str(tmp_path / "missing.csv"), "-o", str(out)])
    # the output is checked first: a folder this tool did not write is never replaced
    assert_user_error(result, "did not write (keep.txt)", "Choose another -o")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_probe_unknown_metric(runner, tmp_path, good_csv):
    result = runner.invoke(app, ["probe", str(good_csv), "--metric", "auc", "--plot", str(tmp_path / "p.png")])
    assert_user_error(result, "'auc'", "accuracy")
    assert not (tmp_path / "p.png").exists()


def test_debug_shows_the_traceback(runner, tmp_path):
    result = runner.invoke(app, ["--debug", "fit", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: File not found")


def _datasets_listing(runner) -> dict[str, list[str]]:
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "NAME:train" in result.stdout and "NAME:test" in result.stdout
    return {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:4]}


def test_datasets_lists_builtins(runner):
    listing = _datasets_listing(runner)
    assert set(listing) == {"movie-snippets", "bbc-news", "tweets"}
    for name, rows, classes in (("movie-snippets", 10568, 2), ("bbc-news", 2225, 5), ("tweets", 37197, 3)):
        cells = listing[name]
        assert int(cells[1]) == rows
        assert int(cells[2]) + int(cells[3]) == rows
        assert abs(int(cells[3]) - 0.2 * rows) <= classes  # 20% test, rounded per class
        assert int(cells[4]) == classes
        assert cells[5] in ("yes", "no")


# The fixed splits hold 2113 / 444 / 7439 test rows (stratified: rounded per class).
# Before a dataset is materialised, cli._builtin_test_size guesses round(0.2 * rows)
# instead (2114 / 445 / 7439), so the listing changes after the first load.
def test_datasets_lists_the_fixed_split_sizes_before_materialising(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("UNFREEZE_CACHE", str(tmp_path / "empty-cache"))
    listing = _datasets_listing(runner)
    assert all(cells[5] == "no" for cells in listing.values())
    assert listing["movie-snippets"][2:4] == ["8455", "2113"]
    assert listing["bbc-news"][2:4] == ["1781", "444"]
    assert listing["tweets"][2:4] == ["29758", "7439"]


def test_models_lists_catalog(runner):
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()]
    for name in ("minilm-l6", "mpnet-base", "smollm2-135m"):
        assert name in names
    minilm = next(line for line in result.stdout.splitlines() if line.startswith("minilm-l6"))
    assert " 6 " in minilm and "384" in minilm


def test_models_install_unknown_name(runner):
    result = runner.invoke(app, ["models", "install", "gpt-5"])
    assert_user_error(result, "gpt-5")


@pytest.mark.slow
def test_real_process_one_line_exit_2(tmp_path):
    out = tmp_path / "bundle"
    env = {**os.environ}
    env.pop("UNFREEZE_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "unfreeze", "fit", str(tmp_path / "missing.csv"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: File not found"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
