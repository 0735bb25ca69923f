"""What one cycle carries from step to step: its configuration, numbering, model, optimiser and progress."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from helpers.models.inference import Normalizer
from helpers.training import frozen
from helpers.training.config import TrainConfig


@dataclass
class Early:
    """The frozen early units (`rest` runs the network after them) and their cached output, when cached."""

    rest: frozen.Rest
    train: torch.Tensor | None = None
    mirrored: torch.Tensor | None = None
    val: torch.Tensor | None = None
    pooled: tuple[torch.Tensor, torch.Tensor] | None = None  # the head's inputs, train and val, when kept (frozencache)

    @property
    def cached(self) -> bool:
        """Whether the frozen units' output is in memory (else they run on every image)."""
        return self.train is not None


@dataclass
class Cycle:
    """What one cycle carries from step to step."""

    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    number: int
    started_at: str
    init_from: int | str
    state: dict
    resume: dict | None = None
    model: nn.Module | None = None
    norm: Normalizer | None = None
    generator: torch.Generator | None = None
    scaler: Any = None
    criterion: Any = None
    optimizer: Any = None
    scheduler: Any = None
    stage: str | None = None
    feats: tuple | None = None  # the head stage's pooled backbone features of (train, val)
    early: Early | None = None  # freeze_early: the frozen units and, when they fit in memory, their cached output
    forward: Any = None  # the network as the full stage calls it: DDP- and/or torch.compile-wrapped
    loader: Any = None  # one DataLoader per cycle, so persistent workers live across epochs
    progress: bool = True
    stopped_early: bool = False
    tracker: Any = None  # helpers.training.tracking: a no-op unless tracking=mlflow|tensorboard

    @property
    def total_epochs(self) -> int:
        """Head-stage plus network-stage epochs of this cycle."""
        return self.cfg.head_epochs + self.cfg.epochs
