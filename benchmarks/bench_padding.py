"""efficientnet-pytorch's 'same' padding as the library runs it (a separate F.pad per convolution) against the same
network with the symmetric padding folded into the convolution (helpers/models/padding.py), side by side.

Forward passes without gradients (what feature extraction, the frozen layers' cache, validation, 04 and 05 run),
training steps of the whole network (freeze_early=False), and training steps of what 03's network stage trains by
default (freeze_early: the layers after the frozen ones, on their cached output, at `--freeze-stride`), each way,
in alternating rounds; the outputs and gradients are compared too. Depthwise weight gradients run as oneDNN takes
them on both sides (benchmarks/bench_depthwise.py measures the faster way 03 takes on small maps).

Usage: python benchmarks/bench_padding.py [--arch efficientnet-lite0] [--size 80] [--batch 32] [--rounds 3]
       [--freeze-stride 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from helpers.models import depthwise
from helpers.models.inference import normalizer_for
from helpers.models.padding import library_padding
from helpers.models.zoo import build_model
from helpers.params import schema as params
from helpers.training import frozen
from helpers.training.optim import set_bn_eval


def rate(fn, images: int, seconds: float = 1.5) -> float:
    """Images a second of `fn` (one batch a call) over about `seconds`, after one warm-up call."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += images
    return n / (time.perf_counter() - t0)


def train_step(net: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """A training step of `net` (the model or its part after the frozen layers), BatchNorm statistics frozen."""
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)

    def step() -> None:
        net.train()
        set_bn_eval(model)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def network_arguments(doc: str) -> argparse.ArgumentParser:
    """The options of a benchmark of one network's passes: arch, size, batch, rounds, freeze stride."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--arch", default="efficientnet-lite0")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--freeze-stride", type=int, default=params.defaults("03_train")["freeze_stride"])
    return ap


def main() -> None:
    """Print forward (no gradients) and training img/s of the library's padding and the folded one."""
    args = network_arguments(__doc__).parse_args()
    with depthwise.fast_weight_grad(False):  # the padding alone; bench_depthwise.py measures the weight gradient
        measure(args)


def measure(args: argparse.Namespace) -> None:
    """Both paddings side by side, as main() prints them."""
    torch.manual_seed(0)
    folded = build_model(args.arch, 10, "imagenet")
    library = library_padding(build_model(args.arch, 10, "imagenet"))
    library.load_state_dict(folded.state_dict())  # the same weights, the new head included
    models = {"library": library, "folded": folded}
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8).numpy()
    k = frozen.early_units(folded, args.arch, args.size, args.freeze_stride)
    steps, grads = {}, {}
    for name, m in models.items():
        m.to(memory_format=torch.channels_last)
        early = frozen.early_features(m, args.arch, k, normalizer_for(args.arch), images, torch.device("cpu"))
        rest = frozen.Rest(m, args.arch, k)
        steps[name] = {"train": train_step(m, m, x, y), "rest": train_step(rest, m, early, y)}
        m.eval()  # no dropout: both see the same numbers
        F.cross_entropy(m(x), y).backward()
        grads[name] = [p.grad.clone() for p in m.parameters()]
        m.zero_grad(set_to_none=True)
    with torch.no_grad():
        diff = (models["library"](x) - models["folded"](x)).abs().max().item()
    grad_diff = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                    for a, b in zip(grads["folded"], grads["library"]))
    figures: dict[str, dict[str, list[float]]] = {k: {"forward": [], "train": [], "rest": []} for k in models}
    for r in range(args.rounds):
        for name, m in (list(models.items()) if r % 2 == 0 else list(models.items())[::-1]):  # ABBA order
            m.eval()
            with torch.no_grad():
                figures[name]["forward"].append(rate(lambda: m(x), args.batch))
            for kind in ("train", "rest"):
                figures[name][kind].append(rate(steps[name][kind], args.batch))
    print(f"{args.arch}, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads, channels_last; "
          f"median img/s of {args.rounds} alternating rounds; largest output difference {diff:.2g}, largest "
          f"gradient difference {grad_diff:.2g} of the parameter's largest gradient")
    print(f"{'pass':58s} {'library padding':>16s} {'folded':>10s} {'ratio':>7s}")
    for kind, label in (("forward", "forward, no gradients"),
                        ("train", "training step, whole network (freeze_early=False)"),
                        ("rest", f"training step after the frozen layers (freeze_stride={args.freeze_stride})")):
        lib, fold = (statistics.median(figures[k][kind]) for k in ("library", "folded"))
        print(f"{label:58s} {lib:16.1f} {fold:10.1f} {fold / lib:7.2f}")


if __name__ == "__main__":
    main()
