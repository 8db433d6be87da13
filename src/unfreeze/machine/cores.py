"""How many CPU cores this process may use, how many are free, and torch's thread count set to fit.

A laptop or a shared server runs other work: torch's default of one thread per core then
oversubscribes the cores (two threads fighting one core run slower than one thread alone).
The cores this process may run on are its affinity (``os.sched_getaffinity``: a container's or
``taskset``'s limit); how busy each is comes from two reads of ``/proc/stat`` a short time apart
(the share of the interval each allowed core was not idle, before this process starts work).
Where ``/proc/stat`` is missing (macOS, Windows) every allowed core counts as free.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CoreShare:
    """The cores this process may use, those others kept busy when it looked, and the torch threads chosen."""

    allowed: int
    busy: float
    threads: int
    chosen_by: str  # "free cores" or "--threads"

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        busy = f", {self.busy:.1f} busy with other work" if self.busy >= 0.05 else ""
        return (
            f"{self.threads} torch thread{'s' if self.threads != 1 else ''} "
            f"({self.allowed} core{'s' if self.allowed != 1 else ''} allowed{busy}; {self.chosen_by})"
        )


def allowed_cores() -> list[int]:
    """The CPU ids this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _cpu_times(text: str) -> dict[int, tuple[int, int]]:
    """{cpu id: (idle jiffies incl. iowait, total jiffies)} from the text of /proc/stat."""
    out = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit():
            continue
        values = [int(v) for v in fields[:8]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        out[int(name[3:])] = (idle, sum(values))
    return out


def busy_cores(cores: list[int], interval: float = 0.3, read=None) -> float:
    """How many of ``cores`` other work kept busy over ``interval`` seconds (0 where /proc/stat is missing)."""
    read = read or (lambda: STAT.read_text() if STAT.exists() else "")
    before = _cpu_times(read())
    if not before:
        return 0.0
    time.sleep(interval)
    after = _cpu_times(read())
    busy = 0.0
    for cpu in cores:
        if cpu in before and cpu in after:
            idle = after[cpu][0] - before[cpu][0]
            total = after[cpu][1] - before[cpu][1]
            if total > 0:
                busy += min(max(1.0 - idle / total, 0.0), 1.0)
    return busy


def free_cores(allowed: int, busy: float) -> int:
    """Cores left for this process: a core counts as taken when others kept it more than half busy."""
    return max(1, allowed - int(busy + 0.5))


@contextmanager
def use_threads(threads: int | None = None, interval: float = 0.3) -> Iterator[CoreShare]:
    """Inside: torch runs ``threads`` threads, or no more than the free cores; torch's count is restored after."""
    import torch

    before = torch.get_num_threads()
    cores = allowed_cores()
    busy = busy_cores(cores, interval)
    if threads is not None:
        chosen, how = threads, "--threads"
    else:
        chosen, how = min(before, free_cores(len(cores), busy)), "free cores"
    torch.set_num_threads(chosen)
    try:
        yield CoreShare(len(cores), round(busy, 2), chosen, how)
    finally:
        torch.set_num_threads(before)


__all__ = ["CoreShare", "allowed_cores", "busy_cores", "free_cores", "use_threads"]
