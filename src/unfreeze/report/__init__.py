"""Reports: plots, HTML and CSV built from a sweep's results file alone (imports no torch)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..errors import UnfreezeError
from ..storage.cache import atomic_path
from ..sweep.store import ResultsStore
from ..tasks import DEFAULT_TASK, Task
from . import interactive, plots
from .tables import recommend, recommendation_sentence, results_frame, summarise

__all__ = ["build_report", "recommend", "report_task", "results_frame", "summarise"]


def build_report(run_dir: str | Path, metric: str | None = None, tolerance: float = 0.0) -> dict:
    """Write PNG plots, results.csv and a self-contained report.html into ``run_dir``.

    ``metric``: the one the report ranks and draws (None: the sweep's task's default score, e.g. accuracy for
    single-label, Spearman for regression); the result's ``metric`` and ``task`` say which it was."""
    run_dir = Path(run_dir)
    if not ResultsStore(run_dir).path.exists():
        raise UnfreezeError(
            f"{run_dir} holds no sweep results (no results.jsonl). Run `unfreeze sweep ... -o {run_dir}`."
        )
    frame = results_frame(run_dir)
    if frame.empty:
        raise UnfreezeError(f"{run_dir}/results.jsonl has no complete rows yet.")
    spec = _read_json(run_dir / "sweep.json")
    task = report_task(run_dir, spec)
    metric = task.check_metric(metric) if metric is not None else task.default_metric
    sign = task.sign(metric)
    summary = summarise(frame, metric)
    picks = recommend(summary, metric, frame, tolerance, sign=sign) if not summary.empty else []
    with atomic_path(run_dir / "results.csv") as tmp:
        frame.to_csv(tmp, index=False)
    figures = []
    if not summary.empty:
        candidates = [
            ("score_vs_k.png", plots.score_vs_k(summary, metric, run_dir / "score_vs_k.png", spec.get("num_blocks"))),
            ("score_vs_n.png", plots.score_vs_n(summary, metric, run_dir / "score_vs_n.png", sign)),
            ("cost.png", plots.score_vs_cost(summary, metric, run_dir / "cost.png")),
            (
                "blocks_kept.png",
                plots.score_vs_blocks_kept(frame, metric, run_dir / "blocks_kept.png", spec.get("num_blocks")),
            ),
            ("mix_weights.png", plots.layer_weights(frame, run_dir / "mix_weights.png", spec.get("num_blocks"))),
        ]
        figures = [name for name, made in candidates if made is not None]
    probe = _read_json(run_dir / "probe.json")
    if probe:
        from ..features.probe import plot_probe

        plot_probe(
            probe["rows"],
            run_dir / "probe.png",
            metric,
            title=f"Per-layer probe, {probe['model']}, n={probe['n_train']}",
        )
        figures.append("probe.png")
    # beside the PNGs, not instead of them: a point per cell, its hover the cell's record
    charts = interactive.sweep_charts(interactive.cell_points(frame, run_dir, metric), metric)
    page = _html(run_dir, spec, frame, summary, picks, figures, metric, task.metrics, interactive.section(charts))
    with atomic_path(run_dir / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {
        "html": run_dir / "report.html",
        "csv": run_dir / "results.csv",
        "figures": figures,
        "interactive": [chart[0] for chart in charts],
        "summary": summary,
        "recommendations": picks,
        "frame": frame,
        "metric": metric,
        "task": task.name,
    }


def report_task(run_dir: Path, spec: dict | None = None) -> Task:
    """The task of a sweep's rows: the one its rows name (single-label rows, and those of earlier releases, name
    none), else the one its sweep.json records, else single."""
    from ..sweep.store import row_task
    from ..tasks import make_task

    for record in ResultsStore(run_dir).latest(require_cell=True).values():
        if record.get("status") == "done" and "advise" not in record:
            return row_task(record)
    spec = _read_json(run_dir / "sweep.json") if spec is None else spec
    return make_task(spec.get("task") or (spec.get("spec") or {}).get("task") or DEFAULT_TASK)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def _ms(seconds) -> str:
    """Seconds per text as milliseconds, blank when not timed (rows of earlier releases)."""
    return "" if seconds is None or seconds != seconds else f"{1000 * seconds:.2f}"


def summary_table_text(summary, metric: str) -> str:
    """The per-configuration summary as aligned text (what the CLI prints)."""
    if summary.empty:
        return "(no finished cells)"
    lines = [f"{'n':>6}  {'configuration':<26}{'test ' + metric:>16}{'train':>9}{'seconds':>10}{'trainable':>12}"]
    for _, row in summary.iterrows():
        # one seed has no spread: print none rather than a standard error of zero
        spread = f" ±{row['test_se']:.3f}" if row["seeds"] > 1 else " (1 seed)"
        label = row["label"] + (" *" if row.get("tuned") else "")
        lines.append(
            f"{int(row['n_train']):>6}  {label:<26}{row['test_mean']:>10.4f}{spread:<9}"
            f"{row['train_mean']:>9.4f}{row['fit_seconds']:>10.1f}{int(row['trainable_parameters'] or 0):>12,}"
        )
    if summary.get("tuned") is not None and summary["tuned"].any():
        lines.append("* learning rate chosen on each cell's validation split")
    return "\n".join(lines)


def _metric_columns(metric: str, metrics: tuple[str, ...]) -> list[str]:
    """The report's metric first, then the task's others."""
    return [metric, *(m for m in metrics if m != metric)]


def _rate_cell(row) -> str:
    rate = row.get("learning_rate")
    if rate is None or (isinstance(rate, float) and rate != rate):
        return ""
    tried = row.get("rates_tried")
    return f"{rate:g}" + (f" (tuned, best of {int(tried)})" if row.get("tuned") and tried == tried and tried else "")


def _comparison_table(pick: dict, metric: str) -> str:
    """Each configuration's paired difference to the best at one training size."""
    esc = html.escape
    rows = [
        f"<h3>n = {pick['n_train']}: paired differences to the best ({esc(str(pick['best']))})</h3>",
        f"<table><tr><th>configuration</th><th>test {esc(metric)}</th><th>seeds</th><th>difference</th>"
        "<th>95% interval</th><th>fit s</th><th></th></tr>",
    ]
    for r in pick["comparison"]:
        interval = "no error bars (one seed)" if r["low"] != r["low"] else f"[{r['low']:+.4f}, {r['high']:+.4f}]"
        mark = (
            "best"
            if r["best"]
            else ("recommended" if r["pick"] else ("worse (significant)" if r["significant"] else ""))
        )
        if r["pick"] and r["best"]:
            mark = "best, recommended"
        rows.append(
            f"<tr><td class='l'>{esc(str(r['configuration']))}</td><td>{r['mean']:.4f}</td>"
            f"<td>{r['seeds']}</td><td>{r['diff']:+.4f}</td><td>{esc(interval)}</td>"
            f"<td>{r['cost']:.1f}</td><td class='l'>{esc(mark)}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _html(
    run_dir: Path,
    spec: dict,
    frame,
    summary,
    picks,
    figures,
    metric: str,
    metrics: tuple[str, ...] = (),
    interactive_html: str = "",
) -> str:
    """The report page; its every-cell table lists the test score of each of the task's ``metrics``;
    ``interactive_html`` (the interactive plots) comes before the static ones."""
    esc = html.escape
    spec_data = spec.get("spec", {})
    title = f"unfreeze sweep: {spec_data.get('model', '?')} on {spec_data.get('data', '?')}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
        "text-align:right}th{background:#f3f3f3}td.l{text-align:left}img{max-width:100%}"
        ".failed{color:#b00}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    done = int((frame["status"] == "done").sum())
    failed = int((frame["status"] == "failed").sum())
    parts.append(
        f"<p>{done} cells done, {failed} failed. Metric: {esc(metric)}. "
        f"Strategies: {esc(', '.join(spec_data.get('strategies', [])))}; training sizes: "
        f"{esc(str(spec_data.get('n_train')))}; seeds: {esc(str(spec_data.get('seeds')))}; "
        f"test examples: {esc(str(spec.get('n_test', '?')))}.</p>"
    )
    if picks:
        parts.append("<h2>Recommendation</h2><ul>")
        parts.extend(f"<li>{esc(recommendation_sentence(p))}</li>" for p in picks)
        seeds = max(p.get("seeds", 1) for p in picks)
        cost = (
            "fit seconds plus the seconds to predict {:,} texts".format(picks[0]["predict_texts"])
            if "predict_texts" in picks[0]
            else "fit seconds"
        )
        rule = (
            f"Cheapest configuration (by {cost}) not shown worse than the best at that training size: "
            "configurations are compared paired by seed (they share their samples), and a configuration "
            "qualifies when the 95% bootstrap interval of its difference to the best reaches "
            f"{-picks[0].get('tolerance', 0.0):+.3f}."
        )
        if seeds < 2:
            rule += (
                " This run has one seed: there are no error bars, and the differences are point estimates; "
                "run more seeds (--seeds 0,1,2) to know which differences are real."
            )
        parts.append(f"</ul><p>{esc(rule)}</p>")
        for p in picks:
            parts.append(_comparison_table(p, metric))
    if interactive_html:
        parts.append(interactive_html)
        if figures:
            parts.append("<h2>Static plots</h2>")
    for name in figures:
        data = base64.b64encode((run_dir / name).read_bytes()).decode()
        parts.append(f"<p><img alt='{esc(name)}' src='data:image/png;base64,{data}'></p>")
    if not summary.empty:
        parts.append(
            "<h2>Summary over seeds</h2><table><tr><th>n</th><th>configuration</th><th>seeds</th>"
            f"<th>test {esc(metric)}</th><th>± s.e.</th><th>train</th><th>fit s</th>"
            "<th>trainable params</th><th>predict ms/text</th></tr>"
        )
        for _, r in summary.iterrows():
            se = f"{r['test_se']:.4f}" if r["seeds"] > 1 else "one seed"
            tuned = " <small>(rate tuned)</small>" if r.get("tuned") else ""
            parts.append(
                f"<tr><td>{int(r['n_train'])}</td><td class='l'>{esc(str(r['label']))}{tuned}</td>"
                f"<td>{int(r['seeds'])}</td><td>{r['test_mean']:.4f}</td><td>{se}</td>"
                f"<td>{r['train_mean']:.4f}</td><td>{r['fit_seconds']:.1f}</td>"
                f"<td>{int(r['trainable_parameters'] or 0):,}</td>"
                f"<td>{_ms(r.get('predict_seconds_per_text'))}</td></tr>"
            )
        parts.append("</table>")
    parts.append(
        "<h2>Every cell</h2><table><tr>"
        + "".join(
            f"<th>{esc(c)}</th>"
            for c in (
                "configuration",
                "n",
                "seed",
                "status",
                *(f"test {m}" for m in _metric_columns(metric, metrics)),
                f"train {metric}",
                "learning rate",
                "fit s",
                "peak MiB",
                "error",
            )
        )
        + "</tr>"
    )
    for _, r in frame.iterrows():
        ok = r["status"] == "done"
        cells = [
            esc(str(r["label"])),
            str(r["n_train"]),
            str(r["seed"]),
            esc(r["status"]),
            *(f"{r.get(f'test_{m}', float('nan')):.4f}" if ok else "" for m in _metric_columns(metric, metrics)),
            f"{r.get(f'train_{metric}', float('nan')):.4f}" if ok else "",
            _rate_cell(r) if ok else "",
            f"{r.get('fit_seconds', 0):.1f}" if ok else "",
            f"{r.get('peak_memory_mib', 0) or 0:.0f}" if ok else "",
            esc(str(r.get("error") or "")),
        ]
        css = "" if ok else " class='failed'"
        parts.append(f"<tr{css}><td class='l'>" + "</td><td>".join(cells) + "</td></tr>")
    parts.append(
        "</table><p>Built by unfreeze from results.jsonl alone; results.csv holds these rows.</p></body></html>"
    )
    return "\n".join(parts)
