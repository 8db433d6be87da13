"""``lora``: low-rank adapters on the attention projections (PEFT), plus a fully trained head.

Hu et al. 2021. Target modules are chosen per family when not given; ``top_blocks``
restricts the adapters to the top blocks, which leaves a frozen prefix to cache.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..errors import UnfreezeError
from ..models.backbone import Backbone
from .base import StrategyConfig, check_float, check_int, freeze_bottom

# attention projections by family (module attribute names inside a block)
ATTENTION_PROJECTIONS: dict[str, tuple[str, ...]] = {
    "bert": ("query", "key", "value"),
    "roberta": ("query", "key", "value"),
    "xlm-roberta": ("query", "key", "value"),
    "electra": ("query", "key", "value"),
    "mpnet": ("q", "k", "v"),
    "distilbert": ("q_lin", "k_lin", "v_lin"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj"),
    "gpt2": ("c_attn",),
    "llama": ("q_proj", "k_proj", "v_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj"),
}


@dataclass
class LoraConfig(StrategyConfig):
    """r: rank; lora_alpha: scale numerator (scale = alpha / r); lora_dropout on the adapter input;
    target_modules: attribute names inside a block (default: the family's attention projections);
    top_blocks: put adapters only in the top N blocks (default: all)."""

    name: ClassVar[str] = "lora"
    r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.1
    target_modules: tuple[str, ...] | None = None
    top_blocks: int | None = None

    def __post_init__(self) -> None:
        check_int(self.r, "r", self.name, 1)
        check_float(self.lora_alpha, "lora_alpha", self.name, 0.0)
        check_float(self.lora_dropout, "lora_dropout", self.name, 0.0, 1.0, low_inclusive=True)
        if self.top_blocks is not None:
            check_int(self.top_blocks, "top_blocks", self.name, 1)
        if isinstance(self.target_modules, str):
            self.target_modules = tuple(t.strip() for t in self.target_modules.split(",") if t.strip())

    def targets(self, backbone: Backbone) -> tuple[str, ...]:
        if self.target_modules:
            return tuple(self.target_modules)
        if backbone.family not in ATTENTION_PROJECTIONS:
            raise UnfreezeError(
                f"No default LoRA target modules for model family {backbone.family!r}. "
                "Name them with target_modules (--target-modules), e.g. q_proj,v_proj."
            )
        return ATTENTION_PROJECTIONS[backbone.family]

    def check(self, backbone: Backbone) -> None:
        if self.top_blocks is not None:
            check_int(self.top_blocks, "top_blocks", self.name, 1, backbone.num_blocks, " for this model")
        names = self._module_names(backbone)
        if not names:
            raise UnfreezeError(
                f"LoRA target modules {', '.join(self.targets(backbone))} match no linear layer in the blocks of "
                f"{type(backbone.model).__name__}. Check target_modules (--target-modules)."
            )

    def frozen_blocks(self, num_blocks: int) -> int:
        return num_blocks - self.top_blocks if self.top_blocks else 0

    def _module_names(self, backbone: Backbone) -> list[str]:
        """Full names of the adapted modules: the targets inside the chosen blocks."""
        wanted = set(self.targets(backbone))
        first = self.frozen_blocks(backbone.num_blocks)
        chosen = {id(m) for block in list(backbone.blocks)[first:] for m in block.modules()}
        return [name for name, module in backbone.model.named_modules()
                if id(module) in chosen and name.rsplit(".", 1)[-1] in wanted and _is_adaptable(module)]

    def prepare(self, backbone: Backbone) -> nn.Module:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        names = self._module_names(backbone)
        freeze_bottom(backbone, backbone.num_blocks)  # everything frozen; PEFT marks its adapters trainable
        peft_config = PeftLoraConfig(r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                                     target_modules=names, bias="none",
                                     # GPT-2's Conv1D stores its weight transposed
                                     fan_in_fan_out=backbone.family == "gpt2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # PEFT reads a deprecated transformers property
            return get_peft_model(backbone.model, peft_config)


def _is_adaptable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
