"""Checks on a data file before a table is built: that it exists and is a regular file, that its
bytes are UTF-8 text (not gzip, a workbook, UTF-16 or binary), and that the columns asked for
are there once each. Each refusal says what the file is and how to fix it."""

from __future__ import annotations

import re
import stat
from collections import Counter
from pathlib import Path

from ..errors import UnfreezeError
from .dataset import quote_names, warn_data

# what a file's first bytes say it is, when it is not text
MAGIC = (
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (e.g. `zcat FILE > plain.csv`)"),
    (
        b"PK\x03\x04",
        "a zip archive (an Excel .xlsx workbook or a zipped file)",
        "export it as CSV UTF-8 from the spreadsheet, or unzip it",
    ),
    (
        b"\xd0\xcf\x11\xe0",
        "an Office document (an Excel .xls workbook?)",
        "export it as CSV UTF-8 from the spreadsheet",
    ),
    (b"PAR1", "a Parquet file", "rename it to .parquet"),
    (b"BZh", "bzip2-compressed", "decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (unxz)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first (unzstd)"),
    (b"%PDF", "a PDF document", "export its text to a CSV or JSONL file"),
    (b"SQLite format 3\x00", "an SQLite database", "export the table as CSV"),
)
BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def check_exists(path: Path, how: str) -> None:
    """Refuse a missing ``path``, saying when a parent is a file; ``how`` tells what to give instead."""
    if path.exists():
        return
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and parent.is_file():
        raise UnfreezeError(f"File not found: {path} ({parent} is a file, not a folder). {how}")
    raise UnfreezeError(f"File not found: {path}. {how}")


def check_regular(path: Path) -> None:
    """Refuse what is neither a folder nor a regular file: reading a FIFO blocks until a writer comes, a
    device never ends."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return
    what = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )
    raise UnfreezeError(
        f"{path} is {what}, not a regular file: unfreeze reads only files and folders saved with "
        "datasets. Save the data to a file first."
    )


def check_distinct_columns(wanted: list[tuple[str, str | None]]) -> None:
    """Refuse two options (``wanted``: option, column) that name the same column."""
    seen: dict[str, str] = {}
    for option, column in wanted:
        if column is None:
            continue
        if column in seen:
            raise UnfreezeError(
                f"{seen[column]} and {option} both name column {column!r}; each needs a column of its own."
            )
        seen[column] = option


def check_is_text(path: Path, raw: bytes) -> None:
    """Refuse compressed, binary and UTF-16 files under a text suffix, saying what they are."""
    for magic, what, fix in MAGIC:
        if raw.startswith(magic):
            fix = fix.replace("FILE", str(path))
            raise UnfreezeError(f"{path} is not text: it is {what}. {fix[0].upper()}{fix[1:]}.")
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            raise UnfreezeError(
                f"{path} is {encoding} text, not UTF-8. Re-save it as UTF-8 "
                f"(e.g. `iconv -f {encoding.lower()} -t utf-8 {path.name} > {path.stem}-utf8{path.suffix}`)."
            )
    head = raw[: 1 << 16]
    nul = head.find(b"\x00")
    if nul >= 0:
        line = head[:nul].count(b"\n") + 1
        raise UnfreezeError(
            f"{path} is not text: it holds a NUL byte (byte {nul}, line {line}), as binary files do. "
            f"Give a UTF-8 {path.suffix.lstrip('.').upper()} file."
        )


def decode_utf8(path: Path, raw: bytes) -> str:
    """The text of ``raw`` (a UTF-8 BOM dropped), or a refusal naming the first bad byte and its line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UnfreezeError(
            f"{path} is not UTF-8: byte 0x{raw[exc.start]:02x} at line {line}. "
            "Re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from exc


def check_columns(
    path: Path, columns: list[str], wanted: list[tuple[str, str | None]], header: str | None = None
) -> None:
    """Refuse a missing or duplicated column that is asked for; warn of other duplicated names."""
    counts = Counter(columns)
    for option, column in wanted:
        if column is None:
            continue
        if column not in counts:
            raise UnfreezeError(_missing_column(path, column, option, columns, header))
        if counts[column] > 1:
            at = quote_names([i + 1 for i, c in enumerate(columns) if c == column], repr_names=False)
            raise UnfreezeError(
                f"{path} has {counts[column]} columns named {column!r} (columns {at}); which one {option} means is "
                "ambiguous. Rename the others."
            )
    others = [c for c, n in counts.items() if n > 1]
    if others:
        warn_data(
            f"{path} has duplicate column names ({quote_names(others)}); they are not used here, "
            "but rename them to keep them apart."
        )


def _missing_column(path: Path, column: str, option: str, columns: list[str], header: str | None) -> str:
    message = f"Column {column!r} not found in {path}. Columns: {quote_names(columns, repr_names=False)}."
    near = [c for c in columns if c.strip().casefold() == column.strip().casefold()]
    if near:
        message += f" Did you mean {near[0]!r}?"
    elif header is not None and _looks_like_data(columns):
        message += (
            f" Its first line ({clip(header)!r}) looks like data, not a header: add a header line "
            "naming the columns (e.g. text,label), or"
        )
        return message + f" choose a column with {option}."
    return message + f" Choose one with {option}."


def _looks_like_data(columns: list[str]) -> bool:
    return any(re.fullmatch(r"\s*[+-]?\d+(\.\d+)?\s*", c) or (len(c) > 30 and " " in c) for c in columns)


def clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "BOMS",
    "MAGIC",
    "check_columns",
    "check_distinct_columns",
    "check_exists",
    "check_is_text",
    "check_regular",
    "clip",
    "decode_utf8",
]
