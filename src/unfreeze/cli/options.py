"""Command-line options built from the parameter declarations of strategies and ``Training``.

Every strategy parameter and every training setting becomes one option (``--k``,
``--lora-alpha``, ``--weight-decay``...), typed from its declaration, with its help text,
defaulting to "not given": only the options a user gives are passed on, so the defaults
that apply are the strategy's and ``Training``'s own. A strategy from a plugin gets its
options the same way.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import Field
from typing import Annotated, Any

import typer

from ..params import Params, field_type
from ..strategies import registered
from ..training.settings import Training


def _option(name: str, kind: type, flags: list[str], help_text: str) -> inspect.Parameter:
    if kind is bool:
        flag = flags[0].removeprefix("--")
        decls = [f"--{flag}/--no-{flag}"]
    else:
        decls = flags
    # a type built at run time (the declared type of the setting): typer reads it, mypy cannot
    annotation = Annotated[kind | None, typer.Option(*decls, help=help_text, show_default=False)]  # type: ignore[valid-type]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def setting_parameters(
    owners: Iterable[tuple[str, type[Params]]],
    skip: Iterable[str] = (),
    panel: str | None = None,
    as_text: bool = False,
) -> list[inspect.Parameter]:
    """One option per declared setting of the given classes (a name shared by several is one option).

    ``as_text``: every option but a flag takes text, parsed by the declaring class (``parse_values``); the
    strategies' parameters are read so, one value in ``fit``, a comma-separated list to sweep elsewhere."""
    skip = set(skip)
    seen: dict[str, tuple[type, list[str], Field, list[str]]] = {}
    for owner, cls in owners:
        for f in cls.settings():
            if f.name in skip:
                continue
            if f.name in seen:
                kind, flags, first, names = seen[f.name]
                names.append(owner)
                if field_type(cls, f.name) is not kind:
                    seen[f.name] = (str, flags, first, names)  # types differ: parse by the chosen strategy's
                continue
            flags = [f.metadata.get("flag") or "--" + f.name.replace("_", "-"), *f.metadata.get("aliases", ())]
            kind = field_type(cls, f.name)
            seen[f.name] = (str if as_text and kind is not bool else kind, flags, f, [owner])
    params = []
    for name, (kind, flags, f, names) in seen.items():
        help_text = f.metadata.get("help", "")
        if len(names) > 1:  # the first declaration's default need not be the others'
            help_text = (
                re.sub(r"\s*\(default[^)]*\)", "", help_text).rstrip(".")
                + ". Defaults per strategy: `unfreeze strategies`."
            )
        if as_text and name in numeric_settings():
            help_text = help_text.rstrip(".") + ". sweep, advise, intrinsic-dim: several, comma-separated."
        prefix = f"{', '.join(names)}: " if names != ["Training"] else ""
        param = _option(name, kind, flags, prefix + help_text)
        if panel:
            param.annotation.__metadata__[0].rich_help_panel = panel
        params.append(param)
    return params


def strategy_parameters(skip: Iterable[str] = (), only: Iterable[str] | None = None) -> list[inspect.Parameter]:
    """Every registered strategy's parameters (or those named in ``only``), as text (see ``setting_parameters``)."""
    params = setting_parameters(
        ((name, cls) for name, cls in registered().items()), skip, panel="Strategy parameters", as_text=True
    )
    return params if only is None else [p for p in params if p.name in set(only)]


def training_parameters(skip: Iterable[str] = ()) -> list[inspect.Parameter]:
    return setting_parameters([("Training", Training)], skip, panel="Training settings")


def with_parameters(*groups: list[inspect.Parameter]) -> Callable:
    """Give a command function (which takes ``**settings``) the generated options as keyword parameters."""

    def decorate(func: Callable) -> Callable:
        base = inspect.signature(func, eval_str=True)
        fixed = [p for p in base.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in fixed}
        extra = [p for group in groups for p in group if p.name not in taken]
        func.__signature__ = base.replace(parameters=fixed + extra)  # type: ignore[attr-defined]
        return func

    return decorate


def given(settings: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (the others are None)."""
    return {k: v for k, v in settings.items() if v is not None}


def numeric_settings() -> set[str]:
    """The strategy parameters declared as numbers by every strategy that has them: only their option values are
    lists (``--k 0,3``); a text parameter's one value may hold commas itself (``--schedule 1,1,2``)."""
    from ..params import field_type
    from ..strategies import registered

    kinds: dict[str, set[type]] = {}
    for cls in registered().values():
        for f in cls.settings():
            kinds.setdefault(f.name, set()).add(field_type(cls, f.name))
    return {name for name, types in kinds.items() if types <= {int, float}}


def strategy_values(settings: dict[str, Any]) -> dict[str, list[Any]]:
    """Pop the given strategy parameters: a numeric one as its comma-separated values (``all`` kept whole), any
    other as its one value."""
    from ..strategies import registered

    names = {f.name for cls in registered().values() for f in cls.settings()}
    numeric = numeric_settings()
    values: dict[str, list[Any]] = {}
    for name in [n for n in settings if n in names]:
        value = settings.pop(name)
        if value is None:
            continue
        text = str(value).strip()
        if isinstance(value, bool) or name not in numeric or text == "all":
            values[name] = [value if isinstance(value, bool) else text]
        else:
            values[name] = [v.strip() for v in text.split(",") if v.strip()]
    return values


def one_value_each(values: dict[str, list]) -> dict[str, Any]:
    """``fit``'s strategy parameters: one value each (a list belongs to a sweep)."""
    from ..errors import UnfreezeError

    for name, vals in values.items():
        if len(vals) != 1:
            raise UnfreezeError(
                f"--{name.replace('_', '-')} takes one value in fit; sweep and advise take several "
                f"(comma-separated). Got {','.join(map(str, vals))!r}."
            )
    return {name: vals[0] for name, vals in values.items()}


def grid_axes(values: dict[str, list], strategies: list[str]) -> dict[str, dict[str, Any]]:
    """Strategy parameters given as options -> grid axes of every chosen strategy that declares them."""
    from ..errors import UnfreezeError
    from ..strategies import registered, users_of

    known = registered()
    grid: dict[str, dict[str, Any]] = {}
    for name, vals in values.items():
        owners = [s for s in strategies if s in known and name in known[s].setting_names()]
        if not owners:
            flag = "--" + name.replace("_", "-")
            raise UnfreezeError(
                f"{flag} is a parameter of {', '.join(users_of(name))}, and none of them is among the "
                f"strategies ({', '.join(strategies)}). Add one to --strategies, or drop {flag}."
            )
        for strategy in owners:
            grid.setdefault(strategy, {})[name] = vals[0] if vals == ["all"] else vals
    return grid


def merged_grid(*grids: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Grids merged axis by axis, the later winning."""
    merged: dict[str, dict[str, Any]] = {}
    for grid in grids:
        for strategy, axes in grid.items():
            merged.setdefault(strategy, {}).update(axes)
    return merged
