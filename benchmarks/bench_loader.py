"""Data-path benchmark: images/s of each way 03 can feed the device, and the share of a training step spent waiting.

The paths: the resized-image cache (memory-mapped, what `cache=auto` uses within `cache_gb`); decoding the
original JPEGs on the fly with 0…K DataLoader workers (persistent, prefetching: beyond the budget or with
`cache=off`); and, on CUDA only, decoding on the GPU with torchvision.io.decode_jpeg (nvJPEG). Then `--steps`
real training steps of `--arch` behind each loader, reporting the share of step time spent waiting for data.

Usage: python benchmarks/bench_loader.py [--n 256] [--size 128] [--batch 32] [--arch mobilenet_v3_small]
                                        [--device auto] [--workers 0,1,2] [--steps 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler

from helpers import imagecache, models
from helpers.devices import device_name, resolve_device
from helpers.inference import autocast, normalizer_for


def generate(root: Path, n: int) -> list[str]:
    """n photo-sized JPEGs (500x375, smooth content with noise, quality 90) — a Kaggle-like dataset."""
    root.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> str:
        rng = np.random.default_rng(i)
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC), dtype=np.int16)
        arr = np.clip(arr + rng.integers(-12, 12, arr.shape), 0, 255).astype(np.uint8)
        path = root / f"{i}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        return str(path)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        return list(pool.map(one, range(n)))


def loader(images, labels, batch: int, workers: int, device: torch.device) -> DataLoader:
    """A training loader as 03 builds it (random order, horizontal flips) over `images`."""
    from torchvision.transforms import v2
    dataset = imagecache.CachedImages(images, labels, v2.RandomHorizontalFlip())
    return DataLoader(dataset, batch_size=batch, sampler=RandomSampler(dataset), drop_last=True,
                      **imagecache.loader_options(workers, device))


def data_rate(dl: DataLoader, device: torch.device, epochs: int = 2) -> float:
    """Images/s of the loader alone (to the device), over the last of `epochs` (persistent workers warm)."""
    rate = 0.0
    for _ in range(epochs):
        t0, n = time.perf_counter(), 0
        for x, _y in dl:
            x.to(device, non_blocking=True)
            n += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = n / (time.perf_counter() - t0)
    return rate


def gpu_decode_rate(files: list[str], size: int, batch: int, device: torch.device) -> float:
    """Images/s of torchvision.io.decode_jpeg on the GPU, resized and cropped there (second pass)."""
    rate = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        for start in range(0, len(files), batch):
            imagecache.decode_jpeg_batch(files[start:start + batch], size, device)
        torch.cuda.synchronize()
        rate = len(files) / (time.perf_counter() - t0)
    return rate


def wait_share(dl: DataLoader, arch: str, n_classes: int, device: torch.device, steps: int) -> tuple[float, float]:
    """Training images/s behind `dl` and the share of step time spent waiting for the next batch."""
    model = models.build_model(arch, n_classes, "none").to(device, memory_format=torch.channels_last).train()
    norm = normalizer_for(arch).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    waited = total = 0.0
    seen, it, done = 0, iter(dl), 0
    while done < steps + 1:
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(dl)
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        with autocast(device):
            loss = crit(model(norm(x).contiguous(memory_format=torch.channels_last)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if done:  # the first step warms up (cuDNN, allocator, workers)
            waited, total, seen = waited + (t1 - t0), total + (t2 - t0), seen + len(x)
        done += 1
    return seen / total, waited / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--arch", default="mobilenet_v3_small")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    device = resolve_device(args.device)
    workers = [int(w) for w in args.workers.split(",")]
    print(f"{args.n} JPEGs of 500x375 → {args.size}px, batch {args.batch}, {device_name(device)}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp) / "jpg", args.n)
        labels = [i % 10 for i in range(args.n)]
        t0 = time.perf_counter()
        cached = imagecache.build_cache(files, [f"bench{i}" for i in range(args.n)], args.size, Path(tmp) / "cache")
        build = args.n / (time.perf_counter() - t0)
        decoded = imagecache.DecodedImages(files, args.size)
        rows = [("cache build (once, all cores)", build, None, None)]
        paths = [("cache (memory-mapped)", cached, 0)] + [(f"decode on the fly, {w} worker(s)", decoded, w)
                                                          for w in workers]
        for name, images, w in paths:
            rate = data_rate(loader(images, labels, args.batch, w, device), device)
            train_rate, share = wait_share(loader(images, labels, args.batch, w, device), args.arch, 10, device,
                                           args.steps)
            rows.append((name, rate, train_rate, share))
        if device.type == "cuda":
            rows.append(("decode_jpeg on the GPU (nvJPEG)", gpu_decode_rate(files, args.size, args.batch, device),
                         None, None))
        else:
            print("decode_jpeg on the GPU: skipped (no CUDA device)")
    print(f"\n{'data path':<36} {'data img/s':>11} {'train img/s':>12} {'waiting':>8}")
    for name, rate, train_rate, share in rows:
        tr = f"{train_rate:12.1f}" if train_rate is not None else f"{'–':>12}"
        sh = f"{share:8.0%}" if share is not None else f"{'–':>8}"
        print(f"{name:<36} {rate:11.1f} {tr} {sh}")
    print(f"\ntraining: {args.arch} at {args.size}px, {args.steps} steps after one warm-up step; 'waiting' = share "
          "of step time spent waiting for the next batch")


if __name__ == "__main__":
    main()
