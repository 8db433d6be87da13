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
from typing import Annotated, Optional

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
    annotation = Annotated[Optional[kind], typer.Option(*decls, help=help_text, show_default=False)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def setting_parameters(owners: Iterable[tuple[str, type[Params]]], skip: Iterable[str] = (),
                       panel: str | None = None) -> list[inspect.Parameter]:
    """One option per declared setting of the given classes (a name shared by several is one option)."""
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
            seen[f.name] = (field_type(cls, f.name), flags, f, [owner])
    params = []
    for name, (kind, flags, f, names) in seen.items():
        help_text = f.metadata.get("help", "")
        if len(names) > 1:  # the first declaration's default need not be the others'
            help_text = re.sub(r"\s*\(default[^)]*\)", "", help_text).rstrip(".") + \
                ". Defaults per strategy: `unfreeze strategies`."
        prefix = f"{', '.join(names)}: " if names != ["Training"] else ""
        param = _option(name, kind, flags, prefix + help_text)
        if panel:
            param.annotation.__metadata__[0].rich_help_panel = panel
        params.append(param)
    return params


def strategy_parameters() -> list[inspect.Parameter]:
    return setting_parameters(((name, cls) for name, cls in registered().items()), panel="Strategy parameters")


def training_parameters(skip: Iterable[str] = ()) -> list[inspect.Parameter]:
    return setting_parameters([("Training", Training)], skip, panel="Training settings")


def with_parameters(*groups: list[inspect.Parameter]) -> Callable:
    """Give a command function (which takes ``**settings``) the generated options as keyword parameters."""
    def decorate(func: Callable) -> Callable:
        base = inspect.signature(func, eval_str=True)
        fixed = [p for p in base.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in fixed}
        extra = [p for group in groups for p in group if p.name not in taken]
        func.__signature__ = base.replace(parameters=fixed + extra)
        return func
    return decorate


def given(settings: dict[str, object]) -> dict[str, object]:
    """The options the user gave (the others are None)."""
    return {k: v for k, v in settings.items() if v is not None}
