"""Data: readers, validation, seeded sampling and built-in datasets."""

from __future__ import annotations

from pathlib import Path

from .builtin import BUILTIN, load_builtin
from .dataset import DataWarning, TextDataset, build_dataset
from .readers import read_table
from .sampling import sample, stratified_order, train_test_split

__all__ = [
    "BUILTIN",
    "DataWarning",
    "TextDataset",
    "build_dataset",
    "load_data",
    "load_builtin",
    "read_table",
    "sample",
    "stratified_order",
    "train_test_split",
]


def load_data(
    source: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    text_pair_col: str | None = None,
) -> TextDataset:
    """Load a built-in dataset (``NAME`` or ``NAME:SPLIT``) or a file/folder (``PATH`` or ``DIR:SPLIT``)."""
    text = str(source)
    name, _, split = text.partition(":")
    if name in BUILTIN:
        return load_builtin(name, split or None)
    path = Path(text)
    if not path.exists() and split and Path(name).is_dir():
        return read_table(Path(name), text_col, label_col, text_pair_col, split=split)
    return read_table(path, text_col, label_col, text_pair_col)
