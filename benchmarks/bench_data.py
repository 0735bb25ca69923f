"""Data benchmark: the scan/check/hash pass and the cache build in images per second, and the training
data loader reading the resized cache versus decoding the originals every epoch.

Usage: python benchmarks/bench_data.py [--n 10000] [--size 128] [--batch 32]
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
from torch.utils.data import DataLoader, Dataset

from helpers import data, imagecache


def generate(root: Path, n: int) -> None:
    """n images of mixed sizes and formats in 10 class folders."""
    def one(i: int) -> None:
        rng = np.random.default_rng(i)
        w, h = (int(v) for v in rng.integers(64, 640, 2))
        arr = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        img = Image.fromarray(arr).resize((w, h))
        folder = root / f"class{i % 10}"
        img.save(folder / f"{i}.{'jpg' if i % 3 else 'png'}", quality=90)
    for k in range(10):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(one, range(n)))


class Originals(Dataset):
    """The baseline: decode and resize the original file on every access, as ImageFolder does."""

    def __init__(self, files: list[str], size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return torch.from_numpy(imagecache.load_resized(self.files[i], self.size)), 0


def loader_ips(dataset: Dataset, batch: int, limit: int) -> float:
    """Images per second drawn through a DataLoader (main process, as the CPU default)."""
    t0 = time.perf_counter()
    n = 0
    for x, _ in DataLoader(dataset, batch_size=batch, shuffle=True):
        n += len(x)
        if n >= limit:
            break
    return n / (time.perf_counter() - t0)


def main() -> None:
    """Generate, then time each pass and print it beside its baseline."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        t0 = time.perf_counter()
        generate(root, args.n)
        print(f"generated {args.n} images (64–640 px, JPEG and PNG) in {time.perf_counter() - t0:.0f}s")
        files = sorted(str(p) for p in root.rglob("*.*"))
        t0 = time.perf_counter()
        data.check_images([Path(f) for f in files], workers=1)
        one_thread = args.n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        checked = data.check_images([Path(f) for f in files])
        scan = args.n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        imagecache.build_cache(files, [c.sha256 for c in checked], args.size, Path(tmp) / "cache")
        cache = args.n / (time.perf_counter() - t0)
        cached = imagecache.build_cache(files, [c.sha256 for c in checked], args.size, Path(tmp) / "cache")
        from_cache = loader_ips(imagecache.CachedImages(cached, [0] * len(files)), args.batch, 4000)
        from_files = loader_ips(Originals(files, args.size), args.batch, 1000)
    print(f"{'pass':52s} {'img/s':>9s} {'baseline':>9s} {'ratio':>6s}")
    print(f"{'scan/check/hash, all cores vs one thread':52s} {scan:9.0f} {one_thread:9.0f} {scan / one_thread:6.2f}")
    print(f"{f'cache build at {args.size}px (decode + resize, all cores)':52s} {cache:9.0f} {'':>9s} {'':>6s}")
    print(f"{'training loader: cache vs decoding originals':52s} {from_cache:9.0f} {from_files:9.0f} "
          f"{from_cache / from_files:6.1f}")


if __name__ == "__main__":
    main()
