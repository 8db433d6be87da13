"""Studies: the study files, their verdict rules on constructed results, the two-way model, the command.

Verdict rules are tested on result rows built by hand (a run folder with study.json and the
arms' results.jsonl, no model): for each study in ``studies/``, one set of rows under which
its claim holds and one under which it does not. The command runs on tiny random models and
a small CSV (``--data``/``--model``), resumes after SIGKILL, and refuses bad input with one
line and exit code 2 before anything is written.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import assert_user_error
from unfreeze.cli import app
from unfreeze.errors import UnfreezeError
from unfreeze.studies import analyse, load_study, two_way_anova
from unfreeze.studies.findings import seed_interval_caveat
from unfreeze.studies.results import STUDY_FORMAT, write_meta
from unfreeze.studies.rules import check_rule, decide, evaluate
from unfreeze.studies.runner import _arm_spec, _sizes
from unfreeze.sweep import ResultsStore, expand

STUDIES = Path(__file__).resolve().parent.parent / "studies"
STUDY_FILES = sorted(STUDIES.glob("*.toml"))


def write_csv(path: Path, n: int, seed: int = 0) -> Path:
    good, bad = ["good", "great", "fine", "lovely", "superb", "wonderful"], ["bad", "awful", "poor", "dreadful"]
    rng = random.Random(seed)
    lines = ["text,label"] + [
        f"the film was {rng.choice(good if i % 2 == 0 else bad)} and "
        f"{rng.choice(['long', 'short', 'new', 'old'])},{'pos' if i % 2 == 0 else 'neg'}"
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the study files --------------------------------------------------------------------------------


def test_there_are_nine_studies_each_numbered_and_runnable_on_the_built_in_data():
    studies = [load_study(p) for p in STUDY_FILES]
    assert sorted(s.number for s in studies) == list(range(1, 10))
    for study in studies:
        assert study.claim and study.source and study.verdict["explain"] and study.design
        assert set(study.datasets) == {"movie-snippets", "bbc-news", "tweets"}
        assert "minilm-l6" in study.models


def test_depth_relative_values_resolve_per_model():
    study = load_study(STUDIES / "freeze-depth.toml")
    ks = {L: study.arm_settings(study.arms[0], num_blocks=L)["grid"]["freeze"]["k"] for L in (2, 6, 12)}
    assert ks == {2: [0, 1, 2], 6: [0, 2, 4, 5, 6], 12: [0, 4, 8, 11, 12]}


def test_quick_is_one_seed_the_smallest_sizes_one_epoch_and_no_rate_search():
    study = load_study(STUDIES / "freeze-depth.toml")
    full, quick = study.arm_settings(study.arms[0]), study.arm_settings(study.arms[0], quick=True)
    assert full["learning_rate"] == "auto" and full["seeds"] == [0, 1, 2]
    assert quick["seeds"] == [0] and quick["epochs"] == 1 and quick["learning_rate"] == "fixed"
    assert quick["n_train"] == [100, 200]  # the two-way model needs two sizes; capped at 200 examples
    setfit = load_study(STUDIES / "setfit.toml")
    assert setfit.arm_settings(setfit.arms[0], quick=True)["n_per_class"] == [8]


# -- verdict rules on constructed results ------------------------------------------------------------

L = 6


def _noise(*parts: object, scale: float = 0.004) -> float:
    """A fixed pseudo-random offset per (configuration, size, seed): residual variance for the models."""
    rng = np.random.default_rng([zlib.crc32(str(p).encode()) for p in parts])
    return float(rng.normal(0, scale))


def _seed_offset(seed: int) -> float:
    return 0.004 * (seed - 1)  # shared by every configuration of a seed: its sample was easier or harder


def synthetic_run(
    tmp_path: Path,
    study_file: str,
    metrics,
    n_classes: int = 2,
    majority: float = 0.5,
    drop: tuple[str, ...] = (),
    data: str = "synthetic",
) -> Path:
    """A study run folder with rows built by ``metrics(config, strategy, params, n, seed) -> dict``
    (test, train, seconds, memory_mib, trainable); configurations in ``drop`` have no rows."""
    study = load_study(STUDIES / study_file)
    run = tmp_path / study.name
    meta = {
        "format": STUDY_FORMAT,
        "version": 1,
        "name": study.name,
        "data": data,
        "model": "synthetic",
        "quick": False,
        "test": None,
        "study": study.as_dict(),
        "study_file": f"studies/{study_file}",
        "output": str(run),
        "num_blocks": L,
        "data_summary": {
            "train_pool": 5000,
            "n_test": 1000,
            "train_class_counts": {"a": 2500, "b": 2500},
            "test_class_counts": {"a": 500, "b": 500},
        },
        "majority": {"class": "a", "accuracy": majority, "macro_f1": majority / 1.5, "mcc": 0.0},
        "arms": [],
        "invocations": [{"seconds": 12.0, "machine": "test machine"}],
    }
    for arm in study.arms:
        settings = study.arm_settings(arm, num_blocks=L)
        sizes, per_class = _sizes(settings, n_classes)
        spec = _arm_spec(settings, sizes, study, arm.name)
        cells = expand(spec, L)
        labels = list(dict.fromkeys(c.label for c in cells))
        configs = {label: arm.config_label(label, len(labels) == 1) for label in labels}
        store = ResultsStore(run / "arms" / arm.name)
        keys = []
        for cell in cells:
            key = f"{arm.name}:{cell.label}:{cell.n_train}:{cell.seed}"
            keys.append(key)
            if configs[cell.label] in drop:
                continue
            m = metrics(configs[cell.label], cell.strategy, dict(cell.params), cell.n_train, cell.seed)
            test, train = m["test"], m.get("train", min(1.0, m["test"] + 0.05))
            store.append(
                {
                    "key": key,
                    "status": "done",
                    "started": 0.0,
                    "finished": m.get("seconds", 10.0) + 1,
                    "cell": {
                        "strategy": cell.strategy,
                        **dict(cell.params),
                        "n_train": cell.n_train,
                        "seed": cell.seed,
                        "label": cell.label,
                    },
                    "test": {"accuracy": test, "macro_f1": test, "mcc": 2 * test - 1},
                    "train": {"accuracy": train, "macro_f1": train, "mcc": 2 * train - 1},
                    "fit": {
                        "seconds": m.get("seconds", 10.0),
                        "peak_memory_bytes": m.get("memory_mib", 900) * 2**20,
                        "trainable_parameters": m.get("trainable", 1000),
                        "total_parameters": 22_000_000,
                    },
                }
            )
        meta["arms"].append(
            {
                "name": arm.name,
                "label": arm.label,
                "folder": f"arms/{arm.name}",
                "keys": keys,
                "configs": configs,
                "sizes": sizes,
                "per_class": {str(n): p for n, p in per_class.items()},
                "spec": spec.as_dict(),
            }
        )
    write_meta(run, meta)
    return run


def _freeze_depth(holds):
    def metrics(config, strategy, params, n, seed):
        unfrozen = L - params["k"]
        size = 0.05 * math.log10(n / 100)
        trend = 0.03 * unfrozen if holds else -0.02 * unfrozen
        return {"test": 0.6 + trend + size + _seed_offset(seed) + _noise(params["k"], n, seed)}

    return metrics


def _train_test_gap(holds):
    def metrics(config, strategy, params, n, seed):
        blocks = (L - params["k"]) if strategy == "freeze" else (L - params["m"])
        if strategy == "freeze":
            test, train = 0.70 + 0.01 * blocks, 0.72 + 0.04 * blocks
        else:
            test, train = 0.60 + 0.02 * blocks, 0.62 + 0.05 * blocks
        if not holds:  # training scores saturate: the gap shrinks as test scores rise
            train = 0.99
        return {"test": test + _seed_offset(seed), "train": train + _noise(config, seed, scale=0.002)}

    return metrics


def _frozen_head(holds):
    scores = (
        {"features": 0.75, 6: 0.60, 5: 0.82, 4: 0.84, 2: 0.85, 0: 0.86}
        if holds
        else {"features": 0.52, 6: 0.51, 5: 0.53, 4: 0.62, 2: 0.72, 0: 0.86}
    )

    def metrics(config, strategy, params, n, seed):
        base = scores["features"] if strategy == "features" else scores[params["k"]]
        return {"test": base + _seed_offset(seed)}

    return metrics


def _by_config(table: dict, default: float | None = None, trainable: dict | None = None):
    def metrics(config, strategy, params, n, seed):
        return {
            "test": table.get(config, default) + _seed_offset(seed) + _noise(config, n, seed, scale=0.001),
            "trainable": (trainable or {}).get(config, 1000),
        }

    return metrics


def _cost_vs_k(holds):
    def metrics(config, strategy, params, n, seed):
        k = params["k"]
        test = 0.85 - 0.001 * k if holds else (0.85 if k == 0 else 0.80 - 0.02 * k)
        return {
            "test": test + _seed_offset(seed),
            "seconds": 100.0 * (L - k) / L + 1,
            "memory_mib": 1000 + 100 * (L - k),
            "trainable": 1000 + 3_000_000 * (L - k),
        }

    return metrics


FEATURES = [
    "features: embeddings",
    "features: second-to-last",
    "features: last",
    "features: last four concatenated",
    "mix: last four",
    "mix: every layer",
    "BiLSTM: last four",
]
SCENARIOS = {
    "freeze-depth.toml": (_freeze_depth(True), _freeze_depth(False)),
    "train-test-gap.toml": (_train_test_gap(True), _train_test_gap(False)),
    "frozen-head.toml": (_frozen_head(True), _frozen_head(False)),
    "reinit-top.toml": (
        _by_config({"full fine-tuning": 0.80, "reinit m=1": 0.83, "reinit m=2": 0.81, "reinit m=3": 0.79}),
        _by_config({"full fine-tuning": 0.80, "reinit m=1": 0.78, "reinit m=2": 0.77, "reinit m=3": 0.75}),
    ),
    "feature-based.toml": (
        _by_config(
            {"full fine-tuning": 0.85, "BiLSTM: last four": 0.845, "features: last four concatenated": 0.84},
            default=0.80,
        ),
        _by_config({"full fine-tuning": 0.90}, default=0.80),
    ),
    "features-vs-finetune.toml": (
        _by_config({"full fine-tuning": 0.85, "features: last": 0.845}),
        _by_config({"full fine-tuning": 0.85, "features: last": 0.75}),
    ),
    "setfit.toml": (
        _by_config({"SetFit": 0.80, "full fine-tuning": 0.70, "features: last": 0.75}),
        _by_config({"SetFit": 0.60, "full fine-tuning": 0.70, "features: last": 0.75}),
    ),
    "cost-vs-k.toml": (_cost_vs_k(True), _cost_vs_k(False)),
    "lora.toml": (
        _by_config(
            {"full fine-tuning": 0.85, "LoRA r=8": 0.848},
            trainable={"full fine-tuning": 22_000_000, "LoRA r=8": 110_000},
        ),
        _by_config(
            {"full fine-tuning": 0.85, "LoRA r=8": 0.75},
            trainable={"full fine-tuning": 22_000_000, "LoRA r=8": 110_000},
        ),
    ),
}


def test_every_study_file_has_scenarios():
    assert set(SCENARIOS) == {p.name for p in STUDY_FILES}


@pytest.mark.parametrize("study_file", sorted(SCENARIOS))
@pytest.mark.parametrize("case", ["holds", "does not hold here"])
def test_each_verdict_rule_on_constructed_results(tmp_path, study_file, case):
    metrics = SCENARIOS[study_file][0 if case == "holds" else 1]
    run = synthetic_run(tmp_path, study_file, metrics)
    findings = analyse(run, draw=False)
    assert findings.verdict.verdict == case, (findings.verdict, findings.result.quantities)
    assert findings.complete and findings.verdict_label == case
    for table in findings.result.tables:  # every column of every table is named
        assert all(header.strip() for header in table.headers), (table.title, table.headers)


def test_a_run_missing_a_configuration_is_inconclusive_and_says_it_is_partial(tmp_path):
    run = synthetic_run(tmp_path, "lora.toml", SCENARIOS["lora.toml"][0], drop=("LoRA r=8",))
    findings = analyse(run, draw=False)
    assert findings.verdict.verdict == "inconclusive"
    assert "lora_high" in findings.verdict.missing
    assert findings.counts == {"planned": 6, "done": 3, "failed": 0, "pending": 3, "reused": 0}
    assert findings.verdict_label == "inconclusive (partial: 3 of 6 cells)"


def test_findings_markdown_holds_the_claim_the_rule_the_numbers_and_the_plot(tmp_path):
    from unfreeze.studies import write_findings

    run = synthetic_run(tmp_path, "reinit-top.toml", SCENARIOS["reinit-top.toml"][0])
    findings = write_findings(run)
    text = (run / "FINDINGS.md").read_text()
    study = load_study(STUDIES / "reinit-top.toml")
    assert text.startswith(f"# Study 4: {study.title}")
    assert study.claim in text and study.source in text
    assert "## Verdict: holds" in text and f"`{study.verdict['holds']}`" in text
    # the paired difference of reinit m=1 - full fine-tuning (0.03 on every seed) with its interval
    m1 = findings.result.quantities
    assert m1["m1"] == pytest.approx(0.03, abs=0.003) and m1["m1_low"] <= m1["m1"] <= m1["m1_high"]
    assert f"| **m1_low** | {m1['m1_low']:.4f}".rstrip("0") in text
    assert "(comparison.png)" in text and (run / "comparison.png").stat().st_size > 1000
    # three seeds: the page says what its 95% intervals are (the range of the seeds)
    assert seed_interval_caveat(3) in text and "once in 8" in seed_interval_caveat(3)


@pytest.mark.parametrize("n_seeds", [2, 3, 4, 5, 8])
def test_the_seed_caveat_appears_exactly_when_the_interval_is_the_range_of_the_seeds(n_seeds):
    from unfreeze.report.stats import bootstrap_interval

    values = [0.01 * i**1.5 for i in range(n_seeds)]  # distinct, uneven
    is_range = bootstrap_interval(values) == pytest.approx((min(values), max(values)))
    assert (seed_interval_caveat(n_seeds) is not None) == is_range
    assert is_range == (n_seeds <= 3)


# -- the rules themselves ---------------------------------------------------------------------------


def test_rules_follow_three_valued_logic_and_run_no_code():
    nan = math.nan
    assert evaluate("a > 0 or b > 0", {"a": 1.0, "b": nan}) is True
    assert evaluate("a > 0 and b > 0", {"a": -1.0, "b": nan}) is False
    assert evaluate("a > 0 and b > 0", {"a": 1.0, "b": nan}) is None
    assert evaluate("max(a, b, 0.5) >= 0.5 and abs(a) < 2 * b", {"a": -1.0, "b": 0.6}) is True
    assert evaluate("0 < a <= 1", {"a": 1.0}) is True
    assert decide({"holds": "a > 0", "partly": "b > 0"}, {"a": -1.0, "b": 1.0}).verdict == "partly"
    assert decide({"holds": "a > 0", "partly": "b > 0"}, {"a": -1.0, "b": nan}).verdict == "inconclusive"
    assert decide({"holds": "a > 0", "partly": ""}, {"a": -1.0}).verdict == "does not hold here"
    for bad in ("__import__('os').system('true')", "a.real > 0", "[a][0] > 0", "a if a else 0", "'x' > 0", "exec('1')"):
        with pytest.raises(UnfreezeError):
            check_rule(bad, {"a"}, "rule")
    with pytest.raises(UnfreezeError, match="reads 'typo'"):
        check_rule("typo > 0", {"a", "b"}, "studies/x.toml: [verdict] holds")


# -- the two-way model --------------------------------------------------------------------------------


def _two_way_data(interaction: float, seeds: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k in (0, 2, 4, 6):
        for n_index, n in enumerate((100, 300, 1000)):
            for _ in range(seeds):
                # main effects of k and size; the interaction makes unfreezing pay only at larger sizes
                score = 0.6 + 0.02 * (6 - k) + 0.05 * n_index + interaction * (6 - k) * (n_index - 1)
                rows.append({"k": k, "n": n, "unfrozen": 6 - k, "score": score + rng.normal(0, 0.01)})
    return pd.DataFrame(rows)


def _balanced_interaction_ss(data: pd.DataFrame) -> float:
    """SS(k x n) of a balanced design, by hand: r * sum (cell mean - row mean - column mean + grand mean)^2."""
    cell = data.groupby(["k", "n"])["score"].mean()
    row, col, grand = data.groupby("k")["score"].mean(), data.groupby("n")["score"].mean(), data["score"].mean()
    r = len(data) / len(cell)
    return float(r * sum((cell[(k, n)] - row[k] - col[n] + grand) ** 2 for k, n in cell.index))


def test_two_way_model_finds_an_interaction_that_is_there():
    data = _two_way_data(interaction=0.02)
    out = two_way_anova(data)
    assert out["interaction_p"] < 1e-6 and out["interaction_eta2"] > 0.5
    assert out["residual_df"] == len(data) - 12
    resid = float(((data["score"] - data.groupby(["k", "n"])["score"].transform("mean")) ** 2).sum())
    ss = _balanced_interaction_ss(data)
    assert out["interaction_eta2"] == pytest.approx(ss / (ss + resid), rel=1e-9)


def test_two_way_model_finds_none_where_there_is_none():
    data = _two_way_data(interaction=0.0)
    out = two_way_anova(data)
    assert out["interaction_p"] > 0.05 and out["interaction_eta2"] < 0.2
    assert out["k_p"] < 1e-6 and out["slope"] == pytest.approx(0.02, abs=0.003)
    assert out["slope_low"] > 0
    # one observation per (k, size): no residual, nothing to test the interaction against
    single = two_way_anova(_two_way_data(interaction=0.0, seeds=1))
    assert single["residual_df"] == 0 and math.isnan(single["interaction_p"])


# -- the command: overrides, reuse, resume ------------------------------------------------------------


def test_data_and_model_overrides_run_a_study_on_a_csv_with_a_tiny_model(runner, tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", 300)
    model = tiny_model_dir("bert")
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["study", str(STUDIES / "freeze-depth.toml"), "--data", str(data), "--model", model, "--quick", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "study.json").read_text())
    assert (meta["data"], meta["model"], meta["num_blocks"], meta["quick"]) == (str(data), model, 2, True)
    rows = ResultsStore(out / "arms" / "main").records()
    # k = 0, L/3, 2L/3, L-1, L on a 2-block model: 0, 1, 2; at the quick sizes, one seed
    assert sorted({(r["cell"]["k"], r["cell"]["n_train"]) for r in rows}) == [
        (k, n) for k in (0, 1, 2) for n in (100, 200)
    ]
    assert {r["model"] for r in rows} == {model} and {r["data"] for r in rows} == {str(data)}
    text = (out / "FINDINGS.md").read_text()
    assert f"| Data | {data} (training pool 240 texts" in text and f"| Model | {model} (2 blocks) |" in text
    assert "Quick run" in text and (out / "score_vs_k.png").exists()
    assert "verdict: inconclusive (quick run: not evidence)" in result.stdout  # one seed: no interval
    # the same folder with other data is another run: refused, nothing changed
    other = write_csv(tmp_path / "other.csv", 300, seed=1)
    before = (out / "study.json").read_bytes()
    again = runner.invoke(
        app,
        [
            "study",
            str(STUDIES / "freeze-depth.toml"),
            "--data",
            str(other),
            "--model",
            model,
            "--quick",
            "-o",
            str(out),
        ],
    )
    assert_user_error(again, "holds a run of study 'freeze-depth'", "Choose another -o")
    assert (out / "study.json").read_bytes() == before


def test_reuse_copies_cells_with_the_same_key_and_runs_the_rest(runner, tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", 300)
    model = tiny_model_dir("bert")
    first, second = tmp_path / "runs" / "features-vs-finetune", tmp_path / "runs" / "frozen-head"
    args = ["--data", str(data), "--model", model, "--quick"]
    assert (
        runner.invoke(app, ["study", str(STUDIES / "features-vs-finetune.toml"), *args, "-o", str(first)]).exit_code
        == 0
    )
    result = runner.invoke(
        app, ["study", str(STUDIES / "frozen-head.toml"), *args, "--reuse", str(tmp_path / "runs"), "-o", str(second)]
    )
    assert result.exit_code == 0, result.output
    # frozen-head's features cell and its full fine-tuning cell (freeze k=0) are features-vs-finetune's: copied
    reused = [
        r for arm in ("head", "unfrozen") for r in ResultsStore(second / "arms" / arm).records() if r.get("reused_from")
    ]
    assert sorted(r["cell"]["label"] for r in reused) == ["features", "freeze k=0"]
    original = {r["key"]: r for arm in ("full", "features") for r in ResultsStore(first / "arms" / arm).records()}
    for row in reused:
        assert row["test"] == original[row["key"]]["test"]
    meta = json.loads((second / "study.json").read_text())
    assert meta["invocations"][-1]["cells_reused"] == 2 and meta["invocations"][-1]["cells_run"] == 2
    findings = analyse(second, draw=False)
    assert findings.counts["reused"] == 2 and findings.counts["done"] == 4


def test_summary_page_lists_verdicts_per_data_and_model_and_what_was_not_run(runner, tmp_path):
    holds = synthetic_run(tmp_path / "a", "lora.toml", SCENARIOS["lora.toml"][0])
    fails = synthetic_run(tmp_path / "b", "reinit-top.toml", SCENARIOS["reinit-top.toml"][1])
    page = tmp_path / "docs" / "FINDINGS.md"
    result = runner.invoke(
        app, ["study", "--summary", str(tmp_path / "a"), str(fails), "--studies", str(STUDIES), "-o", str(page)]
    )
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert f"unfreeze study --summary {tmp_path / 'a'} {fails} --studies {STUDIES} -o {page} --overwrite" in text
    assert "| 4 | Re-initialising the top blocks helps with a few thousand examples | [does not hold here](" in text
    assert (
        "| 9 | LoRA reaches fine-tuning's score with few trainable parameters | [holds](../a/lora/FINDINGS.md) |"
        in text
    )
    assert "freeze-depth on movie-snippets with minilm-l6: not run." in text
    assert text.count(seed_interval_caveat(3)) == 1  # both runs have three seeds: said once, above the table
    assert (holds / "FINDINGS.md").exists() and (fails / "FINDINGS.md").exists()
    # the page exists now: replacing it takes --overwrite
    again = runner.invoke(app, ["study", "--summary", str(fails), "-o", str(page)])
    assert_user_error(again, "already exists", "--overwrite")


def test_the_committed_findings_are_what_their_command_regenerates(runner, tmp_path, monkeypatch):
    """docs/FINDINGS.md and every run's page must come from the committed result stores, not from a hand edit or
    an older version of the analysis: rebuild them in a copy with the command the page names, and compare."""
    docs = STUDIES.parent / "docs"
    shutil.copytree(docs / "findings", tmp_path / "docs" / "findings")
    shutil.copytree(STUDIES, tmp_path / "studies")
    monkeypatch.chdir(tmp_path)
    committed = (docs / "FINDINGS.md").read_text()
    command = "unfreeze study --summary docs/findings --studies studies -o docs/FINDINGS.md --overwrite"
    assert command in committed
    result = runner.invoke(app, command.split()[1:])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "docs" / "FINDINGS.md").read_text() == committed
    pages = sorted((docs / "findings").glob("*/*/FINDINGS.md"))
    assert len(pages) >= 9
    for page in pages:
        rebuilt = tmp_path / "docs" / "findings" / page.relative_to(docs / "findings")
        assert rebuilt.read_text() == page.read_text(), page


def test_summary_orders_datasets_by_difficulty_where_the_study_asks(tmp_path):
    from unfreeze.studies.summary import write_summary

    easy = synthetic_run(
        tmp_path / "easy",
        "features-vs-finetune.toml",
        _by_config({"full fine-tuning": 0.95, "features: last": 0.945}),
        data="easy-data",
    )
    hard = synthetic_run(
        tmp_path / "hard",
        "features-vs-finetune.toml",
        _by_config({"full fine-tuning": 0.70, "features: last": 0.60}),
        data="hard-data",
    )
    page = tmp_path / "page.md"
    write_summary([hard, easy], page, "unfreeze study --summary ...")
    text = page.read_text()
    assert "Datasets ordered by difficulty (1 - the test score of full fine-tuning):" in text
    table = text.split("Datasets ordered by difficulty")[1].split("\n\n")[1].splitlines()[2:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in table]
    assert [(c[1], round(float(c[2]), 2), c[4]) for c in cells] == [
        ("easy-data", 0.05, "holds"),
        ("hard-data", 0.3, "does not hold here"),
    ]


@pytest.mark.slow
def test_a_killed_study_resumes_and_runs_every_cell_once(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", 240)
    study = tmp_path / "long.toml"
    study.write_text(
        (STUDIES / "freeze-depth.toml")
        .read_text()
        .replace("n_train = [100, 300, 1000]", "n_train = [40, 80, 120]")
        .replace("n_test = 1000", 'n_test = 40\nepochs = 2\nlearning_rate = "fixed"\nbatch_size = 8')
    )
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "unfreeze",
        "study",
        str(study),
        "--data",
        str(data),
        "--model",
        tiny_model_dir("bert"),
        "-o",
        str(out),
    ]
    env = dict(os.environ)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = ResultsStore(out / "arms" / "main")
    deadline = time.monotonic() + 300
    while len(store.records()) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the study ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(store.records())
    assert 4 <= done_before < 27
    final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    records = store.records()
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 27 and all(r["status"] == "done" for r in records)
    meta = json.loads((out / "study.json").read_text())
    assert [inv["complete"] for inv in meta["invocations"]] == [False, True]
    assert meta["invocations"][1]["cells_run"] == 27 - done_before
    findings = analyse(out, draw=False)
    assert findings.complete and findings.verdict.verdict in ("holds", "partly", "does not hold here")
    assert (out / "FINDINGS.md").exists()


# -- bad input: one line, exit code 2, nothing written -------------------------------------------------


@pytest.mark.parametrize(
    "edit, words",
    [
        (("[study]\n", '[study]\ncolour = "blue"\n'), ["unknown key 'colour' in [study]"]),
        (("[sweep]\n", "[sweep]\nbogus = 1\n"), ["unknown key 'bogus' in [sweep]"]),
        (("[verdict]", "[bogus]\nx = 1\n\n[verdict]"), ["unknown key 'bogus' in the file"]),
        (("[verdict]", "[analysis]\nwhatever = 2\n\n[verdict]"), ["unknown key 'whatever' in [analysis]"]),
        (('analysis = "two_way"', 'analysis = "vibes"'), ["unknown analysis 'vibes'"]),
        (('holds = "slope_low > 0', 'holds = "slope_lo > 0'), ["reads 'slope_lo'", "Quantities:"]),
        (("[sweep]\n", '[sweep]\nmodel = "gpt2"\n'), ["'model' cannot be set in [sweep]", "--model"]),
        (("n_train = [100, 300, 1000]", "n_train = [100, -3]"), ["--n-train values must be >= 1"]),
    ],
)
def test_a_bad_study_file_is_one_line(runner, tmp_path, edit, words):
    study = tmp_path / "bad.toml"
    text = (STUDIES / "freeze-depth.toml").read_text()
    assert edit[0] in text
    study.write_text(text.replace(edit[0], edit[1], 1))
    out = tmp_path / "run"
    result = runner.invoke(app, ["study", str(study), "-o", str(out)])
    assert_user_error(result, str(study), *words)
    assert not out.exists()


def test_data_too_small_for_the_study_sizes_is_one_line(runner, tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "small.csv", 300)  # 240 training texts once 20% is held out
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "study",
            str(STUDIES / "freeze-depth.toml"),
            "--data",
            str(data),
            "--model",
            tiny_model_dir("bert"),
            "-o",
            str(out),
        ],
    )
    assert_user_error(result, "Study 'freeze-depth' needs 1000 training examples", "has 240", "--quick")
    assert not out.exists()
    tiny = write_csv(tmp_path / "tiny.csv", 40)
    per_class = runner.invoke(
        app,
        ["study", str(STUDIES / "setfit.toml"), "--data", str(tiny), "--model", tiny_model_dir("bert"), "-o", str(out)],
    )
    assert_user_error(per_class, "needs 32 per class x 2 classes = 64 training examples", "has 32")
    assert not out.exists()


BILSTM_STUDY = """
[study]
title = "A BiLSTM on token states"
claim = "x"
source = "y"
analysis = "compare"

[sweep]
n_train = [40]

[[arm]]
name = "full"
label = "full fine-tuning"
strategies = ["freeze"]
k = [0]

[[arm]]
name = "bilstm"
label = "BiLSTM: last two"
strategies = ["bilstm"]
grid = { bilstm = { token_layers = ["last2"] } }

[analysis]
comparisons = { bilstm = ["BiLSTM: last two", "full fine-tuning"] }

[verdict]
holds = "bilstm_high >= -0.01"
explain = "z"
"""


def test_a_strategy_the_model_cannot_run_is_refused_before_anything_runs(runner, tiny_model_dir, tmp_path, monkeypatch):
    from unfreeze.models.loaded import shared_backbone

    model = tiny_model_dir("bert", seed=3)  # a model of its own: the patched forward must not leak
    backbone = shared_backbone(model, None)
    original = backbone.model.forward
    # a model that gives one pooled vector per text and no per-token hidden states
    monkeypatch.setattr(
        backbone.model,
        "forward",
        lambda *a, **k: SimpleNamespace(last_hidden_state=original(*a, **k).last_hidden_state),
    )
    study = tmp_path / "bilstm.toml"
    study.write_text(BILSTM_STUDY)
    data = write_csv(tmp_path / "reviews.csv", 300)
    out = tmp_path / "run"
    result = runner.invoke(app, ["study", str(study), "--data", str(data), "--model", model, "--quick", "-o", str(out)])
    assert_user_error(
        result,
        "Study 'bilstm' needs BiLSTM: last two (bilstm token_layers=last2)",
        "bilstm needs per-token hidden states",
    )
    assert not out.exists()
    # and a block count the model does not have (reinit m=3 on a 2-block model)
    reinit = runner.invoke(
        app,
        [
            "study",
            str(STUDIES / "reinit-top.toml"),
            "--data",
            str(data),
            "--model",
            tiny_model_dir("bert"),
            "--quick",
            "-o",
            str(out),
        ],
    )
    assert_user_error(reinit, "needs reinit m=3", "'m' parameter of reinit must be an int in [1, 2]")
    assert not out.exists()


def test_an_analysis_naming_a_configuration_no_arm_has_is_refused(runner, tiny_model_dir, tmp_path):
    study = tmp_path / "typo.toml"
    study.write_text((STUDIES / "lora.toml").read_text().replace('lora = ["LoRA r=8"', 'lora = ["LoRA r=16"'))
    data = write_csv(tmp_path / "reviews.csv", 300)
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["study", str(study), "--data", str(data), "--model", tiny_model_dir("bert"), "--quick", "-o", str(out)]
    )
    assert_user_error(result, "reads configuration 'LoRA r=16', which no arm has", "LoRA r=8")
    assert not out.exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--summary", "-o", "page.md"], ["--summary needs study run folders"]),
        (["--summary", "nowhere", "-o", "page.md"], ["nowhere does not exist"]),
        (["--summary", ".", "--quick", "-o", "page.md"], ["--quick runs a study; --summary only reads runs"]),
        (["STUDY", "STUDY", "-o", "run"], ["Give one study file", "got 2 paths"]),
        (["STUDY"], ["Give -o"]),
        (["missing.toml", "-o", "run"], ["Study file not found: missing.toml"]),
        (["STUDY", "-o", "sweep"], ["sweep is a sweep's run folder, not a study's"]),
        (["STUDY", "--studies", ".", "-o", "run"], ["--studies goes with --summary"]),
    ],
)
def test_bad_command_lines_are_one_line(runner, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text("{}")
    args = [str(STUDIES / "lora.toml") if a == "STUDY" else a for a in args]
    result = runner.invoke(app, ["study", *args])
    assert_user_error(result, *words)
    assert not (tmp_path / "run").exists() and not (tmp_path / "page.md").exists()
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["sweep.json"]
