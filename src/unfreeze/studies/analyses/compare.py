"""``compare``: named paired comparisons between configurations, at every size."""

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
    check_at,
    done_rows,
    errorbar,
    fmt,
    fmt_ci,
    mean_interval,
    mean_of,
    metric_label,
    paired,
    pyplot,
    save_figure,
    score_column,
    seed_scores,
)

COMPARE_SUFFIXES = {
    "": "mean paired difference {c} - {r} (over seeds)",
    "_low": "lower end of its 95% interval",
    "_high": "upper end of its 95% interval",
    "_candidate": "mean score of {c}",
    "_reference": "mean score of {r}",
    "_params_ratio": "trainable parameters of {c} / those of {r}",
    "_seconds_ratio": "fit seconds of {c} / those of {r} (mean over seeds)",
}


def _compare_quantities(params: dict) -> dict[str, str]:
    out = {}
    for name, (candidate, reference) in params["comparisons"].items():
        for suffix, meaning in COMPARE_SUFFIXES.items():
            out[f"{name}{suffix}"] = meaning.format(c=candidate, r=reference)
    return out


def _check_compare(params: dict, path: Path) -> None:
    comparisons = params["comparisons"]
    if not isinstance(comparisons, dict) or not comparisons:
        raise UnfreezeError(
            f"{path}: [analysis] comparisons must name at least one comparison, e.g. "
            'comparisons = { lora = ["lora r=8", "freeze k=0"] }.'
        )
    for name, pair in comparisons.items():
        if not name.isidentifier():
            raise UnfreezeError(f"{path}: comparison name {name!r} must be a plain name (letters, digits, _).")
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(p, str) and p for p in pair):
            raise UnfreezeError(
                f"{path}: comparison {name!r} must be [candidate, reference] (two configuration labels). Got {pair!r}."
            )
    check_at(params, path)
    if not isinstance(params["order"], list):
        raise UnfreezeError(f"{path}: [analysis] order must be a list of configuration labels.")
    if not isinstance(params["order_by_difficulty"], bool):
        raise UnfreezeError(f"{path}: [analysis] order_by_difficulty must be true or false.")


def _compare_labels(params: dict) -> list[str]:
    return list(dict.fromkeys(label for pair in params["comparisons"].values() for label in pair))


def _run_compare(frame: pd.DataFrame, context: Context) -> AnalysisResult:
    params = context.params
    meanings = _compare_quantities(params)
    q = dict.fromkeys(meanings, NAN)
    result = AnalysisResult(q, meanings)
    column = score_column(context)
    n_at = context.size_at(params["at"])
    rows = done_rows(frame)
    sizes = [n for n in context.sizes if not rows.empty and (rows["n_train"] == n).any()]
    configs = list(dict.fromkeys([*params["order"], *([] if rows.empty else rows["config"].unique())]))
    configs = [c for c in configs if not rows.empty and (rows["config"] == c).any()]
    if rows.empty or column not in rows:
        result.notes.append("No finished cells yet.")
        return result

    def cost(config: str, n: int, col: str) -> float:
        return mean_of(rows, config, n, col) if col in rows else NAN

    for n in sizes:
        table_rows = []
        for config in configs:
            scores = seed_scores(rows, config, n, column)
            if scores.empty:
                continue
            trainable = cost(config, n, "trainable_parameters")
            table_rows.append(
                [
                    config,
                    str(len(scores)),
                    fmt_ci(*mean_interval(scores)),
                    fmt(cost(config, n, "fit_seconds"), 1),
                    f"{trainable:,.0f}" if trainable == trainable else "n/a",
                ]
            )
        result.tables.append(
            Table(
                f"{metric_label(context).capitalize()} at {context.size_name(n)} [95% bootstrap interval over seeds]",
                ["configuration", "seeds", "mean", "fit seconds", "trainable parameters"],
                table_rows,
            )
        )
        comp_rows = []
        for name, (candidate, reference) in params["comparisons"].items():
            diff, low, high, seeds = paired(
                seed_scores(rows, candidate, n, column), seed_scores(rows, reference, n, column)
            )
            if seeds:
                comp_rows.append([name, f"{candidate} - {reference}", str(seeds), fmt_ci(diff, low, high, sign=True)])
            if n == n_at:
                q.update(
                    {
                        name: diff,
                        f"{name}_low": low,
                        f"{name}_high": high,
                        f"{name}_candidate": mean_of(rows, candidate, n, column),
                        f"{name}_reference": mean_of(rows, reference, n, column),
                    }
                )
                ref_params, ref_seconds = cost(reference, n, "trainable_parameters"), cost(reference, n, "fit_seconds")
                if ref_params and ref_params == ref_params:
                    q[f"{name}_params_ratio"] = cost(candidate, n, "trainable_parameters") / ref_params
                if ref_seconds and ref_seconds == ref_seconds:
                    q[f"{name}_seconds_ratio"] = cost(candidate, n, "fit_seconds") / ref_seconds
        if comp_rows:
            result.tables.append(
                Table(
                    f"Paired differences at {context.size_name(n)} (95% bootstrap intervals over seeds)",
                    ["comparison", "candidate - reference", "seeds", "difference"],
                    comp_rows,
                )
            )
    if n_at is not None and n_at not in sizes:
        result.notes.append(f"No finished cells at {context.size_name(n_at)}, the size the verdict reads.")
    if context.out_dir is not None and configs and sizes:
        plt = pyplot()
        from ...report.plots import color_of

        if len(sizes) > 1:
            fig, ax = plt.subplots(figsize=(6.8, 4.4))
            for i, config in enumerate(configs):
                stats = [mean_interval(seed_scores(rows, config, n, column)) for n in sizes]
                present = [(n, s) for n, s in zip(sizes, stats) if s[0] == s[0]]
                if not present:
                    continue
                strategy = rows[rows["config"] == config]["strategy"].iloc[0]
                xs = [context.per_class.get(n, n) for n, _ in present]
                errorbar(
                    ax,
                    xs,
                    [s[0] for _, s in present],
                    [s[1] for _, s in present],
                    [s[2] for _, s in present],
                    color=color_of(strategy) if i < 10 else None,
                    linestyle=["-", "--", ":", "-."][i % 4],
                    label=config,
                )
            ax.set_xscale("log")
            xs = [context.per_class.get(n, n) for n in sizes]
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
            ax.set(
                xlabel="examples per class" if context.per_class else "training examples (log scale)",
                ylabel=metric_label(context),
                title="Score vs training size (95% bootstrap intervals)",
            )
        else:
            n = sizes[0]
            fig, ax = plt.subplots(figsize=(7.2, 0.45 * len(configs) + 1.6))
            for y, config in enumerate(configs):
                mean, low, high = mean_interval(seed_scores(rows, config, n, column))
                strategy = rows[rows["config"] == config]["strategy"].iloc[0]
                _errorbar_h(ax, y, mean, low, high, color_of(strategy))
            ax.set_yticks(range(len(configs)), configs, fontsize=8)
            ax.invert_yaxis()
            ax.set(xlabel=metric_label(context), title=f"{context.size_name(n)} (95% bootstrap intervals)")
        majority = context.majority.get(context.metric)
        if majority is not None:
            (ax.axhline if len(sizes) > 1 else ax.axvline)(majority, color="gray", ls=":", lw=1, label="majority class")
        ax.grid(alpha=0.3)
        if len(sizes) > 1:
            ax.legend(fontsize=7)
        name = save_figure(fig, context, "comparison.png")
        result.figures.append(
            (
                name,
                "Test score of each configuration, mean over seeds with 95% bootstrap "
                "intervals; the dotted line is the majority class.",
            )
        )
    return result


def _errorbar_h(ax, y, mean, low, high, color):
    if mean != mean:
        return
    xerr = [[0.0 if low != low else mean - low], [0.0 if high != high else high - mean]]
    ax.errorbar([mean], [y], xerr=xerr, capsize=3, marker="o", ms=5, color=color)


KIND = AnalysisKind(
    "compare",
    "named paired comparisons between configurations, at every size",
    {"comparisons": {}, "at": "largest", "order": [], "order_by_difficulty": False},
    _compare_quantities,
    _run_compare,
    labels=_compare_labels,
    check=_check_compare,
)
