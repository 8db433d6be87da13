"""The validated in-memory form of token-tagged data (named entities): sentences of tokens, a tag per token.

Tags are read in the scheme they are written in (IOB1, IOB2, BIOES: ``schemes``) and kept in IOB2 (IOB1 is
converted) or BIOES, re-spelt where they break the scheme so that seqeval's strict mode reads the entities
its default mode reads; the repairs are counted in one warning line. Imports neither numpy nor pandas.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain

from ..errors import UnfreezeError
from .dataset import warn_data
from .schemes import OUTSIDE, detect_scheme, normalise, tag_problem

# the data kind's name; registered with the tasks by the token task, not here
TOKENS_TASK = "tokens"
# no sentence is this long: a file with no blank line for more tokens is probably not CoNLL columns
MAX_SENTENCE_TOKENS = 512

_RULE = {
    "IOB2": "an I-X that begins an entity is B-X",
    "BIOES": "the entities its default mode finds, spelt B-, I-, E-, S-",
}
# (sentence, token or None) -> where it is, for a message: "line 12", "row 3 (token 2)"
Locate = Callable[[int, int | None], str]


@dataclass(frozen=True)
class TaggedDataset:
    """Sentences of tokens and their tags, one tag per token.

    ``tags`` are in ``scheme``: "IOB2" (IOB1 and IOB2 sources) or "BIOES", what seqeval's strict mode
    scores them with; ``source_scheme`` is the scheme the source was found in ("IOB1", "IOB2" or "BIOES");
    ``repaired`` counts the tags re-spelt because they broke it (an ``I-X`` after ``O`` in IOB2), over the
    source as read (a subset keeps the count)."""

    sentences: list[tuple[str, ...]]
    tags: list[tuple[str, ...]]
    name: str = "data"
    scheme: str = "IOB2"
    source_scheme: str = "IOB2"
    repaired: int = 0
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    task = TOKENS_TASK

    def __len__(self) -> int:
        return len(self.sentences)

    # -- read as a ``TextDataset`` is where a command samples, splits and trains on the data (``sampling``)
    @property
    def inputs(self) -> list[list[str]]:
        """The sentences as lists of words: what a tagger's ``fit`` and ``evaluate`` take as X."""
        return [list(s) for s in self.sentences]

    @property
    def labels(self) -> list[tuple[str, ...]]:
        """The tags of each sentence: y."""
        return self.tags

    @property
    def classes(self) -> list[str]:
        return self.tag_set

    def class_counts(self) -> dict[str, int]:
        return self.tag_counts()

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.sentences)

    @property
    def tag_set(self) -> list[str]:
        """Every tag, sorted: ``O`` first, then by entity type and prefix (B-LOC, I-LOC, B-MISC, ...)."""
        return sorted({t for row in self.tags for t in row}, key=tag_sort_key)

    def tag_counts(self) -> dict[str, int]:
        """Tokens per tag, in ``tag_set`` order."""
        counts = Counter(t for row in self.tags for t in row)
        return {t: counts[t] for t in sorted(counts, key=tag_sort_key)}

    @property
    def entity_types(self) -> list[str]:
        """The entity types, sorted: ``["LOC", "MISC", "ORG", "PER"]``."""
        return sorted({t[2:] for row in self.tags for t in row if t != OUTSIDE})

    def subset(self, indices: Iterable[int], name: str | None = None) -> TaggedDataset:
        idx = [int(i) for i in indices]
        return TaggedDataset(
            sentences=[self.sentences[i] for i in idx],
            tags=[self.tags[i] for i in idx],
            name=name or self.name,
            scheme=self.scheme,
            source_scheme=self.source_scheme,
            repaired=self.repaired,
        )

    def fingerprint(self) -> str:
        """A hash of the content (tokens and tags, in order, and the scheme): the data part of cache keys."""
        if not self._fingerprint:
            digest = hashlib.sha256(f"task\x1f{TOKENS_TASK}\x1f{self.scheme}\x1e".encode())
            for tokens, tags in zip(self.sentences, self.tags):
                digest.update("\x1f".join(tokens).encode() + b"\x1e" + "\x1f".join(tags).encode() + b"\x1d")
            self._fingerprint.append(digest.hexdigest())
        return self._fingerprint[0]


def tag_sort_key(tag: str) -> tuple[int, str, int]:
    """``O`` first, then by type, then B, I, E, S within a type."""
    return (0, "", 0) if tag == OUTSIDE else (1, tag[2:], "BIES".index(tag[0]))


def build_tagged(
    sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[str]],
    source: str,
    locate: Locate,
    require_tags: int = 2,
    tag_option: str = "tag_col",
) -> TaggedDataset:
    """Validate sentences of tokens (str) and their tags (str) and return a ``TaggedDataset``.

    Refuses, in one line naming the place (``locate``): a sentence with no token, a token that is empty,
    a tags list of another length than its tokens, a tag that is no tag of an IOB scheme, and tags of fewer
    than ``require_tags`` kinds (2 to train: a column of ``O`` alone teaches nothing; 1 for a test set).
    ``tag_option`` names what chooses the tag column, for the fixes."""
    if not sentences:
        raise UnfreezeError(f"{source} holds no tagged sentence. Give tokens with their tags.")
    if len(sentences) != len(tags):
        raise UnfreezeError(
            f"{source}: {len(sentences)} sentence(s) but {len(tags)} list(s) of tags. Give one list of tags a sentence."
        )
    for i, (tokens, row_tags) in enumerate(zip(sentences, tags)):
        if not tokens:
            raise UnfreezeError(
                f"{source} {locate(i, None)}: an empty sentence (no token). Remove it, or give its tokens."
            )
        if len(tokens) != len(row_tags):
            raise UnfreezeError(
                f"{source} {locate(i, None)}: {len(tokens)} token(s) but {len(row_tags)} tag(s). Give one tag per "
                "token."
            )
        if "" in tokens or any(map(str.isspace, tokens)):
            j = next(j for j, token in enumerate(tokens) if not token or token.isspace())
            raise UnfreezeError(f"{source} {locate(i, j)}: an empty token. Remove it with its tag, or write the word.")
    found = Counter(chain.from_iterable(tags))
    if any(tag_problem(t) for t in found):  # each distinct tag checked once; the first bad one's place said
        i, j = next((i, j) for i, row in enumerate(tags) for j, t in enumerate(row) if tag_problem(t))
        raise UnfreezeError(
            f"{source} {locate(i, j)}: tag {tag_problem(tags[i][j])}. Fix that tag, or choose the tag column with "
            f"{tag_option}."
        )
    if len(found) < require_tags:
        only = next(iter(found))
        raise UnfreezeError(
            f"{source} holds one tag only ({only!r}, on all {found[only]:,} tokens): nothing to learn. Choose the "
            f"column of entity tags with {tag_option}, or give sentences that hold entities."
        )
    source_scheme = detect_scheme(tags)
    spelt, changed = normalise(tags, source_scheme)
    scheme = "BIOES" if source_scheme == "BIOES" else "IOB2"
    repaired = 0 if source_scheme == "IOB1" else len(changed)  # IOB1's B-X spelling is a conversion, not a repair
    if repaired:
        i, j = changed[0]
        before = "the sentence's start" if j == 0 else repr(tags[i][j - 1])
        rows = len({r for r, _ in changed})
        warn_data(
            f"{source}: {repaired:,} tag(s) in {rows:,} sentence(s) break strict {scheme} (first: {locate(i, j)}, "
            f"{tags[i][j]!r} after {before}); they are read as seqeval reads them ({_RULE[scheme]}), and scored so."
        )
    return TaggedDataset(
        sentences=[tuple(s) for s in sentences],
        tags=spelt,
        name=source,
        scheme=scheme,
        source_scheme=source_scheme,
        repaired=repaired,
    )


__all__ = ["MAX_SENTENCE_TOKENS", "TOKENS_TASK", "Locate", "TaggedDataset", "build_tagged", "tag_sort_key"]
