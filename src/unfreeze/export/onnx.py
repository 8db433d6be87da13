"""Exporting to ONNX: whole export folders, written and checked before they are moved into place.

``write_heads_export`` / ``write_network_export`` write a whole export folder
(graphs, tokenizer, heads, ``export.json``) into a temporary folder beside the target,
check it against PyTorch with ``check_export``, and rename it into place only when the
check passes: a failed export leaves nothing behind.

The parts: ``graphs`` (PyTorch to ONNX), ``quantize`` (int8 by ONNX Runtime), ``check``
(the self-check). Their public names are importable from here too.
"""

from __future__ import annotations

import contextlib
import datetime
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import UnfreezeError
from ..storage import strict_json
from .check import DEFAULT_CHECK_TEXTS, FP32_ATOL, ExportCheck, ExportCheckError, Int8Check, check_export
from .graphs import EXPORTERS, example_batch, export_network, export_pooled, require_exporter, unsupported
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
from .numpy_heads import save_head
from .quantize import INT8_OP_TYPES, ffn_output_nodes, quantize_int8
from .reference import torch_heads_proba, torch_network_proba
from .runtime import file_sha256


class HeadLike(Protocol):
    """What a head to export must offer (``features.logistic.Head`` has these attributes, and ``task``: its
    fitted task, None or absent for single)."""

    pooling: str
    layers: Sequence[int]
    classes: Any  # labels in probability-column order ([] for a regression head)
    head: Any  # a fitted head: .state() (mean, scale, coef, intercept) and .decision_function(features)


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
        The fitted head (``unfreeze.features.logistic.LogisticHead``, or a head of another task with the
        same ``state()`` arrays).
    task : Task, optional
        The head's fitted task (``unfreeze.tasks``); None: single.
    """

    pooling: str
    layers: Sequence[int]
    classes: Any
    head: Any
    task: Any = None


@dataclass
class ExportResult:
    """A written export folder, its manifest, and the check it passed."""

    path: Path
    manifest: dict
    check: ExportCheck


def write_heads_export(
    backbone,
    heads: Mapping[str, HeadLike],
    folder: str | Path,
    *,
    max_length: int = 256,
    int8: bool = False,
    check_inputs: Sequence | None = None,
    check_labels: Mapping[str, Sequence] | Sequence | None = None,
    batch_size: int = 32,
    exporter: str = "dynamo",
    overwrite: bool = True,
    min_int8_agreement: float | None = None,
    per_channel: bool = True,
    keep_ffn_output: bool = False,
    reduce_range: bool = True,
    source: Mapping[str, Any] | None = None,
    task: Any = None,
) -> ExportResult:
    """Export a frozen backbone and its heads (a features or multi-head bundle) to ``folder``.

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
    task : Task, optional
        The fitted task of the heads that carry none (a single-head bundle's; ``unfreeze.tasks``): the
        export gives its outputs (probabilities, per-label probabilities, values). None: single.

    Returns
    -------
    ExportResult
    """
    from ..inference.head_tasks import task_of

    if not heads:
        raise UnfreezeError("Nothing to export: give at least one head.")
    if task is not None:
        heads = {
            name: h
            if getattr(h, "task", None) is not None
            else ExportHead(h.pooling, h.layers, h.classes, h.head, task)
            for name, h in heads.items()
        }
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
            save_head(h.head, tmp / file)
            entries[name] = {
                "file": file,
                "pooling": h.pooling,
                "layers": [int(layer) for layer in h.layers],
                "labels": _labels(h.classes),
                "task": task_of(h).state(),  # how the head's scores become outputs
            }
        outputs = [
            {"name": pooled_output_name(layer, pooling), "layer": layer, "pooling": pooling}
            for layer, pooling in wanted
        ]
        return {
            "kind": "heads",
            "outputs": outputs,
            "heads": entries,
            "model": {**_model_facts(backbone), "fingerprint": backbone.fingerprint()},
        }

    quantization = (
        {"per_channel": per_channel, "keep_ffn_output": keep_ffn_output, "reduce_range": reduce_range} if int8 else None
    )
    return _write_folder(
        folder,
        backbone,
        limit,
        write,
        quantization,
        exporter,
        inputs,
        reference,
        check_labels,
        batch_size,
        min_int8_agreement,
        source,
    )


def write_network_export(
    model,
    backbone,
    classes: Sequence | np.ndarray,
    folder: str | Path,
    *,
    max_length: int = 256,
    int8: bool = False,
    check_inputs: Sequence | None = None,
    check_labels: Sequence | None = None,
    batch_size: int = 32,
    exporter: str = "dynamo",
    overwrite: bool = True,
    min_int8_agreement: float | None = None,
    per_channel: bool = True,
    keep_ffn_output: bool = False,
    reduce_range: bool = True,
    source: Mapping[str, Any] | None = None,
    task: Any = None,
) -> ExportResult:
    """Export a fine-tuned network (freeze/full/reinit/LoRA bundle) to ``folder``.

    Parameters
    ----------
    model : TextClassificationModel
        The trained network (a LoRA body is merged on a copy; ``model`` is not changed).
    backbone : Backbone
        Its backbone: the tokenizer and the model facts come from it.
    classes : sequence
        Labels, in the order of the network's logits ([] for a regression network).
    folder : str or Path
        The export folder to write.
    max_length, int8, check_inputs, check_labels, batch_size, exporter, overwrite, min_int8_agreement,
    per_channel, keep_ffn_output, reduce_range, source
        As for :func:`write_heads_export` (``check_labels`` is one sequence: there is one head).
    task : Task, optional
        The network's fitted task (``unfreeze.tasks``): the graph gives its raw outputs (logits), the task
        turns them into outputs when the export predicts; None: single.

    Returns
    -------
    ExportResult
    """
    require_exporter(exporter)
    folder = check_target(Path(folder), overwrite)
    from ..tasks import task_from_state

    classes = _labels(classes)
    task = task if task is not None else task_from_state(None, classes)
    if task.n_outputs != model.head.out_features:
        raise UnfreezeError(
            f"The network gives {model.head.out_features} outputs but its {task.name} task has {task.n_outputs} "
            f"({len(classes)} labels)."
        )
    limit = backbone.length_limit(max_length)
    inputs = list(check_inputs) if check_inputs is not None else list(DEFAULT_CHECK_TEXTS)
    reference = {DEFAULT_HEAD: torch_network_proba(model, backbone, inputs, limit, batch_size, task)}

    def write(tmp: Path) -> dict:
        example = example_batch(backbone)
        export_network(model, tmp / GRAPH_FILES["fp32"], example=example, exporter=exporter)
        return {
            "kind": "network",
            "outputs": [{"name": "logits"}],
            "heads": {
                DEFAULT_HEAD: {
                    "labels": classes,
                    "pooling": model.pooling,
                    "layers": [int(layer) for layer in model.layers],
                    "task": task.state(),  # how the logits become outputs
                }
            },
            "model": _model_facts(backbone),
        }

    labels = None if check_labels is None else {DEFAULT_HEAD: check_labels}
    quantization = (
        {"per_channel": per_channel, "keep_ffn_output": keep_ffn_output, "reduce_range": reduce_range} if int8 else None
    )
    return _write_folder(
        folder,
        backbone,
        limit,
        write,
        quantization,
        exporter,
        inputs,
        reference,
        labels,
        batch_size,
        min_int8_agreement,
        source,
    )


def _write_folder(
    folder: Path,
    backbone,
    limit: int,
    write,
    quantization: dict | None,
    exporter: str,
    inputs: list,
    reference: dict,
    check_labels,
    batch_size: int,
    min_int8_agreement: float | None,
    source: Mapping[str, Any] | None,
) -> ExportResult:
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
            "quantization": None
            if quantization is None
            else {
                "method": "onnxruntime.quantization.quantize_dynamic",
                "weight_type": "QInt8",
                "op_types": list(INT8_OP_TYPES),
                **quantization,
            },
            "versions": _versions(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "source": dict(source or {}),
        }
        _write_manifest(tmp, manifest)
        check = check_export(
            tmp, inputs, reference, check_labels, batch_size=batch_size, min_int8_agreement=min_int8_agreement
        )
        manifest["check"] = check.to_dict()
        _write_manifest(tmp, manifest)
    return ExportResult(folder, manifest, check)


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST_FILE).write_text(strict_json.dumps(manifest, indent=2, default=str) + "\n")


def check_target(folder: Path, overwrite: bool) -> Path:
    if folder.exists():
        if is_export(folder):
            if not overwrite:
                raise UnfreezeError(
                    f"{folder} already holds an ONNX export; pass overwrite=True (--overwrite) to replace it."
                )
        elif not folder.is_dir() or any(folder.iterdir()):
            raise UnfreezeError(f"{folder} exists and is not an ONNX export; choose another folder.")
    return folder


def _labels(classes) -> list:
    """Labels as JSON values (numpy scalars become Python ones)."""
    return np.asarray(classes).tolist()


def _model_facts(backbone) -> dict:
    base = backbone.model.get_base_model() if hasattr(backbone.model, "get_base_model") else backbone.model
    return {
        "reference": str(backbone.reference),
        "family": backbone.family,
        "architecture": type(base).__name__,
        "num_blocks": backbone.num_blocks,
        "hidden_size": backbone.hidden_size,
        "is_decoder": backbone.is_decoder,
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"python": platform.python_version(), "unfreeze": __version__}
    for name in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


__all__ = [
    "DEFAULT_CHECK_TEXTS",
    "EXPORTERS",
    "FP32_ATOL",
    "INT8_OP_TYPES",
    "ExportCheck",
    "ExportCheckError",
    "ExportHead",
    "ExportResult",
    "HeadLike",
    "Int8Check",
    "check_export",
    "check_target",
    "export_network",
    "export_pooled",
    "ffn_output_nodes",
    "quantize_int8",
    "require_exporter",
    "torch_heads_proba",
    "torch_network_proba",
    "unsupported",
    "write_heads_export",
    "write_network_export",
]
