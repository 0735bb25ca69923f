"""Seeds and random states: every cycle draws from its own seed, and a resumed cycle draws the same numbers."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def flip_draws(n: int) -> torch.Tensor:
    """Which of `n` images to mirror (p = 0.5): RandomHorizontalFlip's draw, from torch's global generator.

    One call for a batch draws the same numbers as one call per image, so batched and per-image paths agree."""
    return torch.rand(n) < 0.5


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed python, numpy and torch; return the generator that orders the batches.

    deterministic=True also makes CUDA deterministic: cuDNN autotuning off, deterministic cuDNN kernels and the
    cuBLAS workspace setting that deterministic matrix products need (see README for what it costs).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this when its handle is created; setting it before the first CUDA matmul is enough.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed of its own for each (cycle seed, epoch, process rank): the same on a resume, distinct between ranks."""
    return (int(seed) * 1_000_003 + int(epoch) * 10_007 + int(rank) * 101 + 1) % 2**63


def seed_rank_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed this process's global streams (python, numpy, torch) for one data-parallel epoch of the network.

    Without it every process draws rank 0's numbers: the same flips and crops of different images, the same
    dropout masks. Seeded per epoch, a resumed epoch draws what the interrupted one drew.
    """
    value = rank_seed(seed, epoch, rank)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def rank_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The generator a data-parallel process's DataLoader seeds its workers from."""
    g = torch.Generator()
    g.manual_seed(rank_seed(seed, epoch, rank) ^ 0x5DEECE66D)
    return g


def rng_state() -> dict:
    """Torch RNG states, so a resumed cycle draws the same numbers."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
