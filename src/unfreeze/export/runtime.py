"""Predicting from an ONNX export with ONNX Runtime: no PyTorch model is loaded.

Texts go through the Hugging Face tokenizer stored in the export, are padded into numpy
batches (longest first, as ``Backbone.batches`` does), run through the graph, and, for
a ``heads`` export, every logistic head is applied to the pooled layers it needs in
numpy (float64 standardisation, then scikit-learn's own binary/multinomial formulas).

``OnnxEncoder`` gives pooled features, ``OnnxNetwork`` logits, and ``OnnxClassifier``
(what ``load_export`` returns) the ``predict``/``predict_proba`` of any export.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UnfreezeError
from .manifest import DEFAULT_HEAD, PRECISIONS, TOKENIZER_DIR, read_manifest

INSTALL_HINT = "pip install 'unfreeze[onnx]'"
PADDING_SIDES = ("right", "left")


def require_onnxruntime():
    """The ``onnxruntime`` module, or a one-line error that says how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise UnfreezeError(f"ONNX Runtime is not installed; install it with: {INSTALL_HINT}") from exc
    return onnxruntime


def damaged(path: Path, reason: object) -> UnfreezeError:
    """The one-line error for an export file that cannot be used."""
    first = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return UnfreezeError(f"the export at {path} is damaged: {first} Export it again with `unfreeze export`.")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# -- one graph ------------------------------------------------------------------------------------

class OnnxGraph:
    """One ONNX Runtime session over one graph file.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    threads : int or None
        Intra-op threads; None lets ONNX Runtime choose (one per physical core).
    providers : sequence of str or None
        Execution providers; None means ``["CPUExecutionProvider"]``.
    sha256 : str or None
        When given, the file must have this digest (a flipped weight byte still parses).
    spinning : bool
        Let idle intra-op threads spin (ONNX Runtime's default). Off here, as the project sets
        OMP_WAIT_POLICY=PASSIVE for torch: spinning threads starve other work on a shared CPU
        (measured on 2 loaded cores: MiniLM fp32 126 texts/s spinning, 141 not).
    """

    def __init__(self, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None,
                 sha256: str | None = None, spinning: bool = False) -> None:
        ort = require_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise damaged(self.path, f"{self.path.name} is missing.")
        if sha256 is not None and file_sha256(self.path) != sha256:
            raise damaged(self.path, f"{self.path.name} does not have the checksum recorded at export.")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ONNX Runtime's warnings are about its internals, not the user's input
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # ONNX Runtime raises its own types for bad protobufs, graphs and files
            raise damaged(self.path, exc) from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run on one padded batch; inputs the graph does not take are dropped.

        A graph may lack an input its model ignores (token type ids of a model without
        a type embedding); one it takes but the encoding lacks is fed zeros, as the
        PyTorch models default to.
        """
        names = list(outputs or self.output_names)
        inputs = {}
        for name in self.input_names:
            if name in feed:
                inputs[name] = feed[name]
            elif name == "token_type_ids":
                inputs[name] = np.zeros_like(feed["input_ids"])
            else:
                raise UnfreezeError(f"The graph {self.path} needs input {name!r}, which the export does not provide.")
        return dict(zip(names, self.session.run(names, inputs), strict=True))


# -- tokenising and padding -----------------------------------------------------------------------

@dataclass
class EncodedTexts:
    """Token ids of a list of inputs, unpadded (one list per input)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    n_truncated: int

    def __len__(self) -> int:
        return len(self.input_ids)


class TextEncoder:
    """The export's Hugging Face tokenizer, truncating and padding as ``Backbone`` does.

    Parameters
    ----------
    folder : Path
        The tokenizer folder inside the export.
    max_length : int
        Tokens per input (already capped by the model's limits at export).
    token_types : bool
        Whether the model is fed token type ids.
    pad_token_id : int
        The id padding positions get (masked out, so any id works).
    padding_side : {'right', 'left'}
        Where padding goes; right keeps absolute positions of decoders as in training.
    """

    def __init__(self, folder: Path, max_length: int, token_types: bool, pad_token_id: int,
                 padding_side: str = "right") -> None:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        if padding_side not in PADDING_SIDES:
            raise UnfreezeError(f"The 'padding_side' parameter must be one of 'right', 'left'. Got {padding_side!r}.")
        hf_logging.set_verbosity_error()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise damaged(folder, f"its tokenizer does not load ({str(exc).splitlines()[0]})") from exc
        self.max_length = int(max_length)
        self.token_types = bool(token_types)
        self.pad_token_id = int(pad_token_id)
        self.padding_side = padding_side
        # a fast tokenizer's truncation setting is state inside it: concurrent calls that change it
        # fail ("Already borrowed"), so calls from several threads (a server) take turns
        self._lock = threading.Lock()

    def encode(self, inputs: Sequence[str | tuple[str, str]]) -> EncodedTexts:
        """Tokenise without padding; inputs over ``max_length`` tokens are truncated and counted."""
        texts, pairs = _split_inputs(inputs)
        if not texts:
            return EncodedTexts([], [] if self.token_types else None, 0)
        args = (texts,) if pairs is None else (texts, pairs)
        with self._lock:
            full = self.tokenizer(*args, truncation=False, padding=False, verbose=False)
            n_truncated = sum(len(ids) > self.max_length for ids in full["input_ids"])
            if n_truncated:
                full = self.tokenizer(*args, truncation=True, max_length=self.max_length, padding=False)
        types = full.get("token_type_ids") if self.token_types else None
        return EncodedTexts(list(full["input_ids"]), None if types is None else list(types), n_truncated)

    def collate(self, encoded: EncodedTexts, idx: Sequence[int]) -> dict[str, np.ndarray]:
        """Pad the inputs ``idx`` into int64 arrays ``input_ids``, ``attention_mask`` (and ``token_type_ids``)."""
        width = max(len(encoded.input_ids[i]) for i in idx)
        ids = np.full((len(idx), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        types = np.zeros((len(idx), width), dtype=np.int64) if encoded.token_type_ids is not None else None
        for row, i in enumerate(idx):
            n = len(encoded.input_ids[i])
            span = slice(0, n) if self.padding_side == "right" else slice(width - n, width)
            ids[row, span] = encoded.input_ids[i]
            mask[row, span] = 1
            if types is not None:
                types[row, span] = encoded.token_type_ids[i]
        batch = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            batch["token_type_ids"] = types
        return batch

    def batches(self, encoded: EncodedTexts, batch_size: int):
        """Yield (input indices, padded batch), longest inputs first (the least padding)."""
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded.input_ids[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield idx, self.collate(encoded, idx)


def _split_inputs(inputs: Sequence[str | tuple[str, str]]) -> tuple[list[str], list[str] | None]:
    # the same convention as models.backbone.split_inputs, without importing torch-side modules
    if isinstance(inputs, str):
        raise UnfreezeError("Give a list of texts, not one string.")
    if len(inputs) and isinstance(inputs[0], (tuple, list)):
        return [str(x[0]) for x in inputs], [str(x[1]) for x in inputs]
    return [str(x) for x in inputs], None


# -- runners over an export folder ----------------------------------------------------------------

class _ExportRunner:
    """Manifest, tokenizer and one graph of an export folder."""

    expected_kind = ""

    def __init__(self, folder: str | Path, precision: str = "fp32", batch_size: int = 32, threads: int | None = None,
                 padding_side: str = "right", providers: Sequence[str] | None = None, verify: bool = True,
                 spinning: bool = False) -> None:
        require_onnxruntime()
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if self.expected_kind and self.manifest["kind"] != self.expected_kind:
            raise UnfreezeError(f"The export at {self.folder} is a {self.manifest['kind']!r} export; "
                                f"{type(self).__name__} runs {self.expected_kind!r} exports.")
        if precision not in PRECISIONS:
            raise UnfreezeError(f"The 'precision' parameter must be one of {', '.join(map(repr, PRECISIONS))}. "
                                f"Got {precision!r}.")
        graphs = self.manifest["graphs"]
        if precision not in graphs:
            raise UnfreezeError(f"The export at {self.folder} has no {precision} graph (it has "
                                f"{', '.join(graphs)}). Export it with --int8 to get one.")
        if int(batch_size) < 1:
            raise UnfreezeError(f"The 'batch_size' parameter must be an int >= 1. Got {batch_size!r}.")
        self.precision = precision
        self.batch_size = int(batch_size)
        file = graphs[precision]
        digest = self.manifest.get("files", {}).get(file) if verify else None
        self.graph = OnnxGraph(self.folder / file, threads=threads, providers=providers, sha256=digest,
                               spinning=spinning)
        self.text = TextEncoder(self.folder / self.manifest.get("tokenizer", TOKENIZER_DIR),
                                self.manifest["max_length"], self.manifest["token_type_ids"],
                                self.manifest["pad_token_id"], padding_side)

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

    def __init__(self, folder: str | Path, precision: str = "fp32", batch_size: int = 32, threads: int | None = None,
                 padding_side: str = "right", providers: Sequence[str] | None = None, verify: bool = True,
                 spinning: bool = False) -> None:
        super().__init__(folder, precision, batch_size, threads, padding_side, providers, verify, spinning)
        self.outputs: dict[tuple[int, str], str] = {
            (int(o["layer"]), o["pooling"]): o["name"] for o in self.manifest["outputs"]}

    @property
    def wanted(self) -> list[tuple[int, str]]:
        """Every (layer, pooling) the graph computes."""
        return list(self.outputs)

    def pooled(self, inputs: Sequence[str | tuple[str, str]],
               wanted: Sequence[tuple[int, str]] | None = None) -> dict[tuple[int, str], np.ndarray]:
        """Pooled states per (layer, pooling), each [n_inputs, hidden] float32, rows in input order."""
        return self.pooled_encoded(self.encode(inputs), wanted)

    def pooled_encoded(self, encoded: EncodedTexts,
                       wanted: Sequence[tuple[int, str]] | None = None) -> dict[tuple[int, str], np.ndarray]:
        keys = list(dict.fromkeys((int(l), p) for l, p in wanted)) if wanted is not None else self.wanted
        missing = [k for k in keys if k not in self.outputs]
        if missing:
            layer, pooling = missing[0]
            raise UnfreezeError(f"The export at {self.folder} does not compute layer {layer} with {pooling!r} "
                                f"pooling; it has {', '.join(f'{l}/{p}' for l, p in self.outputs)}. Export again.")
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


# -- heads applied after the graph ----------------------------------------------------------------

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

    def __init__(self, folder: str | Path, precision: str = "fp32", batch_size: int = 32, threads: int | None = None,
                 padding_side: str = "right", providers: Sequence[str] | None = None, verify: bool = True,
                 spinning: bool = False) -> None:
        require_onnxruntime()  # first: without it nothing else about the folder matters
        folder = Path(folder)
        manifest = read_manifest(folder)
        self.kind: str = manifest["kind"]
        runner_type = OnnxEncoder if self.kind == "heads" else OnnxNetwork
        self.runner: OnnxEncoder | OnnxNetwork = runner_type(folder, precision, batch_size, threads, padding_side,
                                                             providers, verify, spinning)
        self.folder, self.manifest, self.precision = folder, manifest, precision
        self._heads: dict[str, _HeadEntry] = {}
        if self.kind == "heads":
            for name, entry in manifest["heads"].items():
                self._heads[name] = _HeadEntry(entry["pooling"], tuple(int(l) for l in entry["layers"]),
                                               np.asarray(entry["labels"]),
                                               NumpyLogisticHead.load(folder / entry["file"]))
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

    def predict_proba_heads(self, X: Sequence[str | tuple[str, str]],
                            heads: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Probabilities per head (columns in that head's label order), from one pass of the graph."""
        names = self._check_heads(heads)
        encoded = self.runner.encode(X)
        self.n_truncated = encoded.n_truncated  # inputs over max_length tokens in the last call
        if self.kind == "network":
            return {DEFAULT_HEAD: softmax(self.runner.logits_encoded(encoded))}
        wanted = [(layer, self._heads[n].pooling) for n in names for layer in self._heads[n].layers]
        pooled = self.runner.pooled_encoded(encoded, wanted)
        out = {}
        for n in names:
            entry = self._heads[n]
            features = np.concatenate([pooled[(layer, entry.pooling)] for layer in entry.layers], axis=1)
            out[n] = entry.head.predict_proba(features)
        return out

    def decision_function(self, X: Sequence[str | tuple[str, str]], head: str | None = None) -> np.ndarray:
        """Class scores of ``head``: a network's logits, or a logistic head's scores (one column for two classes)."""
        name = self._check_heads(head)[0]
        encoded = self.runner.encode(X)
        self.n_truncated = encoded.n_truncated
        if self.kind == "network":
            return self.runner.logits_encoded(encoded)
        entry = self._heads[name]
        pooled = self.runner.pooled_encoded(encoded, [(layer, entry.pooling) for layer in entry.layers])
        return entry.head.decision_function(np.concatenate([pooled[(layer, entry.pooling)]
                                                            for layer in entry.layers], axis=1))

    def predict_heads(self, X: Sequence[str | tuple[str, str]],
                      heads: Sequence[str] | None = None) -> dict[str, np.ndarray]:
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


def load_export(folder: str | Path, precision: str = "fp32", batch_size: int = 32, threads: int | None = None,
                padding_side: str = "right", providers: Sequence[str] | None = None,
                verify: bool = True, spinning: bool = False) -> OnnxClassifier:
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


__all__ = ["INSTALL_HINT", "NumpyLogisticHead", "OnnxClassifier", "OnnxEncoder",
           "OnnxGraph", "OnnxNetwork", "TextEncoder", "available_precisions", "load_export", "require_onnxruntime",
           "softmax"]
