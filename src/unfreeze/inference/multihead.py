"""Many classifiers on one frozen backbone: one forward pass, every head applied.

A multi-head bundle holds a reference to one frozen backbone (never its weights) and any
number of named logistic heads, each fitted on its own data with its own pooling, layer
spec and label set:

    unfreeze.json                      backbone, max length, and one entry per head
    heads/NAME.DIGEST.safetensors      one file per head (standardisation + coefficients)

Changing the heads is atomic: a head's file is written under a new name first, then
``unfreeze.json`` is replaced in one rename, then files no head names any more are
deleted. A crash at any point leaves a bundle that loads, with the old heads or the new.
What those files hold, and loading them, is in ``multihead_format``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnfreezeError
from ..estimators import Classifier, Regressor
from ..features.logistic import Head
from ..models.backbone import Backbone, TextInput
from ..storage.cache import atomic_path
from ..strategies import Features
from ..tasks import Task, make_task
from .bundle import CHECK_TEXTS_KEY, CONFIG_FILE, check_head_name, make_shareable
from .head_tasks import head_outputs, task_of
from .multihead_format import DEFAULT_HEAD, HEADS_DIR, bundle_files, load_suite


class MultiHeadClassifier:
    """Named heads sharing one frozen backbone, each of its own task: one class per text (a logistic head), a
    set of labels (one-vs-rest) or a number (ridge), as the ``features`` strategy fits them.

    Parameters
    ----------
    model : str
        Catalog name, local model folder or hub id of the shared backbone.
    max_length : int
        Tokens per input, the same for every head (they share the forward pass).
    batch_size : int
        Inputs per forward pass.
    device : str or None
        ``"cpu"``, ``"cuda"``...; None picks CUDA when present.
    progress : bool
        Show progress bars.
    precision : {"auto", "fp32", "bf16"}
        Precision of the shared forward pass (every head shares it): ``auto`` is bf16 where
        the hardware runs it fast (``unfreeze.machine.hardware``). A loaded bundle predicts in the
        precision its heads were fitted in.

    Examples
    --------
    >>> suite = MultiHeadClassifier("minilm-l6")
    >>> suite.add_head("sentiment", texts, labels)                       # doctest: +SKIP
    >>> suite.add_head("topic", texts2, topics, pooling="cls", layers="-2")  # doctest: +SKIP
    >>> suite.add_head("tags", texts3, tag_lists, task="multilabel")      # doctest: +SKIP
    >>> suite.predict(["a new text"])                                     # doctest: +SKIP
    {'sentiment': array(['pos'], ...), 'topic': array(['sport'], ...), 'tags': [('drama',)]}
    """

    def __init__(
        self,
        model: str = "minilm-l6",
        max_length: int = 256,
        batch_size: int = 32,
        device: str | None = None,
        progress: bool = True,
        precision: str = "auto",
    ) -> None:
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.precision = precision
        self.heads: dict[str, Head] = {}
        self._backbone: Backbone | None = None
        self._inference_precision: str | None = None
        self._onnx = None  # an OnnxClassifier when loaded with runtime="onnx": prediction runs the export

    # -- the shared backbone -----------------------------------------------------------------

    @property
    def backbone(self):
        """The loaded base model (fp32): its fingerprint and limits name the bundle's backbone."""
        if self._backbone is None:
            from ..models.loaded import shared_backbone

            self._backbone = shared_backbone(str(self.model), self.device)
        return self._backbone

    @property
    def inference_precision(self) -> str:
        """ "fp32" or "bf16": what the shared forward pass runs in (``precision`` resolved on this hardware)."""
        if self._inference_precision is None:
            from ..machine.hardware import check_precision, run_precision

            check_precision(self.precision)
            self._inference_precision = run_precision(self.precision, self.backbone.device).inference
        return self._inference_precision

    @property
    def inference_backbone(self):
        """The shared model the forward pass runs on: the base model, or its bf16 copy."""
        from ..machine.hardware import RunPrecision
        from ..models.loaded import shared_backbone

        return shared_backbone(str(self.model), self.device, RunPrecision(self.inference_precision).inference_dtype)

    @property
    def fingerprint(self) -> str:
        return self.backbone.fingerprint()  # the backbone caches it

    # -- heads -------------------------------------------------------------------------------

    def add_head(
        self,
        name: str,
        X: Sequence[TextInput],
        y: Sequence,
        pooling: str = "auto",
        layers: str | int | Sequence[int] = "-1",
        C: float | None = None,
        cv: int = 5,
        seed: int = 0,
        cache: bool = True,
        replace: bool = False,
        data: str | None = None,
        task: str | Task = "single",
        alpha: float | None = None,
    ) -> Head:
        """Fit a head of ``task`` (``"single"``, ``"multilabel"``, ``"regression"`` or a Task) on ``X``, ``y``
        with the ``features`` strategy, and add it under ``name``. Returns the head.

        ``C`` is the strength of a logistic head (single, multilabel), ``alpha`` of a ridge head (regression);
        None chooses it by cross-validation."""
        self._refuse_onnx()
        check_head_name(name)
        if name in self.heads and not replace:
            raise UnfreezeError(
                f"This bundle already has a head named {name!r}; remove it first or pass replace=True (--replace)."
            )
        fresh = make_task(task)
        # a Classifier for classes and label sets, a Regressor for scores: asked of the task, not its name
        params: dict[str, Any] = dict(
            model=str(self.model),
            strategy=Features(C=C, cv=cv, alpha=alpha),
            pooling=pooling,
            layers=layers,
            precision=self.inference_precision,
            max_length=self.max_length,
            batch_size=self.batch_size,
            seed=seed,
            cache=cache,
            device=self.device,
            progress=self.progress,
        )
        estimator = Classifier(**params, task=fresh) if fresh.is_classification else Regressor(**params)
        clf = estimator.fit(X, y)
        head = self._head_from(name, clf, data)
        self.heads[name] = head
        return head

    def add_classifier(self, name: str, clf, data: str | None = None) -> Head:
        """Add a fitted ``features`` Classifier (or Regressor, of any task) on the same backbone as a head."""
        self._refuse_onnx()
        check_head_name(name)
        return self.heads.setdefault(name, self._head_from(name, clf, data))

    def _head_from(self, name: str, clf, data: str | None) -> Head:
        if clf.strategy_.changes_weights:
            raise UnfreezeError(
                f"Head {name!r}: only a classifier on the frozen backbone can share the forward "
                f"pass; this one was trained with strategy {clf.strategy_.name!r}."
            )
        if clf.base_fingerprint_ != self.fingerprint:
            raise UnfreezeError(f"Head {name!r} was fitted on another model than this bundle's {self.model!r}.")
        if clf.max_length_ != self.backbone.length_limit(self.max_length):
            raise UnfreezeError(
                f"Head {name!r} was fitted with max_length {clf.max_length_}; this bundle uses "
                f"{self.backbone.length_limit(self.max_length)}."
            )
        fitted_in = (clf.fit_record_.get("precision") or {}).get("inference", "fp32")
        if fitted_in != self.inference_precision:
            raise UnfreezeError(
                f"Head {name!r} was fitted on {fitted_in} embeddings; this bundle's forward pass runs "
                f"in {self.inference_precision}. Refit it with precision={self.inference_precision!r}."
            )
        info = {
            "params": {
                "C": clf.strategy_.C,
                "cv": clf.strategy_.cv,
                "seed": clf.seed,
                **({"alpha": clf.strategy_.alpha} if getattr(clf.strategy_, "alpha", None) is not None else {}),
            },
            "fit_record": clf.fit_record_,
            "added": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        if data is not None:
            info["data"] = data
        if getattr(clf, "check_texts_", None):
            info[CHECK_TEXTS_KEY] = clf.check_texts_  # `unfreeze export` checks itself on them
        task = clf.task_
        classes = np.asarray(task.classes_ if task.classes_ is not None else [])
        return Head(name, clf.pooling_, tuple(clf.layers_), classes, clf.predictor_.head, info, task=task)

    def _refuse_onnx(self) -> None:
        if self._onnx is not None:
            raise UnfreezeError(
                "This suite predicts with an ONNX export, which has only the heads it was exported "
                "with: load the bundle with the torch runtime to add heads, then export it again."
            )

    def remove_head(self, name: str) -> None:
        self._check_heads([name])
        del self.heads[name]

    def _check_heads(self, names: Sequence[str] | None) -> list[str]:
        if not self.heads:
            raise UnfreezeError("This bundle has no heads yet. Add one with `unfreeze heads add`.")
        if names is None:
            return list(self.heads)
        if isinstance(names, str):
            names = [names]
        unknown = [n for n in names if n not in self.heads]
        if unknown:
            raise UnfreezeError(f"Unknown head {unknown[0]!r}; this bundle has: {', '.join(self.heads)}.")
        return list(dict.fromkeys(names))

    # -- prediction --------------------------------------------------------------------------

    def outputs(self, X: Sequence[TextInput], heads: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Each head's outputs in its task's shape: class probabilities [n, K] (single; columns in the order
        of that head's ``classes``), per-label probabilities [n, K] (multilabel) or values [n] (regression),
        from one forward pass over ``X`` that pools what every asked head needs."""
        from ..features.embed import forward_pooled

        names = self._check_heads(heads)
        inputs = Classifier.check_inputs(X)
        if self._onnx is not None:
            return self._onnx.outputs_heads(inputs, names)
        backbone = self.inference_backbone
        encoded = backbone.encode(inputs, self.max_length)
        wanted = [(layer, self.heads[n].pooling) for n in names for layer in self.heads[n].layers]
        pooled = forward_pooled(backbone, encoded, wanted, self.batch_size, self.progress)
        out = {}
        for n in names:
            head = self.heads[n]
            features = np.concatenate([pooled[(layer, head.pooling)] for layer in head.layers], axis=1)
            out[n] = head_outputs(head.head, task_of(head), features)
        return out

    def predict_proba(self, X: Sequence[TextInput], heads: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Probabilities per head (columns in the order of that head's ``classes``; a multilabel head's are each
        label's own), from one forward pass. Every head when ``heads`` is None, except regression heads, which
        have values, not probabilities (:meth:`outputs`, :meth:`predict`)."""
        names = self._check_heads(heads)
        scoring = [n for n in names if not task_of(self.heads[n]).is_classification]
        if heads is None:
            names = [n for n in names if n not in scoring]
        elif scoring:
            raise UnfreezeError(
                f"Head {scoring[0]!r} predicts values (task {task_of(self.heads[scoring[0]]).name}), not "
                "probabilities; ask outputs() or predict() for it."
            )
        return self.outputs(X, names) if names else {}

    def predict(self, X: Sequence[TextInput], heads: Sequence[str] | None = None) -> dict[str, object]:
        """Predictions per head in its task's form: labels (single), label sets (multilabel; an indicator matrix
        for a head fitted on one), values (regression)."""
        return {n: task_of(self.heads[n]).decide(out) for n, out in self.outputs(X, heads).items()}

    def as_classifier(self, name: str) -> Classifier:
        """One head as a fitted ``Classifier`` (a ``Regressor`` for a regression head; features strategy) on
        the shared backbone."""
        (name,) = self._check_heads([name])
        estimator = Classifier if task_of(self.heads[name]).is_classification else Regressor
        return estimator.from_head(
            str(self.model),
            self.heads[name],
            self.max_length,
            self.batch_size,
            self.device,
            self.progress,
            precision=self.inference_precision,
        )

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write a multi-head bundle at ``path`` holding exactly these heads (atomic: a bundle
        already there is switched over in one rename, never left half-written)."""
        path = Path(path)
        with _bundle_lock(path):
            _write(self, path)
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | None = None,
        runtime: str = "torch",
        precision: str | None = None,
        onnx: str | Path | None = None,
    ) -> MultiHeadClassifier:
        """Load a multi-head bundle, or a single-head features bundle as one head named 'default'.

        ``precision``: None predicts in the precision the heads were fitted in; ``"auto"``,
        ``"fp32"`` or ``"bf16"`` choose (heads added later must then match it).

        ``runtime="onnx"`` predicts with the bundle's ONNX export (``path/onnx``, or ``onnx``;
        ``precision`` ``"fp32"`` or ``"int8"``): one graph pass answers every head; heads
        cannot be added to such a suite."""
        if runtime != "torch" or onnx is not None or precision == "int8":
            from ..export.onnx_predictor import load_onnx_suite

            return load_onnx_suite(cls, path, runtime, precision or "fp32", onnx, device)
        return load_suite(cls, Path(path), device, precision)


# -- writing bundle files --------------------------------------------------------------------------------


@contextlib.contextmanager
def _bundle_lock(path: Path) -> Iterator[None]:
    """Serialise writers of one bundle (two `heads add` at once must not lose a head)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(suite: MultiHeadClassifier, path: Path) -> None:
    """Save ``suite`` at ``path``: a new bundle in one rename; in an existing one, new head files first,
    then the config that switches to them, then the files no head names any more."""
    text, blobs = bundle_files(suite)
    if not path.exists():
        with atomic_path(path) as tmp:  # a new bundle appears whole or not at all
            (tmp / HEADS_DIR).mkdir(parents=True)
            for file, blob in blobs.items():
                (tmp / file).write_bytes(blob)
            (tmp / CONFIG_FILE).write_text(text)
            make_shareable(tmp)
        return
    if not (path / CONFIG_FILE).exists():
        raise UnfreezeError(f"{path} exists and is not an unfreeze bundle; choose another path.")
    (path / HEADS_DIR).mkdir(exist_ok=True)
    for file, blob in blobs.items():
        if not (path / file).exists():
            with atomic_path(path / file) as tmp:
                tmp.write_bytes(blob)
                _fsync(tmp)
    with atomic_path(path / CONFIG_FILE) as tmp:  # the one step that switches to the new heads
        tmp.write_text(text)
        _fsync(tmp)
    _remove_unreferenced(path, set(blobs))


def _fsync(file: Path) -> None:
    with open(file, "rb") as handle:
        os.fsync(handle.fileno())


def _remove_unreferenced(path: Path, keep: set[str]) -> None:
    # files of removed or replaced heads, and a single-head bundle's old head file
    for file in (path / HEADS_DIR).glob("*.safetensors"):
        if f"{HEADS_DIR}/{file.name}" not in keep:
            file.unlink(missing_ok=True)
    for stale in ("head.safetensors", "trained.safetensors"):
        (path / stale).unlink(missing_ok=True)


# -- bundle-level operations (the `unfreeze heads` commands) -----------------------------------


def new_suite_for(
    path: Path, model: str | None, max_length: int, batch_size: int, device: str | None = None, precision: str = "auto"
) -> MultiHeadClassifier:
    """An empty suite on the backbone of the bundle at ``path`` (or on ``model`` for a new bundle, in
    ``precision``), to fit heads in before they are added with :func:`add_heads`."""
    if not path.exists():
        return MultiHeadClassifier(
            model=model or "minilm-l6", max_length=max_length, batch_size=batch_size, device=device, precision=precision
        )
    existing = MultiHeadClassifier.load(path, device=device)
    if model is not None:
        from ..models.loaded import shared_backbone

        if shared_backbone(str(model), device).fingerprint() != existing.fingerprint:
            raise UnfreezeError(
                f"{path} holds heads on model {existing.model!r}, not {model!r}; "
                "every head of a bundle shares one backbone."
            )
    existing.heads = {}
    return existing


def add_heads(path: Path, suite: MultiHeadClassifier, replace: bool = False) -> MultiHeadClassifier:
    """Add the heads of ``suite`` to the bundle at ``path`` (created when missing), atomically.

    The bundle is re-read under a lock, so heads that another process added meanwhile stay.
    """
    path = Path(path)
    with _bundle_lock(path):
        if path.exists():
            current = MultiHeadClassifier.load(path, device=suite.device)
            if current.fingerprint != suite.fingerprint:
                raise UnfreezeError(f"{path} holds heads on another model than {suite.model!r}.")
            taken = sorted(set(current.heads) & set(suite.heads))
            if taken and not replace:
                raise UnfreezeError(
                    f"{path} already has a head named {taken[0]!r}; pass --replace to refit it, or choose another name."
                )
            current.heads.update(suite.heads)
            suite = current
        _write(suite, path)
    return suite


def remove_head(path: Path, name: str) -> MultiHeadClassifier:
    """Remove head ``name`` from the bundle at ``path``, atomically."""
    path = Path(path)
    with _bundle_lock(path):
        suite = MultiHeadClassifier.load(path)
        suite.remove_head(name)
        if not suite.heads:
            raise UnfreezeError(f"{name!r} is the only head of {path}; a bundle needs one. Delete the folder instead.")
        _write(suite, path)
    return suite


__all__ = ["DEFAULT_HEAD", "HEADS_DIR", "MultiHeadClassifier", "add_heads", "new_suite_for", "remove_head"]
