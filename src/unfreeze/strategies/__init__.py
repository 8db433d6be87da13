"""Adaptation strategies: a registry of name -> validated config dataclass.

Adding a strategy: one module with a ``StrategyConfig`` subclass (fields = its
parameters, validated in ``__post_init__`` and ``check``; ``frozen_blocks``;
``prepare``), an entry below, a Classifier parameter for each new field, tests.
"""

from __future__ import annotations

from ..errors import invalid_parameter
from .base import StrategyConfig
from .features import FeaturesConfig
from .freeze import FreezeConfig, FullConfig
from .lora import LoraConfig
from .reinit import ReinitConfig
from .setfit import SetFitConfig

STRATEGIES: dict[str, type[StrategyConfig]] = {
    cls.name: cls for cls in (FeaturesConfig, FreezeConfig, FullConfig, ReinitConfig, LoraConfig, SetFitConfig)
}


def strategy_config(name: str, params: dict, owner: str = "Classifier") -> StrategyConfig:
    """The validated config of strategy ``name`` built from flat parameters."""
    if name not in STRATEGIES:
        raise invalid_parameter("strategy", owner, f"one of {', '.join(map(repr, STRATEGIES))}", name)
    return STRATEGIES[name].from_params(params)


__all__ = ["STRATEGIES", "FeaturesConfig", "FreezeConfig", "FullConfig", "LoraConfig", "ReinitConfig",
           "SetFitConfig", "StrategyConfig", "strategy_config"]
