"""Grad-CAM heatmaps: where in the image the network looked for the class it predicted."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .models import arch_spec

_TARGET_LAYER = {"efficientnet-pytorch": "_conv_head", "resnet50": "layer4",
                 "mobilenet_v3_large": "features", "mobilenet_v3_small": "features"}


def target_layer(model: nn.Module, arch: str) -> nn.Module:
    """The last convolutional block of `arch`, whose activations Grad-CAM weighs."""
    spec = arch_spec(arch)
    name = _TARGET_LAYER["efficientnet-pytorch"] if spec.library == "efficientnet-pytorch" else _TARGET_LAYER[arch]
    return getattr(model, name)


def grad_cam(model: nn.Module, arch: str, x: torch.Tensor, classes: list[int] | None = None) -> np.ndarray:
    """Heatmaps in [0, 1] of shape (n, H, W) for normalised inputs `x`, for `classes` or the predicted ones."""
    store: dict[str, torch.Tensor] = {}
    layer = target_layer(model, arch)
    h1 = layer.register_forward_hook(lambda m, i, o: store.__setitem__("act", o))
    h2 = layer.register_full_backward_hook(lambda m, gi, go: store.__setitem__("grad", go[0]))
    was_training = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        logits = model(x)
        target = logits.argmax(1) if classes is None else torch.as_tensor(classes, device=logits.device)
        model.zero_grad(set_to_none=True)
        logits.gather(1, target[:, None]).sum().backward()
        weights = store["grad"].mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * store["act"]).sum(1, keepdim=True))
        cam = nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
        return (cam / peak).detach().cpu().numpy()
    finally:
        h1.remove()
        h2.remove()
        model.train(was_training)
