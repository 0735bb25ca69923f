"""Images for training: a resized-image cache within a disk budget, or decoding on the fly beyond it.

Within `cache_gb` every image is decoded once per size into one memory-mapped array (the fastest path
on any device). Beyond the budget, or with `cache=off`, `DecodedImages` offers the same indexing and
decodes each image when it is read, so DataLoader workers (persistent, prefetching) do the decoding
while the device trains. `decode_jpeg_batch` decodes JPEGs on a CUDA GPU (nvJPEG) for benchmarks/.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from helpers.data.images import to_rgb
from helpers.utils import paths
from helpers.utils.files import DiskFullError, disk_full_cause, human_bytes
from helpers.utils.progress import bar as progress_bar

CACHE_VERSION = "v1"  # bump when the resize recipe changes
_IN_USE: set[str] = set()  # cache files this process reads: never evicted to make room for another


class ImageCacheError(ValueError):
    """The cache cannot be built as asked; the message says why and what to do."""


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


def cache_bytes(n_images: int, size: int) -> int:
    """Disk size of the cache of `n_images` at `size` px (uint8 RGB, plus the .npy header)."""
    return n_images * 3 * size * size + 128


def _cache_files(root: Path) -> list[Path]:
    return sorted(root.glob("*px-*.npy"), key=lambda p: p.stat().st_mtime) if root.exists() else []


def make_room(root: Path, need: int, budget: int, keep: set[str] = frozenset()) -> bool:
    """Delete the least recently used caches until `need` more bytes fit in `budget`; False if they cannot."""
    if need > budget:
        return False
    files = [p for p in _cache_files(root) if p.name not in keep and p.name not in _IN_USE]
    used = sum(p.stat().st_size for p in _cache_files(root))
    for p in files:  # oldest first
        if used + need <= budget:
            break
        used -= p.stat().st_size
        p.unlink(missing_ok=True)  # a reader that has it memory-mapped keeps its copy (POSIX)
    return used + need <= budget


def build_cache(files: list[str], shas: list[str], size: int, cache_root: Path | None = None,
                progress: bool = False) -> np.ndarray:
    """Return an (N, 3, size, size) uint8 array of the images, built once and memory-mapped after."""
    root = Path(cache_root or paths.cache_dir())
    root.mkdir(parents=True, exist_ok=True)
    target = root / cache_key(shas, size)
    _IN_USE.add(target.name)
    if target.exists():
        os.utime(target)  # recently used: the last to be evicted
        return np.load(target, mmap_mode="r")
    free = shutil.disk_usage(root).free
    if cache_bytes(len(files), size) > free:
        raise ImageCacheError(f"the {size}px cache of {len(files)} images needs "
                              f"{human_bytes(cache_bytes(len(files), size))} but {root} has {human_bytes(free)} free; "
                              "free some space, or use cache=off (decoding on the fly).")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
        reserve(tmp)
        _fill(array, files, size, progress)
        array.flush()
        del array
        os.replace(tmp, target)
    except OSError as exc:
        if disk_full_cause(exc) is not None:
            raise DiskFullError(target, need=cache_bytes(len(files), size)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r")


def reserve(path: Path) -> None:
    """Allocate a sparse file's every block now, so a full disk is an OSError here, not a SIGBUS in a write."""
    fd = os.open(path, os.O_RDWR)
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _fill(array: np.ndarray, files: list[str], size: int, progress: bool) -> None:
    """Decode every image into its row of the cache array, on every core."""
    def fill(i: int) -> None:
        array[i] = load_resized(files[i], size)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = pool.map(fill, range(len(files)), chunksize=64)
        if progress:
            jobs = progress_bar(jobs, total=len(files), desc=f"cache {size}px", unit="images")
        for _ in jobs:
            pass


class DecodedImages:
    """The cache array's interface (len, shape, [i], [a:b]) over image files decoded when read."""

    def __init__(self, files: Sequence[str], size: int) -> None:
        self.files, self.size = list(files), int(size)
        self.shape = (len(self.files), 3, self.size, self.size)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return load_resized(self.files[int(index)], self.size)
        picked = self.files[index] if isinstance(index, slice) else [self.files[int(i)] for i in index]
        if not picked:
            return np.zeros((0, 3, self.size, self.size), np.uint8)
        return np.stack([load_resized(f, self.size) for f in picked])


def is_cached(images) -> bool:
    """Whether `images` is an in-memory or memory-mapped array (cheap to read) rather than files to decode."""
    return isinstance(images, np.ndarray)


class CachedImages(Dataset):
    """Images from a cache array with integer labels; an optional transform applies to uint8 CHW tensors."""

    def __init__(self, images, labels: list[int], transform=None) -> None:
        self.images, self.labels, self.transform = images, torch.as_tensor(labels), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.array(self.images[i]))
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


class CachedBatches(CachedImages):
    """CachedImages read a batch at a time: a DataLoader over it needs collate_fn=whole_batch (03's loader)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch (DataLoader asks for it so): one read of the cache, one transform call when batched."""
        # one fancy-indexed copy out of the memory map (DecodedImages decodes the listed files)
        x = torch.from_numpy(np.asarray(self.images[np.asarray(indices)]))
        if self.transform is not None:
            x = self.transform(x) if getattr(self.transform, "batched", False) else \
                torch.stack([self.transform(image) for image in x])
        return x, self.labels[indices]


def whole_batch(batch):
    """DataLoader's collate_fn for datasets whose __getitems__ already returns the batch's tensors."""
    return batch


def loader_options(workers: int, device: torch.device) -> dict:
    """DataLoader options that keep a device fed: pinned memory on CUDA; persistent, prefetching workers."""
    opts: dict = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        # Workers live across epochs (no re-fork, no re-opened files) and keep 4 batches each in flight.
        opts.update(persistent_workers=True, prefetch_factor=4)
    return opts


class _Plain(Dataset):
    def __init__(self, images) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.images[i]))


def batches(images, batch_size: int, device: torch.device, workers: int = 0) -> Iterator[torch.Tensor]:
    """uint8 batches of `images` in order on `device`: slices of a cache, or decoded by `workers` processes."""
    if is_cached(images) or workers <= 0:
        for start in range(0, len(images), batch_size):
            yield torch.from_numpy(np.array(images[start:start + batch_size])).to(device, non_blocking=True)
        return
    loader = DataLoader(_Plain(images), batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", prefetch_factor=4)
    for x in loader:
        yield x.to(device, non_blocking=True)


def choose(n_images: int, size: int, cache: str, cache_gb: float, root: Path | None = None) -> str:
    """`cache` or `decode`: the path for `n_images` at `size` px under `cache` (auto/on/off) and `cache_gb`."""
    if cache == "off":
        return "decode"
    root = Path(root or paths.cache_dir())
    need = cache_bytes(n_images, size)
    budget = int(cache_gb * 1e9)
    if cache == "on":
        make_room(root, need, max(budget, need))  # the budget still evicts older caches first
        return "cache"
    return "cache" if make_room(root, need, budget) else "decode"


def split_arrays(frame, classes: list[str], split: str, size: int, progress: bool = False, cache: str = "auto",
                 cache_gb: float = 8.0, cache_root: Path | None = None) -> tuple[np.ndarray | DecodedImages, list[int]]:
    """Images and integer labels of one split of split.csv (with its `file` column): cached, or decoded on the fly.

    `cache=auto` caches a split whose cache fits in `cache_gb` (evicting the least recently used caches of
    other runs or sizes), `on` always caches, `off` never does.
    """
    part = frame[frame["split"] == split]
    index = {c: i for i, c in enumerate(classes)}
    labels = [index[c] for c in part["label"]]
    files, shas = part["file"].tolist(), part["sha256"].tolist()
    root = Path(cache_root or paths.cache_dir())
    target = root / cache_key(shas, size)
    path = "cache" if target.exists() and cache != "off" else choose(len(files), size, cache, cache_gb, root)
    if path == "cache":
        return build_cache(files, shas, size, root, progress=progress), labels
    if progress:
        why = "cache=off" if cache == "off" else (f"its cache would need {cache_bytes(len(files), size) / 1e9:.1f} GB, "
                                                  f"more than cache_gb={cache_gb:g}")
        print(f"{split}: {len(files)} images decoded on the fly by the DataLoader's workers ({why})", flush=True)
    return DecodedImages(files, size), labels


def decode_jpeg_batch(files: Sequence[str], size: int, device: torch.device) -> torch.Tensor:
    """JPEG files decoded on a CUDA GPU (torchvision's nvJPEG), shorter side resized, center-cropped: NCHW uint8."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as F
    data = [read_file(str(f)) for f in files]
    images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return torch.stack([F.center_crop(F.resize(img, size, antialias=True), [size, size]) for img in images])
