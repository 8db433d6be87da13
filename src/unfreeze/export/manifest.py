"""The ``export.json`` manifest: everything needed to predict from an export without PyTorch weights.

An export folder holds::

    export.json            this manifest (JSON, never pickle)
    model.onnx             the fp32 graph: token ids -> pooled layers (kind "heads") or logits (kind "network")
    model.int8.onnx        the same graph, dynamically quantised by ONNX Runtime (optional)
    tokenizer/             the Hugging Face tokenizer files
    heads/N.safetensors    one logistic head per file (kind "heads": standardisation + coefficients)

The manifest records, besides the file names, what the graph cannot: the tokenizer's
truncation length and pad id, whether token type ids are fed, which (layer, pooling)
each graph output is, and each head's layers, pooling and labels. It also records the
sha256 of every graph file, so a damaged file is found at load, not by wrong answers.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnfreezeError

MANIFEST_FILE = "export.json"
FORMAT = "unfreeze-onnx-export"
FORMAT_VERSION = 1
TOKENIZER_DIR = "tokenizer"
HEADS_DIR = "heads"
GRAPH_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
KINDS = ("heads", "network")
PRECISIONS = tuple(GRAPH_FILES)
# the name a single-head export's only head goes by (the same as multi-head bundles use)
DEFAULT_HEAD = "default"


def pooled_output_name(layer: int, pooling: str) -> str:
    """The graph output that carries hidden state ``layer`` pooled with ``pooling``."""
    return f"pooled.{int(layer)}.{pooling}"


def is_export(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST_FILE).is_file()


def read_manifest(folder: str | Path) -> dict:
    """The manifest of the export at ``folder``; one-line errors for a missing, damaged or newer one.

    Parameters
    ----------
    folder : str or Path
        An export folder written by :func:`unfreeze.export.write_heads_export` or
        :func:`unfreeze.export.write_network_export`.

    Returns
    -------
    dict
        The parsed manifest, with its file names checked to stay inside ``folder``.
    """
    folder = Path(folder)
    file = folder / MANIFEST_FILE
    if not file.is_file():
        raise UnfreezeError(f"{folder} is not an ONNX export (no {MANIFEST_FILE}). Create one with `unfreeze export`.")
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnfreezeError(
            f"the export at {folder} is damaged: {MANIFEST_FILE} is not valid JSON ({exc}). "
            "Export it again with `unfreeze export`."
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UnfreezeError(f"{file} is not an unfreeze ONNX export manifest (format {FORMAT!r} expected).")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise UnfreezeError(
            f"The export at {folder} is in export format {manifest.get('format_version')}; this "
            f"unfreeze reads export formats up to {FORMAT_VERSION}. Upgrade unfreeze or export again."
        )
    if manifest.get("kind") not in KINDS:
        raise UnfreezeError(
            f"the export at {folder} is damaged: unknown kind {manifest.get('kind')!r} in {MANIFEST_FILE}."
        )
    required = ["graphs", "heads", "max_length", "token_type_ids", "pad_token_id"]
    required += ["outputs", "model"] if manifest["kind"] == "heads" else []
    missing = [key for key in required if key not in manifest]
    if missing or "fp32" not in manifest.get("graphs", {}):
        lacking = missing[0] if missing else "graphs.fp32"
        raise UnfreezeError(
            f"the export at {folder} is damaged: {MANIFEST_FILE} lacks {lacking!r}. Export it again "
            "with `unfreeze export`."
        )
    root = folder.resolve()
    named = [
        *manifest.get("graphs", {}).values(),
        manifest.get("tokenizer", TOKENIZER_DIR),
        *(h["file"] for h in manifest.get("heads", {}).values() if "file" in h),
    ]
    for name in named:
        # a manifest must never point outside its folder
        if not (root / name).resolve().is_relative_to(root):
            raise UnfreezeError(
                f"the export at {folder} is damaged: {MANIFEST_FILE} names {name!r}, outside the export folder."
            )
    return manifest
