"""The sweep's progress display: one bar over the cells, a line per finished cell."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from .grid import Cell
from .store import row_task

if TYPE_CHECKING:  # plan.py imports this module
    from .plan import SweepPlan


class CellProgress:
    """A sweep's progress: a bar on a terminal, one plain line per finished cell otherwise.

    Piped into a log or `tee` (CI, `make demo | tee log`), a bar prints nothing until it
    ends; a line per cell shows that the sweep is alive and what each cell scored.
    """

    def __init__(self, total: int, skipped: int, enabled: bool = True, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total, self.count = total, skipped
        terminal = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=skipped, desc="sweep", unit="cell", file=self.stream) if terminal else None
        if enabled and self.bar is None and skipped:
            self.line(f"sweep: {skipped} of {total} cells already done")

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.enabled:
            print(text, file=self.stream, flush=True)

    def running(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def finished(self, cell: Cell, record: dict) -> None:
        self.count += 1
        if record["status"] == "failed":
            self.line(f"cell failed ({cell.describe()}): {record['error']}")
        elif self.bar is None:
            metric = row_task(record).default_metric
            test = record.get("test", {}).get(metric)
            seconds = record.get("fit", {}).get("seconds")
            self.line(
                f"sweep: cell {self.count}/{self.total} done: {cell.describe()}"
                + (f", test {metric} {test:.4f}" if test is not None else "")
                + (f" ({seconds:.1f} s)" if seconds is not None else "")
            )
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_bar(plan: SweepPlan, progress: bool) -> CellProgress:
    return CellProgress(plan.counts["total"], plan.counts["skipped"], progress)
