"""Which device a command runs on: ``--device`` checked against the devices that exist here.

``resolve_device(None)`` is CUDA when present, else the CPU. A name is one of ``cpu``,
``cuda``, ``cuda:N`` or ``mps`` (Apple GPUs); a device that does not exist here (``cuda``
on a CPU-only torch build, ``cuda:7`` on a one-GPU machine) or a name that is none of
these (``gpu``, ``banana``) raises ``UnfreezeError`` in one line that lists the devices
that do exist. torch is imported on the first call, not with this module.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import UnfreezeError

if TYPE_CHECKING:
    import torch

_NAME = re.compile(r"(cpu|cuda|mps)(?::(\d+))?")
# what users type for a GPU, and what they mean
_ALIASES = {"gpu": "cuda", "nvidia": "cuda", "cuda0": "cuda:0", "metal": "mps", "apple": "mps"}


def available_devices() -> list[str]:
    """The devices torch can use here, e.g. ``["cpu", "cuda:0", "cuda:1"]``."""
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """The ``torch.device`` for ``--device NAME``; ``None`` (or ``"auto"``) picks CUDA when present, else CPU."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    if name is None or str(name).strip().lower() in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    given = str(name)
    text = given.strip().lower()
    match = _NAME.fullmatch(text)
    if match is None:
        alias = _ALIASES.get(text)
        usable = alias is not None and (alias.split(":")[0] in {d.split(":")[0] for d in available_devices()})
        hint = f" Did you mean --device {alias}?" if usable else ""
        raise UnfreezeError(f"Unknown device {given!r}. Devices here: {_listing()}.{hint}")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        if index not in (None, "0"):
            raise UnfreezeError(f"Unknown device {given!r}: the CPU is 'cpu'. Devices here: {_listing()}.")
        return torch.device("cpu")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available() or index not in (None, "0"):
            raise UnfreezeError(
                f"Device {given!r} is not available: this machine has no Apple GPU that torch can "
                f"use. Devices here: {_listing()}."
            )
        return torch.device("mps")
    # cuda
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            why = f"this torch {torch.__version__} is a CPU-only build"
            fix = " Use --device cpu, or install a CUDA build of torch."
        else:
            why = "torch finds no CUDA GPU (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides them)"
            fix = " Use --device cpu."
        raise UnfreezeError(f"Device {given!r} is not available: {why}. Devices here: {_listing()}.{fix}")
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise UnfreezeError(
            f"Device {given!r} does not exist: this machine has {count} CUDA GPU"
            f"{'s' if count != 1 else ''} (cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}). "
            f"Devices here: {_listing()}."
        )
    return torch.device(f"cuda:{index}" if index is not None else "cuda")


def _listing() -> str:
    import torch

    names = available_devices()
    shown = []
    for device in names:
        if device.startswith("cuda:"):
            try:
                shown.append(f"{device} ({torch.cuda.get_device_name(int(device[5:]))})")
                continue
            except Exception:  # noqa: BLE001 - a name is a nicety
                pass
        shown.append(device)
    return ", ".join(shown)
