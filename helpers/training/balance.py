"""Imbalanced classes in training: inverse-frequency loss weights (`class_weights=balanced`) and class-balanced
sampling (`sampler=balanced`), the latter split across data-parallel ranks like a DistributedSampler."""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def class_weights(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights n / (K · n_c), scikit-learn's "balanced" (a class without images gets 0)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    weights = np.divide(len(labels), n_classes * counts, out=np.zeros(n_classes), where=counts > 0)
    return torch.as_tensor(weights, dtype=torch.float32)


def sample_weights(labels: Sequence[int]) -> torch.Tensor:
    """Each image's chance of being drawn: 1 / its class's count, so every class is drawn equally often."""
    labels = np.asarray(labels, dtype=int)
    counts = np.bincount(labels)
    return torch.as_tensor(1.0 / counts[labels], dtype=torch.float64)


def balanced_draw(labels: Sequence[int], n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` image indices drawn with replacement, every class equally likely."""
    return torch.multinomial(sample_weights(labels), n, replacement=True, generator=generator)


def epoch_order(labels: Sequence[int], sampler: str, generator: torch.Generator) -> torch.Tensor:
    """The head stage's order of one epoch: a permutation (`shuffle`) or a class-balanced draw (`balanced`)."""
    if sampler == "balanced":
        return balanced_draw(labels, len(labels), generator)
    return torch.randperm(len(labels), generator=generator)


class BalancedSampler(Sampler[int]):
    """Class-balanced draws with replacement, one epoch as long as the dataset, this rank's share of them.

    Every rank draws the same global sequence (seeded by seed + epoch) and takes every `num_replicas`-th index
    from its rank on, as DistributedSampler does, so 1 and N processes train on the same global batches.
    """

    def __init__(self, labels: Sequence[int], num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        self.labels = list(int(y) for y in labels)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(self.labels) / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """A new draw every epoch, the same on every rank and on resume."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        drawn = balanced_draw(self.labels, self.total_size, g).tolist()
        return iter(drawn[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
