"""How many images a pass without gradients takes at once: on the CPU, as many as keep its largest activation in cache.

On a CPU a convolution's speed per image depends on whether its input and output stay in the last-level cache:
EfficientNet-Lite0's forward at 80 px ran at 952 img/s in batches of 16, 577 in 32 and 373 in 64; at 224 px at
96-111 img/s in batches of 2-4 and 21 in 64 (2 cores, 32 MiB L3; `python benchmarks/bench_inference_batch.py`
prints them beside the batch chosen here). So on the CPU such passes
(feature extraction, the frozen layers' cache, validation, 04, 05) take the largest power-of-two batch, at most
the one asked for, whose largest activation fits in CACHE_SHARE of the cache; on an accelerator the batch asked
for. Training batches are never changed here: they are part of the recipe.
"""

from __future__ import annotations

import weakref
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

CACHE_SHARE = 0.4  # of the last-level cache, for one activation (its layer's input, weights and the rest share it)
FALLBACK_CACHE = 32 << 20  # bytes, where the cache size cannot be read

_PEAKS: "weakref.WeakKeyDictionary[nn.Module, dict[int, int]]" = weakref.WeakKeyDictionary()


@lru_cache(maxsize=1)
def last_level_cache() -> int:
    """Bytes of the CPU's largest cache (Linux sysfs), else FALLBACK_CACHE."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
            unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
            sizes.append(int(text.rstrip("KMG")) * unit)
        except (OSError, ValueError):
            continue
    return max(sizes) if sizes else FALLBACK_CACHE


def activation_bytes(model: nn.Module, size: int) -> int:
    """Bytes of the largest output of any layer of `model` for one `size`-pixel image (a probe forward, kept)."""
    peaks = _PEAKS.setdefault(model, {})
    if size not in peaks:
        largest = [0]

        def hook(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                largest[0] = max(largest[0], output.numel() * output.element_size())

        handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
        finally:
            for h in handles:
                h.remove()
            model.train(was)
        peaks[size] = largest[0]
    return peaks[size]


def inference_batch(model: nn.Module, size: int, requested: int, device: torch.device) -> int:
    """The batch of a pass without gradients: on the CPU the cache's (see above), at most `requested`."""
    if device.type != "cpu" or requested <= 1:
        return max(1, requested)
    fits = int(CACHE_SHARE * last_level_cache() // max(1, activation_bytes(model, size)))
    batch = 1
    while batch * 2 <= min(fits, requested):
        batch *= 2
    return batch
