"""Words to sub-words for token tasks: first-sub-word labels, windows over long sentences, one prediction per word."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import minilm_path
from unfreeze.errors import UnfreezeError
from unfreeze.features.alignment import IGNORE, align_words, padded, word_predictions

X = IGNORE


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))  # the tiny models share MiniLM's tokenizer


def test_first_subword_carries_the_label(tokenizer):
    # johan ##son | una ##ffa ##ble | eu
    aligned = align_words(tokenizer, [["Johanson", "unaffable", "EU"]], [[1, 2, 0]], max_length=16)
    assert aligned.input_ids() == [[101, 13093, 3385, 14477, 20961, 3468, 7327, 102]]
    assert aligned.label_rows() == [[X, 1, X, 2, X, X, 0, X]]
    assert aligned.word.tolist() == [-1, 0, 0, 1, 1, 1, 2, -1]
    assert aligned.owner_window.tolist() == [0, 0, 0]
    assert aligned.owner_position.tolist() == [1, 3, 6]


def test_label_all_subwords_and_continuation(tokenizer):
    sentence, tags = [["Johanson", "unaffable", "EU"]], [[1, 2, 0]]
    every = align_words(tokenizer, sentence, tags, max_length=16, label_all_subwords=True)
    assert every.label_rows() == [[X, 1, 1, 2, 2, 2, 0, X]]
    # tags O=0, B-PER=1, I-PER=2: a B- word's later sub-words become I-
    relabelled = align_words(tokenizer, sentence, tags, max_length=16, label_all_subwords=True, continuation=[0, 2, 2])
    assert relabelled.label_rows() == [[X, 1, 2, 2, 2, 2, 0, X]]


def test_dropped_word_is_read_as_unknown(tokenizer):
    # BERT's normaliser turns a zero-width space into nothing: the word would get no prediction
    aligned = align_words(tokenizer, [["a", "\u200b", "b"]], [[0, 1, 0]], max_length=16)
    assert aligned.input_ids() == [[101, 1037, tokenizer.unk_token_id, 1038, 102]]
    assert aligned.label_rows() == [[X, 0, 1, 0, X]]


def test_long_sentence_overlapping_windows(tokenizer):
    words = [f"w{i}" for i in range(12)]  # each word is two sub-words: "w", "##i"
    assert tokenizer.tokenize("w7") == ["w", "##7"]
    aligned = align_words(tokenizer, [words, ["short"]], [list(range(12)), [5]], max_length=10, stride=4)
    # room for 8 sub-words = 4 words a window; 4 shared sub-words = 2 words
    assert aligned.sentence.tolist() == [0, 0, 0, 0, 0, 1]
    assert aligned.start.tolist() == [0, 2, 4, 6, 8, 0]
    assert all(len(row) <= 10 for row in aligned.input_ids())
    assert aligned.label_rows()[1] == [X, 2, X, 3, X, 4, X, 5, X, X]
    assert aligned.label_rows()[5] == [X, 5, X]
    # word 2 sits 3 sub-words from window 0's right edge and at window 1's left edge: read from window 0;
    # word 3: 1 from window 0's edge, 2 from window 1's: read from window 1
    assert aligned.owner_window.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 5]
    assert aligned.owner_position.tolist() == [1, 3, 5, 3, 5, 3, 5, 3, 5, 3, 5, 7, 1]
    # every word gets exactly one prediction: outputs that name (window, position) show where each came from
    outputs = [np.array([100 * w + p for p in range(len(row))]) for w, row in enumerate(aligned.input_ids())]
    per_word = word_predictions(aligned, outputs)
    assert [p.tolist() for p in per_word] == [[1, 3, 5, 103, 105, 203, 205, 303, 305, 403, 405, 407], [501]]
    # the word each prediction is read at is that word, and the label there is the word's own tag
    assert aligned.word[aligned.offsets[aligned.owner_window] + aligned.owner_position].tolist() == list(range(13))
    labels = aligned.labels[aligned.offsets[aligned.owner_window] + aligned.owner_position]
    assert labels.tolist() == [*range(12), 5]


def test_predictions_from_padded_scores(tokenizer):
    aligned = align_words(tokenizer, [[f"w{i}" for i in range(6)]], None, max_length=8, stride=2)
    assert aligned.labels is None
    width = max(len(row) for row in aligned.input_ids())
    scores = np.zeros((aligned.n_windows, width, 3), dtype=np.float32)
    for g, (w, p) in enumerate(zip(aligned.owner_window, aligned.owner_position)):
        scores[w, p, g % 3] = 1.0
    (per_word,) = word_predictions(aligned, scores)
    assert per_word.shape == (6, 3)
    assert per_word.argmax(1).tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="outputs of 1 windows"):
        word_predictions(aligned, scores[:1])


def test_word_longer_than_a_window_is_cut_not_lost(tokenizer):
    aligned = align_words(tokenizer, [["a", "unaffable", "b"]], [[1, 2, 3]], max_length=4, stride=0)
    # room for 2 sub-words: "a" alone, then una ##ffa (##ble cut), then "b"
    assert aligned.input_ids() == [[101, 1037, 102], [101, 14477, 20961, 102], [101, 1038, 102]]
    assert aligned.label_rows() == [[X, 1, X], [X, 2, X, X], [X, 3, X]]
    assert [p.tolist() for p in word_predictions(aligned, aligned.label_rows())] == [[1, 2, 3]]


def test_bad_settings_and_tags(tokenizer):
    with pytest.raises(UnfreezeError, match=r"stride must be an int in \[0, 5\] .* Got 6"):
        align_words(tokenizer, [["a"]], None, max_length=8, stride=6)
    with pytest.raises(UnfreezeError, match="max_length 2 leaves no room"):
        align_words(tokenizer, [["a"]], None, max_length=2)
    with pytest.raises(UnfreezeError, match="Sentence 1 has 2 words but 1 tags"):
        align_words(tokenizer, [["a"], ["b", "c"]], [[0], [0]])


def test_cached_once(tokenizer, fresh_cache):
    args = (tokenizer, [["Johanson", "EU"]], [[1, 0]])
    first = align_words(*args, max_length=16, cache=True)
    files = list((fresh_cache / "alignments").iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    again = align_words(*args, max_length=16, cache=True)
    assert again.fingerprint == first.fingerprint
    assert {k: v.tolist() for k, v in again.arrays().items()} == {k: v.tolist() for k, v in first.arrays().items()}
    # another stride, other tags: another entry
    align_words(*args, max_length=16, stride=1, cache=True)
    align_words(tokenizer, [["Johanson", "EU"]], [[0, 0]], max_length=16, cache=True)
    assert len(list((fresh_cache / "alignments").iterdir())) == 3


def test_padded_batch_and_empty_sentence(tokenizer):
    aligned = align_words(tokenizer, [["Johanson"], [], ["EU"]], [[1], [], [0]], max_length=16)
    assert aligned.n_windows == 2 and aligned.sentence.tolist() == [0, 2]
    batch = padded(aligned, [1, 0], pad_id=tokenizer.pad_token_id)
    assert batch["input_ids"].tolist() == [[101, 7327, 102, 0], [101, 13093, 3385, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[X, 0, X, X], [X, 1, X, X]]
    # right padding: the padded logits of every window map back to words; the empty sentence gets none
    scores = np.arange(2 * 4).reshape(2, 4)
    assert [p.tolist() for p in word_predictions(aligned, scores)] == [[1], [], [5]]
    assert "labels" not in padded(align_words(tokenizer, [["a", "b"]], max_length=16), [0], pad_id=0)
