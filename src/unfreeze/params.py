"""Parameter objects in scikit-learn's shape: declared settings, get_params/set_params, checks.

Strategies (``Freeze(k=4)``) and the training settings (``Training(epochs=3)``) are small
dataclasses whose fields are their parameters. As in scikit-learn, the constructor only
stores them; ``check`` validates them when a fit starts, with scikit-learn's message
shape: "The 'k' parameter of freeze must be an int in [0, 6] for this model. Got 9.".
They nest in a ``Classifier`` like estimators in a ``Pipeline``: ``clone`` copies them and
``set_params(strategy__k=3, training__learning_rate=1e-4)`` reaches their fields.

Each field carries its help text and its check, so the command line builds its options
from the same declarations (one source of truth for names, defaults and meanings).
This module imports neither torch nor scikit-learn: the CLI reads it to build options.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Callable
from typing import Any, TypeGuard, Union

from .errors import invalid_parameter

Check = Callable[[object, str, str], None]  # (value, name, owner) -> raises InvalidParameterError


def setting(
    default: object,
    help: str,
    check: Check | None = None,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A declared parameter: its default, a one-line help, its value check, and its CLI flag.

    ``flag`` defaults to ``--name-with-dashes``; ``aliases`` are extra flags (``--lora-r``).
    """
    metadata = {"help": help, "check": check, "flag": flag, "aliases": aliases, "choices": choices}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# -- value checks (scikit-learn's message shape) ---------------------------------------------------


# The guards narrow to int and float, not to the numbers ABCs they test: typeshed gives those ABCs
# no operator types, and numpy's integer and float scalars compare and convert as int and float do.
def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[float]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: object, name: str, owner: str, low: int, high: int | None = None, context: str = "") -> None:
    expected = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
    if not is_int(value) or value < low or (high is not None and value > high):
        raise invalid_parameter(name, owner, expected + context, value)


def check_float(
    value: object,
    name: str,
    owner: str,
    low: float,
    high: float | None = None,
    low_inclusive: bool = False,
    high_exclusive: bool = False,
) -> None:
    # inf and nan are no setting's value: a rate of inf trains to NaN, a nan compares false with every bound
    ok = (
        is_real(value)
        and math.isfinite(value)
        and (value >= low if low_inclusive else value > low)
        and (high is None or (value < high if high_exclusive else value <= high))
    )
    if not ok:
        left = "[" if low_inclusive else "("
        right = ")" if high_exclusive else "]"
        expected = (
            f"a float in {left}{low}, {high}{right}"
            if high is not None
            else f"a float {'>=' if low_inclusive else '>'} {low}"
        )
        raise invalid_parameter(name, owner, expected, value)


def int_at_least(low: int, optional: bool = False) -> Check:
    def check(value: object, name: str, owner: str) -> None:
        if optional and value is None:
            return
        check_int(value, name, owner, low)

    return check


def float_in(
    low: float,
    high: float | None = None,
    low_inclusive: bool = False,
    high_exclusive: bool = False,
    optional: bool = False,
) -> Check:
    def check(value: object, name: str, owner: str) -> None:
        if optional and value is None:
            return
        check_float(value, name, owner, low, high, low_inclusive, high_exclusive)

    return check


def one_of(*values: object) -> Check:
    def check(value: object, name: str, owner: str) -> None:
        if value not in values:
            raise invalid_parameter(name, owner, "one of " + ", ".join(map(repr, values)), value)

    return check


def is_bool(value: object, name: str, owner: str) -> None:
    if not isinstance(value, bool):
        raise invalid_parameter(name, owner, "True or False", value)


def is_bool_or_none(value: object, name: str, owner: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise invalid_parameter(name, owner, "True, False or None", value)


_SIMPLE = (bool, int, float, str)


def field_type(cls: type, name: str) -> type:
    """The plain type of a declared setting (int for ``int | None``; str for anything else)."""
    hint = typing.get_type_hints(cls).get(name, str)
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
    return hint if hint in _SIMPLE else str


def coerce(cls: type, name: str, value: object) -> object:
    """A command-line or TOML string as the declared type of ``cls.name`` (left alone when it does not parse:
    the declaration's check then names the setting and what it expects)."""
    if not isinstance(value, str):
        return value
    wanted = field_type(cls, name)
    try:
        if wanted is bool:
            return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower(), value)
        return wanted(value) if wanted in (int, float) else value
    except ValueError:
        return value


class Params:
    """Mixin for parameter dataclasses: scikit-learn's ``get_params``/``set_params``, a short repr,
    and ``check`` that validates every declared field (called at fit, never at construction)."""

    owner_name: str = ""  # how messages name the object: "freeze", "Training"

    @classmethod
    def settings(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]

    @classmethod
    def setting_names(cls) -> list[str]:
        return [f.name for f in cls.settings()]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        # values of every setting's own type, as scikit-learn's get_params: they go back into constructors
        params = {name: getattr(self, name) for name in self.setting_names()}
        if deep:
            for name, value in list(params.items()):
                if hasattr(value, "get_params") and not isinstance(value, type):
                    params.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return params

    def set_params(self, **params: object) -> Params:
        names = self.setting_names()
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in names:
                raise ValueError(f"Invalid parameter {name!r} for {self!r}. Valid parameters are: {names!r}.")
            if sub:
                getattr(self, name).set_params(**{sub: value})
            else:
                setattr(self, name, value)
        return self

    def changed(self) -> dict[str, object]:
        """The settings that differ from their defaults."""
        fresh = type(self)()
        return {
            name: getattr(self, name) for name in self.setting_names() if getattr(self, name) != getattr(fresh, name)
        }

    def check(self) -> None:
        """Validate every field with its declared check (the model-free part of validation)."""
        owner = self.owner_name or type(self).__name__
        for f in self.settings():
            check = f.metadata.get("check")
            if check is not None:
                check(getattr(self, f.name), f.name, owner)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.changed().items())
        return f"{type(self).__name__}({shown})"
