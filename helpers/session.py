"""The setup cell of every notebook: validate its parameters against the schema, record them, say where outputs go."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

import pandas as pd
import torch

from helpers.params.schema import ParameterError, coerce, for_notebook
from helpers.runner import preflight
from helpers.utils import allocator, lock, paths, runinfo


_HELD: dict[str, lock.RunLock] = {}  # the run this kernel writes into


def hold_run(run_dir: Path, holder: str) -> lock.RunLock:
    """Hold the run for this kernel, from the notebook's first cell to its last.

    Running the first cell again in the same kernel keeps the lock it has (never waits for itself); a first
    cell naming another run_id lets the previous run go. A restarted or shut down kernel frees it.
    """
    previous = _HELD.get("run")
    if previous is not None and previous.run_dir != Path(run_dir).resolve():
        previous.release()
    _HELD["run"] = lock.acquire(run_dir, holder)
    return _HELD["run"]


def finish(ctx: SimpleNamespace) -> None:
    """The notebook's last cell: this kernel is done writing, so the run is free for the next notebook or command."""
    held = _HELD.pop("run", None)
    if held is not None:
        held.release()


def show_whole_tables() -> None:
    """pandas shows every column and whole cells (long text wraps in JupyterLab instead of ending in '...')."""
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_columns", None)


def start(notebook: str, namespace: Mapping[str, Any]) -> SimpleNamespace:
    """Read the notebook's schema parameters from `namespace` (its globals), validate them, record them.

    Nothing is written when a value is wrong. The returned context holds every parameter (typed),
    resolved values such as the torch device, and the run's folders.
    """
    declared = for_notebook(notebook)
    missing = [p.name for p in declared if p.name not in namespace]
    if missing:
        raise ParameterError(f"{notebook}: its parameters cell lacks {missing}; restore them from the schema "
                             "(python -m helpers.params).")
    params = {p.name: coerce(p.name, namespace[p.name]) for p in declared}
    resolved = preflight.check(params)
    torch.set_num_threads(os.cpu_count() or 1)
    allocator.keep_large_blocks()  # activations from memory already mapped (helpers.utils.allocator)
    show_whole_tables()
    run_id = params["run_id"]
    run_dir = paths.run_dir(run_id)
    hold_run(run_dir, f"notebook {notebook}")
    runinfo.record(run_id, notebook, params, **{k: str(v) for k, v in resolved.items()})
    figures: Path = run_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(**{**params, **resolved}, run_dir=run_dir, figures=figures, notebook=notebook)
