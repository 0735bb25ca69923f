"""01's measurements of one architecture, each in a fresh process, and the cache that lets a rerun reuse them.

Every measurement runs in a process that has imported the libraries but allocated nothing yet: memory freed
by one model stays with the allocator and would hide the next one's peak. On Linux one fresh server process
imports torch once and forks a child per measurement (the import is not paid nine times); elsewhere each
measurement is a new interpreter.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

from helpers.utils import cpuload, files, paths

# Bump when what a measurement does changes: cached figures of another version are never reused.
MEASURE_VERSION = 3
# A measurement is timed up to `repeats` times after a warm-up run, but within about this many seconds:
# a network whose one run takes longer is timed fewer times, down to its single (warm-up) run. 1.5 s keeps
# the default study (nine networks, three figures each) within two minutes on 2 CPU cores.
RUN_BUDGET_S = 1.5
CPU_MEMORY = "peak RSS increase of a fresh process"
CUDA_MEMORY = "torch.cuda.max_memory_allocated"


def _fork_server_supported() -> bool:
    """Fork a pre-imported server (Linux), or start an interpreter per measurement (elsewhere)."""
    return sys.platform.startswith("linux")


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float | None:
    """A memory figure of this process from /proc (VmHWM: peak, VmRSS: current) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class _Memory:
    """The peak memory of what runs after it is created: the CUDA allocator's peak, or the RSS peak increase."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        gc.collect()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.base = torch.cuda.memory_allocated(device) / 2**20
        else:
            self.base = _rss_mb("VmRSS") if _peak_rss_reset() else None

    @property
    def measure(self) -> str:
        """What the figure is, in words for the report."""
        if self.device.type == "cuda":
            return CUDA_MEMORY
        return CPU_MEMORY if self.base is not None else "peak RSS of the process (ru_maxrss)"

    def peak_mb(self) -> float:
        """Peak so far in MiB, above the state at creation."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20 - self.base
        if self.base is not None:
            return (_rss_mb("VmHWM") or float("nan")) - self.base
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB elsewhere


def _once(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of one call of `fn`, synchronising CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


class Timing(NamedTuple):
    """One figure's timing: the median seconds, how many runs it is the median of, and their spread."""

    seconds: float
    runs: int
    spread: float | None  # slowest run / fastest run; None for a single run


def _timing(runs: list[float]) -> Timing:
    spread = max(runs) / max(min(runs), 1e-9) if len(runs) > 1 else None
    return Timing(statistics.median(runs), len(runs), round(spread, 3) if spread else None)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, budget_s: float = RUN_BUDGET_S,
          warm: bool = False) -> Timing:
    """A warm-up run, then up to `repeats` timed runs within about `budget_s`: their median, count and spread.

    A warm-up run slower than the budget is itself the one timed run; `warm=True` says the network has
    already run this exact call (no warm-up needed).
    """
    if warm:
        first = _once(fn, device)
        more = min(repeats, int(budget_s / max(first, 1e-6))) - 1
        return _timing([first] + [_once(fn, device) for _ in range(more)])
    first = _once(fn, device)
    if first >= budget_s:
        return _timing([first])
    n = max(1, min(repeats, int(budget_s / max(first, 1e-6))))
    return _timing([_once(fn, device) for _ in range(n)])


def _train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                opt: torch.optim.Optimizer) -> Callable[[], None]:
    """One training step as 03 takes it: forward, cross-entropy, backward, AdamW."""
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def measure(arch: str, image_size: int, device: torch.device, batch_size: int = 8, num_classes: int = 10,
            repeats: int = 3, train_step: bool = True) -> dict:
    """Parameters, FLOPs, latency, throughput, a training step and its peak memory of one architecture."""
    from torch.utils.flop_counter import FlopCounterMode

    from helpers.models.zoo import (
        arch_spec,
        build_model,
        count_parameters,
        head_of,
        published_top1,
    )
    spec = arch_spec(arch)
    memory, load = _Memory(device), cpuload.OtherLoad()
    model = build_model(arch, 1000, "none")
    params = count_parameters(model)
    in_features = getattr(head_of(model, arch), "in_features", None) or model.classifier[-1].in_features
    model = model.to(device).eval()
    x1 = torch.randn(1, 3, image_size, image_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x1)
    with torch.no_grad():
        latency = timed(lambda: model(x1), device, repeats)  # its own warm-up: the counted pass ran in a dispatch mode
        xb = torch.randn(batch_size, 3, image_size, image_size, device=device)
        batch = timed(lambda: model(xb), device, repeats)
    train = Timing(0.0, 0, None)
    if train_step:
        model.train()
        y = torch.randint(0, 1000, (batch_size,), device=device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        train = timed(_train_step(model, xb, y, opt), device, repeats)
    top1, source = published_top1(arch)
    return {"arch": arch, "family": spec.family, "params_m": round(params / 1e6, 6),
            "head_params": in_features * num_classes + num_classes,
            "gflops": round(counter.get_total_flops() / 1e9, 3), "latency_ms": round(latency.seconds * 1000, 2),
            "throughput_ips": round(batch_size / batch.seconds, 1),
            "train_ips": round(batch_size / train.seconds, 2) if train.runs else None,
            "peak_mem_mb": round(memory.peak_mb(), 1), "imagenet_top1": top1, "source": source,
            "image_size": image_size, "native_size": spec.native_size, "batch_size": batch_size,
            "latency_runs": latency.runs, "throughput_runs": batch.runs, "train_runs": train.runs,
            "latency_spread": latency.spread, "throughput_spread": batch.spread, "train_spread": train.spread,
            "others_cores": load.excess(torch.get_num_threads()),
            "mem_measure": memory.measure, "device": str(device)}


def memory_step(arch: str, image_size: int, device: torch.device, batch_size: int, num_classes: int = 10) -> dict:
    """Peak memory of one training step (AdamW) of a freshly built `arch` at `batch_size`, and its seconds."""
    from helpers.models.zoo import build_model
    memory = _Memory(device)
    model = build_model(arch, num_classes, "none").to(device).train()
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    seconds = _once(_train_step(model, x, y, torch.optim.AdamW(model.parameters(), lr=1e-4)), device)
    return {"arch": arch, "image_size": image_size, "batch_size": batch_size,
            "peak_mem_mb": round(memory.peak_mb(), 1), "step_seconds": round(seconds, 2),
            "mem_measure": memory.measure, "device": str(device)}


def _run_request(request: dict) -> dict:
    """Carry out one request of `Measurer` in this (fresh) process."""
    request = dict(request)
    torch.set_num_threads(request.pop("threads"))
    kind = request.pop("kind")
    request["device"] = torch.device(request["device"])
    return measure(**request) if kind == "row" else memory_step(**request)


def _serve(parent: int) -> None:
    """Answer each JSON request line on stdin from a forked child of this process, one JSON line each; end
    with `parent` (the process that started this server)."""
    _die_with_parent(parent)
    # Imported once here and inherited by every child; nothing runs on a tensor before the fork.
    import efficientnet_pytorch  # noqa: F401
    import torch.utils.flop_counter  # noqa: F401
    import torchvision.models  # noqa: F401

    from helpers.models import zoo as models  # noqa: F401
    server = os.getpid()
    for line in sys.stdin:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a fresh process with the libraries loaded and nothing allocated
            _die_with_parent(server)
            os.close(read_end)
            code = 0
            try:
                payload = json.dumps(_run_request(json.loads(line)))
            except BaseException as exc:  # reported to the parent, which raises it with the arch named
                payload, code = json.dumps({"error": f"{type(exc).__name__}: {exc}"}), 1
            with os.fdopen(write_end, "w") as out:
                out.write(payload)
            os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end) as answer:
            payload = answer.read()
        _, status = os.waitpid(pid, 0)
        if not payload:
            payload = json.dumps({"error": f"the measuring process ended with {_status_words(status)} "
                                           "(out of memory?)"})
        sys.stdout.write(payload + "\n")
        sys.stdout.flush()


def _die_with_parent(parent: int) -> None:
    """Linux: end this process when `parent` ends (a study stopped mid-way leaves no measurement running).

    Linux signals when the parent's starting thread ends: a study starts and uses its Measurer in one thread.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:  # the parent ended before the request to follow it took hold
        os._exit(1)


def _status_words(status: int) -> str:
    """A child's wait status in words."""
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class Measurer:
    """Runs requests in fresh processes: a forking server on Linux, an interpreter per request elsewhere."""

    def __init__(self) -> None:
        self._server: subprocess.Popen | None = None
        self._stderr = None

    def __enter__(self) -> "Measurer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server, if one was started."""
        if self._server is not None:
            self._server.stdin.close()
            self._server.wait(timeout=60)
            self._server = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _error_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def run(self, request: dict) -> dict:
        """The result of one request, or a RuntimeError naming what failed."""
        if not _fork_server_supported():
            done = subprocess.run([sys.executable, "-m", "helpers.research.measure", json.dumps(request)],
                                  capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
            lines = done.stdout.strip().splitlines()
            answer = json.loads(lines[-1]) if lines else {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        else:
            if self._server is None:
                self._stderr = tempfile.TemporaryFile()
                self._server = subprocess.Popen([sys.executable, "-m", "helpers.research.measure", "--serve",
                                                 str(os.getpid())],
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                                text=True, cwd=paths.PROJECT_ROOT)
            self._server.stdin.write(json.dumps(request) + "\n")
            self._server.stdin.flush()
            line = self._server.stdout.readline()
            answer = json.loads(line) if line else {"error": f"the measuring server stopped: {self._error_tail()}"}
        if "error" in answer:
            raise RuntimeError(f"measuring {request['arch']} at {request['image_size']} px, batch "
                               f"{request['batch_size']} failed: {answer['error']}")
        return answer


# ---------------------------------------------------------------- the cache of earlier measurements

def _cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_key(device: torch.device, threads: int) -> dict:
    """What a measurement depends on besides its request: machine, libraries, device and threads."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()
    return {"version": MEASURE_VERSION, "host": socket.gethostname(), "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torchvision": _version("torchvision"),
            "efficientnet-pytorch": _version("efficientnet-pytorch"), "python": platform.python_version(),
            "device": str(device), "device_name": name, "threads": threads}


def cache_folder() -> Path:
    """Where 01 keeps its measurements for reuse on this machine."""
    return paths.cache_dir() / "research"


def _cache_file(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_folder() / f"{key['request']['kind']}-{key['request']['arch']}-{digest}.json"


def cached(request: dict, machine: dict, measurer: Measurer, reuse: bool) -> dict:
    """The result of `request`: reused from this machine's cache when `reuse` and the key matches, else measured.

    The result carries `measured_at` (UTC, when it was measured) and `reused` (True when it came from the cache).
    """
    key = {**machine, "request": request}
    path = _cache_file(key)
    if reuse and path.exists():
        try:
            stored = files.read_json(path)
            if stored.get("key") == key:
                return {**stored["result"], "reused": True}
        except (OSError, ValueError):
            pass  # a damaged entry is measured again and rewritten
    result = measurer.run({**request, "threads": machine["threads"]})
    result["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    files.write_json(path, {"key": key, "result": result})
    return {**result, "reused": False}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve(int(sys.argv[2]))
    else:  # one measurement in this fresh interpreter (the fallback off Linux)
        try:
            print(json.dumps(_run_request(json.loads(sys.argv[1]))))
        except Exception as exc:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
