"""Predicting from an ONNX export with ONNX Runtime: no PyTorch model is loaded.

Texts go through the Hugging Face tokenizer stored in the export, are padded into numpy
batches (longest first, as ``Backbone.batches`` does), run through the graph, and, for
a ``heads`` export, every head is applied to the pooled layers it needs in numpy
(float64 standardisation, then its linear scores). The graph and the heads give raw
scores; each head's task (``unfreeze.tasks``, stored as ``"task"`` in the manifest; none:
single) turns them into its outputs: class probabilities (scikit-learn's own
binary/multinomial formulas, as before tasks existed), per-label probabilities and the
stored thresholds (multilabel), or values (regression).

``OnnxEncoder`` gives pooled features, ``OnnxNetwork`` logits, and ``OnnxClassifier``
(what ``load_export`` returns) the ``predict``/``predict_proba`` of any export.

The parts: ``session`` (one graph in ONNX Runtime), ``encoding`` (texts to padded
batches); their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UnfreezeError
from ..inference.head_tasks import head_outputs
from ..tasks import Task
from .encoding import PADDING_SIDES, EncodedTexts, TextEncoder
from .manifest import DEFAULT_HEAD, PRECISIONS, TOKENIZER_DIR, read_manifest
from .numpy_heads import HEAD_TENSORS, NetworkLogits, NumpyLogisticHead, manifest_task, softmax
from .session import INSTALL_HINT, OnnxGraph, damaged, file_sha256, require_onnxruntime


class _ExportRunner:
    """Manifest, tokenizer and one graph of an export folder."""

    expected_kind = ""

    def __init__(
        self,
        folder: str | Path,
        precision: str = "fp32",
        batch_size: int = 32,
        threads: int | None = None,
        padding_side: str = "right",
        providers: Sequence[str] | None = None,
        verify: bool = True,
        spinning: bool = False,
    ) -> None:
        require_onnxruntime()
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if self.expected_kind and self.manifest["kind"] != self.expected_kind:
            raise UnfreezeError(
                f"The export at {self.folder} is a {self.manifest['kind']!r} export; "
                f"{type(self).__name__} runs {self.expected_kind!r} exports."
            )
        if precision not in PRECISIONS:
            raise UnfreezeError(
                f"The 'precision' parameter must be one of {', '.join(map(repr, PRECISIONS))}. Got {precision!r}."
            )
        graphs = self.manifest["graphs"]
        if precision not in graphs:
            raise UnfreezeError(
                f"The export at {self.folder} has no {precision} graph (it has "
                f"{', '.join(graphs)}). Export it with --int8 to get one."
            )
        if int(batch_size) < 1:
            raise UnfreezeError(f"The 'batch_size' parameter must be an int >= 1. Got {batch_size!r}.")
        self.precision = precision
        self.batch_size = int(batch_size)
        file = graphs[precision]
        digest = self.manifest.get("files", {}).get(file) if verify else None
        self.graph = OnnxGraph(
            self.folder / file, threads=threads, providers=providers, sha256=digest, spinning=spinning
        )
        self.text = TextEncoder(
            self.folder / self.manifest.get("tokenizer", TOKENIZER_DIR),
            self.manifest["max_length"],
            self.manifest["token_type_ids"],
            self.manifest["pad_token_id"],
            padding_side,
        )

    @property
    def max_length(self) -> int:
        return self.text.max_length

    def encode(self, inputs: Sequence[str | tuple[str, str]]) -> EncodedTexts:
        return self.text.encode(inputs)

    def _run_all(self, encoded: EncodedTexts, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Every output for every input, rows in input order."""
        result: dict[str, np.ndarray] = {}
        for idx, batch in self.text.batches(encoded, self.batch_size):
            got = self.graph.run(batch, outputs)
            for name, values in got.items():
                if name not in result:
                    result[name] = np.empty((len(encoded), *values.shape[1:]), dtype=values.dtype)
                result[name][idx] = values
        if not result:  # no inputs: empty arrays of the right width
            result = {name: np.empty((0, self._output_width(name)), dtype=np.float32) for name in outputs}
        return result

    def _output_width(self, name: str) -> int:
        if self.manifest["kind"] == "network":
            return manifest_task(self.manifest["heads"][DEFAULT_HEAD]).n_outputs
        return int(self.manifest["model"]["hidden_size"])


class OnnxEncoder(_ExportRunner):
    """Pooled hidden states from a ``heads`` export's graph (the numbers ``forward_pooled`` gives).

    Parameters
    ----------
    folder : str or Path
        An export folder of kind ``heads``.
    precision : {'fp32', 'int8'}
        Which graph to run.
    batch_size : int
        Inputs per graph run.
    threads : int or None
        ONNX Runtime intra-op threads (None: its default).
    padding_side : {'right', 'left'}
        Where padding goes (pooling reads the mask, so both are handled).
    providers : sequence of str or None
        ONNX Runtime execution providers (default CPU).
    verify : bool
        Check the graph file's sha256 against the manifest before loading it.
    spinning : bool
        Let idle ONNX Runtime threads spin (see :class:`OnnxGraph`).

    Examples
    --------
    >>> encoder = OnnxEncoder("bundle/onnx")                  # doctest: +SKIP
    >>> encoder.pooled(["a text"])[(6, "mean")].shape          # doctest: +SKIP
    (1, 384)
    """

    expected_kind = "heads"

    def __init__(
        self,
        folder: str | Path,
        precision: str = "fp32",
        batch_size: int = 32,
        threads: int | None = None,
        padding_side: str = "right",
        providers: Sequence[str] | None = None,
        verify: bool = True,
        spinning: bool = False,
    ) -> None:
        super().__init__(folder, precision, batch_size, threads, padding_side, providers, verify, spinning)
        self.outputs: dict[tuple[int, str], str] = {
            (int(o["layer"]), o["pooling"]): o["name"] for o in self.manifest["outputs"]
        }

    @property
    def wanted(self) -> list[tuple[int, str]]:
        """Every (layer, pooling) the graph computes."""
        return list(self.outputs)

    def pooled(
        self, inputs: Sequence[str | tuple[str, str]], wanted: Sequence[tuple[int, str]] | None = None
    ) -> dict[tuple[int, str], np.ndarray]:
        """Pooled states per (layer, pooling), each [n_inputs, hidden] float32, rows in input order."""
        return self.pooled_encoded(self.encode(inputs), wanted)

    def pooled_encoded(
        self, encoded: EncodedTexts, wanted: Sequence[tuple[int, str]] | None = None
    ) -> dict[tuple[int, str], np.ndarray]:
        keys = list(dict.fromkeys((int(layer), p) for layer, p in wanted)) if wanted is not None else self.wanted
        missing = [k for k in keys if k not in self.outputs]
        if missing:
            layer, pooling = missing[0]
            raise UnfreezeError(
                f"The export at {self.folder} does not compute layer {layer} with {pooling!r} "
                f"pooling; it has {', '.join(f'{n}/{p}' for n, p in self.outputs)}. Export again."
            )
        got = self._run_all(encoded, [self.outputs[k] for k in keys])
        return {k: got[self.outputs[k]] for k in keys}


class OnnxNetwork(_ExportRunner):
    """Logits and probabilities from a ``network`` export (a fine-tuned body, pooling and linear head).

    Parameters are those of :class:`OnnxEncoder`.
    """

    expected_kind = "network"

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.manifest["heads"][DEFAULT_HEAD]["labels"])

    def logits(self, inputs: Sequence[str | tuple[str, str]]) -> np.ndarray:
        """[n_inputs, n_classes] float32 logits, rows in input order."""
        return self.logits_encoded(self.encode(inputs))

    def logits_encoded(self, encoded: EncodedTexts) -> np.ndarray:
        return self._run_all(encoded, ["logits"])["logits"]

    def predict_proba(self, inputs: Sequence[str | tuple[str, str]]) -> np.ndarray:
        return softmax(self.logits(inputs))


@dataclass
class _HeadEntry:
    pooling: str
    layers: tuple[int, ...]
    classes: np.ndarray
    head: NumpyLogisticHead


class OnnxClassifier:
    """Predictions from any export: one graph pass per batch of inputs, every head answered from it.

    Parameters
    ----------
    folder : str or Path
        An export folder (``heads`` or ``network``).
    precision : {'fp32', 'int8'}
        Which graph to run.
    batch_size, threads, padding_side, providers, verify, spinning
        As for :class:`OnnxEncoder`.

    Attributes
    ----------
    kind : str
        ``"heads"`` (frozen backbone + heads on pooled states) or ``"network"`` (a fine-tuned network).
    head_names : list of str
        The heads; a single-head export's is ``"default"``.
    tasks : dict of str to Task
        Each head's fitted task (``unfreeze.tasks``), which turns its raw scores into outputs
        (``outputs_heads``) and decisions (``predict``): labels, label sets, values.
    classes_ : ndarray
        Labels of the only (or first) head ([] for a regression head).

    Examples
    --------
    >>> clf = load_export("bundle/onnx", precision="int8")    # doctest: +SKIP
    >>> clf.predict(["a fine film"])                           # doctest: +SKIP
    array(['positive'], dtype='<U8')
    """

    def __init__(
        self,
        folder: str | Path,
        precision: str = "fp32",
        batch_size: int = 32,
        threads: int | None = None,
        padding_side: str = "right",
        providers: Sequence[str] | None = None,
        verify: bool = True,
        spinning: bool = False,
    ) -> None:
        require_onnxruntime()  # first: without it nothing else about the folder matters
        folder = Path(folder)
        manifest = read_manifest(folder)
        self.kind: str = manifest["kind"]
        runner_type = OnnxEncoder if self.kind == "heads" else OnnxNetwork
        self.runner: OnnxEncoder | OnnxNetwork = runner_type(
            folder, precision, batch_size, threads, padding_side, providers, verify, spinning
        )
        self.folder, self.manifest, self.precision = folder, manifest, precision
        self._heads: dict[str, _HeadEntry] = {}
        if self.kind == "heads":
            for name, entry in manifest["heads"].items():
                self._heads[name] = _HeadEntry(
                    entry["pooling"],
                    tuple(int(layer) for layer in entry["layers"]),
                    np.asarray(entry["labels"]),
                    NumpyLogisticHead.load(folder / entry["file"]),
                )
        self._labels = {name: np.asarray(entry["labels"]) for name, entry in manifest["heads"].items()}
        self.tasks: dict[str, Task] = {name: manifest_task(entry) for name, entry in manifest["heads"].items()}
        self.n_truncated = 0

    @property
    def head_names(self) -> list[str]:
        return list(self._labels)

    @property
    def classes_(self) -> np.ndarray:
        return self._labels[self.head_names[0]]

    def classes(self, head: str | None = None) -> np.ndarray:
        """The labels of ``head`` (default: the only or first head), in probability-column order."""
        return self._labels[self._check_heads(head)[0]]

    @property
    def max_length(self) -> int:
        return self.runner.max_length

    def _check_heads(self, heads: str | Sequence[str] | None) -> list[str]:
        if heads is None:
            return self.head_names
        names = [heads] if isinstance(heads, str) else list(heads)
        unknown = [n for n in names if n not in self._labels]
        if unknown:
            raise UnfreezeError(f"Unknown head {unknown[0]!r}; this export has: {', '.join(self.head_names)}.")
        return list(dict.fromkeys(names))

    def outputs_heads(
        self, X: Sequence[str | tuple[str, str]], heads: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Each head's outputs in its task's shape (class probabilities in that head's label order, per-label
        probabilities, or values [n]), from one pass of the graph."""
        names = self._check_heads(heads)
        runner = self.runner  # an OnnxNetwork for kind "network", an OnnxEncoder for kind "heads"
        encoded = runner.encode(X)
        self.n_truncated = encoded.n_truncated  # inputs over max_length tokens in the last call
        if isinstance(runner, OnnxNetwork):
            task = self.tasks[DEFAULT_HEAD]
            return {DEFAULT_HEAD: task.outputs_of(NetworkLogits(runner.logits_encoded(encoded)), None)}
        wanted = [(layer, self._heads[n].pooling) for n in names for layer in self._heads[n].layers]
        pooled = runner.pooled_encoded(encoded, wanted)
        out = {}
        for n in names:
            entry = self._heads[n]
            features = np.concatenate([pooled[(layer, entry.pooling)] for layer in entry.layers], axis=1)
            out[n] = head_outputs(entry.head, self.tasks[n], features)
        return out

    def predict_proba_heads(
        self, X: Sequence[str | tuple[str, str]], heads: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Probabilities per head (columns in that head's label order), from one pass of the graph; a
        regression head's values (see :meth:`outputs_heads`)."""
        return self.outputs_heads(X, heads)

    def decision_function(self, X: Sequence[str | tuple[str, str]], head: str | None = None) -> np.ndarray:
        """Raw scores of ``head``: a network's logits, or a head's linear scores (one column for two classes)."""
        name = self._check_heads(head)[0]
        runner = self.runner
        encoded = runner.encode(X)
        self.n_truncated = encoded.n_truncated
        if isinstance(runner, OnnxNetwork):
            return runner.logits_encoded(encoded)
        entry = self._heads[name]
        pooled = runner.pooled_encoded(encoded, [(layer, entry.pooling) for layer in entry.layers])
        return entry.head.decision_function(
            np.concatenate([pooled[(layer, entry.pooling)] for layer in entry.layers], axis=1)
        )

    def predict_heads(
        self, X: Sequence[str | tuple[str, str]], heads: Sequence[str] | None = None
    ) -> dict[str, object]:
        """Predictions per head in its task's form (labels, label sets, values)."""
        return {n: self.tasks[n].decide(out) for n, out in self.outputs_heads(X, heads).items()}

    def predict_proba(self, X: Sequence[str | tuple[str, str]], head: str | None = None) -> np.ndarray:
        """[n_inputs, n_classes] probabilities of ``head`` (default: the only or first head); a regression
        head's values [n_inputs]."""
        name = self._check_heads(head)[0]
        return self.outputs_heads(X, [name])[name]

    def predict(self, X: Sequence[str | tuple[str, str]], head: str | None = None) -> object:
        """Predictions of ``head`` (default: the only or first head) in its task's form."""
        name = self._check_heads(head)[0]
        return self.tasks[name].decide(self.predict_proba(X, name))


def load_export(
    folder: str | Path,
    precision: str = "fp32",
    batch_size: int = 32,
    threads: int | None = None,
    padding_side: str = "right",
    providers: Sequence[str] | None = None,
    verify: bool = True,
    spinning: bool = False,
) -> OnnxClassifier:
    """Load the export at ``folder`` for prediction with ONNX Runtime.

    Parameters
    ----------
    folder : str or Path
        An export folder (it holds ``export.json``).
    precision : {'fp32', 'int8'}
        Which graph to run; ``int8`` needs an export made with ``int8=True``.
    batch_size : int
        Inputs per graph run.
    threads : int or None
        ONNX Runtime intra-op threads (None: its default).
    padding_side : {'right', 'left'}
        Where padding goes.
    providers : sequence of str or None
        ONNX Runtime execution providers (default CPU).
    verify : bool
        Check the graph file's sha256 before loading it.
    spinning : bool
        Let idle ONNX Runtime threads spin (see :class:`OnnxGraph`).

    Returns
    -------
    OnnxClassifier
    """
    return OnnxClassifier(folder, precision, batch_size, threads, padding_side, providers, verify, spinning)


def available_precisions(folder: str | Path) -> list[str]:
    """The precisions the export at ``folder`` has graphs for (``fp32``, and ``int8`` when made)."""
    return [p for p in PRECISIONS if p in read_manifest(folder)["graphs"]]


__all__ = [
    "HEAD_TENSORS",
    "INSTALL_HINT",
    "PADDING_SIDES",
    "EncodedTexts",
    "NumpyLogisticHead",
    "OnnxClassifier",
    "OnnxEncoder",
    "OnnxGraph",
    "OnnxNetwork",
    "TextEncoder",
    "available_precisions",
    "damaged",
    "file_sha256",
    "load_export",
    "require_onnxruntime",
    "softmax",
]
