"""Tagging schemes of token-tagged data: IOB1, IOB2 (BIO) and BIOES (IOBES); which one a tag set is
written in, and the tags rewritten so that seqeval's strict mode reads the entities its default mode reads.

Entities are found with seqeval 1.2.2's default rules (``seqeval.metrics.sequence_labeling.get_entities``,
the conlleval rules): an ``I-X`` after ``O`` or after another type begins an entity, a ``B-X`` or an ``S-X``
always does, a type change ends one. Re-spelling those entities in IOB2 (or BIOES) is the repair: a
strict reader then finds the same entities, and IOB1 becomes IOB2 the same way. Imports nothing heavy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

OUTSIDE = "O"
SCHEMES = ("IOB1", "IOB2", "BIOES")
# a tag: O, or a prefix, a dash and a type (seqeval reads the type as everything after the first dash)
_TAG = re.compile(r"([BIES])-(\S+)")


def is_tag(tag: object) -> bool:
    """Whether ``tag`` is ``O`` or ``B-``/``I-``/``E-``/``S-`` followed by a type without blanks."""
    return tag == OUTSIDE or (isinstance(tag, str) and _TAG.fullmatch(tag) is not None)


def tag_problem(tag: object) -> str:
    """Why ``tag`` is not a tag and how to write it, for a one-line error (empty when it is one)."""
    if is_tag(tag):
        return ""
    shown = repr(tag)
    if isinstance(tag, str) and re.fullmatch(r"[LU]-\S+", tag):
        return f"{shown} is a BILOU tag: BILOU's L- and U- are BIOES's E- and S-; rename them"
    if isinstance(tag, str) and re.fullmatch(r"[BIES]-?", tag):
        return f"{shown} has no entity type after the prefix: write e.g. {tag[0]}-PER"
    return (
        f"{shown} is not a tag of an IOB scheme: tags are O, or B-TYPE / I-TYPE (E-TYPE, S-TYPE in BIOES), "
        "the type after the dash"
    )


def _split(tag: str) -> tuple[str, str]:
    return (OUTSIDE, "") if tag == OUTSIDE else (tag[0], tag[2:])


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities (type, first, last token, inclusive) seqeval's default mode reads in ``tags``: the same
    list as ``seqeval.metrics.sequence_labeling.get_entities(list(tags))`` for tags that pass ``is_tag``."""
    found: list[tuple[str, int, int]] = []
    prev_prefix, prev_type, begin = OUTSIDE, "", 0
    for i, tag in enumerate([*tags, OUTSIDE]):
        prefix, type_ = _split(tag)
        if prev_prefix != OUTSIDE and (
            prev_prefix in "ES" or (prev_prefix in "BI" and prefix in "BSO") or prev_type != type_
        ):
            found.append((prev_type, begin, i - 1))
        if prefix != OUTSIDE and (prefix in "BS" or (prev_prefix in "ESO" and prefix in "EI") or prev_type != type_):
            begin = i
        prev_prefix, prev_type = prefix, type_
    return found


def spell(n: int, found: list[tuple[str, int, int]], scheme: str) -> tuple[str, ...]:
    """``n`` tags that spell the entities ``found`` in ``scheme`` ("IOB2" or "BIOES")."""
    out = [OUTSIDE] * n
    for type_, first, last in found:
        if scheme == "BIOES" and first == last:
            out[first] = f"S-{type_}"
            continue
        out[first] = f"B-{type_}"
        for i in range(first + 1, last + 1):
            out[i] = f"I-{type_}"
        if scheme == "BIOES":
            out[last] = f"E-{type_}"
    return tuple(out)


def detect_scheme(tag_rows: Sequence[Sequence[str]]) -> str:
    """The scheme a tag set is written in: BIOES when any tag is E- or S-; otherwise IOB1 when entities
    more often begin with I- (after O or another type) than with a B- that does not follow its own type
    (IOB1 writes B- only between two entities of one type), else IOB2."""
    i_starts = b_starts = 0
    for tags in tag_rows:
        prev = OUTSIDE
        for tag in tags:
            prefix = tag[0]
            if prefix in "ES":
                return "BIOES"
            if prefix != OUTSIDE:
                continues = prev != OUTSIDE and prev[0] in "BI" and prev[2:] == tag[2:]
                if not continues:
                    i_starts += prefix == "I"
                    b_starts += prefix == "B"
            prev = tag
    return "IOB1" if i_starts > b_starts else "IOB2"


def normalise(tag_rows: Sequence[Sequence[str]], scheme: str) -> tuple[list[tuple[str, ...]], list[tuple[int, int]]]:
    """The tags re-spelt for a strict reader: IOB1 and IOB2 as IOB2, BIOES as BIOES; and where each changed
    (row, token) tag was (IOB1's conversion included: the caller tells a repair from a conversion)."""
    target = "BIOES" if scheme == "BIOES" else "IOB2"
    rows: list[tuple[str, ...]] = []
    changed: list[tuple[int, int]] = []
    for r, tags in enumerate(tag_rows):
        spelt = spell(len(tags), entities(tags), target)
        if spelt != tuple(tags):
            changed.extend((r, i) for i, (a, b) in enumerate(zip(tags, spelt)) if a != b)
        rows.append(spelt)
    return rows, changed


__all__ = ["OUTSIDE", "SCHEMES", "detect_scheme", "entities", "is_tag", "normalise", "spell", "tag_problem"]
