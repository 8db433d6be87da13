"""A study run's FINDINGS.md: the claim, its source, the numbers with intervals, the plots, the verdict. No torch.

Everything is computed from the run folder alone (``study.json`` and the arms' result
stores), so ``unfreeze study --summary`` can rebuild every run's findings, and anyone
can check a verdict against the rows it was computed from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..report.stats import CONFIDENCE
from ..storage.cache import atomic_path
from .analyses import AnalysisResult, Context, analysis_kind
from .results import planned_cells, read_meta, study_frame
from .rules import INCONCLUSIVE, Verdict, decide, names_in
from .spec import Study, study_from_dict

FINDINGS_FILE = "FINDINGS.md"


@dataclass
class Findings:
    run_dir: Path
    meta: dict
    study: Study
    frame: pd.DataFrame
    result: AnalysisResult
    verdict: Verdict

    @property
    def counts(self) -> dict[str, int]:
        frame = self.frame
        done = int((frame["status"] == "done").sum()) if not frame.empty else 0
        failed = int((frame["status"] == "failed").sum()) if not frame.empty else 0
        reused = int(frame["reused"].sum()) if not frame.empty and "reused" in frame else 0
        planned = planned_cells(self.meta)
        return {
            "planned": planned,
            "done": done,
            "failed": failed,
            "pending": planned - done - failed,
            "reused": reused,
        }

    @property
    def complete(self) -> bool:
        counts = self.counts
        return counts["pending"] == 0 and counts["failed"] == 0

    @property
    def quick(self) -> bool:
        return bool(self.meta.get("quick"))

    @property
    def verdict_label(self) -> str:
        """The verdict as the summary prints it, qualified when the run cannot carry one."""
        if self.quick:
            return f"{self.verdict.verdict} (quick run: not evidence)"
        counts = self.counts
        if counts["pending"] or counts["failed"]:
            return f"{self.verdict.verdict} (partial: {counts['done']} of {counts['planned']} cells)"
        return self.verdict.verdict

    def wall_seconds(self) -> float:
        return float(sum(inv.get("seconds") or 0.0 for inv in self.meta.get("invocations", [])))

    def cell_seconds(self) -> float:
        """Seconds of the cells run for this study (reused cells were paid for by another run)."""
        frame = self.frame
        if frame.empty or "cell_seconds" not in frame:
            return 0.0
        own = frame[~frame["reused"]] if "reused" in frame else frame
        return float(pd.to_numeric(own["cell_seconds"], errors="coerce").fillna(0).sum())

    @property
    def seeds(self) -> list[int]:
        return sorted({int(s) for arm in self.meta.get("arms", []) for s in arm.get("spec", {}).get("seeds", [])})

    def machine(self) -> str:
        machines = list(dict.fromkeys(inv.get("machine", "?") for inv in self.meta.get("invocations", [])))
        return "; ".join(machines) or "unknown"

    def to_frame(self) -> pd.DataFrame:
        """The analysis' quantities, one row each: ``quantity``, ``value`` and what it means (the verdict's inputs;
        ``frame`` holds the cells they were computed from)."""
        quantities = self.result.quantities
        rows = [{"quantity": q, "value": v, "meaning": self.result.meanings.get(q, "")} for q, v in quantities.items()]
        return pd.DataFrame(rows, columns=["quantity", "value", "meaning"])

    def _repr_html_(self) -> str:
        """In Jupyter: the verdict in a caption, the quantities, the analysis' tables and its plots (where drawn)."""
        from ..notebook.display import frame_html, images_html

        counts = self.counts
        caption = (
            f"study {self.study.name}: {self.study.title}; verdict {self.verdict_label} "
            f"({counts['done']} of {counts['planned']} cells done)"
        )
        parts = [frame_html(self.to_frame(), caption)]
        parts += [frame_html(pd.DataFrame(t.rows, columns=t.headers), t.title) for t in self.result.tables]
        figures = [self.run_dir / name for name, _ in self.result.figures if name]
        return "".join(parts) + images_html(figures, self.study.name)


def context_of(meta: dict, study: Study, out_dir: Path | None) -> Context:
    from ..tasks import DEFAULT_TASK, make_task

    task = make_task(meta.get("task") or DEFAULT_TASK)  # runs of single-label data, and earlier ones, name none
    metric = study.metric_for(task.name)
    sizes: set[int] = set()
    per_class: dict[int, int] = {}
    for arm in meta.get("arms", []):
        sizes.update(int(n) for n in arm.get("sizes", []))
        per_class.update({int(n): int(p) for n, p in (arm.get("per_class") or {}).items()})
    return Context(
        metric=metric,
        params=study.analysis_params,
        num_blocks=meta.get("num_blocks"),
        sizes=sorted(sizes),
        per_class=per_class,
        majority=meta.get("majority") or {},
        out_dir=out_dir,
        title=study.title,
        sign=task.sign(metric),
    )


def analyse(run_dir: str | Path, draw: bool = True) -> Findings:
    """Analyse a study's run folder: the analysis' quantities, tables and (with ``draw``) plots, and the verdict."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    study = study_from_dict(meta["study"], Path(meta.get("study_file", "study.toml")))
    frame = study_frame(run_dir, meta)
    result = analysis_kind(study.analysis).run(frame, context_of(meta, study, run_dir if draw else None))
    verdict = decide(study.verdict, result.quantities)
    return Findings(run_dir, meta, study, frame, result, verdict)


def write_findings(run_dir: str | Path) -> Findings:
    """Analyse ``run_dir`` and write its FINDINGS.md (and plots) next to the results."""
    findings = analyse(run_dir, draw=True)
    with atomic_path(findings.run_dir / FINDINGS_FILE) as tmp:
        tmp.write_text(findings_markdown(findings), encoding="utf-8")
    return findings


def seed_interval_caveat(n_seeds: int) -> str | None:
    """What a bootstrap interval over so few seeds is, or None when it is more than their range.

    The exact bootstrap gives the resample that repeats the lowest seed ``S`` times the weight
    ``S ** -S``; while that is at least the interval's tail (2.5%: up to three seeds) the interval
    is the range of the per-seed values, and 'above 0' only says that every seed agrees.
    """
    if n_seeds < 2 or n_seeds**-n_seeds < (1 - CONFIDENCE) / 2:
        return None
    return (
        f"With {n_seeds} seeds, a {CONFIDENCE:.0%} bootstrap interval over seeds (the paired differences, "
        f"the [low, high] in the tables) is the range of the {n_seeds} per-seed values: an interval above 0 "
        f"says that every seed agrees on the sign, which with no real difference happens by chance once in "
        f"{2**n_seeds} for each sign. Read a verdict resting on one as 'consistent over {n_seeds} seeds', not "
        f"as a test at the {1 - CONFIDENCE:.0%} level; more `seeds` in the study file give a real interval."
    )


def format_quantity(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def reproduce_command(meta: dict) -> str:
    parts = [
        "unfreeze study",
        meta.get("study_file", "STUDY.toml"),
        "--data",
        meta.get("data", "DATA"),
        "--model",
        meta.get("model", "MODEL"),
    ]
    for option, key in (("--test", "test"), ("--text-col", "text_col"), ("--label-col", "label_col")):
        if meta.get(key):
            parts += [option, str(meta[key])]
    if meta.get("quick"):
        parts.append("--quick")
    parts += ["-o", meta.get("output", "RUN")]
    return " ".join(parts)


def findings_markdown(findings: Findings) -> str:
    study, meta, result, verdict = findings.study, findings.meta, findings.result, findings.verdict
    counts = findings.counts
    number = f"Study {study.number}: " if study.number is not None else ""
    data_summary = meta.get("data_summary", {})
    sizes = sorted({int(n) for arm in meta.get("arms", []) for n in arm.get("sizes", [])})
    per_class = {int(n): int(p) for arm in meta.get("arms", []) for n, p in (arm.get("per_class") or {}).items()}
    seeds = findings.seeds
    size_text = ", ".join(f"{per_class[n]}/class (n={n})" if n in per_class else str(n) for n in sizes)
    invocations = meta.get("invocations", [])
    lines = [
        f"# {number}{study.title}",
        "",
        f"_Generated by unfreeze from the results in this folder; rebuild with `unfreeze study --summary "
        f"{meta.get('output', '.')} -o FILE`._",
        "",
        "| | |",
        "|---|---|",
        f"| Claim | {study.claim} |",
        f"| Source | {study.source} |",
        f"| Data | {meta.get('data')} (training pool {data_summary.get('train_pool', '?'):,} texts, test "
        f"{data_summary.get('n_test', '?'):,} texts, {len(data_summary.get('test_class_counts', {}))} classes) |",
        f"| Model | {meta.get('model')} ({meta.get('num_blocks')} blocks) |",
        f"| Cells | {counts['planned']} planned, {counts['done']} finished, {counts['failed']} failed, "
        f"{counts['pending']} not run yet"
        + (f" ({counts['reused']} reused from other runs with the same cell keys)" if counts["reused"] else "")
        + " |",
        f"| Sizes / seeds | {size_text} / {', '.join(map(str, seeds))} |",
        f"| Metric | test {study.metric_for(meta.get('task')).replace('_', '-')} |",
        f"| Machine | {findings.machine()} |",
        f"| Time | {duration(findings.wall_seconds())} wall clock over {len(invocations)} invocation"
        f"{'s' if len(invocations) != 1 else ''}; {duration(findings.cell_seconds())} in this study's own "
        "cells |",
        "",
    ]
    if findings.quick:
        lines += [
            "> **Quick run** (one seed, the smallest sizes, one epoch, one learning rate per cell): it "
            "checks that the study runs on this data and model. Its numbers are not evidence.",
            "",
        ]
    elif counts["pending"] or counts["failed"]:
        lines += [
            f"> **Partial run**: {counts['done']} of {counts['planned']} cells finished"
            + (f", {counts['failed']} failed" if counts["failed"] else "")
            + ". Run the command below again to finish it (it resumes).",
            "",
        ]
    lines += [f"## Verdict: {verdict.verdict}", "", study.verdict["explain"], ""]
    lines += ["| rule | expression | result |", "|---|---|---|"]
    for key in ("holds", "partly"):
        if study.verdict.get(key):
            value = getattr(verdict, key)
            lines.append(f"| {key} | `{study.verdict[key]}` | {'n/a' if value is None else str(value).lower()} |")
    lines.append("")
    if verdict.verdict == INCONCLUSIVE:
        lines += [
            f"Inconclusive: {', '.join(verdict.missing)} could not be computed from these results "
            "(one seed gives no interval; a missing configuration gives no difference).",
            "",
        ]
    read = list(
        dict.fromkeys(
            names_in(study.verdict["holds"])
            + (names_in(study.verdict["partly"]) if study.verdict.get("partly") else [])
        )
    )
    lines += ["| quantity | value | meaning |", "|---|---|---|"]
    for name in read + [n for n in result.quantities if n not in read]:
        marker = f"**{name}**" if name in read else name
        lines.append(
            f"| {marker} | {format_quantity(result.quantities.get(name, math.nan))} | {result.meanings.get(name, '')} |"
        )
    lines += ["", "(**bold**: read by the rules.)", ""]
    caveat = seed_interval_caveat(len(seeds))
    if caveat and not findings.quick:
        lines += [f"_{caveat}_", ""]
    if study.design:
        lines += ["## Design", "", study.design, ""]
    lines += ["## Numbers", ""]
    for table in result.tables:
        lines += [table.markdown(), ""]
    for note in result.notes:
        lines += [f"- {note}"]
    if result.notes:
        lines.append("")
    failed = findings.frame[findings.frame["status"] == "failed"] if not findings.frame.empty else findings.frame
    if not failed.empty:
        lines += ["Failed cells:", ""]
        for _, row in failed.iterrows():
            lines.append(f"- {row['config']}, n={row['n_train']}, seed={row['seed']}: {row['error']}")
        lines.append("")
    if result.figures:
        lines += ["## Plots", ""]
        for figure, caption in result.figures:
            if figure:
                lines += [f"![{caption}]({figure})", "", caption, ""]
    lines += [
        "## Reproduce",
        "",
        "```",
        reproduce_command(meta),
        "```",
        "",
        "It resumes: cells already in the results are not run again, and with every cell done it only "
        "rewrites this file. Each arm is a sweep's run folder (`arms/NAME`): `unfreeze report "
        f"{meta.get('output', 'RUN')}/arms/NAME` builds its report.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["FINDINGS_FILE", "Findings", "analyse", "findings_markdown", "write_findings"]
