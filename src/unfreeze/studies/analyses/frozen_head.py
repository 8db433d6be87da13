"""``frozen_head``: the head on the frozen body vs the majority class vs the last block vs the rest."""

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
    seed_scores,
)


def _frozen_head_quantities(params: dict) -> dict[str, str]:
    return {
        "majority": "test score of always predicting the training set's most frequent class",
        "head": "test score of the head on the fully frozen body (the configuration named by head_only)",
        "head_loop": "test score of freeze k=L (a linear head trained by the shared loop)",
        "full": "test score of full fine-tuning (k=0)",
        "head_minus_majority": "head - majority (mean over seeds)",
        "head_minus_majority_low": "lower end of its 95% bootstrap interval",
        "head_share": "the head's share of full fine-tuning's gain over the majority class: "
        "(head - majority) / (full - majority)",
        "first_step": "k=L-1 minus head: the gain of unfreezing the last block (paired by seed)",
        "first_step_low": "lower end of first_step's 95% interval",
        "first_step_high": "upper end of first_step's 95% interval",
        "max_later_step": "the largest gain per block of any later step (between consecutive k below L-1, "
        "divided by the blocks it unfreezes)",
        "rest_gain": "k=0 minus k=L-1: everything unfreezing the other blocks adds (paired)",
        "rest_gain_low": "lower end of rest_gain's 95% interval",
        "rest_gain_high": "upper end of rest_gain's 95% interval",
    }


def _run_frozen_head(frame: pd.DataFrame, context: Context) -> AnalysisResult:
    L = context.num_blocks or 0
    params = context.params
    meanings = _frozen_head_quantities(params)
    q = dict.fromkeys(meanings, NAN)
    result = AnalysisResult(q, meanings)
    n = context.size_at(params["at"])
    column = score_column(context)
    q["majority"] = context.majority.get(context.metric, NAN)
    rows = axis_rows(frame, "freeze", "k")
    if n is None or rows.empty or column not in rows:
        result.notes.append("No finished freeze cells yet.")
        return result
    by_k = {
        int(k): rows[(rows["k"] == k) & (rows["n_train"] == n)].groupby("seed")[column].mean()
        for k in sorted(rows["k"].unique())
    }
    by_k = {k: v for k, v in by_k.items() if not v.empty}
    head_label = params["head_only"]
    head = seed_scores(frame, head_label, n, column) if head_label else by_k.get(L, pd.Series(dtype=float))
    full = by_k.get(0, pd.Series(dtype=float))
    q["head"] = float(head.mean()) if not head.empty else NAN
    q["head_loop"] = float(by_k[L].mean()) if L in by_k else NAN
    q["full"] = float(full.mean()) if not full.empty else NAN
    if not head.empty:
        mean, low, _ = mean_interval(head - q["majority"])
        q["head_minus_majority"], q["head_minus_majority_low"] = mean, low
    if q["full"] == q["full"] and q["full"] - q["majority"] > 0:
        q["head_share"] = (q["head"] - q["majority"]) / (q["full"] - q["majority"])
    if L - 1 in by_k and not head.empty:
        q["first_step"], q["first_step_low"], q["first_step_high"], _ = paired(by_k[L - 1], head)
    later = sorted((k for k in by_k if k < L - 1), reverse=True)
    steps, previous = [], L - 1
    for k in later:
        if previous in by_k:
            diff, low, high, _ = paired(by_k[k], by_k[previous])
            steps.append((previous, k, diff, low, high))
        previous = k
    if steps:
        q["max_later_step"] = max(diff / (a - b) for a, b, diff, _, _ in steps)
    if 0 in by_k and L - 1 in by_k:
        q["rest_gain"], q["rest_gain_low"], q["rest_gain_high"], _ = paired(by_k[0], by_k[L - 1])
    table_rows = [["majority class", "-", fmt(q["majority"]), ""]]
    if head_label:
        table_rows.append(
            [f"{head_label} (head only, fitted to convergence)", str(L), fmt_ci(*mean_interval(head)), ""]
        )
    for k in sorted(by_k, reverse=True):
        step = ""
        if k == L - 1 and not head.empty:
            step = fmt_ci(q["first_step"], q["first_step_low"], q["first_step_high"], sign=True) + " vs head"
        for a, b, diff, low, high in steps:
            if b == k:
                step = fmt_ci(diff, low, high, sign=True) + f" vs k={a} ({a - b} block{'s' if a - b > 1 else ''})"
        table_rows.append(
            [
                f"freeze k={k}" + (" (head only, shared loop)" if k == L else ""),
                str(L - k),
                fmt_ci(*mean_interval(by_k[k])),
                step,
            ]
        )
    result.tables.append(
        Table(
            f"{metric_label(context).capitalize()} at {context.size_name(n)}, from the frozen "
            "body up [95% bootstrap intervals over seeds; steps paired by seed]",
            ["configuration", "blocks trained", "mean", "step"],
            table_rows,
        )
    )
    if context.out_dir is not None:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ks = sorted(by_k)
        stats = [mean_interval(by_k[k]) for k in ks]
        errorbar(
            ax,
            [L - k for k in ks],
            [s[0] for s in stats],
            [s[1] for s in stats],
            [s[2] for s in stats],
            color="C1",
            label="freeze (shared loop)",
        )
        if head_label and not head.empty:
            mean, low, high = mean_interval(head)
            errorbar(ax, [0], [mean], [low], [high], color="C0", label=f"{head_label} (head only)", linestyle="")
        ax.axhline(q["majority"], color="gray", ls=":", label="majority class")
        ax.set(
            xlabel=f"blocks unfrozen (L - k, of {L})",
            ylabel=metric_label(context),
            title=f"From the frozen body up, {context.size_name(n)}",
        )
        ax.set_xticks([L - k for k in ks])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        name = save_figure(fig, context, "frozen_head.png")
        result.figures.append(
            (
                name,
                "Test score vs blocks unfrozen, with the majority-class baseline and the "
                "converged head on the frozen body; 95% bootstrap intervals over seeds.",
            )
        )
    if L in by_k and not head.empty and q["head_loop"] < q["head"] - 0.02:
        result.notes.append(
            f"freeze k={L} (a linear head trained for the loop's few epochs) scores "
            f"{q['head_loop']:.3f}, below the converged head ({q['head']:.3f}): the loop's epochs "
            "are too few for a head alone, which is why the rule reads the converged head."
        )
    return result


def _check_head(params: dict, path: Path) -> None:
    check_at(params, path)
    if not isinstance(params["head_only"], str):
        raise UnfreezeError(f'{path}: [analysis] head_only must be a configuration label (or "" for freeze k=L).')


KIND = AnalysisKind(
    "frozen_head",
    "head on the frozen body vs the majority class vs the last block vs the rest",
    {"at": "largest", "head_only": "features"},
    _frozen_head_quantities,
    _run_frozen_head,
    labels=lambda p: [p["head_only"]] if p["head_only"] else [],
    check=_check_head,
)
