"""The 1x1 convolutions of Lite0's network stage at 80 px: oneDNN's convolution against the same arithmetic as a
matrix product (F.linear over the channels-last maps), forward and backward, side by side per shape.

Usage: python benchmarks/bench_pointwise.py [--batch 32] [--repeats 30]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

# (in channels, out channels, map side) of the 1x1 convolutions after the frozen layers (freeze_stride=8, 80 px)
SHAPES = [(40, 240, 10), (240, 80, 5), (80, 480, 5), (480, 80, 5), (480, 112, 5), (112, 672, 5), (672, 112, 5),
          (672, 192, 3), (192, 1152, 3), (1152, 192, 3), (1152, 320, 3), (320, 1280, 3)]


def as_conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The convolution as the network runs it."""
    return F.conv2d(x, w[:, :, None, None])


def as_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The same numbers as one matrix product over the channels-last maps."""
    n, c, h, width = x.shape
    return F.linear(x.permute(0, 2, 3, 1).reshape(-1, c), w).view(n, h, width, -1).permute(0, 3, 1, 2)


def timed(fn, x: torch.Tensor, w: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    """Milliseconds of one forward and backward (input and weight gradients)."""
    for _ in range(3):
        fn(x, w).backward(grad)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(x, w).backward(grad)
    return (time.perf_counter() - t0) / repeats * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    total = [0.0, 0.0]
    print(f"{'in':>5s} {'out':>5s} {'map':>4s} {'conv ms':>9s} {'matmul ms':>10s}")
    for cin, cout, side in SHAPES:
        x = torch.randn(args.batch, cin, side, side).contiguous(memory_format=torch.channels_last).requires_grad_()
        w = torch.randn(cout, cin, requires_grad=True)
        grad = torch.randn(args.batch, cout, side, side).contiguous(memory_format=torch.channels_last)
        a, b = timed(as_conv, x, w, grad, args.repeats), timed(as_matmul, x, w, grad, args.repeats)
        total[0] += a
        total[1] += b
        print(f"{cin:5d} {cout:5d} {side:4d} {a:9.3f} {b:10.3f}")
    print(f"all shapes: conv {total[0]:.1f} ms, matmul {total[1]:.1f} ms (matmul / conv {total[1] / total[0]:.2f})")


if __name__ == "__main__":
    main()
