"""Running a network over images: normalisation, mixed precision, probabilities over uint8 arrays (with optional TTA).

Shared by training (validation each epoch), 04 (test split) and 05 (new images), so all three see a model the
same way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from helpers.data import imagecache
from helpers.models.batching import inference_batch
from helpers.models.zoo import arch_spec

TTA_CHOICES = ("none", "flip", "flip+crops")


class Normalizer(nn.Module):
    """uint8 batch → float, normalised for the arch's pretrained weights."""

    def __init__(self, mean: tuple, std: tuple) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def normalizer_for(arch: str) -> Normalizer:
    """The Normalizer of an arch's pretrained weights."""
    spec = arch_spec(arch)
    return Normalizer(spec.mean, spec.std)


def autocast(device: torch.device):
    """Mixed precision where the device has it (bf16 if supported, else fp16), nothing on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views whose probabilities are averaged: the image; + its mirror; + four corner crops at 7/8 scale."""
    if tta not in TTA_CHOICES:
        raise ValueError(f"tta={tta!r}: use one of {', '.join(TTA_CHOICES)}.")
    views = [x]
    if tta in ("flip", "flip+crops"):
        views.append(x.flip(-1))
    if tta == "flip+crops":
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * 7 / 8)), max(1, round(w * 7 / 8))
        for top, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw)):
            crop = x[..., top:top + ch, left:left + cw].float()
            views.append(nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False,
                                                   antialias=False))
    return views


@torch.no_grad()
def predict_proba(model: nn.Module, norm: Normalizer, images: np.ndarray, device: torch.device,
                  batch_size: int = 64, tta: str = "none", workers: int = 0) -> np.ndarray:
    """Softmax probabilities of `model` over a uint8 (n, 3, H, W) array, in order; `tta` averages views.

    `images` may also be image files decoded on the fly (helpers.imagecache.DecodedImages), by `workers` processes.
    """
    model.eval()
    out = []
    batch_size = inference_batch(model, images.shape[-1], batch_size, device) if len(images) else batch_size
    for x in imagecache.batches(images, batch_size, device, workers):
        views = tta_views(x, tta)
        total = torch.zeros(())
        for view in views:
            with autocast(device):
                total = total + model(norm(view).contiguous(memory_format=torch.channels_last)).float().softmax(1)
        out.append((total / len(views)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


@torch.no_grad()
def predict_view_probs(model: nn.Module, norm: Normalizer, images: np.ndarray, device: torch.device,
                       batch_size: int = 64, tta: str = "none", workers: int = 0) -> np.ndarray:
    """Softmax probabilities of every TTA view separately, (views, n, classes); their mean is predict_proba's.

    A temperature is fitted on these (each view's logits divided, then averaged), the very transform that
    folding it into the last layer applies.
    """
    model.eval()
    out = []
    batch_size = inference_batch(model, images.shape[-1], batch_size, device) if len(images) else batch_size
    for x in imagecache.batches(images, batch_size, device, workers):
        per_view = []
        for view in tta_views(x, tta):
            with autocast(device):
                per_view.append(model(norm(view).contiguous(memory_format=torch.channels_last)).float().softmax(1))
        out.append(torch.stack(per_view).cpu())
    return torch.cat(out, dim=1).numpy() if out else np.zeros((len(tta_views(torch.zeros(1, 3, 8, 8), tta)), 0, 0))


@torch.no_grad()
def extract_features(model: nn.Module, arch: str, norm: Normalizer, images: np.ndarray,
                     device: torch.device, batch_size: int = 64, workers: int = 0) -> torch.Tensor:
    """Pooled backbone features (the head's input) of every image, computed once."""
    spec = arch_spec(arch)
    head = getattr(model, spec.head)
    setattr(model, spec.head, nn.Identity())
    try:
        model.eval()
        feats = []
        batch_size = inference_batch(model, images.shape[-1], batch_size, device) if len(images) else batch_size
        for x in imagecache.batches(images, batch_size, device, workers):  # decoded by workers beyond the cache
            with autocast(device):
                feats.append(model(norm(x).contiguous(memory_format=torch.channels_last)).float())
        return torch.cat(feats)
    finally:
        setattr(model, spec.head, head)
