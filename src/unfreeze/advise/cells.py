"""A rung's cells: the settings each trains with (its key), and running them under the clock guard.

``CellSettings`` gives each cell its rung's validation texts and, where the rung shares the rate,
the later seeds the rate the first seed's search chose (past a curve's sizes, where only that reaches a
larger size, every seed the rate the rung before's first seed chose). ``Rungs`` runs a rung seed by seed,
skipping what the store has, stopping before a cell projected to end past the budget, and
cutting a cell still running at the deadline (then not recorded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..machine.deadline import DeadlineReached
from ..machine.deadline import deadline as time_limit
from ..sweep.grid import Cell, SweepSpec
from ..sweep.store import ResultsStore
from .cost import cell_seconds, projected_cell_seconds, searched_rate
from .pilot import SAFETY, StepCosts, calibrated_seconds, validation_at
from .pilot import cell_seconds as calibrated_cell
from .spec import AdviseSpec

if TYPE_CHECKING:
    from .halving import Pilot


class CellSettings:
    """The settings each cell trains with, and so its key: its rung's validation texts, and where its rung shares
    the rate, the later seeds at the rate the first seed's search chose (``first_rung_rate`` at the first rung, a
    decision's ``rate_search`` after it)."""

    def __init__(self, spec: AdviseSpec, pilot: Pilot, decisions: dict[int, dict]):
        self.spec, self.pilot, self.decisions = spec, pilot, decisions
        self.by_label = {c.label: c for c in pilot.configs}
        self.rung_of: dict[int, int] = {}  # size -> rung, as the decisions reach them
        self.rows: dict[str, dict] = {}  # key -> row, of the cells this plan ran or found
        self._built: dict[tuple, SweepSpec] = {}  # (validation texts, rate, epochs) -> settings, built once

    def rate_mode(self, n: int) -> str:
        """How the rung of size ``n`` picks its rates: "every-seed" (each seed searches), "first-seed" (the later
        seeds train at the rate the first seed's search chose), "kept" (every seed at the rate the rung before's
        first seed chose: past a curve's sizes, where only that reaches a larger size). Without a search or with
        one seed (first-seed), every cell searches as the sweep's settings say."""
        rung = self.rung_of[n]
        mode = (
            self.spec.first_rung_rate
            if rung == 0
            else (self.decisions.get(rung - 1) or {}).get("rate_search", "every-seed")
        )
        if not self.pilot.sweep.searches_rates or (mode == "first-seed" and len(self.pilot.seeds) < 2):
            return "every-seed"
        return mode

    def shares_rate(self, n: int) -> bool:
        """Whether some cells of the rung of size ``n`` train at a rate another cell's search chose."""
        return self.rate_mode(n) != "every-seed"

    def searches(self, n: int, seed: int) -> bool:
        """Whether a trained cell at ``n`` on ``seed`` searches its rate."""
        mode = self.rate_mode(n)
        return mode == "every-seed" or (mode == "first-seed" and seed == self.pilot.seeds[0])

    def validation_for(self, n: int) -> int:
        plan = self.pilot.plan
        return validation_at(n, self.pilot.held, plan.validation_growth, plan.validation_floor)

    def _settings(self, used: int, rate: float | None = None, epochs: int | None = None) -> SweepSpec:
        if (used, rate, epochs) not in self._built:
            sweep = self.pilot.sweep
            base = replace(sweep, validation_used=used) if used < self.pilot.held else sweep
            self._built[used, rate, epochs] = base if rate is None else replace(base, learning_rate=rate, epochs=epochs)
        return self._built[used, rate, epochs]

    def of(self, cell: Cell) -> SweepSpec:
        used = self.validation_for(cell.n_train)
        if self.by_label[cell.label].cheap or self.searches(cell.n_train, cell.seed):
            return self._settings(used)
        size = cell.n_train
        if self.rate_mode(size) == "kept":
            rung = self.rung_of[size]
            size = next(m for m, r in self.rung_of.items() if r == rung - 1)
        first = self.rows.get(self.key(self.by_label[cell.label].cell(size, self.pilot.seeds[0]))) or {}
        rate = (first.get("fit") or {}).get("learning_rate") if first.get("status") == "done" else None
        if rate is None:
            return self._settings(used)
        # the search's training at the chosen rate: its epoch ceiling (early stopping on the validation set)
        return self._settings(used, float(rate), self.pilot.sweep.epochs or cell.make_strategy().epochs_for(True))

    def key(self, cell: Cell) -> str:
        return cell.key(
            self.pilot.data.fingerprint, self.pilot.model_fingerprint, self.of(cell).cell_settings(cell.strategy)
        )

    def rows_at(self, label: str, n: int) -> list[dict]:
        """A configuration's rows at size ``n``, one per seed that has one."""
        keys = [self.key(self.by_label[label].cell(n, s)) for s in self.pilot.seeds]
        return [self.rows[k] for k in keys if k in self.rows]


class Rungs:
    """Runs a rung's cells, seed by seed, each unless the store has it, the clock guard stops it, or the
    deadline cuts it (then not recorded)."""

    def __init__(
        self,
        spec: AdviseSpec,
        pilot: Pilot,
        settings: CellSettings,
        store: ResultsStore,
        plan_id: str,
        deadline: float,
        device: str | None,
        log: Callable[[str], None] | None,
    ):
        self.spec, self.pilot, self.settings, self.store = spec, pilot, settings, store
        self.plan_id, self.deadline, self.device, self.log = plan_id, deadline, device, log
        self.latest_rows: dict[str, list[dict]] = {}  # each configuration's cells at its latest size: the guard's
        self.metric = spec.ranking_metric()

    def _timing(self, clf, train, record) -> None:
        from ..sweep.plan import prediction_seconds_per_text

        if record["cell"]["seed"] == self.pilot.seeds[0]:
            record["predict_seconds_per_text"] = prediction_seconds_per_text(clf, train.inputs[:32])

    def run(self, i: int, n: int, labels: list[str], stopped_before: bool) -> tuple[bool, bool]:
        """Run rung ``i`` at size ``n``; (halted, cut by the deadline)."""
        from ..sweep.plan import run_cell

        settings, seeds, costs = self.settings, self.pilot.seeds, self.pilot.costs
        latest = self.store.latest()
        halted = cut = False
        for seed in seeds:
            for label in labels:
                cell = settings.by_label[label].cell(n, seed)
                key = settings.key(cell)
                if key in latest:
                    settings.rows[key] = latest[key]
                    continue
                expected = SAFETY * expected_seconds(
                    self.latest_rows.get(label, []),
                    costs.get(label),
                    n,
                    settings.validation_for(n),
                    settings.searches(n, seed),
                )
                if stopped_before or time.monotonic() + expected > self.deadline:
                    halted = True
                    break
                if self.log:
                    self.log(f"rung {i} (n={n}): {cell.describe()}")
                try:
                    # the projection cannot see a machine that slows down: the cell itself stops within a batch of
                    # the deadline, and is not recorded
                    with time_limit(self.deadline):
                        record = run_cell(
                            settings.of(cell),
                            self.pilot.data,
                            cell,
                            key,
                            self.device,
                            use_cache=True,
                            score_test=False,
                            after_fit=self._timing,
                        )
                except DeadlineReached:
                    halted = cut = True
                    break
                record["advise"] = {"plan_id": self.plan_id, "rung": i}
                record.update({"model": self.spec.model, "data": self.spec.data})
                self.store.append(record)
                settings.rows[key] = record
                if self.log:
                    self.log(f"  {cell_line(record, costs.get(label), self.metric)}")
                same_size = [r for r in self.latest_rows.get(label, []) if r["cell"]["n_train"] == n]
                self.latest_rows[label] = [*same_size, record]
            if halted:
                break
        for label in labels:  # the clock guard's basis for the next rung: every seed's cell at this size
            rows = settings.rows_at(label, n)
            if rows:
                self.latest_rows[label] = rows
        return halted, cut


def expected_seconds(rows: list[dict], costs: StepCosts | None, n: int, validation: int, searches: bool) -> float:
    """What a cell at ``n`` should take, for the clock guard: from the configuration's cells at the size before
    that did as this one will (search their rate, or fit once at a shared one); its first cell, from the
    calibration (the padding of its batches, ``StepCosts.padding``, scales both)."""
    if not rows:
        return calibrated_cell(costs, n, validation, searches) if costs is not None else 0.0
    padding = costs.padding if costs is not None else None
    alike = [r for r in rows if searched_rate(r) == searches]
    if alike:
        return max(projected_cell_seconds(r, n, validation, padding) for r in alike)
    if searches:  # the cells before fitted once: a search fits once per rate
        return max(projected_cell_seconds(r, n, validation, padding) for r in rows) * (costs.rates if costs else 3)
    # the cells before searched: one fit is one of their trials
    return max(
        projected_cell_seconds(r, n, validation, padding) / max(len((r.get("fit") or {}).get("lr_search") or [1]), 1)
        for r in rows
    )


def cell_line(record: dict, costs: StepCosts | None, metric: str = "accuracy") -> str:
    """One progress line for a finished cell: its validation ``metric``, its seconds and what calibration
    projected."""
    if record["status"] != "done":
        return f"failed: {record['error']}"
    score = (record.get("validation") or {}).get(metric)
    expected = calibrated_seconds(costs, record) if costs else None
    return (f"validation {metric} {score:.3f}, " if score is not None else "") + (
        f"{cell_seconds(record):.1f} s" + (f" (calibration: {expected:.1f} s)" if expected else "")
    )


__all__ = ["CellSettings", "Rungs", "cell_line", "expected_seconds"]
