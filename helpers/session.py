"""The setup cell of every notebook: validate its parameters, record them, and say where outputs go."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from . import paths, runinfo
from .params import validate


def start(notebook: str, **params: Any) -> SimpleNamespace:
    """Validate `params` (nothing is written if one is wrong), record them, return the run's context."""
    resolved = validate(params)
    torch.set_num_threads(os.cpu_count() or 1)
    run_id = str(params.get("run_id", "default"))
    run_dir = paths.run_dir(run_id)
    extra = {k: str(v) for k, v in resolved.items()}
    runinfo.record(run_id, notebook, params, **extra)
    figures: Path = run_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(**{**params, **resolved}, run_dir=run_dir, figures=figures, notebook=notebook)
