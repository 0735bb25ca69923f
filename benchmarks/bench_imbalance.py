"""Balanced accuracy with and without class weighting on a one-sided subset of the sample, over seeds.

    python benchmarks/bench_imbalance.py [--seeds 1 2 3] [--ratio 10] [--epochs 2] [--head-epochs 5]

From the committed sample it keeps every image of the first half of the classes and 1/ratio of the others
(so the largest/smallest ratio is `ratio`), splits it as 02 does, and per seed trains one cycle three ways —
plain, class_weights=balanced, sampler=balanced — each choosing its best epoch by validation balanced accuracy;
it prints validation and test balanced accuracy side by side. Each cycle is a real 03 cycle (Lite0 ImageNet,
80 px), so on 2 CPU cores a seed takes a few minutes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from helpers.data import dataset as data
from helpers.data import imagecache
from helpers.evaluation.trained import load_trained
from helpers.models.inference import predict_proba
from helpers.training import checkpoints
from helpers.training.config import TrainConfig
from helpers.training.cycle import run_cycle

VARIANTS = {"plain": {}, "class_weights=balanced": {"class_weights": "balanced"},
            "sampler=balanced": {"sampler": "balanced"}}


def lopsided(ratio: int, seed: int):
    """The sample's split with the second half of the classes cut to 1/ratio of their images."""
    frame, report = data.prepare_split(data.resolve_dataset("sample"), seed)
    classes = sorted(frame["label"].unique())
    rare = set(classes[len(classes) // 2:])
    rng = np.random.default_rng(seed)
    keep = [lab not in rare or rng.random() < 1 / ratio for lab in frame["label"]]
    frame = frame[keep].reset_index(drop=True)
    frame["file"] = [str(Path(report["root"]) / p) for p in frame["path"]]
    return frame, classes


def one(frame, classes, seed: int, extra: dict, args, device) -> tuple[float, float, float]:
    """Train one cycle; its validation and test balanced accuracy and seconds."""
    arrays = {s: imagecache.split_arrays(frame, classes, s, 80) for s in ("train", "val", "test")}
    cfg = TrainConfig(arch="efficientnet-lite0", classes=classes, image_size=80, epochs=args.epochs,
                      head_epochs=args.head_epochs, seed=seed, select_metric="balanced_accuracy", **extra)
    with tempfile.TemporaryDirectory() as run:
        t0 = time.perf_counter()
        run_cycle(cfg, Path(run), *arrays["train"], *arrays["val"], device, progress=False)
        seconds = time.perf_counter() - t0
        model, norm, _ = load_trained(checkpoints.checkpoint_dir(Path(run)) / "best.pt", device, calibrated=False)
        out = []
        for split in ("val", "test"):
            images, labels = arrays[split]
            out.append(balanced_accuracy_score(labels, predict_proba(model, norm, images, device).argmax(1)))
    return out[0], out[1], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--ratio", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--head-epochs", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cpu")
    print("| seed | " + " | ".join(f"{v}: val / test balanced accuracy" for v in VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    figures: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    for seed in args.seeds:
        frame, classes = lopsided(args.ratio, seed)
        cells = []
        for name, extra in VARIANTS.items():
            val, test, seconds = one(frame, classes, seed, extra, args, device)
            figures[name].append((val, test))
            cells.append(f"{val:.4f} / {test:.4f} ({seconds:.0f} s)")
        print(f"| {seed} | " + " | ".join(cells) + " |", flush=True)
    print("| mean ± sd | " + " | ".join(spread(f) for f in figures.values()) + " |")


def spread(pairs: list[tuple[float, float]]) -> str:
    """Mean ± standard deviation over seeds of the validation and the test figure."""
    val, test = np.asarray(pairs).T
    sd = (lambda a: a.std(ddof=1) if len(a) > 1 else 0.0)
    return f"{val.mean():.4f} ± {sd(val):.4f} / {test.mean():.4f} ± {sd(test):.4f}"


if __name__ == "__main__":
    main()
