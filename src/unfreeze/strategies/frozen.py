"""What ``mix`` and ``bilstm`` share: a choice of hidden states, validated without and with the model.

Both train a small network on states of the frozen model computed once; each names the
hidden states it reads with its own parameter (``mix_layers``, ``token_layers``) rather
than the Classifier's ``layers`` (the pooled states of ``features``), because their
defaults differ: every state for ``mix``, the last four for ``bilstm``. Imports no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import invalid_parameter
from ..params import is_int

_LAST = re.compile(r"^last(\d+)$")
CHOICE_HELP = "'all', 'lastN' (the top N states, e.g. last4) or a comma-separated list such as -4,-3,-2,-1"


def _values(value: object) -> list[int] | str | None:
    """The layer indices a choice spells (unresolved), 'all' or 'lastN' as given, or None when it is malformed."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all" or _LAST.match(text):
            return text
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            return [int(p) for p in parts] or None
        except ValueError:
            return None
    if isinstance(value, Sequence) and value and all(is_int(v) for v in value):
        return [int(v) for v in value]
    if is_int(value):
        return [int(value)]
    return None


def check_layer_choice(value: object, name: str, owner: str) -> None:
    """Model-free check of a layer choice (the declaration's check; the range is checked with the model)."""
    parsed = _values(value)
    if parsed is None or (isinstance(parsed, str) and parsed.startswith("last") and int(parsed[4:]) < 1):
        raise invalid_parameter(name, owner, CHOICE_HELP, value)


def resolve_layer_choice(value: object, num_blocks: int, name: str, owner: str) -> tuple[int, ...]:
    """The hidden-state indices (0 = embeddings, L = last block) a choice names, for a model of L blocks."""
    parsed = _values(value)
    n_states = num_blocks + 1
    expected = f"{CHOICE_HELP}, within this model's {n_states} hidden states (indices -{n_states}..{num_blocks})"
    if parsed == "all":
        return tuple(range(n_states))
    if isinstance(parsed, str):
        count = int(parsed[4:])
        if not 1 <= count <= n_states:
            raise invalid_parameter(name, owner, expected, value)
        return tuple(range(n_states - count, n_states))
    if parsed is None or any(not -n_states <= v <= num_blocks for v in parsed):
        raise invalid_parameter(name, owner, expected, value)
    resolved = tuple(v % n_states for v in parsed)
    if len(set(resolved)) != len(resolved):
        raise invalid_parameter(name, owner, "a choice without repeated layers", value)
    return resolved


__all__ = ["CHOICE_HELP", "check_layer_choice", "resolve_layer_choice"]
