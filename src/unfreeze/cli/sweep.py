"""``sweep``, ``report``, ``demo``: many cells, resumable, and the report built from their results."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UnfreezeError
from .arguments import (
    DataArguments,
    InputArguments,
    RunArguments,
    TrackingArguments,
    arguments,
    check_metric,
    deprecated,
    given_on_command_line,
    renamed,
    take,
)
from .common import (
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
from .options import (
    given,
    grid_axes,
    merged_grid,
    strategy_parameters,
    strategy_values,
    training_parameters,
    with_parameters,
)

SWEEP_DATA = (
    "test",
    "test_size",
    "n_test",
    "text_col",
    "label_col",
    "text_pair_col",
    "task",
    "label_sep",
    "thresholds",
)
SWEEP_RUN = ("strategies", "grid", "seeds", "validation_size", "metric", "retry_failed", "no_cache")
SizesOpt = Annotated[
    str | None,
    typer.Option("--sizes", help="Training sizes, comma-separated, e.g. 32,128,512 (nested samples; default 128)."),
]


@app.command()
@user_errors
@with_parameters(
    arguments(InputArguments),
    arguments(DataArguments, SWEEP_DATA),
    arguments(RunArguments, SWEEP_RUN),
    strategy_parameters(),
    training_parameters(),
    arguments(TrackingArguments),
    [deprecated("--n-train", "--sizes")],
)
def sweep(
    data: Annotated[
        str | None, typer.Argument(help="Data: a file, a save_to_disk folder, or a built-in dataset.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder (results, report).")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A TOML file with the sweep settings (paths in it are relative to the file; options given win).",
        ),
    ] = None,
    sizes: SizesOpt = None,
    probe_layers: Annotated[bool, flag("--probe", help="Also run a per-layer probe.")] = False,
    backend: Annotated[
        str, typer.Option("--backend", help="local (this machine) or ray (a Ray task per cell).")
    ] = "local",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="local: cells run at once, each in a process of its own "
            "(several on one GPU; --device cuda spreads them over the "
            "GPUs).",
        ),
    ] = 1,
    address: Annotated[
        str | None,
        typer.Option("--address", help="ray: auto, HOST:PORT of a cluster's head, or leave out to start Ray here."),
    ] = None,
    cpus_per_cell: Annotated[
        float | None, typer.Option("--cpus-per-cell", help="ray: CPUs each cell reserves (default 1).")
    ] = None,
    gpus_per_cell: Annotated[
        float | None, typer.Option("--gpus-per-cell", help="ray: GPUs each cell reserves, e.g. 0.5 (default 0).")
    ] = None,
    **settings,
) -> None:
    """Run strategies x their parameters x training sizes x seeds; resumable; then build the report.

    A strategy parameter given as an option (--k 0,3,6, --r 4,16) is swept for every chosen strategy that has
    it. The training settings apply to the strategies that read them (features cells ignore --epochs)."""
    from dataclasses import replace

    from ..sweep import SweepSpec

    sizes = renamed(settings, "--n-train", "--sizes", sizes)
    model_in, split, run = take(InputArguments, settings), take(DataArguments, settings), take(RunArguments, settings)
    tracking = take(TrackingArguments, settings)
    swept = strategy_values(settings)
    # the command line searches each cell's learning rate unless told otherwise (--lr fixed, --lr 1e-4, a
    # learning_rate in the file); SweepSpec's own default stays release 0.1.0's, so stored specs keep their meaning
    cli_defaults: dict[str, Any] = {"learning_rate": "auto"}
    spec = SweepSpec.from_toml(config, defaults=cli_defaults) if config else SweepSpec(**cli_defaults)
    if data is None and config is None:
        raise UnfreezeError("Give the data (a file or built-in dataset) or --config sweep.toml.")
    # an option the user typed wins over the file; a default does not
    typed = {
        name: getattr(group, name)
        for group in (model_in, split)
        for name in group.__dataclass_fields__
        if name != "device" and (getattr(group, name) is not None and given_on_command_line(name))
    }
    overrides: dict[str, Any] = {"data": data} if data is not None else {}
    overrides.update(typed)
    if run.validation_size is not None:
        overrides["validation_size"] = run.validation_size
    overrides.update(given(settings))
    if run.strategies is not None:
        overrides["strategies"] = [s.strip() for s in run.strategies.split(",") if s.strip()]
    if sizes is not None:
        overrides["n_train"] = int_list(sizes, "--sizes")
    if run.seeds is not None:
        overrides["seeds"] = int_list(run.seeds, "--seeds")
    if probe_layers:
        overrides["probe"] = True
    if run.grid or swept:
        chosen = overrides.get("strategies", spec.strategies)
        overrides["grid"] = merged_grid(spec.grid, parse_grid(run.grid), grid_axes(swept, list(chosen)))
    spec = replace(spec, **overrides)
    if output is None:
        raise UnfreezeError("Give a run folder with -o/--output, e.g. -o runs/my-sweep.")
    metric = check_metric(run.metric)
    if metric is not None:  # a metric the data's task does not report: one line before any cell runs
        spec.task_object().check_metric(metric)
    checked_precision(spec.precision)
    from ..storage.outputs import check_output

    check_output(output, "run", inputs=[p for p in (spec.data, spec.test, config) if p], run_kind="sweep")
    ray_options = _backend_options(backend, address, cpus_per_cell, gpus_per_cell, workers)
    run_and_report(
        spec,
        output,
        run.retry_failed,
        not run.no_cache,
        metric,
        checked_device(model_in.device),
        backend,
        ray_options,
        workers,
    )
    from .track import track_run

    track_run(tracking, output)


def _backend_options(
    backend: str, address: str | None, cpus_per_cell: float | None, gpus_per_cell: float | None, workers: int = 1
):
    """Validate --backend and its options; the Ray options, or None for the local backend."""
    from ..sweep.runner import BACKENDS
    from ..sweep.workers import check_workers
    from ..training.distributed import launched_world_size

    if launched_world_size() > 1:
        # every rank would run the whole sweep and append to the same store
        raise UnfreezeError(
            "A sweep runs in one process; do not start it with accelerate launch or torchrun. "
            "Spread cells over GPUs with --backend ray --gpus-per-cell 1."
        )
    if backend not in BACKENDS:
        raise UnfreezeError(f"Unknown backend {backend!r}. Backends: {', '.join(BACKENDS)}.")
    options = [
        flag
        for flag, value in (
            ("--address", address),
            ("--cpus-per-cell", cpus_per_cell),
            ("--gpus-per-cell", gpus_per_cell),
        )
        if value is not None
    ]
    check_workers(workers, backend)
    if backend == "local":
        if options:
            raise UnfreezeError(
                f"{options[0]} applies to the Ray backend only: add --backend ray, or drop {options[0]}."
            )
        return None
    from ..sweep.ray_backend import RayOptions, require_ray

    require_ray()
    return RayOptions(
        address=address,
        cpus_per_cell=1.0 if cpus_per_cell is None else cpus_per_cell,
        gpus_per_cell=0.0 if gpus_per_cell is None else gpus_per_cell,
    )


def run_and_report(
    spec,
    output: Path,
    retry_failed: bool,
    shared_cache: bool,
    metric: str | None,
    device: str | None,
    backend: str = "local",
    ray_options=None,
    workers: int = 1,
) -> None:
    from ..report import build_report
    from ..sweep.runner import run_sweep

    start = time.perf_counter()
    print_store_note(output)
    counts = run_sweep(
        spec,
        output,
        retry_failed=retry_failed,
        shared_cache=shared_cache,
        device=device,
        backend=backend,
        ray_options=ray_options,
        workers=workers,
    )
    typer.echo(
        f"sweep: {counts['total']} cells, {counts['done']} run now, {counts['skipped']} already done, "
        f"{counts['failed']} failed ({time.perf_counter() - start:.1f} s)"
    )
    result = build_report(output, metric)
    print_report(result, result["metric"])


@app.command()
@user_errors
@with_parameters(arguments(RunArguments, ("metric",)))
def report(
    run_dir: Annotated[Path, typer.Argument(help="A sweep's or a study's run folder.")],
    **options,
) -> None:
    """Build plots, results.csv and report.html from a sweep's results alone (no model needed); for a study's run
    folder, its report.html: the verdict, the analysis' plots and every arm's cells in interactive plots."""
    from ..report import build_report
    from ..storage.outputs import check_run_kind

    metric = check_metric(take(RunArguments, options).metric)
    # an advise folder is refused in one line: its rows and reports are not a sweep's
    if check_run_kind(run_dir, ("sweep", "intrinsic-dim", "study"), "report") == "study":
        if metric is not None:
            raise UnfreezeError(
                f"--metric is for a sweep's folder: {run_dir} is a study's, whose file sets its metric."
            )
        _study_report(run_dir)
        return
    print_store_note(run_dir)
    result = build_report(run_dir, metric)
    print_report(result, result["metric"])


def _study_report(run_dir: Path) -> None:
    from ..report.study_page import build_study_page

    findings = (page := build_study_page(run_dir))["findings"]
    counts = findings.counts
    # a partial run's label already counts its cells
    done = f" ({counts['done']} of {counts['planned']} cells done)" if findings.complete else ""
    typer.echo(f"study {findings.study.name}: verdict {findings.verdict_label}{done}")
    typer.echo(f"report: {page['html']}")


# sized to finish in about 10 minutes on a 2-core CPU (measured: see the README)
DEMO_BUDGET = "8m"


@app.command()
@user_errors
@with_parameters(arguments(RunArguments, ("budget",)))
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder of the demo.")] = Path("runs/demo"),
    **options,
) -> None:
    """The advisor on movie-snippets with MiniLM (features, freeze k=0,3,5, LoRA; three seeds) within a budget,
    then its plan. Run it again: it resumes from the results and prints the same plan in seconds."""
    from ..advise.halving import AdviseSpec
    from ..storage.outputs import check_output
    from .advise import parse_budget, run_advisor

    clock_start = time.monotonic()
    budget = take(RunArguments, options).budget or DEMO_BUDGET
    check_output(output, "run", run_kind="advise")
    spec = AdviseSpec(
        data="movie-snippets",
        model="minilm-l6",
        strategies=["features", "freeze", "lora"],
        seeds=[0, 1, 2],
        budget=parse_budget(budget),
        max_length=64,
    )
    run_advisor(spec, output, clock_start)
