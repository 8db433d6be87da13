"""The validated in-memory form of labelled text: texts, optional second texts, labels.

Validation refuses what cannot be meant (empty texts, missing labels, a list where a
text belongs, a column of numbers as texts, text and label columns that look swapped)
and warns, with a ``DataWarning`` of one line, about what is probably a mistake but
could be legitimate. Imports neither numpy nor pandas: errors in a file answer fast.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import TYPE_CHECKING, Any

from ..errors import OneLineWarning, UnfreezeError

if TYPE_CHECKING:
    from ..tasks import Task

Label = int | str
# ``unfreeze.tasks.DEFAULT_TASK`` (a test holds them equal), named here: the tasks import numpy, which the data
# layer imports only once a file is read
DEFAULT_TASK = "single"


def task_kind(name: object = None, option: str = "task") -> type[Task]:
    """The registered task class called ``name`` (None: the default), which says how labels are read, counted
    and stratified; one line naming the tasks for an unknown name. Imports ``unfreeze.tasks`` on use."""
    from ..tasks import task_class

    return task_class(DEFAULT_TASK if name is None else name, option)


@dataclass(frozen=True)
class TextDataset:
    """Labelled examples. ``labels`` keep the user's values, in the form of ``task`` (the contract of
    ``unfreeze.tasks``): single, an int or str per row; multilabel, a sorted tuple of them per row
    (``()``: no label); regression, a finite float per row."""

    texts: list[str]
    labels: list[Any]
    text_pairs: list[str] | None = None
    name: str = "data"
    task: str = DEFAULT_TASK
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[Label]:
        """The labels (multilabel: every label some row carries); regression has none: [] (``Task.classes_of``)."""
        return task_kind(self.task).classes_of(self.labels)

    def class_counts(self) -> dict[Label, int]:
        """Rows per class (multilabel: rows carrying each label; regression: {}) (``Task.class_counts``)."""
        return task_kind(self.task).class_counts(self.labels)

    @property
    def inputs(self) -> list[str] | list[tuple[str, str]]:
        """What ``Classifier.fit``/``predict`` take as X: texts, or (text, text_pair) tuples."""
        if self.text_pairs is None:
            return list(self.texts)
        return list(zip(self.texts, self.text_pairs))

    def subset(self, indices: Iterable[int], name: str | None = None) -> TextDataset:
        idx = [int(i) for i in indices]
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in idx],
            name=name or self.name,
            task=self.task,
        )

    def fingerprint(self) -> str:
        """A hash of the content (texts, pairs, labels, in order, and a task other than single): the data part
        of cache keys. Single-label data (the default task) hashes as before tasks existed."""
        if not self._fingerprint:
            digest = hashlib.sha256()
            if self.task != DEFAULT_TASK:
                digest.update(b"task\x1f" + self.task.encode() + b"\x1e")
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


class DataWarning(OneLineWarning):
    """Data that is probably a mistake but could be legitimate. The message is one line;
    the command line prints it as ``warning: MESSAGE``."""


def warn_data(message: str) -> None:
    warnings.warn(DataWarning(message), stacklevel=3)


def print_data_warnings_on_one_line() -> None:
    """Show every one-line warning (``DataWarning``, ``SlowPrecisionWarning``: ``OneLineWarning``) as one
    ``warning: MESSAGE`` line on stderr, for the command line.

    Python's default shows a warning on two lines (file:line: category: message, then
    the source line). Other warnings keep the default. Call once, at start-up.
    """
    import sys

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, OneLineWarning):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    show.__wrapped__ = default  # type: ignore[attr-defined]
    warnings.showwarning = show


def _scalar(value: object) -> object:
    """A numpy scalar as the Python value it holds, an array as a list; anything else unchanged.

    numpy is never imported here: its values are recognised by their type's module."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        held: Any = value  # a numpy scalar or array, duck-typed (numpy's types are not imported)
        if getattr(held, "ndim", 0):  # an array (Parquet list columns read as arrays): a list
            return held.tolist()
        try:
            return held.item()
        except (TypeError, ValueError):
            return value
    return value


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# a number as a CSV cell holds it: 3, -1.5, .5, 1e-3, 2,  (surrounding blanks allowed)
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_SEQUENCE_TYPES = (list, tuple, dict, set)
# what JSON's \\ud800-style escapes can put into a str but no UTF-8 text holds; tokenizers die on it
_SURROGATE = re.compile("[\ud800-\udfff]")


_KIND_NAMES: dict[type, str] = {list: "a list", tuple: "a list", dict: "an object", set: "a set"}


def _kind_name(value: object) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def build_dataset(
    texts: Sequence[object],
    labels: Sequence[object],
    text_pairs: Sequence[object] | None = None,
    source: str = "data",
    require_classes: int = 2,
    text_col: str | None = None,
    label_col: str | None = None,
    text_pair_col: str | None = None,
    task: str | None = None,
    label_sep: str | None = None,
) -> TextDataset:
    """Validate raw columns and return a ``TextDataset``.

    Raises ``UnfreezeError`` with the first offending rows for empty texts, texts that are
    lists or all numbers, missing or list-valued labels, fewer than ``require_classes``
    classes, and text and label columns that look swapped. The column names, when given,
    make the messages name them.

    ``task`` says how labels are read: "single" (one per row), "multilabel" (a list per row, or
    one string split on ``label_sep``; none is allowed) or "regression" (a finite number per row).
    None (not given) reads them as single and warns in one line when they look like scores.
    """
    from .labels import check_label_sep, check_label_variety, check_task, hint_regression, read_labels

    check_task(task)
    check_label_sep(label_sep, task)
    if len(texts) == 0:
        raise UnfreezeError(f"{source} has no rows. Give a file with at least one labelled example per class.")
    clean_texts = check_texts(texts, source, "text", text_col)
    clean_pairs = None if text_pairs is None else check_texts(text_pairs, source, "text pair", text_pair_col)
    # scores read as classes: one line that says so, instead of the lines about mixed types and many classes
    hinted = task is None and hint_regression(labels, source, label_col)
    clean_labels = read_labels(labels, task, label_sep, source, label_col, warn_mixed=not hinted)
    missing = [i for i, v in enumerate(clean_labels) if v is None]
    if missing:
        raise UnfreezeError(
            f"{source} has {len(missing)} row(s) with no label (first: {_rows(missing)}). "
            "Fill them in or drop those rows."
        )
    if task_kind(task).checks_swapped_columns:
        _check_swapped(clean_texts, clean_labels, source, text_col or "text", label_col or "label")
    ds = TextDataset(
        texts=clean_texts, labels=clean_labels, text_pairs=clean_pairs, name=source, task=task or DEFAULT_TASK
    )
    check_label_variety(ds, require_classes, source)
    _warn_odd_columns(ds, source, text_col or "text", label_col or "label", many_classes=not hinted)
    return ds


def check_texts(values: Sequence[object], source: str, what: str = "text", column: str | None = None) -> list[str]:
    """Texts of one column as strings; refuses empty ones, lists, and a column of numbers only."""
    out: list[str] = []
    empty: list[int] = []
    all_numbers = True  # until a text that is not a number is seen
    for i, value in enumerate(values):
        if type(value) is str:  # the common case first
            text = value
            if all_numbers and not _NUMBER.fullmatch(value):
                all_numbers = False
        else:
            text = _text_of(_scalar(value), i, source, what, column)
            if all_numbers and not isinstance(_scalar(value), (int, float)) and not _NUMBER.fullmatch(text):
                all_numbers = False
        if not text or text.isspace():
            empty.append(i)
        out.append(text)
    if empty:
        raise UnfreezeError(
            f"{source} has {len(empty)} empty {what}(s) (first: {_rows(empty)}). Remove those rows or fill them in."
        )
    surrogate = next((i for i, text in enumerate(out) if not text.isascii() and _SURROGATE.search(text)), None)
    if surrogate is not None:
        code = ord(_SURROGATE.search(out[surrogate]).group())  # type: ignore[union-attr]
        raise UnfreezeError(
            f"Row {surrogate + 1} of {_where(source, column, what)} holds a lone surrogate (\\u{code:04x}), half of "
            "an escaped character that is no text (refused, not replaced). Fix that row: a character above U+FFFF "
            "is escaped as a pair, e.g. \\ud83d\\ude00."
        )
    if out and all_numbers:
        raise UnfreezeError(
            f"Every {what} of {_where(source, column, what)} is a number (row 1: {out[0].strip()!r}), not a text. "
            f"Choose the column that holds the texts with {_option(what)}."
        )
    return out


def check_no_surrogates(inputs: Sequence[object], what: str = "X") -> None:
    """Refuse a text (or either text of a pair) holding a lone surrogate, with its index: tokenizers die on it."""
    for i, item in enumerate(inputs):
        for text in item if isinstance(item, tuple) else (item,):
            if isinstance(text, str) and not text.isascii() and (found := _SURROGATE.search(text)):
                raise UnfreezeError(
                    f"{what}[{i}] holds a lone surrogate (\\u{ord(found.group()):04x}), half of an escaped "
                    "character that is no text (refused, not replaced). Fix that text: a character above U+FFFF is "
                    "a pair of surrogates, e.g. \\ud83d\\ude00, or one code point."
                )


def _text_of(value: object, i: int, source: str, what: str, column: str | None) -> str:
    """A cell that is not a str as a text: missing is empty, a number its digits; lists and bytes that are
    not UTF-8 are refused."""
    if _is_missing(value):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, _SEQUENCE_TYPES):
        raise UnfreezeError(
            f"Row {i + 1} of {_where(source, column, what)} holds {_kind_name(value)} ({_short(value)}), not a "
            f"text. Choose a column of texts with {_option(what)}, or join each list into one string (a list of words "
            "with a list of tags, one per word, is read by --task tokens)."
        )
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnfreezeError(
                f"Row {i + 1} of {_where(source, column, what)} holds bytes that are not UTF-8 text. "
                f"Choose a column of texts with {_option(what)}."
            ) from None
    return str(value)  # a number (or a bool) where a text belongs: counted by the caller


def _check_swapped(texts: list[str], labels: list, source: str, text_col: str, label_col: str) -> None:
    """Refuse text and label columns that look swapped: many long, distinct "labels"; few short "texts"."""
    n = len(texts)
    if n < 4:
        return
    distinct_labels = len(set(labels))
    words = [label for label in labels if isinstance(label, str)]
    if distinct_labels < max(3, n / 2) or len(words) < n / 2:
        return
    distinct_texts = Counter(texts)
    if len(distinct_texts) > max(2, distinct_labels / 4):
        return
    label_length = median(len(w) for w in words)
    text_length = median(len(t) for t in texts)
    if label_length < max(10, 2 * text_length):
        return
    shown = ", ".join(repr(t) for t, _ in distinct_texts.most_common(3))
    raise UnfreezeError(
        f"The text and label columns of {source} look swapped: label column {label_col!r} holds {distinct_labels} "
        f"distinct values in {n} rows, {label_length:.0f} characters long (median), while text column {text_col!r} "
        f"holds {len(distinct_texts)} short distinct values ({shown}). Name them the other way round: "
        f"--text-col {label_col} --label-col {text_col}."
    )


def _warn_odd_columns(ds: TextDataset, source: str, text_col: str, label_col: str, many_classes: bool = True) -> None:
    """One-line warnings for data that is probably a mistake but could be meant."""
    variants: dict[str, list] = {}
    for label in ds.classes:
        if isinstance(label, str):
            variants.setdefault(" ".join(label.casefold().split()), []).append(label)
    clash = next((group for group in variants.values() if len(group) > 1), None)
    if clash:
        warn_data(
            f"label column {label_col!r} of {source} holds labels that differ only in case or spaces "
            f"({quote_names(clash, limit=3)}): they are different classes. Spell each class one way if they "
            "are the same."
        )
    n = len(ds)
    if n < 10:
        return
    counts = ds.class_counts()
    singletons = sum(1 for c in counts.values() if c == 1)
    if many_classes and len(counts) > n / 2:
        warn_data(
            f"label column {label_col!r} of {source} holds {len(counts)} classes in {n} rows ({singletons} with a "
            f"single example): a classifier learns little from one example per class. Check --label-col."
        )
    distinct_texts = set(ds.texts)
    if len(distinct_texts) <= 2:
        shown = ", ".join(repr(t if len(t) <= 40 else t[:37] + "...") for t in sorted(distinct_texts))
        warn_data(
            f"text column {text_col!r} of {source} holds only {len(distinct_texts)} distinct text(s) in {n} rows "
            f"({shown}). Check --text-col."
        )


def _where(source: str, column: str | None, what: str) -> str:
    return f"column {column!r} of {source}" if column else f"the {what}s of {source}"


def _option(what: str) -> str:
    return {"text": "--text-col", "text pair": "--text-pair-col", "label": "--label-col"}.get(what, "--text-col")


def _short(value: object, limit: int = 40) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def quote_names(names: Sequence[object], repr_names: bool = True, limit: int = 5) -> str:
    """At most ``limit`` names, and how many more: an error quotes a few, never a whole header of 100,000."""
    if not names:
        return "(none)"
    shown = ", ".join(_short(n, 60) if repr_names else _clip(str(n), 60) for n in names[:limit])
    return shown + (f" and {len(names) - limit:,} more" if len(names) > limit else "")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rows(indices: list[int], limit: int = 5) -> str:
    # rows are reported 1-based, counting data rows (not a header line)
    shown = ", ".join(f"row {i + 1}" for i in indices[:limit])
    return shown + (", ..." if len(indices) > limit else "")
