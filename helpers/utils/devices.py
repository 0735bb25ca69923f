"""Turn the `device` parameter into a torch.device, with a clear error when it is not there."""

from __future__ import annotations

import os

import torch


class DeviceError(ValueError):
    """The requested device does not exist on this machine."""


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch.device for `auto`, `cpu`, `cuda`, `cuda:N` or `mps`."""
    name = str(name).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device={name!r}: CUDA is not available on this machine "
                              "(no NVIDIA GPU or a CPU-only torch); use device=cpu or device=auto.")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device={name!r}: this machine has {torch.cuda.device_count()} "
                              "CUDA device(s); pick cuda:0 … or device=auto.")
        return torch.device("cuda", index)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device='mps': Apple's MPS backend is not available here; "
                              "use device=cpu or device=auto.")
        return torch.device("mps")
    raise DeviceError(f"device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps.")


def device_name(device: torch.device) -> str:
    """Human-readable name of the device (GPU model, or CPU with its core count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
