"""``intrinsic-dim``: score vs the dimension d of the trained subspace, against full fine-tuning; d90.

Aghajanyan et al. 2020 / Li et al. 2018: ``subspace`` cells over a log grid of d and
``full`` cells with the same data, sizes and seeds, run as sweeps into one run folder
(resumable: a rerun skips finished cells; results land in ``results.jsonl``). Then d90, the
smallest d that reaches 90% of full fine-tuning's score, and the plot ``intrinsic.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UnfreezeError
from .common import DeviceOpt, app, user_errors
from .options import given, setting_parameters, training_parameters, with_parameters

DEFAULT_D = "10,100,1000,10000"
DEFAULT_N_TRAIN = 1000


def _ints(value: str, option: str, low: int, example: str) -> list[int]:
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UnfreezeError(f"{option} must be a comma-separated list of ints, e.g. {example}. Got {value!r}.") from None
    if not values:
        raise UnfreezeError(f"{option} must name at least one value, e.g. {example}. Got {value!r}.")
    bad = [v for v in values if v < low]
    if bad:
        raise UnfreezeError(f"{option} values must be ints >= {low}. Got {bad[0]}.")
    return sorted(set(values))


def _subspace_options() -> list:
    from ..strategies import Subspace

    return setting_parameters([("subspace", Subspace)], skip=("d",), panel="Subspace parameters")


@app.command("intrinsic-dim")
@user_errors
@with_parameters(_subspace_options(), training_parameters(skip=("prefix_cache", "learning_rate")))
def intrinsic_dim(
    data: Annotated[str, typer.Argument(help="Data: a file, a save_to_disk folder, or a built-in dataset.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder (results, intrinsic.json, plot).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Catalog name, model folder or hub id.")] = "minilm-l6",
    d: Annotated[str, typer.Option("--d", help="Subspace dimensions, a log grid, e.g. 10,100,1000,10000.")] = DEFAULT_D,
    n_train: Annotated[int, typer.Option("--n-train", help="Training examples (a stratified sample).")] = DEFAULT_N_TRAIN,
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds, e.g. 0,1,2 (scores are averaged).")] = "0",
    n_test: Annotated[Optional[int], typer.Option("--n-test", help="Score on a stratified sample of the test set.")] = None,
    test: Annotated[Optional[str], typer.Option("--test", help="Test data (default: a built-in's test split, or 20% "
                                                              "of a file).")] = None,
    test_size: Annotated[Optional[float], typer.Option("--test-size", help="Hold out this fraction of the data "
                                                                          "as test.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(
        "--learning-rate", "--lr", help="Learning rate of theta (default: subspace's).")] = None,
    full_learning_rate: Annotated[Optional[float], typer.Option(
        "--full-learning-rate", help="Learning rate of full fine-tuning (default: full's).")] = None,
    metric: Annotated[str, typer.Option("--metric", help="accuracy, macro_f1 or mcc.")] = "accuracy",
    fraction: Annotated[float, typer.Option("--fraction", help="Share of full fine-tuning's score that d must "
                                                               "reach: 0.9 gives d90, 0.97 d97.")] = 0.9,
    pooling: Annotated[str, typer.Option("--pooling", help="auto, mean, cls, last or max.")] = "auto",
    layers: Annotated[str, typer.Option("--layers", help="Hidden states, e.g. -1.")] = "-1",
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per input.")] = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Inputs per step.")] = 32,
    text_col: Annotated[str, typer.Option("--text-col", help="Column holding the text.")] = "text",
    label_col: Annotated[str, typer.Option("--label-col", help="Column holding the label.")] = "label",
    text_pair_col: Annotated[Optional[str], typer.Option("--text-pair-col", help="Column of the second text.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run failed cells again.")] = False,
    device: DeviceOpt = None,
    **settings,
) -> None:
    """Intrinsic dimension: train subspace cells over a grid of d and full fine-tuning; report d90 and plot score vs d.

    d90 is the smallest d whose mean test score reaches 90% of full fine-tuning's (--fraction); both
    the first grid point that reaches it and a log-linear interpolation are printed.
    Resumable: run the same command again to finish what an interrupted run left."""
    from ..report.tables import METRICS
    from ..strategies import Subspace
    from ..sweep import SweepSpec

    if metric not in METRICS:
        raise UnfreezeError(f"Unknown metric {metric!r}. Metrics: {', '.join(METRICS)}.")
    if not 0 < fraction <= 1:
        raise UnfreezeError(f"--fraction must be a float in (0, 1], e.g. 0.9 for d90. Got {fraction}.")
    grid_d = _ints(d, "--d", 1, DEFAULT_D)
    seed_list = _ints(seeds, "--seeds", 0, "0,1,2")
    if n_train < 1:
        raise UnfreezeError(f"--n-train must be an int >= 1. Got {n_train}.")
    for name, value in (("--learning-rate", learning_rate), ("--full-learning-rate", full_learning_rate)):
        if value is not None and not value > 0:
            raise UnfreezeError(f"{name} must be a float > 0. Got {value}.")
    chosen = given(settings)
    strategy_params = {k: v for k, v in chosen.items() if k in Subspace.setting_names()}
    training = {k: v for k, v in chosen.items() if k not in strategy_params}
    common = dict(data=data, model=model, n_train=[n_train], seeds=seed_list, n_test=n_test, test=test,
                  test_size=test_size, text_col=text_col, label_col=label_col, text_pair_col=text_pair_col,
                  pooling=pooling, layers=layers, max_length=max_length, batch_size=batch_size, **training)
    # two specs into one run folder: each strategy keeps its own learning rate (a sweep has one)
    full_spec = SweepSpec(strategies=["full"], learning_rate=full_learning_rate, **common)
    subspace_spec = SweepSpec(strategies=["subspace"], learning_rate=learning_rate,
                              grid={"subspace": {"d": grid_d, **{k: [v] for k, v in strategy_params.items()}}},
                              **common)
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


def run(output: Path, full_spec, subspace_spec, metric: str, retry_failed: bool = False,
        device: str | None = None, progress: bool = True, fraction: float = 0.9) -> dict:
    """Run (or resume) both sweeps into ``output``, write intrinsic.json and the plot, print the table and d90."""
    from ..report.intrinsic import PLOT_FILE, intrinsic_result, plot_intrinsic, table_text
    from ..sweep.grid import expand
    from ..sweep.local import run_local
    from ..sweep.plan import plan_sweep

    start = time.perf_counter()
    keys: dict[str, dict] = {}
    counts = {"total": 0, "done": 0, "skipped": 0, "failed": 0}
    for spec in (full_spec, subspace_spec):
        plan = plan_sweep(spec, output, retry_failed, device)
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
    typer.echo(f"intrinsic-dim: {counts['total']} cells, {counts['done']} run now, {counts['skipped']} already done, "
               f"{counts['failed']} failed ({time.perf_counter() - start:.1f} s)")
    result = intrinsic_result(output, metric)
    title = f"{full_spec.model} on {full_spec.data}, n={full_spec.n_train[0]}: score vs subspace dimension"
    plot_intrinsic(result, output / PLOT_FILE, title)
    (output / "intrinsic_result.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    typer.echo(table_text(result))
    typer.echo(result.sentence())
    typer.echo(f"plot: {output / PLOT_FILE}")
    return result.as_dict()


def _write_plan(output: Path, full_spec, subspace_spec, metric: str, fraction: float,
                keys: dict[str, list[str]]) -> None:
    from ..storage.cache import atomic_path
    from ..report.intrinsic import INTRINSIC_FILE

    plan = {"metric": metric, "fraction": fraction, "model": full_spec.model, "data": full_spec.data,
            "n_train": full_spec.n_train, "seeds": full_spec.seeds,
            "learning_rates": {"full": full_spec.learning_rate, "subspace": subspace_spec.learning_rate},
            "subspace_grid": subspace_spec.grid.get("subspace", {}),
            "full": {"keys": keys.get("full", [])},
            "subspace": {"keys": {g: k for g, k in keys.items() if g != "full"}}}
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / INTRINSIC_FILE) as tmp:
        tmp.write_text(json.dumps(plan, indent=2, default=str) + "\n")


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
        tmp.write_text(json.dumps(saved, indent=2))
