"""`make lab`: JupyterLab on the project's .venv, on the asked port or, when that one is taken, the next free one.

Usage: python scripts/lab.py [--port 8888] [--notebook-dir .] [--dry-run] [-- extra jupyter lab arguments]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIES = 50  # ports looked at past the asked one before giving up


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on `port` and it can be bound on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        if s.connect_ex((host, port)) == 0:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a closed port's TIME_WAIT is free
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(asked: int) -> int:
    """The asked port if free, else the next free one (saying so); one sentence when none of them is."""
    for port in range(asked, asked + TRIES + 1):
        if port_is_free(port):
            if port != asked:
                print(f"make lab: port {asked} is taken (another JupyterLab or server?); starting on port {port} "
                      f"instead — open the URL printed below, or free {asked} and run make lab again.",
                      file=sys.stderr, flush=True)
            return port
    raise SystemExit(f"make lab: ports {asked}–{asked + TRIES} are all taken; stop a server or give another port: "
                     "make lab LAB_PORT=9999.")


def command(port: int, notebook_dir: Path, extra: list[str]) -> list[str]:
    """The jupyter lab command line `make lab` runs (root needs --allow-root in containers)."""
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", f"--notebook-dir={notebook_dir}", f"--port={port}",
           "--ServerApp.port_retries=0"]  # we chose the port; a silent second change would hide the URL
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd + extra


def main(argv: list[str] | None = None) -> int:
    """Pick the port, then replace this process with JupyterLab."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("LAB_PORT") or 8888))
    ap.add_argument("--notebook-dir", type=Path, default=ROOT)
    ap.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="arguments passed to jupyter lab")
    args = ap.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    cmd = command(choose_port(args.port), args.notebook_dir.resolve(), extra)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
