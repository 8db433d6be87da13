"""``tokens``: a tag per word (named entities; a softmax over the tags per token, cross-entropy, entity F1).

Labels are one sequence of tag strings per sentence (``["B-PER", "I-PER", "O"]``). Targets are tag ids
padded with -100 ([n, T] int64), the value the loss ignores: padding, special tokens and the sub-words
after a word's first (``unfreeze.features.alignment`` makes them). Raw outputs are [n, T, K]. Scores read
only the positions whose target is not -100, one per word, so they are computed on word-level targets
(``alignment.word_predictions`` maps window outputs back to words): entity-level micro-F1 in strict mode
for the tagging scheme (seqeval), precision, recall and token accuracy.

Not registered yet: no command or estimator offers the task until every piece of issue 29 is in place.
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

    # -- training ----------------------------------------------------------------------------

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Per sentence [n]: the summed cross-entropy of its tokens whose target is not -100."""
        from torch import nn

        per_token = nn.functional.cross_entropy(
            logits.float().flatten(0, -2), targets.flatten(), weight=weight, ignore_index=IGNORE, reduction="none"
        )
        return per_token.view(targets.shape).sum(dim=-1)

    def loss_total(self, targets: torch.Tensor, weight: torch.Tensor | None) -> float:
        # a mean over the batch's tagged tokens, as token classifiers train: long sentences weigh more
        return float(max(int((targets != IGNORE).sum()), 1))

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
        predicted = np.asarray(outputs).argmax(axis=-1)
        names = np.asarray([*self.classes_.tolist(), *self.unseen_])
        kept = [row != IGNORE for row in targets]
        truth = [names[row[keep]].tolist() for row, keep in zip(targets, kept)]
        guess = [names[row[keep]].tolist() for row, keep in zip(predicted, kept)]
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


def _tag_rows(y: Any, what: str) -> list[list[str]]:
    """``y`` as one list of tag strings per sentence; one line for a row that is not a list."""
    rows = as_rows(y, what)
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, str) or not hasattr(row, "__iter__"):
            raise UnfreezeError(f"{what}[{i}] is {row!r}; the tokens task takes a list of tags per sentence.")
        out.append([str(tag) for tag in row])
    return out
