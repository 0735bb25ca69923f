"""Exported model against PyTorch on the CPU: batch-1 latency and batch throughput, side by side.

Usage: python benchmarks/bench_export.py [--arch efficientnet-lite0] [--size 80] [--batch 32] [--repeats 30]
       [--threads 0] [--run-id ID]   (--run-id: that run's trained model and input size instead of a fresh one)

Every candidate sees the same uint8 images on the same threads; PyTorch eager is the baseline, both as 04 and
05 run it (channels_last) and in the default memory format. Each figure is the best of its repeats (as timeit advises: slower repeats measure other
processes, not the model).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from helpers.evaluation import export, trained
from helpers.models import inference
from helpers.models.zoo import build_model
from helpers.training import checkpoints
from helpers.utils import paths


def timed(fn, x: np.ndarray, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of fn(x), after two warm-up calls."""
    fn(x)
    fn(x)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t0)
    return out


def candidates(model, norm, folder: Path, size: int) -> dict:
    """Name → callable over a uint8 batch: PyTorch eager, ONNX Runtime, TorchScript."""
    import onnxruntime as ort
    net = export.exportable(model, norm)
    export.write_model(net, "onnx", folder / "model.onnx", size)
    export.write_model(net, "torchscript", folder / "model.pt", size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same cores for every candidate
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        scripted = torch.jit.load(str(folder / "model.pt")).eval()
    cpu = torch.device("cpu")
    plain = net  # the same network in the default memory format, no channels_last conversion
    model = model.to(cpu, memory_format=torch.channels_last).eval()

    def eager(x):
        return inference.predict_proba(model, norm, x, cpu, batch_size=len(x))

    def eager_plain(x):
        with torch.inference_mode():
            return plain(torch.from_numpy(x)).numpy()

    def onnx(x):
        return session.run(["probs"], {"image": x})[0]

    def torchscript(x):
        with torch.no_grad():
            return scripted(torch.from_numpy(x)).numpy()

    return {"PyTorch eager, channels_last": eager, "PyTorch eager, contiguous": eager_plain,
            "ONNX Runtime (CPU)": onnx, "TorchScript": torchscript}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="efficientnet-lite0")
    ap.add_argument("--size", type=int, default=80, help="input pixels (80: the default run's)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--run-id", default="", help="benchmark this run's trained model instead")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.run_id:
        ckpt = checkpoints.resolve(paths.run_dir(args.run_id), 0)
        model, norm, cfg = trained.load_trained(ckpt, torch.device("cpu"))
        arch, size = cfg["arch"], int(cfg["image_size"])
    else:
        arch, size = args.arch, args.size
        model, norm = build_model(arch, 10, "none").eval(), inference.normalizer_for(arch)
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 3, size, size), dtype=np.uint8)
    batch = rng.integers(0, 256, (args.batch, 3, size, size), dtype=np.uint8)
    print(f"{arch} at {size}x{size} px, CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'':30} {'batch-1 latency (ms)':>22} {f'batch-{args.batch} throughput (img/s)':>30}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in candidates(model, norm, Path(tmp), size).items():
            latency = min(timed(fn, one, args.repeats)) * 1000
            throughput = args.batch / min(timed(fn, batch, max(3, args.repeats // 5)))
            print(f"{name:30} {latency:>22.2f} {throughput:>30.1f}", flush=True)


if __name__ == "__main__":
    main()
