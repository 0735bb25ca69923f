"""Progress that renders where it is read: tqdm widgets in JupyterLab, one short line per pass headless.

Under papermill, nbmake, CI or a terminal a bar that redraws itself leaves hundreds of partial lines in the
log, so there a pass prints one line when it ends (and one a minute while a long pass runs).
`STUDY_PROGRESS=widgets|lines|off` overrides the choice.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

ENV = "STUDY_PROGRESS"
HEARTBEAT_S = 60.0  # a headless pass longer than this also reports while it runs


def mode() -> str:
    """`widgets` in a kernel that JupyterLab (or Notebook) started, else `lines`; `off` when asked."""
    asked = os.environ.get(ENV, "").strip().lower()
    if asked in ("widgets", "lines", "off"):
        return asked
    # jupyter_server names the notebook of every kernel it starts; papermill, nbmake and nbclient do not.
    in_kernel = "ipykernel" in sys.modules
    return "widgets" if in_kernel and os.environ.get("JPY_SESSION_NAME") else "lines"


def _lines(iterable: Iterable[T], total: int | None, desc: str, unit: str, summary: bool) -> Iterator[T]:
    """Yield from `iterable`; print one line at the end of the pass (and one a minute on a long one)."""
    t0 = last = time.perf_counter()
    n = 0
    for item in iterable:
        yield item
        n += 1
        now = time.perf_counter()
        if now - last >= HEARTBEAT_S:
            last = now
            of = f"/{total}" if total else ""
            print(f"{desc}: {n}{of} {unit} after {now - t0:.0f}s", flush=True)
    if summary:
        seconds = time.perf_counter() - t0
        rate = f", {n / seconds:.0f} {unit}/s" if seconds > 0 and n else ""
        print(f"{desc}: {n} {unit} in {seconds:.1f}s{rate}", flush=True)


def bar(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
        summary: bool = True) -> Iterable[T]:
    """Wrap `iterable` in the progress display that fits where the code runs.

    `summary=False` leaves the headless line out, for a pass whose caller prints its own line (an epoch).
    """
    kind = mode()
    if kind == "widgets":
        from tqdm.auto import (
            tqdm,  # ipywidgets is installed, so this is the notebook widget
        )
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=summary, mininterval=0.5)
    if kind == "off":
        return iterable
    return _lines(iterable, total, desc, unit, summary)
