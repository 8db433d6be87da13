"""``reinit``: re-initialise the top m blocks (and the pooler) before training everything above k.

Zhang et al. 2020, "Revisiting few-sample BERT fine-tuning": the top blocks of a
pretrained encoder are specialised to the pre-training task; re-initialising them
helps few-sample fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..models.backbone import Backbone
from .base import StrategyConfig, check_int, freeze_bottom


def reinitialise(model: nn.Module, modules: list[nn.Module]) -> None:
    """Apply the model's own initialiser (``_init_weights``) to every submodule of ``modules``.

    transformers marks loaded tensors as initialised and its init functions skip such
    tensors, so the marks are cleared first.
    """
    init = getattr(model, "_init_weights", None)
    if init is None:
        raise TypeError(f"{type(model).__name__} has no _init_weights")
    with torch.no_grad():
        for root in modules:
            for module in root.modules():
                if hasattr(module, "_is_hf_initialized"):
                    module._is_hf_initialized = False
                for tensor in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
                    if hasattr(tensor, "_is_hf_initialized"):
                        tensor._is_hf_initialized = False
                init(module)


@dataclass
class ReinitConfig(StrategyConfig):
    """m: top blocks to re-initialise; k: bottom blocks to freeze (default 0)."""

    name: ClassVar[str] = "reinit"
    m: int = 1
    k: int | None = None

    def __post_init__(self) -> None:
        check_int(self.m, "m", self.name, 1)
        if self.k is not None:
            check_int(self.k, "k", self.name, 0)

    def check(self, backbone: Backbone) -> None:
        n = backbone.num_blocks
        check_int(self.m, "m", self.name, 1, n, " for this model")
        # re-initialised blocks must be trained, or they stay random
        check_int(self.k or 0, "k", self.name, 0, n - self.m, f" for this model with m={self.m}")

    def frozen_blocks(self, num_blocks: int) -> int:
        return self.k or 0

    def prepare(self, backbone: Backbone) -> nn.Module:
        n = backbone.num_blocks
        targets = list(backbone.blocks)[n - self.m :]
        pooler = backbone.post_modules().get("pooler")
        if pooler is not None:
            targets.append(pooler)
        reinitialise(backbone.model, targets)
        freeze_bottom(backbone, self.k or 0)
        return backbone.model
