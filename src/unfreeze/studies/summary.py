"""The findings of many study runs on one page (docs/FINDINGS.md): claim, verdict per dataset and model. No torch.

Every run's FINDINGS.md and plots are rebuilt from its results first, so the page and
the runs it links to always agree with the result stores. Given the study files
(``studies``), the page also lists every study x dataset x model that the files name and
no run covers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import UnfreezeError
from .findings import FINDINGS_FILE, Findings, duration, format_quantity, seed_interval_caveat, write_findings
from .results import STUDY_FILE
from .rules import names_in
from .spec import Study, load_study


def find_runs(paths: list[Path]) -> list[Path]:
    """Study run folders: each path is one (it holds study.json) or a folder searched for them."""
    runs: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UnfreezeError(f"{path} does not exist; --summary takes study run folders or folders holding them.")
        if (path / STUDY_FILE).is_file():
            runs.append(path)
            continue
        found = sorted(p.parent for p in path.rglob(STUDY_FILE))
        if not found:
            raise UnfreezeError(f"{path} holds no study run (no {STUDY_FILE} in it or below it).")
        runs.extend(found)
    return list(dict.fromkeys(runs))


def _link(target: Path, page: Path) -> str:
    return Path(os.path.relpath(target, page.parent)).as_posix()


def _sort_key(f: Findings):
    return (
        f.study.number if f.study.number is not None else 1_000,
        f.study.name,
        f.meta.get("model", ""),
        f.meta.get("data", ""),
    )


def _column(f: Findings) -> tuple[str, str]:
    return f.meta.get("data", "?"), f.meta.get("model", "?")


def summary_markdown(findings: list[Findings], page: Path, command: str, studies: list[Study]) -> str:
    """The page: how to regenerate it, the summary table, each study's runs with the quantities its rule read,
    the machine and time of every run, and what was not run."""
    findings = sorted(findings, key=_sort_key)
    by_study: dict[str, list[Findings]] = {}
    for f in findings:
        by_study.setdefault(f.study.name, []).append(f)
    columns = sorted({_column(f) for f in findings}, key=lambda c: (c[1], c[0]))
    lines = [
        "# Findings: the literature's claims about unfreezing, tested here",
        "",
        "_Generated from the result stores of the study runs below; nothing in it is typed by hand. "
        "Regenerate it (it rebuilds every run's FINDINGS.md from its results first) with:_",
        "",
        "```",
        command,
        "```",
        "",
        "Each study is a TOML file in `studies/` (a sweep, the analysis it needs, and a verdict rule stated in "
        "the file) run by `unfreeze study studies/NAME.toml --data DATA --model MODEL -o RUN`. Verdicts: "
        "**holds**, **partly**, **does not hold here** (by the file's rule, on this data and model), "
        "**inconclusive** (a quantity the rule reads could not be computed). A run that is not finished says "
        "so next to its verdict.",
        "",
    ]
    for caveat in dict.fromkeys(seed_interval_caveat(len(f.seeds)) for f in findings if not f.quick):
        if caveat:
            lines += [caveat, ""]
    lines += ["## Summary", ""]
    header = ["#", "claim", *(f"{data}, {model}" for data, model in columns)]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for runs in by_study.values():
        study = runs[0].study
        cells = []
        for column in columns:
            run = next((f for f in runs if _column(f) == column), None)
            cells.append(f"[{run.verdict_label}]({_link(run.run_dir / FINDINGS_FILE, page)})" if run else "not run")
        number = str(study.number) if study.number is not None else ""
        lines.append(f"| {number} | {study.title} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, runs in by_study.items():
        study = runs[0].study
        number = f"{study.number}. " if study.number is not None else ""
        lines += [
            f"## {number}{study.title}",
            "",
            f"**Claim.** {study.claim}",
            "",
            f"**Source.** {study.source}",
            "",
            f"**Rule** (`studies/{Path(runs[0].meta.get('study_file', name)).name}`). {study.verdict['explain']}",
            "",
        ]
        read = list(
            dict.fromkeys(
                names_in(study.verdict["holds"])
                + (names_in(study.verdict["partly"]) if study.verdict.get("partly") else [])
            )
        )
        lines += [
            "| data, model | verdict | " + " | ".join(read) + " |",
            "|---|---|" + "|".join("---" for _ in read) + "|",
        ]
        for f in runs:
            data, model = _column(f)
            values = " | ".join(format_quantity(f.result.quantities.get(q, math.nan)) for q in read)
            lines.append(
                f"| [{data}, {model}]({_link(f.run_dir / FINDINGS_FILE, page)}) | {f.verdict_label} | {values} |"
            )
        lines.append("")
        across = _across(study, runs)
        if across:
            lines += across
    lines += [
        "## Machine and time",
        "",
        "| study | data, model | cells (finished / planned; reused) | wall clock | own cell time | machine |",
        "|---|---|---|---|---|---|",
    ]
    for f in findings:
        counts = f.counts
        data, model = _column(f)
        lines.append(
            f"| {f.study.name} | {data}, {model} | {counts['done']} / {counts['planned']}; "
            f"{counts['reused']} | {duration(f.wall_seconds())} | {duration(f.cell_seconds())} | "
            f"{f.machine()} |"
        )
    total_wall = sum(f.wall_seconds() for f in findings)
    total_cells = sum(f.cell_seconds() for f in findings)
    lines += [
        "",
        f"In all: {duration(total_wall)} wall clock, {duration(total_cells)} of cell time. Reused cells "
        "were computed once, by the run they were reused from (the same cell key: the same data, model, "
        "strategy, parameters, size, seed and settings).",
        "",
    ]
    missing = _not_run(findings, studies)
    lines += ["## Not run", ""]
    if missing:
        lines += [f"- {line}" for line in missing]
    else:
        lines.append("Every study file's datasets and models have a finished run.")
    lines.append("")
    return "\n".join(lines)


def _across(study: Study, runs: list[Findings]) -> list[str]:
    """Datasets ordered by difficulty (a compare study with ``order_by_difficulty``): the reference
    configuration's error rate, and the first comparison's difference, per model."""
    params = study.analysis_params
    if study.analysis != "compare" or not params.get("order_by_difficulty"):
        return []
    name, (candidate, reference) = next(iter(params["comparisons"].items()))
    lines = [
        f"Datasets ordered by difficulty (1 - the test score of {reference}):",
        "",
        f"| model | data | difficulty | {candidate} - {reference} [95% interval] | verdict |",
        "|---|---|---|---|---|",
    ]
    by_model: dict[str, list[Findings]] = {}
    for f in runs:
        by_model.setdefault(f.meta.get("model", "?"), []).append(f)
    for model, group in by_model.items():
        rows = []
        for f in group:
            q = f.result.quantities
            difficulty = 1 - q.get(f"{name}_reference", math.nan)
            rows.append(
                (
                    difficulty,
                    f.meta.get("data"),
                    q.get(name, math.nan),
                    q.get(f"{name}_low", math.nan),
                    q.get(f"{name}_high", math.nan),
                    f.verdict_label,
                )
            )
        for difficulty, data, diff, low, high, verdict in sorted(rows, key=lambda r: (math.isnan(r[0]), r[0])):
            from .analyses import fmt_ci

            lines.append(
                f"| {model} | {data} | {format_quantity(difficulty)} | {fmt_ci(diff, low, high, sign=True)} "
                f"| {verdict} |"
            )
    return [*lines, ""]


def _not_run(findings: list[Findings], studies: list[Study]) -> list[str]:
    have = {(f.study.name, *_column(f)) for f in findings if not f.quick}
    complete = {(f.study.name, *_column(f)) for f in findings if not f.quick and f.complete}
    out = []
    for study in sorted(studies, key=lambda s: (s.number if s.number is not None else 1_000, s.name)):
        for model in study.models or [study.default_model]:
            for data in study.datasets or [study.default_data]:
                key = (study.name, data, model)
                if key not in have:
                    out.append(f"{study.name} on {data} with {model}: not run.")
                elif key not in complete:
                    out.append(f"{study.name} on {data} with {model}: partial (resume it with its command).")
    for f in findings:
        if f.quick:
            out.append(f"{f.study.name} on {f.meta.get('data')} with {f.meta.get('model')}: a quick run only.")
    return out


def write_summary(paths: list[Path], page: Path, command: str, studies_dir: Path | None = None) -> list[Findings]:
    """Rebuild every run's findings, then write the page; returns the findings."""
    from ..storage.cache import atomic_path

    runs = find_runs(paths)
    findings = [write_findings(run) for run in runs]
    studies = [load_study(p) for p in sorted(Path(studies_dir).glob("*.toml"))] if studies_dir else []
    text = summary_markdown(findings, page, command, studies)
    page.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(page) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return findings


__all__ = ["find_runs", "summary_markdown", "write_summary"]
