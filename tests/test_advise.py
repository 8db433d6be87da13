"""The advisor and tuned cells: rates chosen on validation only, halving, budget, resume, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from conftest import assert_user_error, sentiment_task_fixed, sentiment_task_varied
from unfreeze.advise.curves import FORMS
from unfreeze.advise.halving import AdviseSpec, decide, promote, rank, rung_sizes
from unfreeze.cli import app
from unfreeze.strategies import Freeze
from unfreeze.sweep import ResultsStore

runner = CliRunner()


@dataclass(repr=False)
class SlowFreeze(Freeze):
    """freeze whose default rate (1e-7) cannot fit the task in a few epochs; its grid also holds 1e-2."""

    default_learning_rate: ClassVar[float | None] = 1e-7
    learning_rate_factors: ClassVar[tuple[float, ...]] = (1.0, 1e5)
    tuned_epochs: ClassVar[int | None] = 8


@pytest.fixture
def scored_inputs(monkeypatch) -> list:
    """Every input a fitted network is asked to predict, in order (a spy on NetworkPredictor.logits)."""
    from unfreeze.inference.predictors import NetworkPredictor

    seen: list = []
    original = NetworkPredictor.logits

    def spy(self, inputs):
        seen.extend(inputs)
        return original(self, inputs)

    monkeypatch.setattr(NetworkPredictor, "logits", spy)
    return seen


@pytest.mark.slow  # several tuned fits; make test runs it
def test_lr_auto_finds_the_rate_that_fits_using_validation_data_only(tiny_model_dir, scored_inputs):
    from unfreeze import Classifier

    X, y = sentiment_task_fixed(96, 0)
    test_X, test_y = sentiment_task_fixed(64, 99)
    test_only = set(test_X) - set(X)
    assert len(test_only) > 40
    seen = scored_inputs
    common = dict(
        model=tiny_model_dir("bert"),
        k=0,
        head_learning_rate=1e-7,
        batch_size=8,
        progress=False,
        validation_fraction=0.25,
        patience=None,
    )
    tuned = Classifier(strategy=SlowFreeze(k=0), **{k: v for k, v in common.items() if k != "k"}).fit(X, y)
    record = tuned.fit_record_
    assert record["tuned"] and [t["learning_rate"] for t in record["lr_search"]] == [1e-7, 1e-2]
    assert record["learning_rate"] == 1e-2
    low, high = record["lr_search"]
    assert high["val_accuracy"] > low["val_accuracy"] and high["val_accuracy"] >= 0.9
    assert all(t["epochs_run"] == 8 and t["seconds"] > 0 for t in record["lr_search"])
    # every text a fitted model scored during the search was a training text: the test set was never read
    assert seen and set(seen) <= set(X) and not (set(seen) & test_only)
    assert tuned.score(test_X, test_y) >= 0.9
    fixed = Classifier(
        strategy=SlowFreeze(k=0), learning_rate="fixed", epochs=8, **{k: v for k, v in common.items() if k != "k"}
    ).fit(X, y)
    assert fixed.fit_record_["tuned"] is False and fixed.fit_record_["learning_rate"] == 1e-7
    assert fixed.score(test_X, test_y) < 0.75


def test_an_explicit_list_of_rates_and_its_errors(tiny_model_dir):
    from unfreeze import Classifier
    from unfreeze.errors import UnfreezeError

    X, y = sentiment_task_fixed(32, 1)
    clf = Classifier(
        tiny_model_dir("bert"),
        strategy="freeze",
        k=1,
        learning_rate="1e-3,1e-2",
        epochs=2,
        batch_size=8,
        progress=False,
    ).fit(X, y)
    assert [t["learning_rate"] for t in clf.fit_record_["lr_search"]] == [1e-3, 1e-2]
    with pytest.raises(UnfreezeError, match="needs a validation split"):
        Classifier(
            tiny_model_dir("bert"),
            strategy="freeze",
            learning_rate=[1e-3, 1e-2],
            validation_fraction=0.0,
            progress=False,
        ).fit(X, y)
    with pytest.raises(UnfreezeError, match=r"'learning_rate' parameter of Training must be a float > 0\.0, a list"):
        Classifier(tiny_model_dir("bert"), strategy="freeze", learning_rate="fast", progress=False).fit(X, y)
    # auto with no validation split: one fit at the default rate, and the record says why
    clf = Classifier(
        tiny_model_dir("bert"), strategy="freeze", k=2, validation_fraction=0.0, epochs=1, batch_size=8, progress=False
    ).fit(X, y)
    assert clf.fit_record_["tuned"] is False and "no validation split" in clf.fit_record_["tuning"]


def test_fit_chooses_rate_and_epoch_on_a_given_validation_set_and_trains_on_all_of_x(tiny_model_dir, scored_inputs):
    from unfreeze import Classifier
    from unfreeze.errors import UnfreezeError

    X, y = sentiment_task_fixed(48, 0)
    val_X, val_y = sentiment_task_fixed(24, 5)
    val_only = set(val_X) - set(X)
    assert len(val_only) > 12
    seen = scored_inputs
    clf = Classifier(
        tiny_model_dir("bert"),
        strategy="freeze",
        k=1,
        learning_rate=[1e-3, 1e-2],
        epochs=2,
        batch_size=8,
        progress=False,
    ).fit(X, y, validation=(val_X, val_y))
    record = clf.fit_record_
    assert record["validation"]["n"] == len(val_X) and len(record["lr_search"]) == 2
    # the rates were scored on the given set only, and every example of X trained
    assert seen and set(seen) <= set(val_X) and set(seen) & val_only
    assert record["history"][0]["distinct_examples"] == len(X)
    # one rate: the best epoch is chosen on the given set, which the history shows
    one = Classifier(
        tiny_model_dir("bert"), strategy="freeze", k=1, learning_rate=1e-2, epochs=2, batch_size=8, progress=False
    ).fit(X, y, validation=(val_X, val_y))
    assert "val_accuracy" in one.fit_record_["history"][-1]
    assert one.fit_record_["history"][0]["distinct_examples"] == len(X)
    with pytest.raises(UnfreezeError, match="validation labels 'maybe' are not in y's classes"):
        Classifier(tiny_model_dir("bert"), strategy="freeze", progress=False).fit(
            X, y, validation=(val_X[:2], [1, "maybe"])
        )
    with pytest.raises(UnfreezeError, match="validation has 2 inputs but 1 labels"):
        Classifier(tiny_model_dir("bert"), strategy="freeze", progress=False).fit(X, y, validation=(val_X[:2], [1]))


def test_a_sweep_with_a_validation_size_judges_every_size_on_the_same_held_out_examples(tiny_model_dir, tmp_path):
    from unfreeze.errors import UnfreezeError
    from unfreeze.sweep import SweepSpec, expand
    from unfreeze.sweep.runner import run_sweep

    texts, labels = sentiment_task_varied(120, 4)
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "\n".join(f"{t},{'pos' if v else 'neg'}" for t, v in zip(texts, labels)) + "\n")
    common = dict(
        data=str(train),
        test_size=0.2,
        model=str(tiny_model_dir("bert")),
        strategies=["features", "freeze"],
        k=[1],
        n_train=[16, 32],
        seeds=[0, 1],
        epochs=1,
        batch_size=8,
        learning_rate=[1e-3, 1e-2],
    )
    spec = SweepSpec(**common, validation_size=24)
    run_sweep(spec, tmp_path / "run", progress=False)
    rows = [r for r in ResultsStore(tmp_path / "run").latest().values() if "cell" in r]
    assert len(rows) == 8 and all(r["status"] == "done" for r in rows)
    # features cells (no rate) and tuned cells alike: scored on the 24 held-out examples at both sizes
    assert {r["validation"]["n"] for r in rows} == {24}
    assert all(len(r["fit"]["lr_search"]) == 2 for r in rows if r["cell"]["strategy"] == "freeze")
    # the held-out set is part of a cell's key: a sweep without one never reuses these rows
    plain = SweepSpec(**common)
    cell = expand(spec, 6)[0]
    assert cell.key("d", "m", spec.cell_settings(cell.strategy)) != cell.key(
        "d", "m", plain.cell_settings(cell.strategy)
    )
    with pytest.raises(UnfreezeError, match="besides the --validation-size 80 held out"):
        run_sweep(SweepSpec(**{**common, "n_train": [32]}, validation_size=80), tmp_path / "big", progress=False)
    with pytest.raises(UnfreezeError, match="--validation-size must be an int >= 0"):
        SweepSpec(**common, validation_size=-1)


@pytest.mark.parametrize("command", ["sweep", "advise"])
def test_a_negative_validation_size_is_one_line_exit_2(command, tmp_path):
    result = runner.invoke(app, [command, "movie-snippets", "--validation-size", "-1", "-o", str(tmp_path / "run")])
    assert_user_error(result, "--validation-size must be an int >= 0")
    assert not (tmp_path / "run").exists()


def test_strategies_declare_their_rate_grids():
    from unfreeze.strategies import Features, Full, Lora, SetFit

    assert Full().learning_rate_grid() == (5e-5, 1.5e-4, 4.5e-4)
    assert Lora().learning_rate_grid() == (5e-4, 1.5e-3, 4.5e-3) and Lora().epochs_for(True) == 8
    assert Lora().epochs_for(False) == 3  # --lr fixed keeps the release's behaviour
    assert SetFit().learning_rate_grid() == (6.67e-6, 2e-5, 6e-5)
    assert Features().learning_rate_grid() == ()


def test_sweep_keys_carry_the_searched_grid_and_fixed_keeps_old_keys():
    from unfreeze.sweep import SweepSpec, expand

    old = SweepSpec(strategies=["features", "lora"], n_train=[32], seeds=[0])
    fixed = SweepSpec(strategies=["features", "lora"], n_train=[32], seeds=[0], learning_rate="fixed")
    auto = SweepSpec(strategies=["features", "lora"], n_train=[32], seeds=[0], learning_rate="auto")
    keys = {
        name: [c.key("d", "m", s.cell_settings(c.strategy)) for c in expand(s, 6)]
        for name, s in (("old", old), ("fixed", fixed), ("auto", auto))
    }
    assert keys["old"] == keys["fixed"] and keys["auto"][1] != keys["old"][1]
    assert auto.cell_settings("lora")["search"] == {"rates": [5e-4, 1.5e-3, 4.5e-3], "epochs": 8}
    assert "search" not in auto.cell_settings("features")
    assert SweepSpec(learning_rate="3e-4").learning_rate == 3e-4


# -- halving on constructed scores -------------------------------------------------------------


class _Config:
    """A configuration as ``decide`` sees it: its cells are (label, n, seed) keys."""

    def __init__(self, label: str) -> None:
        self.label = label

    def cell(self, n: int, seed: int) -> tuple:
        return (self.label, n, seed)


def _rows(scores: dict[str, list[float]], n: int) -> dict[str, list[dict]]:
    return {
        label: [
            {
                "status": "done",
                "cell": {"label": label, "n_train": n, "seed": s},
                "validation": {"accuracy": a, "loss": 1 - a},
                "started": 0.0,
                "finished": 1.0,
            }
            for s, a in enumerate(values)
        ]
        for label, values in scores.items()
    }


def test_a_cell_projects_only_what_grows_with_the_training_size():
    from unfreeze.advise.cost import projected_cell_seconds

    # three rates searched, 2 s of training steps each: 6 s grow 8x from 64 to 512 examples; the other 18 s
    # (validation every epoch, model copies, scoring, timing) do not
    searched = {
        "cell": {"n_train": 64},
        "started": 0.0,
        "finished": 24.0,
        "fit": {"step_seconds": 2.0, "states_seconds": 0.5, "lr_search": [{"step_seconds": 2.0}] * 3},
    }
    assert projected_cell_seconds(searched, 512) == pytest.approx(24.0 - 6.5 + 6.5 * 8)
    once = {"cell": {"n_train": 64}, "started": 0.0, "finished": 8.0, "fit": {"step_seconds": 2.0}}
    assert projected_cell_seconds(once, 256) == pytest.approx(6.0 + 8.0)
    assert projected_cell_seconds(once, 64) == pytest.approx(8.0)
    # a row without the split (written before fits recorded it) scales whole
    assert projected_cell_seconds(
        {"cell": {"n_train": 64}, "started": 0.0, "finished": 8.0, "fit": {}}, 256
    ) == pytest.approx(32.0)


def test_past_the_first_rung_every_seed_is_projected_to_search_its_rate():
    rows = {}
    for label, cells in _rows({"a": [0.8, 0.8], "b": [0.7, 0.7]}, 64).items():
        for r in cells:
            # seed 0 searched three rates (24 s, 6 s of steps); seed 1 trained once at its rate (8 s, 2 s)
            r["finished"], r["fit"] = (
                (24.0, {"step_seconds": 2.0, "lr_search": [{"step_seconds": 2.0}] * 3})
                if r["cell"]["seed"] == 0
                else (8.0, {"step_seconds": 2.0})
            )
            rows[(label, 64, r["cell"]["seed"])] = r
    spec = AdviseSpec(seeds=[0, 1], eta=2, budget=10_000.0, finalists=1)
    decision = decide(
        spec, "id", 0, [64, 512], 64, ["a", "b"], [], {k: _Config(k) for k in "ab"}, rows, lambda c: c, 0.0
    )
    assert decision["promoted"] == ["a"] and decision["next_n_train"] == 512
    assert decision["rate_search"] == "every-seed"
    # both seeds of `a` at 512 as seed 0 searched at 64: 2 x (18 s + 6 s x 8) = 132 s, padded by 1.15
    assert decision["projected_seconds"] == pytest.approx(2 * (18.0 + 48.0) * 1.15)


def test_a_rung_decision_goes_one_size_up_while_the_budget_allows_and_shares_the_rate_when_only_that_fits():
    scores = {"a": [0.7, 0.7, 0.7], "b": [0.8, 0.8, 0.8], "c": [0.6, 0.6, 0.6], "f": [0.75, 0.75, 0.75]}
    rows = {}
    for label, cells in _rows(scores, 64).items():
        for r in cells:
            # every trained cell searched three rates: 30 s, 3 s of steps per rate; features 1 s
            r["finished"] = 1.0 if label == "f" else 30.0
            r["fit"] = {} if label == "f" else {"step_seconds": 3.0, "lr_search": [{"step_seconds": 3.0}] * 3}
            rows[(label, 64, r["cell"]["seed"])] = r
    by_label = {k: _Config(k) for k in scores}
    sizes = [64, 128, 256, 512]

    def decision(budget: float, rate_search: str = "every-seed") -> dict:
        spec = AdviseSpec(seeds=[0, 1, 2], eta=3, budget=budget, finalists=2)
        return decide(spec, "id", 0, sizes, 64, ["a", "b", "c"], ["f"], by_label, rows, lambda c: c, 5.0, rate_search)

    def within(room: float) -> float:
        """The budget that leaves ``room`` seconds after the 278 s spent and the 3% kept back for the plan."""
        return (278.0 + room) / 0.97

    # spent 5 + 9 x 30 + 3 x 1 = 278 s. A searched cell at n: 21 s + 9 s x n / 64; one rate: a third of it.
    # The two finalists go one size up (not straight to all the data): 128, then 256 for a learning curve
    wide = decision(5000.0)
    assert wide["promoted"] == ["b", "a"] and wide["eliminated"] == ["c"] and wide["reason"] == "finalists"
    assert wide["next_n_train"] == 128 and wide["rate_search"] == "every-seed"
    every = 1.15 * (2 * 3 * (21 + 18) + 3 * 2 + 2 * 3 * (21 + 36) + 3 * 4)  # 128 and 256, every seed searching
    assert wide["projected_seconds"] == pytest.approx(every)
    # a budget where only the first seed's rate kept for the rung reaches the two sizes still needed
    shared = 1.15 * (2 * (39 + 2 * 13) + 3 * 2 + 2 * (57 + 2 * 19) + 3 * 4)
    tight = decision(within(shared + 1))
    assert tight["next_n_train"] == 128 and tight["rate_search"] == "first-seed"
    assert tight["projected_seconds"] == pytest.approx(shared)
    # a pilot planned with the shared rate keeps it, even where searching would fit
    assert decision(5000.0, "first-seed")["rate_search"] == "first-seed"
    # room for the next size only: it goes there (a curve needs three; the plan will say if it gets them)
    one = 1.15 * (2 * (39 + 2 * 13) + 3 * 2)
    assert decision(within(one + 1))["next_n_train"] == 128
    # not even the shared rate takes both finalists to the two sizes still needed, but it takes the best one:
    # only it goes on (a curve for the best beats two configurations measured at two sizes)
    alone = decision(within(1.15 * ((39 + 2 * 13) + 3 * 2 + (57 + 2 * 19) + 3 * 4) + 1))
    assert alone["promoted"] == ["b"] and alone["eliminated"] == ["a", "c"] and alone["next_n_train"] == 128
    # nothing fits: the pilot ends here
    broke = decision(300.0)
    assert broke["next_n_train"] is None and broke["reason"] == "budget"
    # the largest size reached: the end
    last = decide(
        AdviseSpec(seeds=[0, 1, 2], budget=5000.0),
        "id",
        0,
        [64],
        64,
        ["a", "b", "c"],
        ["f"],
        by_label,
        rows,
        lambda c: c,
        5.0,
    )
    assert last["next_n_train"] is None and last["reason"] == "largest size"


def test_before_a_curves_sizes_configurations_within_noise_go_on_as_far_as_the_budget_takes_them():
    from unfreeze.advise.rungs import within_noise

    # a leads; b and c trail it by 0.020 and 0.037 on average, d by 0.163. The per-seed gaps' pooled spread is
    # 0.0382, so one standard error of a 3-seed mean gap is 0.0220: b and c are within two of it, d is not
    scores = {"a": [0.60, 0.50, 0.58], "b": [0.62, 0.47, 0.53], "c": [0.59, 0.48, 0.50], "d": [0.40, 0.38, 0.41]}
    rows_by = _rows(scores, 64)
    assert within_noise(rank(rows_by), rows_by) == ["a", "b", "c"]
    # one seed: no spread to read, nothing is known to be tied
    first = {label: cells[:1] for label, cells in rows_by.items()}
    assert within_noise(rank(first), first) == ["b"]  # b led seed 0
    seconds = {"a": 10.0, "b": 60.0, "c": 5.0, "d": 5.0}  # b trains like LoRA: six times a's seconds
    rows = {}
    for label, cells in rows_by.items():
        for r in cells:
            r["finished"], r["fit"] = seconds[label], {"step_seconds": seconds[label]}
            rows[(label, 64, r["cell"]["seed"])] = r
    by_label = {k: _Config(k) for k in scores}

    def decision(spec_scores: dict[str, list[float]], budget: float = 1000.0, i: int = 0) -> dict:
        for label, values in spec_scores.items():
            for s, v in enumerate(values):
                rows[(label, 64, s)]["validation"] = {"accuracy": v, "loss": 1 - v}
        # spent 3 x 80 = 240 s of 1,000 (30 kept back): 730 s. a to 128 and 256 on three seeds: 3 x (20 + 40) s,
        # padded by 1.15, 207 s; b: 1,242 s; c: 103.5 s
        spec = AdviseSpec(seeds=[0, 1, 2], eta=2, budget=budget, finalists=2)
        return decide(spec, "id", i, [64, 128, 256, 512], 64, list(scores), [], by_label, rows, lambda c: c, 0.0)

    # a budget that takes them all to a curve's sizes: the two promoted and c, within noise, go on; d does not
    ample = decision(scores, 5000.0)
    assert ample["promoted"] == ["a", "b", "c"] and ample["eliminated"] == ["d"] and ample["within_noise"] == []
    # once the finalists have their curve's sizes (a third rung), the halving rule alone: the best half go on
    assert decision(scores, 5000.0, i=2)["promoted"] == ["a", "b"]

    tied = decision(scores)
    assert tied["promoted"] == ["a", "c"] and tied["eliminated"] == ["b", "d"] and tied["within_noise"] == ["b"]
    assert tied["next_n_train"] == 128 and tied["projected_seconds"] == pytest.approx(1.15 * 3 * (20 + 40 + 10 + 20))
    # the expensive one leads (b's scores and a's swapped): within noise its lead is no evidence, and the two that
    # the budget can take to a curve's sizes instead of it go on; it is named as a tie that went out
    swapped = decision({"a": scores["b"], "b": scores["a"]})
    assert swapped["ranking"][0]["configuration"] == "b"
    assert swapped["promoted"] == ["a", "c"] and swapped["eliminated"] == ["b", "d"]
    assert swapped["within_noise"] == ["b"]
    # c clearly behind (0.2 on every seed, ranked last): the leader goes on alone, as before the tie rule
    alone = decision({"a": scores["a"], "b": scores["b"], "c": [0.40, 0.30, 0.38]})
    assert alone["promoted"] == ["a"] and alone["eliminated"] == ["b", "d", "c"] and alone["within_noise"] == ["b"]


def test_halving_promotes_the_best_third_by_paired_validation_scores():
    scores = {
        "a": [0.70, 0.72, 0.71],
        "b": [0.80, 0.60, 0.70],
        "c": [0.90, 0.88, 0.91],
        "d": [0.50, 0.52, 0.55],
        "e": [0.75, 0.76, 0.74],
    }
    ranking = rank(_rows(scores, 64))
    assert [r["configuration"] for r in ranking] == ["c", "e", "a", "b", "d"]
    assert promote(ranking, 3) == (["c", "e"], ["a", "b", "d"])
    assert promote(ranking[:1], 3) == (["c"], [])
    assert promote(ranking, 5) == (["c"], ["e", "a", "b", "d"])
    assert promote(ranking, 5, finalists=2) == (["c", "e"], ["a", "b", "d"])  # never fewer than the finalists
    assert promote(ranking, 3, finalists=4) == (["c", "e", "a", "b"], ["d"])
    failed = _rows({"x": [0.9, 0.9]}, 64)
    failed["x"][1]["status"] = "failed"
    assert rank({**failed, **_rows({"y": [0.6, 0.6]}, 64)})[0]["configuration"] == "y"  # 0.45 < 0.6


def _entry(label: str, sizes: list[int], fit_seconds: float, predicted: float, full: int) -> dict:
    point = {"score": predicted, "low": predicted - 0.01, "high": predicted + 0.01}
    return {
        "configuration": label,
        "strategy": label.split()[0],
        "params": {},
        "sizes": sizes,
        "form": "pow3",
        "cost": {"fit_seconds": fit_seconds},
        "predicted": {str(n): point for n in (full, 2 * full, 4 * full)},
    }


def test_the_recommendation_compares_the_finalists_measured_at_the_largest_size():
    from unfreeze.advise.plan import recommend

    full = 8000
    # features ran every size and its curve extrapolates far above what it measured; the finalists ran
    # 64 and 512 only. At 512, paired by seed: k=0 0.79, k=3 0.777 (worse on every seed), features 0.735
    scores = {
        "features": {
            64: {0: 0.65, 1: 0.67, 2: 0.68},
            128: {0: 0.67, 1: 0.67, 2: 0.72},
            256: {0: 0.70, 1: 0.66, 2: 0.68},
            512: {0: 0.78, 1: 0.725, 2: 0.70},
        },
        "freeze k=0": {64: {0: 0.62, 1: 0.68, 2: 0.73}, 512: {0: 0.81, 1: 0.78, 2: 0.78}},
        "freeze k=3": {64: {0: 0.63, 1: 0.67, 2: 0.71}, 512: {0: 0.80, 1: 0.77, 2: 0.76}},
    }
    candidates = [
        _entry("features", [64, 128, 256, 512], 0.4, 0.95, full),
        _entry("freeze k=0", [64, 512], 900.0, 0.79, full),
        _entry("freeze k=3", [64, 512], 340.0, 0.78, full),
    ]
    rec = recommend(candidates, scores, full, tolerance=0.0)
    assert rec["configuration"] == "freeze k=0" and rec["size"] == 512 and rec["score"] == pytest.approx(0.79)
    rows = {c["configuration"]: c for c in rec["comparisons"]}
    assert rows["freeze k=3"]["difference"] == pytest.approx(-0.0133, abs=1e-4) and not rows["freeze k=3"]["acceptable"]
    assert rows["features"]["high"] < 0 and not rows["features"]["acceptable"]
    assert "at 512 examples (predicted 0.790" in rec["why"]
    # a seed where k=3 is better: no longer shown worse, and it is cheaper (0.0033 below k=0)
    scores["freeze k=3"][512][1] = 0.80
    assert recommend(candidates, scores, full, tolerance=0.0)["configuration"] == "freeze k=3"
    # better on one seed of three but 1.3 points below on the mean: not shown worse, yet more than max_loss below
    scores["freeze k=3"][512] = {0: 0.78, 1: 0.79, 2: 0.76}
    assert recommend(candidates, scores, full, tolerance=0.0)["configuration"] == "freeze k=3"  # no cap
    assert recommend(candidates, scores, full, tolerance=0.0, max_loss=0.01)["configuration"] == "freeze k=0"
    assert recommend(candidates, scores, full, tolerance=0.02, max_loss=0.01)["configuration"] == "freeze k=3"


def test_rung_sizes_grow_geometrically_to_the_full_data():
    assert rung_sizes(64, 1000, 2.0) == [64, 128, 256, 512, 1000]
    assert rung_sizes(64, 560, 2.0) == [64, 128, 256, 560]  # a short last step merges into the full size
    assert rung_sizes(64, 64, 2.0) == [64]


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def advise_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("advise-data")
    texts, labels = sentiment_task_varied(240, 3)
    path = folder / "train.csv"
    path.write_text("text,label\n" + "\n".join(f"{t},{'pos' if y else 'neg'}" for t, y in zip(texts, labels)) + "\n")
    return path


def _advise_args(data, model, out, *extra):
    return [
        "advise",
        str(data),
        "--model",
        model,
        "-o",
        str(out),
        "--min-size",
        "48",
        "--seeds",
        "0,1",
        "--strategies",
        "features,freeze",
        "--k",
        "0,2",
        "--batch-size",
        "16",
        "--max-length",
        "32",
        "--epochs",
        "2",
        *extra,
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "0.5s"], "cannot run even the features baseline"),
        (["--target", "1.2"], "--target is a score in (0, 1]"),
        (["--min-size", "5000"], "too few for the smallest rung"),
        (["--max-size", "5000"], "--max-size 5000 is more than the"),
        (["--budget", "soon"], "--budget takes a duration"),
        (["--finalists", "0"], "--finalists must be an int >= 1"),
        (["--first-rung-rate", "sometimes"], "--first-rung-rate must be one of first-seed, every-seed"),
        (["--max-loss", "1.5"], "--max-loss is a score difference in [0, 1)"),
        (["--threads", "0"], "--threads must be an int >= 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_the_store_readable(
    extra, message, advise_data, tiny_model_dir, tmp_path
):
    out = tmp_path / "run"
    result = runner.invoke(app, _advise_args(advise_data, tiny_model_dir("bert"), out, *extra))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert ResultsStore(out).records() == []  # nothing half-written
    assert not (out / "report.html").exists()


def test_a_deadline_stops_training_and_embedding_and_is_not_a_cell_failure(tiny_model_dir):
    from unfreeze import Classifier, Features, Freeze, Training
    from unfreeze.machine.deadline import DeadlineReached, deadline

    texts, labels = sentiment_task_fixed(40, seed=0)
    for strategy, training in ((Freeze(k=1), Training(epochs=1, learning_rate=1e-4)), (Features(C=1.0), None)):
        clf = Classifier(
            model=tiny_model_dir("bert"),
            strategy=strategy,
            training=training,
            cache=False,
            progress=False,
            device="cpu",
        )
        with pytest.raises(DeadlineReached), deadline(time.monotonic() - 1.0):
            clf.fit(texts, labels)
        assert clf.fit(texts, labels) is clf  # no deadline outside the block
    with deadline(time.monotonic() + 3600.0):  # one not reached changes nothing
        assert Classifier(
            model=tiny_model_dir("bert"), strategy=Features(C=1.0), cache=False, progress=False, device="cpu"
        ).fit(texts, labels).predict(texts).shape == (40,)


def test_advise_stops_a_cell_that_would_run_past_the_budget(advise_data, tiny_model_dir, tmp_path, monkeypatch):
    """A machine that slows down after the calibration timed it (here every optimiser step takes a second from
    then on): the pilot's projection cannot see it, so a cell runs into the deadline, stops within a step, and is
    not recorded."""
    import unfreeze.advise.calibrate as calibrate
    import unfreeze.training.loop as loop

    step = loop.optimizer_step
    timed = calibrate.calibrate

    def slow_step(*args, **kwargs):
        time.sleep(1.0)
        return step(*args, **kwargs)

    def then_slow(*args, **kwargs):
        costs = timed(*args, **kwargs)
        monkeypatch.setattr(loop, "optimizer_step", slow_step)
        return costs

    monkeypatch.setattr(calibrate, "calibrate", then_slow)
    out = tmp_path / "run"
    budget = 20.0
    result = runner.invoke(
        app,
        _advise_args(
            advise_data,
            tiny_model_dir("bert"),
            out,
            "--budget",
            f"{budget:.0f}s",
            "--json",
            str(tmp_path / "plan.json"),
        ),
    )
    assert result.exit_code == 0, result.output
    # the command's own clock, from its start (model loading included) to the plan written
    elapsed = float(re.search(r"^advise: ([0-9.]+) s$", result.output, re.M).group(1))
    assert elapsed <= budget, elapsed
    assert "the budget ran out during a cell (not recorded)" in result.output
    rows = ResultsStore(out).records()
    cells = [r for r in rows if "cell" in r]
    assert cells and all(r["status"] == "done" for r in cells)  # the cut cell is neither a result nor a failure
    # a freeze cell needs about 18 s of steps (3 rates x 2 epochs x 3 batches): none finished
    assert all(r["cell"]["strategy"] == "features" for r in cells)
    assert [r["reason"] for r in rows if r.get("kind") == "advise-stop"] == ["budget"]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["stopped"] == "budget" and plan["recommendation"]["configuration"] == "features"


@pytest.mark.slow  # several tuned fits; make test runs it
def test_advise_respects_its_budget_and_writes_the_plan(advise_data, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    budget = 40.0
    started = time.monotonic()
    result = runner.invoke(
        app,
        _advise_args(
            advise_data,
            tiny_model_dir("bert"),
            out,
            "--budget",
            f"{budget:.0f}s",
            "--json",
            str(tmp_path / "plan.json"),
            "--quiet",
        ),
    )
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert elapsed <= budget, elapsed
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["spent_seconds"] <= budget
    rec = plan["recommendation"]
    assert rec["configuration"] in {"features", "freeze k=0", "freeze k=2"}
    entry = next(e for e in plan["plan"] if e["configuration"] == rec["configuration"])
    # a prediction, or the reason there is none (the tiny model's seeds scatter: the curve's error may be too wide)
    assert (0 <= rec["predicted_score"] <= 1) if rec["predicted_score"] is not None else entry["not_predicted"]
    assert set(plan["backtest"]) <= set(FORMS)
    assert "recommendation: " in result.stdout and (out / "report.html").exists()
    rows = ResultsStore(out).records()
    cells = [r for r in rows if "cell" in r]
    assert cells and all("test" not in r for r in cells)  # the advisor never scores the test set
    # rungs past a curve's sizes may keep the rate of the rung before: those cells are checked apart
    kept_at = {d["next_n_train"] for d in rows if d.get("kind") == "advise-rung" and d["rate_search"] == "kept"}
    tuned = [
        r
        for r in cells
        if r["cell"]["strategy"] == "freeze" and r["status"] == "done" and r["cell"]["n_train"] not in kept_at
    ]
    first_rung = min(r["cell"]["n_train"] for r in tuned)
    shared = [r for r in tuned if r["cell"]["n_train"] == first_rung and r["cell"]["seed"] != 0]
    searched = [r for r in tuned if r not in shared]
    assert searched and all(r["fit"]["tuned"] and len(r["fit"]["lr_search"]) == 3 for r in searched)
    # at the first rung the other seed trains once, at the rate the first seed's search chose
    chosen = {
        r["cell"]["label"]: r["fit"]["learning_rate"]
        for r in searched
        if r["cell"]["n_train"] == first_rung and r["cell"]["seed"] == 0
    }
    assert shared and all(
        not r["fit"].get("tuned")
        and "lr_search" not in r["fit"]
        and r["fit"]["learning_rate"] == chosen[r["cell"]["label"]]
        for r in shared
    )
    # every decision at every rung is scored on the same held-out validation set per seed
    held = json.loads((out / "advise.json").read_text())["validation_size"]
    assert held == 38  # a fifth of the 192-example pool (the rest of the 240 is the test split)
    assert {r["validation"]["n"] for r in cells if r["status"] == "done"} == {held}
    assert any(r.get("kind") == "advise-rung" for r in rows)
    # a second run resumes: no cell runs again, the same plan
    again = runner.invoke(
        app,
        _advise_args(
            advise_data,
            tiny_model_dir("bert"),
            out,
            "--budget",
            f"{budget:.0f}s",
            "--json",
            str(tmp_path / "again.json"),
            "--quiet",
        ),
    )
    assert again.exit_code == 0, again.output
    assert len([r for r in ResultsStore(out).records() if "cell" in r]) == len(cells)
    second = json.loads((tmp_path / "again.json").read_text())
    assert second["recommendation"]["configuration"] == rec["configuration"]
    assert [d["promoted"] for d in second["rungs"]] == [d["promoted"] for d in plan["rungs"]]


def _comparable(plan: dict) -> dict:
    return {
        "recommendation": plan["recommendation"]["configuration"],
        "rungs": [(d["n_train"], d["promoted"], d["next_n_train"]) for d in plan["rungs"]],
        "scores": {e["configuration"]: e.get("measured") for e in plan["plan"]},
    }


@pytest.mark.slow
def test_a_sigkilled_advise_resumes_to_the_plan_of_an_uninterrupted_run(advise_data, tiny_model_dir, tmp_path):
    env = {**os.environ}
    base = [sys.executable, "-m", "unfreeze"]
    reference = subprocess.run(
        base
        + _advise_args(
            advise_data,
            tiny_model_dir("bert"),
            tmp_path / "ref",
            "--budget",
            "10m",
            "--json",
            str(tmp_path / "ref.json"),
            "--quiet",
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert reference.returncode == 0, reference.stderr[-2000:]
    out = tmp_path / "killed"
    args = base + _advise_args(
        advise_data, tiny_model_dir("bert"), out, "--budget", "10m", "--json", str(tmp_path / "killed.json"), "--quiet"
    )
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = ResultsStore(out)
    deadline = time.monotonic() + 300
    while len([r for r in store.records() if "cell" in r]) < 5:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.json").exists()
    store.records()  # readable after the kill
    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    keys = [r["key"] for r in store.records()]
    assert len(keys) == len(set(keys))  # no cell and no decision recorded twice
    assert _comparable(json.loads((tmp_path / "killed.json").read_text())) == _comparable(
        json.loads((tmp_path / "ref.json").read_text())
    )


def _cost_row(n: int, seconds: float, memory_mib: float, state_bytes: float | None = None) -> dict:
    fit = {"peak_memory_bytes": int(memory_mib * 2**20), "trainable_parameters": 10}
    if state_bytes is not None:
        fit["state_bytes_per_example"] = state_bytes
    return {"cell": {"n_train": n}, "started": 0.0, "finished": seconds, "fit": fit}


def test_the_cost_model_reads_fit_time_and_memory_off_at_the_full_size():
    from unfreeze.advise.cost import cost_at

    # one size: seconds proportional to n; memory: the measured peak plus the cached state of the examples added
    # (64 KiB each: 6,336 more examples are 396 MiB)
    one = cost_at([_cost_row(64, 8.0, 1600.0, 65536.0), _cost_row(64, 10.0, 1500.0, 65536.0)], 6400)
    assert one["fit_seconds"] == pytest.approx(900.0)
    assert one["peak_memory_mib"] == pytest.approx(1600.0 + 6336 * 65536 / 2**20)
    # two sizes: seconds a + b n (2 + 0.1 n). Memory grows with what the fit caches per example, not with the
    # peaks' trend: these peaks rose 200 MiB from 100 to 300 examples (the process's history) while the fit
    # caches nothing per example (full fine-tuning), so the peak at 300 stays the answer at 1,000
    two = cost_at([_cost_row(100, 12.0, 1100.0, 0.0), _cost_row(300, 32.0, 1300.0, 0.0)], 1000)
    assert two["fit_seconds"] == pytest.approx(102.0) and two["peak_memory_mib"] == pytest.approx(1300.0)
    assert two["trainable_parameters"] == 10 and two["measured_sizes"] == [100, 300]
    # the first rung's shared rate: seed 0 searched three rates (24 s at 64), seed 1 trained once (8 s); the fit
    # of the configuration searches, so the seconds come from the searched cells: 6 s of steps at 64 are 600 s at
    # 6,400, the other 18 s stay
    searched = {
        "cell": {"n_train": 64},
        "started": 0.0,
        "finished": 24.0,
        "fit": {"step_seconds": 2.0, "lr_search": [{"step_seconds": 2.0}] * 3},
    }
    shared = {"cell": {"n_train": 64}, "started": 0.0, "finished": 8.0, "fit": {"step_seconds": 2.0}}
    assert cost_at([searched, shared], 6400)["fit_seconds"] == pytest.approx(18.0 + 600.0)
    # a frozen model (features): the pilot's cells read pooled embeddings, a fit on all the data embeds every text
    # (2 ms each, as prediction): 0.5 s of head fitting at 64 plus 6,400 x 2 ms
    frozen = {
        "cell": {"n_train": 64},
        "started": 0.0,
        "finished": 0.5,
        "predict_seconds_per_text": 0.002,
        "fit": {"step_seconds": 0.5, "trainable_parameters": 0, "peak_memory_bytes": 2**30},
    }
    assert cost_at([frozen], 6400)["fit_seconds"] == pytest.approx(0.5 * 100 + 6400 * 0.002)
    # rows from before fits recorded their cached state: the largest measured peak, not a line through it
    legacy = cost_at([_cost_row(100, 12.0, 1100.0), _cost_row(300, 32.0, 1300.0)], 100_000)
    assert legacy["peak_memory_mib"] == pytest.approx(1300.0)


def test_fits_record_what_grows_with_the_training_size(tiny_model_dir, tiny_backbone):
    """What the cost model scales: the cached state per example (the frozen-prefix cache of a freeze fit, the
    embeddings of features) and the seconds of training steps."""
    from conftest import sentiment_task_fixed
    from unfreeze import Classifier, Features, Freeze, Training

    texts, labels = sentiment_task_fixed(40, seed=0)
    backbone = tiny_backbone("bert")
    lengths = backbone.encode(texts, 32).lengths
    row_bytes = backbone.hidden_size * 4  # fp32 states: one hidden vector per token

    one_epoch = Training(epochs=1)

    def record(strategy, training: Training | None = one_epoch) -> dict:
        return (
            Classifier(
                model=tiny_model_dir("bert"),
                strategy=strategy,
                training=training,
                precision="fp32",
                max_length=32,
                cache=False,
                progress=False,
                device="cpu",
            )
            .fit(texts, labels)
            .fit_record_
        )

    freeze = record(Freeze(k=1))
    cached = freeze["state_bytes_per_example"]  # one state per token of each training text
    assert min(lengths) * row_bytes <= cached <= max(lengths) * row_bytes and cached > row_bytes
    # the seconds that grow with n (training steps, the prefix pass), apart from the rest (validation, copies),
    # for each rate the search tried
    assert len(freeze["lr_search"]) == 3
    for trial in freeze["lr_search"]:
        assert 0 < trial["step_seconds"] < trial["seconds"]
    assert 0 < freeze["step_seconds"] < sum(freeze["epoch_seconds"]) + freeze["prefix_seconds"]
    assert record(Freeze(k=0))["state_bytes_per_example"] == 0.0  # nothing frozen, nothing cached
    assert record(Features(C=1.0), None)["state_bytes_per_example"] == row_bytes  # one pooled vector per text
