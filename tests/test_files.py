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


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (the filler aside) and its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "filler.bin"}


def test_a_full_disk_names_the_file_leaves_no_temp_and_keeps_every_earlier_file(small_disk):
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from helpers.training import checkpoints, ledger

    from .conftest import fill_disk
    run = small_disk("6m") / "run"
    checkpoints.save(run / "checkpoints" / "best.pt", {"model": {"w": torch.ones(1000)}, "config": {}})
    ledger.append_cycle(run, {"cycle": 1, "arch": "efficientnet-lite0"})
    files.write_json(run / "metrics.json", {"test_accuracy": 0.5})
    files.write_csv(run / "predictions.csv", pd.DataFrame({"path": ["a.png"], "pred": ["cat"]}))
    before = _snapshot(run)
    filler = fill_disk(run, leave=64 * 1024)
    fig, ax = plt.subplots()
    ax.imshow(np.random.default_rng(0).random((400, 400)))
    attempts = {
        "best.pt": lambda: checkpoints.save(run / "checkpoints" / "best.pt",
                                            {"model": {"w": torch.ones(400_000)}, "config": {}}),
        "metrics.json": lambda: files.write_json(run / "metrics.json", {"x": "y" * 400_000}),
        "predictions.csv": lambda: files.write_csv(run / "predictions.csv", pd.DataFrame({"a": ["z" * 1000] * 400})),
        "roc.png": lambda: files.save_figure(fig, run / "figures" / "roc.png"),
        "cycles.csv": lambda: ledger.append_cycle(run, {"cycle": 2, "note": "n" * 400_000}),
    }
    for name, attempt in attempts.items():
        with pytest.raises(files.DiskFullError) as caught:
            attempt()
        message = str(caught.value)
        folder = run / "checkpoints" if name == "best.pt" else run / "figures" if name == "roc.png" else run
        assert message.startswith(f"no space left to write {name} in {folder}: the disk holding that folder has ")
        assert " kB free" in message or " MB free" in message or " B free" in message
        assert caught.value.errno == 28 and isinstance(caught.value, OSError)
        assert _snapshot(run) == before, f"{name}: an earlier file changed"
        assert not [p for p in run.rglob("*.tmp")], f"{name}: a temporary file was left"
    plt.close(fig)
    # Space freed, the same writes go through (the next run resumes where this one stopped).
    filler.unlink()
    for attempt in attempts.values():
        attempt()
    assert ledger.read_cycles(run)["cycle"].tolist() == [1, 2]
    assert checkpoints.load(run / "checkpoints" / "best.pt")["model"]["w"].shape == (400_000,)


def test_a_full_disk_while_the_image_cache_is_built_is_one_sentence_not_a_crash(small_disk, make_dataset,
                                                                                 monkeypatch):
    import shutil

    from helpers.data import imagecache
    root = make_dataset(per_class=4)
    images = sorted(str(p) for p in root.rglob("*.png"))
    cache = small_disk("1m") / "cache"
    real = shutil.disk_usage
    # Another program fills the disk between the free-space check and the writes: the check sees room.
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10**12))
    shas = [str(i) for i in range(len(images))]
    with pytest.raises(files.DiskFullError, match=r"no space left to write 256px-12-\w+\.npy in .*cache: it needs "
                                                  r"2\.4 MB and the disk holding that folder has .* free"):
        imagecache.build_cache(images, shas, 256, cache_root=cache)
    assert list(cache.iterdir()) == []  # no partial cache is left to be read as a whole one
    monkeypatch.undo()
    assert imagecache.build_cache(images, shas, 64, cache_root=cache).shape == (12, 3, 64, 64)
