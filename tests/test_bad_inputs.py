"""Bad inputs of the data-and-files kind: each gets one line that says what, where and how to
fix it (exit code 2 at the command line, no traceback), and nothing of the user's changes
(checksums of every file present before and after).

Three layers: the library (``load_data``, ``read_inputs``, ``build_dataset``, the results
store, model references), the command line in-process (``unfreeze fit DATA -o OUT``), and a
few real processes (``python -m unfreeze``).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import snapshot
from unfreeze.data import DataWarning, load_data
from unfreeze.data.dataset import build_dataset
from unfreeze.data.readers import read_inputs
from unfreeze.errors import UnfreezeError

GOOD_ROWS = [(f"text number {i} is {'good' if i % 2 else 'bad'}", i % 2) for i in range(20)]


def csv_text(rows=GOOD_ROWS, sep=",", header=("text", "label")) -> str:
    """A delimited file as a CSV writer makes it: fields holding the delimiter are quoted."""
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def jsonl_text(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def one_line(message: str, *words: str) -> str:
    assert message and "\n" not in message, repr(message)
    assert "Traceback" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


# -- library: files that read as nonsense -------------------------------------------------------
# (file name, content: bytes or a function of tmp_path, load_data options, words of the message)


def _utf16() -> bytes:
    return csv_text().encode("utf-16")


def _gzip_csv() -> bytes:
    return gzip.compress(csv_text().encode())


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def _parquet_bytes() -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"text": ["a", "b"], "label": [1, 0]}).to_parquet(buffer)
    return buffer.getvalue()


def _duplicate_parquet() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(
        pa.table([pa.array(["a", "b"]), pa.array([1, 0]), pa.array([0, 1])], names=["text", "label", "label"]), buffer
    )
    return buffer.getvalue()


def _list_text_parquet() -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"text": [["tok", "ens"], ["more"]], "label": [1, 0]}).to_parquet(buffer)
    return buffer.getvalue()


SWAPPED = [
    (label, f"this is a rather long review sentence, number {i}, about a film")
    for i, label in enumerate(["pos", "neg"] * 10)
]

BAD_FILES = {
    "semicolon-csv": (
        "data.csv",
        csv_text(sep=";"),
        {},
        ["semicolon-delimited", "';'", "not comma-delimited", "'text;label'", "comma delimited"],
    ),
    "tab-in-csv": ("data.csv", csv_text(sep="\t"), {}, ["tab-delimited", "Rename it to data.tsv"]),
    "comma-in-tsv": ("data.tsv", csv_text(), {}, ["comma-delimited", "not tab-delimited", "Rename it to data.csv"]),
    "pipe-csv": ("data.csv", csv_text(sep="|"), {}, ["pipe-delimited", "'|'"]),
    "excel-sep-line": ("data.csv", "sep=;\n" + csv_text(sep=";"), {}, ["semicolon-delimited", "sep=;"]),
    "gzip-as-csv": ("data.csv", _gzip_csv, {}, ["not text", "gzip-compressed", "zcat"]),
    "gzip-as-jsonl": (
        "data.jsonl",
        lambda: gzip.compress(jsonl_text([{"text": "a", "label": 1}]).encode()),
        {},
        ["not text", "gzip-compressed"],
    ),
    "xlsx-as-csv": ("data.csv", _xlsx, {}, ["not text", "zip archive", "Excel", "CSV UTF-8"]),
    "parquet-as-csv": ("data.csv", _parquet_bytes, {}, ["not text", "a Parquet file", "Rename it to .parquet"]),
    "utf16-csv": ("data.csv", _utf16, {}, ["UTF-16 text, not UTF-8", "iconv -f utf-16"]),
    "nul-bytes-jsonl": (
        "data.jsonl",
        b'{"text": "a", "label": 1}\n\x00\x01\x02binary\n',
        {},
        ["not text", "NUL byte", "line 2"],
    ),
    "latin1-garbage-tsv": ("data.tsv", b"text\tlabel\nabc\t1\n\xff\xfe\xfd\t0\n", {}, ["not UTF-8", "0xff", "line 3"]),
    "text-as-parquet": ("data.parquet", csv_text(), {}, ["not a readable Parquet file", "holds text", "Rename it"]),
    "gzip-as-parquet": ("data.parquet", _gzip_csv, {}, ["not text", "gzip"]),
    "duplicate-label-column": (
        "data.csv",
        csv_text(rows=[(t, f"{y},{1 - y}") for t, y in GOOD_ROWS], header=("text", "label", "label")),
        {},
        ["2 columns named 'label'", "columns 2, 3", "--label-col", "Rename"],
    ),
    "duplicate-text-column-tsv": (
        "data.tsv",
        "text\ttext\tlabel\na\tb\t1\nc\td\t0\n",
        {},
        ["2 columns named 'text'", "--text-col"],
    ),
    "duplicate-parquet-columns": ("data.parquet", _duplicate_parquet, {}, ["2 columns named 'label'"]),
    "duplicate-jsonl-key": (
        "data.jsonl",
        '{"text": "a", "label": 1}\n{"text": "b", "label": 0, "label": 1}\n',
        {},
        ["line 2", "key 'label' appears twice"],
    ),
    "numeric-text-csv": (
        "data.csv",
        csv_text(rows=[(str(i * 1.5), i % 2) for i in range(10)]),
        {},
        ["Every text of column 'text'", "is a number", "'0.0'", "--text-col"],
    ),
    "numeric-text-jsonl": (
        "data.jsonl",
        jsonl_text([{"text": i, "label": i % 2} for i in range(6)]),
        {},
        ["is a number", "row 1", "--text-col"],
    ),
    "list-text-jsonl": (
        "data.jsonl",
        jsonl_text([{"text": "fine", "label": 1}, {"text": ["a", "b"], "label": 0}]),
        {},
        ["Row 2", "holds a list", "not a text", "--text-col"],
    ),
    "object-text-jsonl": (
        "data.jsonl",
        jsonl_text([{"text": {"title": "x"}, "label": 1}, {"text": "y", "label": 0}]),
        {},
        ["Row 1", "holds an object"],
    ),
    "list-text-parquet": ("data.parquet", _list_text_parquet, {}, ["Row 1", "holds a list"]),
    "list-label-jsonl": (
        "data.jsonl",
        jsonl_text([{"text": "a", "label": 1}, {"text": "b", "label": [0, 1]}]),
        {},
        ["Row 2", "column 'label'", "multi-label", "--label-col"],
    ),
    "swapped-columns": (
        "data.csv",
        csv_text(rows=SWAPPED),
        {},
        ["look swapped", "'label' holds 20 distinct values in 20 rows", "'pos'", "--text-col label --label-col text"],
    ),
    "swapped-custom-names": (
        "data.jsonl",
        jsonl_text([{"review": t, "stars": y} for t, y in SWAPPED]),
        {"text_col": "review", "label_col": "stars"},
        ["look swapped", "--text-col stars --label-col review"],
    ),
    "same-column-twice": (
        "data.csv",
        csv_text(),
        {"text_col": "label"},
        ["--text-col and --label-col both name", "'label'"],
    ),
    "pair-is-text": ("data.csv", csv_text(), {"text_pair_col": "text"}, ["--text-col and --text-pair-col"]),
    "unquoted-commas": (
        "data.csv",
        "text,label\n" + "".join(f"{t}, really,{y}\n" for t, y in GOOD_ROWS),
        {},
        ["not a well-formed CSV", "line 2 has 3 fields", "names 2", "unquoted ','", "Quote"],
    ),
    "trailing-delimiter": (
        "data.csv",
        "text,label\n" + "".join(f"{t},{y},\n" for t, y in GOOD_ROWS),
        {},
        ["line 2 has 3 fields", "comma at the end of each line"],
    ),
    "no-header": (
        "data.csv",
        "".join(f"{t},{y}\n" for t, y in GOOD_ROWS),
        {},
        ["Column 'text' not found", "looks like data", "add a header line"],
    ),
    "case-of-column": ("data.csv", csv_text(header=("Text", "Label")), {}, ["Did you mean 'Text'?"]),
    "space-in-header": (
        "data.csv",
        "text, label\n" + "".join(f"{t},{y}\n" for t, y in GOOD_ROWS),
        {},
        ["Column 'label' not found", "Did you mean ' label'?"],
    ),
    "deeply-nested-jsonl": (
        "data.jsonl",
        '{"text": "a", "label": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n",
        {},
        ["line 2"],
    ),
    "blank-lines-only": ("data.csv", "\n\n  \n", {}, ["is empty"]),
    "bom-only": ("data.csv", b"\xef\xbb\xbf", {}, ["is empty"]),
    "inside-a-file": (
        "data.csv",
        csv_text(),
        {"_path": "data.csv/train.csv"},
        ["File not found", "data.csv is a file, not a folder"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_in_one_line(tmp_path, case):
    name, content, options, words = BAD_FILES[case]
    content = content() if callable(content) else content
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    options = dict(options)
    target = tmp_path / options.pop("_path", name)
    before = snapshot(tmp_path)
    with pytest.raises(UnfreezeError) as info:
        load_data(target, **options)
    one_line(str(info.value), *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "case",
    ["semicolon-csv", "gzip-as-csv", "numeric-text-csv", "list-text-jsonl", "utf16-csv", "duplicate-text-column-tsv"],
)
def test_bad_prediction_inputs_are_refused_too(tmp_path, case):
    name, content, _, words = BAD_FILES[case]
    content = content() if callable(content) else content
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UnfreezeError) as info:
        read_inputs(path)
    message = one_line(str(info.value))
    assert any(word in message for word in words[:2]), message


def test_a_missing_column_is_found_without_importing_pandas(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(csv_text())
    code = (
        f"import sys\nfrom unfreeze.data import load_data\ntry:\n    load_data({str(path)!r}, label_col='stars')\n"
        "except Exception as exc:\n    print(exc)\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'torch', 'transformers', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Column 'stars' not found" in out
    assert out.strip().endswith("[]"), out


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("movie-snipets", ["neither a file nor a built-in dataset", "Did you mean 'movie-snippets'?"]),
        ("tweet:train", ["Did you mean 'tweets'?"]),
        ("BBC-news", ["Did you mean 'bbc-news'?"]),
        ("good.csv:train", ["good.csv is a file", "':train' picks a split", "--test"]),
        ("no-such-thing", ["File not found: no-such-thing", "unfreeze datasets"]),
    ],
)
def test_data_names_that_are_nothing_say_what_was_meant(tmp_path, monkeypatch, source, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.csv").write_text(csv_text())
    before = snapshot(tmp_path)
    with pytest.raises(UnfreezeError) as info:
        load_data(source)
    one_line(str(info.value), *words)
    assert snapshot(tmp_path) == before


# -- library: data that could be meant gets a one-line warning, and loads --------------------------


def test_an_unused_duplicate_column_warns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label,note,note\n" + "".join(f"{t},{y},a,b\n" for t, y in GOOD_ROWS))
    with pytest.warns(DataWarning, match="duplicate column names \\('note'\\)") as record:
        ds = load_data(path)
    assert len(ds) == 20 and "\n" not in str(record[0].message)


def test_one_example_per_class_warns(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text(csv_text(rows=[(f"text {i}", f"id-{i}") for i in range(12)]))
    with pytest.warns(DataWarning, match="12 classes in 12 rows \\(12 with a single example\\).*--label-col"):
        load_data(path)


def test_two_distinct_texts_warn(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(csv_text(rows=[("same text", i % 3) for i in range(10)] + [("other", 1)]))
    with pytest.warns(DataWarning, match="only 2 distinct text\\(s\\) in 11 rows.*--text-col"):
        load_data(path)


def test_labels_differing_only_in_case_or_spaces_warn(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(csv_text(rows=[("a", "Positive"), ("b", "positive"), ("c", "negative"), ("d", "negative")]))
    with pytest.warns(DataWarning, match="differ only in case or spaces \\('Positive', 'positive'\\)"):
        ds = load_data(path)
    assert ds.classes == ["Positive", "negative", "positive"]  # kept as given: they could be meant


def test_data_warnings_print_on_one_line_in_a_process(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(jsonl_text(MIXED))
    code = (
        "from unfreeze.data import load_data, print_data_warnings_on_one_line\n"
        f"print_data_warnings_on_one_line()\nload_data({str(path)!r})\nload_data({str(path)!r})"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr  # one line, shown once
    assert lines[0].startswith("warning: the labels of column 'label'") and "mix numbers and words" in lines[0]


def test_ordinary_data_gives_no_warning(tmp_path, recwarn):
    path = tmp_path / "d.csv"
    path.write_text(csv_text())
    load_data(path)
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]


# -- labels mixing numbers and words: one type per column, in the user's values --------------------


MIXED = [{"text": f"great film number {i}", "label": 1} for i in range(6)] + [
    {"text": f"awful film number {i}", "label": "neg"} for i in range(6)
]


def test_mixed_jsonl_labels_are_text_and_match_a_csv_with_the_same_labels(tmp_path):
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text(jsonl_text(MIXED))
    csv = tmp_path / "mixed.csv"
    csv.write_text(csv_text(rows=[(r["text"], r["label"]) for r in MIXED]))
    with pytest.warns(DataWarning, match=r"mix numbers and words \(row 1: 1, row 7: 'neg'\).*'1'"):
        from_jsonl = load_data(jsonl)
    with pytest.warns(DataWarning):
        from_csv = load_data(csv)
    assert from_jsonl.labels == ["1"] * 6 + ["neg"] * 6
    assert from_jsonl.classes == ["1", "neg"]
    assert from_jsonl.fingerprint() == from_csv.fingerprint()


def test_all_number_labels_stay_ints_and_all_word_labels_stay_words(tmp_path):
    ints = build_dataset(["a", "b", "c"], [1, "0", 1.0])
    assert ints.labels == [1, 0, 1] and all(type(v) is int for v in ints.labels)
    words = build_dataset(["a", "b"], ["neg", " pos "])
    assert words.labels == ["neg", "pos"]


def test_mixed_labels_round_trip_through_the_classifier(tmp_path, tiny_model_dir):
    from unfreeze import Classifier

    path = tmp_path / "mixed.jsonl"
    path.write_text(jsonl_text(MIXED))
    with pytest.warns(DataWarning):
        ds = load_data(path)
    clf = Classifier(model=tiny_model_dir("bert"), C=1.0, cache=False, device="cpu").fit(ds.inputs, ds.labels)
    predicted = clf.predict(ds.inputs).tolist()
    assert set(predicted) <= set(ds.classes)  # '1' and 'neg': the dataset's own values
    assert all(type(p) is str for p in predicted)
    expected = sum(p == y for p, y in zip(predicted, ds.labels)) / len(ds)
    assert clf.evaluate(ds.inputs, ds.labels)["accuracy"] == pytest.approx(expected)
    assert expected > 0  # every prediction is comparable to a label: none counts wrong by type alone


# -- library: sizes and splits name the options --------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n_total": 0}, ["training-set size", "--n-train", "Got 0."]),
        ({"n_total": -5}, ["--n-train", "Got -5."]),
        ({"n_total": True}, ["--n-train", "Got True."]),
        ({"n_per_class": 0}, ["--n-per-class", "Got 0."]),
    ],
)
def test_sample_sizes_name_the_options(kwargs, words):
    from unfreeze.data import sample

    ds = build_dataset([t for t, _ in GOOD_ROWS], [y for _, y in GOOD_ROWS])
    with pytest.raises(UnfreezeError) as info:
        sample(ds, **kwargs)
    message = one_line(str(info.value), *words)
    assert "parameter of sample" not in message


@pytest.mark.parametrize("size", [0, 1, 1.5, -0.2, True])
def test_test_size_names_the_option(size):
    from unfreeze.data import train_test_split

    ds = build_dataset([t for t, _ in GOOD_ROWS], [y for _, y in GOOD_ROWS])
    with pytest.raises(UnfreezeError) as info:
        train_test_split(ds, size)
    one_line(str(info.value), "--test-size", "(0, 1)", f"Got {size!r}.")


# -- the results store ---------------------------------------------------------------------------


GOOD_RECORD = {
    "key": "k1",
    "status": "done",
    "cell": {"strategy": "features", "label": "features", "n_train": 8, "seed": 0},
    "test": {"accuracy": 0.5},
}
DAMAGED_LINES = [
    b"{}",
    b"null",
    b"[]",
    b"[1, 2]",
    b"3",
    b'"text"',
    b"\xff\xfe garbage \x00\x01",
    b"{not json",
    b'{"key": 5, "status": "done"}',
    b'{"key": "", "status": "done"}',
    b'{"key": "k9"}',
    b'{"key": "k9", "status": "done", "cell": "oops"}',
    b'{"key": "k9", "status": "done", "cell": {}}',
    b'{"key": "k9", "status": "done", "test": [0.5]}',
    b"[" * 50_000 + b"]" * 50_000,
]


def test_the_store_skips_and_counts_damaged_lines(tmp_path):
    from unfreeze.sweep.store import ResultsStore

    store = ResultsStore(tmp_path)
    good = (json.dumps(GOOD_RECORD) + "\n").encode()
    second = (json.dumps({**GOOD_RECORD, "key": "k2"}) + "\n").encode()
    store.path.write_bytes(good + b"\n".join(DAMAGED_LINES) + b"\n\n" + second + b'{"key": "partial')
    before = snapshot(tmp_path)
    assert [r["key"] for r in store.records()] == ["k1", "k2"]
    assert store.skipped == len(DAMAGED_LINES)
    assert store.skipped_lines[0] == 2 and store.skipped_lines[-1] == len(DAMAGED_LINES) + 1
    note = one_line(
        store.skipped_note(), f"skipped {len(DAMAGED_LINES)} unreadable lines", "results.jsonl", "first: line 2"
    )
    assert "run again" in note
    assert set(store.latest()) == {"k1", "k2"}
    assert snapshot(tmp_path) == before  # reading repairs nothing and removes nothing
    store.append({**GOOD_RECORD, "key": "k3"})  # resume appends after cutting the partial tail only
    assert [r["key"] for r in store.records()] == ["k1", "k2", "k3"]
    assert store.skipped == len(DAMAGED_LINES)


def test_a_record_without_a_cell_is_skipped_where_a_cell_is_needed(tmp_path):
    from unfreeze.sweep.store import ResultsStore

    store = ResultsStore(tmp_path)
    store.append(GOOD_RECORD)
    store.append({"key": "bare", "status": "done"})
    assert set(store.latest()) == {"k1", "bare"}  # resume needs only key and status
    assert set(store.latest(require_cell=True)) == {"k1"} and store.skipped == 1
    assert store.skipped_note().startswith("skipped 1 unreadable line in ")


def test_a_clean_store_skips_nothing(tmp_path):
    from unfreeze.sweep.store import ResultsStore

    store = ResultsStore(tmp_path)
    store.append(GOOD_RECORD)
    store.records()
    assert store.skipped == 0 and store.skipped_note() is None


def test_report_survives_damaged_lines(tmp_path):
    from unfreeze.report.tables import results_frame
    from unfreeze.sweep.store import ResultsStore

    store = ResultsStore(tmp_path)
    store.append(GOOD_RECORD)
    with open(store.path, "ab") as handle:
        handle.write(b"\n".join(DAMAGED_LINES) + b'\n{"key": "bare", "status": "done"}\n')
    frame = results_frame(tmp_path)
    assert frame["key"].tolist() == ["k1"]


# -- model references ------------------------------------------------------------------------------


@pytest.fixture
def online_check(monkeypatch):
    """Count the network checks; ``online_check.up`` says what they find."""
    from unfreeze.models import catalog

    class Check:
        up = False
        calls = 0

    def reachable(host, port, timeout=1.5):
        Check.calls += 1
        return Check.up

    monkeypatch.setattr(catalog, "hub_reachable", reachable)
    return Check


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_an_unknown_hub_id_offline_answers_at_once(monkeypatch, online_check, variable):
    from unfreeze.models.catalog import resolve_model

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "1")
    start = time.perf_counter()
    with pytest.raises(UnfreezeError) as info:
        resolve_model("nobody/no-such-model")
    assert time.perf_counter() - start < 1.0
    one_line(
        str(info.value),
        "'nobody/no-such-model'",
        f"{variable} is set",
        "`unfreeze models`",
        "minilm-l6",
        "local model folder",
        "go online",
    )
    assert online_check.calls == 0  # the variable decides; no network is tried


def test_an_unknown_hub_id_without_network_answers_at_once(monkeypatch, online_check):
    from unfreeze.models.catalog import resolve_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(UnfreezeError) as info:
        resolve_model("nobody/no-such-model")
    one_line(str(info.value), "no connection to huggingface.co:443", "go online")
    assert online_check.calls == 1


def test_online_hub_ids_still_go_to_the_hub(monkeypatch, online_check):
    from unfreeze.models.catalog import resolve_model_source

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    online_check.up = True
    source = resolve_model_source("sentence-transformers/all-MiniLM-L6-v2")
    assert source.location == "sentence-transformers/all-MiniLM-L6-v2" and not source.local_files_only


def test_a_cached_hub_id_loads_offline_from_the_cache(monkeypatch, online_check, tmp_path):
    import huggingface_hub.constants

    from unfreeze.models.catalog import resolve_model_source

    snapshot_dir = tmp_path / "hub" / "models--someone--cached-model" / "snapshots" / "abc123"
    snapshot_dir.mkdir(parents=True)
    (snapshot_dir / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--someone--cached-model" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--cached-model" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    source = resolve_model_source("someone/cached-model")
    assert source.local_files_only and source.location == "someone/cached-model"


@pytest.mark.parametrize(
    ("reference", "words"),
    [
        ("banana model!", ["not a valid hub id", "`unfreeze models`"]),
        ("org/name/extra", ["No model folder at org/name/extra"]),
        ("./models/mine", ["No model folder at ./models/mine", "save_pretrained"]),
        ("~/no/such/model", ["No model folder"]),
        ("bad--name", ["not a valid hub id"]),
    ],
)
def test_references_that_can_never_load_answer_without_the_network(online_check, reference, words):
    from unfreeze.models.catalog import resolve_model

    with pytest.raises(UnfreezeError) as info:
        resolve_model(reference)
    one_line(str(info.value), *words)
    assert online_check.calls == 0


def test_a_data_file_as_model(tmp_path):
    from unfreeze.models.catalog import resolve_model

    path = tmp_path / "data.csv"
    path.write_text(csv_text())
    with pytest.raises(UnfreezeError) as info:
        resolve_model(str(path))
    one_line(str(info.value), "not a Hugging Face model folder", "config.json")


# -- the command line: unfreeze fit DATA -o OUT ----------------------------------------------------


def assert_cli_error(result, *words: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit) or result.exception is None
    return one_line(lines[0], *words)


def write_case(tmp_path: Path, case: str) -> Path:
    name, content, _, _ = BAD_FILES[case]
    content = content() if callable(content) else content
    path = tmp_path / "user" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.fixture
def user_dir(tmp_path) -> Path:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "good.csv").write_text(csv_text())
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.txt").write_text("do not delete")
    (folder / "f.txt").write_text("my file")
    return folder


CLI_DATA_CASES = [
    "semicolon-csv",
    "tab-in-csv",
    "gzip-as-csv",
    "xlsx-as-csv",
    "utf16-csv",
    "duplicate-label-column",
    "numeric-text-csv",
    "list-label-jsonl",
    "swapped-columns",
    "no-header",
    "nul-bytes-jsonl",
]


@pytest.mark.parametrize("case", CLI_DATA_CASES)
def test_fit_refuses_bad_data_in_one_line(runner, tmp_path, user_dir, case):
    from unfreeze.cli import app

    data = write_case(tmp_path, case)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["fit", str(data), "-o", str(user_dir / "bundle")])
    assert_cli_error(result, *BAD_FILES[case][3][:2])
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", ["gzip-as-csv", "tab-in-csv", "utf16-csv"])
def test_fit_refuses_a_bad_test_file(runner, tmp_path, user_dir, case):
    from unfreeze.cli import app

    test_file = write_case(tmp_path, case)
    before = snapshot(tmp_path)
    result = runner.invoke(
        app, ["fit", str(user_dir / "good.csv"), "--test", str(test_file), "-o", str(user_dir / "bundle")]
    )
    assert_cli_error(result, str(test_file))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--text-col", "label"], ["--text-col and --label-col both name"]),
        (["--label-col", "Label"], ["'Label' not found", "Did you mean 'label'?"]),
        (["--n-train", "0"], ["training-set size", "--n-train", "Got 0."]),
        (["--n-train", "-3"], ["--n-train", "Got -3."]),
        (["--test-size", "1.5"], ["--test-size", "Got 1.5."]),
        (["--test-size", "-0.5"], ["--test-size", "Got -0.5."]),
        (["--model", "nobody/no-such-model"], ["Could not load model", "go online"]),
        (["--model", "./no/such/folder"], ["No model folder"]),
        (["--device", "gpu"], ["Unknown device 'gpu'", "Devices here: cpu"]),
        (["--device", "banana"], ["Unknown device 'banana'", "Devices here:"]),
        (["--device", "cuda:7"], ["'cuda:7'", "Devices here:"]),
    ],
)
def test_fit_refuses_bad_options_in_one_line(runner, tmp_path, user_dir, args, words):
    from unfreeze.cli import app

    before = snapshot(tmp_path)
    result = runner.invoke(app, ["fit", str(user_dir / "good.csv"), *args, "-o", str(user_dir / "bundle")])
    assert_cli_error(result, *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ("notes", ["did not write", "left as it is"]),
        ("f.txt", ["is a file", "left as it is"]),
        ("f.txt/bundle", ["f.txt is a file, not a folder"]),
    ],
)
def test_fit_never_replaces_what_it_did_not_write(runner, tmp_path, user_dir, tiny_model_dir, output, words):
    # the command line does not call check_output yet: atomic_path refuses at the save
    from unfreeze.cli import app

    before = snapshot(tmp_path)
    result = runner.invoke(
        app,
        [
            "fit",
            str(user_dir / "good.csv"),
            "--model",
            tiny_model_dir("bert"),
            "--C",
            "1",
            "--no-cache",
            "--device",
            "cpu",
            "-o",
            str(user_dir / output),
        ],
    )
    assert_cli_error(result, *words)
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_fit_on_cuda_without_cuda_names_the_devices_here(runner, tmp_path, user_dir):
    from unfreeze.cli import app

    before = snapshot(tmp_path)
    result = runner.invoke(app, ["fit", str(user_dir / "good.csv"), "--device", "cuda", "-o", str(user_dir / "b")])
    message = assert_cli_error(result, "'cuda' is not available", "Devices here: cpu.")
    assert ("CPU-only build" in message) == (__import__("torch").version.cuda is None)
    assert snapshot(tmp_path) == before


def test_fit_refuses_the_current_folder(runner, tmp_path, user_dir, tiny_model_dir, monkeypatch):
    from unfreeze.cli import app

    monkeypatch.chdir(user_dir / "notes")
    before = snapshot(tmp_path)
    result = runner.invoke(
        app,
        [
            "fit",
            str(user_dir / "good.csv"),
            "--model",
            tiny_model_dir("bert"),
            "--C",
            "1",
            "--no-cache",
            "--device",
            "cpu",
            "-o",
            ".",
        ],
    )
    assert_cli_error(result, "current folder")
    assert snapshot(tmp_path) == before


# -- real processes: what a user's shell sees -------------------------------------------------------


@pytest.mark.parametrize("case", ["semicolon-csv", "gzip-as-csv"])
def test_real_process_prints_one_line_and_exits_2(tmp_path, case):
    data = write_case(tmp_path, case)
    before = snapshot(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "UNFREEZE_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "unfreeze", "fit", str(data), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    one_line(lines[0], *BAD_FILES[case][3][:2])
    assert snapshot(tmp_path) == before
