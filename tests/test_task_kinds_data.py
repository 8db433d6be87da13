"""A task kind defined outside unfreeze is read, counted, stratified and sampled by the data layer with no edit
in ``unfreeze.data``: the data layer asks the registered Task class (``Task.read_labels``, ``classes_of``,
``class_counts``, ``check_variety``, ``strata``, ``stratum_shortfall``, ``reads_label_sep``,
``strata_are_classes``), never the task's name.

The throwaway task reads a run of stars per row ("***" is 3) and stratifies by low (1-2) and high (3-5).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest

from unfreeze.cli.arguments import DataArguments
from unfreeze.data import DataWarning, TextDataset, load_data, sample, train_test_split
from unfreeze.data.dataset import DEFAULT_TASK, task_kind
from unfreeze.data.sampling import strata
from unfreeze.errors import UnfreezeError
from unfreeze.tasks import DEFAULT_TASK as TASKS_DEFAULT
from unfreeze.tasks import TASKS, Task, register_task


class Stars(Task):
    """A run of '*' per row, counted; ``label_sep`` joins runs (counted together)."""

    name: ClassVar[str] = "stars"
    reads_label_sep: ClassVar[bool] = True
    strata_are_classes: ClassVar[bool] = False

    @classmethod
    def read_labels(
        cls, values: Sequence[object], label_sep: str | None, source: str, column: str | None, warn_mixed: bool = True
    ) -> list:
        out: list[int | None] = []
        for i, value in enumerate(values):
            text = value.replace(label_sep, "") if label_sep and isinstance(value, str) else value
            if not isinstance(text, str) or set(text) != {"*"}:
                raise UnfreezeError(f"Row {i + 1} of {source} holds {value!r}, not stars.")
            out.append(len(text))
        return out

    @classmethod
    def check_variety(cls, labels: Sequence[Any], require_classes: int, source: str) -> None:
        if require_classes >= 2 and len(set(labels)) < 2:
            raise UnfreezeError(f"Every row of {source} has {labels[0]} stars.")

    @classmethod
    def strata(cls, labels: Sequence[Any]) -> list:
        return ["low" if stars <= 2 else "high" for stars in labels]

    @classmethod
    def stratum_shortfall(cls, key: object, count: int, source: str) -> str:
        return f"Stratum {key!r} of {source} has {count} row(s)"


STARS = ["*", "**", "***", "****", "*****", "*", "**", "****", "*****", "***"]


@pytest.fixture
def stars_task() -> Iterator[type[Task]]:
    register_task(Stars)
    try:
        yield Stars
    finally:
        TASKS.pop(Stars.name, None)


@pytest.fixture
def stars_csv(tmp_path):
    path = tmp_path / "stars.csv"
    rows = [f"review number {i} of the film,{stars}" for i, stars in enumerate(STARS)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def quiet_load(*args: Any, **kwargs: Any):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        return load_data(*args, **kwargs)


def test_the_data_layer_s_default_task_is_the_registry_s():
    assert DEFAULT_TASK == TASKS_DEFAULT == "single"
    assert task_kind() is TASKS["single"] and task_kind("regression") is TASKS["regression"]


def test_a_registered_task_reads_counts_and_stratifies_a_file(stars_task, stars_csv):
    ds = quiet_load(str(stars_csv), task="stars")
    assert ds.task == "stars"
    assert ds.labels == [1, 2, 3, 4, 5, 1, 2, 4, 5, 3]
    assert ds.classes == [1, 2, 3, 4, 5]
    assert ds.class_counts() == {1: 2, 2: 2, 3: 2, 4: 2, 5: 2}
    assert strata(ds) == ["low", "low", "high", "high", "high", "low", "low", "high", "high", "high"]
    assert ds.subset([0, 2]).task == "stars"
    # the fingerprint names a task other than the default: the same rows as single hash apart
    as_single = TextDataset(texts=ds.texts, labels=ds.labels, name=ds.name)
    assert ds.fingerprint() != as_single.fingerprint()
    assert ds.fingerprint() == TextDataset(texts=ds.texts, labels=ds.labels, task="stars").fingerprint()


def test_a_registered_task_s_strata_drive_samples_and_splits(stars_task, stars_csv):
    ds = quiet_load(str(stars_csv), task="stars")
    two_each = sample(ds, n_per_class=2, seed=0)
    assert Counter(strata(two_each)) == {"low": 2, "high": 2}
    # fewer rows than classes is no refusal: its strata are not its classes
    three = sample(ds, n_total=3, seed=0)
    assert len(three) == 3 and three.texts == sample(ds, n_total=4, seed=0).texts[:3]  # nested
    assert Counter(strata(three)) == {"high": 2, "low": 1}
    train, test = train_test_split(ds, 0.2, seed=0)
    assert (len(train), len(test)) == (8, 2)
    assert Counter(strata(test)) == {"low": 1, "high": 1}
    with pytest.raises(UnfreezeError) as info:
        sample(ds, n_per_class=5, seed=0)
    assert str(info.value) == (
        f"Stratum 'low' of {stars_csv} has 4 row(s); a sample of 5 per class needs 5. Lower --n-per-class to at most 4."
    )


def test_a_registered_task_s_reader_variety_and_separator(stars_task, stars_csv, tmp_path):
    joined = tmp_path / "joined.csv"
    joined.write_text("text,label\none film,*|**\nanother film,*\n", encoding="utf-8")
    assert load_data(str(joined), task="stars", label_sep="|").labels == [3, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\none film,*\nanother film,great\n", encoding="utf-8")
    with pytest.raises(UnfreezeError) as info:
        load_data(str(bad), task="stars")
    assert str(info.value) == f"Row 2 of {bad} holds 'great', not stars."
    same = tmp_path / "same.csv"
    same.write_text("text,label\none film,**\nanother film,**\n", encoding="utf-8")
    with pytest.raises(UnfreezeError) as info:
        load_data(str(same), task="stars")
    assert str(info.value) == f"Every row of {same} has 2 stars."
    assert load_data(str(same), task="stars", require_classes=1).labels == [2, 2]
    # --label-sep names every task that reads it, and --task accepts the new name
    with pytest.raises(UnfreezeError) as info:
        load_data(str(stars_csv), label_sep="|")
    assert str(info.value) == (
        "--label-sep splits a string into several labels, which only --task multilabel or --task stars reads (the "
        "task here is single). Add --task multilabel, or drop --label-sep."
    )
    DataArguments(task="stars", label_sep="|").check()
    with pytest.raises(UnfreezeError) as info:
        DataArguments(task="stars", thresholds="per-label").check()
    assert str(info.value) == (
        "--thresholds per-label chooses a threshold for each label of multi-label data; the task here is stars. "
        "Drop --thresholds, or give --task multilabel."
    )


def test_an_unregistered_task_is_unknown_to_the_data_layer(stars_csv):
    assert "stars" not in TASKS
    with pytest.raises(UnfreezeError) as info:
        load_data(str(stars_csv), task="stars")
    assert str(info.value) == "Unknown task 'stars' (--task). Choose one of: single, multilabel, regression, tokens."
