"""Training: the one loop and its skeleton, the frozen-prefix cache, SetFit's contrastive tuning.

``Training`` (the settings) imports no torch; the rest loads on first use, so that the
command line can read the settings' declarations quickly.
"""

from __future__ import annotations

import importlib

from .settings import TRAINING_SETTINGS, Training

_LAZY = {
    "TrainConfig": ".loop",
    "TrainRecord": ".loop",
    "TrainingRun": ".loop",
    "predict_logits": ".forward",
    "train": ".loop",
    "TextClassificationModel": ".model",
    "PrefixStates": ".prefix",
    "compute_prefix_states": ".prefix",
}

__all__ = ["TRAINING_SETTINGS", "Training", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'unfreeze.training' has no attribute {name!r}")
