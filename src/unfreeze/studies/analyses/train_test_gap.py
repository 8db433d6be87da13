"""``train_test_gap``: train and test scores vs blocks unfrozen (freeze k) and vs blocks transferred (reinit m)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import (
    NAN,
    AnalysisKind,
    AnalysisResult,
    Context,
    Table,
    check_at,
    done_rows,
    errorbar,
    fmt_ci,
    mean_interval,
    pyplot,
    save_figure,
    score_column,
)


def _gap_quantities(params: dict) -> dict[str, str]:
    out = {}
    for axis, what in (("k", "unfrozen block (L - k, freeze)"), ("j", "transferred block (j = L - m, reinit)")):
        out.update(
            {
                f"gap_slope_{axis}": f"change in the train - test gap per {what}: mean over seeds of each seed's "
                "least-squares slope",
                f"gap_slope_{axis}_low": f"lower end of the 95% bootstrap interval of gap_slope_{axis}",
                f"gap_slope_{axis}_high": f"upper end of the 95% bootstrap interval of gap_slope_{axis}",
                f"train_slope_{axis}": f"change in the train score per {what}",
                f"test_slope_{axis}": f"change in the test score per {what}",
            }
        )
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
    test_col, train_col = score_column(context, "test"), score_column(context, "train")
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
        result.quantities.update(
            {
                f"gap_slope_{axis}": mean,
                f"gap_slope_{axis}_low": low,
                f"gap_slope_{axis}_high": high,
                f"train_slope_{axis}": float(_slopes(data, "x", train_col).mean()),
                f"test_slope_{axis}": float(_slopes(data, "x", test_col).mean()),
            }
        )
    titles = {
        "k": ("unfrozen blocks L - k (freeze)", "freeze k"),
        "j": ("blocks transferred j (reinit m = L - j)", "j"),
    }
    for axis, data in axes_rows.items():
        if data.empty:
            continue
        table_rows = []
        for x, group in data.groupby("x"):
            config = group["config"].iloc[0]
            table_rows.append(
                [
                    str(int(x)),
                    config,
                    fmt_ci(*mean_interval(group[train_col])),
                    fmt_ci(*mean_interval(group[test_col])),
                    fmt_ci(*mean_interval(group["gap"])),
                ]
            )
        result.tables.append(
            Table(
                f"Train and test {context.metric.replace('_', '-')} vs {titles[axis][0]}, "
                f"{context.size_name(n)} [95% bootstrap intervals over seeds]",
                [titles[axis][0], "configuration", "train", "test", "train - test"],
                table_rows,
            )
        )
    if context.out_dir is not None:
        plt = pyplot()
        present = [a for a in ("j", "k") if not axes_rows[a].empty]
        if present:
            fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 4), squeeze=False)
            for ax, axis in zip(axes[0], present):
                data = axes_rows[axis]
                xs = sorted(data["x"].unique())
                for split, col, style in (("train", train_col, "--"), ("test", test_col, "-")):
                    stats = [mean_interval(data[data["x"] == x][col]) for x in xs]
                    errorbar(
                        ax,
                        xs,
                        [s[0] for s in stats],
                        [s[1] for s in stats],
                        [s[2] for s in stats],
                        linestyle=style,
                        color="C0" if split == "test" else "C1",
                        label=split,
                    )
                ax.set(
                    xlabel=f"{titles[axis][0]} (of {L})",
                    ylabel=context.metric.replace("_", "-"),
                    title=("GPT-1 Fig. 2's axis: blocks transferred" if axis == "j" else "Blocks unfrozen"),
                )
                ax.set_xticks(xs)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
            name = save_figure(fig, context, "train_test.png")
            result.figures.append(
                (
                    name,
                    f"Train (dashed) and test (solid) scores at {context.size_name(n)}, "
                    "95% bootstrap intervals over seeds.",
                )
            )
    return result


KIND = AnalysisKind(
    "train_test_gap",
    "train and test scores vs blocks unfrozen (freeze k) and vs blocks transferred (reinit m)",
    {"at": "largest"},
    _gap_quantities,
    _run_train_test_gap,
    check=lambda p, path: check_at(p, path),
)
