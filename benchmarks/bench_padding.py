"""efficientnet-pytorch's 'same' padding as the library runs it (a separate F.pad per convolution) against the same
network with the symmetric padding folded into the convolution (helpers/models/padding.py), side by side.

Forward passes without gradients (what feature extraction, the frozen layers' cache, validation, 04 and 05 run)
and training steps with gradients, each way, alternating rounds; the outputs are compared too.

Usage: python benchmarks/bench_padding.py [--arch efficientnet-lite0] [--size 80] [--batch 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from helpers.models.padding import _FOLDED
from helpers.models.zoo import build_model


def library_padding(model: torch.nn.Module) -> torch.nn.Module:
    """The model with efficientnet-pytorch's own convolution classes back (the library's padding path)."""
    back = {v: k for k, v in _FOLDED.items()}
    for m in model.modules():
        if type(m) in back:
            m.__class__ = back[type(m)]
    return model


def rate(fn, images: int, seconds: float = 1.5) -> float:
    """Images a second of `fn` (one batch a call) over about `seconds`, after one warm-up call."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += images
    return n / (time.perf_counter() - t0)


def main() -> None:
    """Print forward (no gradients) and training img/s of the library's padding and the folded one."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="efficientnet-lite0")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    folded = build_model(args.arch, 10, "imagenet")
    library = library_padding(build_model(args.arch, 10, "imagenet"))
    library.load_state_dict(folded.state_dict())  # the same weights, the new head included
    models = {"library": library, "folded": folded}
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    for m in models.values():
        m.to(memory_format=torch.channels_last).eval()
    with torch.no_grad():
        diff = (models["library"](x) - models["folded"](x)).abs().max().item()
    figures: dict[str, dict[str, list[float]]] = {k: {"forward": [], "train": []} for k in models}
    for r in range(args.rounds):
        for name, m in (list(models.items()) if r % 2 == 0 else list(models.items())[::-1]):  # ABBA order
            m.eval()
            with torch.no_grad():
                figures[name]["forward"].append(rate(lambda: m(x), args.batch))
            m.train()
            opt = torch.optim.AdamW(m.parameters(), lr=1e-5)

            def step() -> None:
                loss = F.cross_entropy(m(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            figures[name]["train"].append(rate(step, args.batch))
    print(f"{args.arch}, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads, channels_last; "
          f"median img/s of {args.rounds} alternating rounds; largest output difference {diff:.2g}")
    print(f"{'pass':32s} {'library padding':>16s} {'folded':>10s} {'ratio':>7s}")
    for kind, label in (("forward", "forward, no gradients"), ("train", "training step (with gradients)")):
        lib, fold = (statistics.median(figures[k][kind]) for k in ("library", "folded"))
        print(f"{label:32s} {lib:16.1f} {fold:10.1f} {fold / lib:7.2f}")
    print("with gradients the folded model runs the library's own path: the training row's ratio is the noise of "
          "this machine, not a difference")


if __name__ == "__main__":
    main()
