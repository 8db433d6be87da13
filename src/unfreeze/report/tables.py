"""Result rows as a table, summaries over seeds, and the recommendation. No torch."""

from __future__ import annotations

import math

import pandas as pd

from ..sweep.store import ResultsStore

METRICS = ("accuracy", "macro_f1", "mcc")
# the order strategies appear in tables and legends
STRATEGY_ORDER = ("features", "freeze", "full", "reinit", "lora", "setfit", "subspace")


def results_frame(run_dir) -> pd.DataFrame:
    """One row per cell's latest record, flattened: cell coordinates, metrics, costs, status."""
    rows = []
    for record in ResultsStore(run_dir).latest().values():
        cell = record["cell"]
        row = {"key": record["key"], "status": record["status"], "strategy": cell["strategy"],
               "label": cell["label"], "k": cell.get("k"), "n_train": cell["n_train"], "seed": cell["seed"],
               "error": record.get("error", "")}
        if record["status"] == "done":
            for split in ("train", "test", "validation"):
                for metric, value in (record.get(split) or {}).items():
                    if metric in METRICS:
                        row[f"{split}_{metric}"] = value
            fit = record.get("fit", {})
            row.update({"fit_seconds": fit.get("seconds"), "trainable_parameters": fit.get("trainable_parameters"),
                        "total_parameters": fit.get("total_parameters"),
                        "peak_memory_mib": (fit.get("peak_memory_bytes") or 0) / 2**20 or None,
                        "epochs_run": fit.get("epochs_run"), "tokens_seen": fit.get("tokens_seen"),
                        "device": record.get("device")})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    frame["_order"] = frame["strategy"].map(order).fillna(len(order))
    frame = frame.sort_values(["n_train", "_order", "k", "seed"], na_position="first").drop(columns="_order")
    return frame.reset_index(drop=True)


def summarise(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, standard deviation and standard error over seeds for every (label, n_train)."""
    done = frame[frame["status"] == "done"]
    if done.empty:
        return pd.DataFrame()
    grouped = done.groupby(["strategy", "label", "k", "n_train"], dropna=False)
    out = grouped.agg(
        seeds=("seed", "count"),
        test_mean=(f"test_{metric}", "mean"), test_std=(f"test_{metric}", "std"),
        train_mean=(f"train_{metric}", "mean"), train_std=(f"train_{metric}", "std"),
        fit_seconds=("fit_seconds", "mean"), trainable_parameters=("trainable_parameters", "mean"),
    ).reset_index()
    out["test_std"] = out["test_std"].fillna(0.0)
    out["train_std"] = out["train_std"].fillna(0.0)
    out["test_se"] = out["test_std"] / out["seeds"].clip(lower=1).map(math.sqrt)
    return out


def recommend(summary: pd.DataFrame, metric: str) -> list[dict]:
    """Per training size: the cheapest configuration (fit seconds) within one standard error of the best."""
    picks = []
    for n, group in summary.groupby("n_train"):
        best = group.loc[group["test_mean"].idxmax()]
        threshold = best["test_mean"] - best["test_se"]
        within = group[group["test_mean"] >= threshold]
        cheapest = within.loc[within["fit_seconds"].idxmin()]
        picks.append({"n_train": int(n), "best": best["label"], "best_mean": float(best["test_mean"]),
                      "best_se": float(best["test_se"]), "pick": cheapest["label"],
                      "pick_mean": float(cheapest["test_mean"]), "pick_se": float(cheapest["test_se"]),
                      "pick_seconds": float(cheapest["fit_seconds"]), "best_seconds": float(best["fit_seconds"]),
                      "metric": metric})
    return picks


def recommendation_sentence(pick: dict) -> str:
    metric = pick["metric"].replace("_", "-")
    text = (f"With {pick['n_train']} training examples, use {pick['pick']}: test {metric} "
            f"{pick['pick_mean']:.3f} ± {pick['pick_se']:.3f} in {pick['pick_seconds']:.1f} s")
    if pick["pick"] == pick["best"]:
        return text + ", the best of the sweep."
    speed = pick["best_seconds"] / pick["pick_seconds"] if pick["pick_seconds"] else float("inf")
    return (text + f", within one standard error of the best ({pick['best']}, {pick['best_mean']:.3f} ± "
            f"{pick['best_se']:.3f}) at {speed:.1f}x less time.")
