"""An export's self-check: its outputs against PyTorch's on the same texts, fp32 within a tolerance.

Outputs are each head's task's (``unfreeze.tasks``): class or per-label probabilities,
compared absolutely, or a regression's values, compared relative to their size (the same
tolerance for values up to 1). An int8 graph is compared by the decisions it agrees on
(labels, label sets; none for values) and the change of the task's default score (accuracy,
micro-F1, Spearman) where the true labels are known; a check that fails raises
:class:`ExportCheckError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UnfreezeError
from .runtime import load_export

FP32_ATOL = 1e-4


# checked when the caller gives no texts: short and long, punctuation, digits
DEFAULT_CHECK_TEXTS = (
    "A quiet, beautifully made film.",
    "Terrible.",
    "The plot wanders for two hours and the ending explains nothing, yet the cast is so good that I stayed.",
    "ok",
    "Numbers 1, 2 and 3; symbols & marks!",
    "I would not watch it again, but my kids loved every minute of it.",
    "An utterly forgettable sequel",
    "What a surprise: funny, warm and smart.",
)


@dataclass
class Int8Check:
    """How the int8 graph's answers compare with PyTorch's on the check texts, for one head."""

    agreement: float | None  # share of texts whose decision (label, label set) is PyTorch's; None for values
    max_abs_diff: float  # of outputs (probabilities; values relative to their size)
    accuracy_torch: float | None = None  # the task's default score against the given labels
    accuracy_int8: float | None = None
    metric: str = "accuracy"  # the score accuracy_* hold

    @property
    def accuracy_delta(self) -> float | None:
        if self.accuracy_torch is None or self.accuracy_int8 is None:
            return None
        return self.accuracy_int8 - self.accuracy_torch


@dataclass
class ExportCheck:
    """The result of :func:`check_export`."""

    n_inputs: int
    atol: float
    fp32_max_abs_diff: float
    fp32_agreement: float | None  # None when no head decides labels (values only)
    int8: dict[str, Int8Check] = field(default_factory=dict)
    outputs: str = "probability"  # what was compared: "output" where a head gives values

    def to_dict(self) -> dict:
        out = asdict(self)
        for name, check in self.int8.items():
            out["int8"][name]["accuracy_delta"] = check.accuracy_delta
        return out

    def lines(self) -> list[str]:
        """Human-readable lines for the CLI to print."""
        agree = "" if self.fp32_agreement is None else f"; labels agree on {self.fp32_agreement:.1%}"
        lines = [
            f"fp32: max |{self.outputs} difference| vs PyTorch {self.fp32_max_abs_diff:.2e} "
            f"(allowed {self.atol:.0e}) on {self.n_inputs} texts{agree}"
        ]
        for name, check in self.int8.items():
            text = (
                f"int8 [{name}]: labels agree with PyTorch on {check.agreement:.1%}, "
                f"max |probability difference| {check.max_abs_diff:.3f}"
                if check.agreement is not None
                else f"int8 [{name}]: max |value difference| (relative) {check.max_abs_diff:.3f}"
            )
            if check.accuracy_delta is not None:
                text += (
                    f"; {check.metric} {check.accuracy_int8:.4f} vs PyTorch {check.accuracy_torch:.4f} "
                    f"({check.accuracy_delta:+.4f})"
                )
            lines.append(text)
        return lines


class ExportCheckError(UnfreezeError):
    """The exported graph's answers differ from PyTorch's beyond the tolerance."""


def check_export(
    folder: str | Path,
    inputs: Sequence,
    reference: Mapping[str, np.ndarray] | np.ndarray,
    y: Mapping[str, Sequence] | Sequence | None = None,
    *,
    atol: float = FP32_ATOL,
    batch_size: int = 32,
    min_int8_agreement: float | None = None,
) -> ExportCheck:
    """Compare the export's outputs (each head's task's) with PyTorch's on ``inputs``; raise when fp32 differs.

    Parameters
    ----------
    folder : str or Path
        The export folder to check.
    inputs : sequence of str or (str, str)
        The texts (or text pairs) to check on.
    reference : mapping of str to ndarray, or ndarray
        PyTorch's outputs per head name, in the head's task's shape (probabilities
        [n_inputs, n_classes], columns in the head's label order; values [n_inputs]); a
        bare array stands for the only head.
    y : mapping of str to sequence, or sequence, optional
        True labels (per head, or of the only head): the change of int8's score (the task's
        default: accuracy, micro-F1, Spearman) is reported,
        on the inputs whose label is not None.
    atol : float
        Largest allowed difference of fp32 outputs (probabilities; values relative to their size over 1).
    batch_size : int
        Inputs per graph run.
    min_int8_agreement : float or None
        When given, an int8 graph whose labels agree with PyTorch's on a smaller share
        of ``inputs`` fails the check too.

    Returns
    -------
    ExportCheck

    Raises
    ------
    ExportCheckError
        When the fp32 graph differs by more than ``atol``, or int8 agrees too little.
    """
    if len(inputs) == 0:
        raise UnfreezeError("check_export needs at least one input text.")
    fp32 = load_export(folder, "fp32", batch_size=batch_size)
    reference = _per_head(reference, fp32.head_names, "reference")
    labels = _per_head(y, fp32.head_names, "y") if y is not None else {}
    got = fp32.outputs_heads(inputs, list(reference))
    diff, agree, deciding = 0.0, 1.0, False
    for name, ref in reference.items():
        ref = np.asarray(ref, dtype=np.float64)
        if ref.shape != got[name].shape:
            raise UnfreezeError(
                f"Reference outputs of head {name!r} have shape {ref.shape}; the export gives {got[name].shape}."
            )
        diff = max(diff, _difference(got[name], ref))
        share = _agreement(fp32.tasks[name], got[name], ref)
        if share is not None:
            agree, deciding = min(agree, share), True
    if not diff <= atol:  # also catches NaN
        raise ExportCheckError(
            f"The ONNX export does not match PyTorch: fp32 outputs differ by up to "
            f"{diff:.2e} (allowed {atol:.0e}) on {len(inputs)} texts; nothing was exported."
        )
    values = not all(fp32.tasks[name].is_classification for name in reference)
    check = ExportCheck(
        len(inputs), atol, diff, agree if deciding else None, outputs="output" if values else "probability"
    )
    if "int8" in fp32.manifest["graphs"]:
        int8 = load_export(folder, "int8", batch_size=batch_size)
        quantised = int8.outputs_heads(inputs, list(reference))
        for name, ref in reference.items():
            ref = np.asarray(ref, dtype=np.float64)
            task = fp32.tasks[name]
            result = Int8Check(
                _agreement(task, quantised[name], ref), _difference(quantised[name], ref), metric=task.default_metric
            )
            known = _known_labels(labels.get(name), len(inputs))
            if known is not None:
                rows, truth = known
                result.accuracy_torch, result.accuracy_int8 = _scores(task, truth, ref[rows], quantised[name][rows])
            check.int8[name] = result
            too_few = min_int8_agreement is not None and result.agreement is not None
            if too_few and result.agreement < min_int8_agreement:  # type: ignore[operator]
                raise ExportCheckError(
                    f"The int8 export's labels agree with PyTorch's on only {result.agreement:.1%} "
                    f"of {len(inputs)} texts (head {name!r}; at least {min_int8_agreement:.1%} "
                    "required); nothing was exported."
                )
    return check


def _scores(task, truth: np.ndarray, reference: np.ndarray, quantised: np.ndarray) -> tuple[float, float]:
    """The task's default score of PyTorch's and of int8's outputs against the true labels (single: a label
    the head does not have counts as a miss)."""
    metric = task.default_metric
    try:
        targets = task.encode(list(truth), "the check labels")
    except UnfreezeError:
        if task.classes_ is None:
            raise
        # labels outside the head's classes: score the decisions directly, as a miss each
        classes = task.classes_
        return (
            float(np.mean(classes[reference.argmax(1)] == truth)),
            float(np.mean(classes[quantised.argmax(1)] == truth)),
        )
    return task.scores_of_outputs(targets, reference)[metric], task.scores_of_outputs(targets, quantised)[metric]


def _difference(got: np.ndarray, reference: np.ndarray) -> float:
    """The largest difference of outputs: absolute for probabilities, relative to the size of values over 1."""
    got, reference = np.asarray(got, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if not got.size:
        return 0.0
    return float((np.abs(got - reference) / np.maximum(1.0, np.abs(reference))).max())


def _agreement(task, got: np.ndarray, reference: np.ndarray) -> float | None:
    """The share of inputs whose decision (a label, a label set) is the reference's; None for values."""
    if not task.is_classification:
        return None
    mine, theirs = task.decide(got), task.decide(reference)
    return float(np.mean([np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(mine, theirs, strict=True)]))


def _known_labels(labels: Sequence | None, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, labels) of the inputs whose label is known (not None), or None when none is.

    A multi-head bundle's heads were fitted on different texts: each knows the labels of its own only.
    """
    if labels is None:
        return None
    labels = list(labels)
    if len(labels) != n:
        raise UnfreezeError(f"{len(labels)} labels were given for {n} check inputs; they must match.")
    rows = np.array([i for i, y in enumerate(labels) if y is not None], dtype=np.int64)
    if not len(rows):
        return None
    truth = np.empty(len(rows), dtype=object)
    truth[:] = [labels[i] for i in rows]
    return rows, truth


def _per_head(value, names: list[str], what: str) -> dict:
    if isinstance(value, Mapping):
        unknown = [n for n in value if n not in names]
        if unknown:
            raise UnfreezeError(f"{what} names head {unknown[0]!r}; the export has: {', '.join(names)}.")
        return dict(value)
    if len(names) != 1:
        raise UnfreezeError(f"This export has {len(names)} heads: give {what} as a mapping from head name.")
    return {names[0]: value}
