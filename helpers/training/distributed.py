"""Data-parallel training: the `devices` parameter, torchrun's process group inside a cycle, and the launcher.

A Jupyter kernel cannot host DistributedDataParallel (every rank must be its own process), so with
`devices` > 1 notebook 03 calls `launch`, which runs the same cycle as `torchrun ... -m helpers.train_cli`,
streams the ranks' output into the notebook, and fails with the failing rank's error and last lines.
Inside the cycle the functions below are no-ops in a single process, so the loop has one code path.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from helpers.utils import lock, paths

ENTRY_MODULE = "helpers.train_cli"
PREFIX = "[rank${rank}]: "  # torchrun's own per-line prefix (--log-line-prefix-template)
_PREFIX_RE = re.compile(r"^\[rank(\d+)\]: ?(.*)$")
_ROOT_RANK_RE = re.compile(r"^\s*rank\s*:\s*(\d+)")
_EXIT_RE = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")
LAST_LINES = 12


class LaunchError(RuntimeError):
    """A data-parallel launch that could not start or whose rank failed; the message names the rank."""


# ---------------------------------------------------------------- the `devices` parameter

def find_torchrun() -> str | None:
    """This interpreter's torchrun (its own bin folder first, then PATH), or None."""
    own = str(Path(sys.executable).parent)
    return shutil.which("torchrun", path=os.pathsep.join([own, os.environ.get("PATH", "")]))


def resolve_devices(value: str, device: torch.device) -> int:
    """Number of processes for `devices` (1, N or all) on `device`; a ValueError sentence when impossible.

    `all` is every CUDA GPU; on CPU and MPS it is one process, because one process already uses every
    core (several gloo processes on one CPU are for testing the data-parallel path, asked for with N).
    """
    value = str(value).strip().lower()
    if value == "all":
        n = torch.cuda.device_count() if device.type == "cuda" else 1
    elif value.isdigit() and int(value) >= 1:
        n = int(value)
    else:
        raise ValueError(f"devices={value!r}: use 1, a number of processes N, or all.")
    if n == 1:
        return 1
    if device.type == "mps":
        raise ValueError(f"devices={value}: PyTorch has no data-parallel backend for Apple MPS; use devices=1.")
    if device.type == "cuda":
        have = torch.cuda.device_count()
        if n > have:
            raise ValueError(f"devices={value}: this machine has {have} CUDA device(s); use devices={have} "
                             "or devices=all.")
        if device.index not in (None, 0):
            raise ValueError(f"devices={value} with device={device}: the processes use cuda:0 … cuda:{n - 1}; "
                             "give device=cuda (or auto).")
    else:
        cores = os.cpu_count() or 1
        if n > cores:
            raise ValueError(f"devices={value} with device=cpu: this machine has {cores} CPU core(s) and every "
                             f"gloo process needs one; use devices={cores} or fewer.")
    if find_torchrun() is None:
        raise ValueError(f"devices={value}: torchrun is not installed next to this Python ({sys.executable}) "
                         "nor on PATH; reinstall torch in this environment (make run does) or use devices=1.")
    return n


# ---------------------------------------------------------------- inside a cycle (no-ops in one process)

def world_size() -> int:
    """Processes in the data-parallel group (1 outside torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 outside torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the run's files (checkpoints, history, ledger)."""
    return rank() == 0


def local_rank() -> int:
    """This process's index on its own machine (torchrun's LOCAL_RANK)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def local_world_size() -> int:
    """Processes of the group on this machine (torchrun's LOCAL_WORLD_SIZE; 1 outside torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if world_size() > 1 else 1


def barrier() -> None:
    """Wait for every rank (nothing in one process)."""
    if world_size() > 1:
        dist.barrier()


def init_process_group(device: torch.device) -> torch.device:
    """Join torchrun's group (NCCL, one GPU per process, on CUDA; gloo on CPU); return this rank's device."""
    if "RANK" not in os.environ or world_size() > 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device


def destroy_process_group() -> None:
    """Leave the group cleanly (avoids NCCL's warning at exit)."""
    if world_size() > 1:
        dist.destroy_process_group()


def sync_batchnorm(model: nn.Module, device: torch.device, freeze_bn: bool) -> nn.Module:
    """SyncBatchNorm across ranks when BatchNorm trains; frozen BatchNorm stays as it is.

    PyTorch's SyncBatchNorm runs on GPUs only; on CPU (gloo, a test setup) each rank keeps its own statistics.
    """
    if world_size() > 1 and not freeze_bn and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel over the parameters that train now (the model itself in one process).

    Wrap again after changing which parameters train: DDP registers only those that require grad.
    """
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sampler(dataset, seed: int, shuffle: bool = True):
    """A seeded DistributedSampler (this rank's share of a shuffled order; call set_epoch every epoch).

    Also used by a single process (one replica), so 1 and N processes see the same global batches.
    """
    from torch.utils.data import DistributedSampler
    return DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle, seed=seed,
                              drop_last=False)


def _collective_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sums(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sums of `values` over the ranks (unchanged in one process)."""
    if world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=_collective_device(device))
    dist.all_reduce(t)
    return t.tolist()


def broadcast_floats(values: Sequence[float], device: torch.device, src: int = 0) -> list[float]:
    """Rank `src`'s `values` on every rank, so every rank takes the same decisions (best epoch, early stop)."""
    if world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=_collective_device(device))
    dist.broadcast(t, src)
    return t.tolist()


# ---------------------------------------------------------------- the launcher 03 calls

def torchrun_command(nproc: int, args: Sequence[str], module: str = ENTRY_MODULE,
                     script: str | None = None) -> list[str]:
    """The torchrun command line of one node (`--standalone`: torchrun's own rendezvous on a free port)."""
    torchrun = find_torchrun()
    if torchrun is None:
        raise LaunchError("torchrun is not installed next to this Python nor on PATH; reinstall torch in this "
                          "environment or use devices=1.")
    target = [script] if script else ["-m", module]
    return [torchrun, "--standalone", f"--nproc-per-node={nproc}", "--tee", "3",
            "--log-line-prefix-template", PREFIX, *target, *args]


def cycle_args(run_id: str, params: dict[str, Any]) -> list[str]:
    """`--run-id ID -p NAME VALUE …` for the entry point, from 03's parameters (devices excluded)."""
    out = ["--run-id", str(run_id)]
    for name, value in params.items():
        if name not in ("run_id", "devices"):
            out += ["-p", name, str(value)]
    return out


def launch_env(nproc: int) -> dict[str, str]:
    """Environment of the ranks: unbuffered output, no progress bars, the cores shared between the ranks."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env["PYTHONUNBUFFERED"] = "1"
    env["TQDM_DISABLE"] = "1"  # carriage-return progress bars garble interleaved rank output
    env.update(lock.child_env())  # the ranks write for the notebook that holds the run
    return env


def launch(ctx: Any, nproc: int | None = None, echo: Callable[[str], None] = print,
           script: str | None = None) -> dict:
    """Run 03's cycle on `nproc` processes through torchrun, streaming their output; return the ledger row.

    `ctx` is 03's session context (its parameters as attributes). Raises LaunchError naming the failing
    rank, with its error and last lines, when any rank fails.
    """
    from helpers.params.schema import for_notebook
    nproc = int(nproc or ctx.devices)
    params = {p.name: getattr(ctx, p.name) for p in for_notebook("03_train")}
    command = torchrun_command(nproc, cycle_args(ctx.run_id, params), script=script)
    run(command, nproc, echo)
    import pandas as pd
    cycles = pd.read_csv(paths.run_dir(ctx.run_id) / "cycles.csv")
    return cycles.iloc[-1].to_dict()


def run(command: list[str], nproc: int, echo: Callable[[str], None] = print) -> None:
    """Run a torchrun command, echo every line, and raise LaunchError with the failing rank's last lines."""
    ranks: dict[int, deque[str]] = {}
    agent: deque[str] = deque(maxlen=60)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            cwd=paths.PROJECT_ROOT, env=launch_env(nproc), errors="replace")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            echo(line)
            m = _PREFIX_RE.match(line)
            if m:
                ranks.setdefault(int(m.group(1)), deque(maxlen=LAST_LINES)).append(m.group(2))
            else:
                agent.append(line)
        code = proc.wait()
    except KeyboardInterrupt:  # the notebook's stop button: stop every rank, not only the launcher
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if code != 0:
        raise LaunchError(failure_message(code, ranks, list(agent), nproc))


def failure_message(code: int, ranks: dict[int, deque[str]], agent: list[str], nproc: int) -> str:
    """One sentence naming the failing rank and its error, then that rank's last lines."""
    failed, exitcode = None, None
    # torchrun's summary names the root cause ("rank : 1 (local_rank: 1)", "exitcode : -9") after the
    # ranks it stopped itself (SIGTERM), so read only what follows "Root Cause".
    start = next((i for i, x in enumerate(agent) if x.startswith("Root Cause")), len(agent))
    for line in agent[start:]:
        m = _ROOT_RANK_RE.match(line)
        if m and failed is None:
            failed = int(m.group(1))
        m = _EXIT_RE.match(line)
        if m and exitcode is None:
            exitcode = int(m.group(1))
    if failed is None:
        failed = next((r for r, lines in sorted(ranks.items()) if any("Traceback" in x for x in lines)), None)
    if failed is None:
        tail = "\n".join("  " + x for x in agent[-LAST_LINES:])
        return f"torchrun with {nproc} processes failed (exit code {code}) before any rank reported:\n{tail}"
    lines = list(ranks.get(failed, []))
    # the exception line of a traceback, or the entry point's own "error: …" sentence
    error = next((x for x in reversed(lines) if re.match(r"^([\w.]*(Error|Exception|Interrupt)\b|error: )", x)), "")
    if exitcode is not None and exitcode < 0:
        try:
            cause = f"was killed by signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            cause = f"was killed by signal {-exitcode}"
    else:
        cause = f"failed (exit code {exitcode if exitcode is not None else code})"
    head = f"rank {failed} of {nproc} {cause}" + (f": {error.rstrip('.')}" if error else "")
    tail = "\n".join("  " + x for x in lines) or "  (it printed nothing)"
    return f"{head}. Its last lines:\n{tail}"
