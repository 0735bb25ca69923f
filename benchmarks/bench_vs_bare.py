"""The default run against the bare loop a user would write by hand, side by side, seed by seed.

Ours: `python -m helpers.pipeline --from 02_data -p seed S` (02 + 03 + 04 as `make run` runs them, papermill
kernels included), wall time and test accuracy. The bare loop: one plain script on the same split (02's
split.csv), model (EfficientNet-Lite0), ImageNet weights and input size, written the way a careful user writes it
(BARE_RECIPE below: images decoded once, discriminative learning rates, BatchNorm statistics frozen, the best
epoch by validation kept); its wall time includes its own imports and decoding, as ours does.
Each runs in a fresh process under a temporary STUDY_HOME, one after the other.

Usage: python benchmarks/bench_vs_bare.py [--seeds 1 2 3] [--epochs 4] [--lr 1e-3] [-p NAME VALUE]...
       (-p passes a parameter to our run, e.g. -p epochs 3, to compare a candidate recipe)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


BARE_RECIPE = ("decoded once into memory (PIL, resized to the input size), EfficientNet-Lite0 ImageNet weights "
               "with {padding}, "
               "BatchNorm statistics frozen, AdamW {body:g} body / {head:g} head (weight decay {wd:g}), batch {batch}, "
               "{epochs} epochs, no augmentation, the epoch with the best validation accuracy kept for test")


PADDING = {"library": "efficientnet-pytorch's own 'same' padding (an F.pad before each convolution)",
           "folded": "the kit's padding folded into the convolutions (helpers/models/padding.py)"}


def bare_loop(split_csv: Path, data_root: Path, size: int, seed: int, epochs: int, lr: float, batch: int,
              body_lr: float = 3e-4, weight_decay: float = 1e-4, padding: str = "library") -> dict:
    """The strongest hand-written loop a careful user writes (BARE_RECIPE); returns its test accuracy."""
    import copy

    import numpy as np
    import pandas as pd
    import torch
    from PIL import Image

    from helpers.models.padding import library_padding
    from helpers.models.zoo import arch_spec, build_model

    torch.manual_seed(seed)
    frame = pd.read_csv(split_csv)
    classes = sorted(frame["label"].unique())
    spec = arch_spec("efficientnet-lite0")
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std).view(1, 3, 1, 1) * 255

    def tensors(part: str) -> tuple[torch.Tensor, torch.Tensor]:
        rows = frame[frame["split"] == part]
        arrays = [np.asarray(Image.open(data_root / p).convert("RGB").resize((size, size), Image.BILINEAR))
                  for p in rows["path"]]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor([classes.index(c) for c in rows["label"]])

    def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model((x[i:i + 64].float() - mean) / std).argmax(1) for i in range(0, len(x), 64)])
        return float((pred == y).float().mean())

    (xt, yt), (xv, yv), (xs, ys) = tensors("train"), tensors("val"), tensors("test")
    model = build_model("efficientnet-lite0", len(classes), "imagenet")
    if padding == "library":  # the network as the library ships it, as a user's own script builds it
        library_padding(model)
    head = list(model._fc.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith("_fc.")]
    opt = torch.optim.AdamW([{"params": body, "lr": body_lr}, {"params": head, "lr": lr}], weight_decay=weight_decay)
    best, best_val = None, -1.0
    for _ in range(epochs):
        model.train()
        model.apply(lambda m: m.eval() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) else None)
        order = torch.randperm(len(xt))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model((xt[idx].float() - mean) / std), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = accuracy(model, xv, yv)
        if val > best_val:
            best, best_val = copy.deepcopy(model.state_dict()), val
    model.load_state_dict(best)
    return {"test_accuracy": accuracy(model, xs, ys), "val_accuracy": best_val, "n_test": len(ys)}


def ours(seed: int, home: Path, extra: list[list[str]]) -> dict:
    """02 + 03 + 04 of the default run through the runner: wall seconds, per-notebook seconds, test accuracy."""
    cmd = [sys.executable, "-m", "helpers.pipeline", "--run-id", f"seed{seed}", "--from", "02_data",
           "-p", "seed", str(seed)] + [a for p in extra for a in ("-p", *p)]
    env = {**os.environ, "STUDY_HOME": str(home), "STUDY_PROGRESS": "off"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"our run failed (seed {seed}):\n{done.stderr[-3000:]}")
    run = home / "runs" / f"seed{seed}"
    stages = {}
    for nb in ("02_data", "03_train", "04_evaluate"):
        meta = json.loads((run / "notebooks" / f"{nb}.ipynb").read_text())["metadata"]["papermill"]
        stages[nb] = meta["duration"]
    metrics = json.loads((run / "metrics.json").read_text())
    return {"seconds": wall, "stages": stages, "test_accuracy": metrics["test_accuracy"],
            "val_accuracy": metrics["selection"]["val_accuracy"],
            "image_size": int(json.loads((run / "params.json").read_text()).get("image_size", 0) or 0), "run": run}


def main() -> None:
    """Every seed: ours, then the bare loop on ours' split; then both means side by side."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=4, help="the bare loop's epochs")
    ap.add_argument("--lr", type=float, default=1e-3, help="the bare loop's head learning rate (body: 3e-4)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bare-padding", choices=tuple(PADDING), default="library",
                    help="the bare loop's 'same' padding: the library's (default) or the kit's folded one")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--bare", nargs=3, metavar=("SPLIT_CSV", "DATA_ROOT", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        result = bare_loop(Path(args.bare[0]), Path(args.bare[1]), int(args.bare[2]), args.seed, args.epochs,
                           args.lr, args.batch, padding=args.bare_padding)
        print(json.dumps(result))
        return
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            mine = ours(seed, Path(tmp), args.p)
            size = _input_size(mine["run"])
            report = json.loads((mine["run"] / "data_report.json").read_text())
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--bare", str(mine["run"] / "split.csv"), report["root"],
                                  str(size), "--seed", str(seed), "--epochs", str(args.epochs), "--lr", str(args.lr),
                                  "--batch", str(args.batch), "--bare-padding", args.bare_padding],
                                 cwd=ROOT, check=True, capture_output=True, text=True)
            bare = {"seconds": time.perf_counter() - t0, **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append((seed, mine, bare))
        st = mine["stages"]
        print(f"seed {seed}: ours {mine['seconds']:.0f} s (02 {st['02_data']:.0f}, 03 {st['03_train']:.0f}, "
              f"04 {st['04_evaluate']:.0f}) best val {mine['val_accuracy']:.4f} test {mine['test_accuracy']:.4f} | bare loop {bare['seconds']:.0f} s "
              f"best val {bare['val_accuracy']:.4f} test {bare['test_accuracy']:.4f} | time ratio {mine['seconds'] / bare['seconds']:.2f}", flush=True)
    print(f"\n{len(rows)} seeds, input {size} px; ours: defaults{' ' + str(args.p) if args.p else ''}")
    print("bare loop: " + BARE_RECIPE.format(body=3e-4, head=args.lr, wd=1e-4, batch=args.batch, epochs=args.epochs,
                                             padding=PADDING[args.bare_padding]))
    print(f"{'':28s} {'seconds (mean ± sd)':>22s} {'test accuracy (mean ± sd)':>27s}")
    for name, k in (("ours: 02 + 03 + 04", 1), ("bare loop", 2)):
        secs = [r[k]["seconds"] for r in rows]
        acc = [r[k]["test_accuracy"] for r in rows]
        print(f"{name:28s} {_ms(secs):>22s} {_ms(acc, 4):>27s}")
    ratio = [r[1]["seconds"] / r[2]["seconds"] for r in rows]
    gain = [r[1]["test_accuracy"] - r[2]["test_accuracy"] for r in rows]
    print(f"{'ours / bare loop':28s} {'time ' + _ms(ratio, 2):>22s} {'accuracy gain ' + _ms(gain, 4):>27s}")


def _input_size(run: Path) -> int:
    """The input size our run trained at (from its ledger)."""
    import csv
    with (run / "cycles.csv").open() as f:
        return int(list(csv.DictReader(f))[-1]["image_size"])


def _ms(values: list[float], digits: int = 0) -> str:
    """mean ± sd of a list (sd 0 for one value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


if __name__ == "__main__":
    main()
