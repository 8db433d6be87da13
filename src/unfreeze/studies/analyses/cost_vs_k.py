"""``cost_vs_k``: fit seconds, peak memory and score vs frozen blocks; the cheapest k not shown worse."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import UnfreezeError
from .base import (
    NAN,
    AnalysisKind,
    AnalysisResult,
    Context,
    Table,
    axis_rows,
    check_at,
    errorbar,
    fmt,
    fmt_ci,
    mean_interval,
    metric_label,
    paired,
    pyplot,
    save_figure,
    score_column,
)


def _cost_quantities(params: dict) -> dict[str, str]:
    return {
        "pick_k": "k of the cheapest configuration (by fit seconds) not shown worse than the best by more than "
        "the tolerance (paired by seed, 95% bootstrap interval)",
        "pick_time_saving": "1 - fit seconds of the pick / those of k=0",
        "pick_memory_saving": "1 - peak memory of the pick / that of k=0",
        "pick_params_ratio": "trainable parameters of the pick / those of k=0",
        "pick_diff": "pick - k=0 test score (paired by seed)",
        "pick_diff_low": "lower end of pick_diff's 95% interval",
        "pick_diff_high": "upper end of pick_diff's 95% interval",
        "half_k": "the swept k closest to L/2 (the larger of two as close): about half the blocks frozen",
        "half_time_saving": "1 - fit seconds of half_k / those of k=0",
        "half_memory_saving": "1 - peak memory of half_k / that of k=0",
        "half_diff": "half_k minus k=0 test score (paired by seed)",
        "half_diff_low": "lower end of half_diff's 95% interval",
        "half_diff_high": "upper end of half_diff's 95% interval",
    }


def _run_cost_vs_k(frame: pd.DataFrame, context: Context) -> AnalysisResult:
    from ...report.stats import compare_to_best

    L = context.num_blocks or 0
    params = context.params
    meanings = _cost_quantities(params)
    q = dict.fromkeys(meanings, NAN)
    result = AnalysisResult(q, meanings)
    n = context.size_at(params["at"])
    column = score_column(context)
    rows = axis_rows(frame, "freeze", "k")
    if n is not None and not rows.empty:
        rows = rows[rows["n_train"] == n]
    if n is None or rows.empty or column not in rows:
        result.notes.append("No finished freeze cells at the study's size yet.")
        return result
    rows = rows.assign(k=rows["k"].astype(int))
    scores = rows.pivot_table(index="seed", columns="k", values=column, aggfunc="mean")
    mean_of = rows.groupby("k")[["fit_seconds", "peak_memory_mib", "trainable_parameters"]].mean()
    table = compare_to_best(
        scores, mean_of["fit_seconds"].reindex(scores.columns), params["tolerance"], sign=context.sign
    )
    pick = int(table.index[table["pick"]][0])
    swept = [int(k) for k in scores.columns if 0 < k < L] or [int(k) for k in scores.columns]
    q["half_k"] = float(min(swept, key=lambda k: (abs(k - L / 2), -k)))

    def against_full(k: int, prefix: str) -> None:
        if k not in mean_of.index or 0 not in mean_of.index:
            return
        q[f"{prefix}_time_saving"] = 1 - mean_of.loc[k, "fit_seconds"] / mean_of.loc[0, "fit_seconds"]
        if mean_of.loc[0, "peak_memory_mib"] and mean_of.loc[0, "peak_memory_mib"] == mean_of.loc[0, "peak_memory_mib"]:
            q[f"{prefix}_memory_saving"] = 1 - mean_of.loc[k, "peak_memory_mib"] / mean_of.loc[0, "peak_memory_mib"]
        diff, low, high, _ = paired(scores[k].dropna(), scores[0].dropna())
        q[f"{prefix}_diff"], q[f"{prefix}_diff_low"], q[f"{prefix}_diff_high"] = diff, low, high

    q["pick_k"] = float(pick)
    against_full(pick, "pick")
    if 0 in mean_of.index and mean_of.loc[0, "trainable_parameters"]:
        q["pick_params_ratio"] = mean_of.loc[pick, "trainable_parameters"] / mean_of.loc[0, "trainable_parameters"]
    against_full(int(q["half_k"]), "half")
    table_rows = []
    for k in sorted(scores.columns):
        diff = paired(scores[k].dropna(), scores[0].dropna()) if 0 in scores else (NAN, NAN, NAN, 0)
        mark = "pick" if k == pick else ("best" if table.loc[k, "best"] else "")
        table_rows.append(
            [
                str(k),
                str(L - k),
                fmt_ci(*mean_interval(scores[k].dropna())),
                fmt_ci(*diff[:3], sign=True) if k else "",
                fmt(mean_of.loc[k, "fit_seconds"], 1),
                fmt(mean_of.loc[k, "peak_memory_mib"], 0),
                f"{mean_of.loc[k, 'trainable_parameters']:,.0f}",
                mark,
            ]
        )
    result.tables.append(
        Table(
            f"Cost and {metric_label(context)} vs frozen blocks at {context.size_name(n)}",
            [
                "k",
                "blocks trained",
                "test [95% interval]",
                "vs k=0 (paired)",
                "fit seconds",
                "peak memory MiB",
                "trainable parameters",
                "role",
            ],
            table_rows,
            note=f"role: best, the highest mean score; pick: the cheapest k not shown worse than the best by more "
            f"than {params['tolerance']} (its paired interval reaches that far). Seconds and memory are means "
            "over seeds; fit seconds include the learning-rate search (three fits per cell); memory is the "
            "process' peak resident set on a CPU (the loaded model and caches included), the peak allocated "
            "memory on a GPU.",
        )
    )
    if context.out_dir is not None:
        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        ks = sorted(scores.columns)
        stats = [mean_interval(scores[k].dropna()) for k in ks]
        errorbar(axes[0], ks, [s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats], color="C1")
        axes[0].set(ylabel=metric_label(context), title="Score (95% bootstrap intervals)")
        axes[1].plot(ks, [mean_of.loc[k, "fit_seconds"] for k in ks], marker="o", color="C3")
        axes[1].set(ylabel="fit seconds (mean over seeds)", title="Time to fit")
        axes[2].plot(ks, [mean_of.loc[k, "peak_memory_mib"] for k in ks], marker="o", color="C4")
        axes[2].set(ylabel="peak memory MiB", title="Peak memory")
        for ax in axes:
            ax.set_xticks(ks)
            ax.set_xlabel(f"frozen blocks k (of {L})")
            ax.grid(alpha=0.3)
        axes[0].axvline(pick, color="gray", ls=":", lw=1)
        name = save_figure(fig, context, "cost_vs_k.png")
        result.figures.append(
            (
                name,
                f"Score, fit seconds and peak memory vs frozen blocks at {context.size_name(n)}; "
                "the dotted line marks the pick.",
            )
        )
    return result


def _check_cost(params: dict, path: Path) -> None:
    check_at(params, path)
    tolerance = params["tolerance"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise UnfreezeError(f"{path}: [analysis] tolerance must be a number >= 0. Got {tolerance!r}.")


KIND = AnalysisKind(
    "cost_vs_k",
    "fit seconds, peak memory and score vs frozen blocks",
    {"at": "largest", "tolerance": 0.01},
    _cost_quantities,
    _run_cost_vs_k,
    check=_check_cost,
)
