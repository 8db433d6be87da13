"""The analyses a study can ask for: from result rows to named quantities, tables and plots. No torch.

Each analysis kind declares its parameters (``[analysis]`` in the study file), the
quantities it computes (the names a verdict rule may read, each with its meaning), how
many training sizes ``--quick`` keeps, and the configuration labels it needs. Its ``run``
takes the study's rows (one per finished or failed cell: ``config``, the strategy and its
parameters, ``n_train``, ``seed``, train/test metrics, costs) and a :class:`Context`.

Statistics: configurations share their samples seed by seed, so differences are paired
by seed, with percentile-bootstrap intervals over seeds (``unfreeze.report.stats``); a
single configuration's mean gets the bootstrap interval of its seed scores. One seed
gives no interval (NaN), and a rule that reads one is then inconclusive.

Kinds: ``two_way`` (score ~ k * size, statsmodels), ``train_test_gap`` (train vs test as
blocks are unfrozen or transferred), ``frozen_head`` (head only vs majority vs the last
block vs the rest), ``compare`` (named paired comparisons), ``cost_vs_k`` (seconds,
memory and score vs frozen blocks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UnfreezeError

NAN = math.nan


# -- what an analysis gets and gives ---------------------------------------------------------------

@dataclass
class Context:
    """What an analysis knows besides the rows."""

    metric: str
    params: dict
    num_blocks: int | None = None
    sizes: list[int] = field(default_factory=list)  # the planned training sizes (n_train), ascending
    per_class: dict[int, int] = field(default_factory=dict)  # n_train -> examples per class, when sizes are per class
    majority: dict[str, float] = field(default_factory=dict)  # the majority-class baseline's test metrics
    out_dir: Path | None = None  # where plots go (None: none drawn)
    title: str = ""

    def size_name(self, n: int) -> str:
        return f"{self.per_class[n]} per class (n={n})" if n in self.per_class else f"n={n}"

    def size_at(self, at: object) -> int | None:
        """The training size a verdict is read at: "largest", "smallest", or a size (per class when the
        study's sizes are per class); None when the study has no such size."""
        if not self.sizes:
            return None
        if at == "largest":
            return max(self.sizes)
        if at == "smallest":
            return min(self.sizes)
        if self.per_class:
            matches = [n for n, per in self.per_class.items() if per == at]
            return matches[0] if matches else None
        return at if at in self.sizes else None


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |",
                 "|" + "|".join("---" for _ in self.headers) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


@dataclass
class AnalysisResult:
    quantities: dict[str, float]
    meanings: dict[str, str]
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, caption)
    notes: list[str] = field(default_factory=list)


@dataclass
class AnalysisKind:
    name: str
    summary: str
    params: dict  # declared parameters and their defaults
    quantities: Callable[[dict], dict[str, str]]  # params -> {quantity: meaning}
    run: Callable[[pd.DataFrame, Context], AnalysisResult]
    quick_sizes: int = 1  # how many of the smallest sizes --quick keeps
    labels: Callable[[dict], list[str]] = lambda params: []  # configuration labels the analysis reads
    check: Callable[[dict, Path], None] = lambda params, path: None

    def check_params(self, given: dict, path: Path) -> dict:
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            keys = ", ".join(sorted(self.params)) or "none"
            raise UnfreezeError(f"{path}: unknown key {unknown[0]!r} in [analysis] (analysis {self.name}). "
                                f"Keys: {keys}.")
        params = {**self.params, **given}
        self.check(params, path)
        return params

    def quantity_names(self, params: dict) -> set[str]:
        return set(self.quantities(params))


# -- small statistics helpers ------------------------------------------------------------------------

def done_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "done"] if not frame.empty else frame


def seed_scores(frame: pd.DataFrame, config: str, n: int, column: str) -> pd.Series:
    """One configuration's ``column`` by seed at training size ``n`` (finished cells only)."""
    rows = done_rows(frame)
    if rows.empty or column not in rows:
        return pd.Series(dtype=float)
    rows = rows[(rows["config"] == config) & (rows["n_train"] == n)]
    return rows.groupby("seed")[column].mean().dropna()


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the 95% bootstrap interval of the mean over seeds (NaN interval with one value)."""
    from ..report.stats import bootstrap_interval

    values = [float(v) for v in values if v == v]
    if not values:
        return NAN, NAN, NAN
    interval = bootstrap_interval(values)
    mean = float(np.mean(values))
    return (mean, *interval) if interval else (mean, NAN, NAN)


def paired(candidate: pd.Series, reference: pd.Series) -> tuple[float, float, float, int]:
    """Mean paired difference candidate - reference over their shared seeds, its interval, and the seeds."""
    from ..report.stats import paired_difference

    if candidate.empty or reference.empty or not set(candidate.index) & set(reference.index):
        return NAN, NAN, NAN, 0
    diff = paired_difference(candidate, reference)
    low, high = diff.interval if diff.interval else (NAN, NAN)
    return diff.mean, low, high, diff.seeds


def fmt(value: float, digits: int = 3, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def fmt_ci(mean: float, low: float, high: float, sign: bool = False, digits: int = 3) -> str:
    """"0.812 [0.801, 0.823]", or the mean alone with "(one seed)" when there is no interval."""
    if mean != mean:
        return "n/a"
    if low != low or high != high:
        return f"{fmt(mean, digits, sign)} (no interval)"
    return f"{fmt(mean, digits, sign)} [{fmt(low, digits, sign)}, {fmt(high, digits, sign)}]"


def _mean_of(frame: pd.DataFrame, config: str, n: int, column: str) -> float:
    values = seed_scores(frame, config, n, column)
    return float(values.mean()) if not values.empty else NAN


def _axis_rows(frame: pd.DataFrame, strategy: str, param: str) -> pd.DataFrame:
    rows = done_rows(frame)
    if rows.empty or param not in rows:
        return rows.iloc[0:0] if not rows.empty else rows
    return rows[(rows["strategy"] == strategy) & rows[param].notna()]


def _plots():
    from ..report import plots  # matplotlib with the Agg backend

    return plots.plt


def _save(fig, context: Context, name: str) -> str | None:
    if context.out_dir is None:
        return None
    fig.tight_layout()
    fig.savefig(context.out_dir / name, dpi=110)
    _plots().close(fig)
    return name


def _errorbar(ax, x, means, lows, highs, **kwargs):
    means, lows, highs = (np.asarray(v, float) for v in (means, lows, highs))
    low_err = np.where(np.isnan(lows), 0.0, means - lows)
    high_err = np.where(np.isnan(highs), 0.0, highs - means)
    ax.errorbar(x, means, yerr=[low_err, high_err], capsize=3, marker="o", ms=4, **kwargs)


def _metric_label(context: Context, split: str = "test") -> str:
    return f"{split} {context.metric.replace('_', '-')}"


def _column(context: Context, split: str = "test") -> str:
    return f"{split}_{context.metric}"


# -- two_way: score ~ C(k) * C(n) ---------------------------------------------------------------------

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


def two_way_anova(data: pd.DataFrame) -> dict[str, float]:
    """Fit ``score ~ C(k) * C(n)`` (OLS) and ``score ~ unfrozen + C(n)``; the interaction's test and effect sizes.

    ``data`` has columns ``score``, ``k``, ``n`` and ``unfrozen``. With one observation per cell the
    full model has no residual: the interaction cannot be tested and its quantities are NaN.
    """
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    out = dict.fromkeys(_two_way_quantities({}), NAN)
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
        out["_anova"] = table  # type: ignore[assignment]
    slope_model = smf.ols("score ~ unfrozen + C(n)" if several_sizes else "score ~ unfrozen", data=data).fit()
    out["slope"] = float(slope_model.params["unfrozen"])
    if slope_model.df_resid > 0:
        low, high = slope_model.conf_int().loc["unfrozen"]
        out["slope_low"], out["slope_high"] = float(low), float(high)
    return out


def _run_two_way(frame: pd.DataFrame, context: Context) -> AnalysisResult:
    strategy, L = context.params["strategy"], context.num_blocks
    column = _column(context)
    rows = _axis_rows(frame, strategy, "k")
    meanings = _two_way_quantities(context.params)
    result = AnalysisResult(dict.fromkeys(meanings, NAN), meanings)
    if rows.empty or column not in rows:
        result.notes.append(f"No finished {strategy} cells yet.")
        return result
    data = pd.DataFrame({"score": rows[column].astype(float), "k": rows["k"].astype(int),
                         "n": rows["n_train"].astype(int), "unfrozen": (L or 0) - rows["k"].astype(int)})
    fitted = two_way_anova(data)
    anova = fitted.pop("_anova", None)
    result.quantities.update(fitted)
    if fitted["residual_df"] == 0 or fitted["residual_df"] != fitted["residual_df"]:
        result.notes.append("One observation per (k, size): the two-way model has no residual, so the interaction "
                            "cannot be tested. Run more seeds.")
    if anova is not None:
        names = {"C(k)": "k (frozen blocks)", "C(n)": "size", "C(k):C(n)": "k x size", "Residual": "residual"}
        table_rows = []
        for term, row in anova.iterrows():
            eta = (row["sum_sq"] / (row["sum_sq"] + anova.loc["Residual", "sum_sq"])) if term != "Residual" else NAN
            table_rows.append([names.get(term, term), f"{row['sum_sq']:.5f}", f"{row['df']:.0f}",
                               fmt(row.get("F", NAN), 2), _p(row.get("PR(>F)", NAN)), fmt(eta, 3)])
        result.tables.append(Table(f"Two-way model of {_metric_label(context)}: score ~ C(k) * C(size) (OLS, "
                                   "type II sums of squares)", ["term", "sum of squares", "df", "F", "p",
                                                                "partial eta squared"], table_rows))
    ks = sorted(data["k"].unique())
    sizes = sorted(data["n"].unique())
    cells = []
    for k in ks:
        line = [f"{k} ({(L or 0) - k} unfrozen)"]
        for n in sizes:
            scores = data[(data["k"] == k) & (data["n"] == n)]["score"]
            line.append(fmt_ci(*mean_interval(scores)))
        cells.append(line)
    result.tables.append(Table(f"Mean {_metric_label(context)} [95% bootstrap interval over seeds]",
                               ["frozen blocks k"] + [context.size_name(n) for n in sizes], cells))
    best = []
    for n in sizes:
        means = data[data["n"] == n].groupby("k")["score"].mean()
        best.append([context.size_name(n), str(int(means.idxmax())), fmt(means.max()), fmt(means.get(0, NAN)),
                     fmt(means.get(L, NAN))])
    result.tables.append(Table("Best k per size", ["size", "best k", "its mean", "k=0 (full)", f"k={L} (head only)"],
                               best))
    if context.out_dir is not None:
        plt = _plots()
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for i, n in enumerate(sizes):
            stats = [mean_interval(data[(data["k"] == k) & (data["n"] == n)]["score"]) for k in ks]
            means = np.array([s[0] for s in stats])
            _errorbar(axes[0], ks, means, [s[1] for s in stats], [s[2] for s in stats], color=f"C{i}",
                      label=context.size_name(n))
            centred = means - np.nanmean(means)
            axes[1].plot(ks, centred, marker="o", color=f"C{i}", label=context.size_name(n))
        axes[0].set(xlabel=f"frozen blocks k (of {L}; 0 = full fine-tuning)", ylabel=_metric_label(context),
                    title="Score vs frozen blocks (95% bootstrap intervals)")
        axes[1].set(xlabel=f"frozen blocks k (of {L})", ylabel="score minus the size's mean",
                    title="Interaction plot: parallel lines = no interaction")
        for ax in axes:
            ax.set_xticks(ks)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        name = _save(fig, context, "score_vs_k.png")
        result.figures.append((name, "Test score vs frozen blocks, a line per training size; right: each line "
                                     "centred on its own mean, so that an interaction shows as lines that are "
                                     "not parallel."))
    return result


def _p(value: float) -> str:
    if value != value:
        return "n/a"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


# -- train_test_gap: train and test vs unfrozen and transferred blocks -------------------------------

def _gap_quantities(params: dict) -> dict[str, str]:
    out = {}
    for axis, what in (("k", "unfrozen block (L - k, freeze)"), ("j", "transferred block (j = L - m, reinit)")):
        out.update({
            f"gap_slope_{axis}": f"change in the train - test gap per {what}: mean over seeds of each seed's "
                                 "least-squares slope",
            f"gap_slope_{axis}_low": f"lower end of the 95% bootstrap interval of gap_slope_{axis}",
            f"gap_slope_{axis}_high": f"upper end of the 95% bootstrap interval of gap_slope_{axis}",
            f"train_slope_{axis}": f"change in the train score per {what}",
            f"test_slope_{axis}": f"change in the test score per {what}",
        })
    return out


def _slopes(rows: pd.DataFrame, x: str, column: str) -> pd.Series:
    """Per seed: the least-squares slope of ``column`` against ``x``."""
    out = {}
    for seed, group in rows.groupby("seed"):
        group = group.dropna(subset=[column])
        if group[x].nunique() >= 2:
            out[seed] = float(np.polyfit(group[x].astype(float), group[column].astype(float), 1)[0])
    return pd.Series(out, dtype=float)


def _run_train_test_gap(frame: pd.DataFrame, context: Context) -> AnalysisResult:
    L = context.num_blocks or 0
    meanings = _gap_quantities(context.params)
    result = AnalysisResult(dict.fromkeys(meanings, NAN), meanings)
    n = context.size_at(context.params["at"])
    test_col, train_col = _column(context, "test"), _column(context, "train")
    rows = done_rows(frame)
    if rows.empty or n is None or test_col not in rows or train_col not in rows:
        result.notes.append("No finished cells at the study's size yet.")
        return result
    rows = rows[rows["n_train"] == n].copy()
    rows["gap"] = rows[train_col] - rows[test_col]
    freeze = rows[(rows["strategy"] == "freeze") & rows.get("k", pd.Series(dtype=float)).notna()].copy()
    freeze["x"] = L - freeze["k"].astype(int)
    reinit = rows[(rows["strategy"] == "reinit") & rows.get("m", pd.Series(dtype=float)).notna()].copy()
    reinit["x"] = L - reinit["m"].astype(int)
    transfer = pd.concat([reinit, freeze[freeze["k"] == 0]])  # j = L: nothing re-initialised
    axes_rows = {"k": freeze, "j": transfer}
    for axis, data in axes_rows.items():
        if data.empty:
            continue
        gaps = _slopes(data, "x", "gap")
        mean, low, high = mean_interval(gaps.to_numpy())
        result.quantities.update({f"gap_slope_{axis}": mean, f"gap_slope_{axis}_low": low,
                                  f"gap_slope_{axis}_high": high,
                                  f"train_slope_{axis}": float(_slopes(data, "x", train_col).mean()),
                                  f"test_slope_{axis}": float(_slopes(data, "x", test_col).mean())})
    titles = {"k": ("unfrozen blocks L - k (freeze)", "freeze k"), "j": ("blocks transferred j (reinit m = L - j)",
                                                                          "j")}
    for axis, data in axes_rows.items():
        if data.empty:
            continue
        table_rows = []
        for x, group in data.groupby("x"):
            config = group["config"].iloc[0]
            table_rows.append([str(int(x)), config, fmt_ci(*mean_interval(group[train_col])),
                               fmt_ci(*mean_interval(group[test_col])), fmt_ci(*mean_interval(group["gap"]))])
        result.tables.append(Table(f"Train and test {context.metric.replace('_', '-')} vs {titles[axis][0]}, "
                                   f"{context.size_name(n)} [95% bootstrap intervals over seeds]",
                                   [titles[axis][0], "configuration", "train", "test", "train - test"], table_rows))
    if context.out_dir is not None:
        plt = _plots()
        present = [a for a in ("j", "k") if not axes_rows[a].empty]
        if present:
            fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 4), squeeze=False)
            for ax, axis in zip(axes[0], present):
                data = axes_rows[axis]
                xs = sorted(data["x"].unique())
                for split, col, style in (("train", train_col, "--"), ("test", test_col, "-")):
                    stats = [mean_interval(data[data["x"] == x][col]) for x in xs]
                    _errorbar(ax, xs, [s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats],
                              linestyle=style, color="C0" if split == "test" else "C1", label=split)
                ax.set(xlabel=f"{titles[axis][0]} (of {L})", ylabel=context.metric.replace("_", "-"),
                       title=("GPT-1 Fig. 2's axis: blocks transferred" if axis == "j" else "Blocks unfrozen"))
                ax.set_xticks(xs)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
            name = _save(fig, context, "train_test.png")
            result.figures.append((name, f"Train (dashed) and test (solid) scores at {context.size_name(n)}, "
                                         "95% bootstrap intervals over seeds."))
    return result


# -- frozen_head: head only vs majority vs the last block vs the rest --------------------------------

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
    column = _column(context)
    q["majority"] = context.majority.get(context.metric, NAN)
    rows = _axis_rows(frame, "freeze", "k")
    if n is None or rows.empty or column not in rows:
        result.notes.append("No finished freeze cells yet.")
        return result
    by_k = {int(k): rows[(rows["k"] == k) & (rows["n_train"] == n)].groupby("seed")[column].mean()
            for k in sorted(rows["k"].unique())}
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
        table_rows.append([f"{head_label} (head only, fitted to convergence)", str(L), fmt_ci(*mean_interval(head)),
                           ""])
    for k in sorted(by_k, reverse=True):
        step = ""
        if k == L - 1 and not head.empty:
            step = fmt_ci(q["first_step"], q["first_step_low"], q["first_step_high"], sign=True) + " vs head"
        for a, b, diff, low, high in steps:
            if b == k:
                step = fmt_ci(diff, low, high, sign=True) + f" vs k={a} ({a - b} block{'s' if a - b > 1 else ''})"
        table_rows.append([f"freeze k={k}" + (" (head only, shared loop)" if k == L else ""), str(L - k),
                           fmt_ci(*mean_interval(by_k[k])), step])
    result.tables.append(Table(f"{_metric_label(context).capitalize()} at {context.size_name(n)}, from the frozen "
                               "body up [95% bootstrap intervals over seeds; steps paired by seed]",
                               ["configuration", "blocks trained", "mean", "step"], table_rows))
    if context.out_dir is not None:
        plt = _plots()
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ks = sorted(by_k)
        stats = [mean_interval(by_k[k]) for k in ks]
        _errorbar(ax, [L - k for k in ks], [s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats],
                  color="C1", label="freeze (shared loop)")
        if head_label and not head.empty:
            mean, low, high = mean_interval(head)
            _errorbar(ax, [0], [mean], [low], [high], color="C0", label=f"{head_label} (head only)", linestyle="")
        ax.axhline(q["majority"], color="gray", ls=":", label="majority class")
        ax.set(xlabel=f"blocks unfrozen (L - k, of {L})", ylabel=_metric_label(context),
               title=f"From the frozen body up, {context.size_name(n)}")
        ax.set_xticks([L - k for k in ks])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        name = _save(fig, context, "frozen_head.png")
        result.figures.append((name, "Test score vs blocks unfrozen, with the majority-class baseline and the "
                                     "converged head on the frozen body; 95% bootstrap intervals over seeds."))
    if L in by_k and not head.empty and q["head_loop"] < q["head"] - 0.02:
        result.notes.append(f"freeze k={L} (a linear head trained for the loop's few epochs) scores "
                            f"{q['head_loop']:.3f}, below the converged head ({q['head']:.3f}): the loop's epochs "
                            "are too few for a head alone, which is why the rule reads the converged head.")
    return result


# -- compare: named paired comparisons ----------------------------------------------------------------

COMPARE_SUFFIXES = {"": "mean paired difference {c} - {r} (over seeds)", "_low": "lower end of its 95% interval",
                    "_high": "upper end of its 95% interval", "_candidate": "mean score of {c}",
                    "_reference": "mean score of {r}",
                    "_params_ratio": "trainable parameters of {c} / those of {r}",
                    "_seconds_ratio": "fit seconds of {c} / those of {r} (mean over seeds)"}


def _compare_quantities(params: dict) -> dict[str, str]:
    out = {}
    for name, (candidate, reference) in params["comparisons"].items():
        for suffix, meaning in COMPARE_SUFFIXES.items():
            out[f"{name}{suffix}"] = meaning.format(c=candidate, r=reference)
    return out


def _check_compare(params: dict, path: Path) -> None:
    comparisons = params["comparisons"]
    if not isinstance(comparisons, dict) or not comparisons:
        raise UnfreezeError(f"{path}: [analysis] comparisons must name at least one comparison, e.g. "
                            "comparisons = { lora = [\"lora r=8\", \"freeze k=0\"] }.")
    for name, pair in comparisons.items():
        if not name.isidentifier():
            raise UnfreezeError(f"{path}: comparison name {name!r} must be a plain name (letters, digits, _).")
        if (not isinstance(pair, list) or len(pair) != 2 or
                not all(isinstance(p, str) and p for p in pair)):
            raise UnfreezeError(f"{path}: comparison {name!r} must be [candidate, reference] (two configuration "
                                f"labels). Got {pair!r}.")
    _check_at(params, path)
    if not isinstance(params["order"], list):
        raise UnfreezeError(f"{path}: [analysis] order must be a list of configuration labels.")
    if not isinstance(params["order_by_difficulty"], bool):
        raise UnfreezeError(f"{path}: [analysis] order_by_difficulty must be true or false.")


def _check_at(params: dict, path: Path) -> None:
    at = params["at"]
    if at not in ("largest", "smallest") and (not isinstance(at, int) or isinstance(at, bool) or at < 1):
        raise UnfreezeError(f"{path}: [analysis] at must be \"largest\", \"smallest\" or a training size "
                            f"(per class when the study's sizes are). Got {at!r}.")


def _compare_labels(params: dict) -> list[str]:
    return list(dict.fromkeys(label for pair in params["comparisons"].values() for label in pair))


def _run_compare(frame: pd.DataFrame, context: Context) -> AnalysisResult:
    params = context.params
    meanings = _compare_quantities(params)
    q = dict.fromkeys(meanings, NAN)
    result = AnalysisResult(q, meanings)
    column = _column(context)
    n_at = context.size_at(params["at"])
    rows = done_rows(frame)
    sizes = [n for n in context.sizes if not rows.empty and (rows["n_train"] == n).any()]
    configs = list(dict.fromkeys([*params["order"], *([] if rows.empty else rows["config"].unique())]))
    configs = [c for c in configs if not rows.empty and (rows["config"] == c).any()]
    if rows.empty or column not in rows:
        result.notes.append("No finished cells yet.")
        return result

    def cost(config: str, n: int, col: str) -> float:
        return _mean_of(rows, config, n, col) if col in rows else NAN

    for n in sizes:
        table_rows = []
        for config in configs:
            scores = seed_scores(rows, config, n, column)
            if scores.empty:
                continue
            trainable = cost(config, n, "trainable_parameters")
            table_rows.append([config, str(len(scores)), fmt_ci(*mean_interval(scores)),
                               fmt(cost(config, n, "fit_seconds"), 1),
                               f"{trainable:,.0f}" if trainable == trainable else "n/a"])
        result.tables.append(Table(f"{_metric_label(context).capitalize()} at {context.size_name(n)} [95% bootstrap "
                                   "interval over seeds]", ["configuration", "seeds", "mean", "fit seconds",
                                                            "trainable parameters"], table_rows))
        comp_rows = []
        for name, (candidate, reference) in params["comparisons"].items():
            diff, low, high, seeds = paired(seed_scores(rows, candidate, n, column),
                                            seed_scores(rows, reference, n, column))
            if seeds:
                comp_rows.append([name, f"{candidate} - {reference}", str(seeds), fmt_ci(diff, low, high, sign=True)])
            if n == n_at:
                q.update({name: diff, f"{name}_low": low, f"{name}_high": high,
                          f"{name}_candidate": _mean_of(rows, candidate, n, column),
                          f"{name}_reference": _mean_of(rows, reference, n, column)})
                ref_params, ref_seconds = cost(reference, n, "trainable_parameters"), cost(reference, n, "fit_seconds")
                if ref_params and ref_params == ref_params:
                    q[f"{name}_params_ratio"] = cost(candidate, n, "trainable_parameters") / ref_params
                if ref_seconds and ref_seconds == ref_seconds:
                    q[f"{name}_seconds_ratio"] = cost(candidate, n, "fit_seconds") / ref_seconds
        if comp_rows:
            result.tables.append(Table(f"Paired differences at {context.size_name(n)} (95% bootstrap intervals over "
                                       "seeds)", ["comparison", "candidate - reference", "seeds", "difference"],
                                       comp_rows))
    if n_at is not None and n_at not in sizes:
        result.notes.append(f"No finished cells at {context.size_name(n_at)}, the size the verdict reads.")
    if context.out_dir is not None and configs and sizes:
        plt = _plots()
        from ..report.plots import color_of

        if len(sizes) > 1:
            fig, ax = plt.subplots(figsize=(6.8, 4.4))
            for i, config in enumerate(configs):
                stats = [mean_interval(seed_scores(rows, config, n, column)) for n in sizes]
                present = [(n, s) for n, s in zip(sizes, stats) if s[0] == s[0]]
                if not present:
                    continue
                strategy = rows[rows["config"] == config]["strategy"].iloc[0]
                xs = [context.per_class.get(n, n) for n, _ in present]
                _errorbar(ax, xs, [s[0] for _, s in present], [s[1] for _, s in present],
                          [s[2] for _, s in present], color=color_of(strategy) if i < 10 else None,
                          linestyle=["-", "--", ":", "-."][i % 4], label=config)
            ax.set_xscale("log")
            xs = [context.per_class.get(n, n) for n in sizes]
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
            ax.set(xlabel="examples per class" if context.per_class else "training examples (log scale)",
                   ylabel=_metric_label(context), title="Score vs training size (95% bootstrap intervals)")
        else:
            n = sizes[0]
            fig, ax = plt.subplots(figsize=(7.2, 0.45 * len(configs) + 1.6))
            for y, config in enumerate(configs):
                mean, low, high = mean_interval(seed_scores(rows, config, n, column))
                strategy = rows[rows["config"] == config]["strategy"].iloc[0]
                _errorbar_h(ax, y, mean, low, high, color_of(strategy))
            ax.set_yticks(range(len(configs)), configs, fontsize=8)
            ax.invert_yaxis()
            ax.set(xlabel=_metric_label(context), title=f"{context.size_name(n)} (95% bootstrap intervals)")
        majority = context.majority.get(context.metric)
        if majority is not None:
            (ax.axhline if len(sizes) > 1 else ax.axvline)(majority, color="gray", ls=":", lw=1,
                                                          label="majority class")
        ax.grid(alpha=0.3)
        if len(sizes) > 1:
            ax.legend(fontsize=7)
        name = _save(fig, context, "comparison.png")
        result.figures.append((name, "Test score of each configuration, mean over seeds with 95% bootstrap "
                                     "intervals; the dotted line is the majority class."))
    return result


def _errorbar_h(ax, y, mean, low, high, color):
    if mean != mean:
        return
    xerr = [[0.0 if low != low else mean - low], [0.0 if high != high else high - mean]]
    ax.errorbar([mean], [y], xerr=xerr, capsize=3, marker="o", ms=5, color=color)


# -- cost_vs_k: seconds, memory and score vs frozen blocks --------------------------------------------

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
    from ..report.stats import compare_to_best

    L = context.num_blocks or 0
    params = context.params
    meanings = _cost_quantities(params)
    q = dict.fromkeys(meanings, NAN)
    result = AnalysisResult(q, meanings)
    n = context.size_at(params["at"])
    column = _column(context)
    rows = _axis_rows(frame, "freeze", "k")
    if n is not None and not rows.empty:
        rows = rows[rows["n_train"] == n]
    if n is None or rows.empty or column not in rows:
        result.notes.append("No finished freeze cells at the study's size yet.")
        return result
    rows = rows.assign(k=rows["k"].astype(int))
    scores = rows.pivot_table(index="seed", columns="k", values=column, aggfunc="mean")
    mean_of = rows.groupby("k")[["fit_seconds", "peak_memory_mib", "trainable_parameters"]].mean()
    table = compare_to_best(scores, mean_of["fit_seconds"].reindex(scores.columns), params["tolerance"])
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
        table_rows.append([str(k), str(L - k), fmt_ci(*mean_interval(scores[k].dropna())),
                           fmt_ci(*diff[:3], sign=True) if k else "", fmt(mean_of.loc[k, "fit_seconds"], 1),
                           fmt(mean_of.loc[k, "peak_memory_mib"], 0),
                           f"{mean_of.loc[k, 'trainable_parameters']:,.0f}", mark])
    result.tables.append(Table(
        f"Cost and {_metric_label(context)} vs frozen blocks at {context.size_name(n)}",
        ["k", "blocks trained", "test [95% interval]", "vs k=0 (paired)", "fit seconds", "peak memory MiB",
         "trainable parameters", "role"], table_rows,
        note=f"role: best, the highest mean score; pick: the cheapest k not shown worse than the best by more "
             f"than {params['tolerance']} (its paired interval reaches that far). Seconds and memory are means "
             "over seeds; fit seconds include the learning-rate search (three fits per cell); memory is the "
             "process' peak resident set on a CPU (the loaded model and caches included), the peak allocated "
             "memory on a GPU."))
    if context.out_dir is not None:
        plt = _plots()
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        ks = sorted(scores.columns)
        stats = [mean_interval(scores[k].dropna()) for k in ks]
        _errorbar(axes[0], ks, [s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats], color="C1")
        axes[0].set(ylabel=_metric_label(context), title="Score (95% bootstrap intervals)")
        axes[1].plot(ks, [mean_of.loc[k, "fit_seconds"] for k in ks], marker="o", color="C3")
        axes[1].set(ylabel="fit seconds (mean over seeds)", title="Time to fit")
        axes[2].plot(ks, [mean_of.loc[k, "peak_memory_mib"] for k in ks], marker="o", color="C4")
        axes[2].set(ylabel="peak memory MiB", title="Peak memory")
        for ax in axes:
            ax.set_xticks(ks)
            ax.set_xlabel(f"frozen blocks k (of {L})")
            ax.grid(alpha=0.3)
        axes[0].axvline(pick, color="gray", ls=":", lw=1)
        name = _save(fig, context, "cost_vs_k.png")
        result.figures.append((name, f"Score, fit seconds and peak memory vs frozen blocks at {context.size_name(n)}; "
                                     "the dotted line marks the pick."))
    return result


def _check_cost(params: dict, path: Path) -> None:
    _check_at(params, path)
    tolerance = params["tolerance"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise UnfreezeError(f"{path}: [analysis] tolerance must be a number >= 0. Got {tolerance!r}.")


def _check_two_way(params: dict, path: Path) -> None:
    if not isinstance(params["strategy"], str) or not params["strategy"]:
        raise UnfreezeError(f"{path}: [analysis] strategy must be the name of the strategy whose k is analysed.")


def _check_head(params: dict, path: Path) -> None:
    _check_at(params, path)
    if not isinstance(params["head_only"], str):
        raise UnfreezeError(f"{path}: [analysis] head_only must be a configuration label (or \"\" for freeze k=L).")


ANALYSES: dict[str, AnalysisKind] = {
    "two_way": AnalysisKind(
        "two_way", "score ~ C(k) * C(size), fitted with statsmodels: the interaction's test and effect size",
        {"strategy": "freeze"}, _two_way_quantities, _run_two_way, quick_sizes=2, check=_check_two_way),
    "train_test_gap": AnalysisKind(
        "train_test_gap", "train and test scores vs blocks unfrozen (freeze k) and vs blocks transferred (reinit m)",
        {"at": "largest"}, _gap_quantities, _run_train_test_gap, check=lambda p, path: _check_at(p, path)),
    "frozen_head": AnalysisKind(
        "frozen_head", "head on the frozen body vs the majority class vs the last block vs the rest",
        {"at": "largest", "head_only": "features"}, _frozen_head_quantities, _run_frozen_head,
        labels=lambda p: [p["head_only"]] if p["head_only"] else [], check=_check_head),
    "compare": AnalysisKind(
        "compare", "named paired comparisons between configurations, at every size",
        {"comparisons": {}, "at": "largest", "order": [], "order_by_difficulty": False}, _compare_quantities, _run_compare,
        labels=_compare_labels, check=_check_compare),
    "cost_vs_k": AnalysisKind(
        "cost_vs_k", "fit seconds, peak memory and score vs frozen blocks",
        {"at": "largest", "tolerance": 0.01}, _cost_quantities, _run_cost_vs_k, check=_check_cost),
}


def analysis_kind(name: str) -> AnalysisKind:
    if name not in ANALYSES:
        raise UnfreezeError(f"Unknown analysis {name!r}. Analyses: {', '.join(sorted(ANALYSES))}.")
    return ANALYSES[name]


__all__ = ["ANALYSES", "AnalysisKind", "AnalysisResult", "Context", "Table", "analysis_kind", "fmt", "fmt_ci",
           "mean_interval", "paired", "seed_scores", "two_way_anova"]
