"""What decides a training cycle: `TrainConfig` (saved inside every checkpoint) built from the notebook's parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from helpers.params import schema

_DEFAULTS = schema.defaults("03_train")  # one source of truth: the schema


class TrainError(ValueError):
    """Training cannot start as asked; the message says why and what to do."""


@dataclass
class TrainConfig:
    """Everything that decides a training cycle; saved inside every checkpoint as plain types."""

    arch: str
    classes: list[str]
    image_size: int
    batch_size: int = _DEFAULTS["batch_size"]
    epochs: int = _DEFAULTS["epochs"]
    head_epochs: int = _DEFAULTS["head_epochs"]
    weights: str = _DEFAULTS["weights"]
    init: str = _DEFAULTS["init"]
    lr: float | str = _DEFAULTS["lr"]  # or "auto": a range test chooses it (lrfind.py)
    backbone_lr_scale: float = _DEFAULTS["backbone_lr_scale"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    label_smoothing: float = _DEFAULTS["label_smoothing"]
    warmup_epochs: float = _DEFAULTS["warmup_epochs"]
    freeze_bn: bool = _DEFAULTS["freeze_bn"]
    freeze_early: bool = _DEFAULTS["freeze_early"]
    freeze_stride: int = _DEFAULTS["freeze_stride"]
    late_freeze: float = _DEFAULTS["late_freeze"]
    augment: str = _DEFAULTS["augment"]
    lr_find: str = _DEFAULTS["lr_find"]
    class_weights: str = _DEFAULTS["class_weights"]
    sampler: str = _DEFAULTS["sampler"]
    select_metric: str = _DEFAULTS["select_metric"]
    patience: int = _DEFAULTS["patience"]
    unfreeze: str = _DEFAULTS["unfreeze"]
    schedule: str = _DEFAULTS["schedule"]
    deterministic: bool = _DEFAULTS["deterministic"]
    seed: int = _DEFAULTS["seed"]
    device: str = "cpu"
    workers: int = _DEFAULTS["workers"]
    keep_last: int = _DEFAULTS["keep_last"]
    compile: bool = _DEFAULTS["compile"]
    tracking: str = _DEFAULTS["tracking"]
    extra: dict = field(default_factory=dict)

    def resume_key(self) -> dict:
        """The fields that must match for an interrupted cycle to be resumed rather than restarted."""
        d = asdict(self)
        for where_or_housekeeping in ("device", "workers", "keep_last", "compile", "tracking"):
            d.pop(where_or_housekeeping)
        return d

    def check(self) -> None:
        """The schema's checks of every field that is a parameter (the one place values are checked)."""
        schema.validate({k: v for k, v in asdict(self).items() if k in schema.BY_NAME and k != "device"})


def config_from(ctx: Any, classes: list[str], image_size: int) -> TrainConfig:
    """TrainConfig from a notebook's validated context: every field the context has, by name."""
    values = {f.name: getattr(ctx, f.name) for f in fields(TrainConfig)
              if f.name not in ("classes", "image_size", "extra") and hasattr(ctx, f.name)}
    values.update(classes=list(classes), image_size=int(image_size))
    if "device" in values:
        values["device"] = str(values["device"])
    if "unfreeze" in values:
        values["unfreeze"] = str(values["unfreeze"])
    return TrainConfig(**values)
