"""``gradual``: gradual unfreezing from the top with discriminative learning rates (ULMFiT).

Howard & Ruder 2018, "Universal language model fine-tuning for text classification":
training starts with the head alone, then unfreezes one more block from the top each
epoch (or as many as a given schedule says), so that the pretrained lower blocks are not
disturbed while the new head is still random. Each block trains at the body's learning
rate divided by ``factor`` once per block below the top (ULMFiT: 2.6); the embeddings,
which unfreeze last, at the lowest rate.

The shared loop runs it through two hooks (``training.loop.train``): per-parameter
learning rates, and a callback at the start of each epoch that sets which blocks train.
The blocks that the planned epochs never reach are a frozen prefix: cached once, exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..errors import invalid_parameter
from ..params import float_in, is_int, setting
from .base import LoopHooks, TunedStrategy, freeze_bottom

if TYPE_CHECKING:
    from torch import nn

    from ..models.backbone import Backbone
    from ..training.loop import TrainConfig


def parse_schedule(value: object) -> list[int] | None:
    """``"1,1,2"``, ``"1+1+2"`` (in a sweep grid, where commas separate values) or ``[1, 1, 2]`` -> ``[1, 1, 2]``;
    None stays None; anything else raises ValueError."""
    if value is None:
        return None
    items = [part for part in re.split(r"[,;+\s]+", value.strip())] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(value)
    out = []
    for item in items:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        if not is_int(item) or item < 0:
            raise ValueError(value)
        out.append(int(item))
    return out


def _check_schedule(value: object, name: str, owner: str) -> None:
    try:
        parse_schedule(value)
    except ValueError:
        raise invalid_parameter(
            name,
            owner,
            "None or comma-separated ints >= 0 (blocks unfrozen at the start of each epoch), e.g. '1,1,2' or '1+1+2'",
            value,
        ) from None


@dataclass(repr=False)
class Gradual(TunedStrategy):
    """Gradual unfreezing from the top (the head first), each block at its own discriminative learning rate.

    Parameters
    ----------
    schedule : str, list of int or None
        Blocks newly unfrozen at the start of each epoch, from the top, e.g. ``"1,1,2"`` (or
        ``"1+1+2"``, as a sweep grid value):
        epoch 1 trains the top block, epoch 2 the top two, epoch 3 and later the top four.
        None: the head alone in epoch 1, then one more block each epoch (``"0,1,1,..."``).
        Once all L blocks train, the embeddings train too.
    factor : float
        Each block's learning rate is the one above it divided by ``factor`` (>= 1; ULMFiT:
        2.6; 1: one rate). The top block trains at the body's learning rate.
    """

    name: ClassVar[str] = "gradual"
    summary: ClassVar[str] = (
        "the head first, then one more block from the top each epoch (or a schedule), "
        "with discriminative learning rates (ULMFiT)"
    )

    schedule: str | None = setting(
        None,
        "Blocks unfrozen at the start of each epoch, e.g. 1,1,2 (default: the head alone, then one more each epoch).",
        _check_schedule,
    )
    factor: float = setting(
        2.6, "Learning-rate divisor per block below the top (ULMFiT: 2.6).", float_in(1.0, low_inclusive=True)
    )

    def unfrozen_by_epoch(self, num_blocks: int, epochs: int) -> list[int]:
        """How many blocks from the top train in each of epochs 1..``epochs`` (never more than L)."""
        steps = parse_schedule(self.schedule)
        if steps is None:
            steps = [0] + [1] * max(epochs - 1, 0)
        counts, total = [], 0
        for epoch in range(epochs):
            total += steps[epoch] if epoch < len(steps) else 0
            counts.append(min(total, num_blocks))
        return counts

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
        steps = parse_schedule(self.schedule)
        if steps is not None and sum(steps) > backbone.num_blocks:
            raise invalid_parameter(
                "schedule",
                self.name,
                f"a schedule that unfreezes at most {backbone.num_blocks} blocks in all for this model",
                self.schedule,
            )

    def frozen_blocks(self, num_blocks: int) -> int:
        # what no epoch of the schedule reaches; the default schedule may reach every block
        steps = parse_schedule(self.schedule)
        return max(num_blocks - sum(steps), 0) if steps is not None else 0

    def prepare(self, backbone: Backbone) -> nn.Module:
        freeze_bottom(backbone, self.frozen_blocks(backbone.num_blocks))
        return backbone.model

    def loop_hooks(
        self, backbone: Backbone, config: TrainConfig, frozen_k: int, n_train: int, layers: Sequence[int]
    ) -> LoopHooks:
        from ..training.loop import layer_lr_scales, planned_epochs

        num_blocks = backbone.num_blocks
        counts = self.unfrozen_by_epoch(num_blocks, planned_epochs(config, n_train))
        never = num_blocks - counts[-1]
        # the optimiser holds exactly what some epoch trains; the rest is a prefix, cached where
        # no pooled layer lies inside it
        freeze_bottom(backbone, never)

        def on_epoch(epoch: int) -> dict:
            unfrozen = counts[min(epoch, len(counts)) - 1]
            freeze_bottom(backbone, num_blocks - unfrozen)
            return {"unfrozen_blocks": unfrozen}

        return LoopHooks(min(never, min(layers)), layer_lr_scales(backbone, 1.0 / self.factor), on_epoch)
