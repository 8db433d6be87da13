"""Successive halving over training sizes, on the sweep machinery, resumable from the results store.

Rungs grow the training size geometrically (nested samples: a seed's 64 examples are inside
its 128). Every configuration that trains starts at the smallest rung; after a rung only the
best ``ceil(k / eta)`` of them by validation score (mean over the seeds, which share their
samples: a paired comparison) go on to the next, and never fewer than ``finalists`` (2): once
down to them, the finalists go straight to the largest size and are compared there, since
scores at small sizes cross (movie-snippets: freeze k=3 leads k=0 up to 256 examples and
trails it by 2 points at 512). Configurations that leave the model's weights alone
(``features``; any strategy with ``changes_weights = False``) are cheap and run at every
size. Every trained cell picks its learning rate on its own validation split, except at the
first rung, where the first seed's search chooses the rate the other seeds train at (a third
of the cost; ``first_rung_rate="every-seed"`` searches on each). The test set is never read.

The results store is the source of truth. Cells are ordinary sweep cells (same keys: a
sweep's rows are reused and vice versa); each rung's decision is a row of its own, written
once, so a resumed run replays the recorded decisions instead of re-deciding. Whether a
next rung fits the budget is decided from the recorded cell times alone (not the clock), so
a run that was killed and resumed takes the same decisions as one that was not. The clock
is the safety net: a cell predicted to end past the budget is not started, and a cell still
running when the budget (less what the plan and report need) runs out stops within a batch
and is not recorded.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..cache import atomic_path, sha256_json
from ..deadline import DeadlineReached
from ..deadline import deadline as time_limit
from ..errors import UnfreezeError
from ..sweep.grid import Cell, SweepSpec, expand
from ..sweep.store import ResultsStore
from .cost import cell_seconds, projected_cell_seconds, searched_rate

ADVISE_FILE = "advise.json"
FIRST_RUNG_RATES = ("first-seed", "every-seed")
# a next rung is started only when its projected time, padded by this factor, fits
SAFETY = 1.15


@dataclass
class AdviseSpec:
    """What the advisor may try, on which data, within which budget.

    ``sizes`` are derived: ``min_size`` times ``growth`` per rung, up to ``max_size`` (default:
    all the labelled data). ``k`` None gives freeze k in {0, L/2, L-1}.
    """

    data: str = "movie-snippets"
    model: str = "minilm-l6"
    strategies: list[str] = field(default_factory=lambda: ["features", "freeze", "lora"])
    k: list[int] | str | None = None
    grid: dict[str, dict[str, list]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    budget: float = 900.0
    eta: int = 3
    # never fewer trained configurations than this go on; once down to them, they go straight to the
    # largest size, where they are compared (scores at small sizes cross: movie-snippets' freeze k=3
    # leads k=0 up to 256 examples and trails it by 2 points at 512)
    finalists: int = 2
    # the first rung searches each configuration's rate on the first seed only and the other seeds
    # reuse it ("first-seed"), a third of the cost of searching on every seed ("every-seed")
    first_rung_rate: str = "first-seed"
    growth: float = 2.0
    min_size: int | None = None
    max_size: int | None = None
    target: float | None = None
    tolerance: float = 0.0
    # a cheaper configuration is never recommended when it measured more than this below the best (or than
    # the tolerance, if larger), even where three seeds cannot show the difference (it is better on one)
    max_loss: float = 0.01
    test: str | None = None
    test_size: float | None = None
    text_col: str = "text"
    label_col: str = "label"
    text_pair_col: str | None = None
    pooling: str = "auto"
    layers: str = "-1"
    max_length: int = 128
    batch_size: int = 32
    learning_rate: float | str | list[float] | None = "auto"
    epochs: int | None = None
    validation_fraction: float = 0.1
    # one validation set per seed, held out before the nested samples: every rung's decision and
    # every cell's rate choice are scored on the same examples. None: default_validation_size;
    # 0: validation_fraction of each sample (6 examples at a 64-example rung: a coin toss)
    validation_size: int | None = None
    precision: str = "auto"

    def check(self) -> None:
        """The model-free checks: one line each, before anything loads."""
        if not isinstance(self.budget, (int, float)) or self.budget <= 0:
            raise UnfreezeError(f"--budget must be a positive duration such as 15m or 90s. Got {self.budget!r}.")
        if self.target is not None and not 0 < self.target <= 1:
            raise UnfreezeError(f"--target is a score in (0, 1] (accuracy); {self.target} can never be reached. "
                                "Give e.g. --target 0.85.")
        if not 0 <= self.tolerance < 1:
            raise UnfreezeError(f"--tolerance is a score difference in [0, 1), e.g. 0.01. Got {self.tolerance}.")
        if not 0 <= self.max_loss < 1:
            raise UnfreezeError(f"--max-loss is a score difference in [0, 1), e.g. 0.01. Got {self.max_loss}.")
        if not isinstance(self.eta, int) or self.eta < 2:
            raise UnfreezeError(f"--eta must be an int >= 2 (keep the best 1/eta per rung). Got {self.eta!r}.")
        if not isinstance(self.finalists, int) or isinstance(self.finalists, bool) or self.finalists < 1:
            raise UnfreezeError(f"--finalists must be an int >= 1 (trained configurations compared at the largest "
                                f"size). Got {self.finalists!r}.")
        if self.first_rung_rate not in FIRST_RUNG_RATES:
            raise UnfreezeError(f"--first-rung-rate must be one of {', '.join(FIRST_RUNG_RATES)}. "
                                f"Got {self.first_rung_rate!r}.")
        if not self.growth > 1:
            raise UnfreezeError(f"--growth must be > 1 (each rung trains on more examples). Got {self.growth}.")
        if self.validation_size is not None and (not isinstance(self.validation_size, int)
                                                 or isinstance(self.validation_size, bool) or self.validation_size < 0):
            raise UnfreezeError(f"--validation-size must be an int >= 0 (0: a fraction of each sample). "
                                f"Got {self.validation_size!r}.")
        if not 0 < self.validation_fraction < 1:
            raise UnfreezeError("The advisor decides on validation scores: --validation-fraction must be in (0, 1). "
                                f"Got {self.validation_fraction}.")
        for name in ("min_size", "max_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 4):
                raise UnfreezeError(f"--{name.replace('_', '-')} must be an int >= 4. Got {value!r}.")
        if self.min_size and self.max_size and self.min_size > self.max_size:
            raise UnfreezeError(f"--min-size {self.min_size} is above --max-size {self.max_size}.")

    def sweep_spec(self, k: list[int] | str | None = None, validation_size: int = 0) -> SweepSpec:
        """The sweep settings every cell of the advisor shares (its keys are sweep keys)."""
        return SweepSpec(data=self.data, model=self.model, strategies=list(self.strategies), grid=self.grid,
                         validation_size=validation_size, k=k if k is not None else self.k, n_train=[1],
                         seeds=list(self.seeds),
                         test=self.test, test_size=self.test_size, text_col=self.text_col, label_col=self.label_col,
                         text_pair_col=self.text_pair_col, pooling=self.pooling, layers=self.layers,
                         max_length=self.max_length, batch_size=self.batch_size, learning_rate=self.learning_rate,
                         epochs=self.epochs, validation_fraction=self.validation_fraction, precision=self.precision)

    def plan_id(self) -> str:
        """Names this advisor run's decisions: everything that could change one."""
        return sha256_json({k: v for k, v in asdict(self).items()})[:16]


def rung_sizes(min_size: int, max_size: int, growth: float) -> list[int]:
    """Geometric sizes from ``min_size``; the last is ``max_size`` (a short last step merges into it)."""
    sizes = [min_size]
    while sizes[-1] * growth < max_size:
        sizes.append(int(round(sizes[-1] * growth)))
    if max_size / sizes[-1] >= math.sqrt(growth) or len(sizes) == 1:
        sizes.append(max_size)
    else:
        sizes[-1] = max_size
    return sorted(set(sizes))


def default_validation_size(pool_size: int, n_classes: int) -> int:
    """The advisor's validation set per seed: a fifth of the pool, from 8 per class up to 200 examples.

    200 examples (x 3 seeds, paired) resolve accuracy differences of a few points; more costs
    every cell an evaluation per epoch and rate for little more resolution."""
    return max(8 * n_classes, min(200, pool_size // 5))


def default_min_size(n_classes: int) -> int:
    # enough for a validation split holding every class (validation_split needs 4 per class)
    return max(64, 16 * n_classes)


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
    stopped: str  # why it ended: "largest size", "budget", "one left"... for the plan's text
    spent_seconds: float
    load_seconds: float
    data: object = None


def run_halving(spec: AdviseSpec, run_dir: str | Path, clock_start: float, progress: bool = True,
                device: str | None = None, log: Callable[[str], None] = print) -> AdviseRun:
    """Run (or resume) the successive halving of ``spec`` into ``run_dir`` within ``spec.budget`` seconds
    counted from ``clock_start`` (``time.monotonic()`` when the command started)."""
    from ..embed import shared_embeddings
    from ..models.loaded import shared_backbone
    from ..sweep.plan import load_sweep_data, run_cell

    spec.check()
    run_dir = Path(run_dir)
    sweep = spec.sweep_spec()
    data = load_sweep_data(sweep)
    pool = data.train_pool
    n_classes = len(set(pool.labels))
    full = len(pool)
    held = default_validation_size(full, n_classes) if spec.validation_size is None else spec.validation_size
    trainable = full - held  # the nested samples come from what the validation sets leave
    min_size = spec.min_size or default_min_size(n_classes)
    max_size = min(spec.max_size or trainable, trainable)
    if min_size > trainable:
        besides = f" besides {held} held out for validation" if held else ""
        raise UnfreezeError(f"{spec.data} has {full} labelled examples, too few for the smallest rung "
                            f"({min_size}){besides}. Give --min-size {max(4, trainable // 4)} or more data.")
    if spec.max_size is not None and spec.max_size > trainable:
        besides = f" ({full} labelled, {held} held out for validation)" if held else ""
        raise UnfreezeError(f"--max-size {spec.max_size} is more than the {trainable} training examples of "
                            f"{spec.data}{besides}. Use at most {trainable}.")
    sweep = spec.sweep_spec(validation_size=held)
    if not held and (round(min_size * spec.validation_fraction) < n_classes or min_size < 4 * n_classes):
        needed = max(4 * n_classes, int(math.ceil(n_classes / spec.validation_fraction)))
        raise UnfreezeError(f"--min-size {min_size} is too small for a validation split holding each of the "
                            f"{n_classes} classes. Give --min-size {needed} or more.")
    sizes = rung_sizes(min_size, max_size, spec.growth)
    backbone = shared_backbone(spec.model, device)
    if spec.k is None and "freeze" in spec.strategies and "k" not in spec.grid.get("freeze", {}):
        sweep = spec.sweep_spec(k=sorted({0, backbone.num_blocks // 2, max(backbone.num_blocks - 1, 0)}),
                                validation_size=held)
    configs = configurations(sweep, backbone.num_blocks)
    model_fp = backbone.fingerprint()
    plan_id = spec.plan_id()
    store = ResultsStore(run_dir)
    records = store.records()
    load_seconds = time.monotonic() - clock_start
    started = next((r for r in records if r.get("kind") == "advise-start" and r.get("plan_id") == plan_id), None)
    if started is None:
        from ..sweep.plan import inference_backbone

        check_budget_for_baseline(spec, inference_backbone(sweep, device), pool, min_size, load_seconds)
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / ADVISE_FILE) as tmp:
            tmp.write_text(json.dumps({"spec": asdict(spec), "plan_id": plan_id, "sizes": sizes, "full_size": full,
                                       "validation_size": held, "n_classes": n_classes,
                                       "num_blocks": backbone.num_blocks,
                                       "model_fingerprint": model_fp, "data_fingerprint": data.fingerprint,
                                       "configurations": [c.label for c in configs]}, indent=2))
        started = {"kind": "advise-start", "key": f"advise-start:{plan_id}", "plan_id": plan_id,
                   "load_seconds": load_seconds, "sizes": sizes, "started": time.time()}
        store.append(started)
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

    shared_first_rate = spec.first_rung_rate == "first-seed" and sweep.searches_rates and len(spec.seeds) > 1

    def cell_sweep(cell: Cell) -> SweepSpec:
        """A cell's settings: at the first rung the later seeds train at the rate the first seed's search chose."""
        if not shared_first_rate or cell.n_train != sizes[0] or cell.seed == spec.seeds[0] \
                or by_label[cell.label].cheap:
            return sweep
        first = plan_rows.get(key_of(by_label[cell.label].cell(cell.n_train, spec.seeds[0]))) or {}
        rate = (first.get("fit") or {}).get("learning_rate") if first.get("status") == "done" else None
        if rate is None:
            return sweep
        # the search's training at the chosen rate: its epoch ceiling (early stopping on the validation set)
        return replace(sweep, learning_rate=float(rate), epochs=sweep.epochs or cell.make_strategy().epochs_for(True))

    def key_of(cell: Cell) -> str:
        return cell.key(data.fingerprint, model_fp, cell_sweep(cell).cell_settings(cell.strategy))

    def timing_hook(seed0: int):
        def hook(clf, train, record) -> None:
            if record["cell"]["seed"] == seed0:
                record["predict_seconds_per_text"] = time_prediction(clf, train.inputs)
        return hook

    with shared_embeddings():
        for i, n in enumerate(sizes):
            # a size the finalists skip: the cheap configurations still run there (their curves need every size)
            skipped = bool(decisions) and n < decisions[-1]["next_n_train"]
            rung_labels = cheap if skipped else cheap + alive
            latest = store.latest()
            halted = cut = False
            for seed in spec.seeds:
                for label in rung_labels:
                    cell = by_label[label].cell(n, seed)
                    key = key_of(cell)
                    if key in latest:
                        plan_rows[key] = latest[key]
                        continue
                    expected = max((projected_cell_seconds(r, n) for r in latest_rows.get(label, [])),
                                   default=0.0) * SAFETY
                    if (stop_row is not None and i >= stop_row["rung"]) or time.monotonic() + expected > deadline:
                        halted = True
                        break
                    if progress:
                        log(f"rung {i} (n={n}): {cell.describe()}")
                    try:
                        # the projection cannot see a configuration's first cell, nor a machine that slows down:
                        # the cell itself stops within a batch of the deadline, and is not recorded
                        with time_limit(deadline):
                            record = run_cell(cell_sweep(cell), data, cell, key, device, use_cache=True,
                                              score_test=False, after_fit=timing_hook(spec.seeds[0]))
                    except DeadlineReached:
                        halted = cut = True
                        break
                    record["advise"] = {"plan_id": plan_id, "rung": i}
                    record.update({"model": spec.model, "data": spec.data})
                    store.append(record)
                    plan_rows[key] = record
                    if record["status"] == "failed" and progress:
                        log(f"  failed: {record['error']}")
                    same_size = [r for r in latest_rows.get(label, []) if r["cell"]["n_train"] == n]
                    latest_rows[label] = same_size + [record]
                if halted:
                    break
            for label in rung_labels:  # the clock guard's basis for the next rung: every seed's cell at this size
                rows = [plan_rows[key_of(by_label[label].cell(n, s))] for s in spec.seeds
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
            if skipped:
                continue
            decision = recorded.get(i)
            if decision is None:
                decision = decide(spec, plan_id, i, sizes, n, alive, cheap, by_label, plan_rows, key_of, overhead)
                store.append(decision)
            decisions.append(decision)
            alive = decision["promoted"]
            if decision["next_n_train"] is None:
                stopped = decision["reason"]
                break
    rows = list(plan_rows.values())
    spent = overhead + sum(cell_seconds(r) for r in rows)
    return AdviseRun(spec, run_dir, sizes, configs, full, n_classes, rows, decisions, stopped, spent, overhead, data)


def decide(spec: AdviseSpec, plan_id: str, i: int, sizes: list[int], n: int, alive: list[str], cheap: list[str],
           by_label: dict, plan_rows: dict, key_of, overhead: float) -> dict:
    """The rung's decision from its rows: ranking, who goes on, and whether the next rung fits the budget."""
    def rows_of(label: str, size: int) -> list[dict]:
        return [plan_rows[key_of(by_label[label].cell(size, s))] for s in spec.seeds
                if key_of(by_label[label].cell(size, s)) in plan_rows]

    ranking = rank({label: rows_of(label, n) for label in alive})
    promoted, eliminated = promote(ranking, spec.eta, spec.finalists) if ranking else ([], [])
    spent = overhead + sum(cell_seconds(r) for r in plan_rows.values())
    next_n = sizes[i + 1] if i + 1 < len(sizes) else None
    projected = 0.0
    reason = "largest size" if next_n is None else ""
    if next_n is not None and promoted and len(promoted) <= spec.finalists:
        # down to the finalists: the sizes between decide nothing (all of them go on), and where curves
        # cross they mislead, so the finalists go straight to the largest size and are compared there
        # (successive halving's last rung); the cheap ones run every size on the way
        next_n, reason = sizes[-1], "one left" if len(promoted) == 1 else "finalists"

    def seconds_at(label: str, target: int) -> float:
        """A configuration's cells at ``target``, projected from this rung's (see cost.projected_cell_seconds)."""
        rows = rows_of(label, n)
        searched = [r for r in rows if searched_rate(r)]
        if searched and len(searched) < len(rows):
            # the first rung's shared rate: at later sizes every seed searches its rate, as the first did
            return len(rows) * sum(projected_cell_seconds(r, target) for r in searched) / len(searched)
        return sum(projected_cell_seconds(r, target) for r in rows)

    def projected_to(target: int) -> float:
        """Seconds to take the promoted to ``target`` (cheap ones at every size on the way), from this rung."""
        seconds = sum(seconds_at(label, target) for label in promoted + cheap)
        for between in sizes[i + 1:sizes.index(target)]:
            seconds += sum(seconds_at(label, between) for label in cheap)
        return seconds * SAFETY

    if next_n is not None:
        room = spec.budget - reserve_seconds(spec.budget) - spent
        # the finalists go to the largest size the budget allows (all of it, unless that does not fit)
        options = sizes[i + 1:sizes.index(next_n) + 1][::-1] if reason else [next_n]
        fitting = next((m for m in options if projected_to(m) <= room), None)
        projected = projected_to(fitting if fitting is not None else next_n)
        if fitting is None:
            reason, next_n = "budget", None
        elif fitting != next_n:
            reason, next_n = f"{reason}: the largest size the budget allows", fitting
    return {"kind": "advise-rung", "key": f"advise-rung:{plan_id}:{i}", "plan_id": plan_id, "rung": i,
            "n_train": n, "ranking": ranking, "promoted": promoted, "eliminated": eliminated, "cheap": cheap,
            "next_n_train": next_n, "reason": reason or "promoted", "spent_seconds": spent,
            "projected_seconds": projected, "finished": time.time()}


def reserve_seconds(budget: float) -> float:
    """Kept back from the budget for the plan, the curves and the report."""
    return min(max(3.0, 0.03 * budget), 30.0)


def check_budget_for_baseline(spec: AdviseSpec, backbone, pool, min_size: int, load_seconds: float) -> None:
    """Refuse a budget that cannot even run the features baseline at the smallest rung, before any cell runs.

    Measures the model's embedding speed on a few texts: the baseline embeds its sample once
    per seed (nested samples: the largest seed's sample, in practice ``min_size`` texts).
    """
    from ..embed import embed
    from ..models.pooling import parse_layers, resolve_pooling

    probe = pool.inputs[: min(16, len(pool))]
    started = time.monotonic()
    embed(backbone, probe, list(parse_layers(spec.layers, backbone.num_blocks, "advise")),
          resolve_pooling(spec.pooling, backbone.is_decoder, "advise"), spec.max_length, spec.batch_size,
          use_cache=False, progress=False)
    per_text = (time.monotonic() - started) / len(probe)
    baseline = per_text * min_size * len(spec.seeds) + 0.5 * len(spec.seeds)
    needed = load_seconds + (time.monotonic() - started) + baseline + reserve_seconds(spec.budget)
    if needed > spec.budget:
        raise UnfreezeError(f"A budget of {spec.budget:.0f} s cannot run even the features baseline at the "
                            f"smallest size ({min_size} examples x {len(spec.seeds)} seeds): loading took "
                            f"{load_seconds:.0f} s and the baseline needs about {baseline:.0f} s more. "
                            f"Give --budget {math.ceil(needed * 1.5 / 60)}m or more.")


def time_prediction(clf, texts: list, n: int = 32) -> float | None:
    """Seconds per text to predict ``n`` texts with every cache off (what a new text costs)."""
    from ..embed import EMBEDDING_POOLS
    from ..training.prefix import PREFIX_POOLS

    sample_texts = texts[:n]
    if not sample_texts:
        return None
    saved = EMBEDDING_POOLS.data, PREFIX_POOLS.data
    predictor = clf.predictor_
    had_cache = getattr(predictor, "use_cache", None)
    try:
        EMBEDDING_POOLS.data = PREFIX_POOLS.data = None
        if had_cache is not None:
            predictor.use_cache = False
        started = time.perf_counter()
        clf.predict_proba(sample_texts)
        return (time.perf_counter() - started) / len(sample_texts)
    finally:
        EMBEDDING_POOLS.data, PREFIX_POOLS.data = saved
        if had_cache is not None:
            predictor.use_cache = had_cache


__all__ = ["AdviseRun", "AdviseSpec", "Configuration", "configurations", "decide", "promote", "rank",
           "run_halving", "rung_sizes"]
