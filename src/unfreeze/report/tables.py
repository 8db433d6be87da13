"""Result rows as a table, summaries over seeds, and the recommendation. No torch."""

from __future__ import annotations

import math

import pandas as pd

from ..strategies import BUILTIN_STRATEGIES
from ..sweep.store import ResultsStore, row_task

# the single-label task's metrics (rows of earlier releases hold these); a row of another task holds its task's
METRICS = ("accuracy", "macro_f1", "mcc")
# the order strategies appear in tables and legends: the registry's built-ins (a plugin's comes after them)
STRATEGY_ORDER = tuple(cls.name for cls in BUILTIN_STRATEGIES)
# texts the recommendation expects a classifier to predict: its cost is fit seconds plus
# the seconds to predict these (truncated models fit and predict faster)
PREDICT_TEXTS = 10_000


def results_frame(run_dir) -> pd.DataFrame:
    """One row per cell's latest record, flattened: cell coordinates, metrics, costs, status."""
    rows = []
    # rows without a cell cannot be placed (ResultsStore skips and counts damaged lines; the advisor's
    # decision rows, which share the store, have no cell either)
    for record in ResultsStore(run_dir).latest(require_cell=True).values():
        if "advise" in record:
            continue  # an advisor's cell (no test score: the pilot never reads the test set), not a sweep's
        cell = record["cell"]
        row = {
            "key": record["key"],
            "status": record["status"],
            "strategy": cell["strategy"],
            "label": cell["label"],
            "k": cell.get("k"),
            "j": cell.get("j"),
            "n_train": cell["n_train"],
            "seed": cell["seed"],
            "error": record.get("error", ""),
        }
        if record["status"] == "done":
            metrics = row_task(record).metrics
            for split in ("train", "test", "validation"):
                for metric, value in (record.get(split) or {}).items():
                    if metric in metrics:
                        row[f"{split}_{metric}"] = value
            fit = record.get("fit", {})
            row.update(
                {
                    "fit_seconds": fit.get("seconds"),
                    "trainable_parameters": fit.get("trainable_parameters"),
                    "total_parameters": fit.get("total_parameters"),
                    "peak_memory_mib": (fit.get("peak_memory_bytes") or 0) / 2**20 or None,
                    "epochs_run": fit.get("epochs_run"),
                    "tokens_seen": fit.get("tokens_seen"),
                    "predict_seconds_per_text": record.get("predict_seconds_per_text"),
                    "device": record.get("device"),
                    "tuned": bool(fit.get("tuned")),
                    "learning_rate": fit.get("learning_rate"),
                    "rates_tried": len(fit.get("lr_search") or []) or None,
                }
            )
            if fit.get("layer_weights") is not None:  # mix: the learned weight of each mixed hidden state
                row.update({"mixed_layers": fit.get("mixed_layers"), "layer_weights": fit["layer_weights"]})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    frame["_order"] = frame["strategy"].map(order).fillna(len(order))
    frame = frame.sort_values(["n_train", "_order", "k", "j", "seed"], na_position="first").drop(columns="_order")
    return frame.reset_index(drop=True)


def summarise(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, standard deviation and standard error over seeds for every (label, n_train)."""
    done = frame[frame["status"] == "done"]
    if done.empty:
        return pd.DataFrame()
    # rows of earlier releases have no prediction timing: NaN
    done = done.assign(predict_seconds_per_text=pd.to_numeric(done.get("predict_seconds_per_text"), errors="coerce"))
    grouped = done.groupby(["strategy", "label", "k", "n_train"], dropna=False)
    out = grouped.agg(
        seeds=("seed", "count"),
        test_mean=(f"test_{metric}", "mean"),
        test_std=(f"test_{metric}", "std"),
        train_mean=(f"train_{metric}", "mean"),
        train_std=(f"train_{metric}", "std"),
        fit_seconds=("fit_seconds", "mean"),
        trainable_parameters=("trainable_parameters", "mean"),
        predict_seconds_per_text=("predict_seconds_per_text", "mean"),
    ).reset_index()
    out["tuned"] = grouped["tuned"].any().to_numpy() if "tuned" in done else False
    out["test_std"] = out["test_std"].fillna(0.0)
    out["train_std"] = out["train_std"].fillna(0.0)
    out["test_se"] = out["test_std"] / out["seeds"].clip(lower=1).map(math.sqrt)
    return out


def recommend(
    summary: pd.DataFrame,
    metric: str,
    frame: pd.DataFrame | None = None,
    tolerance: float = 0.0,
    predict_texts: int = PREDICT_TEXTS,
    sign: float = 1.0,
) -> list[dict]:
    """Per training size: the cheapest configuration not shown worse than the best.

    With the result rows (``frame``), configurations are compared paired by seed: the
    difference to the best with a bootstrap interval (``stats.compare_to_best``); a
    configuration is acceptable when the interval reaches ``-tolerance`` (with one seed: when
    the point difference does; there are no error bars). Without ``frame``, the means alone
    (one seed's view). Cost: fit seconds plus the seconds to predict ``predict_texts`` texts
    where the rows time prediction (those of earlier releases do not: fit seconds alone). ``sign``: -1 where
    a lower ``metric`` is better (``Task.sign``).
    """
    from .stats import compare_to_best, score_matrix

    picks = []
    for n, group in summary.groupby("n_train"):
        by_label = group.set_index("label")
        seconds = by_label["fit_seconds"]
        per_text = (
            by_label["predict_seconds_per_text"]
            if "predict_seconds_per_text" in by_label
            else pd.Series(float("nan"), index=by_label.index)
        )
        timed = bool(per_text.notna().all())
        cost = seconds + (per_text * predict_texts if timed else 0.0)
        if frame is not None:
            scores = score_matrix(frame, f"test_{metric}", int(n))
        else:
            scores = pd.DataFrame([by_label["test_mean"]])
        scores = scores[[c for c in scores.columns if c in seconds.index]]
        if scores.empty:
            continue
        table = compare_to_best(scores, cost.reindex(scores.columns), tolerance, sign=sign)
        best, pick = table.index[table["best"]][0], table.index[table["pick"]][0]
        row = table.loc[pick]
        chosen = {
            "n_train": int(n),
            "best": best,
            "best_mean": float(table.loc[best, "mean"]),
            "pick": pick,
            "pick_mean": float(row["mean"]),
            "diff": float(row["diff"]),
            "low": None if math.isnan(row["low"]) else float(row["low"]),
            "high": None if math.isnan(row["high"]) else float(row["high"]),
            "seeds": int(row["seeds"]),
            "pick_seconds": float(seconds[pick]),
            "best_seconds": float(seconds[best]),
            "tolerance": tolerance,
            "metric": metric,
            "comparison": table.reset_index().to_dict("records"),
        }
        if timed:
            chosen.update(
                {
                    "predict_texts": predict_texts,
                    "pick_cost": float(cost[pick]),
                    "best_cost": float(cost[best]),
                    "pick_predict_ms": 1000 * float(per_text[pick]),
                    "best_predict_ms": 1000 * float(per_text[best]),
                }
            )
        picks.append(chosen)
    return picks


def recommendation_sentence(pick: dict) -> str:
    metric = pick["metric"].replace("_", "-")
    text = f"With {pick['n_train']} training examples, use {pick['pick']}: test {metric} {pick['pick_mean']:.3f}"
    text += f" in {pick['pick_seconds']:.1f} s"
    timed = "pick_cost" in pick
    if timed:
        text += f" to fit and {pick['pick_predict_ms']:.2f} ms per text to predict"
    one_seed = pick.get("seeds", 1) < 2 or pick.get("high") is None
    if pick["pick"] == pick["best"]:
        note = " (one seed: no error bars)" if one_seed else f" (mean over {pick['seeds']} seeds)"
        return text + f", the best of the sweep{note}."
    if timed:
        speed = pick["best_cost"] / pick["pick_cost"] if pick["pick_cost"] else float("inf")
        cost = f"{speed:.1f}x less cost (fit + predicting {pick['predict_texts']:,} texts)"
    else:
        speed = pick["best_seconds"] / pick["pick_seconds"] if pick["pick_seconds"] else float("inf")
        cost = f"{speed:.1f}x less time"
    if one_seed:
        within = f"within the tolerance {pick['tolerance']:.3f}" if pick.get("tolerance") else "tied"
        return (
            text + f", {within} of the best ({pick['best']}, {pick['best_mean']:.3f}; one seed: no error "
            f"bars, a point difference of {pick['diff']:+.3f}) at {cost}."
        )
    tol = f", tolerance {pick['tolerance']:.3f}" if pick.get("tolerance") else ""
    return (
        text + f"; its paired difference to the best ({pick['best']}, {pick['best_mean']:.3f}) is "
        f"{pick['diff']:+.3f}, 95% interval [{pick['low']:+.3f}, {pick['high']:+.3f}] over {pick['seeds']} "
        f"seeds: not shown worse{tol}, at {cost}."
    )
