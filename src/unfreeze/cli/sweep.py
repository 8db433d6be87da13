"""``sweep``, ``report``, ``demo``: many cells, resumable, and the report built from their results."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UnfreezeError
from .common import (
    DeviceOpt,
    app,
    checked_device,
    checked_precision,
    flag,
    int_list,
    parse_grid,
    print_report,
    print_store_note,
    user_errors,
)
from .options import given, training_parameters, with_parameters


@app.command()
@user_errors
@with_parameters(training_parameters(skip=("prefix_cache",)))
def sweep(
    data: Annotated[Optional[str], typer.Argument(help="Data: a file, a save_to_disk folder, or a built-in dataset.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run folder (results, report).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="A TOML file with the sweep settings (paths in it "
                                                                    "are relative to the file).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Catalog name, model folder or hub id.")] = None,
    strategies: Annotated[Optional[str], typer.Option("--strategies", help="Comma-separated, e.g. features,freeze,lora,setfit.")] = None,
    k: Annotated[Optional[str], typer.Option("--k", help="Frozen blocks of the freeze cells: 0,2,4,6 or all.")] = None,
    j: Annotated[Optional[str], typer.Option("--j", help="Blocks kept by the truncate cells, e.g. 4,6.")] = None,
    grid: Annotated[Optional[list[str]], typer.Option(
        "--grid", help="Values of a strategy's parameter, e.g. lora.r=4,16 or reinit.m=1,2 (repeatable).")] = None,
    n_train: Annotated[Optional[str], typer.Option("--n-train", help="Training sizes, e.g. 32,128,512 (nested samples).")] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Seeds, e.g. 0,1,2.")] = None,
    n_test: Annotated[Optional[int], typer.Option("--n-test", help="Score on a stratified sample of the test set.")] = None,
    validation_size: Annotated[Optional[int], typer.Option("--validation-size", help="Hold out this many examples per seed as every size's validation set (default 0: --validation-fraction of each sample).")] = None,
    test: Annotated[Optional[str], typer.Option("--test", help="Test data (default: a built-in's test split, or 20% "
                                                              "of a file).")] = None,
    test_size: Annotated[Optional[float], typer.Option("--test-size", help="Hold out this fraction of the training "
                                                                          "data as test (as in fit).")] = None,
    pooling: Annotated[Optional[str], typer.Option("--pooling", help="auto, mean, cls, last or max.")] = None,
    layers: Annotated[Optional[str], typer.Option("--layers", help="Hidden states, e.g. -1 or -4,-3,-2,-1.")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Tokens per input.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Inputs per forward pass and step.")] = None,
    text_col: Annotated[Optional[str], typer.Option("--text-col", help="Column holding the text.")] = None,
    label_col: Annotated[Optional[str], typer.Option("--label-col", help="Column holding the label.")] = None,
    text_pair_col: Annotated[Optional[str], typer.Option("--text-pair-col", help="Column of the second text.")] = None,
    probe_layers: Annotated[bool, flag("--probe", help="Also run a per-layer probe.")] = False,
    retry_failed: Annotated[bool, flag("--retry-failed", help="Run failed cells again.")] = False,
    no_cache: Annotated[bool, flag("--no-cache", help="No shared embedding/prefix caches.")] = False,
    metric: Annotated[str, typer.Option("--metric", help="accuracy, macro_f1 or mcc (for the summary).")] = "accuracy",
    device: DeviceOpt = None,
    backend: Annotated[str, typer.Option("--backend", help="local (this machine) or ray (a Ray task per cell).")] = "local",
    workers: Annotated[int, typer.Option("--workers", help="local: cells run at once, each in a process of its own "
                                                           "(several on one GPU; --device cuda spreads them over the GPUs).")] = 1,
    address: Annotated[Optional[str], typer.Option("--address", help="ray: auto, HOST:PORT of a cluster's head, or leave out to start Ray here.")] = None,
    cpus_per_cell: Annotated[Optional[float], typer.Option("--cpus-per-cell", help="ray: CPUs each cell reserves (default 1).")] = None,
    gpus_per_cell: Annotated[Optional[float], typer.Option("--gpus-per-cell", help="ray: GPUs each cell reserves, e.g. 0.5 (default 0).")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="auto (default), fp32 or bf16: see `unfreeze fit --help`.")] = None,
    **settings,
) -> None:
    """Run strategies x their parameters x training sizes x seeds; resumable; then build the report.

    The training settings apply to the strategies that read them (features cells ignore --epochs)."""
    from dataclasses import replace

    from ..sweep import SweepSpec

    # the command line searches each cell's learning rate unless told otherwise (--lr fixed, --lr 1e-4, a
    # learning_rate in the file); SweepSpec's own default stays release 0.1.0's, so stored specs keep their meaning
    cli_defaults = {"learning_rate": "auto"}
    spec = SweepSpec.from_toml(config, defaults=cli_defaults) if config else SweepSpec(**cli_defaults)
    if data is None and config is None:
        raise UnfreezeError("Give the data (a file or built-in dataset) or --config sweep.toml.")
    overrides = {name: value for name, value in (
        ("data", data), ("model", model), ("n_test", n_test), ("test", test), ("test_size", test_size),
        ("pooling", pooling), ("layers", layers), ("max_length", max_length), ("batch_size", batch_size),
        ("text_col", text_col), ("label_col", label_col), ("text_pair_col", text_pair_col),
        ("precision", precision), ("validation_size", validation_size)) if value is not None}
    overrides.update(given(settings))
    if strategies is not None:
        overrides["strategies"] = [s.strip() for s in strategies.split(",") if s.strip()]
    if k is not None:
        overrides["k"] = "all" if k.strip() == "all" else int_list(k, "--k")
    if j is not None:
        overrides["j"] = int_list(j, "--j")
    if grid:
        overrides["grid"] = {**spec.grid, **{s: {**spec.grid.get(s, {}), **axes} for s, axes in parse_grid(grid).items()}}
    if n_train is not None:
        overrides["n_train"] = int_list(n_train, "--n-train")
    if seeds is not None:
        overrides["seeds"] = int_list(seeds, "--seeds")
    if probe_layers:
        overrides["probe"] = True
    spec = replace(spec, **overrides)
    if output is None:
        raise UnfreezeError("Give a run folder with -o/--output, e.g. -o runs/my-sweep.")
    _check_metric(metric)
    checked_precision(spec.precision)
    from ..storage.outputs import check_output

    check_output(output, "run", inputs=[p for p in (spec.data, spec.test, config) if p])
    ray_options = _backend_options(backend, address, cpus_per_cell, gpus_per_cell, workers)
    run_and_report(spec, output, retry_failed, not no_cache, metric, checked_device(device), backend, ray_options,
                   workers)


def _check_metric(metric: str) -> None:
    from ..metrics import METRICS

    if metric not in METRICS:
        raise UnfreezeError(f"Unknown metric {metric!r} (--metric). Metrics: {', '.join(METRICS)}.")


def _backend_options(backend: str, address: str | None, cpus_per_cell: float | None, gpus_per_cell: float | None,
                     workers: int = 1):
    """Validate --backend and its options; the Ray options, or None for the local backend."""
    from ..sweep.runner import BACKENDS
    from ..sweep.workers import check_workers
    from ..training.distributed import launched_world_size

    if launched_world_size() > 1:
        # every rank would run the whole sweep and append to the same store
        raise UnfreezeError("A sweep runs in one process; do not start it with accelerate launch or torchrun. "
                            "Spread cells over GPUs with --backend ray --gpus-per-cell 1.")
    if backend not in BACKENDS:
        raise UnfreezeError(f"Unknown backend {backend!r}. Backends: {', '.join(BACKENDS)}.")
    options = [flag for flag, value in (("--address", address), ("--cpus-per-cell", cpus_per_cell),
                                        ("--gpus-per-cell", gpus_per_cell)) if value is not None]
    check_workers(workers, backend)
    if backend == "local":
        if options:
            raise UnfreezeError(f"{options[0]} applies to the Ray backend only: add --backend ray, or drop {options[0]}.")
        return None
    from ..sweep.ray_backend import RayOptions, require_ray

    require_ray()
    return RayOptions(address=address, cpus_per_cell=1.0 if cpus_per_cell is None else cpus_per_cell,
                      gpus_per_cell=0.0 if gpus_per_cell is None else gpus_per_cell)


def run_and_report(spec, output: Path, retry_failed: bool, shared_cache: bool, metric: str,
                   device: str | None, backend: str = "local", ray_options=None, workers: int = 1) -> None:
    from ..report import build_report
    from ..sweep.runner import run_sweep

    start = time.perf_counter()
    print_store_note(output)
    counts = run_sweep(spec, output, retry_failed=retry_failed, shared_cache=shared_cache, device=device,
                       backend=backend, ray_options=ray_options, workers=workers)
    typer.echo(f"sweep: {counts['total']} cells, {counts['done']} run now, {counts['skipped']} already done, "
               f"{counts['failed']} failed ({time.perf_counter() - start:.1f} s)")
    print_report(build_report(output, metric), metric)


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A sweep's run folder.")],
    metric: Annotated[str, typer.Option("--metric", help="accuracy, macro_f1 or mcc.")] = "accuracy",
) -> None:
    """Build plots, results.csv and report.html from a sweep's results alone (no model needed)."""
    from ..report import build_report

    _check_metric(metric)
    print_store_note(run_dir)
    print_report(build_report(run_dir, metric), metric)


# sized to finish in about 10 minutes on a 2-core CPU (measured: see the README)
DEMO_BUDGET = "8m"


@app.command()
@user_errors
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder of the demo.")] = Path("runs/demo"),
    budget: Annotated[str, typer.Option("--budget", help="Time for the advisor's pilot.")] = DEMO_BUDGET,
) -> None:
    """The advisor on movie-snippets with MiniLM (features, freeze k=0,3,5, LoRA; three seeds) within a budget,
    then its plan. Run it again: it resumes from the results and prints the same plan in seconds."""
    from ..advise.halving import AdviseSpec
    from ..storage.outputs import check_output
    from .advise import parse_budget, run_advisor

    clock_start = time.monotonic()
    check_output(output, "run")
    spec = AdviseSpec(data="movie-snippets", model="minilm-l6", strategies=["features", "freeze", "lora"],
                      seeds=[0, 1, 2], budget=parse_budget(budget), max_length=64)
    run_advisor(spec, output, clock_start)
