"""helpers.runinfo: params.json keeps every notebook's parameters, the real library versions and the real commit."""

import os
import platform
import shutil
import subprocess
from importlib import metadata

import pytest

from helpers.reporting import report
from helpers.utils import files, paths, runinfo

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(cwd, *args: str) -> str:
    """Run git in `cwd` and return its output."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_record_merges_notebooks_with_the_installed_versions():
    runinfo.record("r1", "02_data", {"dataset": "sample"})
    path = runinfo.record("r1", "03_train", {"epochs": 2}, device="cpu")
    data = files.read_json(path)
    assert path == paths.run_dir("r1") / "params.json"
    assert data["notebooks"]["02_data"]["parameters"] == {"dataset": "sample"}
    assert data["notebooks"]["03_train"]["resolved"] == {"device": "cpu"}
    expected = {name: metadata.version(name) for name in runinfo.LIBRARIES}
    assert data["versions"] == {"python": platform.python_version(), **expected}
    import scipy
    assert data["versions"]["scipy"] == scipy.__version__  # the Wilson intervals' library is recorded
    assert data["git_commit"] == runinfo.git_commit()


def test_report_footer_lists_scipy():
    runinfo.record("r1", "02_data", {"dataset": "sample"})
    import scipy
    assert f"scipy {scipy.__version__}" in report.render("r1", "en")


def test_a_missing_library_says_not_installed(monkeypatch):
    monkeypatch.setattr(runinfo, "LIBRARIES", ["torch", "no-such-package-xyz"])
    assert runinfo.library_versions()["no-such-package-xyz"] == "not installed"
    assert runinfo.library_versions()["torch"] == metadata.version("torch")


@needs_git
def test_commit_is_the_projects_head():
    try:
        head = git(paths.PROJECT_ROOT, "rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        pytest.skip("the project is not a git checkout here (an unpacked archive)")
    assert runinfo.git_commit() in (head, head + "+dirty", head + "+unchecked")


@needs_git
def test_commit_says_dirty_only_when_a_tracked_file_changed(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    git(repo, "add", "a.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    monkeypatch.setattr(paths, "PROJECT_ROOT", repo)
    head = git(repo, "rev-parse", "HEAD")
    (repo / "untracked.txt").write_text("not part of the project\n")
    assert runinfo.git_commit() == head
    (repo / "a.txt").write_text("two\n")
    assert runinfo.git_commit() == head + "+dirty"


def test_commit_is_unknown_outside_git(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert runinfo.git_commit() == "unknown"


@needs_git
def test_a_slow_git_status_keeps_the_commit(tmp_path, monkeypatch):
    """A git that answers rev-parse but hangs on status: the commit is kept, marked unchecked."""
    real = shutil.which("git")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text(f'#!/bin/sh\nif [ "$1" = status ]; then sleep 5; fi\nexec {real} "$@"\n')
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.setattr(runinfo, "GIT_TIMEOUT_S", 1.0)
    try:
        head = git(paths.PROJECT_ROOT, "rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        pytest.skip("the project is not a git checkout here (an unpacked archive)")
    assert runinfo.git_commit() == head + "+unchecked"
