"""Labels per task in the data layer (issue 28): multi-label lists and separated strings, scores for
regression, the hints when --task is not given, every bad input in one line, and stratified sampling
of multi-label and regression data."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import assert_user_error
from unfreeze.cli import app
from unfreeze.cli.arguments import DataArguments
from unfreeze.data import DataWarning, TextDataset, build_dataset, load_data, sample, train_test_split
from unfreeze.data.sampling import hold_out, strata
from unfreeze.errors import UnfreezeError

runner = CliRunner()


def jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def csv_file(path, header, rows):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def no_warnings(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        return call()


# -- reading: every path ---------------------------------------------------------------------------


def test_jsonl_lists_read_as_sorted_deduplicated_tuples_and_an_empty_list_is_no_label(tmp_path):
    path = jsonl(
        tmp_path / "genres.jsonl",
        [
            {"text": "a heist", "label": ["drama", "comedy"]},
            {"text": "a blank", "label": []},
            {"text": "twice", "label": ["drama", " drama "]},
            {"text": "missing", "label": None},
        ],
    )
    ds = no_warnings(lambda: load_data(path, task="multilabel"))
    assert ds.task == "multilabel"
    assert ds.labels == [("comedy", "drama"), (), ("drama",), ()]
    assert ds.classes == ["comedy", "drama"]
    assert ds.class_counts() == {"comedy": 1, "drama": 2}


def test_parquet_list_column_reads_as_labels(tmp_path):
    path = tmp_path / "tags.parquet"
    pd.DataFrame({"text": ["one", "two", "three"], "label": [["b", "a"], [], ["c"]]}).to_parquet(path)
    ds = load_data(path, task="multilabel")
    assert ds.labels == [("a", "b"), (), ("c",)]
    assert ds.classes == ["a", "b", "c"]


def test_parquet_list_of_ints_keeps_ints(tmp_path):
    path = tmp_path / "tags.parquet"
    pd.DataFrame({"text": ["one", "two"], "label": [[3, 1], [1]]}).to_parquet(path)
    assert load_data(path, task="multilabel").labels == [(1, 3), (1,)]


def test_saved_dataset_with_a_sequence_column(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": ["x", "y", "z"], "label": [["pos", "long"], ["neg"], []]}).save_to_disk(
        str(folder)
    )
    ds = load_data(folder, task="multilabel")
    assert ds.labels == [("long", "pos"), ("neg",), ()]


def test_csv_with_label_sep_strips_parts_and_an_empty_cell_is_no_label(tmp_path):
    path = csv_file(
        tmp_path / "genres.csv", "text,label", ["a heist,drama| comedy", "a blank,", "one,comedy", "edge,drama||"]
    )
    ds = no_warnings(lambda: load_data(path, task="multilabel", label_sep="|"))
    assert ds.labels == [("comedy", "drama"), (), ("comedy",), ("drama",)]
    assert ds.class_counts() == {"comedy": 2, "drama": 2}


def test_csv_with_label_sep_reads_whole_numbers_as_ints(tmp_path):
    path = csv_file(tmp_path / "ids.csv", "text,label", ["a,1;2", "b,2", "c,10;1"])
    assert load_data(path, task="multilabel", label_sep=";").labels == [(1, 2), (2,), (1, 10)]


def test_regression_reads_numbers_from_csv_and_jsonl(tmp_path):
    csv_path = csv_file(tmp_path / "scores.csv", "text,label", ["a,0.5", "b,3", "c, -1e-1 ", "d,+2."])
    ds = no_warnings(lambda: load_data(csv_path, task="regression"))
    assert ds.task == "regression" and ds.labels == [0.5, 3.0, -0.1, 2.0]
    assert all(type(v) is float for v in ds.labels)
    assert ds.classes == [] and ds.class_counts() == {}
    json_path = jsonl(tmp_path / "scores.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 2.25}])
    assert load_data(json_path, task="regression").labels == [1.0, 2.25]


@pytest.mark.parametrize("task", ["single", "multilabel", "regression"])
def test_sentence_pairs_work_for_every_task(tmp_path, task):
    label = {"single": ["yes", "no"], "multilabel": [["a"], ["a", "b"]], "regression": [4.5, 0.5]}[task]
    path = jsonl(
        tmp_path / "pairs.jsonl",
        [{"s1": "a cat sits", "s2": "a cat is sitting", "y": label[0]}, {"s1": "rain", "s2": "sun", "y": label[1]}],
    )
    ds = load_data(path, "s1", "y", "s2", task=task)
    assert ds.task == task and ds.text_pairs == ["a cat is sitting", "sun"]
    assert ds.inputs == [("a cat sits", "a cat is sitting"), ("rain", "sun")]
    assert ds.labels == {"single": ["yes", "no"], "multilabel": [("a",), ("a", "b")], "regression": [4.5, 0.5]}[task]


def test_subset_and_fingerprint_keep_the_task():
    ds = build_dataset(["a", "b", "c"], [["x"], ["x", "y"], []], task="multilabel")
    part = ds.subset([2, 1])
    assert part.task == "multilabel" and part.labels == [(), ("x", "y")] and part.classes == ["x", "y"]
    single = TextDataset(texts=["a", "b"], labels=["1", "0"])
    as_scores = TextDataset(texts=["a", "b"], labels=["1", "0"], task="regression")
    assert single.fingerprint() != as_scores.fingerprint()
    # single-label data hashes as it did before tasks existed (pinned: cache keys of earlier runs stay valid)
    assert single.fingerprint() == "17a9be5d74c8d1d10aa2bca08231e4a7accb24c73116b1c1393bb6007d5b9241"


# -- hints when --task is not given ----------------------------------------------------------------


def test_many_fractional_numbers_hint_at_regression_in_one_warning(tmp_path):
    path = csv_file(tmp_path / "s.csv", "text,label", [f"text {i},{i / 8:.3f}" for i in range(40)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_data(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert messages == [
        "column 'label' of "
        f"{path}: 40 distinct numbers (35 not whole) are read as 40 classes; if they are scores, --task regression "
        "reads them as numbers."
    ]
    assert ds.task == "single" and len(ds.classes) == 40


@pytest.mark.parametrize(
    "labels",
    [
        [str(i) for i in range(40)],  # whole numbers: classes (ratings, ids)
        [f"{i % 20 / 8:.3f}" for i in range(40)],  # 20 distinct values: not many
        [f"{i / 8:.3f}" for i in range(39)] + ["high"],  # a word: classes
    ],
    ids=["whole", "few", "word"],
)
def test_no_regression_hint_for_whole_numbers_few_values_or_words(labels):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_dataset([f"text {i}" for i in range(40)], labels)
    assert not any("--task regression" in str(w.message) for w in caught)


def test_joined_labels_read_without_a_separator_hint_at_label_sep(tmp_path):
    path = csv_file(tmp_path / "g.csv", "text,label", ["a,drama|comedy", "b,comedy|war", "c,drama"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_data(path, task="multilabel")
    assert [str(w.message) for w in caught] == [
        f"column 'label' of {path}: strings such as 'drama|comedy' are read as one label each; if '|' joins "
        "several, --label-sep '|' splits them."
    ]
    assert ds.labels == [("drama|comedy",), ("comedy|war",), ("drama",)]


def test_a_given_task_gives_no_hint():
    no_warnings(lambda: build_dataset([f"t{i}" for i in range(40)], [i / 8 for i in range(40)], task="regression"))


# -- bad input, library and command line -----------------------------------------------------------


BAD = {
    "list-label-single": (
        "d.jsonl",
        [{"text": "a", "label": "x"}, {"text": "b", "label": ["x", "y"]}],
        ["--task", "single"],
        ["Row 2 of column 'label'", "holds a list", "--task multilabel", "--label-col"],
    ),
    "list-label-no-task": (
        "d.jsonl",
        [{"text": "a", "label": ["x"]}, {"text": "b", "label": "y"}],
        [],
        ["Row 1 of column 'label'", "holds a list", "--task multilabel"],
    ),
    "list-label-regression": (
        "d.jsonl",
        [{"text": "a", "label": 1.5}, {"text": "b", "label": [1, 2]}],
        ["--task", "regression"],
        ["Row 2 of column 'label'", "holds a list", "not a number", "--task multilabel"],
    ),
    "word-under-regression": (
        "d.csv",
        "text,label\na,0.5\nb,high\n",
        ["--task", "regression"],
        ["Row 2 of column 'label'", "'high', not a number", "--task regression reads one number per row"],
    ),
    "nan-score": ("d.csv", "text,label\na,0.5\nb,nan\n", ["--task", "regression"], ["Row 2", "holds nan", "finite"]),
    "inf-score": ("d.csv", "text,label\na,-inf\nb,1\n", ["--task", "regression"], ["Row 1", "holds -inf", "finite"]),
    "bool-score": (
        "d.jsonl",
        [{"text": "a", "label": True}, {"text": "b", "label": 1}],
        ["--task", "regression"],
        ["Row 1", "holds True (bool), not a number"],
    ),
    "sep-splits-nothing": (
        "d.csv",
        "text,label\na,drama\nb,comedy\n",
        ["--task", "multilabel", "--label-sep", "|"],
        ["--label-sep '|' splits no label in column 'label'", "none contains it (e.g. 'drama')"],
    ),
    "sep-without-multilabel": (
        "d.csv",
        "text,label\na,x|y\nb,y\n",
        ["--label-sep", "|"],
        ["--label-sep splits a string into several labels", "only --task multilabel", "the task here is single"],
    ),
    "sep-with-regression": (
        "d.csv",
        "text,label\na,1\nb,2\n",
        ["--task", "regression", "--label-sep", "|"],
        ["only --task multilabel", "the task here is regression"],
    ),
    "per-label-single": (
        "d.csv",
        "text,label\na,x\nb,y\n",
        ["--thresholds", "per-label"],
        ["--thresholds per-label", "multi-label", "the task here is single", "--task multilabel"],
    ),
    "per-label-regression": (
        "d.csv",
        "text,label\na,1\nb,2\n",
        ["--task", "regression", "--thresholds", "per-label"],
        ["--thresholds per-label", "the task here is regression"],
    ),
    "unknown-thresholds": (
        "d.csv",
        "text,label\na,x\nb,y\n",
        ["--thresholds", "each"],
        ["--thresholds must be one of global, per-label. Got 'each'."],
    ),
    "unknown-task": (
        "d.csv",
        "text,label\na,x\nb,y\n",
        ["--task", "tags"],
        ["Unknown task 'tags' (--task). Choose one of: single, multilabel, regression, tokens."],
    ),
    "nested-list": (
        "d.jsonl",
        [{"text": "a", "label": [["x"]]}, {"text": "b", "label": ["y"]}],
        ["--task", "multilabel"],
        ["Row 1", "a list inside its list", "Flatten"],
    ),
    "no-label-at-all": (
        "d.jsonl",
        [{"text": "a", "label": []}, {"text": "b", "label": []}],
        ["--task", "multilabel"],
        ["No row of", "carries a label"],
    ),
    "one-score-only": (
        "d.csv",
        "text,label\na,2\nb,2.0\n",
        ["--task", "regression"],
        ["Every score of", "is 2; regression needs scores that differ"],
    ),
}


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, list):
        return jsonl(path, content)
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path):
    name, content, args, words = BAD[case]
    path = _write(tmp_path, name, content)
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["fit", str(path), "-o", str(out), *args])
    assert_user_error(result, *words)
    assert not out.exists()


@pytest.mark.parametrize("case", [c for c in BAD if "thresholds" not in " ".join(BAD[c][2])], ids=str)
def test_bad_input_is_the_same_one_line_from_the_library(case, tmp_path):
    name, content, args, words = BAD[case]
    path = _write(tmp_path, name, content)
    given = dict(zip(args[::2], args[1::2]))
    with pytest.raises(UnfreezeError) as info:
        load_data(path, task=given.get("--task"), label_sep=given.get("--label-sep"))
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_data_arguments_carry_task_and_separator_to_the_loaded_data(tmp_path):
    from unfreeze.cli.common import load_train_test

    path = csv_file(tmp_path / "g.csv", "text,label", [f"t{i},{'a|b' if i % 3 else 'b'}" for i in range(12)])
    split = DataArguments(task="multilabel", label_sep="|", thresholds="per-label", test_size=0.25)
    split.check()
    train, test = load_train_test(str(path), split, seed=0)
    assert train.task == test.task == "multilabel"
    assert len(train) == 9 and len(test) == 3
    assert Counter(train.labels + test.labels) == {("a", "b"): 8, ("b",): 4}


# -- stratified sampling ---------------------------------------------------------------------------


def _multilabel(rows: dict[tuple, int]) -> TextDataset:
    labels = [labels for labels, n in rows.items() for _ in range(n)]
    return TextDataset(texts=[f"t{i}" for i in range(len(labels))], labels=labels, name="ml", task="multilabel")


def test_multilabel_strata_are_each_row_s_rarest_label():
    ds = _multilabel({("a",): 6, ("a", "b"): 3, (): 1, ("a", "c"): 2, ("b", "c"): 1})
    # a: 11 rows, b: 4, c: 3; ties go to the first label in sorted order
    assert Counter(strata(ds)) == {"a": 6, "b": 3, (): 1, "c": 3}


def test_multilabel_sample_is_stratified_by_rarest_label_and_nested():
    ds = _multilabel({("a",): 60, ("a", "b"): 30, (): 10})
    for n in (5, 10, 37):
        got = Counter(strata(ds.subset([ds.texts.index(t) for t in sample(ds, n_total=n, seed=3).texts])))
        for key, total in (("a", 60), ("b", 30), ((), 10)):
            assert n * total // 100 <= got[key] <= -(-n * total // 100), (n, key, got)
    small, large = sample(ds, n_total=10, seed=3), sample(ds, n_total=37, seed=3)
    assert large.texts[:10] == small.texts
    assert sample(ds, n_total=10, seed=4).texts != small.texts


def test_multilabel_n_per_class_takes_n_rows_per_rarest_label():
    ds = _multilabel({("a",): 6, ("a", "b"): 3, (): 2})
    picked = sample(ds, n_per_class=2, seed=0)
    assert Counter(picked.labels) == {("a",): 2, ("a", "b"): 2, (): 2}
    with pytest.raises(UnfreezeError, match=r"^ml has 2 row\(s\) with no label; a sample of 3 per class needs 3"):
        sample(ds, n_per_class=3, seed=0)


def test_regression_strata_are_five_quantile_bins_and_samples_hold_each_bin_equally():
    ds = TextDataset(texts=[f"t{i}" for i in range(100)], labels=[float(i) for i in range(100)], task="regression")
    assert strata(ds) == [i // 20 for i in range(100)]
    picked = sample(ds, n_total=10, seed=0)
    assert sorted(int(v) // 20 for v in picked.labels) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    train, test = train_test_split(ds, 0.2, seed=0)
    assert len(test) == 20 and Counter(int(v) // 20 for v in test.labels) == {0: 4, 1: 4, 2: 4, 3: 4, 4: 4}
    assert train.task == test.task == "regression"
    held, rest = hold_out(ds, 15, seed=1)
    assert Counter(int(v) // 20 for v in held.labels) == {0: 3, 1: 3, 2: 3, 3: 3, 4: 3}
    assert sorted(held.labels + rest.labels) == ds.labels


def test_regression_has_no_classes_to_take_n_per_class_of():
    ds = TextDataset(texts=["a", "b", "c"], labels=[0.1, 0.2, 0.3], name="scores", task="regression")
    with pytest.raises(UnfreezeError, match=r"^scores holds scores \(regression\).*Use --n-train"):
        sample(ds, n_per_class=1)


def test_a_multilabel_split_keeps_a_single_row_stratum_in_train():
    ds = _multilabel({("a",): 10, ("a", "b"): 5, ("c",): 1})
    train, test = train_test_split(ds, 0.2, seed=0)
    assert Counter(test.labels) == {("a",): 2, ("a", "b"): 1}
    assert ("c",) in train.labels
