"""Pooled backbone features of the pretrained network, cached on disk per (image content hash, arch, size).

02's label-issue search computes them for every image, and a rerun (or another run on the same images) computes
only the images it has not seen. When it computes, it goes split by split through 03's frozen early layers
(helpers/training/frozencache.py), so 03 finds their output, and these features as its head's input, already made. A
store is a folder
`data/cache/features/<arch>-<size>px-<weights>-<version>/` of shards (`.npz`: sha256 and features), each written
atomically, so a kill never leaves half a shard and two writers at worst compute the same rows twice.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from helpers.data import imagecache
from helpers.models import zoo
from helpers.models.inference import extract_features, normalizer_for
from helpers.utils import files, paths

# What np.load of a damaged or cut-off .npz raises (a truncated zip: BadZipFile; foreign bytes: ValueError).
DAMAGED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
FEATURES_VERSION = "v1"  # bump when the pooling or the preprocessing changes


def store_dir(arch: str, size: int, weights: str = "imagenet", root: Path | None = None) -> Path:
    """The folder of one (arch, size, weights) feature store."""
    if weights != "imagenet":
        raise ValueError(f"weights={weights!r}: only the ImageNet weights' features are cached.")
    base = Path(root or paths.cache_dir()) / "features"
    return base / f"{arch}-{int(size)}px-{weights}-{FEATURES_VERSION}-{imagecache.CACHE_VERSION}"


def read_store(folder: Path) -> dict[str, np.ndarray]:
    """Every cached row of a store: sha256 → feature vector (an unreadable shard is skipped and recomputed)."""
    rows: dict[str, np.ndarray] = {}
    for shard in sorted(Path(folder).glob("*.npz")) if Path(folder).exists() else []:
        try:
            with np.load(shard) as data:
                rows.update(zip(data["sha256"].tolist(), data["features"]))
        except DAMAGED:
            continue  # a damaged shard only costs its rows' recomputation
    return rows


def write_shard(folder: Path, shas: Sequence[str], feats: np.ndarray) -> Path:
    """Add one shard of rows to a store, atomically and durably."""
    name = hashlib.sha256("\n".join(shas).encode()).hexdigest()[:20] + ".npz"
    target = Path(folder) / name
    with files.atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, sha256=np.asarray(list(shas)), features=np.asarray(feats, dtype=np.float32))
    return target


def pretrained_backbone(arch: str, device: torch.device) -> torch.nn.Module:
    """`arch` with its ImageNet weights on `device`, in the memory format training uses."""
    model = zoo.build_model(arch, 1000, "imagenet")
    return model.to(device, memory_format=torch.channels_last).eval()


def cached_features(image_files: Sequence[str], shas: Sequence[str], arch: str, size: int, device: torch.device,
                    batch_size: int = 64, workers: int = 0, root: Path | None = None,
                    model: torch.nn.Module | None = None, progress: bool = False) -> np.ndarray:
    """(n, d) float32 pooled ImageNet features of the images, in order: read from the store, the rest computed.

    `model` may be given (the pretrained network already built); otherwise it is built only when some image
    is missing from the store.
    """
    folder = store_dir(arch, size, "imagenet", root)
    known = read_store(folder)
    missing = [i for i, s in enumerate(shas) if s not in known]
    if missing:
        first: dict[str, int] = {}
        for i in missing:
            first.setdefault(shas[i], i)  # equal files are computed once
        todo = list(first)
        images = imagecache.DecodedImages([image_files[first[s]] for s in todo], size)
        net = model if model is not None else pretrained_backbone(arch, device)
        if progress:
            print(f"pooled {arch} features at {size}px: {len(todo)} images to compute, "
                  f"{len(shas) - len(missing)} cached", flush=True)
        feats = extract_features(net, arch, normalizer_for(arch).to(device), images, device, batch_size,
                                 workers).cpu().numpy()
        write_shard(folder, todo, feats)
        known.update(zip(todo, feats))
    if not len(shas):
        return np.zeros((0, 0), np.float32)
    return np.stack([known[s] for s in shas]).astype(np.float32, copy=False)


def lookup(shas: Sequence[str], arch: str, size: int, root: Path | None = None) -> np.ndarray | None:
    """The cached features of every image in order, or None when any one is missing (nothing is computed)."""
    known = read_store(store_dir(arch, size, "imagenet", root))
    if not shas or any(s not in known for s in shas):
        return None
    return np.stack([known[s] for s in shas]).astype(np.float32, copy=False)


def store_bytes(arch: str, size: int, root: Path | None = None) -> int:
    """Disk size of one store (for the user who wonders what data/cache holds)."""
    folder = store_dir(arch, size, "imagenet", root)
    return sum(os.path.getsize(p) for p in folder.glob("*.npz")) if folder.exists() else 0
