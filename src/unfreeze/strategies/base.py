"""What every strategy config shares: validation in the scikit-learn message shape, freezing helpers."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import ClassVar

from torch import nn

from ..errors import invalid_parameter
from ..models.backbone import Backbone


def check_int(value: object, name: str, owner: str, low: int, high: int | None = None, context: str = "") -> None:
    expected = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low
            or (high is not None and value > high)):
        raise invalid_parameter(name, owner, expected + context, value)


def check_float(value: object, name: str, owner: str, low: float, high: float | None = None,
                low_inclusive: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and (high is None or value <= high)
    if not ok:
        bracket = "[" if low_inclusive else "("
        expected = f"a float in {bracket}{low}, {high}]" if high is not None else f"a float {'>=' if low_inclusive else '>'} {low}"
        raise invalid_parameter(name, owner, expected, value)


@dataclass
class StrategyConfig:
    """Base class. ``kind``: "features" (nothing trained), "loop" (the training loop), "setfit"."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "loop"

    @classmethod
    def from_params(cls, params: dict) -> StrategyConfig:
        """Build from the Classifier's flat parameters, taking the fields this strategy has."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params and params[f.name] is not None})

    def check(self, backbone: Backbone) -> None:
        """Validate the parameters that depend on the model (ranges that name L)."""

    def frozen_blocks(self, num_blocks: int) -> int:
        """Blocks at the bottom whose output never changes during training (the prefix cache's k)."""
        return 0

    def prepare(self, backbone: Backbone) -> nn.Module:
        """Freeze / re-initialise / adapt the body in place; returns the body module to train."""
        return backbone.model


def freeze_bottom(backbone: Backbone, k: int) -> None:
    """Freeze the embedding side, the bottom k blocks and the pooler; train the rest.

    With k = L only the head trains (the final norm freezes too). k = 0 trains everything
    but the pooler, which the head does not read.
    """
    embedding_side, blocks, final, _pooler = backbone.parameter_groups()  # the pooler stays frozen: unused
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    trained = [p for block in blocks[k:] for p in block]
    if k == 0:
        trained += embedding_side
    if k < len(blocks):
        trained += final
    for p in trained:
        p.requires_grad_(True)
