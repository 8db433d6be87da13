"""Reports: built from the results file alone (no torch, no model), plots, HTML, CSV, recommendation."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from unfreeze.report.tables import recommend, recommendation_sentence, summarise
from unfreeze.sweep import SweepSpec


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    from test_sweep import write_toy_csv
    from unfreeze.sweep.runner import run_sweep

    folder = tmp_path_factory.mktemp("report")
    spec = SweepSpec(
        data=str(write_toy_csv(folder / "train.csv", 64, 0)),
        test=str(write_toy_csv(folder / "test.csv", 24, 1)),
        model=str(tiny_model_dir("bert")),
        strategies=["features", "freeze", "lora"],
        k=[0, 1, 2],
        n_train=[8, 16],
        seeds=[0, 1],
        epochs=1,
        batch_size=8,
        validation_fraction=0.0,
        probe=True,
    )
    run_sweep(spec, folder / "run", progress=False)
    return folder / "run"


def test_report_builds_from_the_results_file_without_torch(finished_run, tmp_path):
    """Copy only the sweep's files, block torch, and build the report in a fresh interpreter."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.jsonl", "sweep.json", "probe.json"):
        shutil.copy(finished_run / name, copy / name)
    script = textwrap.dedent(f"""
        import sys
        from unfreeze.report import build_report
        result = build_report({str(copy)!r}, "macro_f1")
        heavy = [name for name in ("torch", "transformers", "peft") if name in sys.modules]
        assert not heavy, f"the report imported {{heavy}}"
        print(sorted(result["figures"]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "score_vs_k.png" in out.stdout and "score_vs_n.png" in out.stdout and "probe.png" in out.stdout
    for name in ("report.html", "results.csv", "score_vs_k.png", "score_vs_n.png", "cost.png", "probe.png"):
        assert (copy / name).stat().st_size > 0
    page = (copy / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # plots embedded: the page opens from disk alone
    assert "Recommendation" in page and "macro_f1" in page
    frame = pd.read_csv(copy / "results.csv")
    assert len(frame) == 2 * 2 * (1 + 3 + 1)
    assert set(frame["status"]) == {"done"}


def test_report_cli_prints_summary_and_recommendation(finished_run):
    from typer.testing import CliRunner

    from unfreeze.cli import app

    result = CliRunner().invoke(app, ["report", str(finished_run), "--metric", "mcc"])
    assert result.exit_code == 0, result.output
    assert "test mcc" in result.stdout
    assert result.stdout.count("- With ") == 2  # one recommendation per training size
    assert "report:" in result.stdout


def test_report_of_a_folder_without_results_is_one_clear_error(tmp_path):
    from typer.testing import CliRunner

    from unfreeze.cli import app

    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error:") and "no sweep results" in result.stderr


def _frame(rows):
    base = {"status": "done", "k": None, "train_accuracy": 1.0, "trainable_parameters": 0}
    return pd.DataFrame([base | r for r in rows])


def test_recommendation_picks_the_cheapest_configuration_not_shown_worse_paired_by_seed():
    rows = []
    for seed, (a, b, c) in enumerate([(0.80, 0.82, 0.70), (0.82, 0.84, 0.71), (0.81, 0.86, 0.69)]):
        rows += [
            {
                "strategy": "features",
                "label": "features",
                "n_train": 100,
                "seed": seed,
                "test_accuracy": a,
                "fit_seconds": 2.0,
            },
            {
                "strategy": "freeze",
                "label": "freeze k=0",
                "k": 0,
                "n_train": 100,
                "seed": seed,
                "test_accuracy": b,
                "fit_seconds": 60.0,
            },
            {
                "strategy": "lora",
                "label": "lora r=8",
                "n_train": 100,
                "seed": seed,
                "test_accuracy": c,
                "fit_seconds": 1.0,
            },
        ]
    frame = _frame(rows)
    summary = summarise(frame, "accuracy")
    best = summary.loc[summary["label"] == "freeze k=0"].iloc[0]
    assert best["test_mean"] == pytest.approx(0.84)
    assert best["test_se"] == pytest.approx(0.02 / 3**0.5)
    (pick,) = recommend(summary, "accuracy", frame)
    assert pick["best"] == "freeze k=0"
    # features is below freeze on every seed (paired differences -0.02, -0.02, -0.05): shown worse
    assert pick["pick"] == "freeze k=0"
    assert "the best of the sweep (mean over 3 seeds)" in recommendation_sentence(pick)

    # a second size where features is +0.025 higher: differences 0.005, 0.005, -0.025, whose 27 equally
    # likely resamples put the 95% interval at [-0.025, +0.005]: it reaches 0, so features wins on time
    more = [r | {"n_train": 200} for r in rows]
    for r in more:
        if r["label"] == "features":
            r["test_accuracy"] += 0.025
    frame = _frame(rows + more)
    picks = recommend(summarise(frame, "accuracy"), "accuracy", frame)
    assert [p["n_train"] for p in picks] == [100, 200]
    assert picks[1]["pick"] == "features" and picks[1]["best"] == "freeze k=0"
    assert (picks[1]["low"], picks[1]["high"]) == (pytest.approx(-0.025), pytest.approx(0.005))
    sentence = recommendation_sentence(picks[1])
    assert "paired difference to the best (freeze k=0, 0.840) is -0.005" in sentence
    assert "[-0.025, +0.005] over 3 seeds" in sentence and "30.0x less time" in sentence


def test_one_seed_says_there_are_no_error_bars():
    rows = [
        {
            "strategy": "features",
            "label": "features",
            "n_train": 100,
            "seed": 0,
            "test_accuracy": 0.80,
            "fit_seconds": 2.0,
        },
        {
            "strategy": "freeze",
            "label": "freeze k=0",
            "k": 0,
            "n_train": 100,
            "seed": 0,
            "test_accuracy": 0.805,
            "fit_seconds": 60.0,
        },
    ]
    frame = _frame(rows)
    (pick,) = recommend(summarise(frame, "accuracy"), "accuracy", frame)
    assert pick["pick"] == "freeze k=0" and "one seed: no error bars" in recommendation_sentence(pick)
    (loose,) = recommend(summarise(frame, "accuracy"), "accuracy", frame, tolerance=0.01)
    assert loose["pick"] == "features" and "one seed: no error bars" in recommendation_sentence(loose)
    from unfreeze.report import summary_table_text

    assert "(1 seed)" in summary_table_text(summarise(frame, "accuracy"), "accuracy")


def test_failed_cells_appear_in_the_table_but_not_in_the_summary(finished_run, tmp_path):
    from unfreeze.report import build_report
    from unfreeze.sweep import ResultsStore

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    ResultsStore(copy).append(
        {
            "key": "broken",
            "status": "failed",
            "error": "OutOfMemoryError: boom",
            "cell": {"strategy": "full", "label": "full", "n_train": 16, "seed": 0},
        }
    )
    result = build_report(copy)
    assert "full" not in set(result["summary"]["label"])
    assert "OutOfMemoryError: boom" in (copy / "report.html").read_text()


def test_interactive_plots_draw_each_finished_cell_once_with_its_record(tmp_path):
    """A point per finished cell (failed ones have no score); the cost plot leaves out a cell of no recorded time
    (its axis is logarithmic); the k plot holds the cells that set k; the tooltip's fields are the cell's."""
    from unfreeze.report import interactive

    frame = _frame(
        [
            {"key": "a", "strategy": "features", "label": "features", "n_train": 8, "seed": 0, "test_accuracy": 0.7,
             "fit_seconds": 1.5, "peak_memory_mib": 600.4},
            {"key": "b", "strategy": "freeze", "label": "freeze k=0", "k": 0, "n_train": 8, "seed": 0,
             "test_accuracy": 0.8, "fit_seconds": 3.0, "learning_rate": 5e-4},
            {"key": "c", "strategy": "freeze", "label": "freeze k=2", "k": 2, "n_train": 8, "seed": 0,
             "test_accuracy": 0.75, "fit_seconds": None},
            {"key": "d", "strategy": "freeze", "label": "freeze k=2", "k": 2, "n_train": 8, "seed": 1,
             "status": "failed"},
        ]
    )  # fmt: skip
    points = interactive.cell_points(frame, tmp_path, "accuracy")  # no results.jsonl: no rates tried
    assert [p["key"] for p in points] == ["a", "b", "c"]
    assert points[0] | {"slot": None, "size slot": None} == {
        "strategy": "features", "configuration": "features", "n": 8, "seed": 0, "k": None, "score": 0.7,
        "train": 1.0, "rate": "(none)", "rates tried": "(not tuned)", "fit s": 1.5, "peak MiB": 600, "key": "a",
        "slot": None, "size slot": None,
    }  # fmt: skip
    assert points[1]["rate"] == "0.0005" and points[1]["k"] == 0
    points[0]["configuration"] = "features </script><!--"  # a plugin's parameter could hold anything
    charts = interactive.sweep_charts(points, "accuracy")
    assert [(name, cells) for name, _, _, cells in charts] == [
        ("cells-by-size", 3),
        ("cells-by-cost", 2),
        ("cells-by-k", 2),
    ]
    spec = dict((name, spec) for name, _, spec, _ in charts)["cells-by-k"]
    assert sorted(p["key"] for p in spec["data"]["values"]) == ["b", "c"]
    page = interactive.section(charts)
    # three plots, each with its cell count; neither the inlined script nor a label closes an element early
    assert page.count("vegaEmbed('#") == 3 and page.count("data-cells='2'") == 2
    assert page.count("<script>") == page.count("</script>") == 5 and "<!--" not in page
