"""Read labelled text from CSV, TSV, JSONL, Parquet or a saved Hugging Face dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import UnfreezeError
from .dataset import TextDataset, build_dataset

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FORMAT_HELP = "CSV (.csv), TSV (.tsv), JSON lines (.jsonl), Parquet (.parquet) or a folder saved with datasets' save_to_disk"


def read_table(
    path: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    text_pair_col: str | None = None,
    split: str | None = None,
) -> TextDataset:
    """Read a labelled file or ``save_to_disk`` folder into a validated ``TextDataset``."""
    path = Path(path)
    if not path.exists():
        raise UnfreezeError(
            f"File not found: {path}. Give a {FORMAT_HELP}, or a built-in dataset name (see `unfreeze datasets`)."
        )
    frame = _read_frame(path, split)
    columns = [str(c) for c in frame.columns]
    for option, column in (("--text-col", text_col), ("--label-col", label_col), ("--text-pair-col", text_pair_col)):
        if column is not None and column not in columns:
            raise UnfreezeError(
                f"Column {column!r} not found in {path}. Columns: {', '.join(columns) or '(none)'}. "
                f"Choose one with {option}."
            )
    pairs = None if text_pair_col is None else frame[text_pair_col].tolist()
    return build_dataset(frame[text_col].tolist(), frame[label_col].tolist(), pairs, source=str(path))


def _read_frame(path: Path, split: str | None) -> pd.DataFrame:
    if path.is_dir():
        return _read_saved_dataset(path, split)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UnfreezeError(f"Unknown format {path.suffix or '(no extension)'!r} of {path}. Use {FORMAT_HELP}.")
    if kind == "parquet":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise UnfreezeError(f"{path} is not a readable Parquet file ({exc}).") from exc
    text = _decode_utf8(path)
    try:
        if kind == "jsonl":
            return pd.DataFrame(_parse_jsonl(path, text))
        # Everything as strings, no NA guessing: an empty cell is an empty text,
        # and labels are typed later by normalize_label.
        return pd.read_csv(
            path, sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False, encoding="utf-8"
        )
    except pd.errors.ParserError as exc:
        raise UnfreezeError(f"{path} is not a well-formed {kind.upper()} file: {exc}".splitlines()[0]) from exc
    except pd.errors.EmptyDataError as exc:
        raise UnfreezeError(f"{path} is empty. Give a file with a header and labelled rows.") from exc


def _parse_jsonl(path: Path, text: str) -> list[dict]:
    rows = []
    # split("\n"), not splitlines(): JSON strings may hold a raw U+2028 or U+0085, which
    # splitlines breaks on; and the line number must count the file's lines, blank ones too
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UnfreezeError(f"{path} line {lineno}: not valid JSON ({exc.msg}). Fix or remove that line.") from exc
        if not isinstance(row, dict):
            raise UnfreezeError(
                f"{path} line {lineno}: every JSON line must be an object like {{\"text\": ..., \"label\": ...}}."
            )
        rows.append(row)
    return rows


def _decode_utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UnfreezeError(
            f"{path} is not UTF-8: byte 0x{raw[exc.start]:02x} at line {line}. "
            "Re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from exc


def _read_saved_dataset(path: Path, split: str | None) -> pd.DataFrame:
    import datasets  # imported here: it is slow to import and only folders need it

    if not any((path / marker).exists() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
        raise UnfreezeError(f"{path} is a folder but not a dataset saved with save_to_disk. Use {FORMAT_HELP}.")
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded.keys())
        if split is None:
            if len(names) != 1:
                raise UnfreezeError(f"{path} holds splits {', '.join(names)}. Choose one as {path}:SPLIT.")
            split = names[0]
        if split not in loaded:
            raise UnfreezeError(f"Split {split!r} not in {path}. Splits: {', '.join(names)}.")
        loaded = loaded[split]
    elif split is not None:
        raise UnfreezeError(f"{path} holds one dataset, not splits; drop ':{split}'.")
    return loaded.to_pandas()


def read_inputs(
    path: str | Path, text_col: str = "text", text_pair_col: str | None = None
) -> tuple[pd.DataFrame, list[str] | list[tuple[str, str]]]:
    """Read unlabelled inputs for prediction: the whole table and its texts (or text pairs)."""
    from .dataset import _check_texts

    path = Path(path)
    if not path.exists():
        raise UnfreezeError(f"File not found: {path}. Give a {FORMAT_HELP}.")
    frame = _read_frame(path, None)
    columns = [str(c) for c in frame.columns]
    for option, column in (("--text-col", text_col), ("--text-pair-col", text_pair_col)):
        if column is not None and column not in columns:
            raise UnfreezeError(
                f"Column {column!r} not found in {path}. Columns: {', '.join(columns) or '(none)'}. "
                f"Choose one with {option}."
            )
    texts = _check_texts(frame[text_col].tolist(), str(path), "text")
    if text_pair_col is None:
        return frame, texts
    pairs = _check_texts(frame[text_pair_col].tolist(), str(path), "text pair")
    return frame, list(zip(texts, pairs))
