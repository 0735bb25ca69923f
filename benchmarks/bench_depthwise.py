"""oneDNN's depthwise weight gradient against helpers/models/depthwise.py's (a depthwise forward), side by side.

First every depthwise convolution of the network at `--size` whose kernel is not 3x3, as it trains (batch, channels,
map, kernel, stride): the weight gradient each way in ms, and which way 03 takes; then training steps of what 03's
network stage trains (the layers after the frozen ones, at `--freeze-stride`) and of the whole network, with the
fast way off and on, in alternating rounds; the weight gradients of both ways are compared too.

Usage: python benchmarks/bench_depthwise.py [--arch efficientnet-lite0] [--size 80] [--batch 32] [--rounds 3]
       [--freeze-stride 8 (03's default)]
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from bench_padding import network_arguments, rate, train_step

from helpers.models import depthwise
from helpers.models.inference import normalizer_for
from helpers.models.zoo import build_model
from helpers.training import frozen


def ms(fn, seconds: float = 0.5) -> float:
    """Milliseconds a call of `fn`, over about `seconds` after one warm-up call."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n * 1000


def depthwise_calls(model: torch.nn.Module, x: torch.Tensor) -> list[tuple]:
    """(input shape, conv) of every depthwise convolution with a kernel other than 3x3 in a forward of `x`."""
    seen: dict[tuple, tuple] = {}

    def record(conv: torch.nn.Conv2d, inputs: tuple) -> None:
        shape = tuple(inputs[0].shape)
        seen.setdefault((shape, tuple(conv.stride), tuple(conv.weight.shape)), (shape, conv))
    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1
             and tuple(m.kernel_size) != depthwise.ONEDNN_DEPTHWISE_KERNEL]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return list(seen.values())


def main() -> None:
    """Print per-shape weight-gradient times and training img/s with oneDNN's way and the fast one."""
    args = network_arguments(__doc__).parse_args()
    torch.manual_seed(0)
    model = build_model(args.arch, 10, "imagenet").to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    print(f"{args.arch}, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads; depthwise "
          f"convolutions other than 3x3 (weight gradient, ms a call):")
    print(f"{'input (N, C, H, W)':24s} {'kernel':>7s} {'stride':>7s} {'oneDNN':>8s} {'fast':>8s} {'ratio':>6s} "
          f"{'03 takes':>9s} {'difference':>11s}")
    for shape, conv in depthwise_calls(model, x):
        inp = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        pad = tuple(k // 2 for k in conv.kernel_size)
        out = F.conv2d(inp, conv.weight, None, conv.stride, pad, 1, conv.groups)
        grad = torch.randn_like(out)
        w = conv.weight.detach()

        def onednn() -> torch.Tensor:
            return torch.ops.aten.convolution_backward(grad, inp, w, None, list(conv.stride), list(pad), [1, 1],
                                                       False, [0, 0], conv.groups, [False, True, False])[1]

        def fast() -> torch.Tensor:
            return depthwise.weight_grad(grad, inp, tuple(conv.kernel_size), conv.stride, pad)
        a, b = onednn(), fast()
        diff = float((a - b).abs().max() / a.abs().max())
        takes = depthwise.applies(inp, conv.weight, conv.stride, pad, (1, 1), conv.groups)
        t_one, t_fast = ms(onednn), ms(fast)
        print(f"{str(shape):24s} {conv.kernel_size[0]:>4d}x{conv.kernel_size[1]:<2d} {conv.stride[0]:>7d} "
              f"{t_one:8.2f} {t_fast:8.2f} {t_one / t_fast:6.2f} {'fast' if takes else 'oneDNN':>9s} {diff:11.1e}")
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8).numpy()
    k = frozen.early_units(model, args.arch, args.size, args.freeze_stride)
    early = frozen.early_features(model, args.arch, k, normalizer_for(args.arch), images, torch.device("cpu"))
    rest = frozen.Rest(model, args.arch, k)
    steps = {"rest": train_step(rest, model, early, y), "train": train_step(model, model, x, y)}
    figures: dict[bool, dict[str, list[float]]] = {on: {"rest": [], "train": []} for on in (False, True)}
    for r in range(args.rounds):
        for on in ((False, True) if r % 2 == 0 else (True, False)):  # ABBA order
            with depthwise.fast_weight_grad(on):
                for kind, step in steps.items():
                    figures[on][kind].append(rate(step, args.batch))
    print(f"\ntraining img/s, median of {args.rounds} alternating rounds")
    print(f"{'pass':58s} {'oneDNN':>8s} {'fast':>8s} {'ratio':>7s}")
    for kind, label in (("rest", f"training step after the frozen layers (freeze_stride={args.freeze_stride})"),
                        ("train", "training step, whole network (freeze_early=False)")):
        off, on = (statistics.median(figures[v][kind]) for v in (False, True))
        print(f"{label:58s} {off:8.1f} {on:8.1f} {on / off:7.2f}")


if __name__ == "__main__":
    main()
