"""One predictor behind ``unfreeze predict`` and the HTTP service: any bundle as named heads.

A multi-head or features bundle is a :class:`~unfreeze.inference.multihead.MultiHeadClassifier` (one
forward pass for every head); a fine-tuned bundle is its one head, named ``default``.

With ``runtime="onnx"`` the bundle's ONNX export (``unfreeze export``; ``BUNDLE/onnx`` or
the folder given) answers instead, through ONNX Runtime: the same heads, the same
``predict_proba(texts, heads)``, one graph pass per batch for every head. The export must
have been made from this bundle as it is now (``unfreeze.export.exporter.check_belongs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UnfreezeError
from ..export.locate import RUNTIMES
from .bundle import SINGLE_KIND, read_config

if TYPE_CHECKING:
    from ..estimators import TextEstimator
    from ..export.runtime import OnnxClassifier
    from ..tasks import Task
    from .multihead import MultiHeadClassifier

DEFAULT_HEAD = "default"  # the name a single-head bundle's head goes by (as in unfreeze.inference.multihead)


TORCH_PRECISIONS = ("auto", "fp32", "bf16")  # unfreeze.machine.hardware.PRECISIONS
ONNX_PRECISIONS = ("fp32", "int8")


def check_runtime_options(
    runtime: str, precision: str | None = None, onnx: str | Path | None = None, device: str | None = None
) -> None:
    """Options that only make sense together, checked before anything loads (one line each).

    ``precision``: None is the bundle's own (the one it was fitted in; an export's fp32 graph);
    the torch runtime takes auto, fp32 or bf16; the ONNX runtime fp32 or int8."""
    if runtime not in RUNTIMES:
        raise UnfreezeError(f"Unknown runtime {runtime!r}; choose torch or onnx.")
    if runtime == "torch":
        if onnx is not None or precision == "int8":
            raise UnfreezeError(
                "An export folder (--onnx) or int8 precision (--int8) needs the ONNX runtime (--runtime onnx)."
            )
        if precision is not None and precision not in TORCH_PRECISIONS:
            raise UnfreezeError(
                f"Unknown precision {precision!r}; choose one of {', '.join(TORCH_PRECISIONS)} "
                "(or int8 with --runtime onnx)."
            )
    if runtime == "onnx":
        if device not in (None, "cpu"):
            raise UnfreezeError(
                f"--device {device} applies to the torch runtime; --runtime onnx runs on the CPU "
                "(ONNX Runtime's CPU provider)."
            )
        if precision not in (None, *ONNX_PRECISIONS):
            raise UnfreezeError(f"Unknown precision {precision!r} for --runtime onnx; choose fp32 or int8.")


class BundlePredictor:
    """A loaded bundle: ``heads`` (name -> labels, pooling, layers, strategy, task), ``tasks`` (name -> the
    head's fitted ``Task``) and each head's outputs in its task's shape: class probabilities (single), each
    label's probability (multilabel) or values (regression).

    Parameters
    ----------
    path : str or Path
        The bundle folder.
    device : str, optional
        Where the torch runtime runs (the ONNX runtime runs on the CPU).
    batch_size : int, optional
        Inputs per forward pass (default: the bundle's).
    progress : bool
        Progress bars (torch runtime).
    runtime : {'torch', 'onnx'}
        PyTorch eager, or ONNX Runtime on the bundle's export.
    precision : str, optional
        torch runtime: "auto", "fp32" or "bf16" (None: the precision the bundle was fitted in);
        ONNX runtime: which graph of the export to run, "fp32" (None) or "int8".
    onnx : str or Path, optional
        The export folder (default ``path/onnx``; ``runtime="onnx"`` only).
    """

    def __init__(
        self,
        path: str | Path,
        device: str | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        runtime: str = "torch",
        precision: str | None = None,
        onnx: str | Path | None = None,
    ) -> None:
        path = Path(path)
        check_runtime_options(runtime, precision, onnx, device)
        self.runtime = runtime
        self.precision = precision or "fp32"  # the torch runtime's, once loaded: what its forward passes run in
        # exactly one of the three predicts: a multi-head suite, a classifier, or an ONNX export
        self.suite: MultiHeadClassifier | None = None
        self.classifier: TextEstimator | None = None
        self.tasks: dict[str, Task] = {}
        self.onnx: OnnxClassifier | None = None
        if runtime == "onnx":
            self._load_onnx(path, device, batch_size, onnx)
            return
        from ..estimators import Classifier
        from .classifier_bundle import bundle_estimator, load_estimator
        from .head_tasks import task_of
        from .multihead import MultiHeadClassifier

        config = read_config(path)
        self.single_head = config.get("kind") == SINGLE_KIND  # its head is 'default'
        # a fine-tuned backbone belongs to its one head, served as 'default'; so is a Regressor's bundle (a suite
        # adopts a features bundle as a Classifier)
        alone = self.single_head and (
            config["predictor"].get("type") != "embedding_head"
            or config["predictor"].get("tuned")
            or not issubclass(bundle_estimator(config), Classifier)
        )
        if alone:
            clf = load_estimator(path, device=device, precision=precision)
            clf.predictor_.progress = progress
            if batch_size is not None:
                clf.predictor_.batch_size = batch_size
            self.classifier = clf
            self.precision = clf.predictor_.precision
            self.model = str(clf.model)
            self.max_length = clf.max_length_
            self.tasks = {DEFAULT_HEAD: clf.task_}
            self.heads = {
                DEFAULT_HEAD: {
                    "name": DEFAULT_HEAD,
                    "labels": _labels(clf.task_),
                    "pooling": clf.pooling_,
                    "layers": list(clf.layers_),
                    "strategy": clf.strategy_.name,
                    "task": clf.task_.name,
                }
            }
        else:
            suite = MultiHeadClassifier.load(path, device=device, precision=precision)
            suite.progress = progress
            self.precision = suite.inference_precision
            if batch_size is not None:
                suite.batch_size = batch_size
            self.suite = suite
            self.model = str(suite.model)
            self.max_length = suite.backbone.length_limit(suite.max_length)
            self.tasks = {name: task_of(head) for name, head in suite.heads.items()}
            self.heads = {
                name: {
                    "name": name,
                    "labels": head.classes.tolist(),
                    "pooling": head.pooling,
                    "layers": list(head.layers),
                    "strategy": "features",
                    "task": self.tasks[name].name,
                }
                for name, head in suite.heads.items()
            }

    def _load_onnx(self, path: Path, device: str | None, batch_size: int | None, onnx) -> None:
        from ..export.locate import heads_of, open_export

        config, exported = open_export(path, onnx, self.precision, batch_size)
        self.onnx = exported
        self.single_head = config.get("kind") == SINGLE_KIND
        self.model = str(config["backbone"]["reference"])
        self.max_length = exported.max_length
        self.heads = heads_of(config)
        self.tasks = bundle_tasks(config, path)
        for name, task in self.tasks.items():
            self.heads[name].setdefault("task", task.name)
        self.export_folder = exported.folder

    def check_heads(self, heads: list[str] | None) -> list[str]:
        """The heads asked for (all when None), each known; an unknown one is a one-line error."""
        if not heads:
            return list(self.heads)
        unknown = [h for h in heads if h not in self.heads]
        if unknown:
            if self.single_head:
                raise UnfreezeError(
                    f"This is a single-head bundle; its one head is called 'default', not {unknown[0]!r}."
                )
            raise UnfreezeError(f"Unknown head {unknown[0]!r}; this bundle has: {', '.join(self.heads)}.")
        return list(dict.fromkeys(heads))

    def outputs(self, texts: list, heads: list[str] | None = None) -> dict[str, np.ndarray]:
        """Each head's outputs in its task's shape (``Task.outputs``), one forward pass: probabilities [n, K]
        (columns in the order of that head's labels) or values [n] (regression)."""
        names = self.check_heads(heads)
        if self.onnx is not None:
            if isinstance(texts, str) or not len(texts):
                raise UnfreezeError("Give a non-empty list of texts.")
            return self.onnx.outputs_heads(list(texts), names)
        if self.suite is not None:
            return self.suite.outputs(texts, names)
        assert self.classifier is not None  # set by __init__ when neither of the others is
        out = self.classifier.outputs(texts)
        return {name: out for name in names}

    def predict_proba(self, texts: list, heads: list[str] | None = None) -> dict[str, np.ndarray]:
        """Probabilities per head (columns in the order of that head's labels), one forward pass; a regression
        head's values (:meth:`outputs`)."""
        return self.outputs(texts, heads)

    def decide(self, name: str, outputs: np.ndarray) -> object:
        """Head ``name``'s predictions from its ``outputs``, in the form its labels were given (``Task.decide``)."""
        return self.tasks[name].decide(outputs)


def _labels(task: Task) -> list:
    """A head's labels as ``heads`` lists them: its classes, none for a regression."""
    return [] if task.classes_ is None else task.classes_.tolist()


def bundle_tasks(config: dict, path: str | Path = "bundle") -> dict[str, Task]:
    """Each head's fitted task by head name, from a bundle's config alone (no weights read); a bundle or head of
    an earlier release records none: single."""
    from ..tasks import task_from_state
    from .bundle import damaged

    try:
        if config.get("kind") == SINGLE_KIND:
            return {DEFAULT_HEAD: task_from_state(config.get("task"), config.get("labels") or None)}
        return {
            name: task_from_state(entry.get("task"), entry.get("labels") or None)
            for name, entry in (config.get("heads") or {}).items()
        }
    except (AttributeError, TypeError, ValueError, UnfreezeError) as exc:
        raise damaged(Path(path), f"its task is not valid ({exc})") from exc
