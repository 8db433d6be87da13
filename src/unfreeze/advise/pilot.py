"""The pilot's plan, made from the budget before any cell runs.

A learning curve needs three sizes (two to fit, one to check), so the pilot is sized to let
its finalists reach at least three. Calibration (``calibrate.py``) times one training step and
one validation batch of each configuration; from those, ``cell_seconds`` projects any cell
(size, validation set, rates searched) and ``plan_pilot`` picks the most thorough pilot whose
projection reaches three sizes within the budget, giving up, in this order and only as far
as needed: a rate searched on every seed past the first rung (the first seed's rate is then
kept for the rung), a smaller first size, the most expensive configurations (the report says
which and why), the third seed. When even the cheapest of these cannot reach three sizes, it
says so in one line and runs the cheapest honest pilot: the cheap configurations and the
cheapest trained one. No torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .cost import human_seconds
from .spec import rung_sizes

# a learning curve needs this many sizes before it predicts anything
MIN_SIZES = 3
# a next rung is started only when its projected time, padded by this factor, fits
SAFETY = 1.15
RATE_SEARCHES = ("every-seed", "first-seed")


@dataclass(frozen=True)
class StepCosts:
    """One configuration's measured seconds, per text: what any of its cells costs follows from them."""

    label: str
    cheap: bool  # leaves the weights alone (features): embeds, then fits a head
    train: float = 0.0  # one training example through a step (forward and backward), per epoch; cheap: the head
    validate: float = 0.0  # one validation text scored after an epoch (above a cached prefix)
    prefix: float = 0.0  # one text through the frozen prefix: once per cell, shared by the rates
    forward: float = 0.0  # one text predicted from scratch (features: embedded)
    fixed: float = 0.0  # a fit's set-up: copies of the model, the head, encoding
    epochs: int = 1  # a searched fit's epoch ceiling (early stopping may end it sooner)
    rates: int = 1  # rates a search tries (1: one fit)

    def as_dict(self) -> dict:
        return asdict(self)


def cell_seconds(c: StepCosts, n: int, validation: int, searched: bool, embedded: int = 0) -> float:
    """A cell's seconds at ``n`` training examples and ``validation`` held-out texts: a searched cell fits once
    per rate, each for up to ``epochs`` epochs of steps and validation; the prefix is computed once; the
    training sample is scored at the end. A cheap cell embeds what the shared pool does not hold yet
    (``embedded`` texts of its seed: the nested smaller sample and the validation set) and fits its head."""
    if c.cheap:
        return c.fixed + c.forward * max(n + validation - embedded, 0) + c.train * n
    rates = c.rates if searched else 1
    return (rates * (c.fixed + c.epochs * (c.train * n + c.validate * validation))
            + c.prefix * (n + validation) + c.forward * n)


def calibrated_seconds(c: StepCosts, row: dict) -> float | None:
    """What calibration says a recorded cell should have taken, with the epochs it did run (None: not done)."""
    if row.get("status") != "done":
        return None
    n = int(row["cell"]["n_train"])
    validation = int((row.get("validation") or {}).get("n") or 0)
    if c.cheap:
        return cell_seconds(c, n, validation, False)
    fit = row.get("fit") or {}
    trials = fit.get("lr_search") or [fit]
    epochs = [int(t.get("epochs_run") or c.epochs) for t in trials]
    return (sum(c.fixed + e * (c.train * n + c.validate * validation) for e in epochs)
            + c.prefix * (n + validation) + c.forward * n)


@dataclass
class PilotPlan:
    """What the pilot will run and what the calibration projects it to cost."""

    sizes: list[int]  # the sizes the projection reaches (the decisions may go further when cells run faster)
    seeds: list[int]
    configurations: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # configuration -> why
    rate_search: str = "every-seed"  # past the first rung
    projected_seconds: list[float] = field(default_factory=list)  # per rung, cumulative
    room_seconds: float = 0.0
    honest: bool = True  # reaches MIN_SIZES sizes
    needed_seconds: float | None = None  # the budget the full pilot needs for MIN_SIZES sizes
    changes: list[str] = field(default_factory=list)  # what was given up, in words

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line: sizes, seeds, rates, what was given up, projected seconds."""
        projected = self.projected_seconds[-1] if self.projected_seconds else 0.0
        text = (f"pilot: sizes {', '.join(map(str, self.sizes))} x seeds {', '.join(map(str, self.seeds))}; "
                f"rates searched on {'every seed' if self.rate_search == 'every-seed' else 'the first seed'} "
                f"past the first rung; {len(self.configurations)} configurations; projected "
                f"{human_seconds(projected)} of {human_seconds(self.room_seconds)} left")
        if self.changes:
            text += "; to fit the budget: " + "; ".join(self.changes)
        return text

    def warning(self, budget: float) -> str | None:
        """The one line said before running when the budget cannot reach three sizes."""
        if self.honest:
            return None
        need = f"about {human_seconds(self.needed_seconds)}" if self.needed_seconds else "a larger budget"
        return (f"A budget of {human_seconds(budget)} cannot reach {MIN_SIZES} training sizes here (the pilot "
                f"reaches {', '.join(map(str, self.sizes))}): nothing will be predicted at the full size; running "
                f"the cheapest pilot ({', '.join(self.configurations)}). A budget of {need} would reach "
                f"{MIN_SIZES} sizes with every configuration.")


def alive_counts(trained: int, eta: int, finalists: int, rungs: int) -> list[int]:
    """Trained configurations at each rung under the halving rule (the best ceil(k / eta), never fewer than
    ``finalists``)."""
    counts = [trained]
    for _ in range(rungs - 1):
        k = counts[-1]
        counts.append(min(k, max(1, finalists, math.ceil(k / eta))))
    return counts


def rung_seconds(costs: list[StepCosts], n: int, seeds: int, validation: int, searched_seeds: int,
                 embedded: int = 0) -> float:
    """Seconds of one rung: every configuration in ``costs`` on ``seeds`` seeds, ``searched_seeds`` of which
    search their rate (``embedded``: texts per seed the embedding pool holds from the rung before)."""
    total = 0.0
    for c in costs:
        searching = min(searched_seeds, seeds) if c.rates > 1 and not c.cheap else 0
        total += (searching * cell_seconds(c, n, validation, True)
                  + (seeds - searching) * cell_seconds(c, n, validation, False, embedded))
    return total


def projected(costs: dict[str, StepCosts], labels: list[str], sizes: list[int], seeds: int, validation: int,
              eta: int, finalists: int, rate_search: str, first_rung_rate: str) -> list[float]:
    """Cumulative seconds to run each of ``sizes`` as a rung. Past the first rung the trained configurations
    still in the race are priced as their average (which ones go on is not known yet)."""
    trained = [costs[label] for label in labels if not costs[label].cheap]
    cheap = [costs[label] for label in labels if costs[label].cheap]
    counts = alive_counts(len(trained), eta, finalists, len(sizes))
    totals, total = [], 0.0
    for i, n in enumerate(sizes):
        shared = (first_rung_rate if i == 0 else rate_search) == "first-seed"
        searched = 1 if shared else seeds
        total += rung_seconds(cheap, n, seeds, validation, searched, sizes[i - 1] + validation if i else 0)
        if trained:
            everyone = rung_seconds(trained, n, seeds, validation, searched)
            total += everyone if i == 0 else everyone * counts[i] / len(trained)
        totals.append(total)
    return totals


def reach(totals: list[float], room: float) -> int:
    """How many rungs fit ``room`` seconds (projections padded by the advisor's safety factor)."""
    return sum(1 for t in totals if t * SAFETY <= room)


def plan_pilot(costs: dict[str, StepCosts], labels: list[str], ladder: list[int], seeds: list[int],
               validation: int, room: float, eta: int, finalists: int, first_rung_rate: str = "first-seed",
               smaller_first: list[int] | None = None, growth: float = 2.0) -> PilotPlan:
    """The most thorough pilot whose projection reaches ``MIN_SIZES`` sizes in ``room`` seconds (see the module).

    ``ladder`` is the sizes from the default first size; ``smaller_first`` lists smaller first sizes that may
    be tried (each with its own ladder, the same growth), largest first (empty: the first size is the user's).
    """
    trained = sorted((label for label in labels if not costs[label].cheap),
                     key=lambda label: -cell_seconds(costs[label], ladder[0], validation, True))
    needed = projected(costs, labels, ladder[:MIN_SIZES], len(seeds), validation, eta, finalists, "every-seed",
                       first_rung_rate)
    needed_seconds = needed[-1] * SAFETY if needed else None

    def option(rate: str, sizes: list[int], kept: list[str], chosen_seeds: list[int], dropped: dict[str, str],
               changes: list[str]) -> PilotPlan:
        totals = projected(costs, kept, sizes, len(chosen_seeds), validation, eta, finalists, rate, first_rung_rate)
        n = reach(totals, room)
        return PilotPlan(sizes[:n], list(chosen_seeds), list(kept), dict(dropped), rate, totals[:n], room,
                         n >= min(MIN_SIZES, len(sizes)), needed_seconds, list(changes))

    # the full pilot; then the first seed's rate kept for each rung, where that reaches further
    full = option("every-seed", ladder, labels, seeds, {}, [])
    shared_note = "the first seed's rate kept for each rung"
    shared = option("first-seed", ladder, labels, seeds, {}, [shared_note])
    best = shared if len(shared.sizes) > len(full.sizes) else full
    if best.honest:
        return best
    # a smaller first size
    sizes, notes = ladder, [shared_note]
    for first in smaller_first or []:
        sizes, notes = rung_sizes(first, ladder[-1], growth), [shared_note, f"first size {first} instead of {ladder[0]}"]
        plan = option("first-seed", sizes, labels, seeds, {}, notes)
        if plan.honest:
            return plan
    # the most expensive trained configurations, one at a time, while one is left
    kept, dropped = list(labels), {}
    for label in trained[:-1]:
        kept.remove(label)
        dropped[label] = (f"a cell of it costs about {human_seconds(cell_seconds(costs[label], sizes[0], validation, True))}"
                          f" at {sizes[0]} examples, the most of those left")
        plan = option("first-seed", sizes, kept, seeds, dropped, notes + [f"left out {', '.join(dropped)}"])
        if plan.honest:
            return plan
    # the cheapest honest pilot: the cheap configurations and the cheapest trained one, on two seeds
    notes = notes + ([f"left out {', '.join(dropped)}"] if dropped else [])
    two = seeds[:2]
    if len(two) < len(seeds):
        notes.append(f"seeds {', '.join(map(str, two))} only")
    return option("first-seed", sizes, kept, two, dropped, notes)


__all__ = ["MIN_SIZES", "SAFETY", "PilotPlan", "StepCosts", "alive_counts", "calibrated_seconds", "cell_seconds",
           "plan_pilot", "projected", "rung_seconds"]
