"""A trained model loaded back from one of 03's checkpoints, with the temperature 04 fitted for its cycle."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from helpers.models.inference import Normalizer, normalizer_for
from helpers.models.zoo import build_model, head_of, load_weights
from helpers.training import checkpoints


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
               val_accuracy=ckpt.get("val_accuracy"), val_scores=ckpt.get("val_scores"), checkpoint=str(path),
               temperature=1.0)
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
