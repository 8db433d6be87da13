"""The advisor at a budget against the exhaustive tuned grid it samples from; learning-curve back-tests.

For each dataset (MiniLM): the exhaustive grid is a sweep of the same strategies, k values,
training sizes (the advisor's rungs) and seeds, every cell's learning rate tuned on its
validation split, scored on the test set; the advisor runs at budget B on the same data.

- time ratio: the grid's cell time / the advisor's spent time (model loading included);
- regret: the best mean test accuracy in the grid at the largest size minus the test accuracy
  (same grid rows) of the advisor's pick; printed as accuracy-delta = -regret;
- learning-curve back-tests on the grid's rows: each form fitted on every size but the largest,
  predicting the largest (validation accuracy, mean over seeds), mean absolute error per form
  and for the last-value baseline.

Resumable: both runs keep their results stores under bench/runs/advise-*; rerunning skips
finished cells (the times reported are the stored cells' own). ``--quick``: movie-snippets
only, sizes 64-256, two seeds, features and freeze k in {3, 5}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common

ROOT = Path(__file__).parent / "runs"


def settings(quick: bool) -> list[dict]:
    if quick:
        return [
            {
                "data": "movie-snippets",
                "strategies": ["features", "freeze"],
                "k": [3, 5],
                "sizes": (64, 256),
                "seeds": [0, 1],
                "budget": 150.0,
            }
        ]
    return [
        {
            "data": name,
            "strategies": ["features", "freeze", "lora"],
            "k": [0, 3, 5],
            "sizes": (64, 512),
            "seeds": [0, 1, 2],
            "budget": budget,
        }
        for name, budget in (("movie-snippets", 600.0), ("bbc-news", 600.0), ("tweets", 600.0))
    ]


def run_one(setting: dict, quick: bool) -> dict:
    from unfreeze.advise import curves as lc
    from unfreeze.advise.cost import cell_seconds
    from unfreeze.advise.halving import run_halving
    from unfreeze.advise.plan import make_plan, validation_scores
    from unfreeze.advise.render import write_outputs
    from unfreeze.advise.spec import AdviseSpec, default_validation_size, rung_sizes
    from unfreeze.sweep import ResultsStore, SweepSpec
    from unfreeze.sweep.plan import load_sweep_data
    from unfreeze.sweep.runner import run_sweep

    tag = f"advise-{setting['data']}{'-quick' if quick else ''}"
    low, high = setting["sizes"]
    sizes = rung_sizes(low, high, 2.0)
    common = dict(
        data=setting["data"],
        model="minilm-l6",
        strategies=setting["strategies"],
        k=setting["k"],
        seeds=setting["seeds"],
        max_length=64,
        learning_rate="auto",
        validation_fraction=0.1,
    )
    # the advisor's validation set per seed (its default size), held out of the pool the same way by the grid
    pool = load_sweep_data(SweepSpec(data=setting["data"])).train_pool
    held = default_validation_size(len(pool), len(set(pool.labels)))
    # the exhaustive tuned grid: every configuration at every rung size, scored on the test set
    grid_dir = ROOT / f"{tag}-grid"
    grid_spec = SweepSpec(**common, n_train=sizes, n_test=1000, validation_size=held)
    run_sweep(grid_spec, grid_dir, progress=False)
    rows = [r for r in ResultsStore(grid_dir).latest().values() if r.get("status") == "done"]
    grid_seconds = sum(cell_seconds(r) for r in rows)
    test = {}
    for r in rows:
        if r["cell"]["n_train"] == high:
            test.setdefault(r["cell"]["label"], []).append(r["test"]["accuracy"])
    test = {label: sum(v) / len(v) for label, v in test.items()}
    best_label = max(test, key=test.get)

    # the advisor on the same data and configurations, at budget B, up to the grid's largest size
    advise_dir = ROOT / f"{tag}-advisor"
    spec = AdviseSpec(**common, budget=setting["budget"], min_size=low, max_size=high, eta=3, validation_size=held)
    started = time.monotonic()
    run = run_halving(spec, advise_dir, started, progress=False)
    plan = make_plan(run)
    write_outputs(plan, run)
    pick = plan["recommendation"]["configuration"]
    regret = test[best_label] - test[pick]

    # learning-curve back-tests on the grid's validation scores (and on its test scores)
    validation = validation_scores(rows)
    test_scores: dict[str, dict[int, dict[int, float]]] = {}
    for r in rows:
        test_scores.setdefault(r["cell"]["label"], {}).setdefault(r["cell"]["n_train"], {})[r["cell"]["seed"]] = r[
            "test"
        ]["accuracy"]
    backtests = {"validation": lc.backtest(validation), "test": lc.backtest(test_scores)}
    chosen = lc.choose_form(backtests["validation"], len(sizes) - 1)
    return {
        "data": setting["data"],
        "sizes": sizes,
        "validation_size": held,
        "grid_seconds": grid_seconds,
        "advisor_seconds": plan["spent_seconds"],
        "ratio": grid_seconds / max(plan["spent_seconds"], 1e-9),
        "pick": pick,
        "pick_test": test[pick],
        "best": best_label,
        "best_test": test[best_label],
        "regret": regret,
        "predicted": plan["recommendation"]["predicted_score"],
        "backtests": {k: {f: v["mae"] for f, v in b.items()} for k, b in backtests.items()},
        "form": chosen,
        "stopped": plan["stopped"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="movie-snippets only, small sizes (under 5 min)")
    parser.add_argument("--data", help="only this dataset")
    args = parser.parse_args()
    _common.print_machine()
    results = []
    for setting in settings(args.quick):
        if args.data and setting["data"] != args.data:
            continue
        result = run_one(setting, args.quick)
        results.append(result)
        print(json.dumps(result), flush=True)
    print(
        f"{'data':<16}{'grid s':>9}{'advisor s':>11}{'ratio':>7}  {'advisor pick':<16}{'test':>7}  "
        f"{'grid best':<16}{'test':>7}{'regret':>8}"
    )
    for r in results:
        print(
            f"{r['data']:<16}{r['grid_seconds']:>9.0f}{r['advisor_seconds']:>11.0f}{r['ratio']:>7.2f}  "
            f"{r['pick']:<16}{r['pick_test']:>7.4f}  {r['best']:<16}{r['best_test']:>7.4f}{r['regret']:>8.4f}"
        )
    print("learning-curve back-test MAE at the held-out largest size (validation accuracy):")
    for r in results:
        forms = ", ".join(f"{f} {v:.4f}" for f, v in r["backtests"]["validation"].items())
        print(f"  {r['data']}: {forms}; chosen {r['form']}")
    total_grid = sum(r["grid_seconds"] for r in results)
    total_advisor = sum(r["advisor_seconds"] for r in results)
    worst = max((r["regret"] for r in results), default=0.0)
    _common.print_closing(total_grid / max(total_advisor, 1e-9), -worst)


if __name__ == "__main__":
    main()
