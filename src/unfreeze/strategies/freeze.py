"""``freeze`` and ``full``: the bottom k blocks frozen (k = 0: nothing), the rest and a linear head trained.

GPT-1 Fig. 2 and the "how many layers should I freeze" sweeps. With k >= 1 the frozen
prefix runs once and every epoch trains from its cached output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..params import check_int, int_at_least, setting
from .base import LAYER_DECAY_SETTINGS, TunedStrategy, freeze_bottom

if TYPE_CHECKING:
    from torch import nn

    from ..models.backbone import Backbone


@dataclass(repr=False)
class Freeze(TunedStrategy):
    """Freeze the embeddings and the bottom ``k`` blocks; train the top L-k blocks and a linear head.

    Parameters
    ----------
    k : int or None
        Frozen blocks from the bottom, in [0, L]; None freezes half of them (L // 2).
    """

    name: ClassVar[str] = "freeze"
    training_settings: ClassVar[frozenset[str]] = LAYER_DECAY_SETTINGS
    summary: ClassVar[str] = "the top L-k blocks and a linear head; the embeddings and bottom k blocks stay frozen"
    sweep_defaults: ClassVar[dict[str, list]] = {"k": [0]}

    k: int | None = setting(None, "Frozen blocks from the bottom (default: half of them).", int_at_least(0, True))

    @classmethod
    def advise_defaults_for(cls, num_blocks: int) -> dict[str, list]:
        # the whole range of depth, cheaply: all blocks trained, half, only the top one
        return {"k": sorted({0, num_blocks // 2, max(num_blocks - 1, 0)})}

    def resolved_k(self, num_blocks: int) -> int:
        return num_blocks // 2 if self.k is None else int(self.k)

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
        check_int(self.resolved_k(backbone.num_blocks), "k", self.name, 0, backbone.num_blocks, " for this model")

    def frozen_blocks(self, num_blocks: int) -> int:
        return self.resolved_k(num_blocks)

    def prepare(self, backbone: Backbone) -> nn.Module:
        freeze_bottom(backbone, self.resolved_k(backbone.num_blocks))
        return backbone.model


@dataclass(repr=False)
class Full(TunedStrategy):
    """Full fine-tuning: every block, the embeddings and a linear head (freeze with k = 0)."""

    name: ClassVar[str] = "full"
    training_settings: ClassVar[frozenset[str]] = LAYER_DECAY_SETTINGS
    summary: ClassVar[str] = "everything (freeze with k = 0)"

    def prepare(self, backbone: Backbone) -> nn.Module:
        freeze_bottom(backbone, 0)
        return backbone.model
