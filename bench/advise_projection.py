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
"""

from __future__ import annotations

import argparse
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


def projections(folder: Path) -> dict[str, list[float]]:
    """Measured seconds and the old, padding-only and new projections of every trained cell the run at ``folder``
    recorded."""
    from unfreeze.advise.calibrate import calibration_texts, padding_of, with_tokens
    from unfreeze.advise.cost import cell_seconds
    from unfreeze.advise.pilot import StepCosts, calibrated_seconds
    from unfreeze.advise.spec import AdviseSpec
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
    scaled = {label: with_tokens(c, tokens, padding) for label, c in recorded.items()}
    out: dict[str, list[float]] = {key: [] for key in KINDS}
    for row in rows:
        label = (row.get("cell") or {}).get("label")
        if (row.get("advise") or {}).get("plan_id") != advise["plan_id"] or label not in recorded:
            continue
        if recorded[label].cheap or row.get("status") != "done":
            continue
        new = calibrated_seconds(scaled[label], row)
        if new:
            out["measured"].append(cell_seconds(row))
            out["old"].append(without_search_scoring(recorded[label], row))
            out["padding"].append(without_search_scoring(scaled[label], row))
            out["new"].append(new)
    return out


KINDS = ("measured", "old", "padding", "new")


def summary(measured: list[float], projected: list[float]) -> str:
    ratios = np.asarray(measured) / np.asarray(projected)
    low, median, high = np.percentile(ratios, [10, 50, 90])
    return f"{median:.2f} [{low:.2f}, {high:.2f}] total {sum(measured) / sum(projected):.2f}"


def line(name: str, seconds: dict[str, list[float]]) -> str:
    measured = seconds["measured"]
    return f"{name}: {len(measured)} cells; " + "; ".join(
        f"{kind} {summary(measured, seconds[kind])}" for kind in KINDS[1:]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help=f"advisor run folders (default: every run under {ROOT})")
    args = parser.parse_args()
    _common.print_machine()
    folders = [f for path in args.folders for f in runs_under(path)] if args.folders else runs_under(ROOT)
    print("measured / projected seconds of the trained cells (median [10th, 90th percentile], sum over sum):")
    every: dict[str, list[float]] = {key: [] for key in KINDS}
    for folder in folders:
        seconds = projections(folder)
        if not seconds["measured"]:
            print(f"{folder}: no trained cells")
            continue
        print(line(str(folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder), seconds))
        for key, values in seconds.items():
            every[key].extend(values)
    if every["measured"]:
        print(line("all runs", every))


if __name__ == "__main__":
    main()
