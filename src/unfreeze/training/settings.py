"""``Training``: how a strategy that trains is trained. The defaults here are the only ones.

``epochs`` and ``learning_rate`` left at None mean "the strategy's own default" (LoRA's
adapters want larger steps than full weights; SetFit runs one epoch of pairs). A strategy
declares which of these settings it reads; setting one it does not read is an error
that names the strategies that do, never a silent no-op. Imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..params import Params, float_in, int_at_least, is_bool, one_of, setting


@dataclass(repr=False)
class Training(Params):
    """Training settings of the strategies that train (``freeze``, ``full``, ``reinit``, ``lora``, ``setfit``, ...).

    Parameters
    ----------
    epochs : int or None
        Passes over the training data; None: the strategy's default.
    learning_rate : float or None
        Learning rate of the trained body; None: the strategy's default.
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
        Held out (stratified) to pick the best epoch and stop early; 0 turns it off.
    patience : int or None
        Epochs without a better validation score before stopping; None never stops early.
    class_weight : {None, "balanced"}
        Weight the loss by inverse class frequency.
    prefix_cache : bool
        Run the frozen bottom blocks once and train from their cached output.
    layer_decay : float
        Layer-wise learning-rate decay, in (0, 1]: block i from the top trains at
        ``learning_rate * layer_decay ** i``, the embeddings at the lowest rate; 1 turns it off.
    """

    owner_name = "Training"

    epochs: int | None = setting(None, "Passes over the data (default: the strategy's).", int_at_least(1, True))
    learning_rate: float | None = setting(None, "Body learning rate (default: the strategy's).",
                                          float_in(0.0, optional=True), aliases=("--lr",))
    head_learning_rate: float = setting(1e-3, "Learning rate of the linear head.", float_in(0.0))
    weight_decay: float = setting(0.01, "AdamW weight decay.", float_in(0.0, low_inclusive=True))
    warmup_ratio: float = setting(0.1, "Fraction of steps for linear warm-up.", float_in(0.0, 1.0, low_inclusive=True))
    max_steps: int | None = setting(None, "Stop after this many optimiser steps.", int_at_least(1, True))
    grad_clip: float = setting(1.0, "Clip the gradient norm (0: off).", float_in(0.0, low_inclusive=True))
    validation_fraction: float = setting(0.1, "Held out for choosing the best epoch (0: none).",
                                         float_in(0.0, 1.0, low_inclusive=True, high_exclusive=True))
    patience: int | None = setting(2, "Epochs without improvement before stopping.", int_at_least(1, True))
    class_weight: str | None = setting(None, "balanced: weight the loss by inverse class frequency.",
                                       one_of(None, "balanced"), choices=("balanced",))
    prefix_cache: bool = setting(True, "Train from the cached output of the frozen blocks.", is_bool)
    layer_decay: float = setting(1.0, "Layer-wise learning-rate decay: block i from the top trains at lr * decay^i "
                                      "(1: off).", float_in(0.0, 1.0))


TRAINING_SETTINGS: tuple[str, ...] = tuple(Training.setting_names())
