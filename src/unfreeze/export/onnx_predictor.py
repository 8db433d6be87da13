"""Classifiers that predict with a bundle's ONNX export: ``Classifier.load(path, runtime="onnx")``.

``OnnxPredictor`` implements the ``unfreeze.inference.predictors.Predictor`` interface (``logits``,
``proba``) over one head of an ``OnnxClassifier``; ``load_onnx_classifier`` returns a fitted
``Classifier`` (a ``Regressor`` for a regression bundle) whose ``predictor_`` is one, so
``predict``, ``predict_proba``, ``decision_function``, ``score`` and ``evaluate`` work as for
the PyTorch runtime, and ``task_``, ``classes_``, ``strategy_``, ``pooling_``, ``layers_``,
``max_length_`` come from the bundle (a multilabel bundle predicts label sets with its
stored thresholds, a regression bundle values). It predicts only: no PyTorch weights are
loaded (``backbone_`` is None), and saving or refitting goes through the bundle loaded with
the torch runtime.
``load_onnx_suite`` does the same for a ``MultiHeadClassifier``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import UnfreezeError
from ..inference.bundle import CHECK_TEXTS_KEY, MULTIHEAD_KIND, read_heads, read_tensors
from ..inference.predictors import Predictor, PredictorState
from .locate import check_runtime, open_export
from .manifest import DEFAULT_HEAD

PRECISIONS = ("fp32", "int8")


class OnnxPredictor(Predictor):
    """One head of an ONNX export as a fitted predictor (not stored in bundles: it is read from the export).

    Parameters
    ----------
    runtime : OnnxClassifier
        The loaded export (``unfreeze.export.load_export``).
    head : str
        The head to predict with (``"default"`` for a single-head bundle).
    """

    type_name: ClassVar[str] = "onnx"

    def __init__(self, runtime, head: str = DEFAULT_HEAD) -> None:
        self.runtime = runtime
        self.head = head
        self.backbone = None  # no PyTorch model behind it
        self.progress = False
        self.precision = runtime.precision  # the graph's, fixed when the export was loaded

    @property
    def batch_size(self) -> int:
        return self.runtime.runner.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.runtime.runner.batch_size = int(value)

    @property
    def n_truncated(self) -> int:
        return self.runtime.n_truncated

    def logits(self, inputs: Sequence) -> np.ndarray:
        scores = self.runtime.decision_function(inputs, self.head)
        if scores.ndim == 2:
            return scores
        # one column: scikit-learn's two classes (the log-odds of class 1, as EmbeddingHead.logits), or one output
        two = self.runtime.tasks[self.head].n_outputs == 2
        return np.column_stack([np.zeros_like(scores), scores]) if two else scores.reshape(-1, 1)

    def proba(self, inputs: Sequence) -> np.ndarray:
        return self.runtime.predict_proba(inputs, self.head)

    def state(self) -> PredictorState:
        raise UnfreezeError(
            "A classifier loaded with runtime='onnx' only predicts; load the bundle with the torch "
            "runtime (the default) to save or refit it."
        )

    @classmethod
    def from_state(cls, context, strategy, state):
        raise UnfreezeError("ONNX predictors are read from an export folder, not from a bundle's files.")


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise UnfreezeError(
            f"The 'precision' parameter must be one of {', '.join(map(repr, PRECISIONS))}. Got {precision!r}."
        )


def _check_onnx_runtime(runtime: str, owner: str) -> None:
    check_runtime(runtime, owner)
    if runtime != "onnx":
        raise UnfreezeError(f"{owner}: precision= and onnx= choose an ONNX export; pass runtime='onnx' with them.")


def _check_device(device: str | None) -> None:
    if device not in (None, "cpu"):
        raise UnfreezeError(
            f"device={device!r} applies to the torch runtime; runtime='onnx' runs on the CPU "
            "(ONNX Runtime's CPU provider)."
        )


def load_onnx_classifier(
    cls,
    path: str | Path,
    head: str | None = None,
    runtime: str = "onnx",
    precision: str = "fp32",
    onnx: str | Path | None = None,
    device: str | None = None,
) -> Any:
    """A fitted ``cls`` (``Classifier``, ``Regressor``; ``TextEstimator``: the one the bundle's task needs)
    predicting with the bundle's export (see the module docstring)."""
    from ..strategies import Features, strategy_class
    from ..training.settings import Training

    _check_onnx_runtime(runtime, "Classifier.load")
    _check_precision(precision)
    _check_device(device)
    path = Path(path)
    config, exported = open_export(path, onnx, precision)
    if config.get("kind") == MULTIHEAD_KIND:
        names = list(config["heads"])
        if head is None:
            if len(names) > 1:
                raise UnfreezeError(
                    f"{path} holds {len(names)} heads ({', '.join(names)}): name one "
                    "(Classifier.load(path, head=NAME)) or use MultiHeadClassifier."
                )
            head = names[0]
        if head not in names:
            raise UnfreezeError(f"Unknown head {head!r}; this bundle has: {', '.join(names)}.")
        entry = config["heads"][head]
        params = entry.get("params", {})
        task = exported.tasks[head]
        clf = _estimator(cls, task, path)(
            model=config["backbone"]["reference"],
            strategy=Features(C=params.get("C"), cv=params.get("cv", 5), alpha=params.get("alpha")),
            pooling=entry["pooling"],
            layers=list(entry["layers"]),
            max_length=config["max_length"],
            batch_size=config.get("batch_size", 32),
            seed=params.get("seed", 0),
            progress=False,
        )
        _set_task(clf, task)
        strategy, training, labels = clf.strategy, Training(), entry["labels"]
        pooling, layers, record, sample = entry["pooling"], entry["layers"], entry.get("fit_record", {}), entry
    else:
        if head is not None and head != DEFAULT_HEAD:
            raise UnfreezeError(f"{path} is a single-head bundle; its one head is called 'default', not {head!r}.")
        head = DEFAULT_HEAD
        strategy = strategy_class(config["strategy"]["name"])(**config["strategy"]["params"])
        training = Training(**config.get("training", {}))
        task = exported.tasks[head]
        params = {k: v for k, v in config["classifier"].items() if k != "task"}
        clf = _estimator(cls, task, path)(**{**params, "device": None}, strategy=strategy, training=training)
        _set_task(clf, task)
        labels, pooling, layers = config["labels"], config["pooling"], config["layers"]
        record, sample = config.get("fit_record", {}), config
    clf.predictor_ = OnnxPredictor(exported, head)
    clf.task_ = task
    if task.is_classification:
        clf.classes_ = np.asarray(labels)
    clf.strategy_, clf.training_ = strategy, training
    clf.backbone_, clf.base_fingerprint_ = None, config["backbone"].get("fingerprint")
    clf.pooling_, clf.layers_, clf.max_length_ = pooling, tuple(layers), exported.max_length
    clf.fit_record_, clf.n_truncated_ = record, 0
    clf.check_texts_ = sample.get(CHECK_TEXTS_KEY)
    clf.runtime_ = "onnx"
    return clf


def _estimator(cls, task, path: Path):
    """The estimator class that loads a bundle of ``task``: ``cls``, or the task's where ``cls`` is the base."""
    from ..estimators import Classifier, Regressor

    wanted = Classifier if task.is_classification else Regressor
    if issubclass(wanted, cls):
        return wanted
    raise UnfreezeError(
        f"{path} holds a {task.name} model, which {cls.__name__} does not load: use {wanted.__name__}.load."
    )


def _set_task(clf, task) -> None:
    """The ``task`` parameter as the bundle's task (a Classifier's; a Regressor's is fixed)."""
    if "task" in clf.get_params(deep=False):
        clf.set_params(task=task.name if task.params() == type(task)().params() else task.fresh())


def load_onnx_suite(
    cls,
    path: str | Path,
    runtime: str = "onnx",
    precision: str = "fp32",
    onnx: str | Path | None = None,
    device: str | None = None,
) -> Any:
    """A ``cls`` (``MultiHeadClassifier``) whose ``predict``/``predict_proba`` run the bundle's export."""
    from ..features.logistic import Head
    from ..inference.head_tasks import head_from_state
    from ..tasks import task_from_state

    _check_onnx_runtime(runtime, "MultiHeadClassifier.load")
    _check_precision(precision)
    _check_device(device)
    path = Path(path)
    config, exported = open_export(path, onnx, precision)
    if config.get("kind") == MULTIHEAD_KIND:
        heads = read_heads(path, config)
    elif config["predictor"].get("type") == "embedding_head" and not config["predictor"].get("tuned"):
        head = head_from_state(read_tensors(path, "head", "np"), config["predictor"]["head"])
        labels = config["labels"]
        task = task_from_state(config.get("task"), labels or None)
        heads = {
            DEFAULT_HEAD: Head(
                DEFAULT_HEAD, config["pooling"], tuple(config["layers"]), np.asarray(labels), head, task=task
            )
        }
    else:
        raise UnfreezeError(
            f"{path} was trained with strategy {config['strategy']['name']!r}: it is one classifier, "
            "not heads on a shared backbone. Load it with Classifier.load(path, runtime='onnx')."
        )
    suite = cls(
        model=config["backbone"]["reference"],
        max_length=exported.max_length,
        batch_size=exported.runner.batch_size,
        progress=False,
    )
    suite.heads = heads
    suite._onnx = exported
    return suite


__all__ = ["OnnxPredictor", "load_onnx_classifier", "load_onnx_suite"]
