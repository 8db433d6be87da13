"""A study's run folder: ``study.json`` (what was run, on what, and when) and its arms' result stores. No torch.

Layout::

    runs/NAME/
      study.json          the study as run (its file's tables), data, model, depth L, sizes, the arms'
                          cell keys and configuration labels, the majority-class baseline, every invocation
      arms/ARM/           one sweep's run folder per arm (sweep.json, results.jsonl: resumable)
      FINDINGS.md, *.png  written from the results alone (``unfreeze.studies.findings``)

Only the rows whose keys the current study plans are read: a store may hold rows of an
earlier version of the study (other settings, other keys), and they are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import UnfreezeError
from ..storage import strict_json
from ..storage.cache import atomic_path
from ..sweep.store import ResultsStore, row_task

STUDY_FILE = "study.json"
STUDY_FORMAT = "unfreeze-study"
ARMS_FOLDER = "arms"
# every strategy parameter a study's analyses may read gets a column, NaN where a cell has none
AXIS_COLUMNS = ("k", "m", "j", "r")


def read_meta(run_dir: str | Path) -> dict:
    """A run folder's study.json (one-line error when it is not a study's run folder)."""
    path = Path(run_dir) / STUDY_FILE
    if not path.is_file():
        raise UnfreezeError(
            f"{run_dir} is not a study's run folder (no {STUDY_FILE}). Run `unfreeze study "
            f"studies/NAME.toml -o {run_dir}` first."
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnfreezeError(f"{path} is not readable JSON ({exc}); run the study again to rewrite it.") from None
    if not isinstance(meta, dict) or meta.get("format") != STUDY_FORMAT:
        raise UnfreezeError(f"{path} is not a study's record (format {STUDY_FORMAT!r} expected).")
    return meta


def write_meta(run_dir: str | Path, meta: dict) -> None:
    with atomic_path(Path(run_dir) / STUDY_FILE) as tmp:
        tmp.write_text(strict_json.dumps(meta, indent=2, sort_keys=False, default=str), encoding="utf-8")


def study_frame(run_dir: str | Path, meta: dict) -> pd.DataFrame:
    """One row per planned cell that has a record (finished or failed), across the study's arms.

    Columns: key, arm, config (the study's name for the configuration), strategy, label, the strategy's
    parameters (k, m, j, r always present), n_train, seed, status, error, reused, train/test/validation
    metrics (``test_accuracy``...), fit_seconds, peak_memory_mib, trainable_parameters, total_parameters.
    """
    rows = []
    for arm in meta.get("arms", []):
        keys = set(arm.get("keys", []))
        configs = arm.get("configs", {})
        store = ResultsStore(Path(run_dir) / arm["folder"])
        for record in store.latest(require_cell=True).values():
            if record["key"] not in keys:
                continue
            cell = record["cell"]
            row = {
                "key": record["key"],
                "arm": arm["name"],
                "config": configs.get(cell["label"], cell["label"]),
                "strategy": cell["strategy"],
                "label": cell["label"],
                "n_train": int(cell["n_train"]),
                "seed": int(cell["seed"]),
                "status": record["status"],
                "error": record.get("error", ""),
                "reused": bool(record.get("reused_from")),
                "cell_seconds": _seconds(record),
            }
            row.update({k: v for k, v in cell.items() if k not in ("strategy", "label", "n_train", "seed")})
            if record["status"] == "done":
                metrics = row_task(record).metrics
                for split in ("train", "test", "validation"):
                    for metric, value in (record.get(split) or {}).items():
                        if metric in metrics and isinstance(value, (int, float)):
                            row[f"{split}_{metric}"] = float(value)
                fit = record.get("fit") or {}
                row.update(
                    {
                        "fit_seconds": fit.get("seconds"),
                        "peak_memory_mib": (fit.get("peak_memory_bytes") or 0) / 2**20 or None,
                        "trainable_parameters": fit.get("trainable_parameters"),
                        "total_parameters": fit.get("total_parameters"),
                        "learning_rate": fit.get("learning_rate"),
                        "tuned": bool(fit.get("tuned")),
                    }
                )
            rows.append(row)
    frame = pd.DataFrame(rows)
    for column in (*AXIS_COLUMNS, "config", "strategy", "n_train", "seed", "status"):
        if column not in frame:
            frame[column] = pd.Series(dtype=float if column in AXIS_COLUMNS else object)
    for column in ("fit_seconds", "peak_memory_mib", "trainable_parameters", "total_parameters"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _seconds(record: dict) -> float | None:
    started, finished = record.get("started"), record.get("finished")
    if isinstance(started, (int, float)) and isinstance(finished, (int, float)):
        return float(finished - started)
    return None


def planned_cells(meta: dict) -> int:
    return sum(len(arm.get("keys", [])) for arm in meta.get("arms", []))


__all__ = ["ARMS_FOLDER", "STUDY_FILE", "STUDY_FORMAT", "planned_cells", "read_meta", "study_frame", "write_meta"]
