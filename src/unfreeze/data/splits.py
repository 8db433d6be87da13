"""Training and test data from what a user names: one rule for `fit`, `sweep`, `probe` and `heads add`.

- A built-in name alone (``movie-snippets``) is its fixed train split, tested on its fixed
  test split; with ``test_size`` the test set is carved out of the train split instead.
- ``--test DATA`` names the test data (then ``test_size`` is not used).
- Otherwise (a file, a ``NAME:SPLIT``) there is no test set unless ``test_size`` carves one
  out, stratified and seeded.
"""

from __future__ import annotations

from .builtin import BUILTIN
from .dataset import DEFAULT_TASK, TextDataset


def load_splits(
    data: str,
    test: str | None = None,
    test_size: float | None = None,
    text_col: str = "text",
    label_col: str = "label",
    pair_col: str | None = None,
    seed: int = 0,
    task: str | None = None,
    label_sep: str | None = None,
) -> tuple[TextDataset, TextDataset | None]:
    """(train, test or None) by the rule above; labels read for ``task`` (``load_data``)."""
    from . import load_data
    from .sampling import train_test_split

    name, _, split = data.partition(":")
    builtin_whole = name in BUILTIN and not split
    train = load_data(
        f"{name}:train" if builtin_whole else data, text_col, label_col, pair_col, task=task, label_sep=label_sep
    )
    if test is not None:
        # a test set may hold one class; it is read for the training data's task (a built-in's own)
        test_task = None if task is None and train.task == DEFAULT_TASK else train.task
        return train, load_data(
            test, text_col, label_col, pair_col, require_classes=1, task=test_task, label_sep=label_sep
        )
    if test_size:
        return train_test_split(train, test_size, seed)
    return train, load_data(f"{name}:test", task=task) if builtin_whole else None
