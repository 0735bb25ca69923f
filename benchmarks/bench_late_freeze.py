"""What the late freeze buys a step: one network-stage training step after the frozen layers up to stride 8 (what
the stage trains before the switch, the baseline) against one after the layers up to stride 16 (after it), side by
side on the cached maps' shapes, with 03's optimiser, loss and frozen BatchNorm.

Usage: python benchmarks/bench_late_freeze.py [--arch efficientnet-lite0] [--size 80] [--batch 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from helpers.models.zoo import build_model
from helpers.params import schema
from helpers.training import frozen
from helpers.training.config import TrainConfig
from helpers.training.optim import make_optimizer, set_bn_eval
from helpers.utils import allocator


def step_ms(arch: str, size: int, batch: int, stride: int, rounds: int, steps: int = 20) -> tuple[int, list[float]]:
    """Frozen units up to `stride`, and milliseconds of one training step of the rest, per round."""
    torch.manual_seed(0)
    model = build_model(arch, 10, "imagenet").to(memory_format=torch.channels_last)
    k = frozen.early_units(model, arch, size, stride)
    frozen.freeze(model, arch, k)
    rest = frozen.Rest(model, arch, k)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    maps = frozen.advance(model, arch, 0, k, x, torch.device("cpu"), batch).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    cfg = TrainConfig(arch=arch, classes=[str(i) for i in range(10)], image_size=size, batch_size=batch)
    optimizer = make_optimizer(model, cfg, False, float(schema.defaults("03_train")["lr"]))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def step() -> None:
        rest.train()
        set_bn_eval(model)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(rest(maps), y).backward()
        optimizer.step()
    for _ in range(5):
        step()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps * 1e3)
    return k, times


def main() -> None:
    """Print both steps and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="efficientnet-lite0")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    allocator.keep_large_blocks()
    base = schema.defaults("03_train")["freeze_stride"]
    rows = [(s, *step_ms(args.arch, args.size, args.batch, s, args.rounds)) for s in (base, 2 * base)]
    print(f"{args.arch} at {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads; "
          "ms a training step of the layers after the frozen ones (median of the rounds)")
    for stride, k, times in rows:
        role = "before the switch (baseline)" if stride == base else "after the late freeze's switch"
        print(f"  frozen up to stride {stride:>2} ({k:>2} units), {role:<30} {statistics.median(times):6.1f} ms  "
              f"rounds {', '.join(f'{t:.1f}' for t in times)}")
    ratio = statistics.median(rows[1][2]) / statistics.median(rows[0][2])
    print(f"  late step / baseline step: {ratio:.2f}")


if __name__ == "__main__":
    main()
