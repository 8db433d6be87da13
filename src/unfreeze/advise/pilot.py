"""The pilot's plan, made from the budget before any cell runs.

A learning curve needs three sizes (two to fit, one to check), so the pilot is sized to let
its finalists reach at least three. Calibration (``calibrate.py``) times one training step and
one validation batch of each configuration; from those, ``cell_seconds`` projects any cell
(size, validation set, rates searched) and ``plan_pilot`` picks the most thorough pilot whose
projection reaches three sizes within the budget, giving up, in this order and only as far
as needed: a rate searched on every seed past the first rung (the first seed's rate is then
kept for the rung), the whole validation set at small rungs (a nested subset of twice the
rung's size), a smaller first size, the third seed, the most expensive configurations (the
plan says which and why). When even the cheapest of these cannot reach three sizes, it says
so in one line and runs the cheapest honest pilot: the cheap configurations and the cheapest
trained one, on two seeds. Each cost per text is scaled by the padded tokens per text of the
batches a cell runs over those of the batches calibration timed (``padding``). No torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .cost import human_seconds
from .padding import TABLE_OF, padding_at
from .spec import rung_sizes

# a learning curve needs this many sizes before it predicts anything
MIN_SIZES = 3
# a next rung is started only when its projected time, padded by this factor, fits
SAFETY = 1.15
# where the budget is short, a rung of n examples validates on this many times n texts (a nested subset)
VALIDATION_GROWTH = 2.0
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
    # padded tokens per text of the batches calibration timed, per cost above (0: not recorded, as in plans of
    # earlier releases: the costs are not rescaled)
    train_tokens: float = 0.0
    validate_tokens: float = 0.0
    prefix_tokens: float = 0.0
    forward_tokens: float = 0.0
    # padded tokens per text of a cell's batches by their number of texts, simulated from the pool's token lengths
    # (``padding.padding_tables``: {"train" | "validate" | "sorted": [[texts, tokens per text], ...]})
    padding: dict = field(default_factory=dict, hash=False)

    def as_dict(self) -> dict:
        return asdict(self)

    def per_text(self, cost: str, texts: float) -> float:
        """Seconds per text of ``cost`` ("train", "validate", "prefix" or "forward") in a cell's batches over
        ``texts`` texts: the calibrated seconds times the padded tokens per text of those batches over those of the
        batches calibration timed (a batch costs about its texts times its longest text)."""
        seconds, timed = getattr(self, cost), getattr(self, f"{cost}_tokens")
        table = self.padding.get(TABLE_OF[cost])
        if not seconds or not timed or not table or texts <= 0:
            return seconds
        return seconds * padding_at(table, texts) / timed


def cell_seconds(c: StepCosts, n: int, validation: int, searched: bool, embedded: int = 0) -> float:
    """A cell's seconds at ``n`` training examples and ``validation`` held-out texts: a searched cell fits once
    per rate, each for up to ``epochs`` epochs of steps and validation; the prefix is computed once; the
    training sample is scored at the end. A cheap cell embeds what the shared pool does not hold yet
    (``embedded`` texts of its seed: the nested smaller sample and the validation set) and fits its head."""
    if c.cheap:
        fresh = max(n + validation - embedded, 0)
        return c.fixed + c.per_text("forward", fresh) * fresh + c.train * n
    search = searched and c.rates > 1
    return fits_seconds(c, n, validation, [c.epochs] * (c.rates if search else 1), search)


def fits_seconds(c: StepCosts, n: int, validation: int, epochs: list[int], searched: bool = False) -> float:
    """A trained cell's seconds: one fit per entry of ``epochs`` (that many epochs of steps and validation; a
    search's fits score the validation set once more, to compare the rates: ``rate_search.search_rates``), the
    prefix once (of the training sample and of the validation set, each run longest first), the training sample
    scored at the end."""
    steps, scoring = c.per_text("train", n) * n, c.per_text("validate", validation) * validation
    return (
        sum(c.fixed + e * (steps + scoring) + (scoring if searched else 0.0) for e in epochs)
        + c.per_text("prefix", n) * n
        + c.per_text("prefix", validation) * validation
        + c.per_text("forward", n) * n
    )


def calibrated_seconds(c: StepCosts, row: dict) -> float | None:
    """What calibration says a recorded cell should have taken, with the epochs it did run (None: not done)."""
    if row.get("status") != "done":
        return None
    n = int(row["cell"]["n_train"])
    validation = int((row.get("validation") or {}).get("n") or 0)
    if c.cheap:
        return cell_seconds(c, n, validation, False)
    fit = row.get("fit") or {}
    trials = fit.get("lr_search") or []
    return fits_seconds(c, n, validation, [int(t.get("epochs_run") or c.epochs) for t in trials or [fit]], bool(trials))


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
    validation_growth: float = 0.0  # > 0: a rung of n validates on this many times n texts (see validation_at)
    validation_floor: int = 0
    ladder: list[int] = field(default_factory=list)  # every size from the first, to all the data

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line: sizes, seeds, rates, what was given up, projected seconds."""
        projected = self.projected_seconds[-1] if self.projected_seconds else 0.0
        text = (
            f"pilot: sizes {', '.join(map(str, self.sizes))} x seeds {', '.join(map(str, self.seeds))}; "
            f"rates searched on {'every seed' if self.rate_search == 'every-seed' else 'the first seed'} "
            f"past the first rung; {len(self.configurations)} configurations; projected "
            f"{human_seconds(projected)} of {human_seconds(self.room_seconds)} left"
        )
        if self.changes:
            text += "; to fit the budget: " + "; ".join(self.changes)
        return text

    def warning(self, budget: float) -> str | None:
        """The one line said before running when the budget cannot reach three sizes."""
        if self.honest:
            return None
        need = f"about {human_seconds(self.needed_seconds)}" if self.needed_seconds else "a larger budget"
        reached = (
            f"the pilot reaches {', '.join(map(str, self.sizes))}"
            if self.sizes
            else "not even the first size's cells fit"
        )
        return (
            f"A budget of {human_seconds(budget)} cannot reach {MIN_SIZES} training sizes here ({reached}): "
            f"nothing will be predicted at the full size; running "
            f"the cheapest pilot ({', '.join(self.configurations)}). A budget of {need} would reach "
            f"{MIN_SIZES} sizes with every configuration."
        )


def alive_counts(trained: int, eta: int, finalists: int, rungs: int) -> list[int]:
    """Trained configurations at each rung under the halving rule (the best ceil(k / eta), never fewer than
    ``finalists``)."""
    counts = [trained]
    for _ in range(rungs - 1):
        k = counts[-1]
        counts.append(min(k, max(1, finalists, math.ceil(k / eta))))
    return counts


def rung_seconds(
    costs: list[StepCosts], n: int, seeds: int, validation: int, searched_seeds: int, embedded: int = 0
) -> float:
    """Seconds of one rung: every configuration in ``costs`` on ``seeds`` seeds, ``searched_seeds`` of which
    search their rate (``embedded``: texts per seed the embedding pool holds from the rung before)."""
    total = 0.0
    for c in costs:
        searching = min(searched_seeds, seeds) if c.rates > 1 and not c.cheap else 0
        total += searching * cell_seconds(c, n, validation, True) + (seeds - searching) * cell_seconds(
            c, n, validation, False, embedded
        )
    return total


def validation_at(n: int, full: int, growth: float, floor: int) -> int:
    """The validation texts of a rung of ``n`` examples: all ``full`` of them, or (``growth`` > 0) ``growth``
    times ``n`` but at least ``floor``, never more than ``full``: small rungs score on a nested subset."""
    if not growth:
        return full
    return min(full, max(floor, math.ceil(growth * n)))


def projected(
    costs: dict[str, StepCosts],
    labels: list[str],
    sizes: list[int],
    seeds: int,
    validation: int | list[int],
    eta: int,
    finalists: int,
    rate_search: str,
    first_rung_rate: str,
) -> list[float]:
    """Cumulative seconds to run each of ``sizes`` as a rung (``validation``: texts per rung, or one number for
    all). Past the first rung the trained configurations still in the race are priced as their average
    (which ones go on is not known yet)."""
    trained = [costs[label] for label in labels if not costs[label].cheap]
    cheap = [costs[label] for label in labels if costs[label].cheap]
    counts = alive_counts(len(trained), eta, finalists, len(sizes))
    texts = validation if isinstance(validation, list) else [validation] * len(sizes)
    totals, total = [], 0.0
    for i, n in enumerate(sizes):
        shared = (first_rung_rate if i == 0 else rate_search) == "first-seed"
        searched = 1 if shared else seeds
        v = texts[i]
        total += rung_seconds(cheap, n, seeds, v, searched, sizes[i - 1] + texts[i - 1] if i else 0)
        if trained:
            everyone = rung_seconds(trained, n, seeds, v, searched)
            total += everyone if i == 0 else everyone * counts[i] / len(trained)
        totals.append(total)
    return totals


def reach(totals: list[float], room: float) -> int:
    """How many rungs fit ``room`` seconds (projections padded by the advisor's safety factor)."""
    return sum(1 for t in totals if t * SAFETY <= room)


def plan_pilot(
    costs: dict[str, StepCosts],
    labels: list[str],
    ladder: list[int],
    seeds: list[int],
    validation: int,
    room: float,
    eta: int,
    finalists: int,
    first_rung_rate: str = "first-seed",
    smaller_first: list[int] | None = None,
    growth: float = 2.0,
    validation_floor: int = 16,
) -> PilotPlan:
    """The most thorough pilot whose projection reaches ``MIN_SIZES`` sizes in ``room`` seconds (see the module).

    ``ladder`` is the sizes from the default first size; ``smaller_first`` lists smaller first sizes that may
    be tried (each with its own ladder, the same growth), largest first (empty: the first size is the user's).
    ``validation_floor``: the fewest validation texts a small rung may score on.
    """
    trained = sorted(
        (label for label in labels if not costs[label].cheap),
        key=lambda label: -cell_seconds(costs[label], ladder[0], validation, True),
    )
    needed = projected(
        costs, labels, ladder[:MIN_SIZES], len(seeds), validation, eta, finalists, "every-seed", first_rung_rate
    )
    needed_seconds = needed[-1] * SAFETY if needed else None

    def option(
        rate: str,
        sizes: list[int],
        kept: list[str],
        chosen_seeds: list[int],
        dropped: dict[str, str],
        changes: list[str],
        grow: float = 0.0,
    ) -> PilotPlan:
        texts = [validation_at(n, validation, grow, validation_floor) for n in sizes]
        totals = projected(costs, kept, sizes, len(chosen_seeds), texts, eta, finalists, rate, first_rung_rate)
        n = reach(totals, room)
        return PilotPlan(
            sizes[:n],
            list(chosen_seeds),
            list(kept),
            dict(dropped),
            rate,
            totals[:n],
            room,
            n >= min(MIN_SIZES, len(sizes)),
            needed_seconds,
            list(changes),
            grow,
            validation_floor if grow else 0,
            list(sizes),
        )

    # the full pilot (past three sizes the decisions share the rate where only that reaches a next size);
    # then the first seed's rate kept for each rung
    full = option("every-seed", ladder, labels, seeds, {}, [])
    if full.honest:
        return full
    notes = ["the first seed's rate kept for each rung"]
    plan = option("first-seed", ladder, labels, seeds, {}, notes)
    if plan.honest:
        return plan
    # small rungs validate on a nested subset of the validation set (twice their size)
    notes = [*notes, f"small rungs validate on {VALIDATION_GROWTH:g}x their size (at least {validation_floor})"]
    plan = option("first-seed", ladder, labels, seeds, {}, notes, VALIDATION_GROWTH)
    if plan.honest:
        return plan
    # a smaller first size
    sizes = ladder
    for first in smaller_first or []:
        sizes = rung_sizes(first, ladder[-1], growth)
        plan = option(
            "first-seed",
            sizes,
            labels,
            seeds,
            {},
            [*notes, f"first size {first} instead of {ladder[0]}"],
            VALIDATION_GROWTH,
        )
        if plan.honest:
            return plan
    if sizes is not ladder:
        notes = [*notes, f"first size {sizes[0]} instead of {ladder[0]}"]
    # two seeds (two still give an interval)
    chosen = seeds[:2]
    if len(chosen) < len(seeds):
        notes = [*notes, f"seeds {', '.join(map(str, chosen))} only"]
        plan = option("first-seed", sizes, labels, chosen, {}, notes, VALIDATION_GROWTH)
        if plan.honest:
            return plan
    # the most expensive trained configurations, one at a time, while one is left; if even that falls short,
    # the cheapest honest pilot: the cheap configurations and the cheapest trained one
    kept, dropped = list(labels), {}
    for label in trained[:-1]:
        kept.remove(label)
        dropped[label] = (
            f"a cell of it costs about "
            f"{human_seconds(cell_seconds(costs[label], sizes[0], validation, True))} at {sizes[0]} "
            "examples, the most of those left"
        )
        plan = option(
            "first-seed", sizes, kept, chosen, dropped, [*notes, f"left out {', '.join(dropped)}"], VALIDATION_GROWTH
        )
        if plan.honest:
            return plan
    return plan


__all__ = [
    "MIN_SIZES",
    "SAFETY",
    "VALIDATION_GROWTH",
    "PilotPlan",
    "StepCosts",
    "alive_counts",
    "calibrated_seconds",
    "cell_seconds",
    "plan_pilot",
    "projected",
    "rung_seconds",
    "validation_at",
]
