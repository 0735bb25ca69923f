"""Resized-image cache: every image decoded once per size, then read from one memory-mapped array."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from . import paths
from .data import to_rgb
from .progress import bar as progress_bar

CACHE_VERSION = "v1"  # bump when the resize recipe changes


def load_resized(path: str | Path, size: int) -> np.ndarray:
    """Decode one image as RGB, resize its shorter side to `size`, center-crop a square: CHW uint8."""
    with Image.open(path) as img:
        img = to_rgb(img)
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def cache_key(shas: list[str], size: int) -> str:
    """Cache file name from the images' content hashes, their order, and the size."""
    digest = hashlib.sha256("\n".join([CACHE_VERSION, str(size), *shas]).encode()).hexdigest()
    return f"{size}px-{len(shas)}-{digest[:20]}.npy"


def build_cache(files: list[str], shas: list[str], size: int, cache_root: Path | None = None,
                progress: bool = False) -> np.ndarray:
    """Return an (N, 3, size, size) uint8 array of the images, built once and memory-mapped after."""
    root = Path(cache_root or paths.cache_dir())
    root.mkdir(parents=True, exist_ok=True)
    target = root / cache_key(shas, size)
    if target.exists():
        return np.load(target, mmap_mode="r")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))

    def fill(i: int) -> None:
        array[i] = load_resized(files[i], size)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = pool.map(fill, range(len(files)), chunksize=64)
        if progress:
            jobs = progress_bar(jobs, total=len(files), desc=f"cache {size}px", unit="images")
        for _ in jobs:
            pass
    array.flush()
    os.replace(tmp, target)
    return np.load(target, mmap_mode="r")


class CachedImages(Dataset):
    """Images from a cache array with integer labels; an optional transform applies to uint8 CHW tensors."""

    def __init__(self, images: np.ndarray, labels: list[int], transform=None) -> None:
        self.images, self.labels, self.transform = images, torch.as_tensor(labels), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.array(self.images[i]))
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


def split_arrays(frame, classes: list[str], split: str, size: int,
                 progress: bool = False) -> tuple[np.ndarray, list[int]]:
    """Cached images and integer labels of one split of split.csv (with its `file` column)."""
    part = frame[frame["split"] == split]
    index = {c: i for i, c in enumerate(classes)}
    images = build_cache(part["file"].tolist(), part["sha256"].tolist(), size, progress=progress)
    return images, [index[c] for c in part["label"]]
