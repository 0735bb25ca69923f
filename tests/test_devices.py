"""helpers.devices: every value of the device parameter."""

import pytest
import torch

from helpers.devices import DeviceError, device_name, resolve_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert "CPU" in device_name(torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_says_what_to_do(name):
    with pytest.raises(DeviceError, match=rf"device='{name}': CUDA is not available.*use device=cpu"):
        resolve_device(name)


def test_nonsense_device():
    with pytest.raises(DeviceError, match="device='gpu' is not a device; use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu")
