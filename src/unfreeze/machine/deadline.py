"""A wall-clock deadline for the work in progress: the advisor's budget, kept inside a cell.

The advisor decides between cells whether the next one fits its budget, from the times of
cells it has run. The first cell of a configuration has no such times, and a machine that
slows down (another job, a throttled laptop) makes any projection wrong: ``deadline(at)``
makes the training steps and forward passes started inside it raise :class:`DeadlineReached`
once ``time.monotonic()`` passes ``at``, so that the work stops within one batch of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_DEADLINE: ContextVar[float | None] = ContextVar("unfreeze_deadline", default=None)


class DeadlineReached(BaseException):
    """The deadline of the enclosing ``deadline()`` passed. A BaseException, as KeyboardInterrupt is: a sweep
    records a cell's ordinary exceptions as its failure, and running out of time is not the cell's failure."""


@contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Work inside stops with :class:`DeadlineReached` once ``time.monotonic()`` passes ``at`` (None: never)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check_deadline() -> None:
    """Raise :class:`DeadlineReached` when the enclosing deadline has passed; called once per batch."""
    at = _DEADLINE.get()
    if at is not None and time.monotonic() > at:
        raise DeadlineReached(f"the deadline passed {time.monotonic() - at:.1f} s ago")


__all__ = ["DeadlineReached", "check_deadline", "deadline"]
