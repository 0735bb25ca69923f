"""`make run` needs the package index once, then nothing: no pip on a second run, and 02→04 with the network cut."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.utils import paths

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make_env() -> dict[str, str]:
    """This environment without the parent make's variables (under `make test`, which add "Entering directory")."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}


def make_dry_run(project: Path) -> list[str]:
    """The commands `make run` would execute in `project`, without running them."""
    out = subprocess.run(["make", "--no-print-directory", "-n", "run"], cwd=project, capture_output=True, text=True,
                         check=True, env=make_env()).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the Makefile beside its inputs (requirements.txt, pyproject.toml) and an installed .venv."""
    root = tmp_path / "kit"
    (root / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(paths.PROJECT_ROOT / "Makefile", root / "Makefile")
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(paths.PROJECT_ROOT / name, root / name)
        os.utime(root / name, (1_000_000, 1_000_000))
    python = root / ".venv" / "bin" / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    (root / ".venv" / ".installed").touch()
    os.utime(root / ".venv" / ".installed", (2_000_000, 2_000_000))  # a finished install, newer than its inputs
    return root


@needs_make
def test_a_second_make_run_calls_no_pip(project):
    assert make_dry_run(project) == [".venv/bin/python -m helpers.pipeline"]


@needs_make
@pytest.mark.parametrize("changed", ["requirements.txt", "pyproject.toml"])
def test_changed_requirements_install_again(project, changed):
    os.utime(project / changed, (3_000_000, 3_000_000))  # edited after the install
    commands = make_dry_run(project)
    assert any("pip install" in c and "-r requirements.txt" in c for c in commands)
    assert commands[-2:] == ["touch .venv/.installed", ".venv/bin/python -m helpers.pipeline"]


@needs_make
def test_an_install_on_a_too_small_disk_stops_before_writing(small_disk):
    """A disk without room for .venv: make stops with one sentence naming the folder, and creates no venv."""
    root = small_disk("20m") / "kit"
    (root / "scripts").mkdir(parents=True)
    for name in ("Makefile", "requirements.txt", "pyproject.toml", "scripts/install_room.py"):
        shutil.copy(paths.PROJECT_ROOT / name, root / name)
    done = subprocess.run(["make", "--no-print-directory", ".venv/.installed", f"PYTHON={sys.executable}"],
                          cwd=root, capture_output=True, text=True, env=make_env())
    assert done.returncode != 0
    assert "Not enough disk for the install" in done.stderr and str(root / ".venv") in done.stderr
    assert "GB free" in done.stderr
    assert not (root / ".venv").exists()


def _network_cutter() -> list[str] | None:
    """The command prefix that runs a shell in a new network namespace with only loopback up, if allowed here."""
    if sys.platform != "linux" or not shutil.which("unshare") or not shutil.which("ip"):
        return None
    for prefix in (["unshare", "--net"], ["unshare", "--map-root-user", "--net"]):
        probe = subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


CUTTER = _network_cutter()


@pytest.mark.skipif(CUTTER is None, reason="no network namespace here (needs Linux with unshare and ip, as root "
                                           "or with unprivileged user namespaces)")
@pytest.mark.e2e
def test_02_to_04_run_with_the_network_cut(make_dataset, tmp_path, study_home):
    root = make_dataset(per_class=12, size=(20, 20))
    params = tmp_path / "params.yaml"
    params.write_text(f"dataset: {root}\nepochs: 1\nhead_epochs: 1\nbatch_size: 8\nlang: en\n")
    # Only loopback inside (the notebooks' kernels talk to papermill over it); any other link means no cut.
    script = ('ip link set lo up && test "$(ip -o link show | wc -l)" = 1 && '
              f'exec "{sys.executable}" -m helpers.pipeline --from 02_data -f "{params}" --run-id offline')
    done = subprocess.run([*CUTTER, "sh", "-c", script], cwd=paths.PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, "STUDY_HOME": str(study_home)}, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = paths.run_dir("offline")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_test"] > 0 and 0 <= metrics["test_accuracy"] <= 1
    assert (paths.report_dir("offline") / "REPORT.md").exists()
    params_json = json.loads((run / "params.json").read_text())
    assert params_json["notebooks"]["03_train"]["parameters"]["epochs"] == 1
