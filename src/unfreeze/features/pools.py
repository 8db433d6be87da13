"""In-memory pools that live for one block of work: a sweep shares forward passes through them.

Both the pooled-embedding pool (``embed``) and the frozen-prefix pool (``training.prefix``)
are a process-wide dict that exists only inside a ``with pool.active():`` block; a nested
block shares the outer one, and the outer state comes back when a block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class ScopedPool:
    """A dict that exists only while a ``with pool.active():`` block runs (``data`` is None outside)."""

    def __init__(self) -> None:
        self.data: dict | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[dict]:
        outer = self.data
        self.data = {} if outer is None else outer
        try:
            yield self.data
        finally:
            self.data = outer

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Inside this block the pool looks inactive (work is done as outside a sweep); it comes back after."""
        outer = self.data
        self.data = None
        try:
            yield
        finally:
            self.data = outer

    @property
    def is_active(self) -> bool:
        return self.data is not None

    def clear(self) -> None:
        """Drop what the active pool holds (nothing to do outside a block)."""
        if self.data is not None:
            self.data.clear()
