"""Long texts are cut before tokenising: bounded work, the same first tokens and the same truncation count.

Reference results come from tokenising the whole text the way ``Backbone.encode`` did before
the cut (tokenise everything, count the texts over the limit, tokenise again truncated).
"""

from __future__ import annotations

import random
import time

import pytest

from unfreeze.models.backbone import CUT_CHARS_PER_TOKEN, CUT_MIN_CHARS, Backbone

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog,",
    "while",
    "3",
    "cats",
    "watch;",
    "it's",
    "déjà",
    "vu",
    "(again)",
    "for",
    "the",
    "12th",
    "time.",
    "Naïve",
    "résumé:",
    "über-cool",
    "emojis",
    "🙂",
    "and",
    "CJK",
    "東京",
    "text",
]


def prose(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_chars:
        word = rng.choice(WORDS)
        sep = rng.choice([" ", " ", " ", "  ", "\n", "\t"])
        out.append(word + sep)
        size += len(word) + len(sep)
    return "".join(out)[:n_chars]


def reference(backbone: Backbone, inputs, max_length: int):
    """What encode returned before texts were cut: whole-text tokenisation."""
    limit = backbone.length_limit(max_length)
    args = ([a for a, _ in inputs], [b for _, b in inputs]) if isinstance(inputs[0], tuple) else (list(inputs),)
    tok = backbone.tokenizer
    full = tok(*args, truncation=False, padding=False, verbose=False)
    flags = [len(ids) > limit for ids in full["input_ids"]]
    if any(flags):
        full = tok(*args, truncation=True, max_length=limit, padding=False)
    return full["input_ids"], flags


class CharCounter:
    """Wraps a tokenizer and records the longest text it is given."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.longest = 0

    def __call__(self, *args, **kwargs):
        for arg in args:
            items = [arg] if isinstance(arg, str) else arg
            self.longest = max([self.longest, *(len(t) for t in items)])
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


@pytest.fixture
def bert(tiny_backbone):
    return tiny_backbone("bert")


def _byte_level_backbone(tiny_backbone, kind: str) -> Backbone:
    """A backbone with a GPT-2-style byte-level BPE or a SentencePiece-style (Metaspace) tokenizer."""
    from tokenizers import ByteLevelBPETokenizer, SentencePieceBPETokenizer
    from transformers import PreTrainedTokenizerFast

    trainer = ByteLevelBPETokenizer() if kind == "bytelevel" else SentencePieceBPETokenizer()
    trainer.train_from_iterator(
        [prose(20_000, seed=s) for s in range(5)], vocab_size=400, min_frequency=1, show_progress=False
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer, eos_token="</s>", pad_token="</s>")
    tokenizer.add_special_tokens({"eos_token": "</s>"})
    base = tiny_backbone("bert")
    return Backbone(base.model, tokenizer, f"tiny-{kind}")


def test_a_5mb_text_is_cut_before_tokenising_with_the_same_tokens(bert, monkeypatch):
    head = prose(300_000, seed=1)
    huge = head + prose(5_000_000, seed=2)
    expected_ids, expected_flags = reference(bert, [head], 128)
    counter = CharCounter(bert.tokenizer)
    monkeypatch.setattr(bert, "tokenizer", counter)
    start = time.perf_counter()
    encoded = bert.encode([huge, "a short one"], 128)
    seconds = time.perf_counter() - start
    assert encoded.input_ids[0] == expected_ids[0]
    assert len(encoded.input_ids[0]) == 128
    assert encoded.n_truncated == 1 and encoded.truncated == [True, False]
    assert expected_flags == [True]
    # the work is bounded by max_length, not by the text: nothing near 5 MB reached the tokenizer
    assert counter.longest <= 4 * max(CUT_CHARS_PER_TOKEN * 128, CUT_MIN_CHARS) + 1000
    assert seconds < 3.0, seconds  # whole-text tokenisation took 9 s here


@pytest.mark.parametrize("max_length", [8, 32, 100])
def test_long_texts_match_whole_text_tokenisation_exactly(bert, max_length):
    texts = [prose(n, seed=n) for n in (10, 200, 5_000, 40_000, 150_000)] + ["x " * 30_000, "word " * 9_000]
    ids, flags = reference(bert, texts, max_length)
    encoded = bert.encode(texts, max_length)
    assert encoded.input_ids == ids
    assert encoded.truncated == flags
    assert encoded.n_truncated == sum(flags)


def test_texts_under_the_threshold_are_tokenised_as_before(bert, monkeypatch):
    texts = [prose(n, seed=n) for n in (5, 50, 500, 1_500, CUT_MIN_CHARS)]
    counter = CharCounter(bert.tokenizer)
    monkeypatch.setattr(bert, "tokenizer", counter)
    encoded = bert.encode(texts, 64)
    monkeypatch.undo()
    ids, flags = reference(bert, texts, 64)
    assert encoded.input_ids == ids and encoded.truncated == flags
    assert encoded.n_truncated == 3 and flags == [False, False, True, True, True]
    assert counter.longest == CUT_MIN_CHARS  # the longest text went to the tokenizer whole


def test_a_long_text_of_mostly_whitespace_is_not_counted_as_truncated(bert):
    text = "start " + " " * 2_000_000 + "\n" * 100_000 + " end"
    encoded = bert.encode([text], 64)
    assert encoded.n_truncated == 0
    assert encoded.input_ids[0] == bert.tokenizer(text)["input_ids"]


def test_one_giant_word_matches_whole_text_tokenisation(bert):
    text = "a" * 500_000  # one word: WordPiece makes it [UNK], so it is not truncated at all
    ids, flags = reference(bert, [text, "b" * 20_000 + " tail"], 16)
    encoded = bert.encode([text, "b" * 20_000 + " tail"], 16)
    assert encoded.input_ids == ids and encoded.truncated == flags == [False, False]


@pytest.mark.parametrize("long_side", ["first", "second", "both", "both-reversed"])
def test_sentence_pairs_with_long_sides_truncate_as_before(bert, long_side):
    long_a, long_b = prose(120_000, seed=3), prose(90_000, seed=4)
    normal = prose(300, seed=5)  # about 70 tokens: more than half of the limit
    # two long sides stay under 10 kB here: tokenizers' truncation of a pair builds every
    # combination of the two sides' overflowing pieces, which for 100 kB sides takes 20+ GB
    both = (prose(9_000, seed=3), prose(7_000, seed=4))
    pair = {"first": (long_a, normal), "second": (normal, long_b), "both": both, "both-reversed": both[::-1]}[long_side]
    inputs = [pair, ("short", "pair")]
    ids, flags = reference(bert, inputs, 100)
    encoded = bert.encode(inputs, 100)
    assert encoded.truncated == flags == [True, False]
    assert encoded.input_ids == ids
    assert encoded.token_type_ids is not None


@pytest.mark.parametrize("kind", ["bytelevel", "metaspace"])
def test_other_tokenizer_families_keep_their_first_tokens(tiny_backbone, kind):
    backbone = _byte_level_backbone(tiny_backbone, kind)
    texts = [prose(n, seed=n) for n in (100, 9_000, 60_000, 200_000)]
    for max_length in (16, 64):
        ids, flags = reference(backbone, texts, max_length)
        encoded = backbone.encode(texts, max_length)
        assert encoded.input_ids == ids, (kind, max_length)
        assert encoded.truncated == flags
