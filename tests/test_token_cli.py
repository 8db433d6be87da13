"""The tokens task on the command line: `fit` reads a CoNLL file or JSON lines of words and tags, `evaluate` scores
a tagger, `predict` tags a CoNLL file (CoNLL back), a table of word lists (a tags column) or raw texts (entity
spans with character offsets); what cannot be read is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import assert_user_error
from test_token_training import tagged  # filler sentences with one name: B-PER, I-PER, O
from unfreeze.cli import app
from unfreeze.inference.entities import entity_spans, split_words

# a tiny BERT fully trained on 24 sentences tags them all (entity F1 1.0 in test_token_training.py)
FIT = ["--strategy", "full", "--epochs", "15", "--validation-fraction", "0", "--batch-size", "8"]
RATES = ["--learning-rate", "3e-3", "--head-learning-rate", "3e-2", "--device", "cpu", "--no-cache"]


def write_conll(path: Path, sentences, tags, pos: bool = False) -> Path:
    blocks = ["\n".join(f"{w} NN {t}" if pos else f"{w}\t{t}" for w, t in zip(s, r)) for s, r in zip(sentences, tags)]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fitted(tiny_model_dir, tmp_path_factory):
    """A tagger fitted by `unfreeze fit` on a CoNLL file (token, part of speech, tag), tested on JSON lines."""
    root = tmp_path_factory.mktemp("token-cli")
    sentences, tags = tagged(24, seed=0)
    train = write_conll(root / "train.conll", sentences, tags, pos=True)
    test = write_jsonl(root / "test.jsonl", [{"words": s, "ner": t} for s, t in zip(*tagged(6, seed=1))])
    bundle = root / "ner"
    args = ["fit", str(train), "--task", "tokens", "-m", tiny_model_dir("bert"), "-o", str(bundle), *FIT, *RATES]
    result = CliRunner().invoke(app, [*args, "--test", str(test), "--tokens-col", "words", "--tags-col", "ner"])
    assert result.exit_code == 0, result.output
    return bundle, result.output, test


def test_fit_reads_a_conll_file_and_prints_the_entity_scores(fitted):
    bundle, output, _ = fitted
    assert "on 24 examples of" in output
    assert "entity_f1" in output and "accuracy " not in output
    config = json.loads((bundle / "unfreeze.json").read_text())
    assert config["task"] == {"name": "tokens", "scheme": "IOB2"}
    assert config["labels"] == ["B-PER", "I-PER", "O"]


def test_evaluate_scores_a_tagger_on_json_lines(fitted, runner):
    bundle, _, test = fitted
    result = runner.invoke(app, ["evaluate", str(bundle), str(test), "--tokens-col", "words", "--tags-col", "ner"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["evaluate", str(bundle), str(test), "--tokens-col", "words", "--tags-col", "ner", "--json"]
    )
    metrics = json.loads(result.output)
    assert set(metrics) == {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"}
    assert metrics["entity_f1"] == 1.0
    # a tag no training sentence held: the tagger has no output for it
    unseen = write_jsonl(test.parent / "unseen.jsonl", [{"tokens": ["in", "paris"], "tags": ["O", "B-LOC"]}])
    assert_user_error(runner.invoke(app, ["evaluate", str(bundle), str(unseen)]), "label(s) 'B-LOC'", "no training")


def test_predict_gives_entity_spans_with_character_offsets_of_raw_texts(fitted, runner, tmp_path):
    bundle, _, _ = fitted
    texts = ["the movie and mary smith, really.", "anna smith: this film was a story"]
    source = tmp_path / "sentences.csv"
    source.write_text("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)), encoding="utf-8")
    out = tmp_path / "entities.jsonl"
    result = runner.invoke(app, ["predict", str(bundle), str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["0", "1"]  # the input table as read: CSV cells are text
    spans = [[{k: s[k] for k in ("start", "end", "type", "text")} for s in row["entities"]] for row in rows]
    assert spans == [
        [{"start": 14, "end": 24, "type": "PER", "text": "mary smith"}],
        [{"start": 0, "end": 10, "type": "PER", "text": "anna smith"}],
    ]
    for text, row in zip(texts, rows):
        for span in row["entities"]:
            assert text[span["start"] : span["end"]] == span["text"]
            assert 0.5 < span["score"] <= 1.0
    # CSV: the spans as JSON text
    out_csv = tmp_path / "entities.csv"
    assert runner.invoke(app, ["predict", str(bundle), str(source), "-o", str(out_csv)]).exit_code == 0
    import pandas as pd

    assert [json.loads(cell) for cell in pd.read_csv(out_csv)["entities"]] == [row["entities"] for row in rows]


def test_predict_tags_a_conll_file_back_as_conll_and_word_lists_as_a_tags_column(fitted, runner, tmp_path):
    bundle, _, test = fitted
    sentences, tags = tagged(3, seed=2)
    source = write_conll(tmp_path / "in.conll", sentences, tags)
    out = tmp_path / "out.conll"
    result = runner.invoke(app, ["predict", str(bundle), str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    blocks = [[line.split("\t") for line in block.splitlines()] for block in out.read_text().strip().split("\n\n")]
    assert [[w for w, _ in block] for block in blocks] == sentences
    assert [[t for _, t in block] for block in blocks] == tags
    out_jsonl = tmp_path / "tags.jsonl"
    result = runner.invoke(app, ["predict", str(bundle), str(test), "-o", str(out_jsonl), "--tokens-col", "words"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert [row["tags"] for row in rows] == [row["ner"] for row in rows]


def test_the_split_of_words_keeps_offsets_and_spans_group_as_the_first_strategy():
    text = "Dr. Anne-Marie met IBM's CEO."
    words = split_words(text)
    assert [w for w, _, _ in words] == ["Dr", ".", "Anne", "-", "Marie", "met", "IBM", "'", "s", "CEO", "."]
    assert all(text[s:e] == w for w, s, e in words)
    offsets = [(s, e) for _, s, e in words]
    tags = ["O", "O", "B-PER", "I-PER", "I-PER", "O", "B-ORG", "I-LOC", "B-ORG", "O", "O"]
    scores = [0.9, 0.9, 0.8, 0.6, 0.7, 0.9, 0.5, 0.4, 0.3, 0.9, 0.9]
    spans = entity_spans(text, offsets, tags, scores)
    assert spans == [
        {"start": 4, "end": 14, "type": "PER", "text": "Anne-Marie", "score": pytest.approx(0.7)},
        {"start": 19, "end": 22, "type": "ORG", "text": "IBM", "score": 0.5},
        {"start": 22, "end": 23, "type": "LOC", "text": "'", "score": 0.4},
        {"start": 23, "end": 24, "type": "ORG", "text": "s", "score": 0.3},
    ]
    # BIOES: E- and S- end an entity
    bioes = entity_spans("a b c", [(0, 1), (2, 3), (4, 5)], ["B-X", "E-X", "S-X"], [1.0, 1.0, 1.0])
    assert [(s["start"], s["end"]) for s in bioes] == [(0, 3), (4, 5)]


def test_bad_tagged_input_is_one_line_and_writes_nothing(fitted, tiny_model_dir, runner, tmp_path):
    bundle, _, _ = fitted
    model = ["-m", tiny_model_dir("bert"), *FIT, *RATES]
    out = tmp_path / "bundle"

    def fit(data: Path, *extra: str) -> str:
        result = runner.invoke(app, ["fit", str(data), "--task", "tokens", "-o", str(out), *model, *extra])
        assert not out.exists()
        return result

    lengths = write_jsonl(
        tmp_path / "lengths.jsonl",
        [{"tokens": ["a", "b"], "tags": ["B-PER", "O"]}] * 2 + [{"tokens": ["a", "b"], "tags": ["O"]}],
    )
    assert_user_error(fit(lengths), "row 3", "2 token(s) but 1 tag(s)")
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"tokens": ["a"], "tags": ["B-PER"]}, {"tokens": [], "tags": []}])
    assert_user_error(fit(empty), "row 2", "empty sentence")
    conll = write_conll(tmp_path / "train.conll", *tagged(4, seed=0))
    outside = write_conll(tmp_path / "outside.conll", [["a", "b"], ["c"]], [["O", "O"], ["O"]])
    assert_user_error(fit(outside), "one tag only ('O', on all 3 tokens)", "--tag-col")
    assert_user_error(fit(conll, "--tag-col", "5"), "line 1 has 2 columns: tag_col (--tag-col) 5 is out of range")
    # word lists given to a task of one label per text
    as_single = runner.invoke(app, ["fit", str(lengths), "--label-col", "tags", "--text-col", "tokens", "-o", str(out)])
    assert_user_error(as_single, "holds a list", "is read by --task tokens")
    assert_user_error(
        runner.invoke(app, ["fit", str(lengths), "--tokens-col", "words", "-o", str(out)]),
        "--tokens-col",
        "--task tokens",
    )
    # a tagger given a table with neither texts nor words
    table = tmp_path / "other.csv"
    table.write_text("id,body\n1,hello there\n", encoding="utf-8")
    predicted = tmp_path / "predicted.jsonl"
    result = runner.invoke(app, ["predict", str(bundle), str(table), "-o", str(predicted)])
    assert_user_error(result, "neither a text column", "--tokens-col")
    no_words = write_jsonl(tmp_path / "no-words.jsonl", [{"tokens": ["a"]}, {"tokens": []}])
    result = runner.invoke(app, ["predict", str(bundle), str(no_words), "-o", str(predicted)])
    assert_user_error(result, "Row 2 of column 'tokens'", "empty sentence")
    # a CoNLL file comes back as CoNLL, never as a table
    result = runner.invoke(app, ["predict", str(bundle), str(conll), "-o", str(tmp_path / "predicted.csv")])
    assert_user_error(result, "CoNLL file", "predicted.conll")
    assert not predicted.exists() and not (tmp_path / "predicted.csv").exists()


def test_the_builtin_conll2003_is_a_tokens_task_of_its_own(fitted, tiny_model_dir, runner, tmp_path):
    _, _, test = fitted
    out = tmp_path / "ner"
    args = ["fit", "conll2003", "--strategy", "freeze", "--k", "1", "--epochs", "1", "--n-train", "16"]
    tested = ["--test", str(test), "--tokens-col", "words", "--tags-col", "ner"]
    model = ["-m", tiny_model_dir("bert"), "--device", "cpu", "--no-cache"]
    result = runner.invoke(app, [*args, *model, *tested, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "on 16 examples of conll2003:train" in result.output
    config = json.loads((out / "unfreeze.json").read_text())
    # the sample's tags, of CoNLL-2003's nine
    assert set(config["labels"]) <= {"O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"}
    assert config["task"] == {"name": "tokens", "scheme": "IOB2"}
