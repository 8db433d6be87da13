"""Interactive plots for the HTML pages: Vega specs built with Altair, and the Vega JavaScript inlined so that a
page works offline from a file. Every point is one cell: hovering it shows the cell, a legend click hides or shows
a strategy. No torch."""

from __future__ import annotations

import contextlib
import functools
import html
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib.colors
import pandas as pd

from ..storage.cache import atomic_path, cache_dir
from ..sweep.store import ResultsStore
from .plots import color_of, metric_label
from .tables import STRATEGY_ORDER

# the selection a legend click toggles: the strategies hidden
HIDDEN = "hidden"
# what the page says of its interactive plots
EXPLAINER = (
    "The plots in this section are interactive (they need JavaScript, included in this file): each point is one "
    "cell; hover it to see the cell (configuration, training size, seed, learning rate chosen and rates tried, "
    "fit seconds, peak memory, cell key). Click a strategy in a legend to hide it, click it again to show it. "
    "The static plots below (also saved as PNG files beside this page) show means and spreads over seeds."
)


@functools.lru_cache(maxsize=1)
def vega_script() -> str:
    """Vega, Vega-Lite and vega-embed as one script (about 0.9 MB), for an inline <script> element. Bundling takes
    seconds: the bundle is kept in the unfreeze cache, one per vl-convert and Vega-Lite version."""
    import altair as alt
    import vl_convert

    version = _vl_version(alt.SCHEMA_VERSION)
    kept = None
    with contextlib.suppress(OSError):  # no cache folder to be had: bundle each time
        kept = cache_dir("vega") / f"vega-embed-{getattr(vl_convert, '__version__', 'unknown')}-{version}.js"
        if kept.exists():
            return kept.read_text(encoding="utf-8")
    # the snippet puts vega-embed on window for the page's own scripts
    bundle = vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;", vl_version=version)
    bundle = bundle.replace("</script", "<\\/script")
    if kept is not None:
        with contextlib.suppress(OSError), atomic_path(kept) as tmp:
            tmp.write_text(bundle, encoding="utf-8")
    return bundle


def _vl_version(schema_version: str) -> str:
    """vl-convert's name of a Vega-Lite version: v6.4.1 -> v6_4."""
    return "_".join(schema_version.split(".")[:2])


def cell_points(frame: pd.DataFrame, run_dir: Path, metric: str) -> list[dict]:
    """One record per finished cell: what its point shows (the tooltip's fields) and where it sits."""
    trials = _rates_tried(run_dir)
    points = []
    for _, r in frame[frame["status"] == "done"].iterrows():
        score = _number(r.get(f"test_{metric}"))
        if score is None:
            continue
        rate = _number(r.get("learning_rate"))
        tried = trials.get(r["key"], [])
        memory = _number(r.get("peak_memory_mib"))
        points.append(
            {
                "strategy": str(r["strategy"]),
                "configuration": str(r["label"]),
                "n": int(r["n_train"]),
                "seed": int(r["seed"]),
                "k": None if _number(r.get("k")) is None else int(r["k"]),
                "score": score,
                "train": _number(r.get(f"train_{metric}")),
                "rate": "(none)" if rate is None else f"{rate:g}",
                "rates tried": ", ".join(f"{t:g}" for t in tried) if tried else "(not tuned)",
                "fit s": _number(r.get("fit_seconds")),
                "peak MiB": None if memory is None else round(memory),
                "key": str(r["key"]),
                # each cell's own place beside its training size (or k), so that seeds scoring alike do not overlap
                "slot": f"{r['label']} seed {int(r['seed'])}",
                "size slot": f"{int(r['n_train'])} seed {int(r['seed'])}",
            }
        )
    return points


def _number(value) -> float | None:
    """A JSON-safe number: None for missing and NaN."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _rates_tried(run_dir: Path) -> dict[str, list[float]]:
    """Each tuned cell's rates tried, in the order tried (results.csv keeps only their count)."""
    tried = {}
    for key, record in ResultsStore(run_dir).latest(require_cell=True).items():
        search = (record.get("fit") or {}).get("lr_search") or []
        rates = [t["learning_rate"] for t in search if isinstance(t, dict) and "learning_rate" in t]
        if rates:
            tried[key] = rates
    return tried


def _tooltip(metric: str) -> list:
    import altair as alt

    return [
        alt.Tooltip("configuration:N"),
        alt.Tooltip("n:Q", title="training size"),
        alt.Tooltip("seed:Q"),
        alt.Tooltip("score:Q", title=f"test {metric_label(metric)}", format=".4f"),
        alt.Tooltip("train:Q", title=f"train {metric_label(metric)}", format=".4f"),
        alt.Tooltip("rate:N", title="learning rate"),
        alt.Tooltip("rates tried:N"),
        alt.Tooltip("fit s:Q", format=".1f"),
        alt.Tooltip("peak MiB:Q"),
        alt.Tooltip("key:N", title="cell key"),
    ]


def hex_color(color: str) -> str:
    """A matplotlib colour (C0, tab:olive) as the page's #rrggbb."""
    return matplotlib.colors.to_hex(color)


def legend_param(field: str):
    """The selection a click on ``field``'s legend toggles: the values hidden (each click hides or shows one)."""
    import altair as alt

    return alt.selection_point(name=HIDDEN, fields=[field], bind="legend", toggle="true")


def _chart(points: list[dict], metric: str, x, title: str, **encodings):
    """A point per cell coloured by strategy (the PNGs' colours), whose legend hides the strategies clicked."""
    import altair as alt

    present = {p["strategy"] for p in points}
    strategies = [s for s in STRATEGY_ORDER if s in present] + sorted(present - set(STRATEGY_ORDER))
    colors = [hex_color(color_of(s)) for s in strategies]
    return (
        alt.Chart(alt.Data(values=points), title=title)
        .mark_point(filled=True, size=60, opacity=0.8)
        .encode(
            x=x,
            y=alt.Y("score:Q", title=f"test {metric_label(metric)}", scale=alt.Scale(zero=False)),
            color=alt.Color(
                "strategy:N",
                scale=alt.Scale(domain=strategies, range=colors),
                legend=alt.Legend(title="strategy (click to hide)"),
            ),
            tooltip=_tooltip(metric),
            **encodings,
        )
        .add_params(legend_param("strategy"))
        .transform_filter({"not": {"param": HIDDEN, "empty": False}})
        .properties(width=560, height=320)
    )


def size_and_cost_plots(
    points: list[dict], label: str, name: str, cells: str
) -> list[tuple[str, str, list[dict], Any, dict[str, Any]]]:
    """(id, caption, cells, x, encodings) of the score of ``cells`` (what the captions call them) against training
    size and against fit seconds on a log axis, where cells of no recorded time stay off; ids ``{name}-size`` and
    ``{name}-cost``."""
    import altair as alt

    timed = [p for p in points if (p["fit s"] or 0) > 0]
    return [
        (
            f"{name}-size",
            f"Test {label} of {cells} against its training size",
            points,
            alt.X("n:O", title="training examples", axis=alt.Axis(labelAngle=0)),
            {"xOffset": alt.XOffset("slot:N", sort=None)},
        ),
        (
            f"{name}-cost",
            f"Test {label} of {cells} against its fit seconds (log scale)",
            timed,
            alt.X("fit s:Q", title="fit seconds (log scale)", scale=alt.Scale(type="log", nice=False, padding=12)),
            {},
        ),
    ]


def sweep_charts(points: list[dict], metric: str) -> list[tuple[str, str, dict, int]]:
    """(id, caption, Vega-Lite spec, cells drawn) of the sweep's interactive plots: score against training size,
    against fit seconds, and against frozen blocks where the sweep varied k."""
    import altair as alt

    label = metric_label(metric)
    blocks = [p for p in points if p["k"] is not None]
    plots = size_and_cost_plots(points, label, "cells-by", "every cell")
    if len({p["k"] for p in blocks}) >= 2:
        plots.append(
            (
                "cells-by-k",
                f"Test {label} of the cells that set k against k",
                blocks,
                alt.X("k:O", title="frozen blocks k (0 = full fine-tuning)", axis=alt.Axis(labelAngle=0)),
                {"xOffset": alt.XOffset("size slot:N", sort=None), "shape": alt.Shape("n:N", title="training size")},
            )
        )
    return [
        (name, caption, _chart(cells, metric, x, caption, **encodings).to_dict(), len(cells))
        for name, caption, cells, x, encodings in plots
        if cells
    ]


# a legend click hides a value, so the legend entries drawn faded must be the hidden ones: Vega-Lite fades those
# outside the selection ("no selection, or in it": bright), and this patch of the compiled Vega negates "in it"
LEGEND_PATCH = f"""function (spec) {{
  const inSelection = '!length(data("{HIDDEN}_store")) || (';
  for (const legend of spec.legends || []) {{
    for (const part of Object.values(legend.encode || {{}})) {{
      const opacity = part.update && part.update.opacity;
      const test = Array.isArray(opacity) && opacity.length ? String(opacity[0].test) : '';
      if (test.includes(inSelection)) {{
        opacity[0].test = test.replace(inSelection, '!length(data("{HIDDEN}_store")) || !(');
      }}
    }}
  }}
  return spec;
}}"""


def section(charts: Iterable[tuple[str, str, dict, int]], explainer: str = EXPLAINER) -> str:
    """The HTML of interactive plots: the Vega script once, then a figure per plot, each saying how many cells
    it draws (``data-cells``; the browser test compares the points drawn to it)."""
    charts = list(charts)
    if not charts:
        return ""
    esc = html.escape
    parts = [
        "<h2>Interactive plots</h2>",
        f"<p>{esc(explainer)}</p>",
        "<noscript><p>(JavaScript is off: the interactive plots are not drawn; the static ones below are.)</p>"
        "</noscript>",
        f"<script>{vega_script()}</script>",
        f"<script>const unfreezeLegendPatch = {LEGEND_PATCH};</script>",
    ]
    for name, caption, spec, cells in charts:
        parts.append(
            f"<figure class='interactive'><div id='{esc(name)}' data-cells='{cells}' "
            f"aria-label='{esc(caption)}'></div></figure>"
        )
        data = json.dumps(spec).replace("<", "\\u003c")  # no label can close the script or open a comment
        parts.append(
            f"<script>vegaEmbed('#{name}', {data}, {{renderer: 'svg', actions: false, patch: unfreezeLegendPatch}})"
            ".catch(console.error);</script>"
        )
    return "\n".join(parts)
