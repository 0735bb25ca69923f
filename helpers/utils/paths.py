"""Every path of the project, anchored at the project root, never at the working directory."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample" / "fashion-mnist"
NOTEBOOK_NAMES = ["01_research", "02_data", "03_train", "04_evaluate"]  # what the runner executes
EXTRA_NOTEBOOKS = ["05_predict"]  # run only when asked: --from 05_predict

# Tests (and anyone who wants their runs elsewhere) point this at another folder.
HOME_ENV = "STUDY_HOME"


def home() -> Path:
    """Folder that holds runs/, reports/ and data/raw, data/cache (the project root by default)."""
    return Path(os.environ.get(HOME_ENV) or PROJECT_ROOT).resolve()


def run_dir(run_id: str) -> Path:
    """Artifacts folder of one run."""
    return home() / "runs" / run_id


def report_dir(run_id: str) -> Path:
    """Report folder of one run."""
    return home() / "reports" / run_id


def raw_dir() -> Path:
    """Where downloaded and extracted datasets live."""
    return home() / "data" / "raw"


def cache_dir() -> Path:
    """Where resized-image caches live."""
    return home() / "data" / "cache"
