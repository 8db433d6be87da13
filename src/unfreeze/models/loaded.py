"""Loaded backbones, shared by everything in the process.

Clones, cross-validation folds, sweep cells, multi-head bundles and the prediction
service should not reload weights. Strategies that never change weights use the shared
copy; those that train get a private deep copy of it (``private_backbone``).

A bfloat16 copy (``shared_backbone(ref, device, torch.bfloat16)``) serves work without
gradients where the hardware runs bf16 fast (``unfreeze.machine.hardware``): embedding, the
frozen-prefix pass, prediction of frozen-backbone bundles. Its weights are the fp32
model's rounded once, so its fingerprint (part of every cache key) differs from fp32's:
an embedding computed in bf16 is never served to an fp32 request.
"""

from __future__ import annotations

import copy

from .backbone import Backbone

_BACKBONES: dict[tuple[str, str, str], Backbone] = {}


def shared_backbone(reference: str, device: str | None = None, dtype=None) -> Backbone:
    """The process's one loaded copy of ``reference`` on ``device`` (loaded on first use), in ``dtype``
    (None or float32: as loaded; bfloat16: a rounded copy of it). Do not modify it."""
    name = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    key = (reference, str(device), name)
    if key not in _BACKBONES:
        if name == "float32":
            _BACKBONES[key] = Backbone.load(reference, device=device)
        else:
            base = shared_backbone(reference, device)
            model = copy.deepcopy(base.model).to(dtype).eval()
            _BACKBONES[key] = Backbone(model, base.tokenizer, base.reference)
    return _BACKBONES[key]


def private_backbone(reference: str, device: str | None = None) -> Backbone:
    """A copy of the shared backbone that training may change."""
    base = shared_backbone(reference, device)
    return Backbone(copy.deepcopy(base.model), base.tokenizer, base.reference)


def forget_backbones() -> None:
    """Drop every shared backbone: the next use loads from disk again."""
    _BACKBONES.clear()
