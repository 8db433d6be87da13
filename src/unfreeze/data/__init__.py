"""Data: readers, validation, seeded sampling and built-in datasets."""

from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import UnfreezeError
from .builtin import BUILTIN, load_builtin
from .dataset import DataWarning, TextDataset, build_dataset, print_data_warnings_on_one_line
from .readers import read_table
from .sampling import hold_out, sample, stratified_order, train_test_split
from .tagged import TaggedDataset
from .tagged_builtin import TAGGED_BUILTIN, load_tagged
from .tagged_readers import read_tagged

__all__ = [
    "BUILTIN",
    "TAGGED_BUILTIN",
    "DataWarning",
    "TaggedDataset",
    "TextDataset",
    "build_dataset",
    "hold_out",
    "load_builtin",
    "load_data",
    "load_tagged",
    "print_data_warnings_on_one_line",
    "read_table",
    "read_tagged",
    "sample",
    "stratified_order",
    "train_test_split",
]


def load_data(
    source: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    text_pair_col: str | None = None,
    require_classes: int = 2,
    task: str | None = None,
    label_sep: str | None = None,
) -> TextDataset:
    """Load a built-in dataset (``NAME`` or ``NAME:SPLIT``) or a file/folder (``PATH`` or ``DIR:SPLIT``).

    ``require_classes``: the fewest classes the data must hold (2 to train on; 1 for a test set).
    ``task``: how labels are read, "single", "multilabel" or "regression" (None: single, or a built-in's
    own task); ``label_sep`` splits a file's multi-label strings (with ``task="multilabel"``)."""
    text = str(source)
    name, _, split = text.partition(":")
    if name in TAGGED_BUILTIN:
        spec = TAGGED_BUILTIN[name]
        raise UnfreezeError(
            f"{name} holds a tag per token (named entities): fit, evaluate and predict read it as --task tokens (its "
            f"own task), the other commands not yet; {spec.instead}. In Python, unfreeze.data.load_tagged({name!r}) "
            "reads it."
        )
    if name in BUILTIN:
        return load_builtin(name, split or None, task=task, label_sep=label_sep)
    path = Path(text)
    if not path.exists() and split:
        if Path(name).is_dir():
            return read_table(
                Path(name),
                text_col,
                label_col,
                text_pair_col,
                split=split,
                require_classes=require_classes,
                task=task,
                label_sep=label_sep,
            )
        if Path(name).is_file():
            raise UnfreezeError(
                f"{name} is a file, and ':{split}' picks a split of a built-in dataset or of a folder saved with "
                f"save_to_disk. Give {name} alone, and its test data with --test (or --test-size)."
            )
    if not path.exists() and not path.suffix and "/" not in text and "\\" not in text:
        lowered = {b.lower(): b for b in BUILTIN}
        near = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.75)]
        if near:
            raise UnfreezeError(
                f"{text!r} is neither a file nor a built-in dataset. Did you mean {near[0]!r}? Built-in datasets: "
                f"{', '.join(BUILTIN)} (see `unfreeze datasets`)."
            )
    return read_table(
        path, text_col, label_col, text_pair_col, require_classes=require_classes, task=task, label_sep=label_sep
    )
