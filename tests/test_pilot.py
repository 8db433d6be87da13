"""The advisor at the budgets people give it: the pilot planned from measured step costs, no prediction from
fewer than three sizes, the one-line budget warning, fit time projected per example and epoch, and torch's
threads kept to the cores other work leaves free."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import sentiment_task_varied
from unfreeze.advise.cost import human_seconds
from unfreeze.advise.halving import AdviseRun, Configuration
from unfreeze.advise.pilot import (
    MIN_SIZES,
    SAFETY,
    VALIDATION_GROWTH,
    StepCosts,
    cell_seconds,
    plan_pilot,
    projected,
    validation_at,
)
from unfreeze.advise.plan import make_plan
from unfreeze.advise.render import plan_text
from unfreeze.advise.spec import AdviseSpec, rung_sizes
from unfreeze.cli import app
from unfreeze.sweep import ResultsStore

runner = CliRunner()

LADDER = rung_sizes(64, 8000, 2.0)
LABELS = ["features", "freeze k=3", "freeze k=0", "lora r=8"]


def _costs(slow: float) -> dict[str, StepCosts]:
    """Costs per text like MiniLM's on a 2-core CPU, ``slow`` times slower."""
    base = {
        "features": StepCosts("features", True, forward=0.004, fixed=0.3),
        "freeze k=3": StepCosts(
            "freeze k=3",
            False,
            train=0.008,
            validate=0.0035,
            prefix=0.002,
            forward=0.007,
            fixed=0.03,
            epochs=4,
            rates=3,
        ),
        "freeze k=0": StepCosts(
            "freeze k=0", False, train=0.03, validate=0.007, forward=0.007, fixed=0.05, epochs=4, rates=3
        ),
        "lora r=8": StepCosts(
            "lora r=8", False, train=0.016, validate=0.007, forward=0.007, fixed=0.06, epochs=8, rates=3
        ),
    }
    return {
        k: dataclasses.replace(
            c, **{f: getattr(c, f) * slow for f in ("train", "validate", "prefix", "forward", "fixed")}
        )
        for k, c in base.items()
    }


def _plan(slow: float, room: float = 450.0, smaller: list[int] | None = None):
    return plan_pilot(
        _costs(slow),
        LABELS,
        LADDER,
        [0, 1, 2],
        200,
        room,
        eta=3,
        finalists=2,
        smaller_first=smaller if smaller is not None else [32],
    )


def test_a_cell_costs_its_rates_epochs_steps_and_validation_and_a_cheap_cell_what_the_pool_lacks():
    c = _costs(1.0)["freeze k=3"]
    # three rates, each fit four epochs of steps and validation, then scored once more to compare the rates
    fit = 0.03 + 4 * (0.008 * 64 + 0.0035 * 200)
    searched = 3 * (fit + 0.0035 * 200) + 0.002 * 264 + 0.007 * 64
    assert cell_seconds(c, 64, 200, True) == pytest.approx(searched)
    assert cell_seconds(c, 64, 200, False) == pytest.approx(fit + 0.002 * 264 + 0.007 * 64)
    features = _costs(1.0)["features"]
    assert cell_seconds(features, 128, 200, False, embedded=64 + 200) == pytest.approx(0.3 + 0.004 * 64)
    # the first rung runs every configuration; later rungs the ones halving keeps (priced as their average)
    totals = projected(_costs(1.0), LABELS, [64, 128], 3, 200, 3, 2, "every-seed", "first-seed")
    trained = [c for k, c in _costs(1.0).items() if not c.cheap]
    rung0 = sum(cell_seconds(c, 64, 200, True) + 2 * cell_seconds(c, 64, 200, False) for c in trained)
    rung1 = 2 / 3 * sum(3 * cell_seconds(c, 128, 200, True) for c in trained)
    cheap = 3 * cell_seconds(_costs(1.0)["features"], 64, 200, False) + 3 * (0.3 + 0.004 * 64)
    assert totals == pytest.approx([rung0 + 3 * (0.3 + 0.004 * 264), rung0 + rung1 + cheap])


def test_a_slower_machine_gives_up_rates_then_the_first_size_then_configurations_never_three_sizes():
    fast = _plan(0.25)
    assert fast.honest and fast.rate_search == "every-seed" and fast.changes == []
    assert fast.configurations == LABELS and fast.seeds == [0, 1, 2] and len(fast.sizes) >= MIN_SIZES
    assert fast.projected_seconds[-1] * SAFETY <= fast.room_seconds
    seen = []
    for slow in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 40.0):
        plan = _plan(slow)
        seen.append(plan)
        # whenever the budget allows it, three sizes: what is given up is rates, size, configurations, seeds
        assert plan.honest == (len(plan.sizes) >= MIN_SIZES)
        cheapest = projected(
            _costs(slow),
            ["features", "freeze k=3"],
            rung_sizes(32, 8000, 2.0)[:MIN_SIZES],
            2,
            [validation_at(n, 200, VALIDATION_GROWTH, 16) for n in rung_sizes(32, 8000, 2.0)[:MIN_SIZES]],
            3,
            2,
            "first-seed",
            "first-seed",
        )
        assert plan.honest == (cheapest[-1] * SAFETY <= 450.0), slow
    shared = next(p for p in seen if p.rate_search == "first-seed")
    assert shared.configurations == LABELS and "the first seed's rate kept for each rung" in shared.changes
    smaller = next(p for p in seen if p.sizes and p.sizes[0] == 32)
    assert smaller.honest and smaller.configurations == LABELS
    dropped = next(p for p in seen if p.dropped)
    # the most expensive go first, each with its reason, and features and one trained configuration stay
    assert dropped.honest and next(iter(dropped.dropped)) == "lora r=8" and "features" in dropped.configurations
    assert "costs about" in dropped.dropped["lora r=8"]
    # the machine never gets a *more* thorough pilot when it is slower
    thorough = [(p.honest, len(p.configurations), len(p.seeds)) for p in seen]
    assert thorough == sorted(thorough, key=lambda t: (t[1], t[2]), reverse=True)


def test_a_budget_too_small_for_three_sizes_runs_the_cheapest_pilot_and_says_so_in_one_line():
    plan = _plan(40.0)
    assert not plan.honest and len(plan.sizes) < MIN_SIZES
    assert plan.configurations == ["features", "freeze k=3"] and plan.seeds == [0, 1]
    warning = plan.warning(480.0)
    assert warning is not None and "\n" not in warning
    assert warning.startswith("A budget of 8.0 min cannot reach 3 training sizes")
    # the budget it names is what the full pilot would need for three sizes
    assert f"A budget of about {human_seconds(plan.needed_seconds)}" in warning and plan.needed_seconds > 450
    assert _plan(0.25).warning(480.0) is None


# -- padded tokens per text -----------------------------------------------------------------------------------------


def test_padded_tokens_of_sorted_and_length_grouped_batches():
    import numpy as np

    from unfreeze.advise.padding import batches_padded, grouped_padded, padded_per_text, sorted_padded, table_sizes

    lengths = [5, 3, 9, 1, 7]
    # longest first in batches of 2: [9, 7], [5, 3], [1] pad to 9, 5 and 1
    assert sorted_padded(lengths, 2) == 2 * 9 + 2 * 5 + 1 and sorted_padded([], 2) == 0
    assert batches_padded(lengths, [[0, 1], [2, 3, 4]]) == 2 * 5 + 3 * 9
    # the training loop's length-grouped batches pad as the loop's own order of the same seed pads them; five
    # texts are too few to group (a window of one batch: grouping_window), so more than sorted batches
    from unfreeze.training.sampling import length_grouped_order

    for seed in range(3):
        order = length_grouped_order(lengths, 2, np.random.default_rng(seed))
        assert grouped_padded(lengths, 2, np.random.default_rng(seed)) == batches_padded(lengths, order) >= 29
    # 64 texts in batches of 2: windows of 16 texts sorted, each padding as sorted batches do
    many = np.random.default_rng(5).integers(1, 90, size=64).tolist()
    order = np.random.default_rng(0).permutation(64).tolist()
    windows = sum(sorted_padded([many[i] for i in order[s : s + 16]], 2) for s in range(0, 64, 16))
    assert grouped_padded(many, 2, np.random.default_rng(0)) == windows > sorted_padded(many, 2)
    rng = np.random.default_rng(0)
    assert padded_per_text(many, 2, "train", rng) == pytest.approx(windows / 64)
    assert padded_per_text(lengths, 2, "sorted", rng) == pytest.approx(29 / 5)
    # validation scores in batches twice the training batch: [9, 7, 5, 3], [1]
    assert padded_per_text(lengths, 2, "validate", rng) == pytest.approx((4 * 9 + 1) / 5)
    # beyond one window (50 batches of 2) the batches group within windows only: more padding than sorted
    mixed = [1, 100] * 150
    assert grouped_padded(mixed, 2, np.random.default_rng(0)) > sorted_padded(mixed, 2) == 150 * 100 + 150 * 1
    assert table_sizes(10) == [1, 2, 3, 4, 6, 8, 10] and table_sizes(0) == []


def test_a_cost_per_text_scales_with_the_padded_tokens_of_the_cells_batches():
    from unfreeze.advise.calibrate import timed_tokens, with_tokens
    from unfreeze.advise.padding import padding_at, padding_tables

    # a pool of texts of 20 tokens and one of 64; calibration's batch of 32 holds the long one: it pads to 64
    pool = [64] + [20] * 999
    tokens = timed_tokens([64] + [20] * 31 + [20] * 32, 32, 32, 0)
    assert tokens["train_tokens"] == 64 and tokens["validate_tokens"] == 20 and tokens["forward_tokens"] == 20
    assert tokens["prefix_tokens"] == (32 * 64 + 32 * 20) / 64 and tokens["embed_tokens"] == (32 * 64 + 32 * 20) / 64
    tables = padding_tables(pool, 32)
    # the whole pool in length-grouped batches: one batch pads to 64, the other 968 texts to 20
    assert tables["train"][-1] == [1000, pytest.approx((32 * 64 + 968 * 20) / 1000)]
    costs = with_tokens(StepCosts("freeze k=3", False, train=0.01, validate=0.004, epochs=1), tokens, tables)
    # a cell's batches carry about 20 tokens per text against calibration's 64: about 20/64 of the cost per text
    assert costs.per_text("train", 1000) == pytest.approx(0.01 * 21.408 / 64)
    assert costs.per_text("train", 500) == pytest.approx(0.01 * 20 / 64, rel=0.1)
    assert costs.per_text("train", 500) == pytest.approx(0.01 * padding_at(tables["train"], 500) / 64)
    # validation timed on texts of 20 tokens; 200 texts of the pool hold the long one a fifth of the time, and it
    # pads its batch of 64 to 64: about 20 + 0.2 x 44 x 64 / 200 tokens per text
    assert costs.per_text("validate", 200) == pytest.approx(0.004 * (20 + 0.2 * 44 * 64 / 200) / 20, rel=0.05)
    # a loop of random batches (setfit's pairs) pads as the timed batch did: its steps are not rescaled
    from unfreeze.strategies import strategy_class

    assert not strategy_class("setfit").length_grouped and strategy_class("freeze").length_grouped
    pairs = with_tokens(StepCosts("setfit", False, train=0.01, validate=0.004), tokens, tables, length_grouped=False)
    assert pairs.per_text("train", 500) == 0.01 and pairs.per_text("validate", 200) == costs.per_text("validate", 200)
    steps = costs.per_text("train", 500) * 500
    assert cell_seconds(costs, 500, 0, False) == pytest.approx(steps)
    assert (
        0.25
        < cell_seconds(costs, 500, 0, False) / cell_seconds(dataclasses.replace(costs, padding={}), 500, 0, False)
        < 0.4
    )


def test_calibrations_of_earlier_releases_load_and_project_as_they_did():
    # a calibration as an earlier release recorded it (no padded tokens): costs per text as timed
    old = {
        "cheap": False,
        "epochs": 4,
        "fixed": 0.05,
        "forward": 0.007,
        "label": "freeze k=3",
        "prefix": 0.002,
        "rates": 3,
        "train": 0.008,
        "validate": 0.004,
    }
    c = StepCosts(**old)
    assert c.padding == {} and c.train_tokens == 0 and c.per_text("train", 500) == 0.008
    assert cell_seconds(c, 128, 200, False) == pytest.approx(
        0.05 + 4 * (0.008 * 128 + 0.004 * 200) + 0.002 * 328 + 0.007 * 128
    )
    # the new fields round-trip through the results store's JSON
    scaled = dataclasses.replace(c, train_tokens=52.0, padding={"train": [[1, 20.0], [1000, 28.0]]})
    assert StepCosts(**json.loads(json.dumps(scaled.as_dict()))) == scaled
    assert scaled.per_text("train", 1000) == pytest.approx(0.008 * 28 / 52)


def test_calibration_times_a_slow_step_and_the_advisor_prints_the_warning_before_any_cell(
    tiny_model_dir, tmp_path, monkeypatch
):
    import unfreeze.training.loop as loop
    from unfreeze.advise.calibrate import calibrate
    from unfreeze.advise.halving import configurations
    from unfreeze.sweep.grid import SweepSpec
    from unfreeze.sweep.plan import load_sweep_data

    texts, labels = sentiment_task_varied(240, 3)
    data_path = tmp_path / "train.csv"
    data_path.write_text("text,label\n" + "\n".join(f"{t},{'pos' if y else 'neg'}" for t, y in zip(texts, labels)))
    sweep = SweepSpec(
        data=str(data_path),
        model=tiny_model_dir("bert"),
        strategies=["features", "freeze"],
        k=[1],
        batch_size=16,
        max_length=32,
        learning_rate="auto",
        validation_size=38,
        n_train=[48],
    )
    data = load_sweep_data(sweep)
    configs = configurations(sweep, 2)
    fast = calibrate(sweep, data, configs, "cpu", 0)
    step = loop.optimizer_step

    def slow_step(*args, **kwargs):
        time.sleep(0.2)
        return step(*args, **kwargs)

    monkeypatch.setattr(loop, "optimizer_step", slow_step)
    slow = calibrate(sweep, data, configs, "cpu", 0)
    # one step of 16 examples takes 0.2 s more: 12.5 ms more per example and epoch; features trains no steps
    assert slow["freeze k=1"].train >= fast["freeze k=1"].train + 0.2 / 16 * 0.9
    assert slow["freeze k=1"].rates == 3 and slow["freeze k=1"].epochs == 4 and slow["features"].cheap
    assert slow["freeze k=1"].prefix > 0  # the frozen block runs once, cached, as in the pilot's cells
    # the padded tokens per text of the timed batches: 16 training texts in one batch pad to the longest of them;
    # a cell's batches are simulated from the whole pool's token lengths
    from unfreeze.advise.calibrate import calibration_texts
    from unfreeze.models.loaded import shared_backbone

    batch, sampled = calibration_texts(sweep, data, 0)
    lengths = shared_backbone(sweep.model, "cpu").encode(list(sampled.inputs), sweep.max_length).lengths
    assert fast["freeze k=1"].train_tokens == max(lengths[:batch]) and batch == 16
    assert fast["freeze k=1"].validate_tokens == max(lengths[batch:])
    assert fast["features"].forward_tokens == pytest.approx((16 * sorted(lengths)[-1] + 16 * sorted(lengths)[-17]) / 32)
    assert fast["freeze k=1"].padding["train"][-1][0] == len(data.train_pool)

    # a machine this slow cannot reach three sizes in 30 s: one line says so before the first cell, and the
    # cheapest honest pilot runs (features and one trained configuration)
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "advise",
            str(data_path),
            "--model",
            tiny_model_dir("bert"),
            "-o",
            str(out),
            "--seeds",
            "0,1,2",
            "--strategies",
            "features,freeze",
            "--k",
            "0,1",
            "--batch-size",
            "16",
            "--max-length",
            "32",
            "--budget",
            "30s",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    warning = next(i for i, line in enumerate(lines) if line.startswith("A budget of 30 s cannot reach 3"))
    first_cell = next(i for i, line in enumerate(lines) if line.startswith("rung 0"))
    assert warning < first_cell and lines[warning + 1].startswith("pilot: sizes")
    start = next(r for r in ResultsStore(out).records() if r.get("kind") == "advise-start")
    # the trained configuration kept is the one whose first cell the calibration priced lower (with a 0.2 s step
    # on a two-block model, freezing one block saves too little to say in advance which one that is)
    held = json.loads((out / "advise.json").read_text())["validation_size"]
    priced = {
        label: cell_seconds(StepCosts(**start["calibration"][label]), start["pilot"]["ladder"][0], held, True)
        for label in ("freeze k=0", "freeze k=1")
    }
    cheaper = min(priced, key=lambda label: priced[label])
    assert not start["pilot"]["honest"] and start["pilot"]["configurations"] == ["features", cheaper]
    assert start["pilot"]["seeds"] == [0, 1] and start["calibration"]["freeze k=0"]["train"] > 0
    cells = [r for r in ResultsStore(out).records() if "cell" in r]
    assert {r["cell"]["label"] for r in cells} <= {"features", cheaper}
    assert "Not predicted" in result.stdout.splitlines()[0] or len({r["cell"]["n_train"] for r in cells}) >= 3


# -- no prediction from fewer than three sizes ------------------------------------------------------------------


def _row(label: str, n: int, seed: int, accuracy: float, seconds: float = 10.0) -> dict:
    strategy = label.split()[0]
    trials = (
        [
            {
                "step_seconds": 2.0,
                "prefix_seconds": 0.0,
                "validation_seconds": 1.0,
                "validation_texts": 400,
                "examples_seen": 2 * n,
                "seconds": 3.0,
                "epochs_run": 2,
            }
        ]
        * 3
        if strategy != "features"
        else None
    )
    fit = {
        "learning_rate": 1e-4,
        "trainable_parameters": 10,
        "peak_memory_bytes": 2**30,
        "state_bytes_per_example": 0.0,
        **({"lr_search": trials} if trials else {}),
    }
    return {
        "status": "done",
        "cell": {"label": label, "strategy": strategy, "n_train": n, "seed": seed},
        "validation": {"accuracy": accuracy, "loss": 1 - accuracy, "n": 200},
        "started": 0.0,
        "finished": seconds,
        "fit": fit,
        "predict_seconds_per_text": 0.005,
        "settings": {"search": {"rates": [1, 2, 3], "epochs": 4}},
    }


def _run(
    sizes_run: dict[str, list[int]],
    seeds=(0, 1, 2),
    budget: float = 300.0,
    full: int = 8000,
    noise: float = 0.0,
    spread: float = 0.01,
) -> AdviseRun:
    """A finished pilot whose validation scores lie on a power curve (0.95 - 2 / sqrt(n)), seeds ``spread``
    apart, plus ``noise`` that alternates in sign with the size."""
    spec = AdviseSpec(data="d", model="m", strategies=["features", "freeze"], seeds=list(seeds), budget=budget)
    configs = [Configuration("features", (), True), Configuration("freeze", (("k", 3),), False)]
    rows = [
        _row(
            label, n, s, 0.95 - 2.0 / n**0.5 + spread * s + (-0.02 if label == "features" else 0.0) + noise * (-1) ** i
        )
        for label, sizes in sizes_run.items()
        for i, n in enumerate(sizes)
        for s in seeds
    ]
    return AdviseRun(
        spec,
        Path("."),
        [64, 128, 256, 512, full],
        configs,
        full,
        2,
        rows,
        [],
        "budget",
        50.0 + sum(r["finished"] for r in rows),
        50.0,
    )


def test_one_size_predicts_nothing_and_the_recommendation_says_so_first_with_the_budget_that_would():
    plan = make_plan(_run({"features": [64], "freeze k=3": [64]}))
    assert not plan["predicts"]
    for entry in plan["plan"]:
        assert "predicted" not in entry and entry["not_predicted"] == "measured at 64 only"
    rec = plan["recommendation"]
    assert rec["predicted_score"] is None and rec["interval"] is None and rec["at_2x"] is None
    assert rec["why"].startswith("Measured at one size only (64 examples): nothing is predicted at the full size.")
    assert "A budget of about" in rec["why"] and "labelling more" not in rec["why"]
    # the budget it names: what was spent, plus both configurations' three seeds at 128 and 256 from their
    # searched cells at 64 (10 s each; 6 s of it training steps, scaled), padded, plus the reserve
    assert plan["budget_for_curves"] > plan["spent_seconds"]
    # where the pool's padding halves the padded tokens per text from 64 to 128 examples and more, the steps of
    # the missing cells (6 s per 64 examples) cost half: 3 seeds x (6 s at 128 + 12 s at 256) less, padded
    from unfreeze.advise.plan import budget_for_curves

    run = _run({"features": [64], "freeze k=3": [64]})
    shorter = {"train": [[1, 40], [64, 40], [128, 20], [256, 20]]}
    unpadded = budget_for_curves(run, ["freeze k=3"])
    run.pilot = {"calibration": {"freeze k=3": {"padding": shorter}}}
    assert unpadded - budget_for_curves(run, ["freeze k=3"]) == pytest.approx(3 * (6 + 12) * SAFETY)
    text = plan_text(plan)
    first = text.splitlines()[0]
    assert first.startswith("Not predicted: the finalists did not reach 3 training sizes in 5.0 min; a budget of")
    assert "not predicted" in text and "(measured at 64 only)" in text


def test_a_configuration_dropped_within_noise_is_named_in_the_plan_and_the_recommendation():
    run = _run({"features": [64, 128, 256], "freeze k=3": [64, 128, 256]})
    run.configs.append(Configuration("freeze", (("k", 0),), False))
    run.rows += [_row("freeze k=0", 64, s, 0.70 - 0.01 * s) for s in (0, 1, 2)]
    run.decisions = [{"n_train": 64, "eliminated": ["freeze k=0"], "within_noise": ["freeze k=0"]}]
    plan = make_plan(run)
    entry = next(e for e in plan["plan"] if e["configuration"] == "freeze k=0")
    assert entry["within_noise"] and entry["eliminated_at"] == 64
    assert plan["recommendation"]["why"].endswith(
        " Not told apart from those that went on when they went out: freeze k=0 at 64 examples (within two "
        "standard errors of the rung's best validation score); a larger budget would compare them at larger sizes."
    )
    assert "out at n=64, tie" in plan_text(plan)
    # a decision of an earlier release (no within_noise) or a clear loss: no such sentence
    run.decisions = [{"n_train": 64, "eliminated": ["freeze k=0"]}]
    assert "Not told apart" not in make_plan(run)["recommendation"]["why"]
    assert "n=64, tie" not in plan_text(make_plan(run))


def test_one_seed_says_so_first_and_three_sizes_predict_within_the_curves_error():
    one_seed = make_plan(_run({"features": [64, 128, 256], "freeze k=3": [64, 128, 256]}, seeds=(0,)))
    assert one_seed["recommendation"]["why"].startswith("One seed only: no error bars.")
    three = make_plan(_run({"features": [64, 128, 256], "freeze k=3": [64, 128, 256]}))
    assert three["predicts"] and all("predicted" in e for e in three["plan"])
    rec = three["recommendation"]
    assert rec["predicted_score"] == pytest.approx(0.95 - 2.0 / 8000**0.5 + 0.01, abs=0.01)
    assert not rec["why"].startswith(("Measured", "One seed"))
    assert "Not predicted" not in plan_text(three).splitlines()[0]
    # a noisy curve: its back-test misses by 0.04, which grown to 8,000 examples (five steps of the back-test
    # past 256) is far more than the 3 points a printed prediction promises: not predicted, and the first line
    # says why
    noisy = make_plan(_run({"features": [64, 128, 256], "freeze k=3": [64, 128, 256]}, noise=0.02))
    entry = next(e for e in noisy["plan"] if e["configuration"] == "freeze k=3")
    assert "predicted" not in entry and entry["not_predicted"].startswith("the curve may be off by")
    assert plan_text(noisy).splitlines()[0].startswith("Not predicted at the full size for")
    # near the full size the same curve is a prediction, with the curve's error inside its interval
    near = make_plan(_run({"features": [64, 128, 256], "freeze k=3": [64, 128, 256]}, full=300))
    point = near["plan"][0]["predicted"]["300"]
    assert point["error"] > 0 and point["low"] <= point["score"] - point["error"] + 1e-9
    # a configuration eliminated after two sizes is shown as measured, not predicted
    mixed = make_plan(_run({"features": [64, 128, 256], "freeze k=3": [64, 128]}))
    entry = next(e for e in mixed["plan"] if e["configuration"] == "freeze k=3")
    assert "predicted" not in entry and entry["not_predicted"] == "measured at 64, 128 only"


def test_a_back_test_closer_than_the_noise_of_its_held_out_means_is_not_credited():
    # every seed on the same smooth curve, 0.03 apart: the back-test misses by under 0.005, but the mean at 256 it
    # was checked on has a standard error of 0.03 / sqrt(3) over the seeds; five steps out, at 8,000, that is 0.086
    run = _run({"features": [64, 128, 256], "freeze k=3": [64, 128, 256]}, spread=0.03)
    plan = make_plan(run)
    assert plan["backtest"][plan["form"]]["mae"] < 0.005
    assert plan["backtest_noise"] == pytest.approx(0.03 / 3**0.5)
    entry = next(e for e in plan["plan"] if e["configuration"] == "freeze k=3")
    steps = math.log(8000 / 256) / math.log(2)
    assert "predicted" not in entry and entry["not_predicted"] == (
        f"the curve may be off by {0.03 / 3**0.5 * steps:.3f} at 8,000: its back-test error 0.017 (the noise of "
        f"the means it was checked on), {steps:.1f} size steps out"
    )
    assert "noise of the held-out means 0.017" in plan_text(plan)
    # near the full size the same curve predicts, its interval as wide as that noise (one step out)
    near = make_plan(_run({"features": [64, 128, 256], "freeze k=3": [64, 128, 256]}, full=300, spread=0.03))
    point = near["plan"][0]["predicted"]["300"]
    assert point["error"] == pytest.approx(0.03 / 3**0.5)


# -- fit time per example and epoch ------------------------------------------------------------------------------


def test_fit_time_at_n_is_projected_per_example_and_epoch_with_the_interval_it_rests_on():
    from unfreeze.advise.cost import cost_at, fit_seconds_from_steps

    row = _row("freeze k=3", 64, 0, 0.7)
    low, point, _high = fit_seconds_from_steps(row, 1000, 0.1)
    # one fit at the chosen rate (each rate tried cost the same: 3 s, of which 2 s of steps over 128
    # example-epochs and 1 s validating 400 texts); 900 trained and 100 held out at 1,000; no fixed seconds;
    # two epochs ran, the ceiling is four
    per_epoch = 2.0 / 128 * 900 + 1.0 / 400 * 100
    assert low == pytest.approx(2 * per_epoch) and point == pytest.approx(4 * per_epoch)
    # a contended cell at the smaller size (four times slower steps) widens the interval, not the point, which
    # comes from the cells at the largest size; a whole cell scaled to the full size would be the rule
    contended = _row("freeze k=3", 32, 1, 0.7)
    contended["fit"]["lr_search"] = [dict(t, step_seconds=8.0) for t in contended["fit"]["lr_search"]]
    cost = cost_at([row, contended], 1000)
    assert cost["fit_basis"] == "steps" and cost["fit_seconds"] == pytest.approx(point)
    assert cost["fit_interval"] == pytest.approx([low, fit_seconds_from_steps(contended, 1000, 0.1)[2]])
    assert cost["fit_interval"][0] < cost["fit_seconds"] < cost["fit_interval"][1]
    # rows without the split (older stores): the seconds of whole cells, no interval
    old = {k: v for k, v in row.items() if k != "fit"} | {"fit": {"step_seconds": 6.0, "lr_search": [{}] * 3}}
    assert cost_at([old], 1000)["fit_basis"] == "cells" and cost_at([old], 1000)["fit_interval"] is None


# -- threads ------------------------------------------------------------------------------------------------------


def test_torch_threads_stay_within_the_free_cores_and_are_restored(monkeypatch):
    import torch

    import unfreeze.machine.cores as cores

    before = torch.get_num_threads()
    monkeypatch.setattr(cores, "allowed_cores", lambda: [0])
    with cores.use_threads(interval=0.01) as share:
        assert torch.get_num_threads() == 1 and share.threads == 1 and share.allowed == 1
    assert torch.get_num_threads() == before
    with cores.use_threads(3) as share:
        assert torch.get_num_threads() == 3 and share.chosen_by == "--threads"
    assert torch.get_num_threads() == before


def test_busy_cores_are_read_from_two_samples_of_proc_stat():
    from unfreeze.machine.cores import busy_cores, free_cores

    # cpu0 idle the whole interval, cpu1 busy 90% of it (user 90 of 100 jiffies), cpu2 not ours
    samples = iter(
        [
            "cpu  0 0 0 0\ncpu0 10 0 10 100 0 0 0 0\ncpu1 10 0 10 100 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n",
            "cpu  0 0 0 0\ncpu0 10 0 10 200 0 0 0 0\ncpu1 100 0 10 110 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n",
        ]
    )
    busy = busy_cores([0, 1], interval=0.0, read=lambda: next(samples))
    assert busy == pytest.approx(0.9)
    assert free_cores(2, busy) == 1 and free_cores(2, 0.3) == 2 and free_cores(1, 1.0) == 1
    assert busy_cores([0, 1], interval=0.0, read=lambda: "") == 0.0  # no /proc/stat: nothing known to be busy


@pytest.mark.skipif(
    sys.platform != "linux" or not Path("/usr/bin/taskset").exists(),
    reason="needs Linux and taskset to limit the affinity",
)
def test_a_process_limited_to_one_core_trains_on_one_thread():
    code = (
        "import torch, json; from unfreeze.machine.cores import use_threads\n"
        "with use_threads(interval=0.05) as share: print(json.dumps([torch.get_num_threads(), share.allowed]))"
    )
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1, 1]


def test_a_flat_curve_forecasts_nothing_at_a_larger_size(monkeypatch):
    import unfreeze.advise.curves as lc

    monkeypatch.setattr(lc, "choose_form", lambda backtests, n: "last")  # no curve beat the last score
    plan = make_plan(_run({"features": [64, 128, 256], "freeze k=3": [64, 128, 256]}))
    assert not plan["predicts"]
    for entry in plan["plan"]:
        assert "predicted" not in entry and entry["not_predicted"] == "no curve beat the last score; measured up to 256"
    assert plan_text(plan).splitlines()[0] == (
        "Not predicted at the full size for freeze k=3: no curve beat the last score; measured up to 256."
    )
    why = plan["recommendation"]["why"]
    assert "Not predicted on all 8,000" in why and "labelling more" not in why.lower()


# -- the rungs the decisions take ------------------------------------------------------------------------------------


class _Config:
    def __init__(self, label: str) -> None:
        self.label = label

    def cell(self, n: int, seed: int) -> tuple:
        return (self.label, n, seed)


def test_a_size_between_is_the_last_rung_when_the_next_does_not_fit():
    from unfreeze.advise.halving import decide

    rows = {}
    for label, accuracy in (("a", 0.8), ("f", 0.7)):
        for seed in (0, 1):
            rows[(label, 128, seed)] = {
                "status": "done",
                "cell": {"label": label, "n_train": 128, "seed": seed},
                "validation": {"accuracy": accuracy, "loss": 0.5, "n": 200},
                "started": 0.0,
                "finished": 12.8,
                "fit": {"step_seconds": 12.8},
            }
    spec = AdviseSpec(seeds=[0, 1], budget=300.0, finalists=1)
    # spent 51.2 s; 0.1 s per example per cell: 256 needs 2 x 2 x 25.6 x 1.15 = 118 s; 2,000 would need 920 s
    decision = decide(
        spec, "id", 2, [64, 128, 256, 2000], 128, ["a"], ["f"], {k: _Config(k) for k in "af"}, rows, lambda c: c, 0.0
    )
    assert decision["next_n_train"] == 256
    # the next size does not fit: the largest size between that does (at least 1.25 x 128 = 160)
    tight = decide(
        AdviseSpec(seeds=[0, 1], budget=150.0, finalists=1),
        "id",
        2,
        [64, 128, 256, 2000],
        128,
        ["a"],
        ["f"],
        {k: _Config(k) for k in "af"},
        rows,
        lambda c: c,
        0.0,
    )
    room = 150.0 - 4.5 - 51.2
    assert tight["reason"] == "the largest size the budget allows" and 160 <= tight["next_n_train"] < 256
    assert tight["projected_seconds"] <= room < 4 * 0.1 * (tight["next_n_train"] + 1) * 1.15
    none = decide(
        AdviseSpec(seeds=[0, 1], budget=120.0, finalists=1),
        "id",
        2,
        [64, 128, 256],
        128,
        ["a"],
        ["f"],
        {k: _Config(k) for k in "af"},
        rows,
        lambda c: c,
        0.0,
    )
    assert none["next_n_train"] is None and none["reason"] == "budget"


def test_the_clock_guard_projects_a_cell_as_it_will_run():
    from unfreeze.advise.cells import expected_seconds

    searched = {
        "cell": {"n_train": 64},
        "started": 0.0,
        "finished": 30.0,
        "validation": {"n": 200},
        "fit": {"step_seconds": 6.0, "lr_search": [{"step_seconds": 2.0}] * 3},
    }
    once = {
        "cell": {"n_train": 64},
        "started": 0.0,
        "finished": 10.0,
        "validation": {"n": 200},
        "fit": {"step_seconds": 2.0},
    }
    # a seed training once at the shared rate is projected from the cells that did so, not from the search
    assert expected_seconds([searched, once], None, 128, 200, False) == pytest.approx(8.0 + 2.0 * 2)
    assert expected_seconds([searched, once], None, 128, 200, True) == pytest.approx(24.0 + 6.0 * 2)
    # only searched cells before: one fit is one of their three trials
    assert expected_seconds([searched], None, 128, 200, False) == pytest.approx((24.0 + 12.0) / 3)
    # a first cell: the calibration's projection
    costs = _costs(1.0)["freeze k=3"]
    assert expected_seconds([], costs, 128, 200, True) == pytest.approx(cell_seconds(costs, 128, 200, True))


def test_a_larger_rung_is_projected_with_its_batches_padding_and_its_training_sample_scored():
    from unfreeze.advise.cells import expected_seconds
    from unfreeze.advise.cost import projected_cell_seconds, split_cell_seconds
    from unfreeze.advise.halving import decide

    # 11 s: a fit of 10 s (4 s of steps, 3 s validating 64 texts), then 1 s scoring the 32 training texts
    row = {
        "cell": {"n_train": 32},
        "started": 0.0,
        "finished": 11.0,
        "validation": {"n": 64},
        "fit": {"seconds": 10.0, "step_seconds": 4.0, "validation_seconds": 3.0, "trainable_parameters": 5},
    }
    assert split_cell_seconds(row) == pytest.approx((6.0, 5.0 / 32))
    # a frozen model's cell scores its validation set outside the fit too: only the steps grow
    frozen = {**row, "fit": {**row["fit"], "trainable_parameters": 0}}
    assert split_cell_seconds(frozen) == pytest.approx((7.0, 4.0 / 32))
    padding = {"train": [[1, 20], [32, 50], [64, 40], [1000, 25]], "validate": [[1, 20], [64, 54], [128, 42]]}
    # at 64 examples and 128 validation texts: batches of 40 tokens per text against 50; validation 42 against 54
    grown = 6.0 + 3.0 * (128 / 64 * 42 / 54 - 1.0) + 5.0 / 32 * 64 * 40 / 50
    assert projected_cell_seconds(row, 64, 128, padding) == pytest.approx(grown)
    assert projected_cell_seconds(row, 64, 128) == pytest.approx(6.0 + 3.0 + 10.0)
    costs = dataclasses.replace(_costs(1.0)["freeze k=3"], padding=padding)
    assert expected_seconds([row], costs, 64, 128, False) == pytest.approx(grown)

    # the rung's decision: 256 does not fit 150 s at the 128 rung's seconds per example (2 x 2 x 25.6 s x 1.15 = 118
    # s of the 94 s left), but does where batches of 256 texts carry 3/4 of the padded tokens of 128 texts' (88 s)
    rows = {
        (label, 128, seed): {
            "status": "done",
            "cell": {"label": label, "n_train": 128, "seed": seed},
            "validation": {"accuracy": accuracy, "loss": 0.5, "n": 200},
            "started": 0.0,
            "finished": 12.8,
            "fit": {"step_seconds": 12.8},
        }
        for label, accuracy in (("a", 0.8), ("f", 0.7))
        for seed in (0, 1)
    }
    shorter = {"train": [[1, 40], [128, 40], [256, 30], [2000, 30]]}
    args = ("id", 2, [64, 128, 256, 2000], 128, ["a"], ["f"], {k: _Config(k) for k in "af"}, rows, lambda c: c, 0.0)
    tight = AdviseSpec(seeds=[0, 1], budget=150.0, finalists=1)
    assert decide(tight, *args)["next_n_train"] < 256
    padded = decide(tight, *args, padding={"a": shorter, "f": shorter})
    assert padded["next_n_train"] == 256 and padded["projected_seconds"] == pytest.approx(2 * 2 * 25.6 * 0.75 * 1.15)


def test_a_rung_validates_on_a_nested_stratified_subset_and_its_cells_have_their_own_keys():
    from unfreeze.advise.pilot import validation_at
    from unfreeze.data import TextDataset
    from unfreeze.sweep.grid import SweepSpec
    from unfreeze.sweep.plan import seed_samples

    assert [validation_at(n, 200, 2.0, 32) for n in (8, 32, 64, 128)] == [32, 64, 128, 200]
    assert validation_at(64, 200, 0.0, 32) == 200
    texts, labels = sentiment_task_varied(400, 0)
    pool = TextDataset(texts, labels, name="pool")
    full = SweepSpec(validation_size=100)
    part = SweepSpec(validation_size=100, validation_used=40)
    train, validation = seed_samples(full, pool, 64, 0)
    same_train, subset = seed_samples(part, pool, 64, 0)
    assert same_train.inputs == train.inputs  # the training sample does not move
    assert subset.inputs == validation.inputs[:40] and len(set(subset.labels)) == 2
    assert abs(sum(1 for y in subset.labels if y == 1) - 20) <= 1  # stratified: within one of its share
    assert full.training_settings() != part.training_settings()  # another validation set: another cell


@pytest.mark.parametrize("value", ["-5", "1.5", "true"])
def test_a_bad_validation_subset_in_a_sweep_file_is_one_line_exit_2(value, tmp_path):
    from conftest import assert_user_error

    config = tmp_path / "sweep.toml"
    config.write_text(f'data = "movie-snippets"\nstrategies = ["features"]\nvalidation_used = {value}\n')
    result = runner.invoke(app, ["sweep", "--config", str(config), "-o", str(tmp_path / "run")])
    assert_user_error(result, "validation_used must be an int >= 0")
    assert not (tmp_path / "run").exists()


def _searched_rung(n: int, scores: dict[str, list[float]], seconds: float) -> dict:
    """A rung at ``n`` of a score per seed whose cells each searched three rates (``seconds`` per fit)."""
    rows = {}
    for label, by_seed in scores.items():
        for seed, accuracy in enumerate(by_seed):
            trials = [{"step_seconds": seconds, "learning_rate": rate} for rate in (1e-4, 2e-4, 3e-4)]
            rows[(label, n, seed)] = {
                "status": "done",
                "cell": {"label": label, "n_train": n, "seed": seed},
                "validation": {"accuracy": accuracy, "loss": 0.5, "n": 200},
                "started": 0.0,
                "finished": 3 * seconds,
                "fit": {"step_seconds": 3 * seconds, "learning_rate": 2e-4, "lr_search": trials},
            }
    return rows


def test_past_a_curves_sizes_the_rest_of_the_budget_extends_the_curves_keeping_the_rates_or_the_leader_alone():
    from unfreeze.advise.halving import decide

    # two finalists at 256 (the third rung: a curve's sizes), each cell searched three rates, 7.68 s per fit (0.03 s
    # per example); a rung of both on two seeds at 512 costs 2 x 2 x 15.36 s x 1.15 = 70.7 s at the kept rate, three
    # times that searching on the first seed... (2 x (3 + 1) x 15.36 x 1.15 = 141 s)
    rows = _searched_rung(256, {"a": [0.80, 0.78], "b": [0.77, 0.79]}, 7.68)
    spent = sum(r["finished"] for r in rows.values())  # 92.2 s

    def at(room: float, i: int = 2) -> dict:
        # a budget that leaves ``room`` seconds after what was spent and the reserve (3% of the budget)
        spec = AdviseSpec(seeds=[0, 1], budget=(spent + room) / 0.97, finalists=2)
        by_label = {k: _Config(k) for k in "ab"}
        return decide(spec, "id", i, [64, 128, 256, 512, 2000], 256, ["a", "b"], [], by_label, rows, lambda c: c, 0.0)

    roomy = at(150.0)
    assert roomy["next_n_train"] == 512 and roomy["rate_search"] == "first-seed"
    kept = at(100.0)
    assert kept["next_n_train"] == 512 and kept["rate_search"] == "kept" and kept["promoted"] == ["a", "b"]
    assert kept["projected_seconds"] == pytest.approx(2 * 2 * 15.36 * SAFETY)
    # 512 does not fit both even at the kept rate: the largest size between that does (at least 1.25 x 256 = 320)
    between = at(60.0)
    assert between["reason"] == "the largest size the budget allows" and between["rate_search"] == "kept"
    assert 320 <= between["next_n_train"] < 512 and between["promoted"] == ["a", "b"]
    assert between["projected_seconds"] <= 60.0 < 4 * 0.03 * (between["next_n_train"] + 1) * SAFETY
    # not even 320 for both (44.2 s): the leader alone, to 512 (35.3 s), the other out within the rung's noise
    alone = at(40.0)
    assert alone["reason"] == "the leader alone, as far as the budget allows"
    assert alone["promoted"] == ["a"] and alone["eliminated"] == ["b"] and alone["within_noise"] == ["b"]
    assert alone["next_n_train"] == 512 and alone["rate_search"] == "kept"
    assert alone["projected_seconds"] == pytest.approx(2 * 15.36 * SAFETY)
    from unfreeze.advise.render import rungs_text

    assert rungs_text([roomy, alone], "budget") == (
        "rungs: 256 (2 trained) -> 256 (2 trained) -> [the leader alone, as far as the budget allows; rates kept "
        "from the rung before] -> 512 (ended: budget)"
    )
    assert at(20.0)["reason"] == "budget"
    # before a curve's sizes the rates are never kept from the rung before: the tie rule decides who goes on
    early = at(100.0, i=1)
    assert early["rate_search"] != "kept"


def test_a_rung_that_keeps_its_rate_trains_every_seed_at_the_rate_the_rung_befores_first_seed_chose():
    from types import SimpleNamespace

    from unfreeze.advise.cells import CellSettings
    from unfreeze.sweep.grid import SweepSpec

    sweep = SweepSpec(data="d", model="m", strategies=["freeze"], learning_rate="auto", epochs=3)
    assert sweep.searches_rates
    config = Configuration("freeze", (("k", 3),), False)
    pilot = SimpleNamespace(
        configs=[config],
        sweep=sweep,
        seeds=[0, 1],
        held=200,
        plan=SimpleNamespace(validation_growth=0.0, validation_floor=0),
        data=SimpleNamespace(fingerprint="data"),
        model_fingerprint="model",
    )
    decisions = {0: {"rate_search": "first-seed"}, 1: {"rate_search": "kept"}}
    settings = CellSettings(AdviseSpec(seeds=[0, 1], first_rung_rate="first-seed"), pilot, decisions)
    settings.rung_of = {64: 0, 128: 1, 256: 2}
    first = config.cell(128, 0)
    settings.rows[settings.key(first)] = {"status": "done", "fit": {"learning_rate": 3e-4}}
    # the 128 rung (after a first-seed decision): the first seed searches, the second trains at its rate
    assert settings.searches(128, 0) and not settings.searches(128, 1)
    assert settings.of(config.cell(128, 1)).learning_rate == 3e-4
    # the 256 rung keeps the rate: no seed searches, every one trains at the 128 rung's first seed's rate
    assert settings.rate_mode(256) == "kept" and not settings.searches(256, 0) and not settings.searches(256, 1)
    for seed in (0, 1):
        kept = settings.of(config.cell(256, seed))
        assert kept.learning_rate == 3e-4 and kept.epochs == 3
    assert settings.key(config.cell(256, 0)) != settings.key(config.cell(128, 0))
