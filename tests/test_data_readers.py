"""Reading labelled text from files and folders, and the errors bad input gives."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pandas as pd
import pytest

from unfreeze.data import load_data, read_table
from unfreeze.data.readers import read_inputs
from unfreeze.errors import UnfreezeError

TEXTS = ["a fine film", "dull and long", "loved every minute", "never again", "quietly moving", "a mess"]
LABELS = [1, 0, 1, 0, 1, 0]


def _frame(**extra) -> pd.DataFrame:
    return pd.DataFrame({"text": TEXTS, "label": LABELS, **extra})


def write(path: Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` in the format its suffix names, the way a user's tools would."""
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".tsv", ".tab"):
        frame.to_csv(path, sep="\t", index=False)
    elif suffix in (".jsonl", ".ndjson"):
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        raise AssertionError(suffix)
    return path


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message, repr(message)


@contextlib.contextmanager
def raises_user_error(*words: str):
    """Expect an UnfreezeError whose one-line message holds every word given."""
    with pytest.raises(UnfreezeError) as info:
        yield info
    message = str(info.value)
    assert_one_line(message)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# -- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".parquet", ".pq"])
def test_every_format_reads_the_same_examples(tmp_path, suffix):
    path = write(tmp_path / f"data{suffix}", _frame())
    ds = load_data(path)
    assert ds.texts == TEXTS
    assert ds.labels == LABELS
    assert all(type(label) is int for label in ds.labels)
    assert ds.text_pairs is None
    assert ds.classes == [0, 1]
    assert ds.class_counts() == {0: 3, 1: 3}
    assert len(ds) == len(TEXTS)
    assert ds.name == str(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_formats_agree_on_fingerprint(tmp_path, suffix):
    reference = load_data(write(tmp_path / "ref.jsonl", _frame()))
    other = load_data(write(tmp_path / f"data{suffix}", _frame()))
    assert other.fingerprint() == reference.fingerprint()


def test_uppercase_suffix_is_recognised(tmp_path):
    path = tmp_path / "DATA.CSV"
    _frame().to_csv(path, index=False)
    assert load_data(path).texts == TEXTS


def test_csv_quoting_commas_and_newlines_survive(tmp_path):
    texts = ["one, two, three", 'she said "no"', "line one\nline two", "plain"]
    frame = pd.DataFrame({"text": texts, "label": ["a", "b", "a", "b"]})
    for suffix in (".csv", ".jsonl", ".parquet"):
        assert load_data(write(tmp_path / f"q{suffix}", frame)).texts == texts


def test_utf8_bom_and_non_ascii_text(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftext,label\ncafé crème,pos\n日本語のテキスト,neg\n".encode())
    ds = load_data(path)
    assert ds.texts == ["café crème", "日本語のテキスト"]
    assert ds.labels == ["pos", "neg"]


def test_jsonl_text_with_unicode_line_separators(tmp_path):
    # U+2028 and U+0085 are legal inside JSON strings (the tweets built-in has U+0085);
    # a reader that splits on str.splitlines() breaks those lines in two
    texts = ["before\u2028after", "next\x85line", "para\u2029graph", "plain"]
    path = tmp_path / "sep.jsonl"
    path.write_text(
        "".join(json.dumps({"text": t, "label": i % 2}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
        encoding="utf-8",
    )
    ds = load_data(path)
    assert ds.texts == texts
    assert ds.labels == [0, 1, 0, 1]


def test_jsonl_blank_lines_and_crlf_are_tolerated(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"text": "x", "label": "a"}\r\n\r\n{"text": "y", "label": "b"}\r\n\n')
    ds = load_data(path)
    assert ds.texts == ["x", "y"]
    assert ds.labels == ["a", "b"]


# -- columns ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_custom_text_label_and_pair_columns(tmp_path, suffix):
    frame = pd.DataFrame(
        {
            "premise": TEXTS,
            "hypothesis": [t.upper() for t in TEXTS],
            "gold": ["yes", "no", "yes", "no", "yes", "no"],
            "text": ["decoy"] * 6,
            "label": [9] * 6,
        }
    )
    path = write(tmp_path / f"pairs{suffix}", frame)
    ds = load_data(path, text_col="premise", label_col="gold", text_pair_col="hypothesis")
    assert ds.texts == TEXTS
    assert ds.text_pairs == [t.upper() for t in TEXTS]
    assert ds.labels == ["yes", "no", "yes", "no", "yes", "no"]
    assert ds.inputs == list(zip(TEXTS, [t.upper() for t in TEXTS]))
    assert ds.classes == ["no", "yes"]


def test_read_table_is_load_data_for_files(tmp_path):
    path = write(tmp_path / "d.csv", _frame())
    assert read_table(path).fingerprint() == load_data(str(path)).fingerprint()


# -- labels ----------------------------------------------------------------------------------


def test_csv_digit_labels_become_ints_like_jsonl_ints(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,label\nx,1\ny,0\nz, 2 \n", encoding="utf-8")
    jsonl_path = tmp_path / "d.jsonl"
    jsonl_path.write_text(
        '{"text": "x", "label": 1}\n{"text": "y", "label": 0}\n{"text": "z", "label": 2}\n', encoding="utf-8"
    )
    from_csv, from_jsonl = load_data(csv_path), load_data(jsonl_path)
    assert from_csv.labels == [1, 0, 2] == from_jsonl.labels
    assert all(type(label) is int for label in from_csv.labels + from_jsonl.labels)
    assert from_csv.fingerprint() == from_jsonl.fingerprint()


def test_string_digit_labels_in_jsonl_match_int_labels(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "x", "label": "1"}\n{"text": "y", "label": 0}\n', encoding="utf-8")
    assert load_data(path).labels == [1, 0]


def test_integral_float_labels_are_ints_in_every_format(tmp_path):
    # pandas writes an int column with a gap as floats: "1.0" in CSV, 1.0 in JSONL/Parquet
    frame = pd.DataFrame({"text": ["x", "y", "z"], "label": [1.0, 0.0, 1.0]})
    for suffix in (".csv", ".jsonl", ".parquet"):
        ds = load_data(write(tmp_path / f"f{suffix}", frame))
        assert ds.labels == [1, 0, 1], suffix
        assert all(type(label) is int for label in ds.labels), suffix


def test_non_integral_and_word_labels_stay_strings(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nx,0.5\ny,1.5\nz,spam\nw,ham\n", encoding="utf-8")
    ds = load_data(path)
    assert ds.labels == ["0.5", "1.5", "spam", "ham"]
    assert ds.classes == ["0.5", "1.5", "ham", "spam"]


def test_labels_mixing_numbers_and_words_are_all_text_with_a_warning(tmp_path):
    # one column, one type: 1 and "1" must be the same class for predictions and scores,
    # so a column that holds words holds text throughout (see normalize_labels)
    from unfreeze.data import DataWarning

    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"text": "a", "label": "b"}\n{"text": "b", "label": 3}\n'
        '{"text": "c", "label": "a"}\n{"text": "d", "label": 1}\n',
        encoding="utf-8",
    )
    with pytest.warns(DataWarning, match="mix numbers and words") as record:
        ds = load_data(path)
    assert ds.labels == ["b", "3", "a", "1"]
    assert ds.classes == ["1", "3", "a", "b"]
    assert len(record) == 1 and "\n" not in str(record[0].message)


# -- saved Hugging Face datasets --------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_datasets(tmp_path_factory):
    datasets = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("hf")
    single = root / "single"
    datasets.Dataset.from_dict({"text": TEXTS, "label": LABELS}).save_to_disk(str(single))
    split_dict = root / "splits"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"sentence": TEXTS, "stars": ["good", "bad"] * 3}),
            "test": datasets.Dataset.from_dict({"sentence": ["ok then", "awful"], "stars": ["good", "bad"]}),
        }
    ).save_to_disk(str(split_dict))
    one_split = root / "one_split"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": TEXTS, "label": LABELS})}).save_to_disk(
        str(one_split)
    )
    return {"single": single, "splits": split_dict, "one_split": one_split}


def test_saved_dataset_folder(saved_datasets):
    ds = load_data(saved_datasets["single"])
    assert ds.texts == TEXTS
    assert ds.labels == LABELS


def test_saved_dataset_dict_with_split_syntax(saved_datasets):
    folder = saved_datasets["splits"]
    train = load_data(f"{folder}:train", text_col="sentence", label_col="stars")
    test = load_data(f"{folder}:test", text_col="sentence", label_col="stars")
    assert train.texts == TEXTS
    assert train.labels == ["good", "bad"] * 3
    assert test.texts == ["ok then", "awful"]
    assert test.labels == ["good", "bad"]


def test_saved_dataset_dict_with_one_split_needs_no_split(saved_datasets):
    assert load_data(saved_datasets["one_split"]).texts == TEXTS


def test_saved_dataset_dict_without_split_lists_splits(saved_datasets):
    folder = saved_datasets["splits"]
    with raises_user_error("train", "test", ":SPLIT"):
        load_data(folder, text_col="sentence", label_col="stars")


def test_saved_dataset_dict_unknown_split_lists_splits(saved_datasets):
    folder = saved_datasets["splits"]
    with raises_user_error("'validation'", "train", "test"):
        load_data(f"{folder}:validation", text_col="sentence", label_col="stars")


def test_single_saved_dataset_refuses_a_split(saved_datasets):
    with raises_user_error("one dataset", ":train"):
        load_data(f"{saved_datasets['single']}:train")


def test_saved_dataset_missing_column_lists_columns(saved_datasets):
    with raises_user_error("'text'", "sentence", "stars", "--text-col"):
        load_data(f"{saved_datasets['splits']}:train")


def test_plain_folder_is_not_a_dataset(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    with raises_user_error(str(folder), "save_to_disk"):
        load_data(folder)


# -- errors: what, where, how to fix ----------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with raises_user_error("not found", str(path), "unfreeze datasets"):
        load_data(path)


def test_missing_folder_with_split_syntax(tmp_path):
    with raises_user_error("not found", "nowhere"):
        load_data(f"{tmp_path / 'nowhere'}:train")


@pytest.mark.parametrize("name", ["data.xlsx", "data.txt", "data"])
def test_unknown_format_names_the_supported_ones(tmp_path, name):
    path = tmp_path / name
    path.write_text("text,label\nx,1\ny,0\n")
    with raises_user_error("Unknown format", str(path), ".csv", ".tsv", ".jsonl", ".parquet", "save_to_disk"):
        load_data(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize(
    ("kwargs", "missing", "option"),
    [
        ({"text_col": "review"}, "'review'", "--text-col"),
        ({"label_col": "sentiment"}, "'sentiment'", "--label-col"),
        ({"text_pair_col": "hypothesis"}, "'hypothesis'", "--text-pair-col"),
    ],
)
def test_missing_column_lists_existing_columns(tmp_path, suffix, kwargs, missing, option):
    path = write(tmp_path / f"d{suffix}", _frame(extra_col=["z"] * 6))
    with raises_user_error(missing, str(path), "Columns: text, label, extra_col", option):
        load_data(path, **kwargs)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_empty_texts_report_row_numbers(tmp_path, suffix):
    frame = pd.DataFrame({"text": ["ok", "", "fine", "   ", "good"], "label": [1, 0, 1, 0, 1]})
    path = write(tmp_path / f"d{suffix}", frame)
    with raises_user_error("2 empty text", "row 2", "row 4", str(path)) as info:
        load_data(path)
    assert "row 1," not in str(info.value) and "row 3" not in str(info.value)


def test_missing_text_in_jsonl_and_parquet(tmp_path):
    frame = pd.DataFrame({"text": ["ok", None, "fine"], "label": [1, 0, 1]})
    for suffix in (".jsonl", ".parquet"):
        with raises_user_error("empty text", "row 2"):
            load_data(write(tmp_path / f"d{suffix}", frame))


def test_empty_text_pair_reports_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,other,label\na,b,1\nc,,0\n", encoding="utf-8")
    with raises_user_error("empty text pair", "row 2"):
        load_data(path, text_pair_col="other")


def test_many_empty_texts_are_abbreviated(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f",{i % 2}\n" for i in range(12)), encoding="utf-8")
    with raises_user_error("12 empty text", "row 1, row 2, row 3, row 4, row 5, ...") as info:
        load_data(path)
    assert "row 6" not in str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_missing_labels_report_row_numbers(tmp_path, suffix):
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [1, None, 0, None]})
    path = write(tmp_path / f"d{suffix}", frame)
    with raises_user_error("2 row(s) with no label", "row 2", "row 4", str(path)):
        load_data(path)


def test_jsonl_row_without_label_key(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n{"text": "c", "label": 0}\n', encoding="utf-8")
    with raises_user_error("no label", "row 2"):
        load_data(path)


@pytest.mark.parametrize("label", ["1", "spam"])
def test_single_class(tmp_path, label):
    path = tmp_path / "d.csv"
    path.write_text(f"text,label\na,{label}\nb,{label}\nc,{label}\n", encoding="utf-8")
    with raises_user_error("single class", "--label-col", str(path)):
        load_data(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_non_utf8_reports_byte_and_line(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    if suffix == ".jsonl":
        body = '{"text": "fine", "label": 1}\n{"text": "ok", "label": 0}\n{"text": "caf\xe9", "label": 1}\n'
    else:
        sep = "\t" if suffix == ".tsv" else ","
        body = f"text{sep}label\nfine{sep}1\ncaf\xe9{sep}1\nok{sep}0\n"
    path.write_bytes(body.encode("latin-1"))
    line = 3
    with raises_user_error("not UTF-8", "0xe9", f"line {line}", str(path), "iconv"):
        load_data(path)


def test_non_utf8_on_first_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"t\xffxt,label\na,1\nb,0\n")
    with raises_user_error("0xff", "line 1"):
        load_data(path)


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c", label: 1}\n', 3),
        ('{"text": "a", "label": 1}\n\n\n{"text": "b", "label": 0\n', 4),
        ('{"text": "a", "label": 1}\n{"text": "b", "label": 0}{"text": "c", "label": 1}\n', 2),
        ("text,label\na,1\n", 1),
    ],
)
def test_malformed_jsonl_reports_the_file_line(tmp_path, body, line):
    path = tmp_path / "bad.jsonl"
    path.write_text(body, encoding="utf-8")
    with raises_user_error("not valid JSON", f"line {line}:", str(path)) as info:
        load_data(path)
    # the line number counts the file's lines, blank lines included
    assert f"line {line}:" in str(info.value)


@pytest.mark.parametrize("row", ["[1, 2]", '"just text"', "3"])
def test_jsonl_lines_must_be_objects(tmp_path, row):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n' + row + "\n", encoding="utf-8")
    with raises_user_error("object", "line 2", str(path)):
        load_data(path)


def test_ragged_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,1\nb,0,extra\n", encoding="utf-8")
    with raises_user_error("not a well-formed CSV", str(path)):
        load_data(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_empty_csv_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_text("")
    with raises_user_error("is empty", str(path)):
        load_data(path)


def test_header_only_csv_has_no_rows(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\n")
    with raises_user_error("no rows", str(path)):
        load_data(path)


def test_empty_jsonl_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n\n")
    with raises_user_error("'text'", "(none)"):
        load_data(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet at all")
    with raises_user_error("not a readable Parquet file", str(path)):
        load_data(path)


# -- unlabelled inputs for prediction ---------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_read_inputs_needs_no_labels(tmp_path, suffix):
    frame = pd.DataFrame({"id": [10, 11, 12], "text": ["x", "y", "z"]})
    path = write(tmp_path / f"in{suffix}", frame)
    table, items = read_inputs(path)
    assert items == ["x", "y", "z"]
    assert list(table.columns) == ["id", "text"]
    assert len(table) == 3
    assert [str(v) for v in table["id"]] == ["10", "11", "12"]


def test_read_inputs_with_custom_and_pair_columns(tmp_path):
    path = write(tmp_path / "in.jsonl", pd.DataFrame({"q": ["a", "b"], "doc": ["c", "d"], "label": [1, 0]}))
    table, items = read_inputs(path, text_col="q", text_pair_col="doc")
    assert items == [("a", "c"), ("b", "d")]
    assert "label" in table.columns  # the whole table comes back, extra columns included


def test_read_inputs_errors(tmp_path):
    with raises_user_error("not found", "missing.csv"):
        read_inputs(tmp_path / "missing.csv")
    path = write(tmp_path / "in.csv", pd.DataFrame({"sentence": ["a", "b"]}))
    with raises_user_error("'text'", "Columns: sentence", "--text-col"):
        read_inputs(path)
    with raises_user_error("'doc'", "--text-pair-col"):
        read_inputs(path, text_col="sentence", text_pair_col="doc")
    empty = tmp_path / "empty_text.csv"
    empty.write_text('text\nfine\n""\nok\n', encoding="utf-8")
    with raises_user_error("empty text", "row 2"):
        read_inputs(empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text\ncaf\xe9\n".encode("latin-1"))
    with raises_user_error("not UTF-8", "line 2"):
        read_inputs(latin)
    backup = tmp_path / "in.csv.bak"
    backup.write_text("text\nx\n")
    with raises_user_error("Unknown format", ".bak"):
        read_inputs(backup)
