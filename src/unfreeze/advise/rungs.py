"""The halving rule: configurations, their ranking on a rung, who goes on, and whether the next size fits.

``decide`` reads a rung's rows and returns the rung's decision (a row of the results store): the
ranking by mean validation score over the seeds (paired: every configuration ran on the same
samples), the best ``ceil(k / eta)`` promoted (never fewer than ``finalists``), and the next size
if the promoted can reach it within the budget, projected from this rung's recorded cell times. Until
the finalists have a learning curve's sizes, every configuration within the rung's noise of the leader
(``within_noise``) may go on, and the budget decides how many: the cheapest of them first, as many as can
reach the curve's sizes; the decision names the tied ones that went out (the leader among them, if it did).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..sweep.grid import Cell, SweepSpec, expand
from .cost import cell_seconds, projected_cell_seconds, searched_rate
from .pilot import MIN_SIZES, SAFETY
from .spec import AdviseSpec

# where the next size of the ladder does not fit, a size between is run if it is at least this much larger
PARTIAL_STEP = 1.25
# a gap to the leader of at most this many standard errors is within the rung's noise
NOISE_ERRORS = 2.0


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


def rank(rows_by_config: dict[str, list[dict]], metric: str = "accuracy") -> list[dict]:
    """Configurations by mean validation score (``metric``, higher is better) over their seeds, then lower
    validation loss, then name.

    Every configuration of a rung ran on the same seeds' samples, so the means compare paired
    scores; a failed cell counts as a score of 0. Each entry's ``val_score`` is that mean (decisions of
    earlier releases call it ``val_accuracy``: :func:`ranked_score` reads either).
    """
    ranking = []
    for label, rows in rows_by_config.items():
        scores = [cell_score(r, metric) for r in rows]
        losses = [
            ((r.get("validation") or {}).get("loss") or math.inf) if r["status"] == "done" else math.inf for r in rows
        ]
        ranking.append(
            {
                "configuration": label,
                "val_score": sum(scores) / max(len(scores), 1),
                "val_loss": sum(losses) / max(len(losses), 1),
                "seeds": len(rows),
                "failed": sum(r["status"] != "done" for r in rows),
            }
        )
    ranking.sort(key=lambda r: (-r["val_score"], r["val_loss"], r["configuration"]))
    return ranking


def cell_score(row: dict, metric: str) -> float:
    """A cell's validation ``metric``; a failed cell (or one without the metric) scores 0."""
    return ((row.get("validation") or {}).get(metric) or 0.0) if row["status"] == "done" else 0.0


def ranked_score(entry: dict) -> float:
    """A ranking entry's mean validation score (``val_accuracy`` in the decisions of earlier releases)."""
    return entry["val_score"] if "val_score" in entry else entry["val_accuracy"]


def within_noise(ranking: list[dict], rows_by_config: dict[str, list[dict]], metric: str = "accuracy") -> list[str]:
    """The configurations whose paired gap to the leader is within two standard errors of it, the leader first.

    The gap is the mean over seeds of the leader's score minus the configuration's on the same seed's
    sample; its standard error pools the spread of every configuration's per-seed gaps (one rung's seeds
    are few: three give two degrees of freedom each). With one seed there is no spread to read, and the
    list holds the leader alone."""
    if not ranking:
        return []

    def by_seed(label: str) -> dict[int, float]:
        return {r["cell"]["seed"]: cell_score(r, metric) for r in rows_by_config[label]}

    leader = ranking[0]["configuration"]
    top = by_seed(leader)
    gaps: dict[str, list[float]] = {}
    for entry in ranking[1:]:
        own = by_seed(entry["configuration"])
        gaps[entry["configuration"]] = [top[s] - own[s] for s in sorted(set(top) & set(own))]
    squares = sum(sum((g - sum(gs) / len(gs)) ** 2 for g in gs) for gs in gaps.values() if len(gs) > 1)
    freedom = sum(len(gs) - 1 for gs in gaps.values() if len(gs) > 1)
    if freedom == 0:
        return [leader]
    spread = math.sqrt(squares / freedom)
    return [leader] + [
        label for label, gs in gaps.items() if gs and sum(gs) / len(gs) <= NOISE_ERRORS * spread / math.sqrt(len(gs))
    ]


def promote(ranking: list[dict], eta: int, finalists: int = 1) -> tuple[list[str], list[str]]:
    """The best ceil(k / eta), and never fewer than ``finalists`` (nor than one), go on; the others stop."""
    keep = max(1, finalists, math.ceil(len(ranking) / eta))
    names = [r["configuration"] for r in ranking]
    return names[:keep], names[keep:]


def decide(
    spec: AdviseSpec,
    plan_id: str,
    i: int,
    sizes: list[int],
    n: int,
    alive: list[str],
    cheap: list[str],
    by_label: dict,
    plan_rows: dict,
    key_of,
    overhead: float,
    rate_search: str = "every-seed",
    validation_for: Callable[[int], int] | None = None,
    padding: dict[str, dict] | None = None,
) -> dict:
    """The rung's decision from its rows: ranking, who goes on, whether the next size fits the budget, and
    whether its later seeds search their rate (``rate_search`` "every-seed", when that still lets the
    finalists reach ``MIN_SIZES`` sizes) or train at the first seed's ("first-seed"), or (past a curve's sizes,
    where only that reaches a larger size) every seed trains at the rate this rung's first seed chose ("kept";
    a ``rate_search`` of "kept": this rung did so). ``validation_for(n)``: the
    validation texts of a rung of n examples, where they grow with the rung. ``padding``: each configuration's
    padded tokens per text by the texts in a batch (``StepCosts.padding``), which scale its projected cells."""

    def rows_of(label: str, size: int) -> list[dict]:
        return [
            plan_rows[key_of(by_label[label].cell(size, s))]
            for s in spec.seeds
            if key_of(by_label[label].cell(size, s)) in plan_rows
        ]

    rows_now = {label: rows_of(label, n) for label in alive}
    ranking = rank(rows_now, spec.ranking_metric())
    promoted, eliminated = promote(ranking, spec.eta, spec.finalists) if ranking else ([], [])
    tied = within_noise(ranking, rows_now, spec.ranking_metric())
    spent = overhead + sum(cell_seconds(r) for r in plan_rows.values())
    room = spec.budget - reserve_seconds(spec.budget) - spent

    def seconds_at(label: str, target: int, mode: str) -> float:
        """A configuration's cells at ``target``, projected from this rung's (see cost.projected_cell_seconds)."""
        rows = rows_of(label, n)
        searched = [r for r in rows if searched_rate(r)]
        once = [r for r in rows if not searched_rate(r)]
        texts = validation_for(target) if validation_for is not None else None

        def at(r: dict) -> float:
            return projected_cell_seconds(r, target, texts, (padding or {}).get(label))

        if not searched:
            return sum(at(r) for r in rows)
        search = sum(at(r) for r in searched) / len(searched)
        single = (
            sum(at(r) for r in once) / len(once)
            if once
            else search / max(len((searched[0].get("fit") or {}).get("lr_search") or [1]), 1)
        )
        if mode == "kept":  # every seed trains at the rate this rung's first seed chose
            return len(rows) * single
        searching = 1 if mode == "first-seed" else len(rows)
        return searching * search + (len(rows) - searching) * single

    def projected_to(targets: list[int], mode: str, going: list[str] | None = None) -> float:
        labels = (promoted if going is None else going) + cheap
        return SAFETY * sum(seconds_at(label, t, mode) for t in targets for label in labels)

    def largest_between(low: int, high: int, going: list[str], mode: str) -> int | None:
        """The largest size in [low, high] whose rung of ``going`` fits the room (None: not even ``low``)."""
        if low > high or projected_to([low], mode, going) > room:
            return None
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if projected_to([middle], mode, going) <= room else (low, middle - 1)
        return low

    ahead = [size for size in sizes if size > n]
    needed = ahead[: max(1, MIN_SIZES - (i + 1))]  # the sizes still to reach for a curve (or the next one)
    # the rate modes the next rung may take, the most thorough first; once a rung kept its rate, the rungs after do
    # too (this rung's cells searched nothing to project a search from)
    modes = {"every-seed": ["every-seed", "first-seed"], "first-seed": ["first-seed"]}.get(rate_search, [])
    curved = i + 1 >= MIN_SIZES  # the finalists have a curve's sizes: what is left of the budget extends it
    if curved:
        modes.append("kept")  # past a curve's sizes no search: the rate this rung's first seed chose
    next_n, mode, projected, reason = None, rate_search, 0.0, "largest size"
    if ahead and not curved:
        # before a learning curve's sizes, a ranking within noise is a coin's toss: any of those within the rung's
        # noise of the leader (the leader too) may be the best, so as many of them go on as the budget can take to
        # a curve's sizes, the cheapest first (ranking order among equal costs), then the promoted ones clearly
        # behind, in ranking order; at least the cheapest of the tied goes on (a curve for one beats two
        # configurations measured at two sizes)
        def on_its_own(label: str) -> float:
            return projected_to(needed, modes[-1], [label])

        level = sorted(tied, key=on_its_own)  # tied is in ranking order: sorted() keeps it among equal costs
        behind = [label for label in promoted if label not in tied]
        going: list[str] = []
        for label in level + behind:
            if projected_to(needed, modes[-1], [*going, label]) <= room:
                going.append(label)
        going = going or level[:1]
        promoted = [e["configuration"] for e in ranking if e["configuration"] in going]
        eliminated = [e["configuration"] for e in ranking if e["configuration"] not in going]
    if ahead and promoted:
        choice = next(((m, projected_to(needed, m)) for m in modes if projected_to(needed, m) <= room), None) or next(
            ((m, projected_to(ahead[:1], m)) for m in modes if projected_to(ahead[:1], m) <= room), None
        )
        # the next size does not fit: the largest size on the way that does (at least a quarter above this one: a
        # curve point that close adds little), so that the budget is spent on a larger size; past a curve's sizes,
        # failing that, the leader alone goes on (its curve gains a size; the others' comparison ends here)
        low = math.ceil(PARTIAL_STEP * n)
        between = None if choice else largest_between(low, ahead[0] - 1, promoted, modes[-1])
        if choice is not None:
            mode, projected = choice
            next_n = ahead[0]
            reason = "finalists" if len(promoted) <= spec.finalists else "promoted"
        elif between is not None:
            mode, next_n, projected = modes[-1], between, projected_to([between], modes[-1])
            reason = "the largest size the budget allows"
        elif curved and len(promoted) > 1:
            leader = promoted[:1]
            alone = next(((m, ahead[0]) for m in modes if projected_to(ahead[:1], m, leader) <= room), None)
            if alone is None:
                size = largest_between(low, ahead[0] - 1, leader, modes[-1])
                alone = (modes[-1], size) if size is not None else None
            if alone is not None:
                eliminated = [e["configuration"] for e in ranking if e["configuration"] not in leader]
                promoted = leader
                mode, next_n = alone
                projected = projected_to([next_n], mode)
                reason = "the leader alone, as far as the budget allows"
            else:
                mode, reason, projected = modes[-1], "budget", projected_to(ahead[:1], modes[-1])
        else:
            mode, reason, projected = modes[-1], "budget", projected_to(ahead[:1], modes[-1])
    return {
        "kind": "advise-rung",
        "key": f"advise-rung:{plan_id}:{i}",
        "plan_id": plan_id,
        "rung": i,
        "n_train": n,
        "ranking": ranking,
        "promoted": promoted,
        "eliminated": eliminated,
        # the configurations that went out though within the rung's noise of the leader (the plan says so)
        "within_noise": [label for label in tied if label in eliminated],
        "cheap": cheap,
        "next_n_train": next_n,
        "rate_search": mode,
        "reason": reason,
        "spent_seconds": spent,
        "projected_seconds": projected,
        "finished": time.time(),
    }


def reserve_seconds(budget: float) -> float:
    """Kept back from the budget for the plan, the curves and the report."""
    return min(max(3.0, 0.03 * budget), 30.0)


__all__ = [
    "NOISE_ERRORS",
    "PARTIAL_STEP",
    "Configuration",
    "configurations",
    "decide",
    "promote",
    "rank",
    "ranked_score",
    "reserve_seconds",
    "within_noise",
]
