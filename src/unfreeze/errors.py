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


class TrainingDivergedError(UnfreezeError):
    """The training loss became NaN or infinite: the learning rate is too high (or the data's scale).

    A learning-rate search treats it as a failed trial; everywhere else it ends the fit."""

    def __init__(self, loss: float, epoch: int, learning_rate: float | None) -> None:
        self.loss, self.epoch, self.learning_rate = loss, epoch, learning_rate
        rate = "" if learning_rate is None else f" with learning rate {learning_rate:.3g}"
        at = f" at epoch {epoch}" if epoch else ""
        super().__init__(
            f"The training loss became {_loss_name(loss)}{at}{rate}: lower the learning rate (--learning-rate)."
        )


def _loss_name(loss: float) -> str:
    return "NaN" if loss != loss else "infinite"


class OneLineWarning(UserWarning):
    """A warning meant for the user, one line long: the command line prints it as ``warning: MESSAGE``."""
