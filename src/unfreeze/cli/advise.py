"""``advise``: within a time budget, which configuration to train, how well it will do, and what it costs."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

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
    renamed,
    seed_list,
    spec_settings,
    take,
)
from .common import app, checked_device, parse_grid, user_errors
from .options import (
    given,
    grid_axes,
    merged_grid,
    strategy_parameters,
    strategy_values,
    training_parameters,
    with_parameters,
)

ADVISE_DATA = ("test", "test_size", "text_col", "label_col", "text_pair_col", "task", "label_sep", "thresholds")
ADVISE_RUN = ("strategies", "grid", "seeds", "validation_size", "metric", "budget", "overwrite")

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_budget(text: str) -> float:
    """'15m', '90s', '1h30m' or plain seconds ('600') -> seconds."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smh])", value)
    if not parts or "".join(a + b for a, b in parts) != value.replace(" ", ""):
        raise UnfreezeError(f"--budget takes a duration such as 15m, 90s or 1h30m. Got {text!r}.")
    return sum(float(a) * _UNITS[b] for a, b in parts)


@app.command()
@user_errors
@with_parameters(
    arguments(InputArguments),
    arguments(DataArguments, ADVISE_DATA),
    arguments(RunArguments, ADVISE_RUN),
    strategy_parameters(),
    training_parameters(),
    arguments(TrackingArguments),
    [deprecated("--json", "--json-out", Path)],
)
def advise(
    data: Annotated[str, typer.Argument(help="Labelled data: a file, a save_to_disk folder, or a built-in dataset.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run folder (results, plan, report); rerun to resume.")
    ],
    eta: Annotated[int, typer.Option("--eta", help="Keep the best 1/eta of the trained configurations per rung.")] = 3,
    finalists: Annotated[
        int,
        typer.Option(
            "--finalists",
            help="Never keep fewer trained configurations; these go on through every size the budget reaches.",
        ),
    ] = 2,
    first_rung_rate: Annotated[
        str,
        typer.Option(
            "--first-rung-rate",
            help="first-seed (the first rung's later seeds "
            "train at the rate the first seed's "
            "search chose) or every-seed.",
        ),
    ] = "first-seed",
    growth: Annotated[float, typer.Option("--growth", help="Each rung trains on this many times more examples.")] = 2.0,
    min_size: Annotated[
        int | None,
        typer.Option("--min-size", help="Training examples at the first rung (default max(64, 16 per class))."),
    ] = None,
    max_size: Annotated[
        int | None,
        typer.Option(
            "--max-size", help="Largest pilot size (default: all the labelled data the validation set leaves)."
        ),
    ] = None,
    target: Annotated[
        float | None, typer.Option("--target", help="A score to reach: how many labelled examples it needs.")
    ] = None,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Accept a cheaper configuration up to this much worse than the best.")
    ] = 0.0,
    max_loss: Annotated[
        float,
        typer.Option(
            "--max-loss",
            help="Never recommend a cheaper configuration that "
            "measured more than this below the best, shown worse "
            "or not.",
        ),
    ] = 0.01,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Also write the plan as JSON to this file.")
    ] = None,
    fit_dir: Annotated[
        Path | None,
        typer.Option("--fit", help="Then train the recommendation on all the data and write the bundle here."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="Torch threads (default: no more than the cores other work leaves free)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the plan.")] = False,
    **settings,
) -> None:
    """Spend a time budget on a pilot (timed first, sized so that its finalists reach three training sizes;
    successive halving over growing sizes down to two finalists, every cell's learning rate tuned on a
    validation set held out per seed), extrapolate learning curves and costs to all the data, and say which
    configuration to train and why; nothing is predicted from fewer than three sizes. Resumable: rerun the
    same command after an interruption."""
    clock_start = time.monotonic()
    from ..advise.spec import AdviseSpec
    from ..training.settings import Training

    as_json = renamed(settings, "--json", "--json-out", json_out)
    model_in, split, run = take(InputArguments, settings), take(DataArguments, settings), take(RunArguments, settings)
    tracking = take(TrackingArguments, settings)
    swept = strategy_values(settings)
    training = given(settings)
    Training(**training).check()  # e.g. --epochs 0: one line now, not a failed cell per configuration
    strategies = (
        [s.strip() for s in run.strategies.split(",") if s.strip()]
        if run.strategies is not None
        else AdviseSpec().strategies
    )
    spec = AdviseSpec(
        data=data,
        strategies=strategies,
        grid=merged_grid(parse_grid(run.grid), grid_axes(swept, strategies)),
        seeds=seed_list(run.seeds, [0, 1, 2]),
        budget=parse_budget(run.budget or "15m"),
        eta=eta,
        finalists=finalists,
        first_rung_rate=first_rung_rate,
        growth=growth,
        min_size=min_size,
        max_size=max_size,
        target=target,
        tolerance=tolerance,
        max_loss=max_loss,
        validation_size=run.validation_size,
        threads=threads,
        metric=check_metric(run.metric),
        **spec_settings(model_in, split),
        **training,
    )
    spec.check()
    spec.sweep_spec()  # strategies and their grid: one line now rather than later
    device = model_in.device
    from ..storage.outputs import check_output, is_advise_plan

    inputs = [p for p in (data, split.test) if p]
    check_apart(output, fit_dir, as_json)
    check_output(output, "run", inputs=inputs, run_kind="advise")
    if as_json is not None:
        # only a plan this tool wrote is replaced, and only with --overwrite
        check_output(as_json, "file", overwrite=run.overwrite, inputs=inputs, option="--json-out", ours=is_advise_plan)
    if fit_dir is not None:
        check_output(fit_dir, "bundle", overwrite=run.overwrite, inputs=inputs, option="--fit")
    device = checked_device(device)
    result = run_advisor(spec, output, clock_start, device, progress=not quiet, json_path=as_json)
    if fit_dir is not None:
        from ..machine.cores import use_threads

        with use_threads(spec.threads):
            fit_recommendation(spec, result["plan"], fit_dir, device)
    from .track import track_run

    track_run(tracking, output)


def check_apart(output: Path, fit_dir: Path | None, json_out: Path | None) -> None:
    """-o, --fit and --json-out name three different places, none inside another's folder: one line before
    the pilot runs, not a refusal after it."""
    run_dir = output.expanduser().resolve()
    if fit_dir is not None:
        bundle = fit_dir.expanduser().resolve()
        if bundle == run_dir or run_dir in bundle.parents or bundle in run_dir.parents:
            where = "is" if bundle == run_dir else "overlaps"
            raise UnfreezeError(
                f"--fit {fit_dir} {where} the run folder -o {output}; the bundle is a folder of its own. "
                f"Give --fit another folder, e.g. --fit {output.name or 'advised'}-bundle."
            )
    if json_out is not None:
        plan = json_out.expanduser().resolve()
        for option, folder in (("-o", output), ("--fit", fit_dir)):
            if folder is not None and plan == folder.expanduser().resolve():
                raise UnfreezeError(
                    f"--json-out {json_out} is the folder {option} {folder}. Give --json-out a file, "
                    "e.g. --json-out plan.json."
                )
        if fit_dir is not None and fit_dir.expanduser().resolve() in plan.parents:
            raise UnfreezeError(
                f"--json-out {json_out} is inside the bundle folder --fit {fit_dir}. Give --json-out a file outside it."
            )


def run_advisor(
    spec,
    output: Path,
    clock_start: float,
    device: str | None = None,
    progress: bool = True,
    json_path: Path | None = None,
) -> dict:
    from ..advise.halving import run_halving
    from ..advise.plan import make_plan
    from ..advise.render import plan_text, write_outputs
    from ..machine.cores import use_threads
    from ..report.interactive import vega_script

    def log(line: str) -> None:
        typer.echo(line, err=True)

    # the report's JavaScript is built once per version into the cache (seconds on a first run): here, inside the
    # budget before the pilot is planned, not after its deadline, where only the small reserve is left
    vega_script()
    with use_threads(spec.threads) as cores:
        run = run_halving(spec, output, clock_start, progress=progress, device=device, log=log, cores=cores.as_dict())
    plan = make_plan(run)
    files = write_outputs(plan, run, json_path)
    typer.echo(plan_text(plan))
    typer.echo(f"report: {files['html']}" + (f"; json: {json_path}" if json_path else ""))
    typer.echo(f"advise: {time.monotonic() - clock_start:.1f} s")
    return {"plan": plan, "run": run, "files": files}


def fit_recommendation(spec, plan: dict, fit_dir: Path, device: str | None) -> None:
    """Train the recommended configuration on all the labelled data and write the bundle."""
    from ..metrics import format_metrics_table

    started = time.perf_counter()
    clf, metrics = fit_recommended(spec, plan, device)  # one line when there is nothing to fit
    rec = plan["recommendation"]
    clf.save(
        fit_dir, metrics={**metrics, "advise": {"predicted_score": rec["predicted_score"], "interval": rec["interval"]}}
    )
    low, high = rec.get("fit_interval") or (None, None)
    projected = f"{rec['fit_seconds']:.0f} s" + (f" [{low:.0f}, {high:.0f}]" if low is not None else "")
    typer.echo(
        f"fitted {rec['configuration']} on all {metrics['n_train']:,} labelled examples in "
        f"{time.perf_counter() - started:.1f} s (fit {clf.fit_seconds_:.0f} s; projected {projected})"
    )
    typer.echo(format_metrics_table({k: v for k, v in metrics.items() if k in ("train", "test")}))
    typer.echo(f"bundle: {fit_dir}")


def fit_recommended(spec, plan: dict, device: str | None):
    """The plan's recommendation fitted on all the labelled data, and its metrics (train, and test when there is a
    test split: the pilot never read it)."""
    from ..strategies import strategy_class
    from ..sweep.grid import Cell
    from ..sweep.plan import cell_classifier, load_sweep_data

    rec = plan.get("recommendation")
    if rec is None:
        raise UnfreezeError("The pilot finished no configuration, so there is nothing to fit. Give a larger --budget.")
    sweep = spec.sweep_spec()
    data = load_sweep_data(sweep)
    cls = strategy_class(rec["strategy"])
    training = sweep.training_for(cls)
    if rec.get("learning_rate") is not None and "learning_rate" in training:
        # the rate the pilot's searches chose at its largest size, for up to their epoch ceiling (early stopping
        # on a validation split): one fit, as the plan's fit time projects, not a third search on all the data
        sweep = replace(
            sweep,
            learning_rate=rec["learning_rate"],
            epochs=training.get("epochs") or cls(**rec["params"]).epochs_for(True),
        )
    # the estimator of the data's task (a Classifier, or a Regressor), as the pilot's cells were
    cell = Cell(rec["strategy"], tuple(rec["params"].items()), len(data.train_pool), spec.seeds[0])
    clf = cell_classifier(sweep, cell, device, use_cache=True)
    pool = data.train_pool
    clf.fit(pool.inputs, pool.labels)
    metrics = {"train": clf.evaluate(pool.inputs, pool.labels)}
    if data.test is not None and len(data.test):
        metrics["test"] = clf.evaluate(data.test.inputs, data.test.labels)
    return clf, {**metrics, "n_train": len(pool), "n_test": len(data.test), "fit_seconds": round(clf.fit_seconds_, 3)}
