"""channels_last benchmark: training-step images/s of one model in channels_last beside the default memory format.

The same loop, model (ImageNet weights), batch and synthetic data for both; only the memory format of the network
and its input differs. 03 trains in channels_last on every device; this shows what that buys at each size.
Rounds alternate the two formats so that a busy moment does not favour one; the median round is reported.
On CUDA the step runs under autocast (bf16 where supported), as 03 runs it.

Usage: python benchmarks/bench_channels_last.py [--arch efficientnet-lite0] [--sizes 80,224] [--batch 32]
       [--steps 5] [--rounds 3] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from helpers.models.inference import autocast, normalizer_for
from helpers.models.zoo import build_model
from helpers.params import schema as params
from helpers.utils.devices import device_name, resolve_device

DEFAULTS = params.defaults("03_train")


def step_rate(model: nn.Module, norm: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
              memory_format: torch.memory_format, device: torch.device) -> float:
    """Images/s of `steps` training steps (forward, backward, AdamW) after one warm-up step."""
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    model.train()
    for m in model.modules():  # BatchNorm statistics frozen, as 03 trains by default (freeze_bn=True)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    t0 = 0.0
    for i in range(steps + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with autocast(device):
            loss = nn.functional.cross_entropy(model(norm(x).contiguous(memory_format=memory_format)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(y) / (time.perf_counter() - t0)


def compare(arch: str, size: int, batch: int, steps: int, rounds: int, device: torch.device) -> tuple[float, float]:
    """Median images/s in channels_last and in the default (contiguous) format, rounds alternating."""
    norm = normalizer_for(arch).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    rates: dict[str, list[float]] = {"channels_last": [], "contiguous": []}
    models = {"channels_last": build_model(arch, 10, DEFAULTS["weights"]).to(device, memory_format=torch.channels_last),
              "contiguous": build_model(arch, 10, DEFAULTS["weights"]).to(device)}
    formats = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
    for r in range(rounds):
        order = ["channels_last", "contiguous"] if r % 2 == 0 else ["contiguous", "channels_last"]
        for name in order:
            rates[name].append(step_rate(models[name], norm, x, y, steps, formats[name], device))
    return statistics.median(rates["channels_last"]), statistics.median(rates["contiguous"])


def main() -> None:
    """Print, at each size, channels_last beside the default memory format."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=DEFAULTS["arch"])
    ap.add_argument("--sizes", default="80,224", help="comma-separated input sizes (80: the sample's default)")
    ap.add_argument("--batch", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round (after one warm-up step)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    print(f"{device_name(device)}, {torch.get_num_threads()} threads, torch {torch.__version__}; {args.arch}, "
          f"batch {args.batch}, {args.steps} steps x {args.rounds} rounds (median)")
    print(f"{'size':>5s} {'channels_last img/s':>20s} {'default format img/s':>21s} {'ratio':>6s}")
    for size in (int(s) for s in args.sizes.split(",")):
        cl, plain = compare(args.arch, size, args.batch, args.steps, args.rounds, device)
        print(f"{size:5d} {cl:20.1f} {plain:21.1f} {cl / plain:6.2f}", flush=True)


if __name__ == "__main__":
    main()
