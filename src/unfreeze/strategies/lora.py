"""``lora``: low-rank adapters on the attention projections (PEFT), plus a fully trained head.

Hu et al. 2021. Target modules are chosen per family when not given; ``top_blocks``
restricts the adapters to the top blocks, which leaves a frozen prefix to cache.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..errors import UnfreezeError, invalid_parameter
from ..params import check_int, float_in, int_at_least, setting
from .base import TunedStrategy, freeze_bottom

if TYPE_CHECKING:
    from torch import nn

    from ..models.backbone import Backbone

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


def _check_targets(value: object, name: str, owner: str) -> None:
    if value is None:
        return
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(t, str) and t.strip() for t in names):
        raise invalid_parameter(name, owner, "None, a comma-separated string or a list of module names", value)


@dataclass(repr=False)
class Lora(TunedStrategy):
    """Low-rank adapters (PEFT) on the attention projections, and a linear head.

    Parameters
    ----------
    r : int
        Rank of the adapters.
    lora_alpha : float
        Scale numerator (scale = alpha / r).
    lora_dropout : float
        Dropout on the adapters' input, in [0, 1].
    target_modules : str, list of str or None
        Attribute names of the adapted modules inside a block (default: the family's attention projections).
    top_blocks : int or None
        Put adapters only in the top N blocks (default: all); the blocks below are a cacheable frozen prefix.
    """

    name: ClassVar[str] = "lora"
    summary: ClassVar[str] = "low-rank adapters (PEFT) on the attention projections, and a linear head"
    # adapters need larger steps than full weights (PEFT's examples use 1e-4..1e-3)
    default_learning_rate: ClassVar[float | None] = 5e-4
    # measured (MiniLM, movie-snippets, 400 examples, test accuracy): 5e-4 x 3 epochs 0.625, 1.5e-3 x 3 0.698,
    # 5e-4 x 6 0.725, 1.5e-3 x 6 0.765: adapters want larger rates and more epochs than the fixed defaults
    tuned_epochs: ClassVar[int | None] = 8
    sweep_defaults: ClassVar[dict[str, list]] = {"r": [8]}

    r: int = setting(8, "Rank of the adapters.", int_at_least(1), aliases=("--lora-r",))
    lora_alpha: float = setting(16, "Scale numerator (scale = alpha / r).", float_in(0.0))
    lora_dropout: float = setting(0.1, "Dropout on the adapters' input.", float_in(0.0, 1.0, low_inclusive=True))
    target_modules: str | tuple[str, ...] | None = setting(
        None,
        "Adapted module names inside a block, comma-separated (default: the family's attention projections).",
        _check_targets,
    )
    top_blocks: int | None = setting(None, "Adapt only the top N blocks (default: all).", int_at_least(1, True))

    def targets(self, backbone: Backbone) -> tuple[str, ...]:
        if self.target_modules:
            names = self.target_modules.split(",") if isinstance(self.target_modules, str) else self.target_modules
            return tuple(t.strip() for t in names if t.strip())
        if backbone.family not in ATTENTION_PROJECTIONS:
            raise UnfreezeError(
                f"No default LoRA target modules for model family {backbone.family!r}. "
                "Name them with target_modules (--target-modules), e.g. q_proj,v_proj."
            )
        return ATTENTION_PROJECTIONS[backbone.family]

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
        if self.top_blocks is not None:
            check_int(self.top_blocks, "top_blocks", self.name, 1, backbone.num_blocks, " for this model")
        if not self._module_names(backbone):
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
        return [
            name
            for name, module in backbone.model.named_modules()
            if id(module) in chosen and name.rsplit(".", 1)[-1] in wanted and _is_adaptable(module)
        ]

    def prepare(self, backbone: Backbone) -> nn.Module:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        names = self._module_names(backbone)
        freeze_bottom(backbone, backbone.num_blocks)  # everything frozen; PEFT marks its adapters trainable
        # PEFT annotates lora_alpha as int but scales by alpha / r in floats: a float alpha is passed as given
        peft_config = PeftLoraConfig(
            r=self.r,
            lora_alpha=self.lora_alpha,  # type: ignore[arg-type]
            lora_dropout=self.lora_dropout,
            target_modules=names,
            bias="none",
            # GPT-2's Conv1D stores its weight transposed
            fan_in_fan_out=backbone.family == "gpt2",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # PEFT reads a deprecated transformers property
            return get_peft_model(backbone.model, peft_config)


def _is_adaptable(module: nn.Module) -> bool:
    from torch import nn

    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
