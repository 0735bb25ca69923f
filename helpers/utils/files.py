"""Atomic writes and append-only ledgers, so that no artifact is ever left half-written."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

PROC_STATUS = Path("/proc/self/status")
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def human_bytes(n: float) -> str:
    """A byte count as people read it: 512 B, 3.4 MB, 1.2 GB (powers of 1000, as df -H and file managers)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk holding `folder` (or its nearest existing parent)."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


class DiskFullError(OSError):
    """A write failed for lack of space; the message names the file, its folder and the space left there."""

    def __init__(self, path: Path, need: int | None = None) -> None:
        path = Path(path)
        free = human_bytes(free_bytes(path.parent))
        needs = f" it needs {human_bytes(need)} and" if need is not None else ""
        super().__init__(f"no space left to write {path.name} in {path.parent}:{needs} the disk holding that "
                         f"folder has {free} free; nothing was replaced (files written before are unchanged) — "
                         "free some space or point STUDY_HOME at a larger disk, then run again.")
        self.errno, self.filename = errno.ENOSPC, str(path)

    def __str__(self) -> str:
        return self.args[0]


def disk_full_cause(exc: BaseException | None) -> OSError | None:
    """The ENOSPC (or quota) OSError behind `exc`, following causes (torch wraps it in a RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return None  # already explained
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def current_umask() -> int:
    """The process umask (read from /proc where it can be, so no other thread sees it changed)."""
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain open() gives a new file: 0o666 less the umask."""
    return 0o666 & ~current_umask()


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename, a new file) to disk; filesystems that cannot sync folders are let be."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush one file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folder(folder: Path) -> None:
    """Create `folder` and its missing parents, each new entry flushed into its parent."""
    folder = Path(folder)
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_folder(new.parent)


@contextmanager
def atomic_paths(paths: list[Path]) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of `paths`; when the block succeeds, flush them all, then rename each.

    All are written and flushed before the first rename, so a full disk or an error leaves every earlier file
    as it was and no temporary file behind. Renames follow the list's order (put the one that marks the set
    complete last). The temporary files get the user's umask like a plain open() (mkstemp alone would make
    them 0600, unreadable by a web server or a colleague reading a shared folder).
    """
    targets, temps = [Path(p) for p in paths], []
    try:
        for path in targets:
            make_folder(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append(Path(tmp))
            try:
                os.fchmod(fd, file_mode())
            finally:
                os.close(fd)
        yield list(temps)
        for tmp in temps:
            fsync_file(tmp)
        for tmp, path in zip(temps, targets):
            os.replace(tmp, path)
        for folder in dict.fromkeys(p.parent for p in targets):
            fsync_folder(folder)
    except BaseException as exc:
        full, culprit = disk_full_cause(exc), _culprit(targets, temps)
        _remove(temps)  # before the free space is measured for the message
        if full is not None:
            raise DiskFullError(culprit) from full
        raise
    finally:
        _remove(temps)


def _remove(temps: list[Path]) -> None:
    """Delete the temporary files that are still there."""
    for tmp in temps:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _culprit(targets: list[Path], temps: list[Path]) -> Path:
    """The target whose write ran out of space: the one being created, else the last that got any bytes."""
    if len(temps) < len(targets):
        return targets[len(temps)]
    written = [t for t, tmp in zip(targets, temps) if tmp.exists() and tmp.stat().st_size > 0]
    return written[-1] if written else targets[0]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; flush it and rename it over `path` only if the block succeeds."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, UTF-8, indented."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as CSV atomically, without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def append_csv_row(path: Path, row: dict[str, Any], columns: list[str]) -> None:
    """Append one row to a CSV ledger (header first if the file is new), flushed to disk with its folder.

    A write that fails (a full disk) is cut back to the file's earlier bytes, so no half row is ever left.
    """
    path = Path(path)
    make_folder(path.parent)
    size = path.stat().st_size if path.exists() else None
    try:
        with path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            if not size:
                writer.writeheader()
            writer.writerow({c: row.get(c, "") for c in columns})
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        if size is None:
            path.unlink(missing_ok=True)
        else:
            os.truncate(path, size)
        full = disk_full_cause(exc)
        if full is not None:
            raise DiskFullError(path) from full
        raise
    if size is None:
        fsync_folder(path.parent)


FIGURE_DPI = 110
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib Figure atomically as PNG; in a notebook, show that PNG in place of the live figure.

    The notebook then shows exactly the saved pixels, and the figure is drawn once instead of twice (the inline
    backend would draw it again at the cell's end: a third of 04's figure time). Returns nothing on purpose: as
    a cell's last expression a returned path would print a machine path under the figure.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    _show_saved(fig, Path(path))


def _show_saved(fig: Any, path: Path) -> None:
    """Under the inline backend: display the saved PNG at the live figure's screen size, and close the figure."""
    import matplotlib
    if matplotlib.get_backend() != INLINE_BACKEND:
        return
    import matplotlib.pyplot as plt
    from IPython import get_ipython
    from IPython.display import Image, display
    if get_ipython() is None:  # the inline backend named in a plain process (the runner's): nowhere to show it
        plt.close(fig)
        return
    data = path.read_bytes()
    width = int.from_bytes(data[16:20], "big")  # the PNG header's width, in pixels
    display(Image(data=data, format="png", width=round(width * fig.dpi / FIGURE_DPI)))
    plt.close(fig)
