"""What ``unfreeze predict`` writes: the input table plus each head's predictions, in its task's shape.

A head of classes (single, multilabel) gets a ``prediction`` column and one ``proba_LABEL``
column per label; a label set (multilabel) is one cell, its labels joined with ``--label-sep``
in CSV and TSV, a list in JSON lines. A regression head gets its ``prediction`` (the value)
alone. The output's format follows its suffix: ``.jsonl``/``.ndjson`` JSON lines, ``.tsv``
tab-separated, anything else CSV (single-label CSV is written exactly as before tasks existed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UnfreezeError

if TYPE_CHECKING:
    import pandas as pd

    from ..tasks import Task

DEFAULT_LABEL_SEP = "|"
JSON_LINES = (".jsonl", ".ndjson")


def output_format(path: Path) -> str:
    """``jsonl``, ``tsv`` or ``csv``, by the suffix of ``path``."""
    suffix = path.suffix.lower()
    return "jsonl" if suffix in JSON_LINES else "tsv" if suffix == ".tsv" else "csv"


def check_label_sep(label_sep: str, labels: Sequence, where: str, fmt: str) -> None:
    """In CSV and TSV, a label set is one cell joined with ``label_sep``: no label may hold it (one line)."""
    if fmt == "jsonl":
        return
    holding = [label for label in labels if label_sep in str(label)]
    if holding:
        raise UnfreezeError(
            f"Label {holding[0]!r} of {where} contains the separator {label_sep!r} that joins a text's labels in the "
            "output: choose another with --label-sep, or write JSON lines (-o FILE.jsonl), where labels are a list."
        )


def add_predictions(
    frame: pd.DataFrame, prefix: str, task: Task, outputs: np.ndarray, labels: Sequence, label_sep: str, fmt: str
) -> None:
    """Add a head's columns to ``frame``: ``PREFIXprediction`` and, for a head of classes, ``PREFIXproba_LABEL``."""
    decided: Any = task.decide(outputs)
    if isinstance(decided, np.ndarray) and decided.ndim == 2:
        # a head fitted on an indicator matrix decides one: its rows as label sets
        decided = [tuple(labels[int(j)] for j in np.flatnonzero(row)) for row in decided]
    if len(decided) and isinstance(decided[0], tuple):
        decided = [list(row) if fmt == "jsonl" else label_sep.join(map(str, row)) for row in decided]
    frame[f"{prefix}prediction"] = decided
    if np.ndim(outputs) == 2:
        for j, label in enumerate(labels):
            frame[f"{prefix}proba_{label}"] = outputs[:, j]


def write_table(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write ``frame`` to ``path`` as ``fmt`` (the caller makes the write atomic)."""
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    else:
        from ..storage import strict_json

        with open(path, "w", encoding="utf-8") as out:
            for row in frame.to_dict(orient="records"):
                out.write(strict_json.dumps(row, ensure_ascii=False, default=_plain) + "\n")


def _plain(value: object) -> object:
    """A numpy value (or anything else pandas hands over) as JSON can hold it."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


__all__ = ["DEFAULT_LABEL_SEP", "add_predictions", "check_label_sep", "output_format", "write_table"]
