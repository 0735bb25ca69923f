"""GPU check: the kit's CUDA path end to end, in under 8 minutes, beside published figures.

Prints, each beside the strongest published figure we found (sources printed with them):
  1. `make run` on CUDA: time and test accuracy (beside this README's 2-core CPU figure)
  2. EfficientNet-B4 at 380 px, AMP, channels_last: training img/s and peak memory at batch 16/32/64
  3. Lite0 and B0 training img/s at 224 px (eager, and Lite0 with compile=True)
  4. the out-of-memory micro-batching path, forced once (a memory cap), ending in the ledger's note
  5. the write-up's CPU → CUDA continuation: a CPU cycle, then `init=best -p device cuda -p batch_size 16`
  6. DDP through torchrun on the GPUs present (one NCCL process on a one-GPU machine)

Usage (fresh clone):  bash benchmarks/gpu_check.sh            # creates .venv, then runs this
                      python benchmarks/gpu_check.py [--skip make_run,ddp] [--run-id gpu-check]
                      python benchmarks/gpu_check.py --dry-run   # every section at toy sizes on the CPU:
                                                                 # proves the script works, measures nothing
Runs land under a temporary STUDY_HOME (nothing is added to runs/). Exit code 1 if any section failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
TIMM = ("timm results/benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv "
        "(https://github.com/huggingface/pytorch-image-models/blob/main/results/"
        "benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv): RTX 3090, AMP, channels_last, PyTorch 1.12")
NVIDIA = ("NVIDIA DeepLearningExamples, PyTorch EfficientNet README, 'Training performance results' "
          "(https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Classification/ConvNets/efficientnet): "
          "1 GPU, mixed precision, PyTorch 21.03 NGC container")
OURS_CPU = "this README, 'Performance': `make run` on 2 CPU cores, 2026-12-01"
PUBLISHED = {  # arch: [(figure, where), ...]
    "efficientnet-b4": [("241.8 img/s (tf_efficientnet_b4, 380 px, batch 64)", "timm"),
                        ("331 img/s (1x A100 80GB); 204 img/s (1x V100 16GB)", "nvidia")],
    "efficientnet-b0": [("1751.7 img/s (efficientnet_b0, 224 px, batch 512)", "timm"),
                        ("2489 img/s (1x A100 80GB); 1301 img/s (1x V100 16GB)", "nvidia")],
    "efficientnet-lite0": [("2079.3 img/s (efficientnet_lite0, 224 px, batch 512)", "timm")],
}
RESULTS: list[tuple[str, str, str]] = []  # (what, ours, published)
FAILED: list[str] = []


def say(what: str, ours: str, published: str = "") -> None:
    """One line of the report, kept for the summary."""
    RESULTS.append((what, ours, published))
    print(f"  {what:<44} {ours:<34} {published}", flush=True)


def section(name: str, skip: set[str]):
    """Decorator: run a section, time it, report a failure without stopping the others."""
    def wrap(fn):
        def run(*args, **kwargs):
            if name in skip:
                print(f"\n== {name}: skipped (--skip)")
                return None
            print(f"\n== {name}", flush=True)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # a broken section is a finding, not the end of the check
                FAILED.append(name)
                say(f"{name}: FAILED", f"{type(exc).__name__}: {exc}"[:200])
                traceback.print_exc()
            finally:
                print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
        return run
    return wrap


def make_split(run_id: str, per_class: int = 8, side: int = 24) -> None:
    """A tiny two-class run whose 02 is done (dry run: no make run before it)."""
    import hashlib

    from PIL import Image

    from helpers.utils import paths
    root, run = paths.home() / "ds", paths.run_dir(run_id)
    run.mkdir(parents=True, exist_ok=True)
    rows, rng = [], np.random.default_rng(0)
    for k, label in enumerate(["a", "b"]):
        for i in range(per_class):
            arr = rng.integers(0, 60, (side, side, 3), dtype=np.uint8)
            arr[..., k] += 180
            path = root / label / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
            split = "train" if i < per_class // 2 else ("val" if i < 3 * per_class // 4 else "test")
            rows.append({"path": f"{label}/{i}.png", "label": label, "split": split,
                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    pd.DataFrame(rows).to_csv(run / "split.csv", index=False)
    (run / "data_report.json").write_text(json.dumps({"root": str(root), "classes": ["a", "b"],
                                                      "image_sizes": [[f"{side}x{side}", 2 * per_class]]}))


def throughput(arch: str, size: int, batch: int, device: torch.device, steps: int, compile_: bool = False
               ) -> tuple[float, float]:
    """Training img/s (AMP, channels_last, the loop's own step) and peak memory in GB, on synthetic batches."""
    from helpers.models import zoo as models
    from helpers.models.inference import normalizer_for
    from helpers.training.config import TrainConfig
    from helpers.training.loop import train_step
    from helpers.training.optim import make_optimizer
    model = models.build_model(arch, 1000, "none").to(device, memory_format=torch.channels_last).train()
    norm = normalizer_for(arch).to(device)
    cfg = TrainConfig(arch=arch, classes=[str(i) for i in range(1000)], image_size=size, batch_size=batch)
    opt = make_optimizer(model, cfg, head_only=False)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    crit = torch.nn.CrossEntropyLoss()
    forward = torch.compile(model) if compile_ else model
    x = torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(3):  # warm-up: cuDNN autotuning, the allocator, compilation
        train_step(forward, norm, x, y, batch, opt, scaler, crit, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(forward, norm, x, y, batch, opt, scaler, crit, device)
    sync()
    rate = steps * batch / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    del model, opt, forward
    return rate, peak


def published(arch: str) -> str:
    return " | ".join(f"{fig} [{src}]" for fig, src in PUBLISHED.get(arch, []))


def cycle(run_id: str, **params) -> dict:
    """One 03 cycle through its entry point (the same steps as the notebook)."""
    from helpers.params.schema import defaults
    from helpers.training import cli as train_cli
    return train_cli.run(run_id, {**defaults("03_train"), "run_id": run_id, **params})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU; checks the script, measures nothing")
    ap.add_argument("--skip", default="", help="comma-separated: make_run,b4,small,oom,continuation,ddp")
    ap.add_argument("--run-id", default="gpu-check")
    ap.add_argument("--home", type=Path, help="STUDY_HOME of the check's runs (default: a new temporary folder)")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("No CUDA device here: run this on a GPU machine, or use --dry-run to check the script on a CPU.")
        return 2
    device = torch.device("cpu") if dry else torch.device("cuda")
    home = args.home or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    os.environ["STUDY_HOME"] = str(home)  # runs stay out of the project's runs/
    os.environ.setdefault("STUDY_PROGRESS", "lines")
    sys.path.insert(0, str(ROOT))
    from helpers.training import distributed
    from helpers.utils import devices, paths
    gpu = devices.device_name(device)
    print(f"GPU check {'(DRY RUN: toy sizes on the CPU, no figure means anything) ' if dry else ''}"
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {gpu}"
          + (f", {torch.cuda.get_device_properties(0).total_memory / 1e9:.0f} GB, {torch.cuda.device_count()} GPU(s)"
             if not dry else "")
          + f"; torch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores; STUDY_HOME={home}")
    t_start = time.perf_counter()
    run_id = args.run_id

    @section("make_run", skip)
    def make_run() -> None:
        if dry:
            make_split(run_id)
            say("make run on CUDA", "dry run: not run (a tiny split made instead)", OURS_CPU)
            return
        t0 = time.perf_counter()
        subprocess.run(["make", "run", f"ARGS=--run-id {run_id} -p device cuda"], cwd=ROOT, check=True,
                       env={**os.environ, "STUDY_HOME": str(home)})
        seconds = time.perf_counter() - t0
        metrics = json.loads((paths.run_dir(run_id) / "metrics.json").read_text())
        lo, hi = metrics.get("test_accuracy_ci95", [float("nan")] * 2)
        say("make run on CUDA (01→04 + report)", f"{seconds:.0f} s, test accuracy {metrics['test_accuracy']:.4f} "
            f"[{lo:.3f}, {hi:.3f}]", f"284 s, 0.9067 on 2 CPU cores [{OURS_CPU}]")

    @section("b4", skip)
    def b4() -> None:
        arch, size = ("mobilenet_v3_small", 32) if dry else ("efficientnet-b4", 380)
        for batch in ((2, 4) if dry else (16, 32, 64)):
            try:
                rate, peak = throughput(arch, size, batch, device, steps=2 if dry else 10)
            except torch.OutOfMemoryError:  # a smaller GPU: a finding for this batch, not a broken check
                torch.cuda.empty_cache()
                say(f"{arch} {size}px AMP channels_last, batch {batch}", "out of memory on this GPU")
                continue
            say(f"{arch} {size}px AMP channels_last, batch {batch}", f"{rate:.1f} img/s, peak {peak:.1f} GB",
                published("efficientnet-b4") if batch in (64, 4) else "")

    @section("small", skip)
    def small() -> None:
        size, batch, steps = (32, 4, 2) if dry else (224, 128, 15)
        for arch in ("efficientnet-lite0", "efficientnet-b0"):
            rate, peak = throughput(arch, size, batch, device, steps)
            say(f"{arch} {size}px AMP channels_last, batch {batch}", f"{rate:.1f} img/s, peak {peak:.1f} GB",
                published(arch))
        if dry:
            say("efficientnet-lite0 with compile=True", "dry run: compile applies on CUDA only")
            return
        rate, _ = throughput("efficientnet-lite0", size, batch, device, steps, compile_=True)
        say(f"efficientnet-lite0 {size}px, batch {batch}, compile=True", f"{rate:.1f} img/s (torch.compile)",
            "the eager line above")

    @section("oom", skip)
    def oom() -> None:
        from helpers.training import loop
        oom_run = f"{run_id}-oom"
        make_split(oom_run, per_class=16 if dry else 64, side=24 if dry else 64)
        arch, size, batch = ("mobilenet_v3_small", 32, 8) if dry else ("efficientnet-b4", 380, 64)
        if dry:  # no memory cap on a CPU: make any batch above 2 images run out of memory once
            original = loop.train_step

            def capped(model, norm, x, y, micro, *rest):
                if micro > 2:
                    raise torch.OutOfMemoryError("dry run: simulated")
                return original(model, norm, x, y, micro, *rest)
            loop.train_step = capped
        else:  # cap this process at about what batch 16 needed, so batch 64 cannot fit
            _, peak16 = throughput(arch, size, 16, device, steps=1)
            total = torch.cuda.get_device_properties(0).total_memory / 1e9
            torch.cuda.set_per_process_memory_fraction(min(0.95, 1.6 * peak16 / total))
        try:
            row = cycle(oom_run, arch=arch, image_size=size, batch_size=batch, epochs=1, head_epochs=0,
                        weights="none", device=str(device))
        finally:
            if dry:
                loop.train_step = original
            else:
                torch.cuda.set_per_process_memory_fraction(1.0)
                torch.cuda.empty_cache()
        ok = "out of memory at batch" in str(row["note"])
        say(f"out-of-memory micro-batching ({arch}, batch {batch})", "note: " + str(row["note"] or "(none)"),
            "expected: 'out of memory at batch …: trained in micro-batches …'")
        if not ok:
            raise RuntimeError("the forced out-of-memory left no note in cycles.csv")

    @section("continuation", skip)
    def continuation() -> None:
        import shutil
        cont = f"{run_id}-cpu"  # a run whose only earlier cycle is the CPU one, so init=best continues it
        if not (paths.run_dir(run_id) / "split.csv").exists():
            make_split(run_id)
        paths.run_dir(cont).mkdir(parents=True, exist_ok=True)
        for name in ("split.csv", "data_report.json"):
            shutil.copy(paths.run_dir(run_id) / name, paths.run_dir(cont) / name)
        small_run = dict(epochs=1, head_epochs=1)  # the default arch and size, one epoch of each stage
        if dry:
            small_run = dict(epochs=1, head_epochs=0, image_size=32, arch="mobilenet_v3_small", weights="none")
        cpu = cycle(cont, device="cpu", batch_size=32, **small_run)
        say("a cycle on the CPU", f"cycle {cpu['cycle']}: {cpu['seconds']} s, best val {cpu['best_val_accuracy']}")
        cuda = cycle(cont, init="best", device=str(device), batch_size=16, **small_run)
        ledger = pd.read_csv(paths.run_dir(cont) / "cycles.csv")
        last = ledger.iloc[-1]
        say("then init=best -p device cuda -p batch_size 16",
            f"cycle {last['cycle']} on {last['device']} from cycle {int(last['init_from'])}: {cuda['seconds']} s, "
            f"best val {cuda['best_val_accuracy']}", "the write-up's path (a CPU model continued on a GPU)")

    @section("ddp", skip)
    def ddp() -> None:
        if not (paths.run_dir(run_id) / "split.csv").exists():
            make_split(run_id)
        n = 2 if dry else max(1, torch.cuda.device_count())
        from helpers.params.schema import defaults
        params = {**defaults("03_train"), "run_id": run_id, "device": str(device.type), "epochs": 1,
                  "head_epochs": 0, "batch_size": 32, "devices": str(n)}
        if dry:
            params.update(arch="mobilenet_v3_small", weights="none", image_size=32, batch_size=4)
        ctx = SimpleNamespace(**params)
        t0 = time.perf_counter()
        row = distributed.launch(ctx, nproc=n, echo=lambda line: print("   " + line, flush=True))
        seconds = time.perf_counter() - t0
        backend = "gloo" if dry else "NCCL"
        say(f"DDP: {n} process(es), {backend}", f"cycle {row['cycle']} on {row['device_name']}: {row['seconds']} s "
            f"in the loop, {seconds:.0f} s with torchrun's start", "" if n > 1 else
            "one GPU here: the torchrun/NCCL path with one process, no scaling figure")

    make_run()
    b4()
    small()
    oom()
    continuation()
    ddp()
    total = time.perf_counter() - t_start
    print(f"\n== summary ({total / 60:.1f} min{'; DRY RUN' if dry else ''}; {gpu})")
    for what, ours, pub in RESULTS:
        print(f"| {what} | {ours} | {pub} |")
    print(f"\nsources: [timm] {TIMM}\n         [nvidia] {NVIDIA}")
    if FAILED:
        print(f"FAILED sections: {', '.join(FAILED)}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
