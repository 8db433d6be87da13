"""How a head on pooled features is written to and read from a folder: one safetensors file.

Every head (logistic, one-vs-rest, ridge) describes itself with ``state()`` (its arrays and a
JSON-able description) and is rebuilt by ``from_state``; this mixin turns that pair into
``save``/``load``, so the file every head writes is the same shape: ``{prefix}.safetensors``
holding the arrays, the description returned for the caller's JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Self

import numpy as np
from safetensors.numpy import load_file, save_file


class SavedHead:
    """``save``/``load`` for a head that has ``state()`` and ``from_state(tensors, meta)``."""

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, tensors: Mapping[str, object], meta: dict) -> Self:
        raise NotImplementedError

    def save(self, folder: Path, prefix: str = "head") -> dict[str, object]:
        """Write ``{prefix}.safetensors`` into ``folder``; return the description to keep in JSON."""
        tensors, meta = self.state()
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / f"{prefix}.safetensors"))
        return meta

    @classmethod
    def load(cls, folder: Path, meta: dict, prefix: str = "head") -> Self:
        """Rebuild a head written by ``save`` (``meta`` is what ``save`` returned)."""
        return cls.from_state(load_file(str(folder / f"{prefix}.safetensors")), meta)
