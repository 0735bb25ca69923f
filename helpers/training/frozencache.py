"""The frozen early layers' output of a split, kept on disk by what it is a function of, so it is computed once.

03's head stage needs the output of the frozen early units (`freeze_early`) for the training images, their
mirrors and validation, and the head's input (the pooled features of the whole backbone); 02's label search runs
the same pretrained network over the same images a minute before. An entry is keyed by the images' bytes, the
arch, the number of frozen units, those units' weights and statistics, the device type and the mirroring, so a
changed image, split, size, `freeze_stride` or weights is another entry; the pooled features it may hold count
only for the backbone whose digest it records (a continued cycle has trained the rest). Entries live in
`data/cache/frozen/`, each written atomically; beyond MAX_BYTES the least recently used go.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers.data import imagecache
from helpers.models import features as feature_store
from helpers.models.inference import normalizer_for
from helpers.models.zoo import backbone_blocks, head_of
from helpers.training import frozen
from helpers.utils import files, paths

FROZEN_VERSION = "v1"  # bump when what an entry holds, or how the frozen units run, changes
MAX_BYTES = 2 << 30  # the folder's budget; the least recently used entries beyond it are removed
MAX_ENTRY_BYTES = MAX_BYTES // 4  # a larger output (a large dataset at a large size) is not kept


def folder(root: Path | None = None) -> Path:
    """Where the entries live."""
    return Path(root or paths.cache_dir()) / "frozen"


def _update(digest, tensors) -> None:
    """Feed every tensor's bytes (any dtype) into `digest`."""
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)


def backbone_digest(model: nn.Module, arch: str) -> str:
    """A digest of the backbone's weights and statistics (everything but the classifier)."""
    head = {id(t) for t in head_of(model, arch).state_dict(keep_vars=True).values()}
    digest = hashlib.blake2b(digest_size=16)
    _update(digest, (t for t in model.state_dict(keep_vars=True).values() if id(t) not in head))
    return digest.hexdigest()


def entry_key(model: nn.Module, arch: str, k: int, images: np.ndarray, device: torch.device,
              flip: bool = False) -> str:
    """The name of the entry of the first `k` units' output over `images` (mirrored with `flip`)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{FROZEN_VERSION}|{arch}|{k}|{device.type}|{int(flip)}|{tuple(images.shape)}".encode())
    digest.update(np.ascontiguousarray(images).data)
    for unit in backbone_blocks(model, arch)[:k]:
        _update(digest, unit.state_dict().values())
    return digest.hexdigest()


def load(model: nn.Module, arch: str, k: int, images, device: torch.device,
         flip: bool = False, root: Path | None = None) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The kept output of the first `k` units (and the pooled features when they fit this backbone), or None."""
    if not isinstance(images, np.ndarray) or not len(images):
        return None
    path = folder(root) / f"{entry_key(model, arch, k, images, device, flip)}.npz"
    try:
        with np.load(path) as entry:
            early = torch.from_numpy(entry["early"])
            pooled = torch.from_numpy(entry["pooled"]) if "pooled" in entry and \
                str(entry["backbone"]) == backbone_digest(model, arch) else None
        os.utime(path)  # recently used: the last to be removed
    except feature_store.DAMAGED:
        return None  # absent or damaged: computed again
    if len(early) != len(images) or (pooled is not None and len(pooled) != len(images)):
        return None
    return early, pooled


def save(model: nn.Module, arch: str, k: int, images, device: torch.device, early: torch.Tensor,
         flip: bool = False, pooled: torch.Tensor | None = None, root: Path | None = None) -> Path | None:
    """Keep the first `k` units' output over `images` (and the backbone's pooled features), atomically."""
    if not isinstance(images, np.ndarray) or not len(images) or early.numel() * 4 > MAX_ENTRY_BYTES:
        return None
    target = folder(root) / f"{entry_key(model, arch, k, images, device, flip)}.npz"
    arrays = {"early": early.float().cpu().numpy()}
    if pooled is not None:
        arrays.update(pooled=pooled.float().cpu().numpy(), backbone=np.asarray(backbone_digest(model, arch)))
    try:
        with files.atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError:
        return None  # a full disk costs the next run this computation, never this run
    _trim(folder(root), keep=target)
    return target


def _trim(where: Path, keep: Path) -> None:
    """Remove the least recently used entries while the folder holds more than MAX_BYTES."""
    entries = sorted(where.glob("*.npz"), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in entries)
    for path in entries:
        if total <= MAX_BYTES:
            break
        if path != keep:
            total -= path.stat().st_size
            path.unlink(missing_ok=True)


def split_features(frame, arch: str, size: int, device: torch.device, freeze_stride: int,
                   root: Path | None = None) -> np.ndarray | None:
    """Pooled ImageNet features of every row of split.csv's frame, split by split through the frozen units.

    For 02: the same numbers as one pass of the network, and the training and validation splits' early output
    is kept for 03 (its `freeze_stride`, the default unless told). None, and nothing computed, where a split is
    too large to keep, would be decoded on the fly, or finds no room on the disk for its image cache.
    """
    model = feature_store.pretrained_backbone(arch, device)
    k = frozen.early_units(model, arch, size, freeze_stride)
    names = [s for s in ("train", "val", "test") if (frame["split"] == s).any()]
    if k == 0 or len(names) < frame["split"].nunique():
        return None
    nbytes = frozen.cache_bytes(model, arch, k, size, len(frame))
    if nbytes > MAX_ENTRY_BYTES or not frozen.fits(nbytes):
        return None
    classes = sorted(frame["label"].unique())
    try:
        arrays = {s: imagecache.split_arrays(frame, classes, s, size, cache_root=root)[0] for s in names}
    except (imagecache.ImageCacheError, OSError):
        return None  # no room for the image caches: 02 decodes its files in one pass, as without them
    if not all(isinstance(a, np.ndarray) for a in arrays.values()):
        return None
    norm, rest = normalizer_for(arch).to(device), frozen.Rest(model, arch, k)
    out = np.zeros((len(frame), 0), np.float32)
    for name in names:
        early = frozen.early_features(model, arch, k, norm, arrays[name], device)
        pooled = frozen.pooled_features(rest, early, device)
        if name != "test":  # what 03 trains and validates on
            save(model, arch, k, arrays[name], device, early, pooled=pooled, root=root)
        rows = np.flatnonzero((frame["split"] == name).to_numpy())
        if not out.shape[1]:
            out = np.zeros((len(frame), pooled.shape[1]), np.float32)
        out[rows] = pooled.cpu().numpy()
    feature_store.write_shard(feature_store.store_dir(arch, size, root=root), frame["sha256"].tolist(), out)
    return out
