"""How close the advisor's calibration projects the cells it then ran: measured over projected seconds, per run,
with each calibrated cost per text as recorded (old) and scaled by padded tokens per text (new).

Offline, from finished advisor runs (``bench/advise_budgets.py`` writes them under ``bench/runs/advise-budgets``):
each run's results store holds its calibration (``StepCosts`` per configuration) and every cell it trained (size,
validation texts, the epochs each rate ran, its seconds). Three projections of each cell from the same recorded
calibration: "old", as the release before this one made it (each cost per text as timed; a search's fits not
scored again); "padding", each cost per text scaled by the padded tokens per text of the cell's batches over those
of the batches calibration timed (``advise.calibrate.padding_of``: the run's data and calibration sample are read
again and tokenised, no model runs); "new", as the advisor now projects (``pilot.calibrated_seconds``: the padding,
and each fit of a rate search scoring the validation set once more to compare the rates). Only trained cells
count, as in the plan's slowdown (a frozen model's cells read embeddings pooled across cells). Printed per run:
cells, the median measured/projected and its spread (the 10th to 90th percentile), and the total measured over
the total projected (what the plan reports as "the cells took Nx their calibration").

Then the same for the projections from one rung to the next, which decide whether a next size fits and guard
the clock (``cost.projected_cell_seconds``): each trained cell projected from the same seed's cell at the size
before (when both searched their rate or both did not). "old": only the fits' steps grow with the training size,
at the seconds per example measured; "new": the training sample's scoring after the fit grows too, and the
steps and validation scale with the padded tokens per text of the larger rung's batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import _common

ROOT = Path(__file__).parent / "runs" / "advise-budgets"


def runs_under(root: Path) -> list[Path]:
    """Run folders (an ``advise.json`` beside a ``results.jsonl``) under ``root``."""
    return sorted(p.parent for p in root.rglob("advise.json") if (p.parent / "results.jsonl").exists())


def without_search_scoring(c, row: dict) -> float:
    """A cell's projection with the costs ``c`` per text, its fits not scored again after a search (the release
    before this one)."""
    from unfreeze.advise.pilot import fits_seconds

    fit = row.get("fit") or {}
    epochs = [int(t.get("epochs_run") or c.epochs) for t in fit.get("lr_search") or [fit]]
    return fits_seconds(c, int(row["cell"]["n_train"]), int((row.get("validation") or {}).get("n") or 0), epochs)


def old_rung_projection(row: dict, size: int, validation: int) -> float:
    """A cell at ``size`` projected from ``row`` as the release before this one did: only the fits' steps grow,
    per example as measured; the seconds spent validating grow with the validation texts."""
    from unfreeze.advise.cost import cell_seconds, scaling_seconds

    total, n = cell_seconds(row), max(int(row["cell"]["n_train"]), 1)
    scaling = scaling_seconds(row)
    grows = total if scaling is None else min(scaling, total)
    fixed = total - grows
    scored = int((row.get("validation") or {}).get("n") or 0)
    if scored and validation != scored:
        fit = row.get("fit") or {}
        spent = sum(float(t.get("validation_seconds") or 0.0) for t in fit.get("lr_search") or [fit])
        fixed += min(spent, fixed) * (validation / scored - 1.0)
    return fixed + grows / n * size


def projections(folder: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """For the run at ``folder``: measured seconds and the old, padding-only and new calibrated projections of
    every trained cell it recorded; measured seconds and the old and new projections of each from the cell before."""
    from unfreeze.advise.calibrate import calibration_texts, padding_of, with_tokens
    from unfreeze.advise.cost import cell_seconds, projected_cell_seconds, searched_rate
    from unfreeze.advise.halving import advise_grid, configurations
    from unfreeze.advise.pilot import StepCosts, calibrated_seconds
    from unfreeze.advise.spec import AdviseSpec
    from unfreeze.strategies import strategy_class
    from unfreeze.sweep.plan import load_sweep_data

    advise = json.loads((folder / "advise.json").read_text())
    spec = AdviseSpec(**advise["spec"])
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    start = next(r for r in rows if r.get("kind") == "advise-start" and r.get("plan_id") == advise["plan_id"])
    recorded = {label: StepCosts(**c) for label, c in (start.get("calibration") or {}).items()}
    sweep = spec.sweep_spec(validation_size=advise["validation_size"])
    data = load_sweep_data(sweep)
    batch, texts = calibration_texts(sweep, data, spec.seeds[0])
    tokens, padding = padding_of(sweep, data, texts, batch, None, spec.seeds[0])
    grid = dataclasses.replace(sweep, grid=advise_grid(spec, advise["num_blocks"]))
    grouped = {c.label: strategy_class(c.strategy).length_grouped for c in configurations(grid, advise["num_blocks"])}
    scaled = {label: with_tokens(c, tokens, padding, grouped.get(label, True)) for label, c in recorded.items()}
    calibrated: dict[str, list[float]] = {key: [] for key in KINDS}
    trained: dict[tuple, list[dict]] = {}
    for row in rows:
        label = (row.get("cell") or {}).get("label")
        if (row.get("advise") or {}).get("plan_id") != advise["plan_id"] or label not in recorded:
            continue
        if recorded[label].cheap or row.get("status") != "done":
            continue
        trained.setdefault((label, row["cell"]["seed"]), []).append(row)
        new = calibrated_seconds(scaled[label], row)
        if new:
            calibrated["measured"].append(cell_seconds(row))
            calibrated["old"].append(without_search_scoring(recorded[label], row))
            calibrated["padding"].append(without_search_scoring(scaled[label], row))
            calibrated["new"].append(new)
    rungs: dict[str, list[float]] = {key: [] for key in RUNG_KINDS}
    for cells in trained.values():
        cells.sort(key=lambda r: r["cell"]["n_train"])
        for before, cell in itertools.pairwise(cells):
            if searched_rate(before) != searched_rate(cell):
                continue
            size, validation = int(cell["cell"]["n_train"]), int(cell["validation"]["n"])
            rungs["measured"].append(cell_seconds(cell))
            rungs["old"].append(old_rung_projection(before, size, validation))
            rungs["new"].append(projected_cell_seconds(before, size, validation, padding))
    return calibrated, rungs


KINDS = ("measured", "old", "padding", "new")
RUNG_KINDS = ("measured", "old", "new")


def summary(measured: list[float], projected: list[float]) -> str:
    ratios = np.asarray(measured) / np.asarray(projected)
    low, median, high = np.percentile(ratios, [10, 50, 90])
    return f"{median:.2f} [{low:.2f}, {high:.2f}] total {sum(measured) / sum(projected):.2f}"


def line(name: str, seconds: dict[str, list[float]]) -> str:
    measured = seconds["measured"]
    return f"{name}: {len(measured)} cells; " + "; ".join(
        f"{kind} {summary(measured, values)}" for kind, values in seconds.items() if kind != "measured"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help=f"advisor run folders (default: every run under {ROOT})")
    args = parser.parse_args()
    _common.print_machine()
    folders = [f for path in args.folders for f in runs_under(path)] if args.folders else runs_under(ROOT)
    every: tuple[dict[str, list[float]], ...] = ({key: [] for key in KINDS}, {key: [] for key in RUNG_KINDS})
    lines: tuple[list[str], list[str]] = ([], [])
    for folder in folders:
        name = str(folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder)
        for seconds, total, out in zip(projections(folder), every, lines):
            if not seconds["measured"]:
                out.append(f"{name}: no trained cells")
                continue
            out.append(line(name, seconds))
            for key, values in seconds.items():
                total[key].extend(values)
    titles = (
        "measured / projected seconds of the trained cells, from the calibration "
        "(median [10th, 90th percentile], sum over sum):",
        "measured / projected seconds of the trained cells, from the same seed's cell at the size before:",
    )
    for title, out, total in zip(titles, lines, every):
        print(title)
        for text in out:
            print(f"  {text}")
        if total["measured"]:
            print(f"  {line('all runs', total)}")


if __name__ == "__main__":
    main()
