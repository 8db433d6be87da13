"""``two_way``: score ~ C(k) * C(size), fitted with statsmodels; the interaction's test and effect size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import UnfreezeError
from .base import (
    NAN,
    AnalysisKind,
    AnalysisResult,
    Context,
    Table,
    axis_rows,
    errorbar,
    fmt,
    fmt_ci,
    mean_interval,
    metric_label,
    pyplot,
    save_figure,
    score_column,
)


def _two_way_quantities(params: dict) -> dict[str, str]:
    return {
        "k_p": "p-value of the frozen-blocks factor C(k) (type II ANOVA)",
        "k_eta2": "partial eta squared of C(k)",
        "n_p": "p-value of the training-size factor C(n)",
        "n_eta2": "partial eta squared of C(n)",
        "interaction_f": "F statistic of the k x size interaction",
        "interaction_p": "p-value of the k x size interaction",
        "interaction_eta2": "partial eta squared of the k x size interaction (0.01 small, 0.06 medium, 0.14 large)",
        "interaction_share": "the interaction's share of the variance that involves k: SS(k x n) / (SS(k) + SS(k x n))",
        "slope": "change in test score per unfrozen block (L - k), from score ~ unfrozen + C(n)",
        "slope_low": "lower end of the slope's 95% confidence interval",
        "slope_high": "upper end of the slope's 95% confidence interval",
        "residual_df": "residual degrees of freedom of the two-way model",
    }


def two_way_anova(data: pd.DataFrame) -> dict[str, Any]:
    """Fit ``score ~ C(k) * C(n)`` (OLS) and ``score ~ unfrozen + C(n)``; the interaction's test and effect sizes.

    ``data`` has columns ``score``, ``k``, ``n`` and ``unfrozen``. With one observation per cell the
    full model has no residual: the interaction cannot be tested and its quantities are NaN.
    The values are floats, and the ANOVA table (a DataFrame) under ``"_anova"`` when it was fitted.
    """
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    out: dict[str, Any] = dict.fromkeys(_two_way_quantities({}), NAN)
    data = data.dropna(subset=["score"])
    if data["k"].nunique() < 2 or data["n"].nunique() < 1 or len(data) < 3:
        return out
    several_sizes = data["n"].nunique() > 1
    formula = "score ~ C(k) * C(n)" if several_sizes else "score ~ C(k)"
    model = smf.ols(formula, data=data).fit()
    out["residual_df"] = float(model.df_resid)
    if model.df_resid > 0:
        table = anova_lm(model, typ=2)
        resid = float(table.loc["Residual", "sum_sq"])

        def partial(term: str) -> float:
            ss = float(table.loc[term, "sum_sq"])
            return ss / (ss + resid) if ss + resid > 0 else NAN

        out["k_p"], out["k_eta2"] = float(table.loc["C(k)", "PR(>F)"]), partial("C(k)")
        if several_sizes:
            out["n_p"], out["n_eta2"] = float(table.loc["C(n)", "PR(>F)"]), partial("C(n)")
            term = "C(k):C(n)"
            out["interaction_f"] = float(table.loc[term, "F"])
            out["interaction_p"] = float(table.loc[term, "PR(>F)"])
            out["interaction_eta2"] = partial(term)
            ss_k, ss_kn = float(table.loc["C(k)", "sum_sq"]), float(table.loc[term, "sum_sq"])
            out["interaction_share"] = ss_kn / (ss_k + ss_kn) if ss_k + ss_kn > 0 else NAN
        out["_anova"] = table
    slope_model = smf.ols("score ~ unfrozen + C(n)" if several_sizes else "score ~ unfrozen", data=data).fit()
    out["slope"] = float(slope_model.params["unfrozen"])
    if slope_model.df_resid > 0:
        low, high = slope_model.conf_int().loc["unfrozen"]
        out["slope_low"], out["slope_high"] = float(low), float(high)
    return out


def _run_two_way(frame: pd.DataFrame, context: Context) -> AnalysisResult:
    strategy, L = context.params["strategy"], context.num_blocks
    column = score_column(context)
    rows = axis_rows(frame, strategy, "k")
    meanings = _two_way_quantities(context.params)
    result = AnalysisResult(dict.fromkeys(meanings, NAN), meanings)
    if rows.empty or column not in rows:
        result.notes.append(f"No finished {strategy} cells yet.")
        return result
    data = pd.DataFrame(
        {
            "score": rows[column].astype(float),
            "k": rows["k"].astype(int),
            "n": rows["n_train"].astype(int),
            "unfrozen": (L or 0) - rows["k"].astype(int),
        }
    )
    fitted = two_way_anova(data)
    anova = fitted.pop("_anova", None)
    result.quantities.update(fitted)
    if fitted["residual_df"] == 0 or fitted["residual_df"] != fitted["residual_df"]:
        result.notes.append(
            "One observation per (k, size): the two-way model has no residual, so the interaction "
            "cannot be tested. Run more seeds."
        )
    if anova is not None:
        names = {"C(k)": "k (frozen blocks)", "C(n)": "size", "C(k):C(n)": "k x size", "Residual": "residual"}
        table_rows = []
        for term, row in anova.iterrows():
            eta = (row["sum_sq"] / (row["sum_sq"] + anova.loc["Residual", "sum_sq"])) if term != "Residual" else NAN
            table_rows.append(
                [
                    names.get(term, term),
                    f"{row['sum_sq']:.5f}",
                    f"{row['df']:.0f}",
                    fmt(row.get("F", NAN), 2),
                    _p(row.get("PR(>F)", NAN)),
                    fmt(eta, 3),
                ]
            )
        result.tables.append(
            Table(
                f"Two-way model of {metric_label(context)}: score ~ C(k) * C(size) (OLS, type II sums of squares)",
                ["term", "sum of squares", "df", "F", "p", "partial eta squared"],
                table_rows,
            )
        )
    ks = sorted(data["k"].unique())
    sizes = sorted(data["n"].unique())
    cells = []
    for k in ks:
        line = [f"{k} ({(L or 0) - k} unfrozen)"]
        for n in sizes:
            scores = data[(data["k"] == k) & (data["n"] == n)]["score"]
            line.append(fmt_ci(*mean_interval(scores)))
        cells.append(line)
    result.tables.append(
        Table(
            f"Mean {metric_label(context)} [95% bootstrap interval over seeds]",
            ["frozen blocks k"] + [context.size_name(n) for n in sizes],
            cells,
        )
    )
    best = []
    for n in sizes:
        means = data[data["n"] == n].groupby("k")["score"].mean()
        best.append(
            [
                context.size_name(n),
                str(int(means.idxmax())),
                fmt(means.max()),
                fmt(means.get(0, NAN)),
                fmt(means.get(L, NAN)),
            ]
        )
    result.tables.append(
        Table("Best k per size", ["size", "best k", "its mean", "k=0 (full)", f"k={L} (head only)"], best)
    )
    if context.out_dir is not None:
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for i, n in enumerate(sizes):
            stats = [mean_interval(data[(data["k"] == k) & (data["n"] == n)]["score"]) for k in ks]
            means = np.array([s[0] for s in stats])
            errorbar(
                axes[0],
                ks,
                means,
                [s[1] for s in stats],
                [s[2] for s in stats],
                color=f"C{i}",
                label=context.size_name(n),
            )
            centred = means - np.nanmean(means)
            axes[1].plot(ks, centred, marker="o", color=f"C{i}", label=context.size_name(n))
        axes[0].set(
            xlabel=f"frozen blocks k (of {L}; 0 = full fine-tuning)",
            ylabel=metric_label(context),
            title="Score vs frozen blocks (95% bootstrap intervals)",
        )
        axes[1].set(
            xlabel=f"frozen blocks k (of {L})",
            ylabel="score minus the size's mean",
            title="Interaction plot: parallel lines = no interaction",
        )
        for ax in axes:
            ax.set_xticks(ks)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        name = save_figure(fig, context, "score_vs_k.png")
        result.figures.append(
            (
                name,
                "Test score vs frozen blocks, a line per training size; right: each line "
                "centred on its own mean, so that an interaction shows as lines that are "
                "not parallel.",
            )
        )
    return result


def _p(value: float) -> str:
    if value != value:
        return "n/a"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _check_two_way(params: dict, path: Path) -> None:
    if not isinstance(params["strategy"], str) or not params["strategy"]:
        raise UnfreezeError(f"{path}: [analysis] strategy must be the name of the strategy whose k is analysed.")


KIND = AnalysisKind(
    "two_way",
    "score ~ C(k) * C(size), fitted with statsmodels: the interaction's test and effect size",
    {"strategy": "freeze"},
    _two_way_quantities,
    _run_two_way,
    quick_sizes=2,
    check=_check_two_way,
)
