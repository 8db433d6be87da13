"""``subspace`` (intrinsic dimension) vs ``full`` fine-tuning: cost per step, and d90 with the runs behind it.

1. Seconds per optimiser step and peak memory of MiniLM on movie-snippets (batch 32,
   max length 256): ``full`` vs ``subspace`` at d = 1,000 and 10,000 (Fastfood, SAID), each
   in a fresh process, in turn for 3 rounds (the median) (on the CPU, peak memory is the
   process's resident set: the loaded model counts; on CUDA, the peak of allocated memory).
   Setup: the fit's seconds before its first step (copying the model, tokenising; for subspace
   also drawing P).
2. d90 on movie-snippets and bbc-news (MiniLM): ``unfreeze intrinsic-dim``'s runs (subspace
   over a log grid of d, and full fine-tuning, same sample and seeds) into
   ``--runs/subspace-<data>-n<N>``; resumable: run the script again to finish them.

Closing lines: ``ratio`` = full's seconds per step / subspace's at d = 1,000 (above 1:
subspace steps faster); ``accuracy-delta`` = subspace at the largest d minus full
fine-tuning, movie-snippets.

    python bench/subspace.py [--quick] [--device cpu|cuda] [--part steps|d90|all] [--runs runs/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_closing

STEP_CONFIGS = (("full", None), ("subspace", 1000), ("subspace", 10000))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"


# -- 1. cost per step --------------------------------------------------------------------------


def one_step_run(strategy: str, d: int | None, model: str, steps: int, device: str) -> dict:
    """In this (fresh) process: fit ``steps`` optimiser steps; seconds per step and peak memory."""
    import psutil
    import torch

    from _common import movie_snippets
    from unfreeze import Classifier, Training
    from unfreeze.models.loaded import shared_backbone
    from unfreeze.strategies import Full, Subspace

    train, _ = movie_snippets(32 * steps, 10, seed=0)
    shared_backbone(model, device)  # loaded before the baseline is read
    baseline = psutil.Process().memory_info().rss
    results = []
    for run_steps in (1, steps) if device.startswith("cuda") else (steps,):  # CUDA: one warm-up fit first
        started = time.perf_counter()
        clf = Classifier(
            model,
            strategy=Full() if strategy == "full" else Subspace(d=d),
            training=Training(max_steps=run_steps, validation_fraction=0),
            batch_size=32,
            seed=0,
            progress=False,
            device=device,
        )
        clf.fit(train.inputs, train.labels)
        record = clf.fit_record_
        fit_seconds = time.perf_counter() - started
        train_seconds = sum(record["epoch_seconds"])  # the optimiser steps alone (no validation split)
        results.append(
            {
                "strategy": strategy,
                "d": d,
                "steps": record["steps"],
                "seconds_per_step": train_seconds / record["steps"],
                "train_seconds": train_seconds,
                "setup_seconds": fit_seconds - train_seconds,
                "fit_seconds": fit_seconds,
                "peak_memory_mib": record["peak_memory_bytes"] / 2**20,
                "baseline_rss_mib": baseline / 2**20,
                "trainable_parameters": record["trainable_parameters"],
                "projected_parameters": record.get("projected_parameters"),
            }
        )
        del clf
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return results[-1]


def step_table(model: str, steps: int, device: str, repeats: int) -> list[dict]:
    """Every config in a fresh process, ``repeats`` rounds in turn (a noisy machine drifts): the median
    seconds per step and the largest peak of each."""
    import statistics

    runs: dict[tuple, list[dict]] = {}
    for _ in range(repeats):
        for strategy, d in STEP_CONFIGS:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--_step",
                    strategy,
                    str(d or 0),
                    "--model",
                    model,
                    "--steps",
                    str(steps),
                    "--device",
                    device,
                ],
                capture_output=True,
                text=True,
            )
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode != 0 or not lines:
                print(f"{strategy} d={d}: failed\n{out.stderr[-2000:]}", flush=True)
                continue
            runs.setdefault((strategy, d), []).append(json.loads(lines[-1]))
    rows = []
    for (strategy, d), found in runs.items():
        row = dict(found[0])
        row.update(
            {
                "seconds_per_step": statistics.median(r["seconds_per_step"] for r in found),
                "seconds_per_step_runs": [r["seconds_per_step"] for r in found],
                "peak_memory_mib": max(r["peak_memory_mib"] for r in found),
                "setup_seconds": statistics.median(r["setup_seconds"] for r in found),
                "repeats": len(found),
            }
        )
        rows.append(row)
        name = "full" if strategy == "full" else f"subspace d={d:,}"
        print(
            f"  {name:<20} {row['seconds_per_step']:>8.3f} s/step   peak {row['peak_memory_mib']:>7.0f} MiB   "
            f"trainable {row['trainable_parameters']:>11,}   setup {row['setup_seconds']:.1f} s   "
            f"(runs: {', '.join(f'{v:.2f}' for v in row['seconds_per_step_runs'])})",
            flush=True,
        )
    return rows


# -- 2. d90 ---------------------------------------------------------------------------------------


def d90_run(
    data: str,
    model: str,
    grid: list[int],
    n_train: int,
    seeds: list[int],
    n_test: int | None,
    runs: Path,
    device: str,
    overrides: dict,
) -> dict:
    from unfreeze.cli.intrinsic import run
    from unfreeze.sweep import SweepSpec

    common = dict(data=data, model=model, n_train=[n_train], seeds=seeds, n_test=n_test, **overrides)
    full_spec = SweepSpec(strategies=["full"], **common)
    subspace_spec = SweepSpec(strategies=["subspace"], grid={"subspace": {"d": grid}}, **common)
    folder = runs / f"subspace-{data}-n{n_train}"
    print(f"\n== d90 on {data} ({model}, n_train={n_train}, seeds {seeds}, d in {grid}): {folder}", flush=True)
    return run(folder, full_spec, subspace_spec, "accuracy", device=device, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="steps: 3 per config, 1 round; d90: n_train 64, d in 100 and 1000, 1 epoch, 100 test texts",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--part", choices=("steps", "d90", "all"), default="all")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench"), help="where the d90 run folders go")
    parser.add_argument("--datasets", default="movie-snippets,bbc-news")
    parser.add_argument("--d", default=None, help="the d grid (default 10,30,100,300,1000,3000,10000)")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--seeds", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="rounds of the step configs (default 3; quick 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--_step", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    if args._step:
        strategy, d = args._step[0], int(args._step[1]) or None
        print(json.dumps(one_step_run(strategy, d, args.model, args.steps, args.device)))
        return

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"CPU: {cpu_model()}; device: {args.device} ({device_name}); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    quick = args.quick
    out: dict = {"cpu": cpu_model(), "device": args.device, "device_name": device_name, "quick": quick}
    ratio, delta = float("nan"), None
    if args.part in ("steps", "all"):
        steps = args.steps or (3 if quick else 10)
        repeats = args.repeats or (1 if quick else 3)
        print(
            f"\n== cost per step: {args.model}, movie-snippets, batch 32, {steps} steps per config, "
            f"{repeats} round(s) in turn",
            flush=True,
        )
        rows = step_table(args.model, steps, args.device, repeats)
        out["steps"] = rows
        by = {(r["strategy"], r["d"]): r for r in rows}
        if ("full", None) in by and ("subspace", 1000) in by:
            ratio = by[("full", None)]["seconds_per_step"] / by[("subspace", 1000)]["seconds_per_step"]
    if args.part in ("d90", "all"):
        grid = [int(v) for v in (args.d or ("100,1000" if quick else "10,30,100,300,1000,3000,10000")).split(",")]
        n_train = args.n_train or (64 if quick else 1000)
        seeds = [int(s) for s in (args.seeds or "0").split(",")]
        overrides = {"epochs": 1, "max_length": 128} if quick else {}
        n_test = 100 if quick else None
        out["d90"] = {}
        for data in [d for d in args.datasets.split(",") if d]:
            result = d90_run(data, args.model, grid, n_train, seeds, n_test, args.runs, args.device, overrides)
            out["d90"][data] = result
            if data == "movie-snippets" and result.get("full") and result.get("points"):
                delta = result["points"][-1]["mean"] - result["full"]["mean"]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print_closing(ratio, delta)


if __name__ == "__main__":
    main()
