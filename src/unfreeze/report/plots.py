"""The plots of a sweep, from its result rows alone (matplotlib, Agg; no torch)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd

from .tables import STRATEGY_ORDER

COLORS = {s: f"C{i}" for i, s in enumerate(STRATEGY_ORDER)}
# strategies from plugins take the colours after the built-ins', in a stable order
EXTRA_COLORS = ("tab:olive", "tab:cyan", "tab:gray", "tab:pink", "tab:brown", "gold", "navy", "teal")


def color_of(strategy: str) -> str:
    if strategy in COLORS:
        return COLORS[strategy]
    return EXTRA_COLORS[sum(map(ord, strategy)) % len(EXTRA_COLORS)]


# lines of the score-vs-n plot, coloured like their strategy elsewhere
LINE_COLORS = {
    "features": COLORS["features"],
    "freeze (best k)": COLORS["freeze"],
    "full (k=0)": COLORS["full"],
    "reinit": COLORS["reinit"],
    "lora": COLORS["lora"],
    "setfit": COLORS["setfit"],
}


def _band(ax, x, mean, std, color, style, label):
    ax.plot(x, mean, style, color=color, label=label, marker="o", ms=3.5)
    if (std > 0).any():
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.12 if style == "-" else 0.07, lw=0)


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def score_vs_k(summary: pd.DataFrame, metric: str, path: Path, num_blocks: int | None = None) -> Path | None:
    """Score vs frozen blocks, a line per training size: test solid, train dashed, band = ±1 std over seeds."""
    rows = summary[summary["strategy"].isin(["freeze", "full"])].copy()
    if rows.empty or rows["k"].fillna(0).nunique() < 2:
        return None
    rows["k"] = rows["k"].fillna(0).astype(int)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (n, group) in enumerate(rows.groupby("n_train")):
        group = group.groupby("k").mean(numeric_only=True).reset_index().sort_values("k")
        color = f"C{i}"
        _band(ax, group["k"], group["test_mean"], group["test_std"], color, "-", f"n={n} test")
        _band(ax, group["k"], group["train_mean"], group["train_std"], color, "--", f"n={n} train")
    ax.set_xticks(sorted(rows["k"].unique()))
    blocks = f" of {num_blocks}" if num_blocks else ""
    return _finish(
        fig,
        ax,
        path,
        f"frozen blocks k{blocks} (0 = full fine-tuning)",
        metric_label(metric),
        f"{metric_label(metric)} vs frozen blocks (mean ± std over seeds)",
    )


def metric_label(metric: str) -> str:
    """A metric's name on an axis: macro-f1, spearman, rmse."""
    return metric.replace("_", "-")


def best_per_strategy(summary: pd.DataFrame, sign: float = 1.0) -> pd.DataFrame:
    """One line per strategy over n: features, freeze at its best k per n, full (k=0), reinit, lora, setfit.
    ``sign``: -1 where the lowest score is the best (RMSE)."""
    lines = []
    for (strategy, _n), group in summary.groupby(["strategy", "n_train"]):
        if strategy == "freeze":
            zero = group[group["k"] == 0]
            if not zero.empty:
                lines.append(zero.iloc[0].to_dict() | {"line": "full (k=0)"})
            above = group[group["k"] > 0]
            if not above.empty:
                best = above.loc[(sign * above["test_mean"]).idxmax()]
                lines.append(best.to_dict() | {"line": "freeze (best k)"})
        else:
            best = group.loc[(sign * group["test_mean"]).idxmax()]
            lines.append(best.to_dict() | {"line": "full (k=0)" if strategy == "full" else strategy})
    return pd.DataFrame(lines)


def score_vs_n(summary: pd.DataFrame, metric: str, path: Path, sign: float = 1.0) -> Path | None:
    """Test score vs training size: a line per strategy at its best configuration per size."""
    lines = best_per_strategy(summary, sign)
    if lines.empty or lines["n_train"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, group in lines.groupby("line", sort=False):
        group = group.sort_values("n_train")
        _band(
            ax,
            group["n_train"],
            group["test_mean"],
            group["test_std"],
            LINE_COLORS.get(name) or color_of(name),
            "-",
            name,
        )
        if name == "freeze (best k)":
            for _, row in group.iterrows():
                ax.annotate(
                    f"k={int(row['k'])}",
                    (row["n_train"], row["test_mean"]),
                    fontsize=6,
                    textcoords="offset points",
                    xytext=(3, -9),
                )
    ax.set_xscale("log")
    ax.set_xticks(sorted(lines["n_train"].unique()), [str(n) for n in sorted(lines["n_train"].unique())])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    return _finish(
        fig,
        ax,
        path,
        "training examples (log scale)",
        f"test {metric_label(metric)}",
        f"{metric_label(metric)} vs training-set size, per strategy (mean ± std over seeds)",
    )


def score_vs_cost(summary: pd.DataFrame, metric: str, path: Path) -> Path | None:
    """Test score vs fit seconds, vs trainable parameters and (when timed) vs prediction time per text,
    a colour per strategy, a marker size per n."""
    if summary.empty:
        return None
    columns = ["fit_seconds", "trainable_parameters"]
    labels = ["fit seconds (log)", "trainable parameters (log; features: 1)"]
    if "predict_seconds_per_text" in summary and summary["predict_seconds_per_text"].notna().any():
        columns.append("predict_seconds_per_text")
        labels.append("prediction seconds per text (log)")
    fig, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 4.2))
    sizes = {n: 18 + 14 * i for i, n in enumerate(sorted(summary["n_train"].unique()))}
    for strategy, group in summary.groupby("strategy"):
        for ax, column in zip(axes, columns):
            x = group[column].clip(
                lower=1 if column == "trainable_parameters" else 1e-6 if "predict" in column else 1e-2
            )
            ax.scatter(
                x,
                group["test_mean"],
                s=group["n_train"].map(sizes),
                color=color_of(strategy),
                alpha=0.75,
                label=strategy,
            )
    for ax, label in zip(axes, labels):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {metric_label(metric)}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[1].legend(handles, labels, fontsize=7, title="marker size = n", title_fontsize=7)
    fig.suptitle(f"Which strategy is worth its cost (test {metric_label(metric)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def score_vs_blocks_kept(frame: pd.DataFrame, metric: str, path: Path, num_blocks: int | None = None) -> Path | None:
    """``truncate`` cells: test score vs blocks kept, a line per training size (band = ±1 std over seeds),
    and prediction time per text on a second axis (GPT-1 Fig. 2's x-axis; Sajjad et al. 2020)."""
    if "j" not in frame or f"test_{metric}" not in frame:
        return None
    rows = frame[(frame["strategy"] == "truncate") & (frame["status"] == "done") & frame["j"].notna()].copy()
    if rows.empty:
        return None
    rows["j"] = rows["j"].astype(int)
    rows["predict_ms"] = 1000 * pd.to_numeric(rows.get("predict_seconds_per_text"), errors="coerce")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (n, group) in enumerate(rows.groupby("n_train")):
        stats = group.groupby("j")[f"test_{metric}"].agg(["mean", "std"]).fillna(0.0).reset_index()
        _band(ax, stats["j"], stats["mean"], stats["std"], f"C{i}", "-", f"n={n} test")
    ax.set_xticks(sorted(rows["j"].unique()))
    timing = rows.groupby("j")["predict_ms"].mean().dropna()
    if not timing.empty:
        right = ax.twinx()
        right.plot(
            timing.index, timing.to_numpy(), ":", color="black", marker="s", ms=3.5, label="prediction ms per text"
        )
        right.set_ylabel("prediction ms per text (mean over cells)")
        right.set_ylim(bottom=0)
        right.legend(fontsize=7, loc="lower right")
    blocks = f" of {num_blocks}" if num_blocks else ""
    return _finish(
        fig,
        ax,
        path,
        f"blocks kept j{blocks} (truncate; the top L-j removed)",
        f"test {metric_label(metric)}",
        f"{metric_label(metric)} and prediction time vs blocks kept (mean ± std over seeds)",
    )


def layer_weights(frame: pd.DataFrame, path: Path, num_blocks: int | None = None) -> Path | None:
    """The learned weight of each hidden state vs its layer (``mix`` cells), a line per configuration and
    training size, averaged over seeds (band: ±1 std). Layer 0 is the embeddings."""
    if frame.empty or "layer_weights" not in frame:
        return None
    rows = frame[(frame["status"] == "done") & frame["layer_weights"].map(lambda w: isinstance(w, list))]
    if rows.empty:
        return None
    long = pd.DataFrame(
        [
            {
                "label": r["label"],
                "n_train": r["n_train"],
                "seed": r["seed"],
                "layer": int(layer),
                "weight": float(weight),
            }
            for _, r in rows.iterrows()
            for layer, weight in zip(r["mixed_layers"], r["layer_weights"])
        ]
    )
    several = long["label"].nunique() > 1
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, ((label, n), group) in enumerate(long.groupby(["label", "n_train"], sort=True)):
        stats = group.groupby("layer")["weight"].agg(["mean", "std"]).reset_index().fillna(0.0)
        name = f"{label}, n={n}" if several else f"n={n}"
        _band(ax, stats["layer"], stats["mean"], stats["std"], f"C{i}", "-", name)
    layers = sorted(long["layer"].unique())
    ax.set_xticks(layers)
    uniform = long.groupby(["label", "n_train", "seed"])["layer"].count()
    if uniform.nunique() == 1:
        ax.axhline(1.0 / uniform.iloc[0], color="gray", lw=0.8, ls=":", label="equal weights")
    blocks = f"; L = {num_blocks}" if num_blocks else ""
    return _finish(
        fig,
        ax,
        path,
        f"hidden state (0 = embeddings, j = output of block j{blocks})",
        "learned weight",
        "Scalar mix: weight of each layer (softmax; mean ± std over seeds)",
    )
