"""Choose the default training recipe on VALIDATION accuracy only: every candidate over several seeds.

Each seed is one split of the committed sample (02's `seed`) and one training seed; the figure per run is the
cycle's best validation accuracy, the figure 03 selects checkpoints by, and beside it the same checkpoint's
validation accuracy with flip test-time augmentation (04's `tta=flip`). The test split is never read.

Usage: python benchmarks/choose_defaults.py [--seeds 1 2 3] [--candidates 64:5:7 80:5:7] [--out results.csv]
       a candidate is image_size:head_epochs:epochs, optionally followed by :name=value settings of 03
       (e.g. 80:5:7:freeze_early=False:lr=0.001, 80:5:10:freeze_stride=16); runs go seed by seed so a partial run
       covers every candidate.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from helpers.data import dataset as data
from helpers.data import imagecache
from helpers.evaluation.trained import load_trained
from helpers.models.inference import predict_proba
from helpers.training.config import TrainConfig
from helpers.training.cycle import run_cycle
from helpers.utils.devices import resolve_device


def split_arrays(frame, classes: list[str], split: str, size: int, cache: Path):
    """Cached images and labels of one split, in a private cache folder."""
    part = frame[frame["split"] == split]
    images = imagecache.build_cache(part["file"].tolist(), part["sha256"].tolist(), size, cache)
    return images, [classes.index(c) for c in part["label"]]


def one_run(root: Path, seed: int, size: int, head_epochs: int, epochs: int, device: torch.device,
            arch: str, work: Path, settings: dict | None = None) -> dict:
    """Train one cycle of the default recipe on one seed's split; return its best validation accuracy."""
    frame, report = data.prepare_split(root, seed=seed)
    frame["file"] = [str(Path(report["root"]) / p) for p in frame["path"]]
    classes = report["classes"]
    cfg = TrainConfig(arch=arch, classes=classes, image_size=size, head_epochs=head_epochs, epochs=epochs,
                            seed=seed, device=str(device), **(settings or {}))
    run_dir = work / f"run-{size}-{head_epochs}-{epochs}-{seed}-{len(list(work.glob('run-*')))}"
    val_images, val_labels = split_arrays(frame, classes, "val", size, work / "cache")
    t0 = time.perf_counter()
    row = run_cycle(cfg, run_dir, *split_arrays(frame, classes, "train", size, work / "cache"),
                    val_images, val_labels, device, progress=False)
    seconds = time.perf_counter() - t0
    model, norm, _ = load_trained(run_dir / "checkpoints" / "cycle-1" / "best.pt", device, calibrated=False)
    flip = predict_proba(model, norm, val_images, device, tta="flip").argmax(1) == np.asarray(val_labels)
    return {"candidate": _name(size, head_epochs, epochs, settings), "seed": seed,
            "best_val_accuracy": float(row["best_val_accuracy"]), "val_accuracy_flip_tta": round(float(flip.mean()), 5),
            "best_epoch": row["best_epoch"], "seconds": round(seconds, 1)}


def main() -> None:
    """Run every candidate on every seed, print each run as it ends, then mean ± sd per candidate."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--candidates", nargs="+", default=["64:5:7", "80:5:7"])
    ap.add_argument("--arch", default="efficientnet-lite0")
    ap.add_argument("--dataset", default="sample")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, help="also append every run to this CSV")
    args = ap.parse_args()
    device = resolve_device(args.device)
    root = data.resolve_dataset(args.dataset)
    candidates = [_parse(c) for c in args.candidates]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for size, head_epochs, epochs, settings in candidates:
                r = one_run(root, seed, size, head_epochs, epochs, device, args.arch, Path(tmp), settings)
                rows.append(r)
                print(f"{r['candidate']} seed {seed}: best val accuracy {r['best_val_accuracy']:.4f} "
                      f"(epoch {r['best_epoch']}; with flip TTA {r['val_accuracy_flip_tta']:.4f}), "
                      f"{r['seconds']:.0f} s", flush=True)
                if args.out:
                    new = not args.out.exists()
                    with args.out.open("a", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=list(r))
                        if new:
                            w.writeheader()
                        w.writerow(r)
    print(f"\n{args.arch} on {args.dataset}, device {device}; best validation accuracy per candidate "
          "(test never read)")
    print(f"{'candidate':>36s} {'seeds':>5s} {'mean':>7s} {'sd':>7s} {'min':>7s} {'max':>7s} {'flip TTA':>16s} "
          f"{'s/run':>7s}")
    for candidate in candidates:
        name = _name(*candidate)
        mine = [r for r in rows if r["candidate"] == name]
        acc = [r["best_val_accuracy"] for r in mine]
        sd = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        tta = [r["val_accuracy_flip_tta"] for r in mine]
        tta_sd = statistics.stdev(tta) if len(tta) > 1 else float("nan")
        print(f"{name:>36s} {len(acc):5d} {statistics.mean(acc):7.4f} {sd:7.4f} "
              f"{min(acc):7.4f} {max(acc):7.4f} {statistics.mean(tta):8.4f} ± {tta_sd:.4f} "
              f"{statistics.mean(r['seconds'] for r in mine):7.0f}")


def _parse(text: str) -> tuple[int, int, int, dict]:
    """image_size:head_epochs:epochs[:name=value...] → its numbers and TrainConfig settings (typed by the schema)."""
    from helpers.params.schema import coerce
    size, head, epochs, *rest = text.split(":")
    return int(size), int(head), int(epochs), {k: coerce(k, v) for k, v in (r.split("=", 1) for r in rest)}


def _name(size: int, head_epochs: int, epochs: int, settings: dict | None) -> str:
    """A candidate as printed: 80px 5+7 freeze_early=False."""
    return " ".join([f"{size}px {head_epochs}+{epochs}", *(f"{k}={v}" for k, v in (settings or {}).items())])


if __name__ == "__main__":
    main()
