"""The heads on pooled features, one per task, and the registry that builds and loads them.

- ``single``: :class:`~unfreeze.features.logistic.LogisticHead` (softmax logistic regression, C by CV accuracy);
- ``multilabel``: :class:`~unfreeze.features.ovr.OneVsRestHead` (a logistic regression per label, C by CV micro-F1);
- ``regression``: :class:`~unfreeze.features.ridge.RidgeHead` (ridge, alpha by leave-one-out CV).

Every head standardises the features, exposes ``logits(features)`` [n, n_outputs] and
``n_outputs``, and saves as safetensors arrays plus a JSON description whose ``type`` names
it here (a head written before types existed is a logistic one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from .logistic import LogisticHead
from .ovr import OneVsRestHead
from .ridge import RidgeHead
from .strengths import head_kind


class FittedHead(Protocol):
    """What an ``EmbeddingHead`` (and the strategies that fit one) need of its head."""

    def fit(self, features: np.ndarray, targets: np.ndarray) -> FittedHead: ...

    @property
    def n_outputs(self) -> int: ...

    def logits(self, features: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, features: np.ndarray) -> np.ndarray: ...

    def record(self) -> dict[str, object]: ...

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, object]]: ...


HEAD_TYPES: dict[str, Any] = {"logistic": LogisticHead, "ovr_logistic": OneVsRestHead, "ridge": RidgeHead}


def make_head(
    task: str,
    owner: str,
    C: float | None = None,
    alpha: float | None = None,
    cv: int = 5,
    seed: int = 0,
    class_weight: str | None = None,
    out_of_fold: bool = False,
) -> FittedHead:
    """An unfitted head for ``task``; C belongs to the logistic heads and alpha to ridge: the other is refused."""
    kind = head_kind(task, owner, C, alpha)
    if kind == "ridge":
        return RidgeHead(alpha=alpha)
    if kind == "ovr_logistic":
        return OneVsRestHead(C=C, cv=cv, seed=seed, class_weight=class_weight, out_of_fold=out_of_fold)
    return LogisticHead(C=C, cv=cv, seed=seed, class_weight=class_weight)


def head_from_state(tensors: Mapping[str, object], meta: dict) -> FittedHead:
    """The fitted head a bundle stored (``state()``'s arrays and description)."""
    kind = meta.get("type", "logistic")
    if kind not in HEAD_TYPES:
        raise ValueError(f"unknown head type {kind!r} (known: {', '.join(HEAD_TYPES)})")
    return HEAD_TYPES[kind].from_state(tensors, meta)
