"""Before `make` installs .venv: one sentence, and nothing written, when the disk cannot hold it.

The install is about 6.4 GB, nearly all of it torch and its CUDA libraries (the build pip takes for
torch==2.14.1 on x86_64), and pip stops half-way with "No space left on device" when the disk fills. This check
runs with the system Python before the venv is created; what an earlier install already put in .venv counts
towards the need, so a reinstall after a change of requirements.txt is not refused.
Usage: python3 scripts/install_room.py VENV_DIR [--need-gb 6.5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

NEED_GB = 6.5  # a full .venv measured 6.4 GB (Python 3.11, x86_64, requirements.txt of 2026-12)


def tree_bytes(folder: Path) -> int:
    """Bytes the files under `folder` take on disk (0 where it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def shortfall(venv: Path, need: int) -> tuple[int, int]:
    """(bytes still needed, bytes free) on the filesystem that will hold `venv`."""
    probe = venv
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    return max(0, need - tree_bytes(venv)), free


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("venv", type=Path)
    ap.add_argument("--need-gb", type=float, default=NEED_GB)
    args = ap.parse_args()
    venv = args.venv.resolve()
    needed, free = shortfall(venv, int(args.need_gb * 1e9))
    if free < needed:
        print(f"Not enough disk for the install: {venv} needs about {needed / 1e9:.1f} GB more (torch's build is "
              f"most of it) and its filesystem has {free / 1e9:.1f} GB free; free some space there and run make "
              "again.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
