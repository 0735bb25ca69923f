"""The architecture study: each candidate measured on this machine, in a fresh process (helpers.research.measure).

What a reader sees of it — the write-up's table, the titled figures, the claims checked — is
helpers.reporting.studytables.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from helpers.models.zoo import arch_spec
from helpers.research import disturbance, measure, stepmemory

RESEARCH_COLUMNS = ["arch", "family", "params_m", "head_params", "gflops", "latency_ms", "throughput_ips",
                    "train_ips", "peak_mem_mb", "imagenet_top1", "source", "image_size", "native_size", "batch_size",
                    "latency_runs", "throughput_runs", "train_runs", "mem_measure", "device", "threads",
                    "measured_at", "reused", "latency_spread", "throughput_spread", "train_spread", "others_cores",
                    *disturbance.COLUMNS]
MEMORY_COLUMNS = ["arch", "image_size", "batch_size", "peak_mem_mb", "step_seconds", "mem_measure", "device",
                  "measured_at", "reused", "how", "fit_batches"]

def sizes_for(archs: list[str], image_size: int = 0) -> dict[str, int]:
    """The input size each architecture is measured at: its own native size, or `image_size` when given."""
    return {arch: image_size or arch_spec(arch).native_size for arch in archs}


def memory_arch(archs: list[str]) -> str | None:
    """The EfficientNet the memory claim is checked on: the study's largest (the write-up's B4 by default)."""
    effnets = [a for a in archs if arch_spec(a).family == "EfficientNet"]
    return max(effnets, key=lambda a: (arch_spec(a).native_size, a)) if effnets else None


def study(archs: list[str], image_size: int, device: torch.device, batch_size: int, num_classes: int = 10,
          repeats: int = 5, reuse: bool = True, memory_batches: list[int] | None = None,
          progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(research.csv, research_memory.csv): one measured row per architecture, each at its own size, and the
    peak memory of a training step of the study's largest EfficientNet at `memory_batches`, at its native size.

    Every figure comes from a fresh process (see helpers.measure); with `reuse`, one measured earlier on this
    machine with the same libraries, device, threads and request is taken from the cache instead.
    """
    sizes = sizes_for(archs, image_size)
    machine = measure.machine_key(device, torch.get_num_threads())
    rows, memory = [], []
    with measure.Measurer() as measurer:
        requests = {}
        for arch in archs:
            t0 = time.perf_counter()
            requests[arch] = {"kind": "row", "arch": arch, "image_size": sizes[arch], "device": str(device),
                              "batch_size": batch_size, "num_classes": num_classes, "repeats": repeats}
            rows.append(measure.cached(requests[arch], machine, measurer, reuse))
            if progress:
                _say(arch, sizes[arch], batch_size, rows[-1], time.perf_counter() - t0)
        rows = disturbance.settle(rows, lambda r: measure.cached(requests[r["arch"]], machine, measurer, False),
                                  print if progress else None)
        target = memory_arch(archs)
        if target and memory_batches:
            native = arch_spec(target).native_size
            own = next((r for r in rows if r["arch"] == target and r["image_size"] == native), None)

            def one_step(batch: int) -> dict:
                t0 = time.perf_counter()
                request = {"kind": "memory", "arch": target, "image_size": native, "device": str(device),
                           "batch_size": batch, "num_classes": num_classes}
                result = measure.cached(request, machine, measurer, reuse)
                if progress:
                    _say(target, native, batch, result, time.perf_counter() - t0, "memory of a training step")
                return result
            memory = stepmemory.step_memory(own, list(memory_batches), one_step)
    table = pd.DataFrame(rows)
    table["threads"] = machine["threads"]
    return table.reindex(columns=RESEARCH_COLUMNS), pd.DataFrame(memory).reindex(columns=MEMORY_COLUMNS)


def _say(arch: str, size: int, batch: int, result: dict, seconds: float, what: str = "") -> None:
    """One progress line: what was measured, at which size, and whether it was reused."""
    how = f"reused (measured {result['measured_at']})" if result.get("reused") else f"{seconds:.1f}s"
    print(f"{arch} at {size} px, batch {batch}{', ' + what if what else ''}: {how}", flush=True)


def scatter_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows measured at their native size, the resolution their published top-1 was measured at."""
    native = table["arch"].map(lambda a: arch_spec(a).native_size)
    return table[table["image_size"] == native]


def scatter_table(table: pd.DataFrame) -> pd.DataFrame:
    """`scatter_rows`, each named with its input size ('efficientnet-b4 · 380 px') for the figure's labels."""
    rows = scatter_rows(table).copy()
    rows["arch"] = rows["arch"] + " · " + rows["image_size"].astype(int).astype(str) + " px"
    return rows


def bakeoff(archs: list[str], frame: pd.DataFrame, classes: list[str], image_size: int, device: torch.device,
            epochs: int, batch_size: int, seed: int, out_dir: Path, progress: bool = False) -> pd.DataFrame:
    """Fine-tune every candidate whose ImageNet weights are available on one split, same budget and seed."""
    from helpers.data.imagecache import split_arrays
    from helpers.models.zoo import WeightsError, imagenet_state_dict
    from helpers.training.cycle import TrainConfig, run_cycle
    train_data = split_arrays(frame, classes, "train", image_size)
    val_data = split_arrays(frame, classes, "val", image_size)
    rows = []
    for arch in archs:
        try:
            imagenet_state_dict(arch)
        except WeightsError as exc:
            rows.append({"arch": arch, "bakeoff_val_accuracy": None, "bakeoff_seconds": None,
                         "bakeoff_note": str(exc).split(":")[0]})
            continue
        cfg = TrainConfig(arch=arch, classes=classes, image_size=image_size, batch_size=batch_size, epochs=epochs,
                          head_epochs=5, seed=seed, device=str(device))
        row = run_cycle(cfg, Path(out_dir) / arch, *train_data, *val_data, device, progress=progress)
        rows.append({"arch": arch, "bakeoff_val_accuracy": row["best_val_accuracy"],
                     "bakeoff_seconds": row["seconds"], "bakeoff_note": ""})
    return pd.DataFrame(rows, columns=["arch", "bakeoff_val_accuracy", "bakeoff_seconds", "bakeoff_note"])
