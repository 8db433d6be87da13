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

RESULTS_FILE = "results.jsonl"

# Fields of a result row that differ between two runs of the same cell by nature: wall
# clock, timings, memory, and where it ran (host, pid, backend). Everything else (the
# cell, settings, metrics, parameter counts, examples seen, versions) is the result.
VOLATILE_FIELDS = ("started", "finished", "runner")
VOLATILE_FIT_FIELDS = ("seconds", "prefix_seconds", "peak_memory_bytes", "epoch_seconds", "states_seconds")


def record_content(record: dict) -> dict:
    """``record`` without its volatile fields: two runs of a cell with the same seed agree on this."""
    out = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}
    if isinstance(out.get("fit"), dict):
        out["fit"] = {k: v for k, v in out["fit"].items() if k not in VOLATILE_FIT_FIELDS}
    return out


class ResultsStore:
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RESULTS_FILE

    def records(self) -> list[dict]:
        """Every complete record in file order (a partial last line is skipped)."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # an append cut short by a crash
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def latest(self) -> dict[str, dict]:
        """The last record of every cell key."""
        latest: dict[str, dict] = {}
        for record in self.records():
            latest[record["key"]] = record
        return latest

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
        line = (json.dumps(record, sort_keys=True, default=_jsonable) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a short write on a full disk: never leave half a row
                os.ftruncate(fd, os.fstat(fd).st_size - written)
                raise OSError(f"short write to {self.path}")
            os.fsync(fd)
        finally:
            os.close(fd)


def _jsonable(value: object) -> object:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)
