"""lr=auto: a learning-rate range test (Smith 2015, fastai's lr_find) before a stage trains.

The rate grows exponentially from START to END over at most STEPS optimiser steps on the stage's own batches,
loss function and optimiser; the test stops when the smoothed loss passes DIVERGE times its minimum. The
suggestion is fastai's "valley": the point two thirds down the longest stretch over which the smoothed loss keeps
falling. The weights, the optimiser and every random generator the cycle uses are as they were before the test.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from helpers.models.zoo import head_of
from helpers.training import balance, distributed
from helpers.training.config import TrainConfig

START, END, STEPS = 1e-7, 10.0, 200
SMOOTHING = 0.98  # exponential moving average of the loss, bias-corrected
DIVERGE = 4.0
RULE = "valley (fastai)"


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's valley rule: the longest run of falling loss, then 2/3 of the way down it (towards its end)."""
    n = len(losses)
    if n < 3:
        return float(lrs[0]) if n else START
    run = [1] * n  # length of the longest falling subsequence ending at each step
    best_start, best_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[i] > run[best_end]:
            best_end = i
            best_start = best_end - run[best_end]
    third = (best_end - best_start) / 3
    return float(lrs[min(n - 1, best_start + int(third) + int(third / 2))])


def range_test(step: Callable[[float], float], steps: int = STEPS, start: float = START,
               end: float = END) -> dict:
    """Run `step(lr)` (one optimiser step at rate lr, returning its loss) on an exponential ramp; the curve and pick."""
    lrs, losses, smoothed = [], [], []
    avg, lowest = 0.0, math.inf
    for i in range(steps):
        lr = start * (end / start) ** (i / max(1, steps - 1))
        loss = step(lr)
        if not math.isfinite(loss):
            break
        avg = SMOOTHING * avg + (1 - SMOOTHING) * loss
        value = avg / (1 - SMOOTHING ** (i + 1))
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(value)
        lowest = min(lowest, value)
        if i > 10 and value > DIVERGE * lowest:
            break
    suggestion = valley(lrs, smoothed)
    return {"lrs": lrs, "losses": losses, "smoothed": smoothed, "suggestion": suggestion, "steps": len(lrs),
            "rule": RULE}


def _set_rates(optimizer: torch.optim.Optimizer, base: list[float], lr: float, reference: float) -> None:
    """Every parameter group at `lr` times its ratio to the head's rate (the backbone keeps backbone_lr_scale)."""
    for group, b in zip(optimizer.param_groups, base):
        group["lr"] = lr * b / reference


def head_test(model: nn.Module, cfg: TrainConfig, feats: torch.Tensor, labels: torch.Tensor, make_optimizer,
              criterion, seed: int, device: torch.device, steps: int = STEPS, batch_size: int | None = None) -> dict:
    """The range test on the head stage's cached features, in the head stage's batches (default cfg.batch_size);
    the head's weights are restored after it."""
    from helpers.training.loop import HEAD_DROPOUT
    head = head_of(model, cfg.arch)
    saved = copy.deepcopy(head.state_dict())
    optimizer = make_optimizer()
    base = [g["lr"] for g in optimizer.param_groups]
    generator = torch.Generator().manual_seed(seed)
    batches = _cycled(lambda: balance.epoch_order(labels, cfg.sampler, generator), batch_size or cfg.batch_size)

    def step(lr: float) -> float:
        _set_rates(optimizer, base, lr, base[0])
        idx = next(batches)
        x = nn.functional.dropout(feats[idx.to(feats.device)], p=HEAD_DROPOUT, training=True)
        loss = criterion(head(x), labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()
    head.train()
    rng_state = torch.get_rng_state()  # dropout draws from it: the real epochs see what they would have seen
    try:
        out = range_test(step, steps)
    finally:
        head.load_state_dict(saved)
        torch.set_rng_state(rng_state)
    out["suggestion"] = distributed.broadcast_floats([out["suggestion"]], device)[0]
    return out


def network_test(net: nn.Module, forward: nn.Module, loader, make_optimizer, step_fn, steps: int = STEPS) -> dict:
    """The range test on the network stage's batches (`step_fn(forward, x, y, optimizer)` → loss); weights restored.

    Under data parallelism every rank averages each step's loss, so every rank computes the same suggestion.
    """
    saved = copy.deepcopy(net.state_dict())
    optimizer = make_optimizer()
    base = [g["lr"] for g in optimizer.param_groups]
    rng_state = torch.get_rng_state()
    batches = _loader_batches(loader)

    def step(lr: float) -> float:
        _set_rates(optimizer, base, lr, base[0])
        x, y = next(batches)
        loss = step_fn(forward, x, y, optimizer)
        return distributed.all_reduce_sums([loss], torch.device("cpu"))[0] / distributed.world_size()
    try:
        out = range_test(step, steps)
    finally:
        net.load_state_dict(saved)
        torch.set_rng_state(rng_state)  # augmentation draws of the real epochs stay as without the test
    return out


def _cycled(order: Callable[[], torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of indices from successive epoch orders, endlessly."""
    while True:
        idx = order()
        for s in range(0, len(idx), batch_size):
            yield idx[s:s + batch_size]


def _loader_batches(loader) -> Iterator:
    """The loader's batches, epoch after epoch (set_epoch keeps every rank's order in step)."""
    epoch = 10_000  # an epoch number training never reaches: the test's order differs from every real epoch's
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def suggestion_note(tests: dict) -> str:
    """The ledger's record of the range tests: the suggested rate per stage."""
    return "; ".join(f"{stage} {t['suggestion']:.3g}" for stage, t in tests.items())


def as_array(tests: dict) -> dict:
    """The tests as plain lists (what a checkpoint's weights-only pickle and the JSON figure data accept)."""
    return {s: {k: (list(map(float, v)) if isinstance(v, (list, np.ndarray)) else v) for k, v in t.items()}
            for s, t in tests.items()}
