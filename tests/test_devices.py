"""helpers.devices: every value of the device parameter, on a machine with and without each backend."""

import pytest
import torch

from helpers.utils import devices
from helpers.utils.devices import DeviceError, device_name, resolve_device


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has `cuda` CUDA devices and MPS or not (the real one has neither, or its own)."""
    def make(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    return make


@pytest.mark.parametrize(("cuda", "mps", "expected"), [(0, False, "cpu"), (0, True, "mps"), (2, False, "cuda"),
                                                      (1, True, "cuda")])
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda, mps)
    assert resolve_device("auto") == torch.device(expected)


def test_explicit_devices_and_spelling(machine):
    machine(cuda=2, mps=True)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CUDA ") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("mps") == torch.device("mps")
    with pytest.raises(DeviceError, match=r"device='cuda:2': this machine has 2 CUDA device\(s\); pick cuda:0"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_says_what_to_do(machine, name):
    machine(cuda=0)
    with pytest.raises(DeviceError, match=rf"device='{name}': CUDA is not available.*use device=cpu"):
        resolve_device(name)


def test_mps_without_mps_says_what_to_do(machine):
    machine(cuda=1, mps=False)
    with pytest.raises(DeviceError, match="device='mps': Apple's MPS backend is not available here; use device=cpu"):
        resolve_device("mps")


def test_nonsense_device():
    with pytest.raises(DeviceError, match="device='gpu' is not a device; use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu")


def test_device_names(monkeypatch):
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert device_name(torch.device("cpu")) == "CPU (2 cores, 3 threads)"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: f"NVIDIA Test {torch.device(d).index}")
    assert device_name(torch.device("cuda", 1)) == "NVIDIA Test 1"
    assert device_name(torch.device("mps")) == "Apple MPS"
