"""ONNX export and the ONNX Runtime predictor (``pip install 'unfreeze[onnx]'``).

Exporting (needs torch, ``onnx``, ``onnxscript`` and ``onnxruntime``)::

    from unfreeze.export import ExportHead, write_heads_export, write_network_export
    write_heads_export(backbone, {"default": ExportHead("mean", [6], classes, head)}, "bundle/onnx", int8=True)
    write_network_export(net, backbone, classes, "bundle/onnx", int8=True)

Predicting (needs ``onnxruntime``; no PyTorch weights are loaded)::

    from unfreeze.export import load_export
    clf = load_export("bundle/onnx", precision="int8")
    clf.predict(["a text"]); clf.predict_proba_heads(["a text"])

Bundles (what ``unfreeze export`` and ``--runtime onnx`` use; ``exporter.py``, ``onnx_predictor.py``)::

    from unfreeze.export import export_bundle
    export_bundle("runs/features", int8=True)            # -> runs/features/onnx, checked on stored inputs
    Classifier.load("runs/features", runtime="onnx", precision="int8").predict(["a text"])

The export side is imported on first use, so ``load_export`` does not build any graph machinery.
"""

from __future__ import annotations

import importlib

from .manifest import DEFAULT_HEAD, GRAPH_FILES, MANIFEST_FILE, is_export, pooled_output_name, read_manifest

# where a bundle's export goes and where --runtime onnx looks: BUNDLE/onnx
DEFAULT_EXPORT_DIR = "onnx"

_LAZY = {
    # export side (torch): graphs, int8, the self-check, whole folders
    "DEFAULT_CHECK_TEXTS": ".check",
    "EXPORTERS": ".graphs",
    "INT8_OP_TYPES": ".quantize",
    "ExportCheck": ".check",
    "ExportCheckError": ".check",
    "ExportHead": ".onnx",
    "ExportResult": ".onnx",
    "Int8Check": ".check",
    "check_export": ".check",
    "export_network": ".graphs",
    "export_pooled": ".graphs",
    "ffn_output_nodes": ".quantize",
    "quantize_int8": ".quantize",
    "torch_heads_proba": ".onnx",
    "torch_network_proba": ".onnx",
    "write_heads_export": ".onnx",
    "write_network_export": ".onnx",
    # bundles and their exports
    "BundleExport": ".exporter",
    "export_bundle": ".exporter",
    "find_export": ".locate",
    "open_export": ".locate",
    "read_check_data": ".exporter",
    "OnnxPredictor": ".onnx_predictor",
    # runtime side (onnxruntime)
    "INSTALL_HINT": ".runtime",
    "NumpyLogisticHead": ".runtime",
    "OnnxClassifier": ".runtime",
    "OnnxEncoder": ".runtime",
    "OnnxGraph": ".runtime",
    "OnnxNetwork": ".runtime",
    "TextEncoder": ".runtime",
    "available_precisions": ".runtime",
    "load_export": ".runtime",
    "require_onnxruntime": ".runtime",
}

__all__ = [
    "DEFAULT_EXPORT_DIR",
    "DEFAULT_HEAD",
    "GRAPH_FILES",
    "MANIFEST_FILE",
    "is_export",
    "pooled_output_name",
    "read_manifest",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'unfreeze.export' has no attribute {name!r}")
