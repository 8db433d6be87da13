"""What a run folder holds for a tracker: the parent run (the sweep, advisor or study) and a row per cell.

A sweep folder (sweep.json, results.jsonl), an advise folder (advise.json, results.jsonl with the
advisor's decision rows among the cells) and a study folder (study.json, a sweep folder per arm
under arms/) are read from their files alone: no model, no tracker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnfreezeError
from ..storage.outputs import RUN_FILES, run_kind_of
from ..sweep.store import ResultsStore
from .runs import ARM_TAG, DATA_TAG, KIND_TAG, MODEL_TAG, PARENT_KEY_TAG, RUN_DIR_TAG, cell_run, flatten

# the files of a folder logged as the parent run's artifacts, where they exist
ARTIFACTS = ("report.html", "results.csv", "plan.json", "FINDINGS.md", "sweep.json", "advise.json", "study.json")
ARM_FOLDER = "arms"


@dataclass
class FolderRuns:
    """A run folder as runs: the parent's name, parameters, tags, metrics and artifacts, and its cells' rows
    (each with the tags that place it: data fingerprint, arm)."""

    kind: str
    key: str  # the parent's identity: the same folder exported twice finds the same parent
    name: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    cells: list[tuple[dict, dict[str, str]]] = field(default_factory=list)

    def children(self):
        """The run content of every cell."""
        return [cell_run(record, context) for record, context in self.cells]


def folder_key(run_dir: Path) -> str:
    """A run folder's identity: its absolute path, digested."""
    return hashlib.sha256(str(run_dir.expanduser().resolve()).encode()).hexdigest()[:24]


def read_folder(run_dir: str | Path) -> FolderRuns:
    """The runs a sweep, advise or study folder holds; one line when ``run_dir`` is none of them."""
    run_dir = Path(run_dir)
    kind = run_kind_of(run_dir) if run_dir.is_dir() else None
    if kind not in ("sweep", "advise", "study"):
        what = "is not a folder" if not run_dir.is_dir() else f"holds no sweep, advise or study run ({kind or 'none'})"
        raise UnfreezeError(
            f"{run_dir} {what}; unfreeze track exports the run folder of unfreeze sweep, advise or study. "
            "Give such a folder."
        )
    assert kind is not None
    meta = _json(run_dir / RUN_FILES[kind])
    folder = FolderRuns(
        kind=kind,
        key=folder_key(run_dir),
        name=f"{kind} {run_dir.expanduser().resolve().name}",
        tags={KIND_TAG: kind, PARENT_KEY_TAG: folder_key(run_dir), RUN_DIR_TAG: str(run_dir.expanduser().resolve())},
    )
    folder.params.update(flatten(meta.get("spec") or {}))
    folder.tags.update(_fingerprints(meta))
    if kind == "study":
        folder.params.update({k: str(v) for k, v in meta.items() if isinstance(v, (str, int, float)) and k != "format"})
        arms = run_dir / ARM_FOLDER
        for arm in sorted(p for p in arms.iterdir() if p.is_dir()) if arms.is_dir() else []:
            context = {**_fingerprints(_json(arm / RUN_FILES["sweep"])), ARM_TAG: arm.name}
            folder.cells += [(r, context) for r in _cells(arm)]
        data = {context.get(DATA_TAG) for _, context in folder.cells}
        if len(data) == 1 and None not in data:  # the arms' data (study.json records none of its own)
            folder.tags[DATA_TAG] = str(data.pop())
    else:
        folder.cells = [(r, _fingerprints(meta)) for r in _cells(run_dir)]
    done = sum(1 for record, _ in folder.cells if record.get("status") == "done")
    folder.metrics = {"cells": float(len(folder.cells)), "cells_done": float(done)}
    folder.artifacts = [run_dir / n for n in ARTIFACTS if (run_dir / n).is_file()]
    folder.artifacts += sorted(p for p in run_dir.glob("*.png") if p.is_file())
    return folder


def _cells(run_dir: Path) -> list[dict]:
    """The last row of every cell in a folder's results store (the advisor's decision rows left out)."""
    return [r for r in ResultsStore(run_dir).latest(require_cell=True).values() if "cell" in r]


def _fingerprints(meta: dict) -> dict[str, str]:
    tags = {}
    if meta.get("data_fingerprint"):
        tags[DATA_TAG] = str(meta["data_fingerprint"])
    if meta.get("model_fingerprint"):
        tags[MODEL_TAG] = str(meta["model_fingerprint"])
    return tags


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
