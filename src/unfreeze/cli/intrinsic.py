"""``intrinsic-dim``: score vs the dimension d of the trained subspace, against full fine-tuning; d90.

Aghajanyan et al. 2020 / Li et al. 2018: ``subspace`` cells over a log grid of d and
``full`` cells with the same data, sizes and seeds, run as sweeps into one run folder
(resumable: a rerun skips finished cells; results land in ``results.jsonl``). Then d90, the
smallest d that reaches 90% of full fine-tuning's score, and the plot ``intrinsic.png``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UnfreezeError
from ..storage import strict_json
from .arguments import (
    DataArguments,
    InputArguments,
    RunArguments,
    arguments,
    check_metric,
    seed_list,
    spec_settings,
    take,
)
from .common import app, user_errors
from .options import given, strategy_parameters, strategy_values, training_parameters, with_parameters

DEFAULT_D = "10,100,1000,10000"
DEFAULT_N_TRAIN = 1000
INTRINSIC_DATA = ("test", "test_size", "n_test", "n_train", "text_col", "label_col", "text_pair_col")


def _ints(values: list[str], option: str, low: int, example: str) -> list[int]:
    try:
        ints = [int(v) for v in values]
    except ValueError:
        raise UnfreezeError(
            f"{option} must be a comma-separated list of ints, e.g. {example}. Got {','.join(values)!r}."
        ) from None
    if not ints:
        raise UnfreezeError(f"{option} must name at least one value, e.g. {example}.")
    bad = [v for v in ints if v < low]
    if bad:
        raise UnfreezeError(f"{option} values must be ints >= {low}. Got {bad[0]}.")
    return sorted(set(ints))


def _subspace_options() -> list:
    from ..strategies import Subspace

    return strategy_parameters(only=Subspace.setting_names())


@app.command("intrinsic-dim")
@user_errors
@with_parameters(
    arguments(InputArguments),
    arguments(DataArguments, INTRINSIC_DATA),
    arguments(RunArguments, ("seeds", "metric", "retry_failed")),
    _subspace_options(),
    training_parameters(),
)
def intrinsic_dim(
    data: Annotated[str, typer.Argument(help="Data: a file, a save_to_disk folder, or a built-in dataset.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder (results, intrinsic.json, plot).")],
    full_learning_rate: Annotated[
        float | None, typer.Option("--full-learning-rate", help="Learning rate of full fine-tuning (default: full's).")
    ] = None,
    fraction: Annotated[
        float,
        typer.Option(
            "--fraction", help="Share of full fine-tuning's score that d must reach: 0.9 gives d90, 0.97 d97."
        ),
    ] = 0.9,
    **settings,
) -> None:
    """Intrinsic dimension: train subspace cells over a grid of d (--d, default 10,100,1000,10000; --learning-rate
    is theta's) and full fine-tuning; report d90 and plot score vs d.

    d90 is the smallest d whose mean test score reaches 90% of full fine-tuning's (--fraction); both
    the first grid point that reaches it and a log-linear interpolation are printed.
    Resumable: run the same command again to finish what an interrupted run left."""
    from ..params import coerce
    from ..strategies import Subspace
    from ..sweep import SweepSpec
    from ..training.settings import Training

    model_in, split, run_args = (
        take(InputArguments, settings),
        take(DataArguments, settings),
        take(RunArguments, settings),
    )
    metric = check_metric(run_args.metric)
    if not 0 < fraction <= 1:
        raise UnfreezeError(f"--fraction must be a float in (0, 1], e.g. 0.9 for d90. Got {fraction}.")
    swept = strategy_values(settings)
    grid_d = _ints(swept.pop("d", DEFAULT_D.split(",")), "--d", 1, DEFAULT_D)
    seeds = seed_list(run_args.seeds, [0])
    if any(s < 0 for s in seeds):
        raise UnfreezeError(f"--seeds values must be ints >= 0. Got {min(seeds)}.")
    n_train = DEFAULT_N_TRAIN if split.n_train is None else split.n_train
    if n_train < 1:
        raise UnfreezeError(f"--n-train must be an int >= 1. Got {n_train}.")
    if full_learning_rate is not None and not (math.isfinite(full_learning_rate) and full_learning_rate > 0):
        raise UnfreezeError(f"--full-learning-rate must be a float > 0. Got {full_learning_rate}.")
    for name, values in swept.items():
        if len(values) != 1:
            raise UnfreezeError(f"--{name.replace('_', '-')} takes one value here (only --d is a grid).")
    strategy_params = {k: coerce(Subspace, k, v[0]) for k, v in swept.items()}
    training = given(settings)
    Training(**training).check()
    learning_rate = training.pop("learning_rate", None)
    common = dict(
        data=data,
        n_train=[n_train],
        seeds=seeds,
        **spec_settings(model_in, split),
        **training,
    )
    device, retry_failed = model_in.device, run_args.retry_failed
    # two specs into one run folder: each strategy keeps its own learning rate (a sweep has one)
    full_spec = SweepSpec(strategies=["full"], learning_rate=full_learning_rate, **common)
    subspace_spec = SweepSpec(
        strategies=["subspace"],
        learning_rate=learning_rate,
        grid={"subspace": {"d": grid_d, **{k: [v] for k, v in strategy_params.items()}}},
        **common,
    )
    from ..storage.outputs import check_output
    from ..sweep.plan import load_sweep_data

    # before anything loads: never a folder of the user's, `.`, a file, or another command's run folder
    check_output(output, "run", inputs=[p for p in (data, split.test) if p], run_kind="intrinsic-dim")
    load_sweep_data(full_spec)  # a missing or bad data file is one line before the model loads
    _check_against_model(subspace_spec, grid_d, strategy_params, device)
    run(output, full_spec, subspace_spec, metric, retry_failed, device, fraction=fraction)


def _check_against_model(spec, grid_d: list[int], params: dict, device: str | None) -> None:
    """What depends on the model (d <= D, a dense P that fits), before anything runs or is written."""
    from ..models.loaded import shared_backbone
    from ..models.pooling import parse_layers
    from ..strategies import Subspace

    backbone = shared_backbone(spec.model, device)
    layers = parse_layers(spec.layers, backbone.num_blocks, "intrinsic-dim")
    for value in grid_d:
        Subspace(d=value, **params).check_model(backbone, layers)


def run(
    output: Path,
    full_spec,
    subspace_spec,
    metric: str | None,  # None: the task's default score
    retry_failed: bool = False,
    device: str | None = None,
    progress: bool = True,
    fraction: float = 0.9,
) -> dict:
    """Run (or resume) both sweeps into ``output``, write intrinsic.json and the plot, print the table and d90."""
    from ..report.intrinsic import PLOT_FILE, intrinsic_result, plot_intrinsic, table_text
    from ..sweep.grid import expand
    from ..sweep.local import run_local
    from ..sweep.plan import plan_sweep

    start = time.perf_counter()
    # the task's default score (accuracy for single-label data); one line for a metric the task does not report
    task = full_spec.task_object()
    metric = task.default_metric if metric is None else task.check_metric(metric)
    keys: dict[str, list[str]] = {}
    counts = {"total": 0, "done": 0, "skipped": 0, "failed": 0}
    for spec in (full_spec, subspace_spec):
        plan = plan_sweep(spec, output, retry_failed, device, run_kind="intrinsic-dim")
        settings = spec.training_settings()
        for cell in expand(spec, plan.num_blocks):
            key = cell.key(plan.data.fingerprint, plan.model_fingerprint, settings)
            group = "full" if cell.strategy == "full" else str(dict(cell.params)["d"])
            keys.setdefault(group, []).append(key)
        # the intrinsic.json of this run is written first: an interrupted run still reports what finished
        _write_plan(output, full_spec, subspace_spec, metric, fraction, keys)
        for name, value in run_local(plan, shared_cache=True, progress=progress, device=device).items():
            counts[name] += value
    _name_both_strategies(output)
    typer.echo(
        f"intrinsic-dim: {counts['total']} cells, {counts['done']} run now, {counts['skipped']} already done, "
        f"{counts['failed']} failed ({time.perf_counter() - start:.1f} s)"
    )
    result = intrinsic_result(output, metric)
    title = f"{full_spec.model} on {full_spec.data}, n={full_spec.n_train[0]}: score vs subspace dimension"
    plot_intrinsic(result, output / PLOT_FILE, title)
    (output / "intrinsic_result.json").write_text(strict_json.dumps(result.as_dict(), indent=2) + "\n")
    typer.echo(table_text(result))
    typer.echo(result.sentence())
    typer.echo(f"plot: {output / PLOT_FILE}")
    return result.as_dict()


def _write_plan(
    output: Path, full_spec, subspace_spec, metric: str | None, fraction: float, keys: dict[str, list[str]]
) -> None:
    from ..report.intrinsic import INTRINSIC_FILE
    from ..storage.cache import atomic_path

    plan = {
        "run_kind": "intrinsic-dim",  # storage.outputs.run_kind_of: another command refuses this folder
        "metric": metric,
        "fraction": fraction,
        "model": full_spec.model,
        "data": full_spec.data,
        "n_train": full_spec.n_train,
        "seeds": full_spec.seeds,
        "learning_rates": {"full": full_spec.learning_rate, "subspace": subspace_spec.learning_rate},
        "subspace_grid": subspace_spec.grid.get("subspace", {}),
        "full": {"keys": keys.get("full", [])},
        "subspace": {"keys": {g: k for g, k in keys.items() if g != "full"}},
    }
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / INTRINSIC_FILE) as tmp:
        tmp.write_text(strict_json.dumps(plan, indent=2, default=str) + "\n")


def _name_both_strategies(output: Path) -> None:
    """sweep.json holds the last spec run (subspace's): name both strategies, for `unfreeze report` on the folder."""
    from ..storage.cache import atomic_path
    from ..sweep.plan import SPEC_FILE

    file = output / SPEC_FILE
    try:
        saved = json.loads(file.read_text())
        saved["spec"]["strategies"] = ["full", "subspace"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    with atomic_path(file) as tmp:
        tmp.write_text(strict_json.dumps(saved, indent=2))
