"""Errors a user can cause. The CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class UnfreezeError(Exception):
    """A problem with the user's input: a file, a column, a parameter, a missing model.

    The message says what is wrong, where, and how to fix it, in one line.
    """


class InvalidParameterError(UnfreezeError, ValueError):
    """A parameter out of its valid range (scikit-learn's message shape)."""


def invalid_parameter(name: str, owner: str, expected: str, got: object) -> InvalidParameterError:
    """Build scikit-learn's uniform message: "The 'k' parameter of freeze must be ... Got 9."."""
    return InvalidParameterError(f"The {name!r} parameter of {owner} must be {expected}. Got {got!r}.")


class OneLineWarning(UserWarning):
    """A warning meant for the user, one line long: the command line prints it as ``warning: MESSAGE``."""
