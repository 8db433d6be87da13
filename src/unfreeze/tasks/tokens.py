"""``tokens``: a tag per word (named entities; a softmax over the tags per token, cross-entropy, entity F1).

Labels are one sequence of tag strings per sentence (``["B-PER", "I-PER", "O"]``). Targets are tag ids
padded with -100 ([n, T] int64), the value the loss ignores: padding, special tokens and the sub-words
after a word's first (``unfreeze.features.alignment`` makes them). Raw outputs are [n, T, K]. Scores read
only the positions whose target is not -100, one per word, so they are computed on word-level targets
(``alignment.word_predictions`` maps window outputs back to words): entity-level micro-F1 in strict mode
for the tagging scheme (seqeval), precision, recall and token accuracy.

A network trains on sub-word windows of the sentences (``encode_inputs``: a sentence longer than
``max_length`` becomes overlapping windows) with a linear head per token (``network``); predictions are read
back per word (``logits_of``, ``outputs_of``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import UnfreezeError
from ..features.alignment import IGNORE
from ..metrics import TOKEN_METRICS, tag_scheme
from .base import Task, as_rows, held_out
from .multilabel import rarest_label_groups

if TYPE_CHECKING:
    import torch

    from ..training.model import TextClassificationModel


def entity_type(tag: str) -> str | None:
    """The entity type a tag names (``"B-PER"`` -> ``"PER"``); None for the outside tag."""
    return tag.split("-", 1)[1] if "-" in tag else None


class Tokens(Task):
    """One tag per word of a sentence, from two or more tags."""

    name: ClassVar[str] = "tokens"
    summary: ClassVar[str] = "a tag per word (softmax per token, cross-entropy; ranked by entity-level F1)"
    metrics: ClassVar[tuple[str, ...]] = TOKEN_METRICS
    min_classes: ClassVar[int] = 2
    weighs_classes: ClassVar[bool] = False
    strata_are_classes: ClassVar[bool] = False
    checks_swapped_columns: ClassVar[bool] = False
    score_is_default_metric: ClassVar[bool] = True
    exports_onnx: ClassVar[bool] = False  # a graph of per-token outputs is later work (issue 29)
    reads_tagged: ClassVar[bool] = True

    def __init__(self, scheme: str = "IOB2") -> None:
        self.scheme = tag_scheme(scheme)
        self.classes_: np.ndarray | None = None
        self.unseen_: list[str] = []  # tags encode(unseen=True) met, after the fitted ones (scored, never predicted)

    def params(self) -> dict[str, Any]:
        return {"scheme": self.scheme}

    @property
    def fitted(self) -> bool:
        return self.classes_ is not None

    # -- labels as the data layer reads them: a tuple of tags per sentence ----------------------------

    @classmethod
    def read_labels(
        cls, values: Sequence[object], label_sep: str | None, source: str, column: str | None, warn_mixed: bool = True
    ) -> list:
        out: list = []
        for i, value in enumerate(values):
            if value is None:
                out.append(None)
            elif isinstance(value, str) or not hasattr(value, "__iter__"):
                raise UnfreezeError(
                    f"Row {i + 1} of {source} has {type(value).__name__} {value!r} in {column or 'the tags column'}; "
                    "the tokens task reads a list of tags per row."
                )
            else:
                out.append(tuple(str(tag) for tag in value))
        return out

    @classmethod
    def classes_of(cls, labels: Sequence[Any]) -> list:
        """Every tag some sentence holds, sorted."""
        return sorted({tag for row in labels for tag in row})

    @classmethod
    def class_counts(cls, labels: Sequence[Any]) -> dict:
        """Words carrying each tag."""
        counts = Counter(tag for row in labels for tag in row)
        return {tag: counts[tag] for tag in cls.classes_of(labels)}

    @classmethod
    def check_variety(cls, labels: Sequence[Any], require_classes: int, source: str) -> None:
        if require_classes >= 2 and not any(entity_type(tag) for row in labels for tag in row):
            raise UnfreezeError(
                f"No word of {source} carries an entity tag (every tag is outside, O); a tagger needs tagged words. "
                "Check the tags column (--tags-col, --tag-col)."
            )

    @classmethod
    def strata(cls, labels: Sequence[Any]) -> list:
        """Each sentence's rarest entity type (by sentences holding it), ties to the first sorted; ``()`` for none."""
        types = [sorted({t for t in map(entity_type, row) if t}) for row in labels]
        counts = Counter(t for row in types for t in row)
        return [min(row, key=lambda t: counts[t]) if row else () for row in types]

    @classmethod
    def stratum_shortfall(cls, key: object, count: int, source: str) -> str:
        if key == ():
            return f"{source} has {count} sentence(s) with no entity"
        return f"Entity type {key!r} of {source} is the rarest of {count} sentence(s)"

    # -- labels ------------------------------------------------------------------------------

    def fit_labels(self, y: Any, what: str = "y") -> np.ndarray:
        rows = _tag_rows(y, what)
        classes = sorted({tag for row in rows for tag in row})
        if len(classes) < 2:
            found = repr(classes[0]) if classes else "none"
            raise UnfreezeError(f"{what} has a single tag ({found}); a tagger needs at least two.")
        self.classes_ = np.asarray(classes)
        self.unseen_ = []
        return self.encode(rows, what)

    def encode(self, y: Any, what: str = "y", unseen: bool = False) -> np.ndarray:
        assert self.classes_ is not None, "fit_labels first"
        rows = _tag_rows(y, what)
        index = {tag: i for i, tag in enumerate(self.classes_.tolist())}
        known = len(index)
        unknown = list(dict.fromkeys(tag for row in rows for tag in row if tag not in index))
        if unknown and not unseen:
            raise UnfreezeError(
                f"{what} tags {', '.join(map(repr, unknown[:3]))} are not among the tags it was fitted on "
                f"({', '.join(map(repr, self.classes_.tolist()[:9]))}). Give tags of those."
            )
        self.unseen_.extend(tag for tag in unknown if tag not in self.unseen_)
        index.update({tag: known + i for i, tag in enumerate(self.unseen_)})
        targets = np.full((len(rows), max(map(len, rows), default=0)), IGNORE, dtype=np.int64)
        for i, row in enumerate(rows):
            targets[i, : len(row)] = [index[tag] for tag in row]
        return targets

    # -- inputs and the network --------------------------------------------------------------

    def check_inputs(self, inputs: list, what: str = "X", labels: Any = None) -> None:
        """Each input a non-empty list of words (strings); with ``labels``, one tag per word."""
        for i, words in enumerate(inputs):
            if isinstance(words, str) or (not isinstance(words, Sequence) and not hasattr(words, "tolist")):
                raise UnfreezeError(
                    f"{what}[{i}] is {type(words).__name__} {str(words)[:40]!r}; the tokens task takes a list of "
                    "words per sentence (e.g. ['John', 'lives', 'here'])."
                )
            row = list(words.tolist() if hasattr(words, "tolist") else words)
            if not row:
                raise UnfreezeError(f"{what}[{i}] is an empty sentence; give at least one word, or drop the row.")
            if not all(isinstance(word, str) for word in row):
                bad = next(word for word in row if not isinstance(word, str))
                raise UnfreezeError(f"{what}[{i}] holds {bad!r}, not a word; every word must be a string.")
        if labels is None:
            return
        for i, (words, tags) in enumerate(zip(inputs, as_rows(labels, "y"))):
            if not isinstance(tags, str) and hasattr(tags, "__len__") and len(tags) != len(words):
                raise UnfreezeError(
                    f"Row {i} has {len(words)} words in {what} but {len(tags)} tags in y; give one tag per word."
                )

    def encode_inputs(
        self, backbone: Any, inputs: list, targets: np.ndarray | None, max_length: int
    ) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
        """Sub-word windows of the sentences (``alignment.align_words``), their tag ids per token (-100 where
        the loss ignores it, padded to the longest window), and each window's sentence."""
        alignment = self.align(backbone, inputs, targets, max_length)
        labels = None
        if targets is not None:
            width = max(
                (alignment.offsets[i + 1] - alignment.offsets[i] for i in range(alignment.n_windows)), default=0
            )
            labels = np.full((alignment.n_windows, width), IGNORE, dtype=np.int64)
            for i in range(alignment.n_windows):
                row = alignment.window_labels(i)
                labels[i, : len(row)] = row
        return windows_encoded(alignment, max_length), labels, alignment.sentence

    @staticmethod
    def align(backbone: Any, inputs: list, targets: np.ndarray | None, max_length: int) -> Any:
        from ..features.alignment import align_words

        sentences = [list(words) for words in inputs]
        tags = None if targets is None else [row[: len(words)] for row, words in zip(targets, sentences)]
        return align_words(backbone.tokenizer, sentences, tags, backbone.length_limit(max_length))

    def network(
        self, backbone: Any, pooling: str, layers: Sequence[int], n_outputs: int | None = None
    ) -> TextClassificationModel:
        """Hidden states ``layers`` of every token, concatenated, and a linear head per token (no pooling)."""
        from ..training.model import TokenClassificationModel

        return TokenClassificationModel(backbone, n_outputs or self.n_outputs, pooling, layers)

    def word_logits(self, predictor: Any, inputs: list) -> list[np.ndarray]:
        """Each sentence's logits [words, K], each word read from one window (``alignment.word_predictions``)."""
        from ..features.alignment import word_predictions

        alignment = self.align(predictor.backbone, inputs, None, predictor.max_length)
        logits = predictor.encoded_logits(windows_encoded(alignment, predictor.max_length))
        return word_predictions(alignment, logits)

    def logits_of(self, predictor: Any, inputs: list) -> np.ndarray:
        """Word-level logits [n, most words, K], zeros past a sentence's end (the targets are -100 there)."""
        rows = self.word_logits(predictor, inputs)
        width = max((len(row) for row in rows), default=0)
        out = np.zeros((len(rows), width, self.n_outputs), dtype=np.float32)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    def outputs_of(self, predictor: Any, inputs: Any) -> list[np.ndarray]:  # type: ignore[override]
        """Tag probabilities [words, K] of each sentence."""
        return [self.outputs(row) for row in self.word_logits(predictor, inputs)]

    # -- training ----------------------------------------------------------------------------

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Per sentence [n]: the summed cross-entropy of its tokens whose target is not -100. ``logits`` may be
        narrower than ``targets`` (a batch padded to its longest window, the targets to the longest of all):
        the targets past the logits' width are -100."""
        from torch import nn

        targets = _same_width(targets, logits.shape[1])
        logits = logits[:, : targets.shape[1]]
        per_token = nn.functional.cross_entropy(
            logits.float().flatten(0, -2), targets.flatten(), weight=weight, ignore_index=IGNORE, reduction="none"
        )
        return per_token.view(targets.shape).sum(dim=-1)

    def loss_total(self, targets: torch.Tensor, weight: torch.Tensor | None) -> float:
        # a mean over the batch's tagged tokens, as token classifiers train: long sentences weigh more
        return float(max(int((targets != IGNORE).sum()), 1))

    def join(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """Tag ids of several sets of sentences, padded with -100 to the longest sentence of all."""
        width = max(np.asarray(part).shape[1] for part in parts)
        return np.concatenate([_same_width(np.asarray(part, dtype=np.int64), width) for part in parts])

    def validation_loss(self, targets: np.ndarray, logits: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            tensor = self.target_tensor(targets)
            total = self.loss(torch.from_numpy(np.asarray(logits, dtype=np.float32)), tensor).sum()
        return float(total) / self.loss_total(tensor, None)

    # -- outputs and scores --------------------------------------------------------------------

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        """Tag probabilities [n, T, K] (a softmax per token)."""
        logits = np.asarray(logits, dtype=np.float64)
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)

    def decide(self, outputs: Any) -> list[list[str]]:
        """The tags of each sentence: ``outputs`` a list of per-word probabilities [m, K] per sentence
        (``alignment.word_predictions``), or an array [n, T, K] (every position decided)."""
        assert self.classes_ is not None, "fit_labels first"
        return [self.classes_[np.asarray(row).argmax(axis=-1)].tolist() for row in outputs]

    def decide_targets(self, targets: np.ndarray) -> list[list[str]]:
        assert self.classes_ is not None, "fit_labels first"
        return [self.classes_[row[row != IGNORE]].tolist() for row in np.asarray(targets, dtype=np.int64)]

    def scores_of_outputs(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        from ..metrics import token_metrics

        assert self.classes_ is not None, "fit_labels first"
        targets = np.asarray(targets, dtype=np.int64)
        names = np.asarray([*self.classes_.tolist(), *self.unseen_])
        truth, guess = [], []
        # ``outputs``: an array [n, T, K], or a list of [m, K] per sentence (word-level outputs); a row of outputs
        # narrower than its targets' row is one whose targets past its width are -100
        for row, scores in zip(targets, outputs):
            predicted = np.asarray(scores).argmax(axis=-1)
            row = _same_width(row[None], len(predicted))[0]
            keep = row != IGNORE
            truth.append(names[row[keep]].tolist())
            guess.append(names[predicted[: len(row)][keep]].tolist())
        return token_metrics(truth, guess, self.scheme)

    def split(self, targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """By sentence, stratified by each sentence's rarest entity type (sentences without one are a group);
        groups too small to split join the rest."""
        assert self.classes_ is not None, "fit_labels first"
        targets = np.asarray(targets, dtype=np.int64)
        types = sorted({t for t in map(entity_type, self.classes_.tolist()) if t})
        column = {tag: types.index(t) for tag, t in enumerate(map(entity_type, self.classes_.tolist())) if t}
        indicator = np.zeros((len(targets), len(types)), dtype=np.float32)
        for i, row in enumerate(targets):
            for tag in set(row.tolist()) & column.keys():
                indicator[i, column[tag]] = 1.0
        return held_out(rarest_label_groups(indicator), fraction, seed)

    # -- persistence ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "scheme": self.scheme}

    @classmethod
    def from_state(cls, meta: dict[str, Any], classes: np.ndarray | None = None) -> Tokens:
        task = cls(scheme=meta.get("scheme", "IOB2"))
        task.classes_ = None if classes is None else np.asarray(classes)
        return task

    def describe(self) -> str:
        return f"{self.name} ({self.scheme})"


def windows_encoded(alignment: Any, max_length: int) -> Any:
    """The windows of ``alignment`` as model inputs (``Encoded``); none is truncated (windows are never cut)."""
    from ..models.backbone import Encoded

    ids = alignment.input_ids()
    return Encoded(ids, None, 0, max_length, [False] * len(ids))


def _same_width(targets: Any, width: int) -> Any:
    """``targets`` [n, T] (numpy or torch) cut or padded with -100 to ``width`` columns; cutting drops -100 only."""
    if targets.shape[1] > width:
        assert (targets[:, width:] == IGNORE).all(), "targets past the outputs' width must be -100"
        return targets[:, :width]
    if targets.shape[1] < width:
        if isinstance(targets, np.ndarray):
            return np.pad(targets, ((0, 0), (0, width - targets.shape[1])), constant_values=IGNORE)
        import torch

        return torch.nn.functional.pad(targets, (0, width - targets.shape[1]), value=IGNORE)
    return targets


def _tag_rows(y: Any, what: str) -> list[list[str]]:
    """``y`` as one list of tag strings per sentence; one line for a row that is not a list."""
    rows = as_rows(y, what)
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, str) or not hasattr(row, "__iter__"):
            raise UnfreezeError(f"{what}[{i}] is {row!r}; the tokens task takes a list of tags per sentence.")
        out.append([str(tag) for tag in row])
    return out
