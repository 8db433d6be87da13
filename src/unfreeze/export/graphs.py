"""ONNX graphs from PyTorch building blocks.

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
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UnfreezeError
from ..models.pooling import pool
from .manifest import (
    pooled_output_name,
)
from .runtime import INSTALL_HINT, require_onnxruntime

EXPORTERS = ("dynamo", "torchscript")


# the TorchScript exporter needs opset 17 for LayerNormalization as one op
TORCHSCRIPT_OPSET = 17


# protobuf files stop at 2 GiB: larger models keep their weights in a .data file beside the graph
EXTERNAL_DATA_BYTES = 1_500_000_000


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
    example = example_batch(backbone)
    names = [pooled_output_name(layer, pooling) for layer, pooling in wanted]
    with eval_mode(body, merged):
        _export(module, example, Path(path), names, exporter, body)
    return Path(path)


def export_network(
    model, path: str | Path, *, example: Mapping[str, Any] | None = None, exporter: str = "dynamo"
) -> Path:
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
    with eval_mode(body, merged), eval_mode(model.head, False):
        _export(module, dict(example), Path(path), ["logits"], exporter, body)
    return Path(path)


class _PooledGraph(nn.Module):
    """Token ids -> one pooled vector per (layer, pooling), computed as ``forward_pooled`` does."""

    def __init__(self, body: nn.Module, wanted: list[tuple[int, str]], num_blocks: int) -> None:
        super().__init__()
        self.body = body
        self.wanted = wanted
        # the same choice as forward_pooled: last_hidden_state alone when only the top is wanted
        self.only_last = all(layer == num_blocks for layer, _ in wanted)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        out = self.body(
            **_model_inputs(input_ids, attention_mask, token_type_ids), output_hidden_states=not self.only_last
        )
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
        states = [
            out.last_hidden_state if layer == self.num_blocks else out.hidden_states[layer] for layer in self.layers
        ]
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
def eval_mode(module, owned: bool) -> Iterator[None]:
    """Eval mode while tracing (dropout off), the caller's mode restored after."""
    modes = None if owned else [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes or []:
            m.training = training


def example_batch(backbone) -> dict:
    """Two real inputs of different lengths, right-padded: tracing must see a mask that matters.

    Rows and columns differ in number (2 by more than 2), so neither dynamic axis is
    mistaken for the other or for a constant.
    """
    encoded = backbone.encode(["an example input for the exporter, a little longer than the other one", "short"], 64)
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
        raise UnfreezeError(
            f"The 'exporter' parameter must be one of {', '.join(map(repr, EXPORTERS))}. Got {exporter!r}."
        )
    require_onnxruntime()  # the export checks itself with it
    needed = ["onnx"] + (["onnxscript"] if exporter == "dynamo" else [])
    for name in needed:
        try:
            __import__(name)
        except ImportError as exc:
            raise UnfreezeError(
                f"Exporting to ONNX needs the {name!r} package; install it with: {INSTALL_HINT}"
            ) from exc


def _export(module, example: dict, path: Path, output_names: list[str], exporter: str, body) -> None:
    require_exporter(exporter)
    names = list(example)
    device = next(body.parameters()).device  # a backbone on a GPU traces there; the graph is device-free
    example = {k: v.to(device) for k, v in example.items()}
    n_bytes = sum(p.numel() * p.element_size() for p in body.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with quiet(), torch.no_grad():
            if exporter == "dynamo":
                batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
                torch.onnx.export(
                    module,
                    (),
                    str(path),
                    kwargs=example,
                    input_names=names,
                    output_names=output_names,
                    dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
                    dynamo=True,
                    external_data=n_bytes > EXTERNAL_DATA_BYTES,
                )
            else:
                torch.onnx.export(
                    module,
                    (),
                    str(path),
                    kwargs=example,
                    input_names=names,
                    output_names=output_names,
                    dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names},
                    dynamo=False,
                    opset_version=TORCHSCRIPT_OPSET,
                )
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
    return UnfreezeError(
        f"Cannot export {arch} to ONNX with torch's {exporter} exporter: {first} "
        f"(exporter={other!r} may work; supported families are BERT, RoBERTa, DistilBERT, MPNet, "
        "DeBERTa-v2, GPT-2 and Llama)."
    )


def _root_cause(exc: object) -> str:
    """The first line of the innermost cause: torch's outer errors say which step failed, the inner one why."""
    seen: list[object] = []
    while isinstance(exc, BaseException) and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    for candidate in reversed(seen or [exc]):
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(candidate)).strip()
        if text:
            return text.splitlines()[0][:240]
    return type(seen[-1]).__name__ if seen else str(exc)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporters' and quantiser's progress prints, warnings and log lines."""
    names = (
        "",
        "torch.onnx",
        "torch.export",
        "torch._export",
        "torch._dynamo",
        "torch.fx",
        "onnxscript",
        "onnx_ir",
        "onnxruntime",
    )
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
