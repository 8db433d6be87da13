"""Exporting to ONNX: graphs from PyTorch building blocks, int8 by ONNX Runtime, self-checked folders.

Two graphs cover every bundle:

* ``export_pooled``: a frozen backbone from token ids to every requested pooled layer
  (the numbers ``embed.forward_pooled`` gives). Logistic heads (one, or a multi-head
  bundle's many) are applied after it in numpy by the runtime, so one graph pass
  answers every head.
* ``export_network``: a fine-tuned ``TextClassificationModel`` (body, pooling, linear
  head) to logits; a PEFT LoRA body is merged into its weights first, on a copy.

Graphs come from torch's own exporter (``torch.onnx.export``): by default the
torch.export-based ("dynamo") one, which PyTorch maintains and makes the default since
2.9; the TorchScript one, deprecated upstream, is kept as ``exporter="torchscript"``.
int8 graphs come from ONNX Runtime's dynamic quantiser.

``write_heads_export`` / ``write_network_export`` write a whole export folder
(graphs, tokenizer, heads, ``export.json``) into a temporary folder beside the target,
check it against PyTorch with ``check_export``, and rename it into place only when the
check passes: a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import logging
import platform
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..errors import UnfreezeError
from ..models.pooling import pool
from .manifest import (
    DEFAULT_HEAD,
    FORMAT,
    FORMAT_VERSION,
    GRAPH_FILES,
    HEADS_DIR,
    MANIFEST_FILE,
    TOKENIZER_DIR,
    is_export,
    pooled_output_name,
)
from .runtime import INSTALL_HINT, file_sha256, load_export, require_onnxruntime

EXPORTERS = ("dynamo", "torchscript")
FP32_ATOL = 1e-4
# the TorchScript exporter needs opset 17 for LayerNormalization as one op
TORCHSCRIPT_OPSET = 17
# protobuf files stop at 2 GiB: larger models keep their weights in a .data file beside the graph
EXTERNAL_DATA_BYTES = 1_500_000_000

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


class HeadLike(Protocol):
    """What a logistic head to export must offer (``serve.multihead.Head`` has these attributes)."""

    pooling: str
    layers: Sequence[int]
    classes: Any  # labels in probability-column order
    head: Any  # a fitted LogisticHead: .state() and .predict_proba(features)


@dataclass
class ExportHead:
    """One logistic head for ``write_heads_export``.

    Parameters
    ----------
    pooling : str
        ``mean``, ``cls``, ``last`` or ``max``.
    layers : sequence of int
        Hidden-state indices (0 = embeddings, L = last block), concatenated in this order.
    classes : sequence
        Labels, in the order of the head's probability columns (JSON-serialisable values).
    head : LogisticHead
        The fitted head (``unfreeze.features.logistic.LogisticHead``).
    """

    pooling: str
    layers: Sequence[int]
    classes: Any
    head: Any


@dataclass
class Int8Check:
    """How the int8 graph's answers compare with PyTorch's on the check texts, for one head."""

    agreement: float  # share of texts whose predicted label is PyTorch's
    max_abs_diff: float  # of probabilities
    accuracy_torch: float | None = None  # against the given labels
    accuracy_int8: float | None = None

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
    fp32_agreement: float
    int8: dict[str, Int8Check] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        for name, check in self.int8.items():
            out["int8"][name]["accuracy_delta"] = check.accuracy_delta
        return out

    def lines(self) -> list[str]:
        """Human-readable lines for the CLI to print."""
        lines = [f"fp32: max |probability difference| vs PyTorch {self.fp32_max_abs_diff:.2e} "
                 f"(allowed {self.atol:.0e}) on {self.n_inputs} texts; labels agree on {self.fp32_agreement:.1%}"]
        for name, check in self.int8.items():
            text = f"int8 [{name}]: labels agree with PyTorch on {check.agreement:.1%}, " \
                   f"max |probability difference| {check.max_abs_diff:.3f}"
            if check.accuracy_delta is not None:
                text += (f"; accuracy {check.accuracy_int8:.4f} vs PyTorch {check.accuracy_torch:.4f} "
                         f"({check.accuracy_delta:+.4f})")
            lines.append(text)
        return lines


@dataclass
class ExportResult:
    """A written export folder, its manifest, and the check it passed."""

    path: Path
    manifest: dict
    check: ExportCheck


# -- graphs ---------------------------------------------------------------------------------------

def export_pooled(backbone, wanted: Sequence[tuple[int, str]], path: str | Path, *, exporter: str = "dynamo") -> Path:
    """Export ``backbone`` as one graph from token ids to every requested pooled hidden state.

    Parameters
    ----------
    backbone : Backbone
        The frozen backbone (``unfreeze.models.Backbone``); its weights are not changed.
    wanted : sequence of (int, str)
        (layer, pooling) pairs: layer 0 is the embedding output, j < L block j's input and
        L the model's ``last_hidden_state``, as in ``embed.forward_pooled``.
    path : str or Path
        The ``.onnx`` file to write.
    exporter : {'dynamo', 'torchscript'}
        Which of torch's ONNX exporters to use.

    Returns
    -------
    Path
        ``path``. The graph's inputs are ``input_ids``, ``attention_mask`` (and
        ``token_type_ids`` when the tokenizer makes them), with dynamic batch and sequence
        axes; its outputs are named by :func:`pooled_output_name`, in the order of ``wanted``.
    """
    from ..models.pooling import check_pooling

    wanted = list(dict.fromkeys((int(layer), check_pooling(pooling, "export_pooled")) for layer, pooling in wanted))
    if not wanted:
        raise UnfreezeError("Nothing to export: give at least one (layer, pooling) pair.")
    bad = [layer for layer, _ in wanted if not 0 <= layer <= backbone.num_blocks]
    if bad:
        raise UnfreezeError(f"Layer {bad[0]} does not exist: this model's hidden states are 0..{backbone.num_blocks}.")
    body, merged = _plain_body(backbone.model)
    module = _PooledGraph(body, wanted, backbone.num_blocks)
    example = _example_batch(backbone)
    names = [pooled_output_name(layer, pooling) for layer, pooling in wanted]
    with _eval_mode(body, merged):
        _export(module, example, Path(path), names, exporter, body)
    return Path(path)


def export_network(model, path: str | Path, *, example: Mapping[str, Any] | None = None,
                   exporter: str = "dynamo") -> Path:
    """Export a fine-tuned network (body -> pooled layers -> linear head) to a graph giving ``logits``.

    Parameters
    ----------
    model : TextClassificationModel
        The trained network; it needs ``body``, ``pooling``, ``layers`` and ``head`` (an
        ``nn.Linear``). A PEFT (LoRA) body is merged into its weights on a copy: ``model``
        itself is never changed.
    path : str or Path
        The ``.onnx`` file to write.
    example : mapping of str to tensor, optional
        A padded batch (``Backbone.collate``) to trace with; give one when the model takes
        ``token_type_ids``. By default two synthetic rows, one padded.
    exporter : {'dynamo', 'torchscript'}
        Which of torch's ONNX exporters to use.

    Returns
    -------
    Path
        ``path``. Dropout is left out (the graph is for inference).
    """
    from ..models.backbone import find_blocks

    body, merged = _plain_body(model.body)
    num_blocks = getattr(model, "num_blocks", None) or len(find_blocks(body))
    layers = [int(layer) for layer in model.layers]
    module = _NetworkGraph(body, layers, model.pooling, num_blocks, model.head)
    if example is None:
        example = _synthetic_batch(body)
    with _eval_mode(body, merged), _eval_mode(model.head, False):
        _export(module, dict(example), Path(path), ["logits"], exporter, body)
    return Path(path)


# what ONNX Runtime's dynamic quantiser is asked to quantise. MatMul carries nearly all the
# compute; quantising Gather too (the embedding table) adds noise for no speed. Per-channel
# weight scales keep more labels: on MiniLM features of movie-snippets, int8 labels agreed
# with fp32 on 97.5% of texts this way against 93% with the quantiser's defaults, at the same speed.
INT8_OP_TYPES = ("MatMul",)


def quantize_int8(source: str | Path, target: str | Path, *, per_channel: bool = True,
                  op_types: Sequence[str] = INT8_OP_TYPES, keep_ffn_output: bool = False,
                  reduce_range: bool = True) -> Path:
    """Quantise the weights of the graph at ``source`` to int8 with ONNX Runtime's dynamic quantiser.

    Activations are quantised on the fly per batch (``quantize_dynamic``), so no calibration
    data is needed.

    Parameters
    ----------
    source, target : str or Path
        The fp32 graph and the int8 graph to write.
    per_channel : bool
        One weight scale per output channel instead of one per tensor.
    op_types : sequence of str
        Operator types to quantise (ONNX Runtime's names).
    keep_ffn_output : bool
        Leave in fp32 the matrix products that shrink their input (the feed-forward output
        projections, and a classification head). Their input, the wide activations after
        the GELU, has outliers that one int8 scale per batch resolves badly. On MiniLM
        features of movie-snippets: accuracy change -0.35 point instead of -1.0, at about
        10-20% less speed (2 shared cores, noisy).
    reduce_range : bool
        7-bit weights (ONNX Runtime's ``reduce_range``). Its documentation recommends them
        where int8 products of u8 activations and s8 weights can saturate (x86 without
        VNNI); they also lost less here: on MiniLM features of movie-snippets (2,000 test
        texts, 2-core AMD EPYC with AVX-512 VNNI) accuracy 0.7595 against 0.7540 with 8-bit
        weights (fp32 graph 0.7635), at the same speed; on a fine-tuned freeze k=3 MiniLM
        0.7845 against 0.7815 (fp32 0.7780).

    Returns
    -------
    Path
        ``target``.
    """
    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, target = Path(source), Path(target)
    external = (source.parent / f"{source.name}.data").exists()
    excluded = ffn_output_nodes(source) if keep_ffn_output else []
    with _quiet():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=list(op_types), nodes_to_exclude=excluded,
                         reduce_range=reduce_range, use_external_data_format=external)
    return target


def ffn_output_nodes(path: str | Path) -> list[str]:
    """Names of the MatMul nodes of the graph at ``path`` whose constant weight has more rows than columns."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    return [node.name for node in model.graph.node if node.op_type == "MatMul"
            and any(len(shapes.get(x, ())) == 2 and shapes[x][0] > shapes[x][1] for x in node.input)]


class _PooledGraph(nn.Module):
    """Token ids -> one pooled vector per (layer, pooling), computed as ``forward_pooled`` does."""

    def __init__(self, body: nn.Module, wanted: list[tuple[int, str]], num_blocks: int) -> None:
        super().__init__()
        self.body = body
        self.wanted = wanted
        # the same choice as forward_pooled: last_hidden_state alone when only the top is wanted
        self.only_last = all(layer == num_blocks for layer, _ in wanted)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        out = self.body(**_model_inputs(input_ids, attention_mask, token_type_ids),
                        output_hidden_states=not self.only_last)
        states = [out.last_hidden_state if self.only_last else out.hidden_states[layer] for layer, _ in self.wanted]
        return tuple(pool(h.float(), attention_mask, pooling) for h, (_, pooling) in zip(states, self.wanted))


class _NetworkGraph(nn.Module):
    """Token ids -> logits: pooled layers of the body, concatenated, through the linear head (no dropout)."""

    def __init__(self, body: nn.Module, layers: list[int], pooling: str, num_blocks: int, head: nn.Module) -> None:
        super().__init__()
        self.body, self.layers, self.pooling, self.num_blocks, self.head = body, layers, pooling, num_blocks, head

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        below_top = any(layer < self.num_blocks for layer in self.layers)
        out = self.body(**_model_inputs(input_ids, attention_mask, token_type_ids), output_hidden_states=below_top)
        # TextClassificationModel's convention: j < L is block j's input (hidden_states[j]),
        # L is last_hidden_state (after a final norm where the family has one)
        states = [out.last_hidden_state if layer == self.num_blocks else out.hidden_states[layer]
                  for layer in self.layers]
        features = torch.cat([pool(h.float(), attention_mask, self.pooling) for h in states], dim=-1)
        return self.head(features)


def _model_inputs(input_ids, attention_mask, token_type_ids) -> dict:
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        inputs["token_type_ids"] = token_type_ids
    return inputs


def _plain_body(model):
    """The model to trace: a PEFT model is merged into plain weights on a copy (the caller's is untouched)."""
    if callable(getattr(model, "merge_and_unload", None)) and callable(getattr(model, "get_base_model", None)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            merged = copy.deepcopy(model).merge_and_unload()
        return merged, True
    return model, False


@contextlib.contextmanager
def _eval_mode(module, owned: bool) -> Iterator[None]:
    """Eval mode while tracing (dropout off), the caller's mode restored after."""
    modes = None if owned else [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes or []:
            m.training = training


def _example_batch(backbone) -> dict:
    """Two real inputs of different lengths, right-padded: tracing must see a mask that matters.

    Rows and columns differ in number (2 by more than 2), so neither dynamic axis is
    mistaken for the other or for a constant.
    """
    encoded = backbone.encode(["an example input for the exporter, a little longer than the other one", "short"],
                              64)
    batch = backbone.collate(encoded, [0, 1])
    return {k: v.cpu() for k, v in batch.items()}


def _synthetic_batch(body) -> dict:
    vocab = int(getattr(body.config, "vocab_size", 1000) or 1000)
    ids = (torch.arange(2 * 9).reshape(2, 9) * 7 + 5) % max(vocab - 1, 1) + 1
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def require_exporter(exporter: str) -> None:
    if exporter not in EXPORTERS:
        raise UnfreezeError(f"The 'exporter' parameter must be one of {', '.join(map(repr, EXPORTERS))}. "
                            f"Got {exporter!r}.")
    require_onnxruntime()  # the export checks itself with it
    needed = ["onnx"] + (["onnxscript"] if exporter == "dynamo" else [])
    for name in needed:
        try:
            __import__(name)
        except ImportError as exc:
            raise UnfreezeError(f"Exporting to ONNX needs the {name!r} package; install it with: "
                                f"{INSTALL_HINT}") from exc


def _export(module, example: dict, path: Path, output_names: list[str], exporter: str, body) -> None:
    require_exporter(exporter)
    names = list(example)
    device = next(body.parameters()).device  # a backbone on a GPU traces there; the graph is device-free
    example = {k: v.to(device) for k, v in example.items()}
    n_bytes = sum(p.numel() * p.element_size() for p in body.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet(), torch.no_grad():
            if exporter == "dynamo":
                batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
                torch.onnx.export(module, (), str(path), kwargs=example, input_names=names, output_names=output_names,
                                  dynamic_shapes={n: {0: batch, 1: sequence} for n in names}, dynamo=True,
                                  external_data=n_bytes > EXTERNAL_DATA_BYTES)
            else:
                torch.onnx.export(module, (), str(path), kwargs=example, input_names=names, output_names=output_names,
                                  dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names}, dynamo=False,
                                  opset_version=TORCHSCRIPT_OPSET)
    except UnfreezeError:
        raise
    except Exception as exc:  # torch.export and the ONNX translation raise many types; name the model instead
        raise unsupported(body, exporter, exc) from exc


def unsupported(body, exporter: str, reason: object) -> UnfreezeError:
    """One line naming the architecture that could not be exported, and why."""
    config = getattr(body, "config", None)
    family = getattr(config, "model_type", None)
    arch = type(body).__name__ + (f" (model type {family!r})" if family else "")
    first = _root_cause(reason)
    other = "torchscript" if exporter == "dynamo" else "dynamo"
    return UnfreezeError(f"Cannot export {arch} to ONNX with torch's {exporter} exporter: {first} "
                         f"(exporter={other!r} may work; supported families are BERT, RoBERTa, DistilBERT, MPNet, "
                         "DeBERTa-v2, GPT-2 and Llama).")


def _root_cause(exc: object) -> str:
    """The first line of the innermost cause: torch's outer errors say which step failed, the inner one why."""
    seen = []
    while isinstance(exc, BaseException) and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    for candidate in reversed(seen or [exc]):
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(candidate)).strip()
        if text:
            return text.splitlines()[0][:240]
    return type(seen[-1]).__name__ if seen else str(exc)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' and quantiser's progress prints, warnings and log lines."""
    names = ("", "torch.onnx", "torch.export", "torch._export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir",
             "onnxruntime")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# -- the self-check -------------------------------------------------------------------------------

class ExportCheckError(UnfreezeError):
    """The exported graph's answers differ from PyTorch's beyond the tolerance."""


def check_export(folder: str | Path, inputs: Sequence, reference: Mapping[str, np.ndarray] | np.ndarray,
                 y: Mapping[str, Sequence] | Sequence | None = None, *, atol: float = FP32_ATOL,
                 batch_size: int = 32, min_int8_agreement: float | None = None) -> ExportCheck:
    """Compare the export's probabilities with PyTorch's on ``inputs``; raise when fp32 differs.

    Parameters
    ----------
    folder : str or Path
        The export folder to check.
    inputs : sequence of str or (str, str)
        The texts (or text pairs) to check on.
    reference : mapping of str to ndarray, or ndarray
        PyTorch's probabilities per head name ([n_inputs, n_classes], columns in the
        head's label order); a bare array stands for the only head.
    y : mapping of str to sequence, or sequence, optional
        True labels (per head, or of the only head): the int8 accuracy change is reported,
        on the inputs whose label is not None.
    atol : float
        Largest allowed absolute difference of fp32 probabilities.
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
    got = fp32.predict_proba_heads(inputs, list(reference))
    diff, agree = 0.0, 1.0
    for name, ref in reference.items():
        ref = np.asarray(ref, dtype=np.float64)
        if ref.shape != got[name].shape:
            raise UnfreezeError(f"Reference probabilities of head {name!r} have shape {ref.shape}; the export gives "
                                f"{got[name].shape}.")
        diff = max(diff, float(np.abs(got[name] - ref).max()))
        agree = min(agree, float(np.mean(got[name].argmax(1) == ref.argmax(1))))
    if not diff <= atol:  # also catches NaN
        raise ExportCheckError(f"The ONNX export does not match PyTorch: fp32 probabilities differ by up to "
                               f"{diff:.2e} (allowed {atol:.0e}) on {len(inputs)} texts; nothing was exported.")
    check = ExportCheck(len(inputs), atol, diff, agree)
    if "int8" in fp32.manifest["graphs"]:
        int8 = load_export(folder, "int8", batch_size=batch_size)
        quantised = int8.predict_proba_heads(inputs, list(reference))
        for name, ref in reference.items():
            ref = np.asarray(ref, dtype=np.float64)
            classes = fp32.classes(name)
            result = Int8Check(float(np.mean(quantised[name].argmax(1) == ref.argmax(1))),
                               float(np.abs(quantised[name] - ref).max()))
            known = _known_labels(labels.get(name), len(inputs))
            if known is not None:
                rows, truth = known
                result.accuracy_torch = float(np.mean(classes[ref[rows].argmax(1)] == truth))
                result.accuracy_int8 = float(np.mean(classes[quantised[name][rows].argmax(1)] == truth))
            check.int8[name] = result
            if min_int8_agreement is not None and result.agreement < min_int8_agreement:
                raise ExportCheckError(f"The int8 export's labels agree with PyTorch's on only {result.agreement:.1%} "
                                       f"of {len(inputs)} texts (head {name!r}; at least {min_int8_agreement:.1%} "
                                       "required); nothing was exported.")
    return check


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


# -- PyTorch's answers, for the check ------------------------------------------------------------

def torch_heads_proba(backbone, heads: Mapping[str, HeadLike], inputs: Sequence, max_length: int,
                      batch_size: int = 32) -> dict[str, np.ndarray]:
    """PyTorch's probabilities of every head: one ``forward_pooled`` pass, each head's ``predict_proba``."""
    from ..features.embed import forward_pooled

    encoded = backbone.encode(list(inputs), max_length)
    wanted = [(int(layer), h.pooling) for h in heads.values() for layer in h.layers]
    pooled = forward_pooled(backbone, encoded, wanted, batch_size, progress=False)
    return {name: np.asarray(h.head.predict_proba(np.concatenate([pooled[(int(layer), h.pooling)]
                                                                  for layer in h.layers], axis=1)))
            for name, h in heads.items()}


def torch_network_proba(model, backbone, inputs: Sequence, max_length: int, batch_size: int = 32) -> np.ndarray:
    """PyTorch's probabilities of a ``TextClassificationModel`` (in eval mode; every module's mode is restored)."""
    from .runtime import softmax

    encoded = backbone.encode(list(inputs), max_length)
    logits = np.empty((len(encoded), model.head.out_features), dtype=np.float32)
    with _eval_mode(model, False), torch.inference_mode():
        for idx, batch in backbone.batches(encoded, batch_size):
            logits[idx] = model(batch).float().cpu().numpy()
    return softmax(logits)


# -- whole export folders --------------------------------------------------------------------------

def write_heads_export(backbone, heads: Mapping[str, HeadLike], folder: str | Path, *, max_length: int = 256,
                       int8: bool = False, check_inputs: Sequence | None = None,
                       check_labels: Mapping[str, Sequence] | Sequence | None = None, batch_size: int = 32,
                       exporter: str = "dynamo", overwrite: bool = True, min_int8_agreement: float | None = None,
                       per_channel: bool = True, keep_ffn_output: bool = False, reduce_range: bool = True,
                       source: Mapping[str, Any] | None = None) -> ExportResult:
    """Export a frozen backbone and its logistic heads (a features or multi-head bundle) to ``folder``.

    One graph computes every pooled layer any head needs; the heads' weights are stored
    beside it and applied in numpy. The folder appears only after the export passed
    :func:`check_export`.

    Parameters
    ----------
    backbone : Backbone
        The frozen backbone the heads were fitted on.
    heads : mapping of str to ExportHead
        Head name -> head (``ExportHead``, or any object with ``pooling``, ``layers``,
        ``classes``, ``head``). A single-head bundle's head is conventionally ``"default"``.
    folder : str or Path
        The export folder to write (replaced when it already holds an export).
    max_length : int
        Tokens per input, as the bundle used (capped by the model's limits).
    int8 : bool
        Also write an int8 graph (ONNX Runtime's dynamic quantiser).
    check_inputs : sequence, optional
        Texts to check on (default: a few built-in sentences).
    check_labels : mapping or sequence, optional
        True labels of ``check_inputs`` (per head, or of the only head): reports int8's accuracy change.
    batch_size : int
        Inputs per forward pass while checking.
    exporter : {'dynamo', 'torchscript'}
        Which of torch's ONNX exporters to use.
    overwrite : bool
        Replace an export already at ``folder``; a folder that is not an export is never replaced.
    min_int8_agreement : float or None
        Fail when int8 labels agree with PyTorch's on a smaller share of the check texts.
    per_channel : bool
        Per-channel int8 weight scales (the default; see ``INT8_OP_TYPES``).
    keep_ffn_output : bool
        Keep the feed-forward output projections in fp32 in the int8 graph (see :func:`quantize_int8`).
    reduce_range : bool
        7-bit int8 weights (the default; see :func:`quantize_int8`).
    source : mapping, optional
        JSON-serialisable facts to record in the manifest (e.g. the bundle's path and digest).

    Returns
    -------
    ExportResult
    """
    if not heads:
        raise UnfreezeError("Nothing to export: give at least one head.")
    require_exporter(exporter)  # before any work: a missing package is the first thing to say
    folder = check_target(Path(folder), overwrite)
    limit = backbone.length_limit(max_length)
    wanted = list(dict.fromkeys((int(layer), h.pooling) for h in heads.values() for layer in h.layers))
    inputs = list(check_inputs) if check_inputs is not None else list(DEFAULT_CHECK_TEXTS)
    reference = torch_heads_proba(backbone, heads, inputs, limit, batch_size)

    def write(tmp: Path) -> dict:
        export_pooled(backbone, wanted, tmp / GRAPH_FILES["fp32"], exporter=exporter)
        entries = {}
        (tmp / HEADS_DIR).mkdir()
        for i, (name, h) in enumerate(heads.items()):
            file = f"{HEADS_DIR}/{i}.safetensors"
            _save_head(h.head, tmp / file)
            entries[name] = {"file": file, "pooling": h.pooling, "layers": [int(layer) for layer in h.layers],
                             "labels": _labels(h.classes)}
        outputs = [{"name": pooled_output_name(layer, pooling), "layer": layer, "pooling": pooling}
                   for layer, pooling in wanted]
        return {"kind": "heads", "outputs": outputs, "heads": entries,
                "model": {**_model_facts(backbone), "fingerprint": backbone.fingerprint()}}

    quantization = ({"per_channel": per_channel, "keep_ffn_output": keep_ffn_output, "reduce_range": reduce_range}
                    if int8 else None)
    return _write_folder(folder, backbone, limit, write, quantization, exporter, inputs, reference, check_labels,
                         batch_size, min_int8_agreement, source)


def write_network_export(model, backbone, classes: Sequence, folder: str | Path, *, max_length: int = 256,
                         int8: bool = False, check_inputs: Sequence | None = None,
                         check_labels: Sequence | None = None, batch_size: int = 32, exporter: str = "dynamo",
                         overwrite: bool = True, min_int8_agreement: float | None = None, per_channel: bool = True,
                         keep_ffn_output: bool = False, reduce_range: bool = True,
                         source: Mapping[str, Any] | None = None) -> ExportResult:
    """Export a fine-tuned network (freeze/full/reinit/LoRA bundle) to ``folder``.

    Parameters
    ----------
    model : TextClassificationModel
        The trained network (a LoRA body is merged on a copy; ``model`` is not changed).
    backbone : Backbone
        Its backbone: the tokenizer and the model facts come from it.
    classes : sequence
        Labels, in the order of the network's logits.
    folder : str or Path
        The export folder to write.
    max_length, int8, check_inputs, check_labels, batch_size, exporter, overwrite, min_int8_agreement,
    per_channel, keep_ffn_output, reduce_range, source
        As for :func:`write_heads_export` (``check_labels`` is one sequence: there is one head).

    Returns
    -------
    ExportResult
    """
    require_exporter(exporter)
    folder = check_target(Path(folder), overwrite)
    classes = _labels(classes)
    if len(classes) != model.head.out_features:
        raise UnfreezeError(f"The network gives {model.head.out_features} logits but {len(classes)} labels were "
                            "given.")
    limit = backbone.length_limit(max_length)
    inputs = list(check_inputs) if check_inputs is not None else list(DEFAULT_CHECK_TEXTS)
    reference = {DEFAULT_HEAD: torch_network_proba(model, backbone, inputs, limit, batch_size)}

    def write(tmp: Path) -> dict:
        example = _example_batch(backbone)
        export_network(model, tmp / GRAPH_FILES["fp32"], example=example, exporter=exporter)
        return {"kind": "network", "outputs": [{"name": "logits"}],
                "heads": {DEFAULT_HEAD: {"labels": classes, "pooling": model.pooling,
                                         "layers": [int(layer) for layer in model.layers]}},
                "model": _model_facts(backbone)}

    labels = None if check_labels is None else {DEFAULT_HEAD: check_labels}
    quantization = ({"per_channel": per_channel, "keep_ffn_output": keep_ffn_output, "reduce_range": reduce_range}
                    if int8 else None)
    return _write_folder(folder, backbone, limit, write, quantization, exporter, inputs, reference, labels,
                         batch_size, min_int8_agreement, source)


def _write_folder(folder: Path, backbone, limit: int, write, quantization: dict | None, exporter: str,
                  inputs: list, reference: dict, check_labels, batch_size: int, min_int8_agreement: float | None,
                  source: Mapping[str, Any] | None) -> ExportResult:
    from ..storage.cache import atomic_path

    with atomic_path(folder) as tmp:  # a temporary folder beside the target, renamed into place on success
        tmp.mkdir()
        specific = write(tmp)
        graphs = {"fp32": GRAPH_FILES["fp32"]}
        if quantization is not None:
            quantize_int8(tmp / GRAPH_FILES["fp32"], tmp / GRAPH_FILES["int8"], **quantization)
            graphs["int8"] = GRAPH_FILES["int8"]
        backbone.tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file() and ".onnx" in p.name}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **specific,
            "graphs": graphs,
            "files": files,
            "tokenizer": TOKENIZER_DIR,
            "max_length": int(limit),
            "token_type_ids": "token_type_ids" in getattr(backbone.tokenizer, "model_input_names", []),
            "pad_token_id": int(backbone.tokenizer.pad_token_id),
            "exporter": exporter,
            "quantization": None if quantization is None else {
                "method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
                "op_types": list(INT8_OP_TYPES), **quantization},
            "versions": _versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": dict(source or {}),
        }
        _write_manifest(tmp, manifest)
        check = check_export(tmp, inputs, reference, check_labels, batch_size=batch_size,
                             min_int8_agreement=min_int8_agreement)
        manifest["check"] = check.to_dict()
        _write_manifest(tmp, manifest)
    return ExportResult(folder, manifest, check)


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def check_target(folder: Path, overwrite: bool) -> Path:
    if folder.exists():
        if is_export(folder):
            if not overwrite:
                raise UnfreezeError(f"{folder} already holds an ONNX export; pass overwrite=True (--overwrite) to replace "
                                    "it.")
        elif not folder.is_dir() or any(folder.iterdir()):
            raise UnfreezeError(f"{folder} exists and is not an ONNX export; choose another folder.")
    return folder


def _save_head(head, file: Path) -> None:
    from safetensors.numpy import save_file

    tensors, _meta = head.state()
    save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()
               if k in ("mean", "scale", "coef", "intercept")}, str(file))


def _labels(classes) -> list:
    """Labels as JSON values (numpy scalars become Python ones)."""
    return np.asarray(classes).tolist()


def _model_facts(backbone) -> dict:
    base = backbone.model.get_base_model() if hasattr(backbone.model, "get_base_model") else backbone.model
    return {"reference": str(backbone.reference), "family": backbone.family, "architecture": type(base).__name__,
            "num_blocks": backbone.num_blocks, "hidden_size": backbone.hidden_size, "is_decoder": backbone.is_decoder}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"python": platform.python_version(), "unfreeze": __version__}
    for name in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


__all__ = ["DEFAULT_CHECK_TEXTS", "EXPORTERS", "INT8_OP_TYPES", "ExportCheck", "ExportCheckError", "ExportHead",
           "ExportResult", "Int8Check", "check_export", "export_network", "export_pooled", "ffn_output_nodes",
           "quantize_int8", "torch_heads_proba", "torch_network_proba", "unsupported", "write_heads_export",
           "write_network_export"]
