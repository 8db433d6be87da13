"""What every task shares: label encoding, the head's size, the loss, the scores, the split.

A :class:`Task` is fitted on the training labels (``fit_labels``: it learns the classes, or
the scale of the scores) and then encodes more labels, turns a network's raw outputs
(``logits``, [n, n_outputs]) into probabilities or values, decides predictions in the
user's form, and scores them. Its fitted state is JSON (``state``) and travels in bundles.

numpy in, numpy out; torch and scikit-learn are imported where used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import UnfreezeError

if TYPE_CHECKING:
    import torch

    from ..training.model import TextClassificationModel


class Task:
    """Base class of every task. Subclasses set the class attributes and implement the label methods."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for help texts and `unfreeze tasks`
    metrics: ClassVar[tuple[str, ...]] = ()  # every metric it reports, the default first
    lower_is_better: ClassVar[frozenset[str]] = frozenset()
    is_classification: ClassVar[bool] = True
    # what a strategy that trains a head on the task needs a validation split for beyond the rate
    # search: multilabel's decision thresholds
    tunes_on_validation: ClassVar[bool] = False
    # whether ``class_weight="balanced"`` means something for the task (it weighs classes or labels)
    weighs_classes: ClassVar[bool] = True
    min_classes: ClassVar[int] = 0  # labels a bundle of the task must list
    # one class of K per text (a softmax): two classes are one score, as scikit-learn's decision_function gives them
    exclusive_classes: ClassVar[bool] = False
    classes_: np.ndarray | None = None  # a classification task's labels, once fitted
    # -- how the data layer (``unfreeze.data``) reads and samples the task's labels; the classmethods below
    # import neither numpy nor pandas where the defaults (one label per row) serve
    # whether ``--label-sep`` means something: it splits one string into the row's labels (multilabel)
    reads_label_sep: ClassVar[bool] = False
    # whether ``--thresholds`` means something: decisions by thresholds chosen on validation (multilabel)
    tunes_thresholds: ClassVar[bool] = False
    # the strata are the classes themselves: a stratified sample must hold every class, and a stratified split
    # needs two rows of each (single); other tasks' strata are coarser and a stratum of one row stays in train
    strata_are_classes: ClassVar[bool] = True
    # a label column of many long, distinct words is probably the text column: refused as swapped (single)
    checks_swapped_columns: ClassVar[bool] = True
    # the head ``features`` fits on frozen embeddings (a key of ``features.heads.HEAD_TYPES``; None: none)
    features_head: ClassVar[str | None] = "logistic"
    # whether training batches are drawn of similar lengths by default (``Training.group_by_length``): less
    # padding, unless the labels go with the length, when such batches are batches of one kind of label
    groups_by_length: ClassVar[bool] = True
    # the torch dtype of the loss's targets: class indices (long), or indicators and scores (float32)
    target_dtype: ClassVar[str] = "long"
    # ``Classifier.score`` is the default metric (tokens: entity F1) rather than accuracy on the decisions
    score_is_default_metric: ClassVar[bool] = False
    # whether ``unfreeze export`` writes ONNX graphs of the task's models (tokens: not yet)
    exports_onnx: ClassVar[bool] = True
    # whether the data is token-tagged sentences (``unfreeze.data.load_tagged``: --tokens-col, --tags-col,
    # --tag-col) rather than a table of texts and labels (tokens)
    reads_tagged: ClassVar[bool] = False

    @property
    def default_metric(self) -> str:
        return self.metrics[0]

    def params(self) -> dict[str, Any]:
        """The task's own settings (multilabel's ``thresholds``); none by default."""
        return {}

    def fresh(self) -> Task:
        """An unfitted copy with the same settings."""
        return type(self)(**self.params())

    def check_metric(self, metric: str, where: str = "--metric") -> str:
        if metric not in self.metrics:
            raise UnfreezeError(
                f"{where} {metric!r} is not a metric of the {self.name} task; choose one of: {', '.join(self.metrics)}."
            )
        return metric

    def sign(self, metric: str) -> float:
        """+1 where a higher value of ``metric`` is better, -1 where lower is."""
        return -1.0 if metric in self.lower_is_better else 1.0

    # -- labels as the data layer reads them -------------------------------------------------------

    @classmethod
    def read_labels(
        cls, values: Sequence[object], label_sep: str | None, source: str, column: str | None, warn_mixed: bool = True
    ) -> list:
        """The labels of one column of ``source`` in the task's form (None where missing); one line naming the
        row for a value the task cannot read. ``warn_mixed``: warn when numbers and words mix (single)."""
        from ..data.labels import normalize_labels

        return normalize_labels(values, source, column, warn_mixed=warn_mixed)

    @classmethod
    def classes_of(cls, labels: Sequence[Any]) -> list:
        """The classes the read ``labels`` hold, sorted (ints before words); [] for a task without classes."""
        from ..data.dataset import _label_sort_key

        return sorted(set(labels), key=_label_sort_key)

    @classmethod
    def class_counts(cls, labels: Sequence[Any]) -> dict:
        """Rows per class of ``classes_of(labels)``, in that order."""
        counts = Counter(labels)
        return {label: counts[label] for label in cls.classes_of(labels)}

    @classmethod
    def check_variety(cls, labels: Sequence[Any], require_classes: int, source: str) -> None:
        """Refuse training labels (``require_classes`` >= 2) that teach nothing: here, fewer classes."""
        classes = cls.classes_of(labels)
        if require_classes and len(classes) < require_classes:
            raise UnfreezeError(
                f"{source} has a single class ({classes[0]!r}); a classifier needs at least two. "
                "Check the label column (--label-col)."
            )

    @classmethod
    def strata(cls, labels: Sequence[Any]) -> list:
        """What a seeded stratified sample or split balances, one hashable key per row: here the label."""
        return list(labels)

    @classmethod
    def stratum_shortfall(cls, key: object, count: int, source: str) -> str:
        """The start of the error when stratum ``key`` of ``source`` holds ``count`` rows, too few for
        ``--n-per-class``."""
        return f"Class {key!r} of {source} has {count} example(s)"

    @classmethod
    def check_per_class(cls, source: str) -> None:
        """Refuse ``--n-per-class`` where the task has no classes to take it of; nothing here."""

    # -- labels ------------------------------------------------------------------------------

    def fit_labels(self, y: Any, what: str = "y") -> np.ndarray:
        """Learn the encoding from the training labels ``y``; return their targets."""
        raise NotImplementedError

    def encode(self, y: Any, what: str = "y", unseen: bool = False) -> np.ndarray:
        """Targets of more labels under the learned encoding; a label it never saw is an error, or, with
        ``unseen``, a class (column) of its own after the fitted ones, which no prediction names: scored as
        missed, the way a test set holding a class the training sample lacked is scored."""
        raise NotImplementedError

    @property
    def n_outputs(self) -> int:
        """Units of the head (after ``fit_labels``): one per class."""
        assert self.classes_ is not None, "fit_labels first"
        return len(self.classes_)

    @property
    def fitted(self) -> bool:
        raise NotImplementedError

    # -- inputs and the network --------------------------------------------------------------

    def check_inputs(self, inputs: list, what: str = "X", labels: Any = None) -> None:
        """Refuse inputs the task cannot read (and, with ``labels``, inputs that do not fit their labels); one
        line naming the row. Texts (or text pairs) are checked by the estimator; nothing more here."""

    def encode_inputs(
        self, backbone: Any, inputs: list, targets: np.ndarray | None, max_length: int
    ) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
        """What a network trains on and predicts from: ``(encoded, targets, rows)``, the tokenised examples
        (``models.backbone.Encoded``), their targets, and the input each example comes from (None: example i is
        input i). Here one example per input, truncated to ``max_length``; the tokens task makes windows."""
        return backbone.encode(inputs, max_length), targets, None

    def network(
        self, backbone: Any, pooling: str, layers: Sequence[int], n_outputs: int | None = None
    ) -> TextClassificationModel:
        """The trainable network of the task: pooled hidden states ``layers`` and a linear head of ``n_outputs``
        units (None: ``self.n_outputs``; a bundle gives its head's)."""
        from ..training import TextClassificationModel

        return TextClassificationModel(backbone, n_outputs or self.n_outputs, pooling, layers)

    def logits_of(self, predictor: Any, inputs: list) -> np.ndarray:
        """Raw outputs of a fitted predictor on ``inputs``, in the shape ``scores`` reads against the targets."""
        return predictor.logits(inputs)

    # -- training ----------------------------------------------------------------------------

    def target_tensor(self, targets: np.ndarray) -> torch.Tensor:
        """``targets`` as the loss reads them (a tensor of ``target_dtype``)."""
        import torch

        return torch.as_tensor(np.asarray(targets), dtype=getattr(torch, self.target_dtype))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The per-example loss [n] of raw outputs ``logits`` [n, n_outputs] against ``targets``."""
        raise NotImplementedError

    def loss_weight(self, targets: np.ndarray, mode: str | None, device: Any) -> torch.Tensor | None:
        """The loss's weights for ``class_weight=mode`` ("balanced" or None) from the training targets."""
        return None

    def loss_total(self, targets: torch.Tensor, weight: torch.Tensor | None) -> float:
        """What a batch's summed per-example losses are divided by (its examples, or their class weights)."""
        return float(len(targets))

    def batch_loss(
        self, logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss a training step minimises: the per-example ``loss`` summed over ``loss_total``."""
        return self.loss(logits, targets, weight).sum() / self.loss_total(targets, weight)

    def join(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """The targets of several sets of inputs, one after the other (training, then validation)."""
        return np.concatenate([np.asarray(part, dtype=parts[0].dtype) for part in parts])

    def validation_loss(self, targets: np.ndarray, logits: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            per_example = self.loss(torch.from_numpy(np.asarray(logits, dtype=np.float32)), self.target_tensor(targets))
        return float(per_example.mean())

    # -- outputs and scores --------------------------------------------------------------------

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities [n, K] or values [n] in the user's units, from raw outputs [n, n_outputs]."""
        raise NotImplementedError

    def decide(self, outputs: np.ndarray) -> Any:
        """Predictions in the form the labels were given, from ``outputs``."""
        raise NotImplementedError

    def decide_targets(self, targets: np.ndarray) -> Any:
        """Targets back in the form the labels were given (what ``fit_labels`` was handed)."""
        raise NotImplementedError

    def outputs_of(self, predictor: Any, inputs: Any) -> np.ndarray:
        """``outputs`` of a fitted predictor (``unfreeze.inference.predictors``) on ``inputs``."""
        return self.outputs(self.logits_of(predictor, inputs))

    def scores_of_outputs(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        """Every metric of ``outputs`` (from :meth:`outputs`) against ``targets``."""
        raise NotImplementedError

    def scores(self, targets: np.ndarray, logits: np.ndarray) -> dict[str, float]:
        """Every metric of raw outputs ``logits`` against ``targets``."""
        return self.scores_of_outputs(targets, self.outputs(logits))

    def selection(self, targets: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
        """What early stopping and the learning-rate search maximise: (the default metric, -loss)."""
        value = self.scores(targets, logits)[self.default_metric]
        return value * self.sign(self.default_metric), -self.validation_loss(targets, logits)

    def tune(self, targets: np.ndarray, logits: np.ndarray) -> None:
        """Choose decision settings on validation outputs (multilabel's thresholds); nothing by default."""

    def split(self, targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) row indices of a seeded hold-out of ``fraction``; none when too small."""
        raise NotImplementedError

    # -- persistence ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The fitted task as JSON: what a bundle stores to decode and score predictions."""
        return {"name": self.name, **self.params()}

    @classmethod
    def from_state(cls, meta: dict[str, Any], classes: np.ndarray | None = None) -> Task:
        """The fitted task from ``state()``; ``classes``: the bundle's classes (stored beside the task)."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


def held_out(groups: np.ndarray, fraction: float, seed: int, min_group: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A seeded hold-out of ``fraction`` of the rows, stratified by ``groups`` (ints); none when a group has
    fewer than ``min_group`` rows or the hold-out cannot hold every group once."""
    everything = np.arange(len(groups))
    if fraction == 0 or not len(groups):
        return everything, everything[:0]
    counts = np.bincount(groups)
    present = counts[counts > 0]
    n_val = round(fraction * len(groups))
    if n_val < len(present) or present.min() < min_group:
        return everything, everything[:0]
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for g in range(len(counts)):
        members = rng.permutation(np.flatnonzero(groups == g))
        if len(members):
            val.extend(members[: max(1, round(len(members) * fraction))].tolist())
    val_set = set(val)
    return np.array([i for i in everything if i not in val_set], dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def as_rows(y: Any, what: str) -> list:
    """``y`` as a list of rows (a numpy array, a pandas Series or any sequence)."""
    if isinstance(y, (str, bytes)):
        raise UnfreezeError(f"{what} must be a sequence of labels, not a single string.")
    if hasattr(y, "tolist"):
        return list(y.tolist())
    if not isinstance(y, Sequence) and not hasattr(y, "__iter__"):
        raise UnfreezeError(f"{what} must be a sequence of labels; got {type(y).__name__}.")
    return list(y)
