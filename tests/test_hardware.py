"""Hardware detection and the precision each setting resolves to, on mocked machines."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

import unfreeze.machine.hardware as hardware
from unfreeze.errors import UnfreezeError
from unfreeze.machine.hardware import CpuInfo, CudaDevice, SlowPrecisionWarning, resolve_precision

BF16, FP32 = torch.bfloat16, torch.float32
CPUS = {
    "xeon-amx": CpuInfo(
        "Intel Xeon Platinum 8480+",
        2,
        frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}),
        "AVX512",
    ),
    "epyc-avx512-bf16": CpuInfo("AMD EPYC", 2, frozenset({"avx2", "avx512f", "avx512_bf16"}), "AVX512"),
    "epyc-avx2": CpuInfo("AMD EPYC 7B12", 2, frozenset({"avx2", "fma"}), "AVX2"),
    "avx512-no-bf16": CpuInfo("Intel Xeon", 2, frozenset({"avx2", "avx512f"}), "AVX512"),
    "amx-int8-only": CpuInfo("odd", 2, frozenset({"avx2", "amx_tile", "amx_int8"}), "AVX2"),
    "amx-without-onednn": CpuInfo(
        "Intel Xeon", 2, frozenset({"avx512_bf16", "amx_bf16", "amx_tile"}), "AVX512", onednn=False
    ),
}
GPUS = {"h100": CudaDevice(0, "NVIDIA H100", (9, 0), True), "t4": CudaDevice(0, "Tesla T4", (7, 5), False)}


@pytest.fixture(autouse=True)
def real_bf16_detection(monkeypatch):
    """conftest pins UNFREEZE_FAST_BF16=0 for the other tests; here detection (or its mocks) decides."""
    monkeypatch.delenv("UNFREEZE_FAST_BF16", raising=False)


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine: a CPU from CPUS and optionally a GPU from GPUS."""
    monkeypatch.setattr(hardware, "_warned", set())

    def become(cpu: str, gpu: str | None = None) -> None:
        monkeypatch.setattr(hardware, "cpu_info", lambda: CPUS[cpu])
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu is not None)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(hardware, "cuda_device", lambda index: GPUS[gpu])
        monkeypatch.setattr(hardware, "cuda_devices", lambda: (GPUS[gpu],) if gpu else ())

    return become


@pytest.mark.parametrize(
    "cpu,inference,training",
    [
        ("xeon-amx", BF16, BF16),
        ("epyc-avx512-bf16", BF16, BF16),
        ("epyc-avx2", FP32, FP32),
        ("avx512-no-bf16", FP32, FP32),
        ("amx-int8-only", FP32, FP32),
        ("amx-without-onednn", FP32, FP32),
    ],
)
def test_auto_on_cpus(machine, cpu, inference, training):
    machine(cpu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        assert resolve_precision("auto", "cpu", "inference") == inference
        assert resolve_precision("auto", "cpu", "training") == training
        assert resolve_precision("fp32", "cpu", "inference") == FP32


@pytest.mark.parametrize("gpu,cpu,inference", [("h100", "epyc-avx2", BF16), ("t4", "xeon-amx", FP32)])
def test_auto_on_cuda_follows_the_gpu_not_the_cpu(machine, gpu, cpu, inference):
    machine(cpu, gpu)
    for device in ("cuda", "cuda:0", torch.device("cuda", 0)):
        assert resolve_precision("auto", device, "inference") == inference
        # the training loop's bf16 autocast on GPUs with native bf16; fp32 where bf16 is emulated
        assert resolve_precision("auto", device, "training") == inference
    assert resolve_precision("auto", "cpu") == (BF16 if CPUS[cpu].fast_bf16 else FP32)


def test_auto_is_fp32_on_devices_not_measured(machine):
    machine("xeon-amx")
    assert resolve_precision("auto", "mps", "inference") == FP32
    assert resolve_precision("auto", "cuda", "inference") == FP32  # no CUDA on this machine


def test_bf16_on_fast_hardware_does_not_warn(machine):
    machine("xeon-amx", "h100")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu", "training") == BF16
        assert resolve_precision("bf16", "cuda", "inference") == BF16


def test_bf16_on_slow_hardware_works_and_warns_once_in_one_line(machine):
    machine("epyc-avx2", "t4")
    with pytest.warns(SlowPrecisionWarning) as caught:
        for _ in range(3):
            assert resolve_precision("bf16", "cpu", "inference") == BF16
            assert resolve_precision("bf16", "cpu", "training") == BF16
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and "AMD EPYC 7B12" in message and "slower than fp32" in message
    with pytest.warns(SlowPrecisionWarning, match="Tesla T4"):  # another device says it too, once
        resolve_precision("bf16", "cuda:0", "inference")


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", None, 32])
def test_unknown_precision_is_one_clear_line(machine, bad):
    machine("xeon-amx")
    with pytest.raises(UnfreezeError) as error:
        resolve_precision(bad, "cpu")
    message = str(error.value)
    assert "\n" not in message and repr(bad) in message and "auto, fp32, bf16" in message


def test_unknown_kind_of_work_is_refused(machine):
    machine("xeon-amx")
    with pytest.raises(UnfreezeError, match="inference, training"):
        resolve_precision("auto", "cpu", "serving")


def test_cpuinfo_parsing(tmp_path):
    sample = tmp_path / "cpuinfo"
    sample.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    model, flags = hardware._read_cpuinfo(sample)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"amx_bf16", "amx_tile", "avx512_bf16"} <= flags and "fpu" in flags
    assert hardware._read_cpuinfo(tmp_path / "missing") == ("", frozenset())


def test_detection_on_this_machine_is_cached_and_consistent():
    cpu = hardware.cpu_info()
    assert cpu is hardware.cpu_info()  # detected once
    assert cpu.cores >= 1 and cpu.model
    assert cpu.torch_capability == str(torch.backends.cpu.get_cpu_capability())
    if hasattr(torch.cpu, "_is_avx512_bf16_supported") and cpu.flags:
        assert cpu.avx512_bf16 == torch.cpu._is_avx512_bf16_supported()


def test_describe_names_cpu_capability_and_bf16(machine):
    machine("epyc-avx512-bf16")
    assert hardware.describe() == "AMD EPYC, 2 cores, torch capability AVX512, bf16: avx512_bf16"
    machine("xeon-amx", "h100")
    assert hardware.describe() == (
        "Intel Xeon Platinum 8480+, 2 cores, torch capability AVX512, "
        "bf16: amx_bf16 + avx512_bf16; cuda:0 NVIDIA H100 (bf16: yes)"
    )
    machine("epyc-avx2")
    assert hardware.describe().endswith("torch capability AVX2, bf16: none")


def test_auto_choices_say_what_auto_runs_on_each_device(machine):
    machine("xeon-amx", "h100")
    assert hardware.auto_choices() == [
        "the CPU (Intel Xeon Platinum 8480+): auto = bf16 without gradients, bf16 autocast training",
        "cuda:0 (NVIDIA H100, compute 9.0): auto = bf16 without gradients, bf16 autocast training",
    ]
    machine("epyc-avx2")
    assert hardware.auto_choices() == ["the CPU (AMD EPYC 7B12): auto = fp32 without gradients, fp32 training"]


def test_the_module_prints_the_machine_and_the_choices_of_auto():
    env = {**os.environ, "UNFREEZE_FAST_BF16": "0"}
    out = subprocess.run(
        [sys.executable, "-m", "unfreeze.machine.hardware"], check=True, capture_output=True, text=True, env=env
    ).stdout.splitlines()
    assert "cores, torch capability" in out[0]
    assert out[1].startswith("the CPU (") and out[1].endswith("auto = fp32 without gradients, fp32 training")


def test_importing_the_module_does_not_import_torch():
    code = "import sys, unfreeze.machine.hardware; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
