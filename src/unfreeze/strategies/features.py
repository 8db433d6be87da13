"""``features``: nothing in the model is trained; an L2 logistic regression on pooled states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import StrategyConfig


@dataclass
class FeaturesConfig(StrategyConfig):
    name: ClassVar[str] = "features"
    kind: ClassVar[str] = "features"

    def frozen_blocks(self, num_blocks: int) -> int:
        return num_blocks
