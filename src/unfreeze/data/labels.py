"""Labels as each task reads them: several labels per text (multilabel), a number per text (regression).

What the estimators take per task is the contract of ``unfreeze.tasks``: an int or str per row
(single), a sorted, deduplicated tuple of them per row for multilabel (``()``: no label), a finite
float per row for regression. Imports neither numpy nor pandas.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ..errors import UnfreezeError
from .dataset import (
    _NUMBER,
    _SEQUENCE_TYPES,
    DEFAULT_TASK,
    Label,
    TextDataset,
    _is_missing,
    _kind_name,
    _label_sort_key,
    _scalar,
    _short,
    _where,
    task_kind,
    warn_data,
)


def normalize_label(value: object) -> Label | None:
    """Turn a cell into an int or str label; None when missing.

    Integral floats (what pandas makes of an int column with gaps), digit strings and
    integral float strings ("1.0") become ints, so "1" or "1.0" in a CSV and 1 in a
    JSONL file are the same class.
    """
    value = _scalar(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else str(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    # "nan" is how a numeric writer spells a missing number; "None" or "null" in a file is a word, and a
    # plausible class ("none of these"): a label
    if text == "" or text.lower() == "nan":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    # "1.0" is what a CSV holds when its writer had the labels as floats (pandas does,
    # for an int column with gaps): the same class as 1.0 in JSONL or Parquet
    integral = re.fullmatch(r"([+-]?\d+)\.0*", text)
    return int(integral.group(1)) if integral else text


def _label_text(value: object) -> str:
    """A label as the text the file holds: what it becomes in a column that also holds words."""
    value = _scalar(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip()


def normalize_labels(
    values: Sequence[object], source: str = "data", column: str | None = None, warn_mixed: bool = True
) -> list[Label | None]:
    """Labels of one column, all of one type: the rule that keeps predictions in the user's values.

    Every label a whole number (1, "1", 1.0, "1.0") gives ints. A column that mixes numbers
    and words gives text for all of them, as the file writes them (1 and "neg" give "1"
    and "neg"), with a one-line ``DataWarning`` (unless ``warn_mixed`` is False): a classifier's
    classes share one type (numpy and scikit-learn compare 1 and "1" as different labels), so
    "1" is what predictions and evaluation see, for every row alike. Missing labels are None.
    A list or an object as a label is refused (one label per text; ``--task multilabel`` reads lists).
    """
    raw = [_scalar(v) for v in values]
    bad = next((i for i, v in enumerate(raw) if isinstance(v, _SEQUENCE_TYPES)), None)
    if bad is not None:
        where = _where(source, column, "label")
        raise UnfreezeError(
            f"Row {bad + 1} of {where} holds {_kind_name(raw[bad])} ({_short(raw[bad])}), not one label: "
            f"multi-label data (a list of labels per text) is read with --task multilabel. Otherwise choose a "
            f"column with one label per row with --label-col."
        )
    # labels repeat: normalise each distinct value once (a tenth of the time on 200k rows)
    seen: dict[tuple[type, object], Label | None] = {}
    labels = []
    for value in raw:
        try:
            key = (type(value), value)
            label = seen[key] if key in seen else seen.setdefault(key, normalize_label(value))
        except TypeError:  # unhashable
            label = normalize_label(value)
        labels.append(label)
    first_int = next((i for i, v in enumerate(labels) if isinstance(v, int)), None)
    first_str = next((i for i, v in enumerate(labels) if isinstance(v, str)), None)
    if first_int is None or first_str is None:
        return labels
    texts: list[Label | None] = [None if label is None else _label_text(v) for v, label in zip(raw, labels)]
    if not warn_mixed:
        return texts
    number, word = raw[first_int], labels[first_str]
    warn_data(
        f"the labels of {_where(source, column, 'label')} mix numbers and words (row {first_int + 1}: "
        f"{_short(number)}, row {first_str + 1}: {word!r}); all are read as text, so {_short(number)} is the label "
        f"{texts[first_int]!r}. Write every label as a word or every one as a number to silence this."
    )
    return texts


# when the task is not given: this many distinct numbers, most of them not whole, read as classes, are
# probably scores
REGRESSION_HINT_DISTINCT = 20
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def check_task(task: object, option: str = "--task") -> str | None:
    """``task`` when it names a registered task (None: not given); one line naming the tasks otherwise."""
    return None if task is None else task_kind(task, option).name


def check_separator(label_sep: object) -> None:
    """A ``--label-sep`` is a non-empty string (None: not given)."""
    if label_sep is not None and (not isinstance(label_sep, str) or label_sep == ""):
        raise UnfreezeError(f"--label-sep must be a non-empty string, e.g. '|'. Got {label_sep!r}.")


def check_label_sep(label_sep: object, task: str | None) -> None:
    """``--label-sep`` splits multi-label strings: a non-empty string, and only with a task that reads it
    (``Task.reads_label_sep``: multilabel)."""
    if label_sep is None:
        return
    check_separator(label_sep)
    if not task_kind(task).reads_label_sep:
        from ..tasks import TASKS

        readers = [name for name, cls in TASKS.items() if cls.reads_label_sep]
        raise UnfreezeError(
            f"--label-sep splits a string into several labels, which only "
            f"{' or '.join(f'--task {name}' for name in readers)} reads (the task here is {task or DEFAULT_TASK}). "
            f"Add --task {readers[0]}, or drop --label-sep."
        )


def multilabel_labels(
    values: Sequence[object], label_sep: str | None, source: str = "data", column: str | None = None
) -> list[tuple[Label, ...]]:
    """Each row's labels as a sorted, deduplicated tuple (``()``: none).

    A row holds a list (JSON lines, Parquet, saved datasets), one string split on ``label_sep``
    (parts stripped, blank parts dropped), one label, or nothing (missing or empty: no label).
    All labels share one type, by ``normalize_labels``' rule (whole numbers are ints)."""
    where = _where(source, column, "label")
    rows: list[list[object]] = []
    split_any = False
    for i, value in enumerate(values):
        value = _scalar(value)
        if _is_missing(value):
            parts: list[object] = []
        elif isinstance(value, (list, tuple, set)):
            parts = [_scalar(p) for p in value]
            nested = next((p for p in parts if isinstance(p, _SEQUENCE_TYPES)), None)
            if nested is not None:
                raise UnfreezeError(
                    f"Row {i + 1} of {where} holds {_kind_name(nested)} inside its list ({_short(value)}): a "
                    "multi-label row is one flat list of labels. Flatten that row."
                )
        elif isinstance(value, dict):
            raise UnfreezeError(
                f"Row {i + 1} of {where} holds an object ({_short(value)}), not labels: --task multilabel reads a "
                "list of labels per row, or one string split on --label-sep. Fix that row or choose --label-col."
            )
        else:
            text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
            if label_sep is not None and isinstance(text, str) and label_sep in text:
                split_any = True
                parts = list(text.split(label_sep))
            else:
                parts = [text]
        rows.append(parts)
    if label_sep is not None and not split_any:
        first = next((v for v in (_scalar(x) for x in values) if isinstance(v, str) and v.strip()), None)
        shown = f" (e.g. {_short(first)})" if first is not None else ""
        raise UnfreezeError(
            f"--label-sep {label_sep!r} splits no label in {where}: none contains it{shown}. Give the separator "
            "the labels are joined with, or drop --label-sep if each row holds one label or a list."
        )
    if label_sep is None:
        _hint_separator(rows, where)
    flat = normalize_labels([p for parts in rows for p in parts], source, column)
    out: list[tuple[Label, ...]] = []
    at = 0
    for parts in rows:
        mine = [label for label in flat[at : at + len(parts)] if label is not None]  # blank parts: no label
        at += len(parts)
        out.append(tuple(sorted(set(mine), key=_label_sort_key)))
    return out


# separators that join several labels in one string, in the order a hint names them
_JOINERS = ("|", ";", ",", "/")


def _hint_separator(rows: list[list[object]], where: str) -> None:
    """Warn when strings read as one label each look joined (most hold one separator): --label-sep splits them."""
    strings = [parts[0] for parts in rows if len(parts) == 1 and isinstance(parts[0], str) and parts[0].strip()]
    for joiner in _JOINERS:
        joined = [text for text in strings if joiner in text]
        if strings and len(joined) * 2 > len(strings):
            warn_data(
                f"{where}: strings such as {_short(joined[0])} are read as one label each; if {joiner!r} joins "
                f"several, --label-sep {joiner!r} splits them."
            )
            return


def regression_labels(values: Sequence[object], source: str = "data", column: str | None = None) -> list[float | None]:
    """Each row's score as a finite float (None: missing). Numbers, or numeric strings (CSV); anything else,
    and NaN or infinite scores, are refused naming the row."""
    where = _where(source, column, "label")
    out: list[float | None] = []
    for i, raw in enumerate(values):
        value = _scalar(raw)
        if value is None:
            out.append(None)
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            text = value.strip()
            if text == "":
                out.append(None)
                continue
            if text.lower() in _NON_FINITE or _NUMBER.fullmatch(text):
                value = float(text)
            else:
                raise UnfreezeError(
                    f"Row {i + 1} of {where} holds {_short(text)}, not a number: --task regression reads one number "
                    "per row (a score). Fix that row, or choose --label-col or another --task."
                )
        if isinstance(value, _SEQUENCE_TYPES):
            raise UnfreezeError(
                f"Row {i + 1} of {where} holds {_kind_name(value)} ({_short(value)}), not a number: --task regression "
                "reads one number per row; a list of labels per row is --task multilabel."
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UnfreezeError(
                f"Row {i + 1} of {where} holds {_short(value)} ({type(value).__name__}), not a number: --task "
                "regression reads one number per row (a score). Fix that row, or choose --label-col."
            )
        number = float(value)
        if not math.isfinite(number):
            raise UnfreezeError(
                f"Row {i + 1} of {where} holds {number}, not a finite score: regression needs a "
                "finite number per row. Fix or drop that row."
            )
        out.append(number)
    return out


def looks_like_scores(values: Sequence[object]) -> tuple[int, int] | None:
    """(distinct numbers, how many of them are not whole) when the labels are probably scores read as
    classes: more than ``REGRESSION_HINT_DISTINCT`` distinct numbers, most not whole; None otherwise."""
    distinct: set[float] = set()
    seen: set[object] = set()
    for raw in values:
        try:
            if raw in seen:  # labels repeat: look at each distinct value once
                continue
            seen.add(raw)
        except TypeError:  # unhashable: a list or an array, not a score
            return None
        value = _scalar(raw)
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
            number = float(value)
        elif _is_missing(value) or (isinstance(value, str) and not value.strip()):
            continue
        else:
            return None  # a word: classes
        if math.isfinite(number):
            distinct.add(number)
    fractional = sum(1 for number in distinct if not number.is_integer())
    if len(distinct) > REGRESSION_HINT_DISTINCT and fractional * 2 > len(distinct):
        return len(distinct), fractional
    return None


def hint_regression(values: Sequence[object], source: str, column: str | None) -> bool:
    """Warn in one line that ``--task regression`` may be meant; True when it warned."""
    found = looks_like_scores(values)
    if found is None:
        return False
    distinct, fractional = found
    warn_data(
        f"{_where(source, column, 'label')}: {distinct} distinct numbers ({fractional} not whole) are read as "
        f"{distinct} classes; if they are scores, --task regression reads them as numbers."
    )
    return True


def read_labels(
    values: Sequence[object],
    task: str | None,
    label_sep: str | None,
    source: str,
    column: str | None,
    warn_mixed: bool = True,
) -> list:
    """The labels of one column in ``task``'s form (None: the default task), as its ``Task.read_labels``
    reads them."""
    return task_kind(task).read_labels(values, label_sep, source, column, warn_mixed=warn_mixed)


def check_label_variety(ds: TextDataset, require_classes: int, source: str) -> None:
    """Enough to learn from when ``require_classes`` >= 2 (training data), by ``Task.check_variety``: two
    classes (single), one label some row carries (multilabel), two different scores (regression)."""
    task_kind(ds.task).check_variety(ds.labels, require_classes, source)
