"""unfreeze: how much of a pretrained transformer should you train?

The top level imports lazily: ``unfreeze.report``, the data tools, the strategies and the
training settings load without torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Classifier": ".classifier",
    "MultiHeadClassifier": ".multihead",
    "Training": ".training.settings",
    "Strategy": ".strategies",
    "TunedStrategy": ".strategies",
    "Features": ".strategies",
    "Freeze": ".strategies",
    "Full": ".strategies",
    "Reinit": ".strategies",
    "Lora": ".strategies",
    "SetFit": ".strategies",
    "Truncate": ".strategies",
    "Gradual": ".strategies",
    "Mix": ".strategies",
    "BiLSTM": ".strategies",
    "Subspace": ".strategies",
    "register_strategy": ".strategies",
    "TextDataset": ".data",
    "load_data": ".data",
    "sample": ".data",
    "train_test_split": ".data",
    "UnfreezeError": ".errors",
    "classification_metrics": ".metrics",
    "SweepSpec": ".sweep",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'unfreeze' has no attribute {name!r}")
