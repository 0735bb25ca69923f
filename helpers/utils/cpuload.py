"""How many cores other processes kept busy while something ran here: a timing's witness of a busy machine."""

from __future__ import annotations

import os
import time
from pathlib import Path


class OtherLoad:
    """How many cores other processes kept busy since this was created (Linux /proc/stat less our own CPU time).

    None off Linux. The machine's idle cores are not contention: `excess` subtracts the cores this process
    leaves free (all of them but its threads).
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, int] | None:
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return None
        fields = [int(v) for v in lines[0].split()[1:]]
        busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system, irq softirq steal (guest is in user)
        cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        mine = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), mine.user + mine.system, time.perf_counter(), cpus

    def excess(self, threads: int) -> float | None:
        """Average cores other processes took beyond those this process left idle, over the time since creation."""
        end = self._sample()
        if self.start is None or end is None or end[2] - self.start[2] <= 0:
            return None
        others = ((end[0] - self.start[0]) - (end[1] - self.start[1])) / (end[2] - self.start[2])
        return round(max(0.0, others - max(0, end[3] - threads)), 3)
