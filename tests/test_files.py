"""helpers.utils.files: atomic, durable writes and append-only ledgers."""

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from helpers.utils import files


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.json"
    files.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert files.read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_ledger_appends_with_one_header(tmp_path):
    path = tmp_path / "ledger.csv"
    files.append_csv_row(path, {"a": 1, "b": 2}, ["a", "b"])
    files.append_csv_row(path, {"a": 3}, ["a", "b"])
    frame = pd.read_csv(path)
    assert frame["a"].tolist() == [1, 3] and list(frame.columns) == ["a", "b"]


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring the old one after."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_artifacts_get_the_users_umask_like_a_plain_open(tmp_path, umask, mask, expected):
    import matplotlib.pyplot as plt
    import torch

    from helpers.training import checkpoints

    umask(mask)
    out = tmp_path / "run" / "report"
    files.write_text(out / "REPORT.md", "# report\n")
    files.write_json(out / "metrics.json", {"acc": 0.9})
    files.write_csv(out / "predictions.csv", pd.DataFrame({"a": [1]}))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    files.save_figure(fig, out / "curve.png")
    plt.close(fig)
    checkpoints.save(out / "best.pt", {"model": {"w": torch.zeros(1)}})
    checkpoints.copy(out / "best.pt", out / "copy.pt")
    files.append_csv_row(out / "ledger.csv", {"a": 1}, ["a"])
    (out / "plain.txt").write_text("what open() gives")
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in out.iterdir()}
    assert modes == {name: oct(expected) for name in modes} and len(modes) == 8
    assert oct(stat.S_IMODE(out.stat().st_mode)) == oct(0o777 & ~mask)  # folders as usual
    # Rewriting an existing file keeps the rule (the temporary file is renamed over it).
    umask(0o022)
    files.write_text(out / "REPORT.md", "# again\n")
    assert stat.S_IMODE((out / "REPORT.md").stat().st_mode) == 0o644


@pytest.mark.parametrize("proc", [True, False])
def test_umask_is_read_with_or_without_proc(tmp_path, umask, monkeypatch, proc):
    if not proc:  # macOS and older kernels have no Umask line: the umask is read by setting it back
        monkeypatch.setattr(files, "PROC_STATUS", tmp_path / "missing")
    umask(0o027)
    assert files.current_umask() == 0o027 and files.file_mode() == 0o640
    assert os.umask(0o027) == 0o027  # reading it left it unchanged


@pytest.fixture
def disk_calls(monkeypatch):
    """Record every fsync (by the path of its descriptor) and every rename, in order."""
    calls = []
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def logged_replace(src, dst):
        calls.append(("replace", str(src), str(dst)))
        return replace(src, dst)

    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "replace", logged_replace)
    return calls


def assert_durable(calls, target):
    """The temporary file renamed onto `target` was flushed before the rename and its folder after."""
    target = str(target)
    renames = [i for i, c in enumerate(calls) if c[0] == "replace" and c[2] == target]
    assert renames, f"{target} was not written through a rename: {calls}"
    i = renames[-1]
    tmp = calls[i][1]
    assert ("fsync", tmp) in calls[:i], f"{tmp} was renamed onto {target} without being flushed"
    assert ("fsync", str(Path(target).parent)) in calls[i + 1:], f"{Path(target).parent} not flushed after rename"


def test_checkpoints_ledger_and_json_are_flushed_before_rename_and_their_folder_after(tmp_path, disk_calls):
    import torch

    from helpers.training import checkpoints, ledger
    run = tmp_path / "run"
    checkpoints.save(checkpoints.cycle_dir(run, 1) / "best.pt", {"model": {"w": torch.ones(3)}, "config": {}})
    checkpoints.copy(checkpoints.cycle_dir(run, 1) / "best.pt", checkpoints.checkpoint_dir(run) / "best.pt")
    files.write_json(run / "metrics.json", {"test_accuracy": 0.5})
    for target in ("checkpoints/cycle-1/best.pt", "checkpoints/best.pt", "metrics.json"):
        assert_durable(disk_calls, run / target)
    # A new folder's entry is flushed into its parent too, so the whole path survives a power cut.
    assert ("fsync", str(run / "checkpoints")) in disk_calls and ("fsync", str(run)) in disk_calls
    disk_calls.clear()
    ledger.append_cycle(run, {"cycle": 1})
    ledger.append_cycle(run, {"cycle": 2})
    ledger_path = str(run / "cycles.csv")
    assert disk_calls.count(("fsync", ledger_path)) == 2  # every appended row reaches the disk
    assert ("fsync", str(run)) in disk_calls[disk_calls.index(("fsync", ledger_path)):]  # the new file's entry
    assert ledger.read_cycles(run)["cycle"].tolist() == [1, 2]
