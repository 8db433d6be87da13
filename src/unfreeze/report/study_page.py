"""A study's page (``unfreeze report STUDY_DIR``): the verdict and its quantities, the analysis' plots and tables,
and interactive plots of every arm's cells, as one self-contained report.html in the study's run folder. Made on
demand, from study.json and the arms' results alone: ``unfreeze study`` never writes it. No torch."""

from __future__ import annotations

import base64
import html
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UnfreezeError
from ..storage.cache import atomic_path
from ..storage.outputs import run_kind_of
from . import interactive
from .plots import metric_label

PAGE = "report.html"
EXPLAINER = (
    "The plots in this section are interactive (they need JavaScript, included in this file): each point is one "
    "cell of one of the study's arms, coloured by arm; hover it to see the arm and the cell (configuration, training "
    "size, seed, learning rate chosen and rates tried, fit seconds, peak memory, cell key). Click an arm in a legend "
    "to hide its cells, click it again to show them. The static plots below are the analysis' own (FINDINGS.md shows "
    "the same ones)."
)
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}.note{color:#a50}"
)


def build_study_page(run_dir: str | Path) -> dict:
    """Write ``run_dir``/report.html for a study's run folder; returns its path, the findings and the interactive
    plots' ids. A folder that is not a study's run is refused in one line, and nothing is written into it."""
    from ..studies.findings import analyse, context_of
    from ..studies.results import read_meta

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or run_kind_of(run_dir) != "study":
        raise UnfreezeError(
            f"{run_dir} is not a study's run folder (no study.json of format 'unfreeze-study'). Give the folder "
            "`unfreeze study STUDY.toml -o DIR` wrote."
        )
    if not isinstance(read_meta(run_dir).get("study"), dict):  # a study.json cut short, or not written by a study
        raise UnfreezeError(
            f"{run_dir} is a study's run folder whose study.json records no study: run `unfreeze study STUDY.toml "
            f"-o {run_dir}` to rewrite it."
        )
    findings = analyse(run_dir, draw=False)  # draws nothing into the study's folder: its PNGs are the study's own
    metric = context_of(findings.meta, findings.study, None).metric
    charts = study_charts(arm_points(findings, metric), metric)
    page = study_html(findings, metric, interactive.section(charts, EXPLAINER), _figures(findings))
    with atomic_path(run_dir / PAGE) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"html": run_dir / PAGE, "findings": findings, "interactive": [chart[0] for chart in charts]}


def arm_points(findings, metric: str) -> list[dict]:
    """One record per finished cell of every arm (a cell two arms share is a point of each): the sweep page's
    fields, with the arm and the study's name for the configuration."""
    frame = findings.frame
    points = []
    for arm in findings.meta.get("arms", []):
        rows = frame[frame["arm"] == arm["name"]] if not frame.empty else frame
        if rows.empty:
            continue
        for point in interactive.cell_points(rows, findings.run_dir / arm["folder"], metric):
            config = arm.get("configs", {}).get(point["configuration"], point["configuration"])
            point.update(
                {
                    "arm": str(arm["name"]),
                    "study configuration": str(config),
                    "slot": f"{arm['name']} {point['slot']}",  # arms side by side at a size
                }
            )
            points.append(point)
    return points


def study_charts(points: list[dict], metric: str) -> list[tuple[str, str, dict, int]]:
    """(id, caption, Vega-Lite spec, cells drawn) of the study's plots: every cell's score against its training
    size and against its fit seconds, coloured by arm."""
    plots = interactive.size_and_cost_plots(points, metric_label(metric), "study-cells-by", "every cell of every arm")
    return [
        (name, caption, _chart(cells, metric, x, caption, encodings).to_dict(), len(cells))
        for name, caption, cells, x, encodings in plots
        if cells
    ]


def _chart(points: list[dict], metric: str, x, title: str, encodings: dict[str, Any]):
    import altair as alt

    arms = list(dict.fromkeys(p["arm"] for p in points))
    tooltip = [alt.Tooltip("arm:N"), alt.Tooltip("study configuration:N"), *interactive._tooltip(metric)]
    return (
        alt.Chart(alt.Data(values=points), title=title)
        .mark_point(filled=True, size=60, opacity=0.8)
        .encode(
            x=x,
            y=alt.Y("score:Q", title=f"test {metric_label(metric)}", scale=alt.Scale(zero=False)),
            color=alt.Color(
                "arm:N",
                scale=alt.Scale(domain=arms, range=[interactive.hex_color(f"C{i % 10}") for i in range(len(arms))]),
                legend=alt.Legend(title="arm (click to hide)"),
            ),
            tooltip=tooltip,
            **encodings,
        )
        .add_params(interactive.legend_param("arm"))
        .transform_filter({"not": {"param": interactive.HIDDEN, "empty": False}})
        .properties(width=560, height=320)
    )


def _figures(findings) -> list[tuple[str, str]]:
    """The analysis' plots as (caption, PNG data URI), drawn afresh into a temporary folder (the study's own PNGs
    are left as its command wrote them)."""
    from ..studies.analyses import analysis_kind
    from ..studies.findings import context_of

    with tempfile.TemporaryDirectory(prefix="unfreeze-study-page-") as tmp:
        context = context_of(findings.meta, findings.study, Path(tmp))
        drawn = analysis_kind(findings.study.analysis).run(findings.frame, context).figures
        return [
            (caption, "data:image/png;base64," + base64.b64encode((Path(tmp) / name).read_bytes()).decode("ascii"))
            for name, caption in drawn
            if name and (Path(tmp) / name).is_file()
        ]


def _table(headers: list[str], rows: list[list[str]], bold_rows: frozenset[int] | set[int] = frozenset()) -> str:
    esc = html.escape
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"]
    for i, row in enumerate(rows):
        cells = [f"<b>{esc(str(c))}</b>" if i in bold_rows and j == 0 else esc(str(c)) for j, c in enumerate(row)]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


def study_html(findings, metric: str, interactive_html: str, figures: list[tuple[str, str]]) -> str:
    """The page: what was run, the verdict and its rules, the quantities, the interactive plots, the analysis' plots
    and tables, the arms."""
    from ..studies.findings import format_quantity, seed_interval_caveat
    from ..studies.rules import INCONCLUSIVE, names_in

    esc = html.escape
    study, meta, result, verdict = findings.study, findings.meta, findings.result, findings.verdict
    counts = findings.counts
    title = f"Study {study.number}: {study.title}" if study.number is not None else study.title
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{STYLE}</style>"
        f"</head><body><h1>{esc(title)}</h1>",
        f"<p><i>Built by unfreeze from study.json and the arms' results ({esc(PAGE)}, rebuilt by `unfreeze report "
        f"{esc(str(findings.run_dir))}`); FINDINGS.md beside it says the same in Markdown.</i></p>",
    ]
    cells = f"{counts['planned']} planned, {counts['done']} finished, {counts['failed']} failed, {counts['pending']}"
    facts = [
        ["claim", study.claim],
        ["source", study.source],
        ["data", str(meta.get("data"))],
        ["model", f"{meta.get('model')} ({meta.get('num_blocks')} blocks)"],
        ["cells", cells + " not run yet" + (f" ({counts['reused']} reused)" if counts["reused"] else "")],
        ["seeds", ", ".join(map(str, findings.seeds))],
        ["metric", f"test {metric_label(metric)}"],
    ]
    parts.append(_table(["", ""], facts))
    if findings.quick:
        parts.append("<p class='note'>Quick run (one seed, the smallest sizes): its numbers are not evidence.</p>")
    elif counts["pending"] or counts["failed"]:
        parts.append(f"<p class='note'>Partial run: {counts['done']} of {counts['planned']} cells finished.</p>")
    parts.append(f"<h2>Verdict: {esc(findings.verdict_label)}</h2><p>{esc(study.verdict['explain'])}</p>")
    rules = [
        [key, study.verdict[key], "n/a" if getattr(verdict, key) is None else str(getattr(verdict, key)).lower()]
        for key in ("holds", "partly")
        if study.verdict.get(key)
    ]
    parts.append(_table(["rule", "expression", "result"], rules))
    if verdict.verdict == INCONCLUSIVE:
        parts.append(f"<p>Inconclusive: {esc(', '.join(verdict.missing))} could not be computed.</p>")
    partly = names_in(study.verdict["partly"]) if study.verdict.get("partly") else []
    read = list(dict.fromkeys(names_in(study.verdict["holds"]) + partly))
    names = read + [n for n in result.quantities if n not in read]
    quantities = [[n, format_quantity(result.quantities.get(n, math.nan)), result.meanings.get(n, "")] for n in names]
    parts.append(_table(["quantity", "value", "meaning"], quantities, set(range(len(read)))))
    parts.append("<p>(<b>bold</b>: read by the rules.)</p>")
    caveat = seed_interval_caveat(len(findings.seeds))
    if caveat and not findings.quick:
        parts.append(f"<p><i>{esc(caveat)}</i></p>")
    parts.append(interactive_html)
    if figures:
        parts.append("<h2>Static plots</h2>")
        parts += [
            f"<figure><img alt='{esc(c)}' src='{uri}'><figcaption>{esc(c)}</figcaption></figure>" for c, uri in figures
        ]
    parts.append("<h2>Numbers</h2>")
    for table in result.tables:
        parts.append(f"<h3>{esc(table.title)}</h3>" + _table(table.headers, table.rows))
        if table.note:
            parts.append(f"<p>{esc(table.note)}</p>")
    if result.notes:
        parts.append("<ul>" + "".join(f"<li>{esc(note)}</li>" for note in result.notes) + "</ul>")
    parts.append("<h2>Arms</h2>" + _arms_table(findings))
    parts.append("</body></html>")
    return "\n".join(parts)


def _arms_table(findings) -> str:
    """Each arm's cells and the command that builds its own sweep report."""
    frame: pd.DataFrame = findings.frame
    rows = []
    for arm in findings.meta.get("arms", []):
        mine = frame[frame["arm"] == arm["name"]] if not frame.empty else frame
        done = int((mine["status"] == "done").sum()) if not mine.empty else 0
        command = f"unfreeze report {findings.run_dir / arm['folder']}"
        rows.append([arm["name"], arm.get("label", ""), f"{done} of {len(arm.get('keys', []))}", command])
    return _table(["arm", "label", "cells done", "its sweep report"], rows)


__all__ = ["PAGE", "arm_points", "build_study_page", "study_charts", "study_html"]
