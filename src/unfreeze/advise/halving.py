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

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..storage.cache import atomic_path
from ..machine.deadline import DeadlineReached
from ..machine.deadline import deadline as time_limit
from ..errors import UnfreezeError
from ..strategies import strategy_class
from ..sweep.grid import LEGACY_AXES, Cell, SweepSpec, expand
from ..sweep.store import ResultsStore
from .cost import cell_seconds, human_seconds, projected_cell_seconds, searched_rate
from .pilot import MIN_SIZES, SAFETY, PilotPlan, StepCosts, calibrated_seconds, plan_pilot, validation_at
from .pilot import cell_seconds as calibrated_cell
from .spec import AdviseSpec, FIRST_RUNG_RATES, default_min_size, default_validation_size, rung_sizes

ADVISE_FILE = "advise.json"
# where the next size of the ladder does not fit, a size between is run if it is at least this much larger
PARTIAL_STEP = 1.25


@dataclass
class Configuration:
    strategy: str
    params: tuple[tuple[str, object], ...]
    cheap: bool

    @property
    def label(self) -> str:
        return Cell(self.strategy, self.params, 0, 0).label

    def cell(self, n: int, seed: int) -> Cell:
        return Cell(self.strategy, self.params, n, seed)


def configurations(sweep: SweepSpec, num_blocks: int) -> list[Configuration]:
    from ..strategies import strategy_class

    seen: dict[str, Configuration] = {}
    for cell in expand(sweep, num_blocks):
        config = Configuration(cell.strategy, cell.params, not strategy_class(cell.strategy).changes_weights)
        seen.setdefault(config.label, config)
    return list(seen.values())


def rank(rows_by_config: dict[str, list[dict]]) -> list[dict]:
    """Configurations by mean validation accuracy over their seeds, then lower validation loss, then name.

    Every configuration of a rung ran on the same seeds' samples, so the means compare paired
    scores; a failed cell counts as a score of 0.
    """
    ranking = []
    for label, rows in rows_by_config.items():
        accuracies = [((r.get("validation") or {}).get("accuracy") or 0.0) if r["status"] == "done" else 0.0
                      for r in rows]
        losses = [((r.get("validation") or {}).get("loss") or math.inf) if r["status"] == "done" else math.inf
                  for r in rows]
        ranking.append({"configuration": label, "val_accuracy": sum(accuracies) / max(len(accuracies), 1),
                        "val_loss": sum(losses) / max(len(losses), 1), "seeds": len(rows),
                        "failed": sum(r["status"] != "done" for r in rows)})
    ranking.sort(key=lambda r: (-r["val_accuracy"], r["val_loss"], r["configuration"]))
    return ranking


def promote(ranking: list[dict], eta: int, finalists: int = 1) -> tuple[list[str], list[str]]:
    """The best ceil(k / eta), and never fewer than ``finalists`` (nor than one), go on; the others stop."""
    keep = max(1, finalists, math.ceil(len(ranking) / eta))
    names = [r["configuration"] for r in ranking]
    return names[:keep], names[keep:]


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


def advise_grid(spec: AdviseSpec, num_blocks: int) -> dict[str, dict[str, list]]:
    """The spec's grid, with each strategy's advisor defaults (``Strategy.advise_defaults_for``) for the parameters
    its user gave no values of."""
    given = {(strategy, param) for flat, (strategy, param) in LEGACY_AXES.items() if getattr(spec, flat) is not None}
    grid = {strategy: dict(axes) for strategy, axes in spec.grid.items()}
    for strategy in spec.strategies:
        for param, values in strategy_class(strategy).advise_defaults_for(num_blocks).items():
            if param not in grid.get(strategy, {}) and (strategy, param) not in given:
                grid.setdefault(strategy, {})[param] = list(values)
    return grid


def run_halving(spec: AdviseSpec, run_dir: str | Path, clock_start: float, progress: bool = True,
                device: str | None = None, log: Callable[[str], None] = print, cores: dict | None = None) -> AdviseRun:
    """Run (or resume) the successive halving of ``spec`` into ``run_dir`` within ``spec.budget`` seconds
    counted from ``clock_start`` (``time.monotonic()`` when the command started). ``cores``: the
    ``CoreShare`` the command set (recorded with the pilot's plan)."""
    from ..features.embed import shared_embeddings
    from ..models.loaded import shared_backbone
    from ..sweep.plan import load_sweep_data, prediction_seconds_per_text, run_cell

    spec.check()
    run_dir = Path(run_dir)
    data = load_sweep_data(spec.sweep_spec())
    pool = data.train_pool
    n_classes = len(set(pool.labels))
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
    started = next((r for r in store.records() if r.get("kind") == "advise-start" and r.get("plan_id") == plan_id),
                   None)
    if started is None:
        # a floor of 8 per class (and 32) for a smaller first size and a rung's validation subset: fewer leave a
        # class out of the head's training or of the scoring
        floor = max(32, 8 * n_classes)
        smaller = [] if spec.min_size else [n for n in (min_size // 2, min_size // 4) if n >= floor and n < min_size]
        pilot, costs = make_pilot(spec, sweep, data, configs, device, ladder, held, clock_start, smaller, floor)
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / ADVISE_FILE) as tmp:
            tmp.write_text(json.dumps({"spec": asdict(spec), "plan_id": plan_id, "sizes": ladder, "full_size": full,
                                       "validation_size": held, "n_classes": n_classes,
                                       "num_blocks": backbone.num_blocks, "model_fingerprint": model_fp,
                                       "data_fingerprint": data.fingerprint, "pilot": pilot.as_dict(),
                                       "configurations": [c.label for c in configs]}, indent=2))
        started = {"kind": "advise-start", "key": f"advise-start:{plan_id}", "plan_id": plan_id,
                   "load_seconds": time.monotonic() - clock_start, "sizes": ladder, "pilot": pilot.as_dict(),
                   "calibration": {label: c.as_dict() for label, c in costs.items()}, "cores": cores,
                   "started": time.time()}
        store.append(started)
    pilot = PilotPlan(**started["pilot"])
    if progress:
        from ..machine.cores import CoreShare

        share = f"cores: {CoreShare(**cores).describe()}" if cores else None
        for line in (pilot.warning(spec.budget), pilot.describe(), share):
            if line:
                log(line)
    costs = {label: StepCosts(**c) for label, c in (started.get("calibration") or {}).items()}
    seeds = list(pilot.seeds)
    sizes = pilot.ladder or ladder
    configs = [c for c in configs if c.label in pilot.configurations]
    recorded = {r["rung"]: r for r in store.records() if r.get("kind") == "advise-rung"
                and r.get("plan_id") == plan_id}
    # the clock guard stopped an earlier run of this plan: that end is final (a kill writes no such row)
    stop_row = next((r for r in store.records() if r.get("kind") == "advise-stop" and r.get("plan_id") == plan_id),
                    None)
    overhead = float(started["load_seconds"])
    deadline = clock_start + spec.budget - reserve_seconds(spec.budget)
    by_label = {c.label: c for c in configs}
    alive = [c.label for c in configs if not c.cheap]
    cheap = [c.label for c in configs if c.cheap]
    plan_rows: dict[str, dict] = {}
    decisions: list[dict] = []
    stopped = "largest size"
    latest_rows: dict[str, list[dict]] = {}  # each configuration's cells at its latest size: the clock guard's basis
    run_spec = replace(spec, seeds=seeds)

    rung_of: dict[int, int] = {}  # size -> rung, as the decisions reach them

    def shares_rate(n: int) -> bool:
        """Whether the rung of size ``n`` trains the later seeds at the rate the first seed's search chose."""
        rung = rung_of[n]
        mode = spec.first_rung_rate if rung == 0 else (recorded.get(rung - 1) or {}).get("rate_search",
                                                                                          "every-seed")
        return mode == "first-seed" and sweep.searches_rates and len(seeds) > 1

    def validation_for(n: int) -> int:
        return validation_at(n, held, pilot.validation_growth, pilot.validation_floor)

    settings: dict[tuple, SweepSpec] = {}  # (validation texts, rate, epochs) -> settings: built once, keyed often

    def settings_for(used: int, rate: float | None = None, epochs: int | None = None) -> SweepSpec:
        if (used, rate, epochs) not in settings:
            base = replace(sweep, validation_used=used) if used < held else sweep
            settings[used, rate, epochs] = base if rate is None else replace(base, learning_rate=rate, epochs=epochs)
        return settings[used, rate, epochs]

    def cell_sweep(cell: Cell) -> SweepSpec:
        """A cell's settings: its rung's validation texts; where its rung shares the rate, the later seeds train
        at the first seed's."""
        used = validation_for(cell.n_train)
        if cell.seed == seeds[0] or by_label[cell.label].cheap or not shares_rate(cell.n_train):
            return settings_for(used)
        first = plan_rows.get(key_of(by_label[cell.label].cell(cell.n_train, seeds[0]))) or {}
        rate = (first.get("fit") or {}).get("learning_rate") if first.get("status") == "done" else None
        if rate is None:
            return settings_for(used)
        # the search's training at the chosen rate: its epoch ceiling (early stopping on the validation set)
        return settings_for(used, float(rate), sweep.epochs or cell.make_strategy().epochs_for(True))

    def key_of(cell: Cell) -> str:
        return cell.key(data.fingerprint, model_fp, cell_sweep(cell).cell_settings(cell.strategy))

    def timing_hook(clf, train, record) -> None:
        if record["cell"]["seed"] == seeds[0]:
            record["predict_seconds_per_text"] = prediction_seconds_per_text(clf, train.inputs[:32])

    with shared_embeddings():
        i, n = 0, sizes[0]
        while True:
            rung_of[n] = i
            rung_labels = cheap + alive
            latest = store.latest()
            halted = cut = False
            for seed in seeds:
                for label in rung_labels:
                    cell = by_label[label].cell(n, seed)
                    key = key_of(cell)
                    if key in latest:
                        plan_rows[key] = latest[key]
                        continue
                    expected = SAFETY * expected_seconds(latest_rows.get(label, []), costs.get(label), n,
                                                         validation_for(n),
                                                         seed == seeds[0] or not shares_rate(n))
                    if (stop_row is not None and i >= stop_row["rung"]) or time.monotonic() + expected > deadline:
                        halted = True
                        break
                    if progress:
                        log(f"rung {i} (n={n}): {cell.describe()}")
                    try:
                        # the projection cannot see a machine that slows down: the cell itself stops within a
                        # batch of the deadline, and is not recorded
                        with time_limit(deadline):
                            record = run_cell(cell_sweep(cell), data, cell, key, device, use_cache=True,
                                              score_test=False, after_fit=timing_hook)
                    except DeadlineReached:
                        halted = cut = True
                        break
                    record["advise"] = {"plan_id": plan_id, "rung": i}
                    record.update({"model": spec.model, "data": spec.data})
                    store.append(record)
                    plan_rows[key] = record
                    if progress:
                        log(f"  {cell_line(record, costs.get(label))}")
                    same_size = [r for r in latest_rows.get(label, []) if r["cell"]["n_train"] == n]
                    latest_rows[label] = same_size + [record]
                if halted:
                    break
            for label in rung_labels:  # the clock guard's basis for the next rung: every seed's cell at this size
                rows = [plan_rows[key_of(by_label[label].cell(n, s))] for s in seeds
                        if key_of(by_label[label].cell(n, s)) in plan_rows]
                if rows:
                    latest_rows[label] = rows
            if halted:
                stopped = "budget"
                if stop_row is None:
                    store.append({"kind": "advise-stop", "key": f"advise-stop:{plan_id}", "plan_id": plan_id,
                                  "rung": i, "n_train": n, "reason": "budget", "finished": time.time()})
                    if progress:
                        log(f"stopped at rung {i}: " + ("the budget ran out during a cell (not recorded)" if cut
                                                         else "the next cell would end past the budget"))
                break
            decision = recorded.get(i)
            if decision is None:
                decision = decide(run_spec, plan_id, i, sizes, n, alive, cheap, by_label, plan_rows, key_of, overhead,
                                  pilot.rate_search, validation_for)
                store.append(decision)
                recorded[i] = decision
            decisions.append(decision)
            alive = decision["promoted"]
            if decision["next_n_train"] is None:
                stopped = decision["reason"]
                break
            i, n = i + 1, int(decision["next_n_train"])
    rows = list(plan_rows.values())
    spent = overhead + sum(cell_seconds(r) for r in rows)
    machine = {"cores": started.get("cores"), **calibration_ratio(costs, rows)}
    return AdviseRun(run_spec, run_dir, sizes, configs, full, n_classes, rows, decisions, stopped, spent, overhead,
                     data, {**pilot.as_dict(), "calibration": started.get("calibration")}, machine)


def expected_seconds(rows: list[dict], costs: StepCosts | None, n: int, validation: int, searches: bool) -> float:
    """What a cell at ``n`` should take, for the clock guard: from the configuration's cells at the size before
    that did as this one will (search their rate, or fit once at a shared one); its first cell, from the
    calibration."""
    if not rows:
        return calibrated_cell(costs, n, validation, searches) if costs is not None else 0.0
    alike = [r for r in rows if searched_rate(r) == searches]
    if alike:
        return max(projected_cell_seconds(r, n, validation) for r in alike)
    if searches:  # the cells before fitted once: a search fits once per rate
        return max(projected_cell_seconds(r, n, validation) for r in rows) * (costs.rates if costs else 3)
    # the cells before searched: one fit is one of their trials
    return max(projected_cell_seconds(r, n, validation) / max(len((r.get("fit") or {}).get("lr_search") or [1]), 1)
               for r in rows)


def check_sizes(spec: AdviseSpec, full: int, held: int, trainable: int, min_size: int, n_classes: int) -> None:
    """Data too small for the sizes asked for: one line each, before anything loads."""
    if min_size > trainable:
        besides = f" besides {held} held out for validation" if held else ""
        raise UnfreezeError(f"{spec.data} has {full} labelled examples, too few for the smallest rung "
                            f"({min_size}){besides}. Give --min-size {max(4, trainable // 4)} or more data.")
    if spec.max_size is not None and spec.max_size > trainable:
        besides = f" ({full} labelled, {held} held out for validation)" if held else ""
        raise UnfreezeError(f"--max-size {spec.max_size} is more than the {trainable} training examples of "
                            f"{spec.data}{besides}. Use at most {trainable}.")
    if not held and (round(min_size * spec.validation_fraction) < n_classes or min_size < 4 * n_classes):
        needed = max(4 * n_classes, int(math.ceil(n_classes / spec.validation_fraction)))
        raise UnfreezeError(f"--min-size {min_size} is too small for a validation split holding each of the "
                            f"{n_classes} classes. Give --min-size {needed} or more.")


def make_pilot(spec: AdviseSpec, sweep: SweepSpec, data, configs: list[Configuration], device: str | None,
               ladder: list[int], held: int, clock_start: float, smaller: list[int],
               floor: int) -> tuple[PilotPlan, dict[str, StepCosts]]:
    """Calibrate, then plan the pilot in what the budget leaves; refuse a budget that cannot run even the cheap
    configurations at the smallest size (one line, nothing written)."""
    from .calibrate import calibrate

    try:
        with time_limit(clock_start + spec.budget):
            costs = calibrate(sweep, data, configs, device, spec.seeds[0])
    except DeadlineReached:
        costs = {}
    room = spec.budget - reserve_seconds(spec.budget) - (time.monotonic() - clock_start)
    cheap = [c.label for c in configs if c.cheap]
    first = min(smaller) if smaller else ladder[0]
    baseline = sum(len(spec.seeds) * calibrated_cell(costs[label], first, held, False) for label in cheap
                   if label in costs) * SAFETY
    elapsed = time.monotonic() - clock_start
    if not costs or room <= 0:
        raise UnfreezeError(f"A budget of {human_seconds(spec.budget)} cannot run even the features baseline: "
                            f"loading the model and timing one step of each configuration took "
                            f"{human_seconds(elapsed)}. Give --budget {math.ceil(max(elapsed, 20) * 3 / 60)}m or more.")
    if cheap and baseline > room:
        needed = elapsed + baseline + reserve_seconds(spec.budget)
        raise UnfreezeError(f"A budget of {human_seconds(spec.budget)} cannot run even the features baseline at the "
                            f"smallest size ({first} examples x {len(spec.seeds)} seeds): loading and timing took "
                            f"{human_seconds(elapsed)} and the baseline needs about {human_seconds(baseline)} more. "
                            f"Give --budget {math.ceil(needed * 1.5 / 60)}m or more.")
    pilot = plan_pilot(costs, [c.label for c in configs], ladder, list(spec.seeds), held, room, spec.eta,
                       spec.finalists, spec.first_rung_rate, smaller, spec.growth, floor)
    return pilot, costs


def cell_line(record: dict, costs: StepCosts | None) -> str:
    """One progress line for a finished cell: its score, its seconds and what calibration projected."""
    if record["status"] != "done":
        return f"failed: {record['error']}"
    accuracy = (record.get("validation") or {}).get("accuracy")
    expected = calibrated_seconds(costs, record) if costs else None
    return (f"validation accuracy {accuracy:.3f}, " if accuracy is not None else "") + (
        f"{cell_seconds(record):.1f} s" + (f" (calibration: {expected:.1f} s)" if expected else ""))


def calibration_ratio(costs: dict[str, StepCosts], rows: list[dict]) -> dict:
    """How much slower than its calibration the machine ran the cells: their seconds over the seconds the
    calibration gives them (with the epochs they ran). Above 1: slower (other work, a throttled CPU)."""
    measured = expected = 0.0
    for r in rows:
        c = costs.get(r["cell"]["label"])
        # trained cells: a cheap cell's seconds depend on what the embedding pool already holds
        projected = calibrated_seconds(c, r) if c is not None and not c.cheap else None
        if projected:
            measured += cell_seconds(r)
            expected += projected
    return {"cell_seconds": measured, "calibrated_seconds": expected,
            "slowdown": measured / expected if expected > 0 else None}


def decide(spec: AdviseSpec, plan_id: str, i: int, sizes: list[int], n: int, alive: list[str], cheap: list[str],
           by_label: dict, plan_rows: dict, key_of, overhead: float, rate_search: str = "every-seed",
           validation_for: Callable[[int], int] | None = None) -> dict:
    """The rung's decision from its rows: ranking, who goes on, whether the next size fits the budget, and
    whether its later seeds search their rate (``rate_search`` "every-seed", when that still lets the
    finalists reach ``MIN_SIZES`` sizes) or train at the first seed's ("first-seed"). ``validation_for(n)``: the
    validation texts of a rung of n examples, where they grow with the rung."""
    def rows_of(label: str, size: int) -> list[dict]:
        return [plan_rows[key_of(by_label[label].cell(size, s))] for s in spec.seeds
                if key_of(by_label[label].cell(size, s)) in plan_rows]

    ranking = rank({label: rows_of(label, n) for label in alive})
    promoted, eliminated = promote(ranking, spec.eta, spec.finalists) if ranking else ([], [])
    spent = overhead + sum(cell_seconds(r) for r in plan_rows.values())
    room = spec.budget - reserve_seconds(spec.budget) - spent

    def seconds_at(label: str, target: int, mode: str) -> float:
        """A configuration's cells at ``target``, projected from this rung's (see cost.projected_cell_seconds)."""
        rows = rows_of(label, n)
        searched = [r for r in rows if searched_rate(r)]
        once = [r for r in rows if not searched_rate(r)]
        texts = validation_for(target) if validation_for is not None else None

        def at(r: dict) -> float:
            return projected_cell_seconds(r, target, texts)

        if not searched:
            return sum(at(r) for r in rows)
        search = sum(at(r) for r in searched) / len(searched)
        single = (sum(at(r) for r in once) / len(once) if once
                  else search / max(len((searched[0].get("fit") or {}).get("lr_search") or [1]), 1))
        searching = 1 if mode == "first-seed" else len(rows)
        return searching * search + (len(rows) - searching) * single

    def projected_to(targets: list[int], mode: str) -> float:
        return SAFETY * sum(seconds_at(label, t, mode) for t in targets for label in promoted + cheap)

    ahead = [size for size in sizes if size > n]
    needed = ahead[:max(1, MIN_SIZES - (i + 1))]  # the sizes still to reach for a curve (or the next one)
    modes = ["every-seed", "first-seed"] if rate_search == "every-seed" else ["first-seed"]
    next_n, mode, projected, reason = None, rate_search, 0.0, "largest size"
    # where the budget cannot take the promoted to a learning curve's sizes, keep fewer of them (the lowest ranked
    # go first, down to one): a curve for the best beats two configurations measured at two sizes
    while ahead and len(promoted) > 1 and i + 1 < MIN_SIZES and projected_to(needed, modes[-1]) > room:
        eliminated = [promoted.pop()] + eliminated
    if ahead and promoted:
        choice = next(((m, projected_to(needed, m)) for m in modes if projected_to(needed, m) <= room), None) or \
            next(((m, projected_to(ahead[:1], m)) for m in modes if projected_to(ahead[:1], m) <= room), None)
        if choice is not None:
            mode, projected = choice
            next_n = ahead[0]
            reason = "finalists" if len(promoted) <= spec.finalists else "promoted"
        else:
            # the next size does not fit: the largest size on the way that does (at least a quarter above this
            # one: a curve point that close adds little), so that the budget is spent on a larger size
            mode = modes[-1]
            low, high = int(math.ceil(PARTIAL_STEP * n)), ahead[0] - 1
            if low <= high and projected_to([low], mode) <= room:
                while low < high:
                    middle = (low + high + 1) // 2
                    low, high = (middle, high) if projected_to([middle], mode) <= room else (low, middle - 1)
                next_n, projected = low, projected_to([low], mode)
                reason = "the largest size the budget allows"
            else:
                reason, projected = "budget", projected_to(ahead[:1], mode)
    return {"kind": "advise-rung", "key": f"advise-rung:{plan_id}:{i}", "plan_id": plan_id, "rung": i,
            "n_train": n, "ranking": ranking, "promoted": promoted, "eliminated": eliminated, "cheap": cheap,
            "next_n_train": next_n, "rate_search": mode, "reason": reason, "spent_seconds": spent,
            "projected_seconds": projected, "finished": time.time()}


def reserve_seconds(budget: float) -> float:
    """Kept back from the budget for the plan, the curves and the report."""
    return min(max(3.0, 0.03 * budget), 30.0)


__all__ = ["AdviseRun", "AdviseSpec", "Configuration", "FIRST_RUNG_RATES", "configurations", "decide", "promote",
           "rank", "run_halving", "rung_sizes"]
