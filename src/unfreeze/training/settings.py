"""``Training``: how a strategy that trains is trained. The defaults here are the only ones.

``epochs`` left at None means "the strategy's own default" (LoRA's adapters want more
steps than full weights; SetFit runs one epoch of pairs). ``learning_rate`` is searched by
default (``"auto"``: each fit tries the strategy's small grid of rates on its own
validation split and keeps the best); a list searches those rates; a number, or
``"fixed"`` / None (the strategy's default rate), fits once. A strategy
declares which of these settings it reads; setting one it does not read is an error
that names the strategies that do, never a silent no-op. Imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from ..errors import invalid_parameter
from ..params import Params, float_in, int_at_least, is_bool, is_bool_or_none, is_real, one_of, setting

LEARNING_RATE_MODES = ("auto", "fixed")


def normalise_learning_rate(value: object) -> float | list[float] | str | None:
    """``learning_rate`` in its canonical form: None (the strategy's default, one fit), a float (one fit),
    ``"auto"`` (the strategy's grid, searched) or a list of at least two floats (searched).

    Command-line and TOML strings are parsed: ``"3e-4"`` is a float, ``"1e-4,3e-4"`` a list,
    ``"fixed"`` None. A value that does not parse is returned as it is, for ``check`` to name.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in LEARNING_RATE_MODES:
            return None if text == "fixed" else "auto"
        try:
            parts = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            return value
        value = parts if len(parts) != 1 else parts[0]
    if isinstance(value, (list, tuple)):
        rates = list(dict.fromkeys(float(v) if is_real(v) else v for v in value))
        return rates[0] if len(rates) == 1 else rates
    if is_real(value):
        return float(value)
    # None, or a value of another type, returned as it is for check_learning_rate to name
    return cast("float | list[float] | str | None", value)


def check_learning_rate(value: object, name: str, owner: str) -> None:
    """None, "auto", "fixed", a float > 0, or a list of floats > 0 (also as a comma-separated string)."""
    rate = normalise_learning_rate(value)
    if rate is None or rate == "auto":
        return
    if is_real(rate):
        float_in(0.0)(value if is_real(value) else rate, name, owner)
        return
    if isinstance(rate, list) and rate and all(is_real(v) and v > 0 for v in rate):
        return
    raise invalid_parameter(name, owner, "a float > 0.0, a list of such floats, 'auto' or 'fixed'", value)


@dataclass(repr=False)
class Training(Params):
    """Training settings of the strategies that train (``freeze``, ``full``, ``reinit``, ``lora``, ``setfit``, ...).

    Parameters
    ----------
    epochs : int or None
        Passes over the training data; None: the strategy's default.
    learning_rate : "auto", float, list of float, "fixed" or None
        Learning rate of the trained body. ``"auto"``: try the strategy's grid
        (``Strategy.learning_rate_grid()``, three rates a factor 3 apart) on the validation
        split and keep the best; a list: try those; a float: that rate, one fit;
        ``"fixed"`` or None: the strategy's default rate, one fit.
    head_learning_rate : float
        Learning rate of the new linear head.
    weight_decay : float
        AdamW weight decay (not on biases and norms).
    warmup_ratio : float
        Fraction of the steps spent warming the learning rate up linearly.
    max_steps : int or None
        Stop after this many optimiser steps (wins over ``epochs``).
    grad_clip : float
        Clip the gradient norm to this value; 0 turns clipping off.
    validation_fraction : float
        Held out (stratified) to pick the best epoch and learning rate and stop early; 0 turns it off
        (and the rate search with it).
    patience : int or None
        Epochs without a better validation score before stopping; None never stops early.
    class_weight : {None, "balanced"}
        Weight the loss by inverse class frequency.
    prefix_cache : bool
        Run the frozen bottom blocks once and train from their cached output.
    layer_decay : float
        Layer-wise learning-rate decay, in (0, 1]: block i from the top trains at
        ``learning_rate * layer_decay ** i``, the embeddings at the lowest rate; 1 turns it off.
    group_by_length : bool or None
        Draw training batches of similar lengths (transformers' ``group_by_length``: less padding, faster);
        False: plain shuffled batches; None: the task's choice (``Task.groups_by_length``: every task but
        multi-label, whose label sets grow with a text's length, so that batches of one length are batches of
        one kind of label set).
    """

    owner_name = "Training"

    epochs: int | None = setting(None, "Passes over the data (default: the strategy's).", int_at_least(1, True))
    learning_rate: float | str | list[float] | None = setting(
        "auto",
        "Body learning rate: auto (try the strategy's grid on the validation split, keep the best), "
        "a rate, rates to try (1e-4,3e-4), or fixed (the strategy's default rate, one fit).",
        check_learning_rate,
        aliases=("--lr",),
    )
    head_learning_rate: float = setting(1e-3, "Learning rate of the linear head.", float_in(0.0))
    weight_decay: float = setting(0.01, "AdamW weight decay.", float_in(0.0, low_inclusive=True))
    warmup_ratio: float = setting(0.1, "Fraction of steps for linear warm-up.", float_in(0.0, 1.0, low_inclusive=True))
    max_steps: int | None = setting(None, "Stop after this many optimiser steps.", int_at_least(1, True))
    grad_clip: float = setting(1.0, "Clip the gradient norm (0: off).", float_in(0.0, low_inclusive=True))
    validation_fraction: float = setting(
        0.1,
        "Held out for choosing the best epoch (0: none).",
        float_in(0.0, 1.0, low_inclusive=True, high_exclusive=True),
    )
    patience: int | None = setting(2, "Epochs without improvement before stopping.", int_at_least(1, True))
    class_weight: str | None = setting(
        None, "balanced: weight the loss by inverse class frequency.", one_of(None, "balanced"), choices=("balanced",)
    )
    prefix_cache: bool = setting(True, "Train from the cached output of the frozen blocks.", is_bool)
    layer_decay: float = setting(
        1.0, "Layer-wise learning-rate decay: block i from the top trains at lr * decay^i (1: off).", float_in(0.0, 1.0)
    )
    group_by_length: bool | None = setting(
        None,
        "Train on batches of similar lengths (less padding); default: the task's choice (yes, but not for "
        "multilabel, whose label sets grow with length).",
        is_bool_or_none,
    )


TRAINING_SETTINGS: tuple[str, ...] = tuple(Training.setting_names())
