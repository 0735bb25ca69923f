"""Forward passes without gradients on the CPU at several batch sizes, beside the batch helpers.models.batching picks.

The same model (ImageNet weights, channels_last), the same uint8 images, normalised as 04 and 05 do; rounds
alternate the batch sizes so that a busy moment does not favour one; the median round is printed. `--early K` times
only the first K units (what the frozen layers' cache runs, e.g. 6 for freeze_stride=8 at 80 px).

Usage: python benchmarks/bench_inference_batch.py [--arch efficientnet-lite0] [--sizes 80,224] [--batches 2,4,8,16,32,64]
       [--images 256] [--rounds 5] [--early 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from helpers.models.batching import inference_batch, last_level_cache
from helpers.models.inference import normalizer_for
from helpers.models.zoo import build_model
from helpers.training import frozen


def main() -> None:
    """Print img/s per batch size at each size, and the batch chosen for 64 asked."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="efficientnet-lite0")
    ap.add_argument("--sizes", default="80,224")
    ap.add_argument("--batches", default="2,4,8,16,32,64")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--early", type=int, default=0)
    args = ap.parse_args()
    cpu = torch.device("cpu")
    model = build_model(args.arch, 10, "imagenet").to(memory_format=torch.channels_last).eval()
    norm = normalizer_for(args.arch)
    units = frozen._units(model, args.arch)[:args.early] if args.early else [model]
    batches = [int(b) for b in args.batches.split(",")]
    print(f"{args.arch}, {torch.get_num_threads()} threads, last-level cache {last_level_cache() >> 20} MiB, "
          f"{args.images} images, median img/s of {args.rounds} alternating rounds"
          + (f", first {args.early} units only" if args.early else ""))
    for size in (int(s) for s in args.sizes.split(",")):
        images = torch.randint(0, 256, (args.images, 3, size, size), dtype=torch.uint8)
        rates: dict[int, list[float]] = {b: [] for b in batches}
        with torch.no_grad():
            def run(b: int) -> None:
                for start in range(0, len(images), b):
                    h = norm(images[start:start + b]).contiguous(memory_format=torch.channels_last)
                    for unit in units:
                        h = unit(h)
            for b in batches:  # warm-up: oneDNN builds its kernels per shape
                run(b)
            for r in range(args.rounds):
                for b in (batches if r % 2 == 0 else batches[::-1]):
                    t0 = time.perf_counter()
                    run(b)
                    rates[b].append(len(images) / (time.perf_counter() - t0))
        chosen = inference_batch(model, size, 64, cpu)
        row = "  ".join(f"{b}: {statistics.median(v):.0f}" for b, v in rates.items())
        print(f"{size:4d} px  {row}   chosen for 64 asked: {chosen}")


if __name__ == "__main__":
    main()
