"""``resolve_device``: what --device accepts, and the one-line answer for a device that is not here.

torch.cuda is mocked so that every case runs on a CPU-only machine: a CPU-only build, a
CUDA build without a GPU, one GPU, two GPUs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from unfreeze.errors import UnfreezeError
from unfreeze.machine.devices import available_devices, resolve_device


@pytest.fixture
def machine(monkeypatch):
    """Configure what torch sees: ``machine(gpus=2, cuda_build=True, mps=False)``."""

    def configure(gpus: int = 0, cuda_build: bool = False, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"Test GPU {i}")
        monkeypatch.setattr(torch.version, "cuda", "12.4" if cuda_build or gpus else None)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return configure


def error_of(name) -> str:
    with pytest.raises(UnfreezeError) as info:
        resolve_device(name)
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(("gpus", "expected"), [(0, "cpu"), (1, "cuda"), (2, "cuda")])
def test_none_and_auto_pick_cuda_when_present_else_cpu(machine, gpus, expected):
    machine(gpus=gpus)
    assert resolve_device(None).type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("").type == expected


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu ", "cpu:0", torch.device("cpu")])
def test_cpu_spellings(machine, name):
    machine(gpus=1)
    assert resolve_device(name) == torch.device("cpu")


def test_cuda_and_cuda_n_on_a_two_gpu_machine(machine):
    machine(gpus=2)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("CUDA:1") == torch.device("cuda:1")
    assert available_devices() == ["cpu", "cuda:0", "cuda:1"]


def test_cuda_on_a_cpu_only_build_names_the_build_and_the_devices(machine):
    machine(gpus=0, cuda_build=False)
    message = error_of("cuda")
    assert "'cuda' is not available" in message
    assert "CPU-only build" in message
    assert "Devices here: cpu." in message
    assert "--device cpu" in message


def test_cuda_on_a_cuda_build_without_a_gpu(machine):
    machine(gpus=0, cuda_build=True)
    message = error_of("cuda:0")
    assert "finds no CUDA GPU" in message and "CUDA_VISIBLE_DEVICES" in message
    assert "CPU-only" not in message
    assert "Devices here: cpu." in message


def test_cuda_index_beyond_the_gpus_lists_them(machine):
    machine(gpus=1)
    message = error_of("cuda:7")
    assert "'cuda:7' does not exist" in message
    assert "1 CUDA GPU (cuda:0)" in message
    assert "Devices here: cpu, cuda:0 (Test GPU 0)." in message
    machine(gpus=2)
    assert "cuda:0 to cuda:1" in error_of("cuda:2")


@pytest.mark.parametrize("name", ["gpu", "GPU", "banana", "cuda0x", "cuda:", "cuda:-1", "cuda:a", "tpu", "0"])
def test_names_that_are_no_device_list_the_devices(machine, name):
    machine(gpus=0)
    message = error_of(name)
    assert f"Unknown device {name!r}" in message
    assert "Devices here: cpu." in message


def test_gpu_suggests_cuda_where_a_gpu_exists(machine):
    machine(gpus=1)
    assert "Did you mean --device cuda?" in error_of("gpu")
    machine(gpus=0)
    assert "Did you mean" not in error_of("gpu")  # no GPU here: cuda would fail too


def test_cpu_index_other_than_zero(machine):
    machine(gpus=0)
    assert "the CPU is 'cpu'" in error_of("cpu:1")


def test_mps_only_where_available(machine):
    machine(gpus=0, mps=False)
    assert "no Apple GPU" in error_of("mps")
    machine(gpus=0, mps=True)
    assert resolve_device("mps") == torch.device("mps")
    assert available_devices() == ["cpu", "mps"]
    assert resolve_device(None) == torch.device("cpu")  # the default stays CUDA-or-CPU


def test_importing_devices_does_not_import_torch():
    code = "import sys, unfreeze.machine.devices; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
