"""JSON as the standard defines it: no ``NaN`` or ``Infinity``, which strict readers (browsers,
``jq``, other languages) refuse. A value that is not finite is written as ``null``."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (numpy's too) replaced by None, in nested dicts and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return finite(value.item())  # a numpy scalar (np.float32 is no float subclass)
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``finite(value)``, strict (``allow_nan=False``)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
