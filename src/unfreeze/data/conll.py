"""CoNLL column files: one token per line (token ... tag), sentences separated by blank lines.

The CoNLL-2003 layout (token, part of speech, chunk, named-entity tag) is what the built-in
``conll-entities`` reads; ``-DOCSTART-`` lines mark documents and are not sentences.
"""

from __future__ import annotations

from pathlib import Path

DOCSTART = "-DOCSTART-"


def read_sentences(path: Path, encoding: str = "utf-8") -> list[list[tuple[str, str]]]:
    """Every sentence of ``path`` as (token, tag) pairs: the first column and the last."""
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in path.read_text(encoding=encoding).split("\n"):
        fields = line.split()
        if not fields:
            if current:
                sentences.append(current)
                current = []
            continue
        if fields[0] == DOCSTART:
            continue
        current.append((fields[0], fields[-1]))
    if current:
        sentences.append(current)
    return sentences


def entity_types(tags: list[str]) -> list[str]:
    """The sorted entity types an IOB-tagged sentence holds: ``["B-ORG", "O", "I-PER"]`` -> ``["ORG", "PER"]``."""
    return sorted({tag.split("-", 1)[1] for tag in tags if tag != "O" and "-" in tag})
