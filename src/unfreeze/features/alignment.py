"""Words to sub-word tokens for token tasks: labels per sub-word, windows over long sentences, and back.

A sentence arrives as a list of words with one tag id per word. A fast tokenizer splits each word into
sub-words (``is_split_into_words=True``; ``word_ids()`` says which word each token came from). The head
reads the first sub-word of each word (BERT's choice): it carries the word's label and the other
sub-words carry -100, which the loss ignores; with ``label_all_subwords`` every sub-word carries it.

A sentence longer than ``max_length`` is never cut: it becomes windows of whole words that overlap by
about ``stride`` sub-words, each window wrapped in the tokenizer's special tokens. Every window is a
training example with every word it holds labelled. At prediction, each word is read from exactly one
window, the one where it lies furthest from an edge (most context on both sides):
:func:`word_predictions` maps window outputs back to one output per word.

The alignment is computed once per (tokenizer, max_length, stride, sentences, tags) and can be cached
(``align_words(..., cache=True)``: a safetensors file under the unfreeze cache, never pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnfreezeError

IGNORE = -100  # the label the loss skips (torch's CrossEntropyLoss ignore_index)
VERSION = 1  # of the cached layout: a change makes earlier cache files unused


@dataclass(frozen=True)
class Alignment:
    """Sub-word windows of a list of sentences, stored flat (one row per token of every window).

    ``ids``/``labels``/``word``: per token of every window, concatenated; window ``i`` spans
    ``offsets[i]:offsets[i + 1]``. ``word``: the token's word, numbered over all sentences
    (``word_offsets[s]`` is sentence ``s``'s first), -1 for special tokens. ``labels``: None without tags.
    ``sentence``/``start``: each window's sentence and the first word it holds (in its sentence).
    ``owner_window``/``owner_position``: for every word, the window and the position in it that its
    prediction is read from (its first sub-word there)."""

    ids: np.ndarray
    labels: np.ndarray | None
    word: np.ndarray
    offsets: np.ndarray
    sentence: np.ndarray
    start: np.ndarray
    word_offsets: np.ndarray
    owner_window: np.ndarray
    owner_position: np.ndarray
    fingerprint: str

    @property
    def n_windows(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_sentences(self) -> int:
        return len(self.word_offsets) - 1

    def window_ids(self, i: int) -> np.ndarray:
        """Token ids of window ``i``, special tokens included."""
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def window_labels(self, i: int) -> np.ndarray:
        """Label ids of window ``i`` (-100 where the loss ignores the token)."""
        if self.labels is None:
            raise ValueError("this alignment was made without tags")
        return self.labels[self.offsets[i] : self.offsets[i + 1]]

    def input_ids(self) -> list[list[int]]:
        """Every window's token ids, as lists (what a collator pads)."""
        return [self.window_ids(i).tolist() for i in range(self.n_windows)]

    def label_rows(self) -> list[list[int]]:
        return [self.window_labels(i).tolist() for i in range(self.n_windows)]

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name (what the cache stores)."""
        out = {name: getattr(self, name) for name in _ARRAYS}
        if self.labels is not None:
            out["labels"] = self.labels
        return out


_ARRAYS = ("ids", "word", "offsets", "sentence", "start", "word_offsets", "owner_window", "owner_position")


def alignment_fingerprint(
    tokenizer: Any,
    sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[int]] | None,
    max_length: int,
    stride: int,
    label_all_subwords: bool = False,
    continuation: Sequence[int] | None = None,
) -> str:
    """What an alignment depends on, hashed: the tokenizer (class, name, vocabulary size), the window
    settings, the words and their tags."""
    import hashlib

    digest = hashlib.sha256()
    head = (type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_length, stride)
    digest.update(repr((VERSION, *head, label_all_subwords, continuation is not None)).encode())
    if continuation is not None:
        digest.update(np.asarray(continuation, dtype=np.int64).tobytes())
    for i, words in enumerate(sentences):
        digest.update("\x1e".join(words).encode() + b"\x1d")
        if tags is not None:
            digest.update(np.asarray(tags[i], dtype=np.int64).tobytes() + b"\x1d")
    return digest.hexdigest()


def align_words(
    tokenizer: Any,
    sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[int]] | None = None,
    max_length: int = 512,
    stride: int | None = None,
    label_all_subwords: bool = False,
    continuation: Sequence[int] | None = None,
    cache: bool = False,
) -> Alignment:
    """Sub-word windows of ``sentences`` (lists of words) and, with ``tags`` (a tag id per word), their labels.

    ``max_length``: tokens per window, special tokens included. ``stride``: sub-words shared by consecutive
    windows of a long sentence (rounded to whole words); None: a quarter of a window's room for words.
    ``label_all_subwords``: every sub-word carries its word's label, not only the first; ``continuation``
    (tag id -> tag id) then relabels the sub-words after the first (B-X -> I-X). ``cache``: read and write
    the result under the unfreeze cache."""
    room = max_length - _n_special(tokenizer)
    if room < 1:
        raise UnfreezeError(f"max_length {max_length} leaves no room for words beside the special tokens; raise it.")
    stride = room // 4 if stride is None else stride
    if not 0 <= stride < room:
        raise UnfreezeError(
            f"The stride must be an int in [0, {room - 1}] for max_length {max_length} (sub-words shared by "
            f"overlapping windows). Got {stride}."
        )
    if tags is not None:
        _check_tags(sentences, tags)
    fingerprint = alignment_fingerprint(
        tokenizer, sentences, tags, max_length, stride, label_all_subwords, continuation
    )
    path = None
    if cache:
        from ..storage.cache import cache_dir

        path = cache_dir("alignments") / f"{fingerprint[:40]}.safetensors"
        if path.exists():
            return _read(path, fingerprint)
    aligned = _align(tokenizer, sentences, tags, room, stride, label_all_subwords, continuation, fingerprint)
    if path is not None:
        _write(path, aligned)
    return aligned


def word_predictions(alignment: Alignment, window_outputs: Any) -> list[np.ndarray]:
    """One output per word, sentence by sentence, from per-token outputs of every window.

    ``window_outputs``: an array [n_windows, positions, ...] (padded on the right) or a list of per-window
    arrays [positions, ...]: a predicted tag id, or a row of scores, per token. Each word's output is the
    one at its first sub-word in the window where it lies furthest from an edge."""
    if len(window_outputs) != alignment.n_windows:
        raise ValueError(f"got outputs of {len(window_outputs)} windows for an alignment of {alignment.n_windows}")
    if isinstance(window_outputs, np.ndarray):
        picked = window_outputs[alignment.owner_window, alignment.owner_position]
    else:
        picked = np.asarray(
            [
                np.asarray(window_outputs[w])[p]
                for w, p in zip(alignment.owner_window.tolist(), alignment.owner_position.tolist())
            ]
        )
    bounds = alignment.word_offsets
    return [picked[bounds[s] : bounds[s + 1]] for s in range(alignment.n_sentences)]


def padded(alignment: Alignment, windows: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
    """A batch of ``windows``, padded on the right to the longest: ``input_ids``, ``attention_mask`` and, with
    tags, ``labels`` (-100 on padding), each [len(windows), longest] int64."""
    rows = [alignment.window_ids(i) for i in windows]
    width = max((len(row) for row in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    labels = np.full((len(rows), width), IGNORE, dtype=np.int64)
    for r, (i, row) in enumerate(zip(windows, rows)):
        ids[r, : len(row)], mask[r, : len(row)] = row, 1
        if alignment.labels is not None:
            labels[r, : len(row)] = alignment.window_labels(i)
    batch = {"input_ids": ids, "attention_mask": mask}
    if alignment.labels is not None:
        batch["labels"] = labels
    return batch


# -- the work -------------------------------------------------------------------------------------


def _n_special(tokenizer: Any) -> int:
    return len(tokenizer([["x"]], is_split_into_words=True)["input_ids"][0]) - len(
        tokenizer([["x"]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
    )


def _check_tags(sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[int]]) -> None:
    if len(tags) != len(sentences):
        raise UnfreezeError(f"Got tags for {len(tags)} sentences but {len(sentences)} sentences.")
    for i, (words, row) in enumerate(zip(sentences, tags)):
        if len(words) != len(row):
            raise UnfreezeError(f"Sentence {i} has {len(words)} words but {len(row)} tags; give one tag per word.")


def _encode(tokenizer: Any, sentences: Sequence[Sequence[str]]) -> list[tuple[list[int], list[int | None]]]:
    """(token ids with special tokens, word of each token) of every sentence, in one batch call."""
    if not getattr(tokenizer, "is_fast", False):
        raise UnfreezeError("Token tasks need a fast tokenizer (word_ids); this model's tokenizer is not one.")
    todo = [list(words) for words in sentences if len(words)]
    encoded = tokenizer(todo, is_split_into_words=True, truncation=False) if todo else None
    out: list[tuple[list[int], list[int | None]]] = []
    j = 0
    for words in sentences:
        if not len(words):
            out.append(([], []))
            continue
        assert encoded is not None
        out.append((list(encoded["input_ids"][j]), list(encoded.word_ids(j))))
        j += 1
    return out


def _align(
    tokenizer: Any,
    sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[int]] | None,
    room: int,
    stride: int,
    label_all_subwords: bool,
    continuation: Sequence[int] | None,
    fingerprint: str,
) -> Alignment:
    encoded = _encode(tokenizer, sentences)
    # a word the tokenizer drops (a zero-width space) would get no prediction: it is read as the unknown token
    for s, (_, words_of) in enumerate(encoded):
        present = {w for w in words_of if w is not None}
        if len(present) < len(sentences[s]):
            if tokenizer.unk_token is None:
                raise UnfreezeError(f"Sentence {s} has a word the tokenizer turns into no token; remove it.")
            fixed = [w if i in present else tokenizer.unk_token for i, w in enumerate(sentences[s])]
            encoded[s] = _encode(tokenizer, [fixed])[0]
    ids_out: list[int] = []
    labels_out: list[int] = []
    word_out: list[int] = []
    offsets, win_sentence, win_start = [0], [], []
    n_words = [len(words) for words in sentences]
    word_offsets = np.concatenate([[0], np.cumsum(n_words)]).astype(np.int64)
    owner_window = np.full(int(word_offsets[-1]), -1, dtype=np.int64)
    owner_position = np.zeros(int(word_offsets[-1]), dtype=np.int64)
    owner_margin = np.full(int(word_offsets[-1]), -1, dtype=np.int64)
    for s, (ids, words_of) in enumerate(encoded):
        if not n_words[s]:
            continue
        content = [i for i, w in enumerate(words_of) if w is not None]
        head, tail = ids[: content[0]], ids[content[-1] + 1 :]
        body_ids = [ids[i] for i in content]
        body_words = [int(words_of[i]) for i in content]  # type: ignore[arg-type]
        firsts = np.searchsorted(body_words, np.arange(n_words[s] + 1))  # word w spans firsts[w]:firsts[w+1]
        for begin, end in _windows(np.diff(firsts), room, stride):
            window = len(offsets) - 1
            ids_out.extend(head)
            word_out.extend([-1] * len(head))
            labels_out.extend([IGNORE] * len(head) if tags is not None else [])
            for w in range(begin, end):
                span = range(firsts[w], min(firsts[w + 1], firsts[w] + room))  # one word longer than a window: cut
                position = len(ids_out) - offsets[-1]
                margin = min(firsts[w] - firsts[begin], firsts[end] - 1 - firsts[w])
                g = int(word_offsets[s]) + w
                if margin > owner_margin[g]:  # ties keep the earlier window
                    owner_window[g], owner_position[g], owner_margin[g] = window, position, margin
                ids_out.extend(body_ids[k] for k in span)
                word_out.extend([g] * len(span))
                if tags is not None:
                    tag = int(tags[s][w])
                    rest = tag if continuation is None else int(continuation[tag])
                    labels_out.append(tag)
                    labels_out.extend([rest if label_all_subwords else IGNORE] * (len(span) - 1))
            ids_out.extend(tail)
            word_out.extend([-1] * len(tail))
            labels_out.extend([IGNORE] * len(tail) if tags is not None else [])
            offsets.append(len(ids_out))
            win_sentence.append(s)
            win_start.append(begin)
    assert (owner_window >= 0).all(), "every word is read from one window"
    return Alignment(
        ids=np.asarray(ids_out, dtype=np.int64),
        labels=np.asarray(labels_out, dtype=np.int64) if tags is not None else None,
        word=np.asarray(word_out, dtype=np.int64),
        offsets=np.asarray(offsets, dtype=np.int64),
        sentence=np.asarray(win_sentence, dtype=np.int64),
        start=np.asarray(win_start, dtype=np.int64),
        word_offsets=word_offsets,
        owner_window=owner_window,
        owner_position=owner_position,
        fingerprint=fingerprint,
    )


def _windows(counts: np.ndarray, room: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges [begin, end) of the windows over words of ``counts`` sub-words: as many whole words as fit
    in ``room``, the next window starting as far back as keeps the shared sub-words within ``stride``."""
    n, out, begin = len(counts), [], 0
    while True:
        end, total = begin, 0
        while end < n and (end == begin or total + counts[end] <= room):
            total += int(counts[end])
            end += 1
        out.append((begin, end))
        if end == n:
            return out
        nxt, shared = end, 0
        while nxt - 1 > begin and shared + counts[nxt - 1] <= stride:
            nxt -= 1
            shared += int(counts[nxt])
        begin = nxt


def _read(path: Any, fingerprint: str) -> Alignment:
    from safetensors.numpy import load_file

    arrays = load_file(str(path))
    return Alignment(**{name: arrays[name] for name in _ARRAYS}, labels=arrays.get("labels"), fingerprint=fingerprint)


def _write(path: Any, aligned: Alignment) -> None:
    from safetensors.numpy import save_file

    from ..storage.cache import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in aligned.arrays().items()}, str(tmp))
