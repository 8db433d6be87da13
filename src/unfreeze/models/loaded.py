"""Loaded backbones, shared by everything in the process.

Clones, cross-validation folds, sweep cells, multi-head bundles and the prediction
service should not reload weights. Strategies that never change weights use the shared
copy; those that train get a private deep copy of it (``private_backbone``).
"""

from __future__ import annotations

import copy

from .backbone import Backbone

_BACKBONES: dict[tuple[str, str], Backbone] = {}


def shared_backbone(reference: str, device: str | None = None) -> Backbone:
    """The process's one loaded copy of ``reference`` on ``device`` (loaded on first use). Do not modify it."""
    key = (reference, str(device))
    if key not in _BACKBONES:
        _BACKBONES[key] = Backbone.load(reference, device=device)
    return _BACKBONES[key]


def private_backbone(reference: str, device: str | None = None) -> Backbone:
    """A copy of the shared backbone that training may change."""
    base = shared_backbone(reference, device)
    return Backbone(copy.deepcopy(base.model), base.tokenizer, base.reference)


def forget_backbones() -> None:
    """Drop every shared backbone: the next use loads from disk again."""
    _BACKBONES.clear()
