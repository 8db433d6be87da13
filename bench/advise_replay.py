"""Replay an advisor run's recorded cells through the current code's rung rule: does each decision stay the same?

``python bench/advise_replay.py RUN_DIR [RUN_DIR ...]`` reads each run folder's ``results.jsonl`` and, for every
recorded rung decision, calls ``advise.rungs.decide`` on the cells the run had measured up to that rung (the
configurations it ranked there, the pilot's calibration and validation sizes), then prints the recorded and the
replayed promotion, next size and rate mode side by side. A run whose decisions all replay the same stands for
the current code without running its cells again. No torch, no cell runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from unfreeze.advise.pilot import validation_at
from unfreeze.advise.rungs import decide
from unfreeze.advise.spec import AdviseSpec


class _Config:
    def __init__(self, label: str) -> None:
        self.label = label

    def cell(self, n: int, seed: int) -> tuple:
        return (self.label, n, seed)


def replay(run_dir: Path) -> bool:
    """Print each rung's recorded and replayed decision; True when every one is the same."""
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]
    start = next(r for r in rows if r.get("kind") == "advise-start")
    spec_row = json.loads((run_dir / "advise.json").read_text())["spec"]
    decisions = {r["rung"]: r for r in rows if r.get("kind") == "advise-rung"}
    cells = [r for r in rows if "cell" in r and r.get("status")]
    pilot = start["pilot"]
    labels = sorted({r["cell"]["label"] for r in cells})
    spec = AdviseSpec(
        seeds=pilot["seeds"], budget=spec_row["budget"], eta=spec_row["eta"], finalists=spec_row["finalists"]
    )
    cheap = next(iter(decisions.values()))["cheap"] if decisions else []
    held = json.loads((run_dir / "advise.json").read_text())["validation_size"]
    same_all = True
    for i, recorded in sorted(decisions.items()):
        n = recorded["n_train"]
        measured = {
            (r["cell"]["label"], r["cell"]["n_train"], r["cell"]["seed"]): r for r in cells if r["cell"]["n_train"] <= n
        }
        before = decisions[i - 1]["rate_search"] if i else None
        replayed = decide(
            spec,
            "replay",
            i,
            pilot["ladder"],
            n,
            [e["configuration"] for e in recorded["ranking"]],
            cheap,
            {label: _Config(label) for label in labels},
            measured,
            lambda c: c,
            start["load_seconds"],
            "kept" if before == "kept" else pilot["rate_search"],
            lambda m: validation_at(m, held, pilot["validation_growth"], pilot["validation_floor"]),
            {label: c.get("padding") for label, c in start["calibration"].items()},
        )
        fields = ("promoted", "next_n_train", "rate_search")
        same = all(recorded.get(f) == replayed.get(f) for f in fields)
        same_all &= same
        print(
            f"rung {i} (n={n}): recorded {[recorded.get(f) for f in fields]}; now {[replayed.get(f) for f in fields]} "
            f"({replayed['reason']}) {'same' if same else 'DIFFERENT'}"
        )
    return same_all


def main() -> None:
    for folder in sys.argv[1:]:
        missing = [name for name in ("results.jsonl", "advise.json") if not (Path(folder) / name).is_file()]
        if missing:
            print(f"{folder} is not an advisor run folder (no {', '.join(missing)}); give the -o folder of advise")
            sys.exit(2)
        print(f"== {folder}")
        print("every decision the same" if replay(Path(folder)) else "some decisions differ")


if __name__ == "__main__":
    main()
