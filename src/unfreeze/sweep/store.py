"""The results store of a sweep: one JSON line per finished cell, appended atomically.

A line is written with one ``write`` on an ``O_APPEND`` descriptor and fsync'd, so a
crash or SIGKILL at any instant leaves every finished cell intact; at worst the last
line is partial, and readers skip it and writers cut it off before appending. Later
records of a cell supersede earlier ones (a failed cell retried). Imports no torch:
reports read the store without a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..storage import strict_json
from ..tasks import DEFAULT_TASK, Task, make_task

RESULTS_FILE = "results.jsonl"

# Fields of a result row that differ between two runs of the same cell by nature: wall
# clock, timings, memory, and where it ran (host, pid, backend). Everything else (the
# cell, settings, metrics, parameter counts, examples seen, versions) is the result.
VOLATILE_FIELDS = ("started", "finished", "runner", "predict_seconds_per_text")
VOLATILE_FIT_FIELDS = (
    "seconds",
    "prefix_seconds",
    "step_seconds",
    "validation_seconds",
    "peak_memory_bytes",
    "epoch_seconds",
    "states_seconds",
)
# a cell's coordinates, which a report needs to place its row; and the fields that are objects
CELL_FIELDS = ("strategy", "label", "n_train", "seed")
DICT_FIELDS = ("train", "test", "validation", "fit")


def row_task(record: dict) -> Task:
    """The task a result row was fitted for (rows of single-label sweeps, and of earlier releases, name none)."""
    return make_task(record.get("task") or DEFAULT_TASK)


def record_content(record: dict) -> dict:
    """``record`` without its volatile fields: two runs of a cell with the same seed agree on this."""
    out = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}
    if isinstance(out.get("fit"), dict):
        out["fit"] = {k: v for k, v in out["fit"].items() if k not in VOLATILE_FIT_FIELDS}
        if isinstance(out["fit"].get("lr_search"), list):  # each rate tried has its own timing
            out["fit"]["lr_search"] = [
                {k: v for k, v in trial.items() if k not in VOLATILE_FIT_FIELDS} for trial in out["fit"]["lr_search"]
            ]
    return out


class ResultsStore:
    """The results file of one run folder.

    Reading never fails on a damaged line: a line that is not a JSON object with a string
    ``key`` and (unless it is a decision row with a ``kind``) ``status`` (``{}``, ``null``,
    a list, a number, binary garbage, a cell that is not an object with its coordinates,
    metrics that are not objects) is skipped and
    counted; with ``require_cell`` (what a report needs), so is a record without a cell.
    After ``records()`` or ``latest()``, ``skipped`` holds how many complete lines were
    skipped and ``skipped_lines`` their line numbers; ``skipped_note()`` is the one line a
    command prints about them. A last line cut short by a crash is not counted: it is
    expected, and the next append removes it.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RESULTS_FILE
        self.skipped = 0
        self.skipped_lines: list[int] = []

    def records(self, require_cell: bool = False) -> list[dict]:
        """Every readable record in file order (a partial last line is skipped).

        ``require_cell``: also skip (and count) records without a ``cell`` object, which a
        report needs to place a row.
        """
        self.skipped, self.skipped_lines = 0, []
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.endswith(b"\n"):
                    break  # an append cut short by a crash
                if not line.strip():
                    continue
                record = _parse(line)
                if record is None or (require_cell and "cell" not in record):
                    self.skipped += 1
                    self.skipped_lines.append(lineno)
                    continue
                out.append(record)
        return out

    def latest(self, require_cell: bool = False) -> dict[str, dict]:
        """The last record of every cell key."""
        latest: dict[str, dict] = {}
        for record in self.records(require_cell):
            latest[record["key"]] = record
        return latest

    def skipped_note(self) -> str | None:
        """ "skipped N unreadable line(s) in PATH (first: line L)", or None when none were skipped."""
        if not self.skipped:
            return None
        s = "" if self.skipped == 1 else "s"
        return (
            f"skipped {self.skipped} unreadable line{s} in {self.path} (first: line {self.skipped_lines[0]}); "
            "the cells they held run again on resume"
        )

    def _repair_tail(self) -> None:
        """Cut a partial last line left by a crash, so the next record starts on its own line."""
        if not self.path.exists():
            return
        with open(self.path, "rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
                handle.flush()
                os.fsync(handle.fileno())

    def append(self, record: dict) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        line = (strict_json.dumps(record, sort_keys=True, default=_jsonable) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a short write on a full disk: never leave half a row
                os.ftruncate(fd, os.fstat(fd).st_size - written)
                raise OSError(f"short write to {self.path}")
            os.fsync(fd)
        finally:
            os.close(fd)


def _parse(line: bytes) -> dict | None:
    """A record from one line, or None when the line is not one."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
        return None
    if not isinstance(record, dict):
        return None
    if not isinstance(record.get("key"), str) or not record["key"]:
        return None
    # a cell's row says how it went; other rows (the advisor's decisions, with a "kind") need not
    if ("cell" in record or "kind" not in record) and not isinstance(record.get("status"), str):
        return None
    if "cell" in record and not _is_cell(record["cell"]):
        return None
    # what a report reads from a finished cell must have the shape it reads
    if any(field in record and not isinstance(record[field], dict) for field in DICT_FIELDS):
        return None
    return record


def _is_cell(cell: object) -> bool:
    return isinstance(cell, dict) and all(field in cell for field in CELL_FIELDS)


def _jsonable(value: object) -> object:
    if hasattr(value, "tolist"):
        return strict_json.finite(value.tolist())
    if hasattr(value, "item"):
        return strict_json.finite(value.item())
    return str(value)
