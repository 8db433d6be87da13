"""Read token-tagged data: CoNLL column files, and JSON lines, Parquet or a saved ``datasets`` folder with a
list of tokens and a list of tags per row (a saved dataset's tags may be class numbers its features name).

The file checks are the text readers' (``file_checks``, ``readers``): a wrong path, format, encoding or
column answers in one line before anything is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UnfreezeError
from .conll import read_columns
from .dataset import _kind_name, _scalar, _short
from .file_checks import check_columns, check_distinct_columns, check_exists, check_is_text, check_regular, decode_utf8
from .readers import _read, load_saved_dataset
from .tagged import MAX_SENTENCE_TOKENS, TaggedDataset, build_tagged

TABLE_FORMATS = {".jsonl", ".ndjson", ".parquet", ".pq"}
TAGGED_FORMAT_HELP = (
    "a CoNLL column file (a token and its tag a line, a blank line after each sentence), JSON lines or Parquet "
    "with a list of tokens and a list of tags a row, or a folder saved with datasets' save_to_disk"
)


def read_tagged(
    path: str | Path,
    tag_col: int = -1,
    tokens_col: str = "tokens",
    tags_col: str = "tags",
    split: str | None = None,
    require_tags: int = 2,
) -> TaggedDataset:
    """Read token-tagged data into a validated ``TaggedDataset`` (``build_tagged``).

    JSON lines (.jsonl), Parquet (.parquet) and saved-dataset folders are tables (``tokens_col``,
    ``tags_col``; ``split`` picks a saved folder's split); any other file is read as CoNLL columns, the tags
    in column ``tag_col`` (0-based, -1 the last). ``require_tags``: the fewest distinct tags (2 to train on,
    1 for a test set)."""
    path = Path(path)
    check_exists(path, "Give " + TAGGED_FORMAT_HELP + ".")
    if path.is_dir() or path.suffix.lower() in TABLE_FORMATS:
        return _read_table(path, tokens_col, tags_col, split, require_tags)
    check_regular(path)
    if path.suffix.lower() == ".csv":
        raise UnfreezeError(f"{path} is CSV, which holds no list of tokens a row. Give {TAGGED_FORMAT_HELP}.")
    raw = path.read_bytes()
    check_is_text(path, raw)
    text = decode_utf8(path, raw)
    sentences, tags, lines = read_columns(path, text, tag_col, MAX_SENTENCE_TOKENS)

    def locate(i: int, j: int | None) -> str:
        return f"line {lines[i][0 if j is None else j]}"

    return build_tagged(sentences, tags, str(path), locate, require_tags, "tag_col (--tag-col)")


def _read_table(path: Path, tokens_col: str, tags_col: str, split: str | None, require_tags: int) -> TaggedDataset:
    wanted: list[tuple[str, str | None]] = [("--tokens-col", tokens_col), ("--tags-col", tags_col)]
    check_distinct_columns(wanted)
    names: list[str] | None = None
    if path.is_dir():
        loaded = load_saved_dataset(path, split)
        check_columns(path, list(loaded.column_names), wanted)
        feature: Any = getattr(loaded.features[tags_col], "feature", None)
        names = list(feature.names) if hasattr(feature, "names") else None  # a Sequence(ClassLabel)
        raw_tokens, raw_tags = loaded[tokens_col], loaded[tags_col]
    else:
        table = _read(path, None, wanted)
        raw_tokens, raw_tags = table.column(tokens_col), table.column(tags_col)
    source = str(path)
    sentences = [_strings(v, i, source, tokens_col, "tokens", None) for i, v in enumerate(raw_tokens)]
    tags = [_strings(v, i, source, tags_col, "tags", names) for i, v in enumerate(raw_tags)]

    def locate(i: int, j: int | None) -> str:
        return f"row {i + 1}" if j is None else f"row {i + 1} (token {j + 1}, {sentences[i][j][:30]!r})"

    return build_tagged(sentences, tags, source, locate, require_tags, "tags_col (--tags-col)")


def _strings(value: Any, i: int, source: str, column: str, what: str, names: list[str] | None) -> list[str]:
    """One row's tokens or tags as strings: a list (a Parquet array too); numbers are tokens' words, and tags
    only through a saved dataset's class names."""
    value = _scalar(value)
    if value is None:
        return []  # no tokens: refused as an empty sentence, with its row
    if isinstance(value, str) or not isinstance(value, Sequence):
        option = "--tokens-col" if what == "tokens" else "--tags-col"
        raise UnfreezeError(
            f"Row {i + 1} of column {column!r} of {source} holds {_kind_name(value)} ({_short(value)}), not a list "
            f'of {what}. Give a list a row (e.g. ["EU", "rejects"]), or choose the column with {option}.'
        )
    out: list[str] = []
    for item in value:
        item = _scalar(item)
        if isinstance(item, str):
            out.append(item)
        elif names is not None and isinstance(item, int) and 0 <= item < len(names):
            out.append(names[item])
        elif what == "tokens" and isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(str(item))
        else:
            fix = (
                "Write tag names (B-PER, O, ...), or save the data with datasets and a ClassLabel feature naming them."
                if what == "tags" and isinstance(item, int)
                else f"Give a list of strings a row in column {column!r}."
            )
            raise UnfreezeError(
                f"Row {i + 1} of column {column!r} of {source} holds {_short(item)} among its {what}, not a string. "
                + fix
            )
    return out


__all__ = ["TAGGED_FORMAT_HELP", "read_tagged"]
