"""Adaptation strategies: one module per strategy, and the registry that names them.

Adding a strategy (see the README's "Adding a strategy"):

1. one module with a dataclass subclass of :class:`Strategy` (or :class:`TunedStrategy`
   when the shared training loop and a linear head fit it): its parameters as fields
   declared with ``setting(default, help, check)``, ``name``, ``summary``, the
   ``training_settings`` it reads, ``check_model``, ``frozen_blocks``, ``prepare`` or ``fit``;
2. register it: ``register_strategy(MyStrategy)`` here for a built-in, or an entry point
   in the group ``unfreeze.strategies`` (``mine = "my_package.module:MyStrategy"``) for a
   strategy that lives in another package;
3. its tests.

``Classifier``, the command line (``--strategy NAME`` and one option per parameter), sweeps,
bundles and reports then know it: none of them lists strategies by hand.
"""

from __future__ import annotations

import copy
from importlib.metadata import entry_points
from typing import Any

from ..errors import UnfreezeError, invalid_parameter
from .base import FitContext, FitResult, Strategy, TunedStrategy
from .bilstm import BiLSTM
from .features import Features
from .freeze import Freeze, Full
from .gradual import Gradual
from .lora import Lora
from .mix import Mix
from .reinit import Reinit
from .setfit import SetFit
from .subspace import Subspace
from .truncate import Truncate

ENTRY_POINT_GROUP = "unfreeze.strategies"

_REGISTRY: dict[str, type[Strategy]] = {}
_ENTRY_POINTS_LOADED = False


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Make ``cls`` known by its ``name`` everywhere (Classifier, CLI, sweeps, bundles). Usable as a decorator."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"register_strategy takes a subclass of unfreeze.strategies.Strategy, not {cls!r}")
    if not cls.name or not cls.name.replace("-", "_").isidentifier():
        raise ValueError(f"{cls.__name__}.name must be a short identifier such as 'freeze'; got {cls.name!r}")
    known = _REGISTRY.get(cls.name)
    if (
        known is not None
        and known is not cls
        and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__)
    ):
        raise ValueError(f"A strategy named {cls.name!r} is already registered ({known.__module__}.{known.__name__})")
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    """Register the strategies other installed packages declare (once per process)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = point.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the tool
            import warnings

            warnings.warn(f"unfreeze: could not load strategy {point.name!r} ({point.value}): {exc}", stacklevel=2)
            continue
        if isinstance(loaded, type) and issubclass(loaded, Strategy) and loaded.name not in _REGISTRY:
            register_strategy(loaded)


def registered() -> dict[str, type[Strategy]]:
    """Every known strategy by name: the built-ins, then those of installed plugins."""
    _load_entry_points()
    return dict(_REGISTRY)


def strategy_class(name: str, owner: str = "Classifier") -> type[Strategy]:
    known = registered()
    if not isinstance(name, str) or name not in known:
        raise invalid_parameter("strategy", owner, f"one of {', '.join(map(repr, known))} or a Strategy object", name)
    return known[name]


def make_strategy(value: str | Strategy, owner: str = "Classifier") -> Strategy:
    """A strategy object from a name (its defaults) or a copy of a given object."""
    if isinstance(value, Strategy):
        return copy.deepcopy(value)
    return strategy_class(value, owner)()


def serving(task: str) -> list[str]:
    """The registered strategies that can fit ``task``."""
    return [name for name, cls in registered().items() if task in cls.tasks]


def check_serves(strategy: Strategy, task: str) -> None:
    """One line when ``strategy`` cannot fit ``task``, naming the strategies that can."""
    if task not in type(strategy).tasks:
        raise UnfreezeError(
            f"Strategy {strategy.name!r} cannot fit a {task} task; strategies that can: {', '.join(serving(task))}."
        )


def users_of(setting: str) -> list[str]:
    """Names of the strategies that have ``setting`` as a parameter or read it as a training setting."""
    return [
        name for name, cls in registered().items() if setting in cls.setting_names() or setting in cls.training_settings
    ]


def split_shorthand(
    strategy: str | Strategy, params: dict[str, Any], from_text: bool = False
) -> tuple[Strategy, dict[str, Any]]:
    """``("freeze", {"k": 4, "epochs": 2})`` -> ``(Freeze(k=4), {"epochs": 2})``: the strategy's own
    parameters go into the strategy object, the training settings are returned, and anything
    else is an error that says which strategies have it."""
    from ..params import coerce
    from ..training.settings import TRAINING_SETTINGS

    target = make_strategy(strategy)
    own = {k: v for k, v in params.items() if k in target.setting_names()}
    if from_text:  # command-line text as the declared type (what does not parse is left for the check to name)
        own = {k: coerce(type(target), k, v) for k, v in own.items()}
    rest = {k: v for k, v in params.items() if k not in own}
    unknown = [k for k in rest if k not in TRAINING_SETTINGS]
    if unknown:
        name = unknown[0]
        users = users_of(name)
        where = (
            f"it is a parameter of {', '.join(users)}" if users else "no strategy has it (see `unfreeze strategies`)"
        )
        raise UnfreezeError(
            f"The {name!r} setting does not apply to strategy {target.name!r}: {where}. "
            f"Drop it, or choose a strategy that uses it."
        )
    target.set_params(**own)
    return target, rest


# the built-ins, in the order tables and legends list them (plugins follow, in registration order)
BUILTIN_STRATEGIES: tuple[type[Strategy], ...] = (
    Features,
    Freeze,
    Full,
    Reinit,
    Lora,
    SetFit,
    Truncate,
    Gradual,
    Mix,
    BiLSTM,
    Subspace,
)
for _builtin in BUILTIN_STRATEGIES:
    register_strategy(_builtin)

__all__ = [
    "BUILTIN_STRATEGIES",
    "ENTRY_POINT_GROUP",
    "BiLSTM",
    "Features",
    "FitContext",
    "FitResult",
    "Freeze",
    "Full",
    "Gradual",
    "Lora",
    "Mix",
    "Reinit",
    "SetFit",
    "Strategy",
    "Subspace",
    "Truncate",
    "TunedStrategy",
    "make_strategy",
    "register_strategy",
    "registered",
    "split_shorthand",
    "strategy_class",
    "users_of",
]
