"""Data benchmark: 02's scan/check/hash pass and 03's cache build in images per second, each on all cores beside
the same work on one thread. With --prepare: all of 02 (layout, check, duplicates, split) on generated tiny
images, its time and peak memory at each size, and the near-duplicate search (multi-index hashing) beside the
all-pairs comparison it replaces. The training loader (cache against decoding the originals) is
benchmarks/bench_loader.py.

Usage: python benchmarks/bench_data.py [--n 2000] [--size 128]
       python benchmarks/bench_data.py --prepare 5000,50000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.data import dataset as data
from helpers.data import duplicates, imagecache


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


def generate_tiny(root: Path, n: int) -> None:
    """n 16 px PNGs in 10 class folders, one in a hundred an exact copy of another (so groups exist)."""
    def one(i: int) -> None:
        folder = root / f"class{i % 10}"
        if i % 100 == 99:
            (folder / f"{i}.png").write_bytes((folder / f"{i - 10}.png").read_bytes())
            return
        arr = np.random.default_rng(i).integers(0, 255, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(arr).resize((16, 16), Image.Resampling.BICUBIC).save(folder / f"{i}.png")
    for k in range(10):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(one, [i for i in range(n) if i % 100 != 99]))
    for i in range(99, n, 100):
        one(i)


def all_pairs(hashes: list[str], max_distance: int, block: int = 256) -> int:
    """The baseline near-duplicate search: every hash against every other (numpy, in blocks)."""
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    found = 0
    for lo in range(0, len(values), block):
        dist = np.bitwise_count(values[lo:lo + block, None] ^ values[None, :])
        found += int((dist <= max_distance).sum()) - min(block, len(values) - lo)
    return found // 2


def prepare_one(root: Path) -> dict:
    """02 on a generated folder, in a process of its own: its peak memory over the start is 02's."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    frame, report = data.prepare_split(root)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hashes = sorted(set(frame["phash"]))
    t0 = time.perf_counter()
    ours = len(duplicates.near_pairs(hashes))
    near = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = all_pairs(hashes, duplicates.NEAR_DISTANCE)
    brute = time.perf_counter() - t0
    return {"n": len(frame), "seconds": seconds, "peak_mb": (peak - base) / 1024,
            "groups": len(report["duplicate_groups"]), "near_s": near, "all_pairs_s": brute, "pairs_equal": ours == theirs}


def prepare_table(sizes: list[int]) -> None:
    """Generate each size, run prepare_one on it in a fresh process; print time, memory and growth."""
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            generate_tiny(Path(tmp), n)
            out = subprocess.run([sys.executable, __file__, "--prepare-one", tmp], check=True, capture_output=True,
                                 text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{'images':>7s} {'02 s':>7s} {'img/s':>7s} {'02 peak MB':>10s} {'groups':>7s} "
          f"{'near-dup s':>10s} {'all-pairs s':>11s} {'same pairs':>10s}")
    for r in rows:
        print(f"{r['n']:7d} {r['seconds']:7.1f} {r['n'] / r['seconds']:7.0f} {r['peak_mb']:10.0f} {r['groups']:7d} "
              f"{r['near_s']:10.2f} {r['all_pairs_s']:11.2f} {r['pairs_equal']!s:>10s}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"{b['n'] / a['n']:.1f}x the images: 02 takes {b['seconds'] / a['seconds']:.1f}x the time and "
              f"{b['peak_mb'] / max(a['peak_mb'], 1):.1f}x the memory; near-duplicate search "
              f"{b['near_s'] / max(a['near_s'], 1e-9):.1f}x, "
              f"all-pairs {b['all_pairs_s'] / max(a['all_pairs_s'], 1e-9):.1f}x")


def main() -> None:
    """Generate, then time each pass and print it beside its baseline."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="generated images (64-640 px, JPEG and PNG)")
    ap.add_argument("--size", type=int, default=128, help="the cache's image size")
    ap.add_argument("--prepare", help="comma-separated sizes: time and peak memory of all of 02 at each")
    ap.add_argument("--prepare-one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare_one:
        print(json.dumps(prepare_one(Path(args.prepare_one))))
        return
    if args.prepare:
        prepare_table([int(v) for v in args.prepare.split(",")])
        return
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
        shas = [c.sha256 for c in checked]
        t0 = time.perf_counter()
        plain = np.empty((len(files), 3, args.size, args.size), np.uint8)
        for i, f in enumerate(files):  # the plainest cache: one image after another into an array, one thread
            plain[i] = imagecache.load_resized(f, args.size)
        cache_one = args.n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        imagecache.build_cache(files, shas, args.size, Path(tmp) / "cache")
        cache = args.n / (time.perf_counter() - t0)
    print(f"{os.cpu_count()} cores; {args.n} images")
    print(f"{'pass (img/s)':52s} {'all cores':>9s} {'1 thread':>9s} {'ratio':>6s}")
    print(f"{'scan/check/hash (sha256 + perceptual)':52s} {scan:9.0f} {one_thread:9.0f} {scan / one_thread:6.2f}")
    print(f"{f'cache build at {args.size}px (decode + resize + write)':52s} {cache:9.0f} {cache_one:9.0f} "
          f"{cache / cache_one:6.2f}")


if __name__ == "__main__":
    main()
