"""The validated in-memory form of labelled text: texts, optional second texts, labels."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import UnfreezeError

Label = int | str


@dataclass(frozen=True)
class TextDataset:
    """Labelled examples. ``labels`` keep the user's values (ints or strings)."""

    texts: list[str]
    labels: list[Label]
    text_pairs: list[str] | None = None
    name: str = "data"
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[Label]:
        return sorted(set(self.labels), key=_label_sort_key)

    def class_counts(self) -> dict[Label, int]:
        counts = Counter(self.labels)
        return {label: counts[label] for label in self.classes}

    @property
    def inputs(self) -> list[str] | list[tuple[str, str]]:
        """What ``Classifier.fit``/``predict`` take as X: texts, or (text, text_pair) tuples."""
        if self.text_pairs is None:
            return list(self.texts)
        return list(zip(self.texts, self.text_pairs))

    def subset(self, indices: Sequence[int], name: str | None = None) -> TextDataset:
        idx = [int(i) for i in indices]
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in idx],
            name=name or self.name,
        )

    def fingerprint(self) -> str:
        """A hash of the content (texts, pairs, labels, in order): the data part of cache keys."""
        if not self._fingerprint:
            digest = hashlib.sha256()
            for i, text in enumerate(self.texts):
                digest.update(text.encode())
                digest.update(b"\x1f")
                if self.text_pairs is not None:
                    digest.update(self.text_pairs[i].encode())
                digest.update(b"\x1e" + repr(self.labels[i]).encode() + b"\x1d")
            self._fingerprint.append(digest.hexdigest())
        return self._fingerprint[0]


def _label_sort_key(label: Label) -> tuple[int, int | str]:
    # ints before strings, so mixed label sets still sort deterministically
    return (0, label) if isinstance(label, int) else (1, str(label))


def normalize_label(value: object) -> Label | None:
    """Turn a cell into an int or str label; None when missing.

    Integral floats (what pandas makes of an int column with gaps), digit strings and
    integral float strings ("1.0") become ints, so "1" or "1.0" in a CSV and 1 in a
    JSONL file are the same class.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        return int(value) if float(value).is_integer() else str(value)
    text = str(value).strip()
    if text == "" or text.lower() in {"nan", "none", "null"}:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    # "1.0" is what a CSV holds when its writer had the labels as floats (pandas does,
    # for an int column with gaps): the same class as 1.0 in JSONL or Parquet
    integral = re.fullmatch(r"([+-]?\d+)\.0*", text)
    return int(integral.group(1)) if integral else text


def build_dataset(
    texts: Sequence[object],
    labels: Sequence[object],
    text_pairs: Sequence[object] | None = None,
    source: str = "data",
    require_classes: int = 2,
) -> TextDataset:
    """Validate raw columns and return a ``TextDataset``.

    Raises ``UnfreezeError`` with the first offending rows for empty texts, missing
    labels, and fewer than ``require_classes`` classes.
    """
    if len(texts) == 0:
        raise UnfreezeError(f"{source} has no rows. Give a file with at least one labelled example per class.")
    clean_texts = _check_texts(texts, source, "text")
    clean_pairs = None if text_pairs is None else _check_texts(text_pairs, source, "text pair")
    clean_labels = [normalize_label(v) for v in labels]
    missing = [i for i, v in enumerate(clean_labels) if v is None]
    if missing:
        raise UnfreezeError(
            f"{source} has {len(missing)} row(s) with no label (first: {_rows(missing)}). "
            "Fill them in or drop those rows."
        )
    ds = TextDataset(texts=clean_texts, labels=clean_labels, text_pairs=clean_pairs, name=source)  # type: ignore[arg-type]
    if require_classes and len(ds.classes) < require_classes:
        raise UnfreezeError(
            f"{source} has a single class ({ds.classes[0]!r}); a classifier needs at least two. "
            "Check the label column (--label-col)."
        )
    return ds


def _check_texts(values: Sequence[object], source: str, what: str) -> list[str]:
    out: list[str] = []
    empty: list[int] = []
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            text = ""
        else:
            text = str(value)
        if not text.strip():
            empty.append(i)
        out.append(text)
    if empty:
        raise UnfreezeError(
            f"{source} has {len(empty)} empty {what}(s) (first: {_rows(empty)}). Remove those rows or fill them in."
        )
    return out


def _rows(indices: list[int], limit: int = 5) -> str:
    # rows are reported 1-based, counting data rows (not a header line)
    shown = ", ".join(f"row {i + 1}" for i in indices[:limit])
    return shown + (", ..." if len(indices) > limit else "")
