"""Successive halving over training sizes, on the sweep machinery, resumable from the results store.

Before any cell runs, calibration times each configuration's training step and validation
batch, and the pilot's plan (``pilot.plan_pilot``) sizes the pilot so that its finalists reach
at least three sizes within the budget; the plan is a row of the store and is printed first.
Rungs grow the training size geometrically (nested samples: a seed's 64 examples are inside
its 128). Every configuration that trains starts at the smallest rung; after a rung only the
best ``ceil(k / eta)`` of them by validation score (mean over the seeds, which share their
samples: a paired comparison) go on to the next, and never fewer than ``finalists`` (2), who
then go on through every size the budget reaches: a learning curve needs the sizes between
(where the budget cannot take them to three sizes, fewer go on, down to the best one).
Configurations that leave the model's weights alone (``features``; any strategy with
``changes_weights = False``) are cheap and run at every size. Every trained cell picks its
learning rate on its own validation split, except where a rung shares the first seed's rate:
the first rung (``first_rung_rate``), and later rungs when only that lets the pilot reach three
sizes. The test set is never read.

The results store is the source of truth. Cells are ordinary sweep cells (same keys: a
sweep's rows are reused and vice versa); the pilot's plan and each rung's decision are rows of
their own, written once, so a resumed run replays the recorded decisions instead of
re-deciding. Whether a next rung fits the budget is decided from the recorded cell times alone
(not the clock), so a run that was killed and resumed takes the same decisions as one that was
not. The clock is the safety net: a cell predicted to end past the budget is not started, and a
cell still running when the budget (less what the plan and report need) runs out stops within a
batch and is not recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..storage import strict_json
from ..storage.cache import atomic_path
from ..strategies import strategy_class
from ..sweep.grid import LEGACY_AXES, SweepSpec
from ..sweep.samples import SweepData
from ..sweep.store import ResultsStore
from .calibrate import calibration_ratio, make_pilot
from .cells import CellSettings, Rungs
from .cost import cell_seconds
from .pilot import PilotPlan, StepCosts
from .rungs import Configuration, configurations, decide, promote, rank, reserve_seconds
from .spec import FIRST_RUNG_RATES, AdviseSpec, check_sizes, default_min_size, default_validation_size, rung_sizes

ADVISE_FILE = "advise.json"


@dataclass
class AdviseRun:
    """What the halving did: the data, the rows of this plan, the rung decisions, how it ended."""

    spec: AdviseSpec
    run_dir: Path
    sizes: list[int]
    configs: list[Configuration]
    full_size: int
    n_classes: int
    rows: list[dict]
    decisions: list[dict]
    stopped: str  # why it ended: "largest size", "budget", "finalists"... for the plan's text
    spent_seconds: float
    load_seconds: float
    data: object = None
    pilot: dict | None = None  # the pilot's plan (PilotPlan.as_dict), the calibration and the cores
    machine: dict | None = None  # threads, cores, and how the cells ran against their calibration


def advise_grid(spec: AdviseSpec, num_blocks: int) -> dict[str, dict[str, list | str]]:
    """The spec's grid, with each strategy's advisor defaults (``Strategy.advise_defaults_for``) for the parameters
    its user gave no values of."""
    given = {(strategy, param) for flat, (strategy, param) in LEGACY_AXES.items() if getattr(spec, flat) is not None}
    grid = {strategy: dict(axes) for strategy, axes in spec.grid.items()}
    for strategy in spec.strategies:
        for param, values in strategy_class(strategy).advise_defaults_for(num_blocks).items():
            if param not in grid.get(strategy, {}) and (strategy, param) not in given:
                grid.setdefault(strategy, {})[param] = list(values)
    return grid


@dataclass
class Pilot:
    """What the start of a run fixed (recorded in its ``advise-start`` row, replayed on resume)."""

    data: SweepData
    sweep: SweepSpec  # the settings every cell shares, the full validation set per seed
    configs: list[Configuration]
    sizes: list[int]
    seeds: list[int]
    held: int  # validation texts per seed
    full: int
    n_classes: int
    model_fingerprint: str
    plan: PilotPlan
    costs: dict[str, StepCosts]
    started: dict


def start_pilot(spec: AdviseSpec, run_dir: Path, clock_start: float, device: str | None, cores: dict | None) -> Pilot:
    """Load the data and the model, then calibrate and plan the pilot, or read the plan a started run recorded."""
    from ..models.loaded import shared_backbone
    from ..sweep.plan import load_sweep_data

    data = load_sweep_data(spec.sweep_spec())
    pool = data.train_pool
    n_classes = len(pool.classes)  # a regression has none; a multi-label set, the labels any row carries
    full = len(pool)
    held = default_validation_size(full, n_classes) if spec.validation_size is None else spec.validation_size
    trainable = full - held  # the nested samples come from what the validation sets leave
    min_size = spec.min_size or default_min_size(n_classes)
    max_size = min(spec.max_size or trainable, trainable)
    check_sizes(spec, full, held, trainable, min_size, n_classes)
    ladder = rung_sizes(min_size, max_size, spec.growth)
    backbone = shared_backbone(spec.model, device)
    sweep = replace(spec.sweep_spec(validation_size=held), grid=advise_grid(spec, backbone.num_blocks))
    configs = configurations(sweep, backbone.num_blocks)
    model_fp = backbone.fingerprint()
    plan_id = spec.plan_id()
    store = ResultsStore(run_dir)
    started = next(
        (r for r in store.records() if r.get("kind") == "advise-start" and r.get("plan_id") == plan_id), None
    )
    if started is None:
        # a floor of 8 per class (and 32) for a smaller first size and a rung's validation subset: fewer leave a
        # class out of the head's training or of the scoring
        floor = max(32, 8 * n_classes)
        smaller = [] if spec.min_size else [n for n in (min_size // 2, min_size // 4) if n >= floor and n < min_size]
        pilot, costs = make_pilot(spec, sweep, data, configs, device, ladder, held, clock_start, smaller, floor)
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / ADVISE_FILE) as tmp:
            tmp.write_text(
                strict_json.dumps(
                    {
                        "run_kind": "advise",  # storage.outputs.run_kind_of: another command refuses this folder
                        "spec": asdict(spec),
                        "plan_id": plan_id,
                        "sizes": ladder,
                        "full_size": full,
                        "validation_size": held,
                        "n_classes": n_classes,
                        "num_blocks": backbone.num_blocks,
                        "model_fingerprint": model_fp,
                        "data_fingerprint": data.fingerprint,
                        "pilot": pilot.as_dict(),
                        "configurations": [c.label for c in configs],
                    },
                    indent=2,
                )
            )
        started = {
            "kind": "advise-start",
            "key": f"advise-start:{plan_id}",
            "plan_id": plan_id,
            "load_seconds": time.monotonic() - clock_start,
            "sizes": ladder,
            "pilot": pilot.as_dict(),
            "calibration": {label: c.as_dict() for label, c in costs.items()},
            "cores": cores,
            "started": time.time(),
        }
        store.append(started)
    plan = PilotPlan(**started["pilot"])
    costs = {label: StepCosts(**c) for label, c in (started.get("calibration") or {}).items()}
    return Pilot(
        data,
        sweep,
        [c for c in configs if c.label in plan.configurations],
        plan.ladder or ladder,
        list(plan.seeds),
        held,
        full,
        n_classes,
        model_fp,
        plan,
        costs,
        started,
    )


def run_halving(
    spec: AdviseSpec,
    run_dir: str | Path,
    clock_start: float,
    progress: bool = True,
    device: str | None = None,
    log: Callable[[str], None] = print,
    cores: dict | None = None,
) -> AdviseRun:
    """Run (or resume) the successive halving of ``spec`` into ``run_dir`` within ``spec.budget`` seconds
    counted from ``clock_start`` (``time.monotonic()`` when the command started). ``cores``: the
    ``CoreShare`` the command set (recorded with the pilot's plan)."""
    from ..features.embed import shared_embeddings

    spec.check()
    run_dir = Path(run_dir)
    pilot = start_pilot(spec, run_dir, clock_start, device, cores)
    if progress:
        from ..machine.cores import CoreShare

        share = f"cores: {CoreShare(**cores).describe()}" if cores else None
        for line in (pilot.plan.warning(spec.budget), pilot.plan.describe(), share):
            if line:
                log(line)
    plan_id = spec.plan_id()
    store = ResultsStore(run_dir)
    recorded = {r["rung"]: r for r in store.records() if r.get("kind") == "advise-rung" and r.get("plan_id") == plan_id}
    # the clock guard stopped an earlier run of this plan: that end is final (a kill writes no such row)
    stop_row = next(
        (r for r in store.records() if r.get("kind") == "advise-stop" and r.get("plan_id") == plan_id), None
    )
    overhead = float(pilot.started["load_seconds"])
    deadline = clock_start + spec.budget - reserve_seconds(spec.budget)
    settings = CellSettings(spec, pilot, recorded)
    alive = [c.label for c in pilot.configs if not c.cheap]
    cheap = [c.label for c in pilot.configs if c.cheap]
    decisions: list[dict] = []
    stopped = "largest size"
    run_spec = replace(spec, seeds=pilot.seeds)
    rungs = Rungs(spec, pilot, settings, store, plan_id, deadline, device, log if progress else None)
    with shared_embeddings():
        i, n = 0, pilot.sizes[0]
        while True:
            settings.rung_of[n] = i
            halted, cut = rungs.run(i, n, cheap + alive, stop_row is not None and i >= stop_row["rung"])
            if halted:
                stopped = "budget"
                if stop_row is None:
                    store.append(
                        {
                            "kind": "advise-stop",
                            "key": f"advise-stop:{plan_id}",
                            "plan_id": plan_id,
                            "rung": i,
                            "n_train": n,
                            "reason": "budget",
                            "finished": time.time(),
                        }
                    )
                    if progress:
                        log(
                            f"stopped at rung {i}: "
                            + (
                                "the budget ran out during a cell (not recorded)"
                                if cut
                                else "the next cell would end past the budget"
                            )
                        )
                break
            decision = recorded.get(i)
            if decision is None:
                decision = decide(
                    run_spec,
                    plan_id,
                    i,
                    pilot.sizes,
                    n,
                    alive,
                    cheap,
                    settings.by_label,
                    settings.rows,
                    settings.key,
                    overhead,
                    "kept" if i and recorded[i - 1].get("rate_search") == "kept" else pilot.plan.rate_search,
                    settings.validation_for,
                    {label: c.padding for label, c in pilot.costs.items()},
                )
                store.append(decision)
                recorded[i] = decision
            decisions.append(decision)
            alive = decision["promoted"]
            if decision["next_n_train"] is None:
                stopped = decision["reason"]
                break
            i, n = i + 1, int(decision["next_n_train"])
    rows = list(settings.rows.values())
    spent = overhead + sum(cell_seconds(r) for r in rows)
    machine = {"cores": pilot.started.get("cores"), **calibration_ratio(pilot.costs, rows)}
    return AdviseRun(
        run_spec,
        run_dir,
        pilot.sizes,
        pilot.configs,
        pilot.full,
        pilot.n_classes,
        rows,
        decisions,
        stopped,
        spent,
        overhead,
        pilot.data,
        {**pilot.plan.as_dict(), "calibration": pilot.started.get("calibration")},
        machine,
    )


__all__ = [
    "FIRST_RUNG_RATES",
    "AdviseRun",
    "AdviseSpec",
    "CellSettings",
    "Configuration",
    "Pilot",
    "advise_grid",
    "configurations",
    "decide",
    "promote",
    "rank",
    "run_halving",
    "rung_sizes",
    "start_pilot",
]
