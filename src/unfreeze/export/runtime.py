"""Predicting from an ONNX export with ONNX Runtime: no PyTorch model is loaded.

Texts go through the Hugging Face tokenizer stored in the export, are padded into numpy
batches (longest first, as ``Backbone.batches`` does), run through the graph, and, for
a ``heads`` export, every logistic head is applied to the pooled layers it needs in
numpy (float64 standardisation, then scikit-learn's own binary/multinomial formulas).

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
from .encoding import PADDING_SIDES, EncodedTexts, TextEncoder
from .manifest import DEFAULT_HEAD, PRECISIONS, TOKENIZER_DIR, read_manifest
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
            return len(self.manifest["heads"][DEFAULT_HEAD]["labels"])
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
class NumpyLogisticHead:
    """A fitted ``LogisticHead`` as arrays: standardise, then scikit-learn's probability formulas."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    @classmethod
    def load(cls, file: Path) -> NumpyLogisticHead:
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(file))
            return cls(*(np.asarray(tensors[k], dtype=np.float64) for k in ("mean", "scale", "coef", "intercept")))
        except Exception as exc:  # safetensors raises its own error types; any failure means a bad file
            raise damaged(file, f"head file {file.name} does not load ({exc}).") from exc

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        scores = z @ self.coef.T + self.intercept
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        scores = self.decision_function(features)
        if scores.ndim == 1:  # binary: one score, as LogisticRegression's predict_proba
            positive = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - positive, positive])
        return softmax(scores)


def softmax(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


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
        ``"heads"`` (frozen backbone + logistic heads) or ``"network"`` (a fine-tuned network).
    head_names : list of str
        The heads; a single-head export's is ``"default"``.
    classes_ : ndarray
        Labels of the only (or first) head.

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

    def predict_proba_heads(
        self, X: Sequence[str | tuple[str, str]], heads: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Probabilities per head (columns in that head's label order), from one pass of the graph."""
        names = self._check_heads(heads)
        runner = self.runner  # an OnnxNetwork for kind "network", an OnnxEncoder for kind "heads"
        encoded = runner.encode(X)
        self.n_truncated = encoded.n_truncated  # inputs over max_length tokens in the last call
        if isinstance(runner, OnnxNetwork):
            return {DEFAULT_HEAD: softmax(runner.logits_encoded(encoded))}
        wanted = [(layer, self._heads[n].pooling) for n in names for layer in self._heads[n].layers]
        pooled = runner.pooled_encoded(encoded, wanted)
        out = {}
        for n in names:
            entry = self._heads[n]
            features = np.concatenate([pooled[(layer, entry.pooling)] for layer in entry.layers], axis=1)
            out[n] = entry.head.predict_proba(features)
        return out

    def decision_function(self, X: Sequence[str | tuple[str, str]], head: str | None = None) -> np.ndarray:
        """Class scores of ``head``: a network's logits, or a logistic head's scores (one column for two classes)."""
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
    ) -> dict[str, np.ndarray]:
        """Predicted labels per head."""
        return {n: self._labels[n][p.argmax(axis=1)] for n, p in self.predict_proba_heads(X, heads).items()}

    def predict_proba(self, X: Sequence[str | tuple[str, str]], head: str | None = None) -> np.ndarray:
        """[n_inputs, n_classes] probabilities of ``head`` (default: the only or first head)."""
        name = self._check_heads(head)[0]
        return self.predict_proba_heads(X, [name])[name]

    def predict(self, X: Sequence[str | tuple[str, str]], head: str | None = None) -> np.ndarray:
        """Predicted labels of ``head`` (default: the only or first head)."""
        name = self._check_heads(head)[0]
        return self._labels[name][self.predict_proba(X, name).argmax(axis=1)]


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
