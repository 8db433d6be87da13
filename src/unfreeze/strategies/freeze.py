"""``freeze``: embeddings and the bottom k blocks frozen; the top L-k blocks and a linear head trained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..models.backbone import Backbone
from .base import StrategyConfig, check_int, freeze_bottom


@dataclass
class FreezeConfig(StrategyConfig):
    """k: frozen blocks from the bottom; None means half of them (L // 2)."""

    name: ClassVar[str] = "freeze"
    k: int | None = None

    def __post_init__(self) -> None:
        if self.k is not None:
            check_int(self.k, "k", self.name, 0)

    def resolved_k(self, num_blocks: int) -> int:
        return num_blocks // 2 if self.k is None else int(self.k)

    def check(self, backbone: Backbone) -> None:
        check_int(self.resolved_k(backbone.num_blocks), "k", self.name, 0, backbone.num_blocks, " for this model")

    def frozen_blocks(self, num_blocks: int) -> int:
        return self.resolved_k(num_blocks)

    def prepare(self, backbone: Backbone) -> nn.Module:
        freeze_bottom(backbone, self.resolved_k(backbone.num_blocks))
        return backbone.model


@dataclass
class FullConfig(FreezeConfig):
    """``full``: everything is trained (freeze with k = 0)."""

    name: ClassVar[str] = "full"

    def __post_init__(self) -> None:
        if self.k not in (None, 0):
            check_int(self.k, "k", self.name, 0, 0, " (full fine-tuning freezes nothing; use freeze for k > 0)")
        self.k = 0
