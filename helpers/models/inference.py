"""Using a trained model: normalisation, probabilities over uint8 arrays (with optional TTA), loading a checkpoint.

Shared by training (validation each epoch), 04 (test split) and 05 (new images), so all three see a model the
same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers.training import checkpoints
from helpers.data import imagecache
from helpers.models.zoo import arch_spec, build_model, head_of, load_weights

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
    for x in imagecache.batches(images, batch_size, device, workers):
        views = tta_views(x, tta)
        total = torch.zeros(())
        for view in views:
            with autocast(device):
                total = total + model(norm(view).contiguous(memory_format=torch.channels_last)).float().softmax(1)
        out.append((total / len(views)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def load_trained(path: Path, device: torch.device, calibrated: bool = True) -> tuple[nn.Module, Normalizer, dict]:
    """A trained model from one of 03's checkpoints, on `device` in eval mode, with its Normalizer.

    The returned config is the checkpoint's TrainConfig (arch, classes, image_size, …) as a dict, plus
    `cycle`, `epoch` and `val_accuracy` of the checkpoint, `checkpoint` (its path) and `temperature`: with
    `calibrated`, the temperature 04 fitted on validation for this cycle and chose to apply (else 1.0), already
    folded into the network's last layer, so every consumer (04, 05, exports) sees the same probabilities.
    """
    path = Path(path)
    ckpt = checkpoints.load(path)
    cfg = dict(ckpt["config"])
    model = build_model(cfg["arch"], len(cfg["classes"]), "none")
    load_weights(model, cfg["arch"], ckpt["model"], str(path))
    cfg.update(cycle=int(ckpt.get("cycle", 0)), epoch=int(ckpt.get("epoch", 0) or 0),
               val_accuracy=ckpt.get("val_accuracy"), checkpoint=str(path), temperature=1.0)
    if calibrated:
        t = applied_temperature(path, cfg["cycle"])
        if t != 1.0:
            set_temperature(model, cfg["arch"], t)
            cfg["temperature"] = t
    model.to(device, memory_format=torch.channels_last).eval()
    return model, normalizer_for(cfg["arch"]).to(device), cfg


def applied_temperature(path: Path, cycle: int) -> float:
    """The temperature 04 applied to this cycle's test probabilities (evaluations/cycle-<N>.json), else 1.0."""
    run_dir = next((p.parent for p in Path(path).parents if p.name == "checkpoints"), None)
    record = run_dir / "evaluations" / f"cycle-{int(cycle)}.json" if run_dir else None
    if record is None or not record.exists():
        return 1.0
    cal = json.loads(record.read_text(encoding="utf-8")).get("calibration") or {}
    return float(cal["temperature"]) if cal.get("applied") else 1.0


def set_temperature(model: nn.Module, arch: str, temperature: float) -> None:
    """Divide the logits by `temperature` by scaling the head's last linear layer (the model keeps its shape)."""
    last = [m for m in head_of(model, arch).modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.div_(temperature)
        if last.bias is not None:
            last.bias.div_(temperature)
