"""Grad-CAM heatmaps: where in the image the network looked for the class it predicted.

The maps are taken at the end of the network's stride-16 stage (the last block before its final
downsampling), for every architecture, not at its last layer. At the default 80 px the last layer of
Lite0 is a 3×3 grid, and after fine-tuning its maps peak in the bottom-right ninth of nearly every
image, flipped images alike: they do not follow the object. The stride-16 maps (5×5 at 80 px, 14×14 at
224 px) do; benchmarks/gradcam_layers.py measures both on a trained run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from helpers.models.zoo import arch_spec

STRIDE = 16


def blocks(model: nn.Module, arch: str) -> list[tuple[str, nn.Module]]:
    """The network's blocks in order, by name: the layers a heatmap can be taken at."""
    if arch_spec(arch).library == "efficientnet-pytorch":
        return [(f"_blocks.{i}", b) for i, b in enumerate(model._blocks)]
    if arch == "resnet50":
        return [(n, getattr(model, n)) for n in ("layer1", "layer2", "layer3", "layer4")]
    return [(f"features.{i}", m) for i, m in enumerate(model.features)]  # MobileNetV3


def stage_grids(model: nn.Module, arch: str, size: int) -> dict[str, tuple[int, int]]:
    """Each block's output grid (height, width) for a square input of `size` pixels."""
    grids: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: grids.__setitem__(n, tuple(o.shape[-2:])))
             for n, m in blocks(model, arch)]
    p = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return grids


def target_layer(model: nn.Module, arch: str, size: int) -> tuple[str, nn.Module, tuple[int, int]]:
    """The last block whose output stride is at most 16 at input `size`: its name, module and grid."""
    grids = stage_grids(model, arch, size)
    finest = math.ceil(size / STRIDE)
    name = [n for n, _ in blocks(model, arch) if grids[n][0] >= finest][-1]
    return name, dict(blocks(model, arch))[name], grids[name]


def location(model: nn.Module, arch: str, size: int) -> dict:
    """Where the heatmaps are taken: the layer's name, its stride, its grid of cells and the input size."""
    name, _, (h, w) = target_layer(model, arch, size)
    return {"layer": name, "stride": STRIDE, "rows": h, "cols": w, "size": size}


def describe(model: nn.Module, arch: str, size: int) -> str:
    """Where the heatmaps are taken, in words: layer, grid and input size (for a figure's legend)."""
    at = location(model, arch, size)
    return (f"layer {at['layer']} (end of the stride-{at['stride']} stage, {at['rows']}×{at['cols']} cells) "
            f"at the {at['size']} px network input")


def grad_cam(model: nn.Module, arch: str, x: torch.Tensor, classes: list[int] | None = None,
             layer: nn.Module | None = None) -> np.ndarray:
    """Heatmaps in [0, 1] of shape (n, H, W) for normalised inputs `x`, for `classes` or the predicted ones.

    `layer` overrides the target layer (default: `target_layer`); a module called twice gives its last call.
    """
    layer = layer if layer is not None else target_layer(model, arch, int(x.shape[-1]))[1]
    store: dict[str, torch.Tensor] = {}

    def keep(_m, _i, out):
        store["act"] = out
        out.register_hook(lambda g: store.__setitem__("grad", g))
    hook = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        logits = model(x)
        target = logits.argmax(1) if classes is None else torch.as_tensor(classes, device=logits.device)
        model.zero_grad(set_to_none=True)
        logits.gather(1, target[:, None]).sum().backward()
        weights = store["grad"].mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * store["act"]).sum(1, keepdim=True)).float()
        cam = nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
        return (cam / peak).detach().cpu().numpy()
    finally:
        hook.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
