"""``truncate``: keep only the bottom j blocks, train them (above k frozen ones) and a linear head.

GPT-1's Fig. 2 ("layers transferred") and Sajjad et al. 2020, "On the effect of dropping
layers of pre-trained transformer models": dropping the top 4 of BERT's 12 blocks kept
GLUE within about 2 points, and half the blocks roughly halved fine-tuning and inference
time. The top L-j blocks are removed from the model (its block list and its config's layer
count), so the trained model, its bundle and every prediction carry only j blocks. Layer
specs count on the truncated model: -1 is block j's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..params import check_int, int_at_least, setting
from .base import LAYER_DECAY_SETTINGS, TunedStrategy, freeze_bottom

if TYPE_CHECKING:
    from torch import nn

    from ..models.backbone import Backbone


def drop_top_blocks(backbone: Backbone, keep: int) -> None:
    """Remove every block above the bottom ``keep`` from ``backbone``'s model, in place.

    The blocks leave the model's own ModuleList (so their parameters leave the model), and
    the config's layer count follows, for the families whose forward or cache reads it
    (Llama slices its blocks by it; GPT-2 and DistilBERT name it ``n_layer`` / ``n_layers``,
    which ``num_hidden_layers`` maps to).
    """
    blocks = backbone.blocks
    if keep >= len(blocks):
        return
    del blocks[keep:]
    config: Any = backbone.model.config  # a transformers config
    config.num_hidden_layers = keep
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) > keep:
        config.layer_types = layer_types[:keep]  # per-block attention kinds (sliding window, ...)


@dataclass(repr=False)
class Truncate(TunedStrategy):
    """Keep the bottom ``j`` blocks (the top L-j are removed), freeze the bottom ``k`` of them, train the rest.

    Parameters
    ----------
    j : int or None
        Blocks kept from the bottom, in [1, L]; None keeps two thirds of them (8 of 12).
    k : int
        Frozen blocks from the bottom of the kept ones, in [0, j - 1] (0: the embeddings train too).
    """

    name: ClassVar[str] = "truncate"
    summary: ClassVar[str] = "the bottom j blocks only (the top L-j removed), above k frozen ones, and a linear head"
    training_settings: ClassVar[frozenset[str]] = LAYER_DECAY_SETTINGS
    # model-free stand-in; a sweep uses sweep_defaults_for(L): L/2, 2L/3 and L blocks
    sweep_defaults: ClassVar[dict[str, list]] = {"j": [None]}

    j: int | None = setting(None, "Blocks kept from the bottom (default: two thirds of them).", int_at_least(1, True))
    k: int = setting(0, "Frozen blocks from the bottom of the kept ones, below j.", int_at_least(0))

    def resolved_j(self, num_blocks: int) -> int:
        return max(1, round(2 * num_blocks / 3)) if self.j is None else self.j

    @classmethod
    def sweep_defaults_for(cls, num_blocks: int) -> dict[str, list]:
        return {"j": sorted({max(1, num_blocks // 2), max(1, round(2 * num_blocks / 3)), num_blocks})}

    def kept_blocks(self, num_blocks: int) -> int:
        j = self.resolved_j(num_blocks)
        check_int(j, "j", self.name, 1, num_blocks, " for this model")
        return j

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
        j = self.kept_blocks(backbone.num_blocks)
        # at least one kept block trains, or this is features on block j
        check_int(self.k, "k", self.name, 0, j - 1, f" for this model with j={j}")

    def frozen_blocks(self, num_blocks: int) -> int:
        return int(self.k)

    def prepare(self, backbone: Backbone) -> nn.Module:
        drop_top_blocks(backbone, self.resolved_j(backbone.num_blocks))
        freeze_bottom(backbone, int(self.k))
        return backbone.model
