"""Reports: plots, HTML and CSV built from a sweep's results file alone (imports no torch)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..cache import atomic_path
from ..errors import UnfreezeError
from ..sweep.store import ResultsStore
from . import plots
from .tables import METRICS, recommend, recommendation_sentence, results_frame, summarise

__all__ = ["build_report", "results_frame", "summarise", "recommend"]


def build_report(run_dir: str | Path, metric: str = "accuracy") -> dict:
    """Write PNG plots, results.csv and a self-contained report.html into ``run_dir``."""
    run_dir = Path(run_dir)
    if metric not in METRICS:
        raise UnfreezeError(f"Unknown metric {metric!r}. Metrics: {', '.join(METRICS)}.")
    if not ResultsStore(run_dir).path.exists():
        raise UnfreezeError(f"{run_dir} holds no sweep results (no results.jsonl). Run `unfreeze sweep ... -o {run_dir}`.")
    frame = results_frame(run_dir)
    if frame.empty:
        raise UnfreezeError(f"{run_dir}/results.jsonl has no complete rows yet.")
    spec = _read_json(run_dir / "sweep.json")
    summary = summarise(frame, metric)
    picks = recommend(summary, metric) if not summary.empty else []
    with atomic_path(run_dir / "results.csv") as tmp:
        frame.to_csv(tmp, index=False)
    figures = []
    if not summary.empty:
        candidates = [
            ("score_vs_k.png", plots.score_vs_k(summary, metric, run_dir / "score_vs_k.png", spec.get("num_blocks"))),
            ("score_vs_n.png", plots.score_vs_n(summary, metric, run_dir / "score_vs_n.png")),
            ("cost.png", plots.score_vs_cost(summary, metric, run_dir / "cost.png")),
            ("mix_weights.png", plots.layer_weights(frame, run_dir / "mix_weights.png", spec.get("num_blocks"))),
        ]
        figures = [name for name, made in candidates if made is not None]
    probe = _read_json(run_dir / "probe.json")
    if probe:
        from ..probe import plot_probe

        plot_probe(probe["rows"], run_dir / "probe.png", metric,
                   title=f"Per-layer probe, {probe['model']}, n={probe['n_train']}")
        figures.append("probe.png")
    page = _html(run_dir, spec, frame, summary, picks, figures, metric)
    with atomic_path(run_dir / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"html": run_dir / "report.html", "csv": run_dir / "results.csv", "figures": figures,
            "summary": summary, "recommendations": picks, "frame": frame}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def summary_table_text(summary, metric: str) -> str:
    """The per-configuration summary as aligned text (what the CLI prints)."""
    if summary.empty:
        return "(no finished cells)"
    lines = [f"{'n':>6}  {'configuration':<26}{'test ' + metric:>16}{'train':>9}{'seconds':>10}{'trainable':>12}"]
    for _, row in summary.iterrows():
        lines.append(f"{int(row['n_train']):>6}  {row['label']:<26}{row['test_mean']:>10.4f} ±{row['test_se']:.3f}"
                     f"{row['train_mean']:>9.4f}{row['fit_seconds']:>10.1f}{int(row['trainable_parameters'] or 0):>12,}")
    return "\n".join(lines)


def _html(run_dir: Path, spec: dict, frame, summary, picks, figures, metric: str) -> str:
    esc = html.escape
    spec_data = spec.get("spec", {})
    title = f"unfreeze sweep: {spec_data.get('model', '?')} on {spec_data.get('data', '?')}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
             "text-align:right}th{background:#f3f3f3}td.l{text-align:left}img{max-width:100%}"
             ".failed{color:#b00}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    done = int((frame["status"] == "done").sum())
    failed = int((frame["status"] == "failed").sum())
    parts.append(f"<p>{done} cells done, {failed} failed. Metric: {esc(metric)}. "
                 f"Strategies: {esc(', '.join(spec_data.get('strategies', [])))}; training sizes: "
                 f"{esc(str(spec_data.get('n_train')))}; seeds: {esc(str(spec_data.get('seeds')))}; "
                 f"test examples: {esc(str(spec.get('n_test', '?')))}.</p>")
    if picks:
        parts.append("<h2>Recommendation</h2><ul>")
        parts.extend(f"<li>{esc(recommendation_sentence(p))}</li>" for p in picks)
        parts.append("</ul><p>Cheapest configuration (by fit seconds) whose mean test score is within one standard "
                     "error (over seeds) of the best configuration at that training size.</p>")
    for name in figures:
        data = base64.b64encode((run_dir / name).read_bytes()).decode()
        parts.append(f"<p><img alt='{esc(name)}' src='data:image/png;base64,{data}'></p>")
    if not summary.empty:
        parts.append("<h2>Summary over seeds</h2><table><tr><th>n</th><th>configuration</th><th>seeds</th>"
                     f"<th>test {esc(metric)}</th><th>± s.e.</th><th>train</th><th>fit s</th>"
                     "<th>trainable params</th></tr>")
        for _, r in summary.iterrows():
            parts.append(f"<tr><td>{int(r['n_train'])}</td><td class='l'>{esc(str(r['label']))}</td>"
                         f"<td>{int(r['seeds'])}</td><td>{r['test_mean']:.4f}</td><td>{r['test_se']:.4f}</td>"
                         f"<td>{r['train_mean']:.4f}</td><td>{r['fit_seconds']:.1f}</td>"
                         f"<td>{int(r['trainable_parameters'] or 0):,}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Every cell</h2><table><tr>" + "".join(
        f"<th>{esc(c)}</th>" for c in ("configuration", "n", "seed", "status", f"test {metric}", f"train {metric}",
                                       "fit s", "peak MiB", "error")) + "</tr>")
    for _, r in frame.iterrows():
        ok = r["status"] == "done"
        cells = [esc(str(r["label"])), str(r["n_train"]), str(r["seed"]), esc(r["status"]),
                 f"{r.get(f'test_{metric}', float('nan')):.4f}" if ok else "",
                 f"{r.get(f'train_{metric}', float('nan')):.4f}" if ok else "",
                 f"{r.get('fit_seconds', 0):.1f}" if ok else "",
                 f"{r.get('peak_memory_mib', 0) or 0:.0f}" if ok else "", esc(str(r.get("error") or ""))]
        css = "" if ok else " class='failed'"
        parts.append(f"<tr{css}><td class='l'>" + "</td><td>".join(cells) + "</td></tr>")
    parts.append("</table><p>Built by unfreeze from results.jsonl alone; results.csv holds these rows.</p>"
                 "</body></html>")
    return "\n".join(parts)
