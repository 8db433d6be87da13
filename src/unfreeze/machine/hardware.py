"""What the hardware runs fast, detected once, and the precision a piece of work runs in.

``resolve_precision("auto" | "fp32" | "bf16", device, work)`` gives the torch dtype:

- ``auto`` is bfloat16 for work without gradients (``work="inference"``: embedding, the
  frozen-prefix pass, prediction) where the device computes bf16 natively: a CPU with AMX
  (``amx_bf16``) or AVX-512 BF16 (``avx512_bf16``), or a CUDA GPU with native bf16
  (compute capability 8.0 and up); there, training runs under bf16 autocast
  (``AUTO_BF16_TRAINING``). Everywhere else it is float32, so nothing gets slower on a
  machine without fast bf16.
- ``fp32`` is float32.
- ``bf16`` is bfloat16 wherever it is asked for; on a device without fast bf16 it works
  (emulated, slowly) and says so once, in one line.

torch is imported only when a device is asked about, so ``import unfreeze.machine.hardware`` is cheap.
"""

from __future__ import annotations

import functools
import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import OneLineWarning, UnfreezeError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16")
WORK_KINDS = ("inference", "training")
Precision = Literal["auto", "fp32", "bf16"]
Work = Literal["inference", "training"]

# Whether ``auto`` trains under bf16 autocast, by device type, where the device runs bf16 fast: decided
# by measurement (bench/freeze_sweep.py --unfreeze-only --precision fp32 vs bf16, the full run, on a 2-core
# AMD EPYC with AVX-512 BF16: 1.72x faster, mean accuracy 0.7780 vs 0.7781; bench/bf16.py: autocast on the
# trained blocks was the fastest option within 0.5 point). On CUDA with native bf16 (Ampere and later)
# training runs under bf16 autocast, as it always has.
AUTO_BF16_TRAINING = {"cpu": True, "cuda": True}

# CPU flags (as /proc/cpuinfo spells them) that make bf16 matrix products fast, best first
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


class SlowPrecisionWarning(OneLineWarning):
    """bf16 was asked for on a device that computes it slowly (emulated)."""


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the operating system and torch see it."""

    model: str
    cores: int
    flags: frozenset[str] = field(default_factory=frozenset, repr=False)
    torch_capability: str | None = None  # torch.backends.cpu.get_cpu_capability(): "AVX512", "AVX2", ...
    onednn: bool = True  # torch's bf16 matrix products on a CPU go through oneDNN; without it they crawl

    @property
    def amx(self) -> bool:
        """AMX tiles with bf16: the fastest bf16 matrix products on a CPU."""
        return {"amx_bf16", "amx_tile"} <= self.flags

    @property
    def avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.flags

    @property
    def fast_bf16(self) -> bool:
        return (self.amx or self.avx512_bf16) and self.onednn

    @property
    def bf16_label(self) -> str:
        """The instructions that run bf16 here, for people: "amx_bf16", "avx512_bf16" or "none"."""
        if self.amx:
            return "amx_bf16" + (" + avx512_bf16" if self.avx512_bf16 else "")
        return "avx512_bf16" if self.avx512_bf16 else "none"


@dataclass(frozen=True)
class CudaDevice:
    """One CUDA device: its name, compute capability and whether it runs bf16 natively."""

    index: int
    name: str
    capability: tuple[int, int]
    bf16: bool


def _read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, frozenset[str]]:
    """The model name and flags of the first processor listed ("", {} where there is no such file)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "", frozenset()
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model, flags


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def cpu_info() -> CpuInfo:
    """The CPU, detected once per process."""
    import torch

    model, flags = _read_cpuinfo()
    if not flags:
        # no /proc/cpuinfo (macOS, Windows): ask torch, which probes the instructions itself
        probes = {
            "amx_bf16": "_is_amx_tile_supported",
            "amx_tile": "_is_amx_tile_supported",
            "avx512_bf16": "_is_avx512_bf16_supported",
        }
        flags = frozenset(flag for flag, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)())
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # torch before 2.1
        capability = None
    onednn = bool(torch.backends.mkldnn.is_available())
    return CpuInfo(model or platform.processor() or platform.machine(), _cores(), flags, capability, onednn)


@functools.cache
def cuda_device(index: int) -> CudaDevice:
    """CUDA device ``index``, detected once per process."""
    import torch

    major, minor = torch.cuda.get_device_capability(index)
    capability = (major, minor)
    # native bf16 arrived with Ampere (8.0); torch.cuda.is_bf16_supported() also says True
    # for older cards that emulate it, which is slow
    return CudaDevice(index, torch.cuda.get_device_name(index), capability, capability >= (8, 0))


@functools.cache
def cuda_devices() -> tuple[CudaDevice, ...]:
    """Every visible CUDA device (none without CUDA), detected once per process."""
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(cuda_device(i) for i in range(torch.cuda.device_count()))


def fast_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively (so bf16 work runs faster than fp32).

    ``UNFREEZE_FAST_BF16=0`` says no for the CPU (``auto`` then runs fp32 everywhere: numbers
    that do not depend on the machine's instructions); ``=1`` says yes."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        override = os.environ.get("UNFREEZE_FAST_BF16", "").strip()
        if override in ("0", "1"):
            return override == "1"
        return cpu_info().fast_bf16
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        index = device.index if device.index is not None else torch.cuda.current_device()
        return cuda_device(index).bf16
    return False  # MPS and others: not measured here, so never chosen by auto


_warned: set[str] = set()


def resolve_precision(precision: str, device: str | torch.device = "cpu", work: Work = "inference") -> torch.dtype:
    """The dtype that ``work`` on ``device`` runs in for the setting ``precision``.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16"}
        The user's setting.
    device : str or torch.device
        Where the work runs.
    work : {"inference", "training"}
        "inference" is work without gradients (embedding, frozen-prefix pass, prediction);
        "training" computes gradients.

    Returns
    -------
    torch.dtype
        ``torch.bfloat16`` or ``torch.float32``.

    Raises
    ------
    UnfreezeError
        For a precision or a kind of work outside the valid values.
    """
    check_precision(precision)
    if work not in WORK_KINDS:
        raise UnfreezeError(f"Unknown kind of work {work!r}; use one of: {', '.join(WORK_KINDS)}.")
    import torch

    if precision == "fp32":
        return torch.float32
    fast = fast_bf16(device)
    if precision == "auto":
        if work == "training":
            # the trained blocks' compute: bf16 autocast where the hardware runs bf16 fast and the freeze
            # sweep benchmark measured it within half a point of fp32 (see AUTO_BF16_TRAINING)
            kind = torch.device(device).type
            return torch.bfloat16 if fast and AUTO_BF16_TRAINING.get(kind, False) else torch.float32
        return torch.bfloat16 if fast else torch.float32
    if not fast:
        kind = torch.device(device).type
        if kind not in _warned:
            _warned.add(kind)
            warnings.warn(
                f"precision bf16 on {describe_device(device)}, which has no fast bf16: it works but runs "
                "slower than fp32; use --precision auto or fp32 for speed.",
                SlowPrecisionWarning,
                stacklevel=2,
            )
    return torch.bfloat16


@dataclass(frozen=True)
class RunPrecision:
    """The precisions one fit ran (or a bundle predicts) in: work without gradients, and training compute."""

    inference: str = "fp32"  # "fp32" or "bf16"
    training: str = "fp32"

    @property
    def inference_dtype(self) -> torch.dtype:
        import torch

        return torch.bfloat16 if self.inference == "bf16" else torch.float32

    def as_dict(self) -> dict[str, str]:
        return {"inference": self.inference, "training": self.training}

    def describe(self) -> str:
        return (
            f"{self.inference}"
            if self.inference == self.training
            else f"{self.inference} without gradients, {self.training} training"
        )


def run_precision(precision: str, device: str | torch.device = "cpu") -> RunPrecision:
    """The precisions the setting ``precision`` gives on ``device``."""
    return RunPrecision(
        precision_name(resolve_precision(precision, device, "inference")),
        precision_name(resolve_precision(precision, device, "training")),
    )


def recorded_precision(override: str | None, recorded: dict, device: str | torch.device = "cpu") -> RunPrecision:
    """What a loaded bundle predicts in: ``override`` when given, else what it was fitted in (``recorded``,
    fp32 for bundles of releases that did not record it; a recorded bf16 on slow hardware warns once)."""
    if override is not None:
        return run_precision(override, device)
    inference = recorded.get("inference", "fp32")
    if inference == "bf16":
        resolve_precision("bf16", device, "inference")  # says so once where bf16 is slow here
    return RunPrecision(inference, recorded.get("training", "fp32"))


def check_precision(precision: object) -> str:
    """``precision`` when it is a valid setting; otherwise an error listing the valid ones."""
    if precision not in PRECISIONS:
        raise UnfreezeError(f"Unknown precision {precision!r}; use one of: {', '.join(PRECISIONS)}.")
    return str(precision)


def precision_name(dtype: torch.dtype) -> str:
    """ "bf16" or "fp32": the name to record for a resolved dtype."""
    import torch

    return "bf16" if dtype == torch.bfloat16 else "fp32"


def describe_device(device: str | torch.device = "cpu") -> str:
    """One device in words: "the CPU (AMD EPYC)" or "cuda:0 (NVIDIA H100, compute 9.0)"."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        cuda = cuda_device(device.index if device.index is not None else torch.cuda.current_device())
        return f"cuda:{cuda.index} ({cuda.name}, compute {cuda.capability[0]}.{cuda.capability[1]})"
    if device.type == "cpu":
        return f"the CPU ({cpu_info().model})"
    return str(device)


def describe() -> str:
    """The machine in one line for benchmarks, e.g.
    "AMD EPYC, 2 cores, torch capability AVX512, bf16: avx512_bf16"."""
    cpu = cpu_info()
    line = (
        f"{cpu.model}, {cpu.cores} cores, torch capability {cpu.torch_capability or 'unknown'}, bf16: {cpu.bf16_label}"
    )
    gpus = cuda_devices()
    if gpus:
        line += "; " + ", ".join(f"cuda:{g.index} {g.name} (bf16: {'yes' if g.bf16 else 'emulated'})" for g in gpus)
    return line


def auto_choices() -> list[str]:
    """What ``precision="auto"`` runs on each device here, one line per device, for people."""
    import torch

    devices = ["cpu"] + [f"cuda:{gpu.index}" for gpu in cuda_devices()]
    lines = []
    for device in devices:
        inference = precision_name(resolve_precision("auto", device, "inference"))
        training = precision_name(resolve_precision("auto", device, "training"))
        training = "bf16 autocast" if training == "bf16" else training
        lines.append(
            f"{describe_device(torch.device(device))}: auto = {inference} without gradients, {training} training"
        )
    return lines


if __name__ == "__main__":  # python -m unfreeze.machine.hardware
    print(describe())
    print("\n".join(auto_choices()))
