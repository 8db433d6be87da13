"""CoNLL column files: one token per line (token ... tag), sentences separated by blank lines.

The CoNLL-2003 layout (token, part of speech, chunk, named-entity tag) is what the built-in
``conll-entities`` reads; ``-DOCSTART-`` lines mark documents and are not sentences.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UnfreezeError

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


def read_columns(
    path: Path, text: str, tag_col: int = -1, max_tokens: int = 512
) -> tuple[list[list[str]], list[list[str]], list[list[int]]]:
    """The tokens (first column), the tags (column ``tag_col``: 0-based, negative counts from the end) and the
    line numbers of every sentence of a CoNLL column file's ``text``. Columns are split on tabs when the first
    token line holds one (a token may then hold spaces), otherwise on blanks. One line each for a token with no
    tag, a ``tag_col`` out of range of a line, and a sentence of more than ``max_tokens`` tokens (no blank
    line between sentences: probably not a CoNLL file)."""
    if isinstance(tag_col, bool) or not isinstance(tag_col, int):
        raise UnfreezeError(f"tag_col (--tag-col) must be a column number (0-based; -1 is the last). Got {tag_col!r}.")
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    lines: list[list[int]] = []
    tokens: list[str] = []
    row_tags: list[str] = []
    numbers: list[int] = []
    raw_lines = text.split("\n")
    first = next((line for line in raw_lines if line.split() and line.split()[0] != DOCSTART), "")
    tabs = "\t" in first  # a token may then hold spaces
    width, col = 0, 0  # the last line's number of columns, and tag_col's index in such a line
    for lineno, line in enumerate(raw_lines, start=1):
        if tabs:
            line = line.rstrip("\r\t ")
            fields = [f.strip() for f in line.split("\t")] if line.strip() else []
        else:
            fields = line.split()
        if not fields:
            if tokens:
                sentences.append(tokens)
                tags.append(row_tags)
                lines.append(numbers)
                tokens, row_tags, numbers = [], [], []
            continue
        token = fields[0]
        if token == DOCSTART:
            continue
        if not token:
            raise UnfreezeError(
                f"{path} line {lineno} starts with a tab: an empty token. Write the token first, then its tag."
            )
        if len(fields) != width:  # checked once per change of width: most files have one
            width = len(fields)
            col = _tag_index(path, lineno, fields, tag_col)
        if len(tokens) == max_tokens:
            raise UnfreezeError(
                f"{path} lines {numbers[0]}-{lineno} hold over {max_tokens} tokens with no blank line between them: "
                "probably not a CoNLL file (one token and its tag a line, a blank line after each sentence). "
                "Separate its sentences with blank lines, or give JSON lines with a list of tokens and tags a row."
            )
        tokens.append(token)
        row_tags.append(fields[col])
        numbers.append(lineno)
    if tokens:
        sentences.append(tokens)
        tags.append(row_tags)
        lines.append(numbers)
    return sentences, tags, lines


def _tag_index(path: Path, lineno: int, fields: list[str], tag_col: int) -> int:
    """The index of ``tag_col`` in a line of ``fields``; one line for a token with no tag, a column out of range
    and the tokens' own column."""
    if len(fields) == 1:
        raise UnfreezeError(
            f"{path} line {lineno} holds one column ({fields[0][:40]!r}): a token with no tag. Each line of a "
            "CoNLL file is a token and its tag, separated by blanks or a tab; sentences end with a blank line."
        )
    if not -len(fields) <= tag_col < len(fields):
        raise UnfreezeError(
            f"{path} line {lineno} has {len(fields)} columns: tag_col (--tag-col) {tag_col} is out of range. Give a "
            f"column from 1 to {len(fields) - 1} (0-based; -1 is the last)."
        )
    if tag_col % len(fields) == 0:
        raise UnfreezeError(
            f"{path}: tag_col (--tag-col) {tag_col} is column 0, the tokens. Give the tags' column, from 1 to "
            f"{len(fields) - 1} (0-based; -1 is the last)."
        )
    return tag_col % len(fields)
