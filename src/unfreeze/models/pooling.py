"""Pooling token states into one vector, and layer specs that pick hidden states.

``hidden_states`` follow Hugging Face's convention: index 0 is the embedding output,
index i the output of block i, so a model with L blocks has L + 1 of them.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Iterable, Sequence
from typing import SupportsIndex

import torch

from ..errors import invalid_parameter

POOLINGS = ("mean", "cls", "last", "max")


def check_pooling(pooling: str, owner: str = "Classifier") -> str:
    """A concrete pooling mode (not 'auto': see resolve_pooling)."""
    if pooling not in POOLINGS:
        valid = ", ".join(repr(p) for p in POOLINGS)
        raise invalid_parameter("pooling", owner, f"one of {valid}", pooling)
    return pooling


def resolve_pooling(pooling: str, is_decoder: bool, owner: str = "Classifier") -> str:
    """``auto`` means ``last`` for decoders (only the last token has seen the whole text), else ``mean``."""
    if pooling == "auto":
        return "last" if is_decoder else "mean"
    if pooling not in POOLINGS:
        # here 'auto' is valid too: list it, or the message hides the default
        valid = ", ".join(repr(p) for p in ("auto", *POOLINGS))
        raise invalid_parameter("pooling", owner, f"one of {valid}", pooling)
    return pooling


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``hidden`` [batch, tokens, dim] to [batch, dim], ignoring padding.

    ``last`` finds the last real token from the mask itself, so it is right for left
    padding (the final position) and right padding (the position before the pads).
    """
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    if pooling == "cls":
        first = _first_real_index(attention_mask)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
    if pooling == "last":
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * (positions + 1)).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if pooling == "max":
        masked = hidden.masked_fill(attention_mask.unsqueeze(-1) == 0, torch.finfo(hidden.dtype).min)
        return masked.max(dim=1).values
    raise ValueError(f"unknown pooling {pooling!r}")


def _first_real_index(attention_mask: torch.Tensor) -> torch.Tensor:
    # [CLS] is the first real token: position 0 under right padding, after the pads under left
    return attention_mask.long().argmax(dim=1)


def _layer_int(value: object) -> int:
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{value!r} is not a layer")
    return operator.index(value)  # ints and numpy ints; refuses 1.5


def parse_layers(spec: str | int | Sequence[int], num_blocks: int, owner: str = "Classifier") -> tuple[int, ...]:
    """Turn a layer spec ("-1", "0", "-4,-3,-2,-1", 3, [-2, -1]) into indices in 0..num_blocks.

    0 is the embedding output and num_blocks (or -1) the last block.
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
    elif isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        values = [int(spec)]
    else:
        # anything else must be a list of ints (or of int strings); junk such as 1.5,
        # None or ["a"] gets the same message as an out-of-range layer
        try:
            values = [_layer_int(v) for v in spec] if isinstance(spec, Iterable) else []
        except (TypeError, ValueError):
            values = []
    n_states = num_blocks + 1
    expected = f"an int in [-{n_states}, {num_blocks}] or a comma-separated list of them for this model"
    if not values or any(not -n_states <= v <= num_blocks for v in values):
        raise invalid_parameter("layers", owner, expected, spec)
    resolved = tuple(v % n_states for v in values)
    if len(set(resolved)) != len(resolved):
        raise invalid_parameter("layers", owner, "a list without repeated layers", spec)
    return resolved
