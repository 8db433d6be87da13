"""Built-in datasets: sizes, classes, fixed stratified splits, and a self-healing cache.

The first run materialises them into the cache (movie-snippets downloads the
vadersentiment sdist with pip, a few seconds); later runs read the cached files.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from unfreeze.data import BUILTIN, TAGGED_BUILTIN, load_builtin, load_data
from unfreeze.errors import UnfreezeError
from unfreeze.storage.cache import cache_dir, sha256_file

pytestmark = pytest.mark.integration

# documented in DESIGN.md / `unfreeze datasets`
EXPECTED = {
    "movie-snippets": {"rows": 10568, "classes": {"negative": 5326, "positive": 5242}},
    "bbc-news": {
        "rows": 2225,
        "classes": {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401},
    },
    "tweets": {"rows": 37197, "classes": {"negative": 15955, "neutral": 14431, "positive": 6811}},
}
# The splits are fixed forever: results from different runs and machines compare only if
# every fresh cache gets these exact test sets. Content fingerprints of the test splits:
TEST_FINGERPRINTS = {
    "movie-snippets": "d7eed8500e2d886d1263ead19fd57f1f2ca7ca8186a52f05687e95dcbfbd22a1",
    "bbc-news": "fac511b850ace336a92ade0c8f7882ce63c6a76e0e9947ed38ef38cb189e7190",
    "tweets": "cf5568493ef608ebd4bcd1be241e7f96c3a041acc3d2107c99a7a6551b213fae",
}
NAMES = list(EXPECTED)


@pytest.fixture(scope="module")
def loaded():
    """Each dataset loaded once: (all rows, train, test)."""
    return {name: (load_builtin(name), load_builtin(name, "train"), load_builtin(name, "test")) for name in NAMES}


def _folder(name: str):
    return cache_dir("datasets") / name


def test_every_builtin_is_covered():
    assert set(BUILTIN) == set(NAMES) | set(TASK_BUILTINS)  # the other tasks' built-ins: below


@pytest.mark.parametrize("name", NAMES)
def test_sizes_and_classes(loaded, name):
    full, train, test = loaded[name]
    expected = EXPECTED[name]
    assert len(full) == expected["rows"] == BUILTIN[name].n_rows
    assert len(train) + len(test) == expected["rows"]
    assert full.class_counts() == expected["classes"]
    assert tuple(full.classes) == BUILTIN[name].classes
    assert set(train.classes) == set(test.classes) == set(expected["classes"])
    assert all(isinstance(label, str) for label in full.labels)
    assert all(text.strip() for text in full.texts)
    assert train.name == f"{name}:train" and test.name == f"{name}:test"


@pytest.mark.parametrize("name", NAMES)
def test_split_is_disjoint_complete_and_stratified(loaded, name):
    full, train, test = loaded[name]
    split = json.loads((_folder(name) / "split.json").read_text())
    test_idx = split["test_indices"]
    assert split["seed"] == 0 and split["test_fraction"] == 0.2
    assert test_idx == sorted(set(test_idx))
    assert test_idx[0] >= 0 and test_idx[-1] < len(full)
    # train and test are the complement of each other, by row (bbc-news repeats some
    # articles, so compare rows as multisets rather than texts as sets)
    rows = Counter(zip(full.texts, full.labels))
    assert Counter(zip(train.texts, train.labels)) + Counter(zip(test.texts, test.labels)) == rows
    assert test.texts == [full.texts[i] for i in test_idx]
    in_test = set(test_idx)
    assert train.texts == [full.texts[i] for i in range(len(full)) if i not in in_test]
    for cls, n_cls in full.class_counts().items():
        assert abs(test.class_counts()[cls] - 0.2 * n_cls) <= 1, cls


def test_tweets_texts_are_unique(loaded):
    full, train, test = loaded["tweets"]
    assert len(set(full.texts)) == len(full)
    assert set(train.texts).isdisjoint(test.texts)


@pytest.mark.parametrize("name", NAMES)
def test_split_is_fixed(loaded, name):
    _, train, test = loaded[name]
    assert test.fingerprint() == TEST_FINGERPRINTS[name]
    again_train, again_test = load_builtin(name, "train"), load_builtin(name, "test")
    assert again_train.texts == train.texts and again_train.labels == train.labels
    assert again_test.texts == test.texts and again_test.labels == test.labels


@pytest.mark.parametrize("name", NAMES)
def test_cached_file_matches_pinned_checksum(loaded, name):
    assert sha256_file(_folder(name) / "data.jsonl") == BUILTIN[name].sha256


def test_load_data_names_and_splits(loaded):
    full, train, test = loaded["bbc-news"]
    assert load_data("bbc-news").fingerprint() == full.fingerprint()
    assert load_data("bbc-news:all").fingerprint() == full.fingerprint()
    assert load_data("bbc-news:train").fingerprint() == train.fingerprint()
    assert load_data("bbc-news:test").fingerprint() == test.fingerprint()


@pytest.mark.parametrize("source", ["tweets:validation", "bbc-news:dev"])
def test_unknown_split(source):
    with pytest.raises(UnfreezeError, match=r"Unknown split '(validation|dev)'.*Splits: train, test"):
        load_data(source)


def test_unknown_name():
    with pytest.raises(UnfreezeError) as info:
        load_builtin("imdb")
    message = str(info.value)
    assert "'imdb'" in message and all(name in message for name in NAMES)


def _flip_first_label(path):
    lines = path.read_text(encoding="utf-8").split("\n")
    row = json.loads(lines[0])
    row["label"] = "tech" if row["label"] != "tech" else "business"
    lines[0] = json.dumps(row, ensure_ascii=False)
    path.write_text("\n".join(lines), encoding="utf-8")


DAMAGE = {
    "flipped-label": lambda folder: _flip_first_label(folder / "data.jsonl"),
    "truncated-data": lambda folder: (folder / "data.jsonl").write_bytes((folder / "data.jsonl").read_bytes()[:50_000]),
    "deleted-data": lambda folder: (folder / "data.jsonl").unlink(),
    "garbage-split": lambda folder: (folder / "split.json").write_text('{"sha256": "trunc'),
    "deleted-split": lambda folder: (folder / "split.json").unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=DAMAGE)
def test_damaged_cache_is_rematerialised(loaded, damage):
    name = "bbc-news"  # re-made from its installed package in well under a second
    full, train, test = loaded[name]
    folder = _folder(name)
    DAMAGE[damage](folder)
    again_test = load_builtin(name, "test")
    assert again_test.fingerprint() == TEST_FINGERPRINTS[name] == test.fingerprint()
    assert load_builtin(name, "train").fingerprint() == train.fingerprint()
    assert load_builtin(name).fingerprint() == full.fingerprint()
    assert sha256_file(folder / "data.jsonl") == BUILTIN[name].sha256
    # nothing half-written is left beside the files
    assert sorted(p.name for p in folder.iterdir()) == ["data.jsonl", "split.json"]


def test_damaged_movie_snippets_is_rematerialised(loaded):
    # movie-snippets re-reads the sdist kept under <cache>/downloads: no second download
    name = "movie-snippets"
    _, _, test = loaded[name]
    data = _folder(name) / "data.jsonl"
    raw = data.read_bytes()
    data.write_bytes(raw.replace(b'"positive"', b'"negative"', 1))
    assert sha256_file(data) != BUILTIN[name].sha256
    assert load_builtin(name, "test").fingerprint() == test.fingerprint() == TEST_FINGERPRINTS[name]
    assert sha256_file(data) == BUILTIN[name].sha256


# -- the built-ins of other tasks (issue 28): the source's own splits ----------------------------------

TASK_BUILTINS = {
    "sts-b": {"task": "regression", "splits": {"train": 5749, "test": 1379, "dev": 1500}},
    "conll-entities": {"task": "multilabel", "splits": {"train": 14041 + 3250, "test": 3453}},
}
TASK_FINGERPRINTS = {
    "sts-b": "851fa398ca17f029429c4b12d6ec467f134273cff2d51e7f2f65312207ec4eb5",
    "conll-entities": "217bbfbfcabbf13cf896c87f5cf0bcc79730570119faf4842d7d86405fff9f76",
}


def test_every_builtin_of_another_task_is_covered():
    assert set(BUILTIN) == set(NAMES) | set(TASK_BUILTINS)
    for name, expected in TASK_BUILTINS.items():
        assert BUILTIN[name].task == expected["task"] and BUILTIN[name].splits == expected["splits"]


@pytest.mark.parametrize("name", list(TASK_BUILTINS))
def test_task_builtins_keep_the_source_splits_and_their_task(name):
    expected = TASK_BUILTINS[name]
    full = load_builtin(name)
    assert len(full) == BUILTIN[name].n_rows == sum(expected["splits"].values())
    parts = {split: load_builtin(name, split) for split in expected["splits"]}
    assert {split: len(ds) for split, ds in parts.items()} == expected["splits"]
    for split, ds in parts.items():
        assert ds.task == expected["task"] and ds.name == f"{name}:{split}"
    # the splits are the rows of the whole, each once, in the source's order
    assert sorted(t for ds in parts.values() for t in ds.texts) == sorted(full.texts)
    assert parts["test"].fingerprint() == TASK_FINGERPRINTS[name]
    assert sha256_file(_folder(name) / "data.jsonl") == BUILTIN[name].sha256
    assert load_data(name).fingerprint() == load_data(f"{name}:all").fingerprint() == full.fingerprint()


def test_sts_b_is_sentence_pairs_with_scores_from_0_to_5():
    train, test = load_builtin("sts-b", "train"), load_builtin("sts-b", "test")
    assert train.classes == [] and train.class_counts() == {}
    assert (train.texts[0], train.text_pairs[0], train.labels[0]) == (
        "A plane is taking off.",
        "An air plane is taking off.",
        5.0,
    )
    assert (test.texts[0], test.text_pairs[0], test.labels[0]) == (
        "A girl is styling her hair.",
        "A girl is brushing her hair.",
        2.5,
    )
    assert min(train.labels) == 0.0 and max(train.labels) == 5.0
    assert all(type(v) is float for v in train.labels + test.labels)
    assert len(set(train.labels)) == 140  # fractional scores: a regression target, not classes


def test_conll_entities_is_the_set_of_entity_types_of_each_sentence():
    full, train, test = (load_builtin("conll-entities", s) for s in (None, "train", "test"))
    assert full.classes == ["LOC", "MISC", "ORG", "PER"] == list(BUILTIN["conll-entities"].classes)
    assert full.class_counts() == BUILTIN["conll-entities"].class_counts
    assert train.class_counts() == {"LOC": 6456, "MISC": 3393, "ORG": 5549, "PER": 5493}
    assert test.class_counts() == {"LOC": 1266, "MISC": 563, "ORG": 1229, "PER": 1025}
    assert Counter(len(labels) for labels in full.labels) == {
        0: 4251,
        1: 9888,
        2: 4922,
        3: 1490,
        4: 193,
    }  # 6,605 with 2+
    assert (train.texts[0], train.labels[0]) == ("EU rejects German call to boycott British lamb .", ("MISC", "ORG"))
    assert (test.texts[0], test.labels[0]) == (
        "SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT .",
        ("LOC", "PER"),
    )


@pytest.mark.parametrize(
    ("source", "task", "label_sep", "words"),
    [
        ("sts-b", "single", None, "sts-b is a regression dataset (STS Benchmark sentence pairs); --task single does"),
        ("conll-entities:test", "regression", None, "Drop --task, or give --task multilabel."),
        ("sts-b", None, "|", "only --task multilabel reads (the task here is regression)"),
        ("sts-b:valid", None, None, "Unknown split 'valid' of sts-b. Splits: train, dev, test."),
    ],
)
def test_a_task_builtin_refuses_another_task_in_one_line(source, task, label_sep, words):
    with pytest.raises(UnfreezeError) as info:
        load_data(source, task=task, label_sep=label_sep)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert load_data("sts-b:dev", task="regression").task == "regression"


def test_a_damaged_task_builtin_is_rematerialised():
    folder = _folder("sts-b")
    load_builtin("sts-b", "test")
    (folder / "split.json").unlink()
    assert load_builtin("sts-b", "test").fingerprint() == TASK_FINGERPRINTS["sts-b"]
    assert len(load_builtin("sts-b", "dev")) == 1500


def test_the_listing_says_each_task_the_source_splits_and_the_licences():
    from typer.testing import CliRunner

    from unfreeze.cli import app

    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:6]}
    assert rows["sts-b"][1:5] + rows["sts-b"][6:7] == ["8628", "5749", "1379", "-", "regression"]
    assert rows["conll-entities"][1:5] + rows["conll-entities"][6:7] == ["20744", "17291", "3453", "4", "multilabel"]
    assert rows["movie-snippets"][6] == "single"
    assert "Further splits: sts-b:dev (not used by NAME alone)." in result.stdout
    licences = result.stdout.split("Licences (of the data):\n")[1].splitlines()
    assert [line.split()[0] for line in licences] == [*BUILTIN, *TAGGED_BUILTIN]
    assert "  sts-b           scores CC BY-SA 4.0; sentences from their sources (see the package)" in licences
    assert "  conll-entities  Reuters text: research use only, not for redistribution" in licences
    assert "  movie-snippets  MIT (vaderSentiment)" in licences
    assert "  conll2003       Reuters text: research use only, not for redistribution" in licences
    # the token-tagged built-in is listed apart (a tag per token, read as --task tokens)
    assert "conll2003" not in rows
    listed = "  conll2003       20744 sentences (train 14041, dev 3250, test 3453), 9 tags, IOB2: CoNLL-2003 English"
    assert (
        listed + " named entities (PER, ORG, LOC, MISC), a tag per token; BERT's Table 7" in result.stdout.splitlines()
    )
