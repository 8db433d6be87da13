"""Entity spans of raw text from a tagger: words with their character offsets, and the spans their tags make.

A text is split into words by ``WORD_PATTERN`` (a run of word characters, or one other character that is not
a space), each word tagged, and the tagged words grouped into entities as the Hugging Face token-classification
pipeline groups them with ``aggregation_strategy="first"`` (a word's tag is its first sub-word's): a ``B-`` or
``S-`` tag, or a tag of another type than the entity before it, starts an entity; ``I-`` and ``E-`` of the same
type continue it; ``E-`` and ``S-`` end it; ``O`` is outside. A span's score is the mean, over its words, of the
probability of the tag chosen for each word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

WORD_PATTERN = r"\w+|[^\w\s]"
_WORDS = re.compile(WORD_PATTERN)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """The words of ``text`` with their character offsets: ``(word, start, end)``, ``text[start:end] == word``."""
    return [(m.group(), m.start(), m.end()) for m in _WORDS.finditer(text)]


def entity_spans(
    text: str, offsets: Sequence[tuple[int, int]], tags: Sequence[str], scores: Sequence[float]
) -> list[dict[str, Any]]:
    """The entities of ``text``: ``{"start", "end", "type", "text", "score"}`` per entity, in order, from its
    words' ``offsets`` (start, end), their ``tags`` and the probability of each tag (``scores``)."""
    spans: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    words: list[float] = []

    def close() -> None:
        nonlocal current, words
        if current is not None:
            current["text"] = text[current["start"] : current["end"]]
            current["score"] = sum(words) / len(words)
            spans.append(current)
        current, words = None, []

    for (start, end), tag, score in zip(offsets, tags, scores):
        prefix, _, kind = tag.partition("-")
        if not kind:  # O: outside every entity
            close()
            continue
        if current is None or current["type"] != kind or prefix in ("B", "S"):
            close()
            current = {"start": start, "end": end, "type": kind}
        current["end"] = end
        words.append(float(score))
        if prefix in ("E", "S"):
            close()
    close()
    return [{key: span[key] for key in ("start", "end", "type", "text", "score")} for span in spans]


__all__ = ["WORD_PATTERN", "entity_spans", "split_words"]
