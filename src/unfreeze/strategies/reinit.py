"""``reinit``: re-initialise the top m blocks (and the pooler) before training everything above k.

Zhang et al. 2020, "Revisiting few-sample BERT fine-tuning": the top blocks of a
pretrained encoder are specialised to the pre-training task; re-initialising them
helps few-sample fine-tuning.
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


def reinitialise(model: nn.Module, modules: list[nn.Module]) -> None:
    """Apply the model's own initialiser (``_init_weights``) to every submodule of ``modules``.

    transformers marks loaded tensors as initialised and its init functions skip such
    tensors, so the marks are cleared first.
    """
    import torch

    init = getattr(model, "_init_weights", None)
    if init is None:
        raise TypeError(f"{type(model).__name__} has no _init_weights")
    with torch.no_grad():
        for root in modules:
            for module in root.modules():
                if hasattr(module, "_is_hf_initialized"):
                    # transformers' plain bool flag; nn.Module types attribute assignment as Tensor | Module
                    module._is_hf_initialized = False  # type: ignore[assignment]
                for tensor in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
                    if hasattr(tensor, "_is_hf_initialized"):
                        tensor._is_hf_initialized = False
                init(module)


@dataclass(repr=False)
class Reinit(TunedStrategy):
    """Re-initialise the top ``m`` blocks, then train every block above ``k`` and a linear head.

    Parameters
    ----------
    m : int
        Top blocks to re-initialise, in [1, L].
    k : int or None
        Bottom blocks to freeze, in [0, L - m]; None means 0.
    """

    name: ClassVar[str] = "reinit"
    training_settings: ClassVar[frozenset[str]] = LAYER_DECAY_SETTINGS
    summary: ClassVar[str] = "everything above k, after re-initialising the top m blocks (and pooler)"
    sweep_defaults: ClassVar[dict[str, list]] = {"m": [1]}

    m: int = setting(1, "Top blocks to re-initialise.", int_at_least(1), aliases=("--reinit-m",))
    k: int | None = setting(None, "Bottom blocks to freeze (default 0).", int_at_least(0, True))

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
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
