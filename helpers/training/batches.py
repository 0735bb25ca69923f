"""What the training loop iterates: train-time augmentation and the training DataLoader with its workers."""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset

from helpers.data import imagecache
from helpers.data.imagecache import CachedBatches
from helpers.training import balance, distributed
from helpers.training.config import TrainConfig
from helpers.training.randomness import flip_draws

# More decoding processes than this only add start-up time and memory: at 8 the loader already outruns one GPU's
# training of the default network at the default size.
MAX_WORKERS = 8
# augment=crop keeps at least 70 % of the image's area: below that, small objects (a Fashion-MNIST sleeve, a skin
# lesion's border) are often cut away and the label stops describing the crop.
CROP_SCALE = (0.7, 1.0)


class BatchFlip:
    """Mirror each image of a uint8 NCHW batch with p = 0.5: RandomHorizontalFlip's draw, once per batch."""

    batched = True  # CachedBatches hands it the whole batch

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # one CHW image
            return x.flip(-1) if flip_draws(1) else x
        flip = flip_draws(len(x))
        x[flip] = x[flip].flip(-1)
        return x


def make_transform(augment: str, size: int):
    """Train-time augmentation on uint8 tensors (a batch for flip, each CHW image for crop), or None."""
    from torchvision.transforms import v2
    if augment == "flip":
        return BatchFlip()
    if augment == "crop":
        return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomResizedCrop(size, scale=CROP_SCALE, antialias=True)])
    return None


def loader_workers(cfg: TrainConfig, device: torch.device) -> int:
    """DataLoader workers: as given, or (workers=-1) none on CPU, where the cores train, and cores-1 on a GPU."""
    if cfg.workers >= 0:
        return cfg.workers
    # N data-parallel processes on one machine share its cores.
    cores = (os.cpu_count() or 1) // distributed.local_world_size()
    return 0 if device.type == "cpu" else min(MAX_WORKERS, max(0, cores - 1))


def train_loader(cfg: TrainConfig, images, labels: list[int], device: torch.device, generator: torch.Generator,
                 seed: int, dataset: Dataset | None = None) -> DataLoader:
    """The training DataLoader: this process's share through a seeded DistributedSampler (one replica alone).

    `dataset` replaces the images (the frozen early units' cached output, in memory: read without workers).
    """
    workers = 0 if dataset is not None else loader_workers(cfg, device)
    if dataset is None:
        dataset = CachedBatches(images, labels, make_transform(cfg.augment, cfg.image_size))
    if cfg.sampler == "balanced":  # class-balanced draws, this rank's share of the same global sequence
        sampler = balance.BalancedSampler(labels, distributed.world_size(), distributed.rank(), seed)
    else:
        sampler = distributed.sampler(dataset, seed)
    # Each batch is read in one call (the datasets' __getitems__), not image by image and stacked.
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=imagecache.whole_batch,
                      generator=generator, **imagecache.loader_options(workers, device))
