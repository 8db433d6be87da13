"""The advisor's answer: a ranked plan at the full data size, the recommendation and why, as text, JSON, HTML.

For each configuration: its validation scores over the pilot's sizes, a learning curve (the
form chosen by back-testing over all configurations) extrapolated to the full labelled size
N, 2N and 4N with a bootstrap interval over seeds, the size needed for a target score, and
its predicted costs at N. The recommendation is the cheapest configuration (predicted fit
seconds at N) among those that reached the pilot's largest size (the finalists, and the cheap
ones, which run at every size) whose validation score there is not shown worse than the
best's (the paired bootstrap interval of the measured difference reaches ``-tolerance``) and
is no more than ``max_loss`` below it. No torch.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..metrics import score_range
from ..report.stats import PairedDifference, paired_difference
from . import curves as lc
from .cost import cost_at, human_seconds, projected_cell_seconds, searched_rate
from .halving import AdviseRun
from .pilot import MIN_SIZES, SAFETY
from .rungs import reserve_seconds

# the last measured score stands for the full size only when that is at most this much larger
EXTRAPOLATES = 1.25
# a score is predicted only where the curve's error bound there (its back-test error, never below the noise of the
# means it was checked on, grown with the distance) is within this: a forecast that may be further off than that
# is not printed as one
PREDICTION_TOLERANCE = 0.03


def extrapolation_steps(sizes: list[int], target: int) -> float:
    """How far ``target`` lies beyond the largest size measured, in steps of the back-test (the largest size over
    the one before it, on a log scale); at least 1."""
    largest, before = sizes[-1], sizes[-2]
    if target <= largest:
        return 1.0
    return max(1.0, math.log(target / largest) / math.log(largest / before))


def validation_scores(rows: list[dict], metric: str = "accuracy") -> dict[str, dict[int, dict[int, float]]]:
    """{configuration: {n: {seed: validation score}}} of ``metric`` from done rows."""
    out: dict[str, dict[int, dict[int, float]]] = {}
    for r in rows:
        score = (r.get("validation") or {}).get(metric)
        if r.get("status") != "done" or score is None:
            continue
        cell = r["cell"]
        out.setdefault(cell["label"], {}).setdefault(int(cell["n_train"]), {})[int(cell["seed"])] = float(score)
    return out


def make_plan(run: AdviseRun) -> dict:
    """The plan as a JSON-able dict (see the module's docstring)."""
    spec, full = run.spec, run.full_size
    metric = spec.ranking_metric()
    scores = validation_scores(run.rows, metric)
    at = [full, 2 * full, 4 * full]
    # back-test on the configurations with three sizes or more (two to fit, one held out); else two
    testable = {k: v for k, v in scores.items() if len(v) >= 3} or {k: v for k, v in scores.items() if len(v) >= 2}
    backtests = lc.backtest(testable, metric=metric)
    # a back-test error below the noise of the means it was checked against is luck, not a closer curve
    noise = lc.heldout_noise(testable)
    most = max((len(v) for v in scores.values()), default=0)
    form = lc.choose_form(backtests, max(most - 1, 1))
    eliminated_at: dict[str, int] = {}
    tied_at: dict[str, int] = {}  # went out within the rung's noise of its leader (decisions since the tie rule)
    for d in run.decisions:
        for label in d["eliminated"]:
            eliminated_at.setdefault(label, d["n_train"])
        for label in d.get("within_noise") or []:
            tied_at.setdefault(label, d["n_train"])
    top = max((max(v) for v in scores.values()), default=0)
    entries: list[dict[str, Any]] = []
    for config in run.configs:
        label = config.label
        if label not in scores:
            failed = [r for r in run.rows if r["cell"]["label"] == label and r.get("status") == "failed"]
            entries.append(
                {
                    "configuration": label,
                    "strategy": config.strategy,
                    "params": dict(config.params),
                    "status": "failed" if failed else "not run",
                    "error": failed[0].get("error") if failed else None,
                }
            )
            continue
        own = scores[label]
        rows = [r for r in run.rows if r["cell"]["label"] == label and r.get("status") == "done"]
        cost = cost_at(rows, full, spec.validation_fraction)
        entry: dict[str, Any] = {
            "configuration": label,
            "strategy": config.strategy,
            "params": dict(config.params),
            "status": "candidate" if (config.cheap or max(own) == top) and label not in eliminated_at else "eliminated",
            "eliminated_at": eliminated_at.get(label),
            "within_noise": label in tied_at and tied_at[label] == eliminated_at.get(label),
            "cheap": config.cheap,
            "sizes": sorted(own),
            "measured": {str(n): sum(v.values()) / len(v) for n, v in sorted(own.items())},
            "seeds": max(len(v) for v in own.values()),
            "cost": cost,
            "learning_rates": sorted(
                {
                    (r.get("fit") or {}).get("learning_rate")
                    for r in rows
                    if (r.get("fit") or {}).get("learning_rate") is not None
                }
            ),
            "rate_at_largest": rate_at_largest(rows),
        }
        own_form = form if form in lc.usable_forms(len(own)) else "last"
        measured_error = (backtests.get(own_form) or {}).get("mae")
        error = None if measured_error is None else max(measured_error, noise or 0.0)
        steps = extrapolation_steps(sorted(own), full) if len(own) >= 2 else 1.0
        if len(own) < MIN_SIZES:  # a curve through fewer sizes is not checked by anything: no prediction
            entry["not_predicted"] = f"measured at {', '.join(map(str, sorted(own)))} only"
        elif own_form == "last" and full > EXTRAPOLATES * max(own):
            # the back-test found no curve better than the last score, which is no forecast of a larger size
            entry["not_predicted"] = f"no curve beat the last score; measured up to {max(own):,}"
        elif error is None:
            entry["not_predicted"] = "the curve could not be back-tested"
        elif full > max(own) and error * steps > PREDICTION_TOLERANCE:
            entry["not_predicted"] = (
                f"the curve may be off by {error * steps:.3f} at {full:,}: its back-test error "
                f"{error:.3f}{' (the noise of the means it was checked on)' if error > measured_error else ''}, "
                f"{steps:.1f} size steps out"
            )
        else:
            entry["form"] = own_form
            entry["predicted"] = bounded(lc.predict(own, own_form, at, metric=metric), sorted(own), error, metric)
            if spec.target is not None:
                entry["size_for_target"] = lc.size_for(own, own_form, spec.target, metric=metric)
        entries.append(entry)
    candidates = [e for e in entries if e["status"] == "candidate"]
    needed = budget_for_curves(run, [e["configuration"] for e in candidates])
    recommendation = recommend(candidates, scores, full, spec.tolerance, spec.max_loss, needed, metric)
    if recommendation is not None:
        recommendation["why"] += untold(entries)
    ranked = sorted(
        [e for e in entries if "measured" in e],
        key=lambda e: (e["status"] != "candidate", "predicted" not in e, -score_of(e, full)),
    )
    ranked += [e for e in entries if "measured" not in e]

    return {
        "data": spec.data,
        "model": spec.model,
        "full_size": full,
        "budget_seconds": spec.budget,
        "spent_seconds": run.spent_seconds,
        "load_seconds": run.load_seconds,
        "stopped": run.stopped,
        "sizes": sorted({n for e in entries for n in e.get("sizes", [])}),
        "ladder": run.sizes,
        "seeds": spec.seeds,
        "eta": spec.eta,
        "tolerance": spec.tolerance,
        "target": spec.target,
        "metric": f"validation {metric}",
        "score_metric": metric,  # the validation metric ranked and extrapolated (absent in earlier plans: accuracy)
        "form": form,
        "backtest": {f: {"mae": v["mae"], "configurations": len(v["errors"])} for f, v in backtests.items()},
        "backtest_noise": noise,  # the standard error of the held-out means: the floor of a curve's error
        "predicts": recommendation is not None and recommendation["predicted_score"] is not None,
        "budget_for_curves": needed,
        "prediction_tolerance": PREDICTION_TOLERANCE,
        "pilot": run.pilot,
        "machine": run.machine,
        "recommendation": recommendation,
        "plan": ranked,
        "rungs": run.decisions,
    }


def bounded(predictions: dict[int, dict], sizes: list[int], error: float, metric: str = "accuracy") -> dict[str, dict]:
    """Predictions whose intervals also hold the curve's own error there (``error`` per back-test step, grown
    with the distance): the bootstrap over seeds sees only the seeds' noise, not a wrong curve. The interval
    stays inside the metric's range (``metrics.score_range``)."""
    lowest, highest = score_range(metric)
    out = {}
    for n, p in predictions.items():
        half = error * extrapolation_steps(sizes, n) if n > sizes[-1] else 0.0
        low = p["score"] - half if p["low"] is None else min(p["low"], p["score"] - half)
        high = p["score"] + half if p["high"] is None else max(p["high"], p["score"] + half)
        out[str(n)] = {**p, "low": max(low, lowest), "high": min(high, highest), "error": half}
    return out


def rate_at_largest(rows: list[dict]) -> float | None:
    """The learning rate the searches chose at the largest size (the most common over seeds; a tie: the first
    seed's): the rate ``advise --fit`` trains at."""
    if not rows:
        return None
    largest = max(r["cell"]["n_train"] for r in rows)
    rates = [
        (r.get("fit") or {}).get("learning_rate")
        for r in sorted(rows, key=lambda r: r["cell"]["seed"])
        if r["cell"]["n_train"] == largest
    ]
    rates = [r for r in rates if r is not None]
    return max(rates, key=rates.count) if rates else None


def score_of(entry: dict, full: int) -> float:
    """The predicted score at N where there is one, else the score measured at the largest size."""
    if "predicted" in entry:
        return entry["predicted"][str(full)]["score"]
    return entry["measured"][str(max(entry["sizes"]))]


def budget_for_curves(run: AdviseRun, labels: list[str]) -> float | None:
    """The budget that would have given ``labels`` ``MIN_SIZES`` sizes on every seed: what this run spent plus
    their missing cells, projected from their cells at the largest size they reached (every seed searching
    its rate). None when they all have the sizes already."""
    missing = 0.0
    for label in labels:
        rows = [r for r in run.rows if r["cell"]["label"] == label and r.get("status") == "done"]
        if not rows:
            continue
        sizes = sorted({r["cell"]["n_train"] for r in rows})
        largest = [r for r in rows if r["cell"]["n_train"] == sizes[-1]]
        basis = [r for r in largest if searched_rate(r)] or largest
        # the padding of a cell's batches by its texts (StepCosts.padding), as the decisions project
        padding = (((run.pilot or {}).get("calibration") or {}).get(label) or {}).get("padding")
        for target in run.sizes[:MIN_SIZES]:
            if target not in sizes:
                projected = sum(projected_cell_seconds(r, target, None, padding) for r in basis) / len(basis)
                missing += len(run.spec.seeds) * projected
    if not missing:
        return None
    return run.spent_seconds + missing * SAFETY + reserve_seconds(run.spec.budget)


def recommend(
    candidates: list[dict],
    scores: dict,
    full: int,
    tolerance: float,
    max_loss: float = 1.0,
    needed_budget: float | None = None,
    metric: str = "accuracy",
) -> dict | None:
    """The cheapest candidate not shown worse than the best, measured at the pilot's largest size, and no more
    than ``max(max_loss, tolerance)`` below it on the measured mean.

    The candidates (the finalists and the cheap configurations) all ran the largest size of the
    pilot: they are compared there, on measured validation scores paired by seed, not on
    extrapolations. ``needed_budget``: what would have given the candidates three sizes (named
    when the answer rests on fewer)."""
    measured = [e for e in candidates if e["sizes"]]
    if not measured:
        return None
    # the largest size where every candidate measured there has two seeds or more (a rung the budget cut after
    # its first seed compares nothing paired); with one seed in all, the largest
    enough = min(2, max(len(v) for e in measured for v in scores[e["configuration"]].values()))
    sizes = sorted({n for e in measured for n in e["sizes"]}, reverse=True)
    size = next(
        (
            n
            for n in sizes
            if all(len(scores[e["configuration"]][n]) >= enough for e in measured if n in scores[e["configuration"]])
        ),
        sizes[0],
    )
    at_size = [e for e in measured if size in scores[e["configuration"]]]
    by_seed = {e["configuration"]: scores[e["configuration"]][size] for e in at_size}

    def mean(config: str) -> float:
        return sum(by_seed[config].values()) / len(by_seed[config])

    best = max(at_size, key=lambda e: (mean(e["configuration"]), -e["cost"]["fit_seconds"]))
    reference = pd.Series(by_seed[best["configuration"]])
    compared = []
    for e in at_size:
        config = e["configuration"]
        if e is best:
            paired = PairedDifference(0.0, None, len(reference))
        else:
            try:
                paired = paired_difference(pd.Series(by_seed[config]), reference)
            except ValueError:  # no seed in common (their cells failed on different seeds): the means alone
                paired = PairedDifference(mean(config) - mean(best["configuration"]), None, 0)
        low, high = paired.interval or (None, None)
        ok = e is best or (paired.within(tolerance) and paired.mean >= -max(max_loss, tolerance) - 1e-12)
        compared.append(
            {
                "configuration": config,
                "difference": paired.mean,
                "low": low,
                "high": high,
                "acceptable": ok,
                "fit_seconds": e["cost"]["fit_seconds"],
            }
        )
    pick_row = min((c for c in compared if c["acceptable"]), key=lambda c: (c["fit_seconds"], c["configuration"]))
    pick = next(e for e in at_size if e["configuration"] == pick_row["configuration"])
    predicted = (pick.get("predicted") or {}).get(str(full))
    return {
        "configuration": pick["configuration"],
        "strategy": pick["strategy"],
        "params": pick["params"],
        "size": size,
        "score": mean(pick["configuration"]),
        "best_measured": mean(best["configuration"]),
        "sizes": pick["sizes"],
        "seeds": len(by_seed[pick["configuration"]]),
        "predicted_score": predicted["score"] if predicted else None,
        "interval": [predicted["low"], predicted["high"]] if predicted else None,
        "not_predicted": pick.get("not_predicted"),
        "at_2x": (pick.get("predicted") or {}).get(str(2 * full)),
        "at_4x": (pick.get("predicted") or {}).get(str(4 * full)),
        "fit_seconds": pick["cost"]["fit_seconds"],
        "fit_interval": pick["cost"].get("fit_interval"),
        "learning_rate": pick.get("rate_at_largest"),
        "best": best["configuration"],
        "best_score": score_of(best, full),
        "difference": pick_row["difference"],
        "difference_interval": [pick_row["low"], pick_row["high"]],
        "comparisons": compared,
        "why": why(
            pick,
            best,
            pick_row,
            full,
            tolerance,
            size,
            mean(pick["configuration"]),
            mean(best["configuration"]),
            len(by_seed[pick["configuration"]]),
            needed_budget,
            metric,
        ),
    }


def caveat(sizes: list[int], seeds: int, needed_budget: float | None) -> str:
    """The first words of an answer that rests on fewer than three sizes or on one seed ('' otherwise)."""
    parts = []
    if len(sizes) < MIN_SIZES:
        counted = "one size" if len(sizes) == 1 else f"{len(sizes)} sizes"
        parts.append(
            f"Measured at {counted} only ({', '.join(f'{n:,}' for n in sizes)} examples): nothing is "
            "predicted at the full size."
        )
    if seeds < 2:
        parts.append("One seed only: no error bars.")
    if not parts:
        return ""
    if needed_budget:
        parts.append(f"A budget of about {human_seconds(needed_budget)} would reach {MIN_SIZES} sizes on every seed.")
    return " ".join(parts) + " "


def why(
    pick: dict,
    best: dict,
    row: dict,
    full: int,
    tolerance: float,
    size: int,
    score: float,
    best_score: float,
    seeds: int = 2,
    needed_budget: float | None = None,
    metric: str = "accuracy",
) -> str:
    p = (pick.get("predicted") or {}).get(str(full))
    text = caveat(pick["sizes"], seeds, needed_budget)
    text += f"{pick['configuration']}: validation {metric} {score:.3f} at {size:,} examples"
    if size != full and p:
        text += f" (predicted {p['score']:.3f}{interval_text(p)} on all {full:,})"
    interval = pick["cost"].get("fit_interval")
    text += f", fit on all {full:,} labelled examples in about {human_seconds(pick['cost']['fit_seconds'])}" + (
        f" [{human_seconds(interval[0])}, {human_seconds(interval[1])}]" if interval else ""
    )
    if pick is best:
        text += f"; the best of the configurations that reached {size:,} examples"
    else:
        speed = best["cost"]["fit_seconds"] / max(pick["cost"]["fit_seconds"], 1e-9)
        if row["low"] is None:
            shown = f"a point difference of {row['difference']:+.3f} (one seed: no error bars)"
        else:
            shown = (
                f"a paired difference of {row['difference']:+.3f}, 95% interval [{row['low']:+.3f}, "
                f"{row['high']:+.3f}]: not shown worse" + (f" by more than {tolerance:.3f}" if tolerance else "")
            )
        text += (
            f"; the best there, {best['configuration']}, scores {best_score:.3f}, {shown}, "
            f"and takes {speed:.1f}x longer to fit"
        )
    if not p:
        if len(pick["sizes"]) >= MIN_SIZES:
            return text + f". Not predicted on all {full:,}: {pick['not_predicted']}."
        return text + "."
    twice = pick["predicted"][str(2 * full)]
    if pick["form"] == "last" or (twice.get("error") or 0.0) > PREDICTION_TOLERANCE:
        return text + (
            f". Whether labelling more pays is not known: the curve may be off by "
            f"{twice.get('error') or 0.0:.3f} at {2 * full:,}."
            if pick["form"] != "last"
            else ". Whether labelling more pays is not known: the back-test chose the last measured value, "
            "which does not extrapolate."
        )
    gain = pick["predicted"][str(2 * full)]["score"] - p["score"]
    text += f". Twice the labelled data would add about {gain:+.3f} on the {pick['form']} curve" + (
        " (labelling more is worth it)." if gain >= 0.01 else " (labelling more is not worth much)."
    )
    return text


def untold(entries: list[dict]) -> str:
    """A sentence naming the configurations that went out within a rung's noise of its leader, the leader among
    them if it did ('' if none)."""
    by_size: dict[int, list[str]] = {}
    for e in entries:
        if e.get("within_noise"):
            by_size.setdefault(e["eliminated_at"], []).append(e["configuration"])
    if not by_size:
        return ""
    parts = [f"{', '.join(labels)} at {n:,} examples" for n, labels in sorted(by_size.items())]
    return (
        f" Not told apart from those that went on when they went out: {'; '.join(parts)} (within two standard "
        "errors of the rung's best validation score); a larger budget would compare them at larger sizes."
    )


def interval_text(p: dict) -> str:
    return f" [{p['low']:.3f}, {p['high']:.3f}]" if p.get("low") is not None else " (one seed: no interval)"


__all__ = ["budget_for_curves", "caveat", "interval_text", "make_plan", "recommend", "validation_scores"]
