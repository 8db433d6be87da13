"""Sweeps, reports, the advisor and studies on tasks beyond one label per text (issue 28): every metric of the
task recorded, the task's default score ranked and drawn unless --metric names another, lower-is-better
metrics ranked ascending, and the files of single-label runs of earlier releases still read."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import assert_user_error
from unfreeze.cli import app
from unfreeze.errors import UnfreezeError
from unfreeze.sweep import ResultsStore, SweepSpec
from unfreeze.tasks import make_task

runner = CliRunner()

GOOD = ["good", "great", "fine", "lovely", "superb", "wonderful"]
BAD = ["bad", "awful", "poor", "dreadful", "terrible", "boring"]
REGRESSION = ("spearman", "pearson", "rmse", "mae", "r2")
MULTILABEL = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")


def write_task_data(path: Path, n: int, seed: int, task: str) -> Path:
    """JSON lines of film reviews: regression, the number of good words (0-3, plus noise); multilabel, "good"
    when most words are and "long" on every third text (some texts carry no label)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            good = rng.randint(0, 3)
            words = rng.sample(GOOD, good) + rng.sample(BAD, 3 - good)
            text = f"review {i}: the film was " + " and ".join(words)
            label: object = (
                round(good + rng.random() / 2, 3)
                if task == "regression"
                else [tag for tag, on in (("good", good >= 2), ("long", i % 3 == 0)) if on]
            )
            handle.write(json.dumps({"text": text, "label": label}) + "\n")
    return path


def tiny_spec(folder: Path, model: str, task: str, **settings) -> SweepSpec:
    train = write_task_data(folder / "train.jsonl", 64, 0, task)
    test = write_task_data(folder / "test.jsonl", 24, 1, task)
    return SweepSpec(
        data=str(train),
        test=str(test),
        model=model,
        task=task,
        n_train=[24],
        seeds=[0],
        epochs=1,
        batch_size=8,
        validation_size=12,
        **settings,
    )


@pytest.mark.parametrize(("task", "metrics"), [("regression", REGRESSION), ("multilabel", MULTILABEL)])
def test_a_sweep_records_every_metric_of_its_task(tiny_model_dir, tmp_path, task, metrics):
    from unfreeze.sweep.runner import run_sweep

    model = str(tiny_model_dir("bert"))
    # freeze searches two rates on the validation set: its row keeps the chosen fit's every metric there
    spec = tiny_spec(tmp_path, model, task, strategies=["features", "freeze"], k=[1], learning_rate=[1e-3, 1e-2])
    counts = run_sweep(spec, tmp_path / "run", progress=False)
    assert counts["done"] == 2 and counts["failed"] == 0
    rows = {r["cell"]["label"]: r for r in ResultsStore(tmp_path / "run").records()}
    assert set(rows) == {"features", "freeze k=1"}
    for row in rows.values():
        assert row["task"] == task
        assert set(row["test"]) == set(row["train"]) == set(metrics)
        assert set(metrics) <= set(row["validation"]) and row["validation"]["n"] == 12
        assert all(isinstance(v, float) for v in row["test"].values())
        assert not {"score", "metric"} & set(row["validation"])
    assert rows["freeze k=1"]["fit"]["tuned"] and len(rows["freeze k=1"]["fit"]["lr_search"]) == 2
    # the ridge head learns the number of good words: the scores say so, each in its own range
    if task == "regression":
        test = rows["features"]["test"]
        assert test["spearman"] > 0.5 and test["r2"] > 0.2 and 0 < test["mae"] <= test["rmse"]
    else:
        assert rows["features"]["test"]["micro_f1"] > 0.3
        assert 0 <= rows["features"]["test"]["hamming_loss"] <= 1
    assert json.loads((tmp_path / "run" / "sweep.json").read_text())["task"] == task


def test_the_spec_builds_the_task_with_its_settings_and_keys_cells_by_them(tmp_path):
    train = write_task_data(tmp_path / "train.jsonl", 32, 0, "multilabel")
    spec = SweepSpec(data=str(train), task="multilabel")
    per_label = SweepSpec(data=str(train), task="multilabel", thresholds="per-label")
    assert spec.task_object().params() == {"thresholds": "global"}
    assert per_label.task_object().params() == {"thresholds": "per-label"}
    # thresholds change what a cell decides: its key; the task itself is in the data's fingerprint
    assert "thresholds" not in spec.cell_settings("features")
    assert per_label.cell_settings("features")["thresholds"] == "per-label"
    assert "task" not in per_label.cell_settings("features")
    # a built-in's own task without --task; a file's is single
    assert SweepSpec(data="sts-b").task_name() == "regression"
    assert SweepSpec(data=str(train)).task_name() == "single"
    with pytest.raises(UnfreezeError, match=r"^--thresholds per-label sets multi-label .* the regression task has"):
        SweepSpec(data=str(train), task="regression", thresholds="per-label")
    with pytest.raises(UnfreezeError, match="Unknown task 'tags'"):
        SweepSpec(data=str(train), task="tags")


def test_a_single_label_sweep_keeps_its_keys_and_rows(tmp_path):
    from test_sweep import write_toy_csv

    train = write_toy_csv(tmp_path / "train.csv", 32, 0)
    plain, spelled = SweepSpec(data=str(train)), SweepSpec(data=str(train), task="single")
    assert plain.cell_settings("freeze") == spelled.cell_settings("freeze")
    assert "task" not in plain.training_settings() and "thresholds" not in plain.training_settings()


# -- reports, from result rows alone ------------------------------------------------------------------------

# test scores per configuration and seed: Spearman ranks freeze k=0 first, RMSE (lower is better) freeze k=2
SCORES = {
    "features": ("features", None, 1.0, [0.70, 0.71, 0.72], [0.50, 0.52, 0.51]),
    "freeze k=0": ("freeze", 0, 10.0, [0.80, 0.82, 0.81], [0.60, 0.62, 0.61]),
    "freeze k=2": ("freeze", 2, 5.0, [0.75, 0.74, 0.76], [0.40, 0.41, 0.42]),
}


def write_regression_run(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(folder)
    for label, (strategy, k, seconds, spearman, rmse) in SCORES.items():
        for seed in range(3):
            scores = {"spearman": spearman[seed], "pearson": spearman[seed], "rmse": rmse[seed], "mae": 0.3, "r2": 0.5}
            store.append(
                {
                    "key": f"{label}-{seed}",
                    "status": "done",
                    "task": "regression",
                    "cell": {
                        "strategy": strategy,
                        **({"k": k} if k is not None else {}),
                        "n_train": 32,
                        "seed": seed,
                        "label": label,
                    },
                    "train": {**scores, "spearman": 0.9},
                    "test": scores,
                    "validation": {"spearman": spearman[seed], "loss": 0.5, "n": 12},
                    "fit": {"seconds": seconds, "trainable_parameters": 10},
                }
            )
    spec = {"run_kind": "sweep", "spec": {"data": "scores.jsonl", "task": "regression"}, "num_blocks": 2, "n_test": 24}
    (folder / "sweep.json").write_text(json.dumps({**spec, "task": "regression"}))
    return folder


@pytest.fixture
def drawn(monkeypatch) -> list[tuple[str, str, str]]:
    """(x label, y label, title) of every figure the report finishes."""
    from unfreeze.report import plots

    seen: list[tuple[str, str, str]] = []
    original = plots._finish

    def spy(fig, ax, path, xlabel, ylabel, title):
        seen.append((xlabel, ylabel, title))
        return original(fig, ax, path, xlabel, ylabel, title)

    monkeypatch.setattr(plots, "_finish", spy)
    return seen


def test_a_regression_report_ranks_and_draws_spearman_and_lists_every_metric(tmp_path, drawn):
    from unfreeze.report import build_report

    run = write_regression_run(tmp_path / "run")
    result = build_report(run)
    assert result["metric"] == "spearman" and result["task"] == "regression"
    (pick,) = result["recommendations"]
    assert pick["pick"] == pick["best"] == "freeze k=0" and pick["pick_mean"] == pytest.approx(0.81)
    assert drawn == [
        ("frozen blocks k of 2 (0 = full fine-tuning)", "spearman", "spearman vs frozen blocks (mean ± std over seeds)")
    ]
    columns = set(result["frame"].columns)
    assert {f"test_{m}" for m in REGRESSION} <= columns and "test_accuracy" not in columns
    page = (run / "report.html").read_text()
    assert "".join(f"<th>test {m}</th>" for m in REGRESSION) in page and "Metric: spearman." in page


def test_metric_rmse_ranks_ascending(tmp_path, drawn):
    from unfreeze.report import build_report

    result = build_report(write_regression_run(tmp_path / "run"), "rmse")
    (pick,) = result["recommendations"]
    # the lowest RMSE is the best; the others are worse on every seed: shown worse, so not picked
    assert pick["best"] == pick["pick"] == "freeze k=2" and pick["best_mean"] == pytest.approx(0.41)
    table = {r["configuration"]: r for r in pick["comparison"]}
    assert [r["configuration"] for r in pick["comparison"]] == ["freeze k=2", "features", "freeze k=0"]
    assert table["features"]["diff"] == pytest.approx(0.10) and table["features"]["significant"]
    assert table["freeze k=0"]["low"] == pytest.approx(0.19) and table["freeze k=0"]["high"] == pytest.approx(0.21)
    assert not table["features"]["acceptable"] and table["freeze k=2"]["diff"] == 0.0
    assert drawn[0][1] == "rmse" and drawn[0][2].startswith("rmse vs frozen blocks")


def test_the_report_command_names_the_metric_and_refuses_one_the_task_lacks(tmp_path, drawn):
    run = write_regression_run(tmp_path / "run")
    result = runner.invoke(app, ["report", str(run), "--metric", "rmse"])
    assert result.exit_code == 0, result.output
    assert "test rmse" in result.output.splitlines()[0]
    assert "use freeze k=2: test rmse 0.410" in result.output
    bad = runner.invoke(app, ["report", str(run), "--metric", "accuracy"])
    assert_user_error(bad, "'accuracy' is not a metric of the regression task", "spearman, pearson, rmse, mae, r2")
    unknown = runner.invoke(app, ["report", str(run), "--metric", "auc"])
    assert_user_error(unknown, "Unknown metric 'auc'")


def test_sweep_refuses_a_metric_the_data_task_does_not_report_before_any_cell(tmp_path):
    from test_sweep import write_toy_csv

    train = write_toy_csv(tmp_path / "train.csv", 32, 0)
    result = runner.invoke(app, ["sweep", str(train), "-o", str(tmp_path / "run"), "--metric", "rmse"])
    assert_user_error(result, "--metric 'rmse' is not a metric of the single task", "accuracy, macro_f1, mcc")
    assert not (tmp_path / "run").exists()


def test_single_label_rows_of_earlier_releases_report_accuracy(tmp_path):
    from unfreeze.report import build_report

    folder = tmp_path / "old"
    folder.mkdir()
    store = ResultsStore(folder)
    for label, score in (("features", 0.7), ("freeze k=1", 0.8)):
        scores = {"accuracy": score, "macro_f1": score - 0.1, "mcc": score - 0.3}
        store.append(
            {
                "key": label,
                "status": "done",
                "cell": {"strategy": label.split()[0], "n_train": 16, "seed": 0, "label": label},
                "train": scores,
                "test": scores,
                "validation": {"accuracy": score, "loss": 0.4, "n": 8},
                "fit": {"seconds": 1.0, "trainable_parameters": 5},
            }
        )
    (folder / "sweep.json").write_text(json.dumps({"spec": {"data": "x.csv"}, "num_blocks": 2}))
    result = build_report(folder)
    assert result["metric"] == "accuracy" and result["task"] == "single"
    assert result["recommendations"][0]["best"] == "freeze k=1"
    assert {"test_accuracy", "test_macro_f1", "test_mcc"} <= set(result["frame"].columns)


# -- the advisor ----------------------------------------------------------------------------------------------


def _advise_row(label: str, n: int, seed: int, score: float, metric: str = "spearman") -> dict:
    strategy = label.split()[0]
    return {
        "status": "done",
        "cell": {"label": label, "strategy": strategy, "n_train": n, "seed": seed},
        "validation": {metric: score, "loss": 1 - score, "n": 200},
        "started": 0.0,
        "finished": 2.0,
        "fit": {"learning_rate": 1e-4, "trainable_parameters": 10, "peak_memory_bytes": 2**20},
        "predict_seconds_per_text": 0.001,
    }


def test_the_advisor_ranks_a_regression_by_spearman_and_refuses_lower_is_better_metrics(tmp_path):
    from unfreeze.advise.halving import AdviseSpec, rank
    from unfreeze.advise.rungs import ranked_score

    data = str(write_task_data(tmp_path / "scores.jsonl", 32, 0, "regression"))
    spec = AdviseSpec(data=data, task="regression")
    assert spec.ranking_metric() == "spearman"
    rows = {
        label: [_advise_row(label, 64, s, v) for s, v in enumerate(values)]
        for label, values in {"a": [0.6, 0.7], "b": [0.8, 0.9], "c": [0.5, 0.5]}.items()
    }
    ranking = rank(rows, spec.ranking_metric())
    assert [r["configuration"] for r in ranking] == ["b", "a", "c"]
    assert [r["val_score"] for r in ranking] == pytest.approx([0.85, 0.65, 0.5])
    assert "val_accuracy" not in ranking[0] and ranked_score({"val_accuracy": 0.7}) == 0.7  # earlier decisions
    with pytest.raises(UnfreezeError, match=r"^--metric rmse is lower-is-better; .* Rank by one of: spearman, "):
        AdviseSpec(data=data, task="regression", metric="rmse").check()
    with pytest.raises(UnfreezeError, match="'accuracy' is not a metric of the regression task"):
        AdviseSpec(data=data, task="regression", metric="accuracy").check()
    assert AdviseSpec(data=data, task="regression", metric="pearson").ranking_metric() == "pearson"


def test_plan_ids_of_single_label_runs_do_not_change(tmp_path):
    from unfreeze.advise.halving import AdviseSpec

    data = str(write_task_data(tmp_path / "scores.jsonl", 32, 0, "regression"))
    plain = AdviseSpec(data=data).plan_id()
    assert AdviseSpec(data=data, task="single").plan_id() == plain
    assert AdviseSpec(data=data, metric="accuracy").plan_id() == plain
    assert AdviseSpec(data=data, metric="mcc").plan_id() != plain
    regression = AdviseSpec(data=data, task="regression").plan_id()
    assert regression != plain and AdviseSpec(data=data, task="regression", metric="spearman").plan_id() == regression


def test_the_plan_names_the_metric_it_ranked_and_plans_of_earlier_releases_read(tmp_path):
    from unfreeze.advise.halving import AdviseRun, AdviseSpec, Configuration
    from unfreeze.advise.plan import make_plan
    from unfreeze.advise.render import plan_text, score_metric

    data = str(write_task_data(tmp_path / "scores.jsonl", 32, 0, "regression"))
    spec = AdviseSpec(data=data, model="m", strategies=["features", "freeze"], seeds=[0, 1, 2], task="regression")
    configs = [Configuration("features", (), True), Configuration("freeze", (("k", 1),), False)]
    rows = [
        _advise_row(label, n, s, 0.95 - 2.0 / n**0.5 + 0.01 * s - (0.1 if label == "features" else 0.0))
        for label in ("features", "freeze k=1")
        for n in (64, 128, 256)
        for s in range(3)
    ]
    run = AdviseRun(spec, tmp_path, [64, 128, 256, 800], configs, 800, 0, rows, [], "budget", 60.0, 5.0)
    plan = make_plan(run)
    assert plan["score_metric"] == "spearman" and plan["metric"] == "validation spearman"
    assert plan["recommendation"]["configuration"] == "freeze k=1"
    assert "freeze k=1: validation spearman 0.835 at 256 examples" in plan["recommendation"]["why"]
    text = plan_text(plan)
    header = next(line for line in text.splitlines() if line.startswith("configuration"))
    assert "pred. spearman at N" in header
    # a plan written before tasks: no score_metric, read as accuracy
    old = {k: v for k, v in plan.items() if k != "score_metric"}
    assert score_metric(old) == "accuracy" and "pred. acc at N" in plan_text(old)


# -- studies and the probe ---------------------------------------------------------------------------------


def test_a_study_reads_its_tasks_default_score_unless_its_file_names_one(tmp_path):
    from unfreeze.studies.findings import context_of
    from unfreeze.studies.spec import study_from_dict

    raw = {
        "study": {"title": "t", "claim": "c", "source": "s", "analysis": "cost_vs_k"},
        "sweep": {"strategies": ["freeze"], "grid": {"freeze": {"k": [0, 1]}}},
        "verdict": {"holds": "half_diff > -1", "explain": "e"},
    }
    study = study_from_dict(raw, tmp_path / "s.toml")
    assert study.metric is None and study.metric_for(None) == "accuracy"
    context = context_of({"task": "regression"}, study, None)
    assert context.metric == "spearman" and context.sign == 1.0
    raw["study"]["metric"] = "rmse"
    lower = study_from_dict(raw, tmp_path / "s.toml")
    assert context_of({"task": "regression"}, lower, None).sign == -1.0
    with pytest.raises(UnfreezeError, match="'rmse' is not a metric of the single task"):
        lower.metric_for("single")


def test_the_probe_scores_every_metric_of_the_task_per_layer(tiny_model_dir, tmp_path):
    from unfreeze.data import load_data
    from unfreeze.features.probe import format_probe_table, run_probe

    train = load_data(str(write_task_data(tmp_path / "train.jsonl", 32, 0, "regression")), task="regression")
    test = load_data(str(write_task_data(tmp_path / "test.jsonl", 16, 1, "regression")), task="regression")
    rows = run_probe(train, test, str(tiny_model_dir("bert")), pooling="mean", progress=False)
    assert [r["layer"] for r in rows][-1].startswith("concat") and all(r["task"] == "regression" for r in rows)
    assert all(set(r["test"]) == set(REGRESSION) and "alpha" in r for r in rows)
    lines = format_probe_table(rows).splitlines()
    assert lines[0].split() == ["layer", "train", "spearman", "test", "spearman"]
    assert f"{rows[0]['test']['spearman']:.4f}" in lines[1]
    assert format_probe_table(rows, "rmse").splitlines()[0].split()[-1] == "rmse"
    with pytest.raises(UnfreezeError, match="'accuracy' is not a metric of the regression task"):
        format_probe_table(rows, "accuracy")
    assert make_task("regression").default_metric == "spearman"


def test_cells_are_keyed_by_whether_their_batches_are_grouped_by_length(tmp_path):
    from unfreeze.strategies.freeze import Freeze

    train = write_task_data(tmp_path / "train.jsonl", 32, 0, "multilabel")
    # multi-label trains on shuffled batches by default: its cells' keys say so (earlier grouped cells differ)
    multilabel = SweepSpec(data=str(train), task="multilabel")
    assert not multilabel.groups_by_length() and multilabel.cell_settings("freeze")["group_by_length"] is False
    grouped = SweepSpec(data=str(train), task="multilabel", group_by_length=True)
    assert grouped.groups_by_length() and "group_by_length" not in grouped.cell_settings("freeze")
    # single-label groups by default: saying so keeps the key; turning it off changes it and reaches the cells
    single = SweepSpec(data=str(train), task="single")
    assert single.cell_settings("freeze") == SweepSpec(
        data=str(train), task="single", group_by_length=True
    ).cell_settings("freeze")
    off = SweepSpec(data=str(train), task="single", group_by_length=False)
    assert off.cell_settings("freeze")["group_by_length"] is False
    assert off.training_for(Freeze)["group_by_length"] is False
