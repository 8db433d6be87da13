"""The advisor at the budgets people give it: sizes reached, its prediction against the fitted pick's test score,
and regret, on a quiet machine and beside a competing job.

For each dataset and budget, ``unfreeze advise`` runs in this process exactly as the command does (a fresh run
folder, its clock started before the model loads, torch threads set from the free cores), then its pick is
fitted on all the labelled data as ``advise --fit`` fits it (the rate its pilot chose) and scored on the test
split, which the pilot never reads. Printed per run: sizes reached, seeds, the pick, its predicted score at the
full size (or "not predicted"), its test score, the gap, and the regret: the best configuration's test score
minus the pick's, where every configuration the advisor considers is fitted on all the labelled data with its
rate searched on a validation split, on ``--reference-seeds`` seeds (3), and scored by its mean (once per dataset;
kept in ``reference.json``). ``--busy`` runs a Python busy
loop on one core beside each advisor run (the fits run quiet).

``--pool N`` makes the labelled data a seeded stratified sample of N texts of the training split (default: all
of it; a fit of fine-tuning on all 8,455 movie snippets takes most of an hour on two cores); the test split is
capped at ``--n-test`` texts. ``--demo`` adds the demo's command (movie-snippets, all 8,455, max length 64, its
budget) without the fit. ``--quick``: movie-snippets, 600 texts, a 2-minute budget, features and freeze k=3,5.

The last column is how long the trained cells took over what the calibration projected for them (the plan's
"the cells took Nx their calibration"; ``bench/advise_projection.py`` compares it across runs offline).
Ends with ``ratio:`` (the mean budget over the mean seconds the advisor took: above 1, it kept within its budgets)
and ``accuracy-delta:`` (minus the worst regret).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common

ROOT = Path(__file__).parent / "runs" / "advise-budgets"
STRATEGIES = ["features", "freeze", "lora"]


@contextlib.contextmanager
def busy_loop(on: bool):
    """A competing CPU job: a Python busy loop on one core, for as long as the block runs."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        yield
    finally:
        proc.kill()
        proc.wait()


def prepare(data: str, pool: int | None, n_test: int) -> tuple[str, str, int]:
    """Files of the labelled pool and the test split (written once), and the pool's size. Movie snippets are
    written as CSV (the first runs), others as JSON lines: a tweet's lone carriage return is left unquoted by
    pandas' CSV writer, and the row breaks there."""
    from unfreeze.data import load_data, sample

    folder = ROOT / f"{data}-{pool or 'all'}"
    suffix = "csv" if data == "movie-snippets" else "jsonl"
    train_csv, test_csv = folder / f"train.{suffix}", folder / f"test.{suffix}"
    if not train_csv.exists():
        import pandas as pd

        folder.mkdir(parents=True, exist_ok=True)
        train = load_data(f"{data}:train")
        if pool is not None and pool < len(train):
            train = sample(train, n_total=pool, seed=0)
        test = load_data(f"{data}:test")
        if n_test < len(test):
            test = sample(test, n_total=n_test, seed=0)
        for dataset, path in ((train, train_csv), (test, test_csv)):
            frame = pd.DataFrame({"text": list(dataset.inputs), "label": list(dataset.labels)})
            if suffix == "csv":
                frame.to_csv(path, index=False)
            else:
                frame.to_json(path, orient="records", lines=True, force_ascii=False)
    from unfreeze.data import load_data as read

    return str(train_csv), str(test_csv), len(read(str(train_csv)))


def spec_for(train_csv: str, test_csv: str, budget: float, quick: bool, max_length: int):
    from unfreeze.advise.spec import AdviseSpec

    strategies = ["features", "freeze"] if quick else STRATEGIES
    return AdviseSpec(
        data=train_csv,
        test=test_csv,
        model="minilm-l6",
        strategies=strategies,
        k=[3, 5] if quick else None,
        seeds=[0, 1, 2],
        budget=budget,
        max_length=max_length,
    )


def run_advisor(spec, out: Path, busy: bool, resume: bool = False) -> tuple[dict, float]:
    """The advisor's plan and the seconds it took. ``resume``: replay a finished run from its folder (no cell runs
    again; the plan is made anew by this code) and report the seconds the run took when it ran."""
    from unfreeze.cli.advise import run_advisor as run

    took = out / "bench.json"
    if resume and took.exists():
        result = run(spec, out, time.monotonic(), progress=False)
        return result["plan"], json.loads(took.read_text())["seconds"]
    shutil.rmtree(out, ignore_errors=True)
    with busy_loop(busy):
        started = time.monotonic()
        result = run(spec, out, started, progress=False)
        seconds = time.monotonic() - started
    took.write_text(json.dumps({"seconds": seconds}))
    return result["plan"], seconds


def fitted(spec, plan: dict, store: Path) -> dict:
    """The pick fitted as ``advise --fit`` fits it, and its test accuracy (cached by configuration and rate)."""
    from unfreeze.cli.advise import fit_recommended

    rec = plan["recommendation"]
    key = f"{rec['configuration']} @ {rec.get('learning_rate')}"
    cache = json.loads(store.read_text()) if store.exists() else {}
    if key not in cache:
        _, metrics = fit_recommended(spec, plan, None)
        cache[key] = {"test": metrics["test"]["accuracy"], "fit_seconds": metrics["fit_seconds"]}
        store.write_text(json.dumps(cache, indent=2))
    return cache[key]


def reference(spec, configurations: list[dict], store: Path, seeds: int) -> dict[str, float]:
    """Every configuration fitted on all the labelled data on ``seeds`` seeds, its rate searched on a validation
    split: the mean test score per configuration. One seed's test score moves by a point or two between seeds
    (1,000 test texts: a standard error of about 1.4 points), as much as the configurations differ, so the regret
    is read from means. ``store`` keeps {configuration: {seed: test score}} (a bare number: seed 0, as the first
    runs kept it)."""
    from unfreeze.estimators import Classifier
    from unfreeze.strategies import strategy_class
    from unfreeze.sweep.plan import load_sweep_data
    from unfreeze.training.settings import Training

    kept = json.loads(store.read_text()) if store.exists() else {}
    scores = {k: v if isinstance(v, dict) else {"0": v} for k, v in kept.items()}
    data = None
    for seed in range(seeds):
        for entry in configurations:
            label = entry["configuration"]
            if str(seed) in scores.get(label, {}):
                continue
            data = data or load_sweep_data(spec.sweep_spec())
            cls = strategy_class(entry["strategy"])
            clf = Classifier(
                model=spec.model,
                strategy=cls(**entry["params"]),
                training=Training(**spec.sweep_spec().training_for(cls)),
                max_length=spec.max_length,
                batch_size=spec.batch_size,
                seed=seed,
                progress=False,
            )
            started = time.perf_counter()
            clf.fit(data.train_pool.inputs, data.train_pool.labels)
            scores.setdefault(label, {})[str(seed)] = clf.score(data.test.inputs, data.test.labels)
            print(
                f"  reference {label} seed {seed}: test {scores[label][str(seed)]:.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            store.write_text(json.dumps(scores, indent=2))
    return {label: sum(by_seed[str(s)] for s in range(seeds)) / seeds for label, by_seed in scores.items()}


def every_configuration(spec) -> list[dict]:
    """Every configuration the advisor considers (MiniLM: 6 blocks, freeze k in {0, 3, 5} by default), whatever
    its pilot left out."""
    from unfreeze.advise.halving import configurations

    return [
        {"configuration": c.label, "strategy": c.strategy, "params": dict(c.params)}
        for c in configurations(spec.sweep_spec(k=spec.k or [0, 3, 5]), 6)
    ]


def one_run(data: str, budget: float, busy: bool, args) -> dict:
    train_csv, test_csv, n = prepare(data, args.pool, args.n_test)
    spec = spec_for(train_csv, test_csv, budget, args.quick, args.max_length)
    folder = Path(train_csv).parent
    tag = f"{budget:.0f}s-{'busy' if busy else 'quiet'}"
    plan, seconds = run_advisor(spec, folder / f"advisor-{tag}", busy, args.resume)
    rec = plan["recommendation"]
    row = {
        "data": data,
        "n": n,
        "budget": budget,
        "busy": busy,
        "seconds": seconds,
        "sizes": plan["sizes"],
        "seeds": len(plan["seeds"]),
        "pick": rec["configuration"] if rec else None,
        "predicted": rec["predicted_score"] if rec else None,
        "stopped": plan["stopped"],
        "pilot_changes": (plan.get("pilot") or {}).get("changes"),
        "slowdown": (plan.get("machine") or {}).get("slowdown"),
        **code_and_race(plan),
    }
    if rec is not None and not args.no_fit:
        fit = fitted(spec, plan, folder / "fits.json")
        row.update(
            test=fit["test"],
            fit_seconds=fit["fit_seconds"],
            projected_fit=rec["fit_seconds"],
            projected_fit_interval=rec.get("fit_interval"),
        )
        if not args.no_reference:
            scores = reference(spec, every_configuration(spec), folder / "reference.json", args.reference_seeds)
            best = max(scores, key=scores.get)
            row.update(
                best=best,
                best_test=scores[best],
                pick_reference=scores.get(rec["configuration"]),
                reference_seeds=args.reference_seeds,
                regret=scores[best] - scores.get(rec["configuration"], fit["test"]),
            )
    return row


def demo_run(busy: bool, resume: bool = False) -> dict:
    from unfreeze.advise.spec import AdviseSpec
    from unfreeze.cli.advise import parse_budget
    from unfreeze.cli.sweep import DEMO_BUDGET

    spec = AdviseSpec(
        data="movie-snippets",
        model="minilm-l6",
        strategies=["features", "freeze", "lora"],
        seeds=[0, 1, 2],
        budget=parse_budget(DEMO_BUDGET),
        max_length=64,
    )
    plan, seconds = run_advisor(spec, ROOT / f"demo-{'busy' if busy else 'quiet'}", busy, resume)
    rec = plan["recommendation"]
    return {
        "data": "demo (movie-snippets)",
        "n": plan["full_size"],
        "budget": spec.budget,
        "busy": busy,
        "seconds": seconds,
        "sizes": plan["sizes"],
        "seeds": len(plan["seeds"]),
        "pick": rec["configuration"] if rec else None,
        "predicted": rec["predicted_score"] if rec else None,
        "stopped": plan["stopped"],
        "pilot_changes": (plan.get("pilot") or {}).get("changes"),
        "slowdown": (plan.get("machine") or {}).get("slowdown"),
        "first_line": plan_first_line(plan),
        **code_and_race(plan),
    }


def code_and_race(plan: dict) -> dict:
    """The commit the advisor ran on, and each configuration's status at the end (candidate, or out at n)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT.parent)
    return {
        "commit": commit.stdout.strip() or None,
        "race": {
            e["configuration"]: "candidate" if e["status"] == "candidate" else f"out at {e.get('eliminated_at')}"
            for e in plan["plan"]
        },
    }


def plan_first_line(plan: dict) -> str:
    from unfreeze.advise.render import plan_text

    return plan_text(plan).splitlines()[0]


def table(rows: list[dict]) -> None:
    print(
        "| data | N | budget | machine | took | sizes reached | seeds | pick | predicted | test | gap "
        "| pick (mean test) | best (mean test) | regret | cells / calibration |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        predicted = f"{r['predicted']:.3f}" if r.get("predicted") is not None else "not predicted"
        test = f"{r['test']:.3f}" if r.get("test") is not None else "-"
        gap = (
            f"{r['predicted'] - r['test']:+.3f}"
            if r.get("predicted") is not None and r.get("test") is not None
            else "-"
        )
        best = f"{r['best']} ({r['best_test']:.3f})" if r.get("best") else "-"
        own = f"{r['pick_reference']:.3f}" if r.get("pick_reference") is not None else "-"
        regret = f"{r['regret']:.3f}" if r.get("regret") is not None else "-"
        # the trained cells' seconds over what the calibration projected for them (1: the projection held)
        slowdown = f"{r['slowdown']:.2f}x" if r.get("slowdown") is not None else "-"
        print(
            f"| {r['data']} | {r['n']:,} | {r['budget'] / 60:.0f} min | {'busy' if r['busy'] else 'quiet'} | "
            f"{r['seconds']:.0f} s | {', '.join(map(str, r['sizes']))} | {r['seeds']} | {r['pick']} | {predicted} | "
            f"{test} | {gap} | {own} | {best} | {regret} | {slowdown} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="movie-snippets, 600 texts, 2 min, 2 configurations")
    parser.add_argument("--data", default="movie-snippets,bbc-news,tweets", help="comma-separated built-in sets")
    parser.add_argument("--budgets", default="5m,8m,15m", help="comma-separated budgets")
    parser.add_argument("--pool", type=int, default=None, help="labelled texts (a stratified sample; default all)")
    parser.add_argument("--n-test", type=int, default=1000, help="test texts at most")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--busy", action="store_true", help="also run each budget beside a busy loop on one core")
    parser.add_argument("--only-busy", action="store_true", help="only the runs beside the busy loop")
    parser.add_argument("--demo", action="store_true", help="also the demo's command (no fit)")
    parser.add_argument("--no-fit", action="store_true", help="advisor runs only")
    parser.add_argument("--no-reference", action="store_true", help="no regret (skip fitting every configuration)")
    parser.add_argument(
        "--reference-seeds", type=int, default=3, help="seeds of each configuration's reference fits (regret: means)"
    )
    parser.add_argument("--json", type=Path, help="append each row to this JSON lines file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="replay finished advisor runs from their folders (plans made anew, fits cached)",
    )
    args = parser.parse_args()
    if args.reference_seeds < 1:
        parser.error(f"--reference-seeds must be 1 or more (got {args.reference_seeds}): regret is a mean over them")
    from unfreeze.cli.advise import parse_budget

    _common.print_machine()
    if args.quick:
        args.data, args.budgets, args.pool = "movie-snippets", "2m", args.pool or 600
    machines = [True] if args.only_busy else [False, True] if args.busy else [False]
    rows = []

    def keep(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")

    for busy in machines:
        if args.demo:
            keep(demo_run(busy, args.resume))
        for data in args.data.split(","):
            for budget in args.budgets.split(","):
                keep(one_run(data, parse_budget(budget), busy, args))
    table(rows)
    regrets = [r["regret"] for r in rows if r.get("regret") is not None]
    ratio = sum(r["budget"] for r in rows) / max(sum(r["seconds"] for r in rows), 1e-9)
    _common.print_closing(ratio, -max(regrets) if regrets else None)


if __name__ == "__main__":
    main()
