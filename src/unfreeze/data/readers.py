"""Read labelled text from CSV, TSV, JSONL, Parquet or a saved Hugging Face dataset.

What can be checked without building a table is checked before pandas is imported: that
the path exists, its format, that its bytes are UTF-8 text (not gzip, a workbook, UTF-16
or binary), the delimiter, and the header's columns (missing, duplicated). JSON lines
never need pandas to be read for training. So a wrong path, format or column answers in
a fraction of a second, and a file that would read as nonsense is refused with the reason
(those checks are in ``file_checks``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UnfreezeError
from .dataset import TextDataset, build_dataset, check_texts, quote_names
from .file_checks import (
    BOMS,
    MAGIC,
    check_columns,
    check_distinct_columns,
    check_exists,
    check_is_text,
    check_regular,
    clip,
    decode_utf8,
)

if TYPE_CHECKING:
    import pandas as pd

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FORMAT_HELP = (
    "CSV (.csv), TSV (.tsv), JSON lines (.jsonl), Parquet (.parquet) or a folder saved with datasets' save_to_disk"
)
SEPARATORS = {"csv": ",", "tsv": "\t"}
DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


class _Table:
    """The columns of a file: JSON rows as parsed, or a pandas frame (CSV, TSV, Parquet, saved datasets)."""

    def __init__(self, columns: list[str], rows: list[dict] | None = None, frame: pd.DataFrame | None = None):
        self.columns = columns
        self._rows = rows
        self._frame = frame

    def column(self, name: str) -> list:
        if self._rows is not None:
            return [row.get(name) for row in self._rows]
        assert self._frame is not None
        return self._frame[name].tolist()

    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            import pandas as pd

            self._frame = pd.DataFrame(self._rows, columns=self.columns)
        return self._frame


def read_table(
    path: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    text_pair_col: str | None = None,
    split: str | None = None,
    require_classes: int = 2,
    task: str | None = None,
    label_sep: str | None = None,
) -> TextDataset:
    """Read a labelled file or ``save_to_disk`` folder into a validated ``TextDataset`` (of at least
    ``require_classes`` classes: 2 to train on, 1 for a test set), its labels read for ``task``
    (``build_dataset``: None is single)."""
    from .labels import check_label_sep, check_task

    check_task(task)  # before the file is read: a wrong option answers at once
    check_label_sep(label_sep, task)
    path = Path(path)
    check_exists(path, "Give a " + FORMAT_HELP + ", or a built-in dataset name (see `unfreeze datasets`).")
    wanted = [("--text-col", text_col), ("--label-col", label_col), ("--text-pair-col", text_pair_col)]
    check_distinct_columns(wanted)
    table = _read(path, split, wanted)
    pairs = None if text_pair_col is None else table.column(text_pair_col)
    return build_dataset(
        table.column(text_col),
        table.column(label_col),
        pairs,
        source=str(path),
        require_classes=require_classes,
        text_col=text_col,
        label_col=label_col,
        text_pair_col=text_pair_col,
        task=task,
        label_sep=label_sep,
    )


def read_inputs(
    path: str | Path, text_col: str = "text", text_pair_col: str | None = None
) -> tuple[pd.DataFrame, list[str] | list[tuple[str, str]]]:
    """Read unlabelled inputs for prediction: the whole table and its texts (or text pairs)."""
    path = Path(path)
    check_exists(path, "Give a " + FORMAT_HELP + ".")
    wanted = [("--text-col", text_col), ("--text-pair-col", text_pair_col)]
    check_distinct_columns(wanted)
    table = _read(path, None, wanted, all_columns=True)
    texts = check_texts(table.column(text_col), str(path), "text", text_col)
    if text_pair_col is None:
        return table.frame(), texts
    pairs = check_texts(table.column(text_pair_col), str(path), "text pair", text_pair_col)
    return table.frame(), list(zip(texts, pairs))


# -- reading --------------------------------------------------------------------------------


def _read(path: Path, split: str | None, wanted: list[tuple[str, str | None]], all_columns: bool = False) -> _Table:
    """Check and read ``path``; Parquet reads only the ``wanted`` columns unless ``all_columns``."""
    columns = None if all_columns else [c for _, c in wanted if c is not None]
    if path.is_dir():
        frame = _read_saved_dataset(path, split)
        columns = [str(c) for c in frame.columns]
        check_columns(path, columns, wanted)
        return _Table(columns, frame=frame)
    check_regular(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UnfreezeError(f"Unknown format {path.suffix or '(no extension)'!r} of {path}. Use {FORMAT_HELP}.")
    if kind == "parquet":
        return _read_parquet(path, wanted, columns)
    raw = path.read_bytes()
    check_is_text(path, raw)
    text = decode_utf8(path, raw)
    if kind == "jsonl":
        rows = _parse_jsonl(path, text)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        check_columns(path, columns, wanted)
        return _Table(columns, rows=rows)
    return _read_delimited(path, text, kind, wanted)


# -- delimited text -------------------------------------------------------------------------


def _read_delimited(path: Path, text: str, kind: str, wanted: list[tuple[str, str | None]]) -> _Table:
    sep = SEPARATORS[kind]
    if not text.strip():
        raise UnfreezeError(f"{path} is empty. Give a file with a header and labelled rows.")
    first_line = text.lstrip("\r\n").split("\n", 1)[0].rstrip("\r")
    try:
        header = next(csv.reader(io.StringIO(text.lstrip("\r\n")), delimiter=sep))
    except csv.Error as exc:
        raise UnfreezeError(_csv_error(path, kind, text, exc)) from exc
    if any(column is not None and column not in header for _, column in wanted):
        _check_delimiter(path, kind, sep, header, first_line)
    check_columns(path, header, wanted, first_line)
    frame = _pandas_read(path, text, kind, sep)
    if type(frame.index).__name__ != "RangeIndex":
        # pandas reads rows with more fields than the header names silently, taking the
        # first fields as an index: every column shifts
        _refuse_long_rows(path, text, kind, sep, header)
    return _Table([str(c) for c in frame.columns], frame=frame)


def _csv_error(path: Path, kind: str, text: str, exc: csv.Error) -> str:
    """What Python's csv module means, said about the user's file (its own words name its internals)."""
    reason = str(exc)
    if "field larger than field limit" in reason:
        return (
            f"{path} is not a well-formed {kind.upper()} file: its header line holds a field over "
            f"{csv.field_size_limit():,} characters (an unclosed quote, or no line breaks?). Give a first line "
            "naming the columns, e.g. text,label, and close every opening quote."
        )
    if "new-line character seen in unquoted field" in reason:
        if "\n" not in text:
            return (
                f"{path} ends its lines with a carriage return alone (old Mac line endings), which "
                f"{kind.upper()} readers do not take. Re-save it with \\n line endings (e.g. "
                f"`tr '\\r' '\\n' < {path.name} > {path.stem}-lf{path.suffix}`)."
            )
        return (
            f"{path} is not a well-formed {kind.upper()} file: its header line holds a carriage return (\\r) "
            "outside quotes. Remove it, or quote that field."
        )
    return f"{path} is not a well-formed {kind.upper()} file: {reason}".splitlines()[0]


def _refuse_long_rows(path: Path, text: str, kind: str, sep: str, header: list[str]) -> None:
    body = text.lstrip("\r\n")
    skipped = text[: len(text) - len(body)].count("\n")  # blank lines before the header
    reader = csv.reader(io.StringIO(body), delimiter=sep)
    next(reader)
    lineno, fields = 0, len(header)
    for row in reader:
        if len(row) > len(header):
            lineno, fields = reader.line_num + skipped, len(row)
            break
    where = f"line {lineno} has {fields} fields" if lineno else "its rows have more fields"
    trailing = f" (or a {DELIMITER_NAMES[sep]} at the end of each line)" if lineno else ""
    raise UnfreezeError(
        f"{path} is not a well-formed {kind.upper()} file: {where} but its header names {len(header)} "
        f"({clip(sep.join(header))!r}): a text holding an unquoted {sep!r}{trailing}? Quote such texts, as CSV "
        "writers and spreadsheets do, or fix that line."
    )


def _check_delimiter(path: Path, kind: str, sep: str, header: list[str], first_line: str) -> None:
    """A file saved with another delimiter reads as one column holding the whole first line."""
    if len(header) != 1:
        return
    seen = [d for d in ("\t", ";", "|", ",") if d != sep and d in first_line]
    if not seen:
        return
    other = max(seen, key=first_line.count)
    name = DELIMITER_NAMES[other]
    if other == "\t":
        fix = f"rename it to {path.stem}.tsv"
    elif other == ",":
        fix = f"rename it to {path.stem}.csv"
    else:
        fix = "re-save it comma-separated (in a spreadsheet: CSV UTF-8, comma delimited)"
    expected = DELIMITER_NAMES[sep]
    raise UnfreezeError(
        f"{path} looks {name}-delimited ({other!r}), not {expected}-delimited: its first line {clip(first_line)!r} "
        f"holds no {expected}. {fix[0].upper()}{fix[1:]}."
    )


def _pandas_read(path: Path, text: str, kind: str, sep: str) -> pd.DataFrame:
    import pandas as pd

    try:
        # Everything as strings, no NA guessing: an empty cell is an empty text,
        # and labels are typed later by normalize_labels.
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise UnfreezeError(_parser_error(path, kind, sep, str(exc))) from exc
    except pd.errors.EmptyDataError as exc:
        raise UnfreezeError(f"{path} is empty. Give a file with a header and labelled rows.") from exc


def _parser_error(path: Path, kind: str, sep: str, reason: str) -> str:
    """pandas' tokenizer errors ("Error tokenizing data. C error: ...") said about the user's file."""
    bad = f"{path} is not a well-formed {kind.upper()} file"
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", reason)
    if fields:
        expected, line, saw = fields.groups()
        return (
            f"{bad}: line {line} has {saw} fields but its header names {expected}: a text holding an unquoted "
            f"{sep!r}? Quote such texts, as CSV writers and spreadsheets do, or fix that line."
        )
    quote = re.search(r"EOF inside string starting at row (\d+)", reason)
    if quote:
        return (
            f'{bad}: the quote (") opened on line {int(quote.group(1)) + 1} is never closed. Close it, or double '
            'a quote inside a quoted text ("").'
        )
    return f"{bad}: {reason.removeprefix('Error tokenizing data. C error: ')}".splitlines()[0]


# -- JSON lines -----------------------------------------------------------------------------


def _parse_jsonl(path: Path, text: str) -> list[dict]:
    rows = []
    duplicate: list[str] = []

    def pairs_hook(pairs: list[tuple[str, object]]) -> dict:
        row = dict(pairs)
        if len(row) != len(pairs):
            duplicate.append(next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1))
        return row

    # one decoder for every line, and raw_decode: twice as fast as json.loads per line
    decoder = json.JSONDecoder(object_pairs_hook=pairs_hook)
    # split("\n"), not splitlines(): JSON strings may hold a raw U+2028 or U+0085, which
    # splitlines breaks on; and the line number must count the file's lines, blank ones too
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.strip(" \t\r")  # JSON's own whitespace around a value
        if not line:
            continue
        try:
            row, end = decoder.raw_decode(line)
            if end != len(line):
                raise json.JSONDecodeError("Extra data", line, end)
        except json.JSONDecodeError as exc:
            raise UnfreezeError(f"{path} line {lineno}: not valid JSON ({exc.msg}). Fix or remove that line.") from exc
        except RecursionError:
            raise UnfreezeError(f"{path} line {lineno}: JSON nested too deeply. Fix or remove that line.") from None
        if not isinstance(row, dict):
            raise UnfreezeError(
                f'{path} line {lineno}: every JSON line must be an object like {{"text": ..., "label": ...}}.'
            )
        if duplicate:
            raise UnfreezeError(
                f"{path} line {lineno}: key {duplicate[0]!r} appears twice in one object, and which value is meant "
                "is ambiguous. Keep one."
            )
        rows.append(row)
    return rows


# -- Parquet and saved datasets -------------------------------------------------------------


def _read_parquet(path: Path, wanted: list[tuple[str, str | None]], columns: list[str] | None) -> _Table:
    with open(path, "rb") as handle:
        start = handle.read(1 << 12)
    if not start.startswith(b"PAR1"):
        check_is_text(path, start)  # a compressed or other binary file says what it is
        if start and b"\x00" not in start:
            try:
                start.decode("utf-8")
                looks_text = True
            except UnicodeDecodeError:
                looks_text = False
            if looks_text:
                raise UnfreezeError(
                    f"{path} is not a readable Parquet file: it holds text. Rename it to .csv, .tsv or .jsonl, "
                    "whichever it is."
                )
    import pandas as pd
    import pyarrow.parquet as pq

    try:
        # the schema first: columns are checked before any data is read, and pyarrow
        # cannot read a table with duplicate names at all ("Multiple matches for FieldRef")
        names = [str(n) for n in pq.read_schema(path).names]
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise UnfreezeError(f"{path} is not a readable Parquet file ({exc}).".splitlines()[0]) from exc
    check_columns(path, names, wanted)
    twice = [n for n, count in Counter(names).items() if count > 1]
    if twice:
        raise UnfreezeError(
            f"{path} has duplicate column names ({quote_names(twice)}), which Parquet readers cannot read. Rename them."
        )
    try:
        frame = pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise UnfreezeError(f"{path} is not a readable Parquet file ({exc}).".splitlines()[0]) from exc
    return _Table([str(c) for c in frame.columns], frame=frame)


def _read_saved_dataset(path: Path, split: str | None) -> pd.DataFrame:
    return load_saved_dataset(path, split).to_pandas()


def load_saved_dataset(path: Path, split: str | None) -> Any:
    """The ``datasets.Dataset`` saved in folder ``path`` (its ``split`` when it holds several), features and all."""
    if not any((path / marker).exists() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
        raise UnfreezeError(f"{path} is a folder but not a dataset saved with save_to_disk. Use {FORMAT_HELP}.")
    import datasets  # imported here: it is slow to import and only folders need it

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded.keys())
        if split is None:
            if len(names) != 1:
                raise UnfreezeError(f"{path} holds splits {quote_names(names, False)}. Choose one as {path}:SPLIT.")
            split = names[0]
        if split not in loaded:
            raise UnfreezeError(f"Split {split!r} not in {path}. Splits: {quote_names(names, False)}.")
        loaded = loaded[split]
    elif split is not None:
        raise UnfreezeError(f"{path} holds one dataset, not splits; drop ':{split}'.")
    return loaded


# BOMS and MAGIC stay importable from here, where they were defined before file_checks
__all__ = ["BOMS", "DELIMITER_NAMES", "FORMATS", "FORMAT_HELP", "MAGIC", "SEPARATORS", "read_inputs", "read_table"]
