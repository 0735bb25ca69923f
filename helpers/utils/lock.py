"""One writer per run: an exclusive lock on runs/<id>/.lock that dies with the process holding it.

The lock is `flock` on the file, so a killed holder never leaves it in the way: the kernel drops it with the
process. The file also holds who took it (notebook or command, process id, host, since when) for the sentence
a second writer reads. A holder's child processes (the runner's notebook kernels, 03's torchrun ranks) are
let in by a token passed in the environment: they write for their parent, never beside it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from helpers.utils import files

LOCK_NAME = ".lock"
TOKEN_ENV = "STUDY_RUN_LOCK"  # the holder's token, for the child processes it starts
WAIT_ENV = "STUDY_LOCK_WAIT"  # seconds a second writer waits for the run before giving up (default: none)
POLL_SECONDS = 0.5


class RunLockedError(ValueError):
    """Another process is writing into this run; the message names it and the ways on."""


@dataclass
class RunLock:
    """A held run lock: our own (`fd` open, flock taken) or a guest's (inside the holder's child process)."""

    run_dir: Path
    holder: str
    token: str
    fd: int | None

    @property
    def guest(self) -> bool:
        """True inside a child process of the holder (it holds nothing itself)."""
        return self.fd is None

    def release(self) -> None:
        """Let the next writer in (a guest has nothing to release)."""
        if _HELD.get(self.run_dir) is self:
            del _HELD[self.run_dir]
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


_HELD: dict[Path, RunLock] = {}  # the runs this process holds (or is a guest of), by resolved folder


def wait_seconds() -> float:
    """How long a second writer waits, from STUDY_LOCK_WAIT (seconds, 'inf' for as long as it takes; 0: refuse)."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise RunLockedError(f"{WAIT_ENV}={raw!r}: give the seconds to wait for a busy run (or inf).") from None
    return max(0.0, value)


def read_holder(run_dir: Path) -> dict:
    """What the lock file says about its last taker (empty when there is none or it is unreadable)."""
    try:
        return json.loads((Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    """`notebook 03_train (process 123 on host, since 2024-05-01 10:00:00)`."""
    where = f" on {info['host']}" if info.get("host") and info.get("host") != socket.gethostname() else ""
    return (f"{info.get('holder') or 'another process'} (process {info.get('pid', '?')}{where}, "
            f"since {info.get('since', '?')})")


def refusal(run_dir: Path, info: dict) -> str:
    """The sentence a second writer reads."""
    return (f"run {Path(run_dir).name!r} is being written by {describe(info)}: one writer at a time keeps its "
            "ledger and checkpoints whole — wait for it to finish, or stop it (a notebook keeps the run from "
            "its first cell to its last, or until its kernel is restarted or shut down), then run again; "
            f"or set {WAIT_ENV}=<seconds> to wait for it.")


def _try(fd: int) -> bool:
    """Take the flock without blocking; False when someone else has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _record(fd: int, info: dict) -> None:
    """Write the holder's description into the lock file (we hold the flock)."""
    data = (json.dumps(info, ensure_ascii=False) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def acquire(run_dir: Path, holder: str, wait: float | None = None) -> RunLock:
    """Hold the run for this process; re-entrant; a child of the holder is let in; else refuse (or wait).

    `wait` seconds (default from STUDY_LOCK_WAIT, else 0) are spent polling before RunLockedError.
    """
    run_dir = Path(run_dir).resolve()
    if run_dir in _HELD:
        return _HELD[run_dir]
    files.make_folder(run_dir)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, files.file_mode())
    deadline, said = time.monotonic() + (wait_seconds() if wait is None else wait), False
    while not _try(fd):
        info = read_holder(run_dir)
        inherited = os.environ.get(TOKEN_ENV)
        if inherited and info.get("token") == inherited:  # our parent holds it and started us
            os.close(fd)
            _HELD[run_dir] = RunLock(run_dir, holder, inherited, None)
            return _HELD[run_dir]
        if time.monotonic() >= deadline:
            os.close(fd)
            raise RunLockedError(refusal(run_dir, info))
        if not said:
            print(f"waiting for run {run_dir.name!r}: it is being written by {describe(info)}", file=sys.stderr,
                  flush=True)
            said = True
        time.sleep(POLL_SECONDS)
    token = secrets.token_hex(16)
    _record(fd, {"holder": holder, "pid": os.getpid(), "host": socket.gethostname(),
                 "since": datetime.now().strftime("%Y-%m-%d %H:%M:%S"), "token": token})
    _HELD[run_dir] = RunLock(run_dir, holder, token, fd)
    return _HELD[run_dir]


@contextmanager
def hold(run_dir: Path, holder: str, wait: float | None = None) -> Iterator[RunLock]:
    """Hold the run while inside (a lock this process already held stays held after)."""
    already = Path(run_dir).resolve() in _HELD
    held = acquire(run_dir, holder, wait)
    try:
        yield held
    finally:
        if not already:
            held.release()


def child_env(run_dir: Path | None = None) -> dict[str, str]:
    """The environment entry that lets this process's children into the run it holds (the newest one)."""
    held = _HELD.get(Path(run_dir).resolve()) if run_dir is not None else \
        (list(_HELD.values())[-1] if _HELD else None)
    return {TOKEN_ENV: held.token} if held else {}


@contextmanager
def shared(held: RunLock) -> Iterator[None]:
    """While inside, processes started from this one (papermill's kernels) are let into the held run."""
    before = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = held.token
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = before
