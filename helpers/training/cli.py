"""One 03 training cycle from the command line: the entry point torchrun starts on every rank.

    torchrun --standalone --nproc-per-node 2 -m helpers.train_cli --run-id default -p device cuda

runs what notebook 03 runs (split.csv from 02, the image cache, one cycle) in each process; rank 0 alone
writes checkpoints, history and the ledger. Without torchrun it trains in this one process. Notebook 03
starts it itself when `devices` > 1 (helpers.distributed.launch); multi-node runs start it by hand with
torchrun's own rendezvous arguments (README, "Beyond one device").
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from types import SimpleNamespace
from typing import Any, Sequence

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from helpers.data import imagecache
from helpers.params.schema import (
    ParameterError,
    auto_image_size,
    coerce,
    defaults,
    for_notebook,
    validate,
)
from helpers.training import distributed
from helpers.utils import allocator, lock, paths, runinfo
from helpers.utils.devices import resolve_device

NOTEBOOK = "03_train"


def parse(argv: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
    """`--run-id ID -p NAME VALUE …` → the run id and 03's parameters (defaults filled in, typed, checked)."""
    parser = argparse.ArgumentParser(prog="python -m helpers.train_cli", description=__doc__.split("\n")[0])
    parser.add_argument("--run-id", default=defaults(NOTEBOOK)["run_id"])
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    known = {p.name for p in for_notebook(NOTEBOOK)}
    params = defaults(NOTEBOOK)
    for name, value in args.p:
        if name not in known:
            raise ParameterError(f"{name!r} is not a parameter of 03; valid names are {', '.join(sorted(known))}.")
        params[name] = coerce(name, value)
    params["run_id"] = args.run_id
    return args.run_id, params


def run(run_id: str, params: dict[str, Any]) -> dict:
    """Train one cycle of run `run_id` in this process (one rank of torchrun's group, or alone)."""
    checked = {k: v for k, v in params.items() if k != "devices"}  # inside torchrun the group is the world
    validate(checked)
    # Rank 0 alone writes, so it alone holds the run (let in when 03's kernel, its parent, holds it already).
    first = os.environ.get("RANK", "0") == "0"
    writer = lock.hold(paths.run_dir(run_id), "python -m helpers.train_cli") if first else nullcontext()
    with writer:
        return _run_cycle(run_id, params, checked)


def _run_cycle(run_id: str, params: dict[str, Any], checked: dict[str, Any]) -> dict:
    """Join the group, read the split and the cache, train the cycle (rank 0 holds the run)."""
    from helpers.data import dataset as data
    from helpers.training.config import config_from
    from helpers.training.cycle import run_cycle
    device = distributed.init_process_group(resolve_device(checked.get("device", "cpu")))
    if distributed.world_size() > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // distributed.local_world_size()))
    try:
        run_dir = paths.run_dir(run_id)
        frame, report = data.load_split(run_dir)
        size = params["image_size"] or auto_image_size(params["arch"], data.median_side(report))
        config = config_from(SimpleNamespace(**{**params, "device": device}), report["classes"], size)
        if distributed.is_main():
            runinfo.record(run_id, NOTEBOOK, params, device=str(device), devices=str(distributed.world_size()))
        main = distributed.is_main()
        arrays = {}
        for turn in (True, False):  # rank 0 builds the cache (shared by every node); the others then read it
            if main == turn:
                for split in ("train", "val"):
                    arrays[split] = imagecache.split_arrays(frame, report["classes"], split, size,
                                                            progress=distributed.is_main(), cache=params["cache"],
                                                            cache_gb=params["cache_gb"])
            distributed.barrier()
        (train_x, train_y), (val_x, val_y) = arrays["train"], arrays["val"]
        row = run_cycle(config, run_dir, train_x, train_y, val_x, val_y, device,
                              progress=distributed.is_main())
        if distributed.is_main():
            print(f"cycle {row['cycle']} done on {distributed.world_size()} process(es): best val accuracy "
                  f"{row['best_val_accuracy']} at epoch {row['best_epoch']}", flush=True)
        return row
    finally:
        distributed.destroy_process_group()


@record  # torchrun's error file: the failing rank's traceback reaches the launcher's summary
def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and train; a one-sentence error (exit code 2) for a bad value."""
    allocator.keep_large_blocks()
    try:
        run_id, params = parse(argv)
        run(run_id, params)
    except (ParameterError, lock.RunLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
