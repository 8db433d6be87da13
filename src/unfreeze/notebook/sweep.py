"""A sweep's results in Python: ``load_results(run_dir)``, a table in Jupyter and a pandas DataFrame. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import UnfreezeError
from ..sweep.store import RESULTS_FILE, ResultsStore
from .display import frame_html, images_html

# the plots ``unfreeze report`` writes into the run folder, in the order the report shows them
PLOT_FILES = ("score_vs_k.png", "score_vs_n.png", "cost.png", "blocks_kept.png", "mix_weights.png", "probe.png")


@dataclass(frozen=True)
class SweepResults:
    """The cells of one sweep's run folder: ``to_frame()`` is one row per cell (its latest record), the
    columns ``unfreeze report`` reads (cell coordinates, train/test/validation scores, fit seconds, peak
    memory, parameters, the rate chosen); ``records()`` the stored rows themselves. In Jupyter it shows
    as that table, under the plots ``unfreeze report`` drew in the folder, if it ran."""

    run_dir: Path

    def records(self) -> list[dict]:
        """The latest stored record of every cell, as written to ``results.jsonl``."""
        return list(ResultsStore(self.run_dir).latest(require_cell=True).values())

    def to_frame(self) -> pd.DataFrame:
        from ..report.tables import results_frame

        return results_frame(self.run_dir)

    def plots(self) -> list[Path]:
        """The report's PNGs in the run folder (none before ``unfreeze report`` ran)."""
        return [self.run_dir / name for name in PLOT_FILES if (self.run_dir / name).is_file()]

    def caption(self, frame: pd.DataFrame) -> str:
        statuses = frame["status"].value_counts().to_dict() if not frame.empty else {}
        counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        return f"sweep {self.run_dir}: {len(frame)} cells" + (f" ({counts})" if counts else "")

    def _repr_html_(self) -> str:
        frame = self.to_frame()
        return frame_html(frame, self.caption(frame)) + images_html(self.plots(), "sweep report")

    def __repr__(self) -> str:
        return f"SweepResults({str(self.run_dir)!r})"


def load_results(run_dir: str | Path) -> SweepResults:
    """The results of the sweep in ``run_dir`` (what ``unfreeze sweep -o RUN_DIR`` wrote)."""
    path = Path(run_dir)
    if not (path / RESULTS_FILE).is_file():
        raise UnfreezeError(
            f"{path} holds no {RESULTS_FILE}: it is not a sweep's run folder. "
            "Give the folder `unfreeze sweep -o` wrote."
        )
    return SweepResults(path)
