"""The advisor's plan as text (printed), JSON (advise.json's plan, --json-out) and an HTML report with its curves.

Reads the plan ``plan.make_plan`` made and the run it came from; no torch.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from ..storage import strict_json
from ..storage.cache import atomic_path
from . import curves as lc
from .cost import human_seconds
from .halving import AdviseRun
from .pilot import MIN_SIZES, PilotPlan
from .plan import validation_scores
from .rungs import ranked_score

# how the plan's text table abbreviates a metric in its narrow column (others are written out)
SHORT_NAMES = {"accuracy": "acc"}


def score_metric(plan: dict) -> str:
    """The validation metric a plan ranked and extrapolated (a plan of an earlier release: accuracy)."""
    return plan.get("score_metric") or "accuracy"


def out_at(entry: dict) -> str:
    """A configuration's status once out: the size it went out at, and whether it was then within noise."""
    return f"out at n={entry['eliminated_at']}" + (", tie" if entry.get("within_noise") else "")


def plan_text(plan: dict) -> str:
    """The ranked plan as aligned text (what ``unfreeze advise`` prints)."""
    full = plan["full_size"]
    metric = score_metric(plan)
    key = str(full)
    lines = []
    rec = plan["recommendation"]
    if not plan.get("predicts", True):
        need = plan.get("budget_for_curves")
        pick = next((e for e in plan["plan"] if rec and e["configuration"] == rec["configuration"]), None)
        reason = (pick or {}).get("not_predicted")
        lines.append(
            f"Not predicted: the finalists did not reach {MIN_SIZES} training sizes in "
            f"{human_seconds(plan['budget_seconds'])}; a budget of about {human_seconds(need)} would."
            if need
            else f"Not predicted at the full size{' for ' + pick['configuration'] if pick and reason else ''}: "
            f"{reason or 'see the plan'}."
        )
    lines += [
        f"advisor: {plan['model']} on {plan['data']}, {full:,} labelled examples; sizes run "
        f"{', '.join(str(n) for n in plan['sizes'])} x seeds {', '.join(map(str, plan['seeds']))}; "
        f"spent {human_seconds(plan['spent_seconds'])} of {human_seconds(plan['budget_seconds'])}"
        f" (ended: {plan['stopped']})"
    ]
    if plan.get("pilot"):
        lines.append(PilotPlan(**{k: v for k, v in plan["pilot"].items() if k != "calibration"}).describe())
    if plan.get("machine"):
        lines.append(machine_text(plan["machine"]))
    if plan.get("rungs"):
        lines.append(rungs_text(plan["rungs"], plan.get("stopped")))
    head = f"pred. {SHORT_NAMES.get(metric, metric)} at N"
    width = max(16, len(head) + 1)
    lines.append(
        f"{'configuration':<28}{'status':<18}{head:>{width}}{'interval':>18}{'fit at N':>10}"
        f"{'ms/text':>9}{'peak MiB':>10}{'trainable':>12}"
    )
    for e in plan["plan"]:
        if "measured" not in e:
            lines.append(f"{e['configuration']:<28}{e['status']:<18}{(e.get('error') or '')[:60]}")
            continue
        status = e["status"] if e["status"] == "candidate" else out_at(e)
        cost = e["cost"]
        ms = f"{cost['predict_ms_per_text']:.2f}" if cost["predict_ms_per_text"] else "?"
        mem = f"{cost['peak_memory_mib']:.0f}" if cost["peak_memory_mib"] else "?"
        trainable = f"{cost['trainable_parameters']:,}" if cost["trainable_parameters"] is not None else "?"
        if "predicted" in e:
            p = e["predicted"][key]
            interval = f"[{p['low']:.3f}, {p['high']:.3f}]" if p["low"] is not None else "(1 seed)"
            predicted = f"{p['score']:>{width}.3f}{interval:>18}"
        else:
            predicted = f"{'not predicted':>{width}}{'(' + e['not_predicted'] + ')':>18}"
        lines.append(
            f"{e['configuration']:<28}{status:<18}{predicted}"
            f"{human_seconds(cost['fit_seconds']):>10}{ms:>9}{mem:>10}{trainable:>12}"
        )
    bt = ", ".join(f"{f} {v['mae']:.3f}" for f, v in plan["backtest"].items())
    noise = plan.get("backtest_noise")
    floor = f"; noise of the held-out means {noise:.3f}, the least error a curve is credited with" if noise else ""
    lines.append(f"curve form: {plan['form']} (back-test error at the held-out largest size: {bt or 'n/a'}{floor})")
    lines.append("recommendation: " + (rec["why"] if rec else "none (no configuration finished a cell)"))
    if plan["target"] is not None and rec:
        entry = next(e for e in plan["plan"] if e["configuration"] == rec["configuration"])
        needed = entry.get("size_for_target")
        lines.append(
            f"target {plan['target']:.3f}: "
            + (
                "not predicted (fewer than three sizes)"
                if "predicted" not in entry
                else f"about {needed:,} labelled examples for {rec['configuration']}"
                if needed
                else "not reached on the extrapolated curve"
            )
        )
    return "\n".join(lines)


# how a rung's decision had the next rung pick its rates
RATE_MODES = {
    "every-seed": "rates searched on every seed",
    "first-seed": "the first seed's rate shared",
    "kept": "rates kept from the rung before",
}


def rungs_text(decisions: list[dict], stopped: str | None = None) -> str:
    """One line: each rung's size and trained configurations, and why the next one was what it was; a last rung
    that the run ended in (``stopped``: why) has no decision of its own."""
    steps = []
    for d in decisions:
        steps.append(f"{d['n_train']} ({len(d.get('ranking') or [])} trained)")
        reason, mode = d.get("reason", ""), d.get("rate_search", "")
        if d.get("next_n_train") is None:
            steps.append(f"stop ({reason})")
        elif reason not in ("promoted", "finalists") or mode == "kept":
            steps.append(f"[{reason}; {RATE_MODES.get(mode, mode)}]")
    if decisions and decisions[-1].get("next_n_train") is not None:
        steps.append(f"{decisions[-1]['next_n_train']} (ended: {stopped or 'not recorded'})")
    return "rungs: " + " -> ".join(steps)


def machine_text(machine: dict) -> str:
    """Threads and cores, and how the cells ran against their calibration."""
    from ..machine.cores import CoreShare

    cores = machine.get("cores")
    text = "machine: " + (CoreShare(**cores).describe() if cores else "threads not recorded")
    slowdown = machine.get("slowdown")
    if slowdown:
        text += f"; the cells took {slowdown:.2f}x the seconds their calibration gives them" + (
            " (the machine ran slower than when it was timed)" if slowdown > 1.2 else ""
        )
    return text


def write_outputs(plan: dict, run: AdviseRun, json_path: Path | None = None) -> dict:
    """plan.json, curves.png and report.html in the run folder (and the JSON at ``json_path``)."""
    run_dir = run.run_dir
    with atomic_path(run_dir / "plan.json") as tmp:
        tmp.write_text(strict_json.dumps(plan, indent=2, default=_jsonable))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(json_path) as tmp:
            tmp.write_text(strict_json.dumps(plan, indent=2, default=_jsonable))
    figure = None
    colors: dict[str, str] = {}  # the curves' colours, which the interactive plot keeps
    metric = score_metric(plan)
    scores = validation_scores(run.rows, metric)
    drawn = [e for e in plan["plan"] if "predicted" in e]
    if drawn:
        from ..report.plots import color_of

        curves = [
            lc.Curve(
                e["configuration"],
                e["sizes"],
                [],
                e["seeds"],
                e["form"],
                {int(n): p for n, p in e["predicted"].items()},
            )
            for e in drawn
        ]
        for e in drawn:  # strategies keep their report colours; a second config of one strategy takes C-n
            colors[e["configuration"]] = (
                color_of(e["strategy"])
                if e["strategy"] not in [x["strategy"] for x in drawn[: drawn.index(e)]]
                else f"C{(drawn.index(e) + 6) % 10}"
            )
        figure = run_dir / "curves.png"
        with atomic_path(figure) as tmp:
            lc.plot_curves(curves, scores, tmp, metric, plan["full_size"], colors)
    # beside the PNG, not instead of it: a point per cell, its hover the cell's record
    from ..report.interactive import section
    from .interactive import EXPLAINER, advise_charts

    charts = advise_charts(plan, run.rows, metric, colors)
    with atomic_path(run_dir / "report.html") as tmp:
        tmp.write_text(report_html(plan, run, figure, section(charts, EXPLAINER)), encoding="utf-8")
    return {"html": run_dir / "report.html", "json": run_dir / "plan.json", "figure": figure}


def report_html(plan: dict, run: AdviseRun, figure: Path | None, interactive_html: str = "") -> str:
    """The advisor's page; ``interactive_html`` (its interactive plot) comes before the static one."""
    esc = html.escape
    full = plan["full_size"]
    key = str(full)
    metric = html.escape(score_metric(plan))
    title = f"unfreeze advise: {plan['model']} on {plan['data']}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
        "text-align:right}th{background:#f3f3f3}td.l{text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{full:,} labelled examples. Pilot: sizes {esc(', '.join(map(str, plan['sizes'])))}, seeds "
        f"{esc(', '.join(map(str, plan['seeds'])))}, keep the best 1/{plan['eta']} per rung; spent "
        f"{esc(human_seconds(plan['spent_seconds']))} of a budget of {esc(human_seconds(plan['budget_seconds']))} "
        f"(ended: {esc(plan['stopped'])}). Every trained cell chose its learning rate on its own validation "
        "split; no decision read the test set.</p>",
    ]
    if not plan.get("predicts", True):
        parts.append(f"<p><b>{esc(plan_text(plan).splitlines()[0])}</b></p>")
    if plan.get("pilot"):
        pilot = PilotPlan(**{k: v for k, v in plan["pilot"].items() if k != "calibration"})
        parts.append(f"<p>{esc(pilot.describe())}.</p>")
    if plan.get("machine"):
        parts.append(f"<p>{esc(machine_text(plan['machine']))}.</p>")
    rec = plan["recommendation"]
    parts.append("<h2>Recommendation</h2><p>" + esc(rec["why"] if rec else "none") + "</p>")
    parts.append(
        "<h2>Plan at the full size</h2><table><tr><th>configuration</th><th>status</th>"
        f"<th>predicted {metric} at N</th><th>95% interval</th><th>at 2N</th><th>at 4N</th><th>curve</th>"
        "<th>fit at N</th><th>ms/text</th><th>peak MiB</th><th>trainable</th><th>rates chosen</th></tr>"
    )
    for e in plan["plan"]:
        if "measured" not in e:
            parts.append(
                f"<tr><td class='l'>{esc(e['configuration'])}</td><td class='l'>{esc(e['status'])}</td>"
                f"<td colspan='10' class='l'>{esc(e.get('error') or '')}</td></tr>"
            )
            continue
        c = e["cost"]
        status = "in the race" if e["status"] == "candidate" else out_at(e)
        if "predicted" in e:
            p = e["predicted"][key]
            interval = f"[{p['low']:.3f}, {p['high']:.3f}]" if p["low"] is not None else "one seed: none"
            scores = (
                f"<td>{p['score']:.3f}</td><td>{esc(interval)}</td>"
                f"<td>{e['predicted'][str(2 * full)]['score']:.3f}</td>"
                f"<td>{e['predicted'][str(4 * full)]['score']:.3f}</td><td>{esc(e['form'])}</td>"
            )
        else:
            scores = f"<td colspan='5' class='l'>not predicted ({esc(e['not_predicted'])})</td>"
        fit = human_seconds(c["fit_seconds"]) + (
            f" [{human_seconds(c['fit_interval'][0])}, {human_seconds(c['fit_interval'][1])}]"
            if c.get("fit_interval")
            else ""
        )
        ms = f"{c['predict_ms_per_text']:.2f}" if c["predict_ms_per_text"] else "?"
        parts.append(
            f"<tr><td class='l'>{esc(e['configuration'])}</td><td class='l'>{esc(status)}</td>{scores}"
            f"<td>{esc(fit)}</td><td>{ms}</td><td>{c['peak_memory_mib'] or 0:.0f}</td>"
            f"<td>{c['trainable_parameters'] or 0:,}</td>"
            f"<td>{esc(', '.join(f'{r:g}' for r in e['learning_rates']))}</td></tr>"
        )
    parts.append("</table>")
    parts.append(interactive_html)
    if figure is not None:
        data = base64.b64encode(figure.read_bytes()).decode()
        parts.append(f"<p><img alt='learning curves' src='data:image/png;base64,{data}'></p>")
    parts.append(
        "<h2>Curve forms, back-tested</h2><p>Each form is fitted on all sizes but the largest and predicts "
        "the largest; mean absolute error over configurations. 'last' is the baseline (the largest size's "
        f"score). Chosen: <b>{esc(plan['form'])}</b>.</p><table><tr><th>form</th><th>MAE</th>"
        "<th>configurations</th></tr>"
    )
    for f, v in plan["backtest"].items():
        parts.append(f"<tr><td class='l'>{esc(f)}</td><td>{v['mae']:.4f}</td><td>{v['configurations']}</td></tr>")
    parts.append("</table>")
    if plan.get("backtest_noise"):
        parts.append(
            f"<p>The held-out means themselves are uncertain by {plan['backtest_noise']:.4f} (their standard "
            "error over seeds): no curve is credited with a smaller error.</p>"
        )
    parts.append(
        f"<h2>Rungs</h2><table><tr><th>rung</th><th>n</th><th>ranking (validation {metric}, mean "
        "over seeds)</th><th>promoted</th><th>next</th></tr>"
    )
    for d in plan["rungs"]:
        ranking = "; ".join(f"{r['configuration']} {ranked_score(r):.3f}" for r in d["ranking"])
        nxt = (
            f"{d['next_n_train']} ({d['reason']}; {RATE_MODES.get(d.get('rate_search', ''), '')})"
            if d["next_n_train"] is not None
            else f"stop ({d['reason']})"
        )
        parts.append(
            f"<tr><td>{d['rung']}</td><td>{d['n_train']}</td><td class='l'>{esc(ranking)}</td>"
            f"<td class='l'>{esc(', '.join(d['promoted']))}</td><td>{esc(str(nxt))}</td></tr>"
        )
    parts.append(
        "</table><h2>Every cell</h2><table><tr><th>configuration</th><th>n</th><th>seed</th><th>status</th>"
        f"<th>validation {metric}</th><th>learning rate (tried)</th><th>cell s</th></tr>"
    )
    from .cost import cell_seconds

    for r in sorted(run.rows, key=lambda r: (r["cell"]["n_train"], r["cell"]["label"], r["cell"]["seed"])):
        fitted = r.get("fit") or {}
        tried = ", ".join(f"{t['learning_rate']:g}" for t in fitted.get("lr_search") or [])
        rate = f"{fitted['learning_rate']:g} ({tried})" if fitted.get("learning_rate") is not None else ""
        val = (r.get("validation") or {}).get(score_metric(plan))
        parts.append(
            f"<tr><td class='l'>{esc(r['cell']['label'])}</td><td>{r['cell']['n_train']}</td>"
            f"<td>{r['cell']['seed']}</td><td>{esc(r['status'])}</td>"
            f"<td>{'' if val is None else f'{val:.3f}'}</td><td>{esc(rate)}</td>"
            f"<td>{cell_seconds(r):.1f}</td></tr>"
        )
    parts.append(
        "</table><p>Built by unfreeze advise from results.jsonl; plan.json holds these numbers.</p></body></html>"
    )
    return "\n".join(parts)


def _jsonable(value: object) -> object:
    if hasattr(value, "tolist"):
        return strict_json.finite(value.tolist())
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


__all__ = ["machine_text", "plan_text", "report_html", "score_metric", "write_outputs"]
