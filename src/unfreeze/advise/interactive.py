"""The advisor's interactive plot: every cell's validation score (a point each, its tooltip the cell), each
predicted configuration's extrapolated curve and its interval band, the full size marked; a legend click hides a
configuration. The page machinery (Vega inlined, the legend's patch) is ``report.interactive``'s. No torch."""

from __future__ import annotations

import numpy as np

from ..metrics import score_range
from ..report.interactive import HIDDEN, hex_color, legend_param, metric_label
from ..report.plots import color_of
from . import curves as lc
from .cost import cell_seconds
from .plan import validation_scores

# what the page says of its interactive plot
EXPLAINER = (
    "The plot in this section is interactive (it needs JavaScript, included in this file): each point is one "
    "cell's validation score; hover it to see the cell (configuration, training size, seed, learning rate chosen "
    "and rates tried, cell seconds, peak memory, cell key). Lines are the curves extrapolated, bands their "
    "intervals at N, 2N and 4N, the dotted rule all the labelled data. Click a configuration in the legend to hide "
    "its points, curve and band, click it again to show them. The static plot below (curves.png beside this page) "
    "draws the same curves."
)


def cell_points(rows: list[dict], metric: str) -> list[dict]:
    """One record per finished cell with a validation score: what its point shows and where it sits."""
    points = []
    for r in rows:
        score = (r.get("validation") or {}).get(metric)
        if r.get("status") != "done" or score is None or "cell" not in r:
            continue
        cell, fit = r["cell"], r.get("fit") or {}
        tried = [t["learning_rate"] for t in fit.get("lr_search") or [] if isinstance(t, dict)]
        rate = fit.get("learning_rate")
        memory = fit.get("peak_memory_bytes")
        points.append(
            {
                "configuration": cell["label"],
                "strategy": cell["strategy"],
                "n": int(cell["n_train"]),
                "seed": int(cell["seed"]),
                "score": float(score),
                "rate": "(none)" if rate is None else f"{rate:g}",
                "rates tried": ", ".join(f"{t:g}" for t in tried) if tried else "(not searched)",
                "cell s": round(cell_seconds(r), 1),
                "peak MiB": round(memory / 2**20) if memory else None,
                "key": str(r.get("key", "")),
            }
        )
    return sorted(points, key=lambda p: (p["n"], p["configuration"], p["seed"]))


def curve_lines(plan: dict, rows: list[dict], metric: str) -> tuple[list[dict], list[dict]]:
    """The predicted configurations' curves (60 sizes from their smallest to 4x the labelled size, as the PNG
    draws them) and their bands (the prediction intervals at N, 2N and 4N)."""
    scores = validation_scores(rows, metric)
    lines, bands = [], []
    for entry in plan["plan"]:
        name = entry["configuration"]
        if "predicted" not in entry or name not in scores:
            continue
        n, y = lc.points(scores[name])
        grid = np.geomspace(min(scores[name]), 4 * plan["full_size"], 60)
        line = np.clip(lc.fit_form(entry["form"], n, y, metric)(grid), *score_range(metric))
        lines += [{"configuration": name, "n": float(g), "score": float(v)} for g, v in zip(grid, line)]
        for size, p in sorted(entry["predicted"].items(), key=lambda item: int(item[0])):
            if p.get("low") is not None and p.get("high") is not None:
                bands.append({"configuration": name, "n": int(size), "low": p["low"], "high": p["high"]})
    return lines, bands


def advise_charts(
    plan: dict, rows: list[dict], metric: str, colors: dict[str, str] | None = None
) -> list[tuple[str, str, dict, int]]:
    """(id, caption, Vega-Lite spec, cells drawn) of the advisor's interactive plot; none without cells.
    ``colors``: the PNG's colour of each configuration it draws (the others take their strategy's)."""
    import altair as alt

    points = cell_points(rows, metric)
    if not points:
        return []
    lines, bands = curve_lines(plan, rows, metric)
    order = [e["configuration"] for e in plan["plan"]]
    names = sorted({p["configuration"] for p in points}, key=lambda c: order.index(c) if c in order else len(order))
    strategy = {p["configuration"]: p["strategy"] for p in points}
    domain = [hex_color((colors or {}).get(c) or color_of(strategy[c])) for c in names]
    label = metric_label(metric)
    x = alt.X("n:Q", title="training examples (log; dotted: all labelled data)", scale=alt.Scale(type="log"))
    color = alt.Color(
        "configuration:N",
        scale=alt.Scale(domain=names, range=domain),
        legend=alt.Legend(title="configuration (click to hide)"),
    )
    # the curves and bands draw no legend of their own: a legend merged across layers loses its click
    unlisted = alt.Color("configuration:N", scale=alt.Scale(domain=names, range=domain), legend=None)
    shown = {"not": {"param": HIDDEN, "empty": False}}
    dots = (
        alt.Chart(alt.Data(values=points))
        .mark_point(filled=True, size=60, opacity=0.8)
        .encode(
            x=x,
            y=alt.Y("score:Q", title=f"validation {label}", scale=alt.Scale(zero=False)),
            color=color,
            tooltip=[
                alt.Tooltip("configuration:N"),
                alt.Tooltip("n:Q", title="training size"),
                alt.Tooltip("seed:Q"),
                alt.Tooltip("score:Q", title=f"validation {label}", format=".4f"),
                alt.Tooltip("rate:N", title="learning rate"),
                alt.Tooltip("rates tried:N"),
                alt.Tooltip("cell s:Q"),
                alt.Tooltip("peak MiB:Q"),
                alt.Tooltip("key:N", title="cell key"),
            ],
        )
        .add_params(legend_param("configuration"))
        .transform_filter(shown)
    )
    layers = [dots]
    if bands:
        layers.insert(
            0,
            alt.Chart(alt.Data(values=bands))
            .mark_area(opacity=0.15)
            .encode(x=x, y="low:Q", y2="high:Q", color=unlisted)
            .transform_filter(shown),
        )
    if lines:
        layers.insert(
            0,
            alt.Chart(alt.Data(values=lines))
            .mark_line(strokeWidth=1.5)
            .encode(x=x, y="score:Q", color=unlisted)
            .transform_filter(shown),
        )
    full = alt.Chart(alt.Data(values=[{"n": plan["full_size"]}])).mark_rule(strokeDash=[2, 3], color="gray")
    chart = (
        alt.layer(full.encode(x=x), *layers)
        .resolve_legend(color="independent")
        .properties(
            width=620,
            height=360,
            title="Learning curves, extrapolated (band: bootstrap over seeds); a point per cell",
        )
    )
    caption = f"Validation {label} of every cell, and the curves extrapolated from them"
    return [("advise-curves", caption, chart.to_dict(), len(points))]


__all__ = ["advise_charts", "cell_points", "curve_lines"]
