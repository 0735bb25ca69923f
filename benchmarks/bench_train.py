"""Training-loop benchmark: 03's loop against a bare PyTorch loop, on the real memory-mapped cache and on synthetic
data, and the whole head stage with its feature cache against the same stage running the frozen backbone every epoch.

Every figure is printed beside its baseline, in one run, on the committed sample split as 02 splits it:
- training step (whole network): `helpers.run_cycle` (head_epochs=0; freeze_early=False, so that it does the
  bare loop's arithmetic and reads the images every step; 03's default is printed too) fed by the memory-mapped
  cache that `imagecache.split_arrays` builds, exactly as 03 reads it (its DataLoader, dataset and flip
  transform), and fed by a synthetic array in RAM; the baselines are the plainest loop (slice tensors already in
  RAM, or the same memory-mapped cache, normalise, forward, backward, AdamW step), same model, weights, batch,
  size, channels_last and frozen BatchNorm;
- head stage: `run_cycle` with the default head_epochs and epochs=0 (model build, feature extraction of train
  and val, the head epochs, validation and checkpoints: the user's wall time) against the same stage without the
  cache (the backbone frozen in eval mode, its forward run on every train and val image every epoch, the head
  trained on its output, a checkpoint each epoch).

Usage: python benchmarks/bench_train.py [--arch efficientnet-lite0] [--size 80] [--batch 32] [--steps 20]
       [--epochs 3] [--head-epochs 5] [--device auto] [--b4]
  --steps: batches per whole-network epoch; --epochs: epochs per loop (the first is warm-up, the rest timed);
  --b4 adds EfficientNet-B4 at 380 px with AMP and channels_last (a GPU figure, bare loop only).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers.data import dataset as data
from helpers.data import imagecache
from helpers.models.inference import autocast, normalizer_for
from helpers.models.zoo import arch_spec, build_model, head_of
from helpers.params import schema as params
from helpers.training.config import TrainConfig
from helpers.training.cycle import run_cycle
from helpers.training.ledger import read_history
from helpers.training.optim import set_bn_eval
from helpers.utils.devices import device_name, resolve_device

DEFAULTS = params.defaults("03_train")


def sample_split(size: int, cache_root: Path, n_steps: int):
    """The committed sample split as 02 splits it; train, val and a random `n_steps`-image train subset as 03
    reads them (memory-mapped caches built by imagecache)."""
    frame, report = data.prepare_split(data.resolve_dataset("sample"))
    frame["file"] = [str(Path(report["root"]) / p) for p in frame["path"]]
    classes = report["classes"]
    train_x, train_y = imagecache.split_arrays(frame, classes, "train", size, cache="on", cache_root=cache_root)
    val_x, val_y = imagecache.split_arrays(frame, classes, "val", size, cache="on", cache_root=cache_root)
    part = frame[frame["split"] == "train"].sample(n=min(n_steps, len(train_y)), random_state=0)
    sub = part.assign(split="train")  # its own cache file, so it stays a memory map (fancy indexing would copy)
    sub_x, sub_y = imagecache.split_arrays(sub, classes, "train", size, cache="on", cache_root=cache_root)
    for a in (train_x, val_x, sub_x):
        assert isinstance(a, np.memmap), "the cache must be the memory-mapped file, as 03 reads it"
    return classes, (train_x, train_y), (val_x, val_y), (sub_x, sub_y)


def kit_config(same_computation: bool = True, **values):
    """03's TrainConfig; same_computation turns off what changes the arithmetic (freeze_early, where it exists)."""
    if same_computation and has_freeze_early():
        values["freeze_early"] = False  # otherwise the early layers' cached output replaces them every epoch
    return TrainConfig(**values)


def has_freeze_early() -> bool:
    """Whether 03 has the freeze_early option (frozen early layers, their output cached)."""
    return "freeze_early" in {f.name for f in dataclasses.fields(TrainConfig)}


def kit_cycle(cfg, train_x, train_y, val_x, val_y, device) -> tuple[float, list[float]]:
    """The one call into helpers/train.py: run_cycle in a fresh run folder; wall seconds and per-epoch seconds."""
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        run_cycle(cfg, Path(run_dir), train_x, train_y, val_x, val_y, device, progress=False)
        wall = time.perf_counter() - t0
        history = read_history(Path(run_dir))
    return wall, [float(s) for s in history["seconds"]]


def cores_used(fn, *args):
    """fn(*args) and the cores this process kept busy meanwhile (CPU seconds / wall seconds): below the
    thread count, other work shared the machine."""
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    out = fn(*args)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return out, (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / (time.perf_counter() - t0)


def our_step_rate(cfg, images, labels, val_x, val_y, device) -> tuple[float, list[float]]:
    """Images/s of 03's whole-network epochs after the first (each epoch's seconds include one val batch)."""
    _, seconds = kit_cycle(cfg, images, labels, val_x, val_y, device)
    return len(labels) / statistics.median(seconds[1:]), seconds


def fresh_model(arch: str, n_classes: int, weights: str, device: torch.device) -> nn.Module:
    """The network as 03 builds it: weights loaded, channels_last on every device."""
    return build_model(arch, n_classes, weights).to(device, memory_format=torch.channels_last)


def bare_step_rate(model: nn.Module, arch: str, images, labels: torch.Tensor, batch: int, epochs: int,
                   lr: float, device: torch.device) -> float:
    """Images/s of the plainest fine-tuning loop slicing `images` in order (a tensor in RAM or the memory-mapped
    cache), epochs after the first (warm-up)."""
    norm = normalizer_for(arch).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr)
    model.train()
    set_bn_eval(model)  # as 03 with freeze_bn=True (the default)
    rates = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for s in range(0, len(labels), batch):
            x = images[s:s + batch]
            x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))  # a copy out of the memory map
            x, y = x.to(device), labels[s:s + batch].to(device)
            with autocast(device):
                loss = nn.functional.cross_entropy(model(norm(x).contiguous(memory_format=torch.channels_last)).float(),
                                                   y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch:
            rates.append(len(labels) / (time.perf_counter() - t0))
    return statistics.median(rates)


@torch.no_grad()
def _backbone(model: nn.Module, arch: str, norm, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pooled features of the frozen backbone (eval mode, no autograd): what the head reads."""
    with autocast(device):
        return model(norm(x).contiguous(memory_format=torch.channels_last)).float()


def head_stage_without_cache(arch, classes, weights, train_x, train_y, val_x, val_y, epochs, batch, lr,
                             device) -> float:
    """Wall seconds of the head stage with no feature cache: backbone forward on every image, every epoch."""
    t0 = time.perf_counter()
    model = fresh_model(arch, len(classes), weights, device)
    head = head_of(model, arch)
    setattr(model, arch_spec(arch).head, nn.Identity())
    model.eval()
    norm = normalizer_for(arch).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr, weight_decay=0.01)
    crit = nn.CrossEntropyLoss(label_smoothing=DEFAULTS["label_smoothing"])
    y_val = torch.as_tensor(val_y)
    loader = torch.utils.data.DataLoader(imagecache.CachedImages(train_x, train_y), batch_size=batch, shuffle=True)
    with tempfile.TemporaryDirectory() as out:
        for epoch in range(epochs):
            head.train()
            for x, y in loader:
                feats = _backbone(model, arch, norm, x.to(device), device)
                loss = crit(head(nn.functional.dropout(feats, 0.2)), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            head.eval()
            correct = 0
            for s in range(0, len(y_val), 64):
                x = torch.from_numpy(np.array(val_x[s:s + 64])).to(device)
                with torch.no_grad():
                    predicted = head(_backbone(model, arch, norm, x, device)).argmax(1).cpu()
                correct += int((predicted == y_val[s:s + 64]).sum())
            torch.save({"head": head.state_dict(), "optimizer": opt.state_dict(), "val_accuracy": correct / len(y_val)},
                       Path(out) / f"epoch{epoch}.pt")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def b4_rate(batch: int, device: torch.device) -> float:
    """EfficientNet-B4 at 380 px, AMP and channels_last: images/s of the bare loop (random weights and data)."""
    model = fresh_model("efficientnet-b4", 10, "none", device)
    x = torch.randint(0, 255, (batch * 4, 3, 380, 380), dtype=torch.uint8)
    return bare_step_rate(model, "efficientnet-b4", x, torch.zeros(len(x), dtype=torch.long), batch, 3, 1e-4, device)


def main() -> None:
    """Run every comparison and print it beside its baseline."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=DEFAULTS["arch"])
    ap.add_argument("--size", type=int, default=80, help="input size (80: what image_size=0 picks for the sample)")
    ap.add_argument("--batch", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--steps", type=int, default=20, help="batches per whole-network epoch")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per training-step loop; the first is warm-up")
    ap.add_argument("--head-epochs", type=int, default=DEFAULTS["head_epochs"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--b4", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    weights = DEFAULTS["weights"]
    with tempfile.TemporaryDirectory() as cache:
        classes, (train_x, train_y), (val_x, val_y), (real, labels) = sample_split(args.size, Path(cache),
                                                                                   args.batch * args.steps)
        n = len(labels)
        synthetic = np.random.default_rng(0).integers(0, 255, real.shape, dtype=np.uint8)
        base = {"arch": args.arch, "classes": classes, "image_size": args.size, "batch_size": args.batch,
                "weights": weights, "device": str(device)}
        step_cfg = kit_config(**base, head_epochs=0, epochs=args.epochs, patience=0)
        one_val = (val_x[:args.batch], val_y[:args.batch])
        torch.manual_seed(0)

        def bare_run(images=None) -> float:
            return bare_step_rate(fresh_model(args.arch, len(classes), weights, device), args.arch,
                                  torch.from_numpy(synthetic) if images is None else images,
                                  torch.as_tensor(labels), args.batch, args.epochs, step_cfg.lr, device)
        log = []
        bare_first, busy = cores_used(bare_run)
        log.append(("bare loop (first)", [], busy))
        bare_cache_first, busy = cores_used(bare_run, real)
        log.append(("bare loop slicing the cache (first)", [], busy))
        (ours_syn, secs), busy = cores_used(our_step_rate, step_cfg, synthetic, labels, *one_val, device)
        log.append(("03, synthetic", secs, busy))
        (ours_real, secs), busy = cores_used(our_step_rate, step_cfg, real, labels, *one_val, device)
        log.append(("03, real cache", secs, busy))
        ours_default = None
        if has_freeze_early():
            default_cfg = kit_config(False, **base, head_epochs=0, epochs=args.epochs, patience=0)
            (ours_default, secs), busy = cores_used(our_step_rate, default_cfg, real, labels, *one_val, device)
            log.append(("03 default, real cache", secs, busy))
        bare_cache_last, busy = cores_used(bare_run, real)
        log.append(("bare loop slicing the cache (last)", [], busy))
        bare_last, busy = cores_used(bare_run)
        log.append(("bare loop (last)", [], busy))  # before and after ours: the faster is the baseline (the strongest one)
        bare, bare_cache = max(bare_first, bare_last), max(bare_cache_first, bare_cache_last)
        head_cfg = kit_config(**base, head_epochs=args.head_epochs, epochs=0, patience=0)
        with_cache, _ = kit_cycle(head_cfg, train_x, train_y, val_x, val_y, device)
        without = head_stage_without_cache(args.arch, classes, weights, train_x, train_y, val_x, val_y,
                                           args.head_epochs, args.batch, head_cfg.lr, device)
        b4 = b4_rate(args.batch, device) if args.b4 else None
    print(f"{device_name(device)}, {torch.get_num_threads()} threads, torch {torch.__version__}; {args.arch} "
          f"({weights} weights) at {args.size} px, batch {args.batch}; sample split {len(train_y)} train / "
          f"{len(val_y)} val")
    print(f"\ntraining step (whole network, {n} images an epoch, median of epochs 2..{args.epochs})")
    for name, secs, busy in log:
        print(f"  {name}: {busy:.2f} cores busy" + (f", epochs {', '.join(f'{x:.1f}' for x in secs)} s" if secs else ""))
    print(f"bare loop run before and after ours: {bare_first:.1f} and {bare_last:.1f} img/s (slicing the cache: "
          f"{bare_cache_first:.1f} and {bare_cache_last:.1f}); the faster is its figure")
    print(f"{'comparison':62s} {'ours img/s':>10s} {'baseline':>9s} {'ratio':>6s}")
    for name, ours, theirs in (
            ("03's loop vs a bare loop, both on synthetic data in RAM", ours_syn, bare),
            ("03's loop vs a bare loop, both reading the memory-mapped cache", ours_real, bare_cache),
            ("03's loop: real memory-mapped cache vs synthetic data in RAM", ours_real, ours_syn),
            ("03's loop on the real cache vs a bare loop on synthetic data", ours_real, bare)):
        print(f"{name:62s} {ours:10.1f} {theirs:9.1f} {ours / theirs:6.2f}")
    if ours_default is not None:
        print("(above: freeze_early=False, the same arithmetic as the bare loop; 03's default freezes the early "
              "layers and trains on their cached output:)")
        print(f"{'03 default (freeze_early) on the real cache vs the bare loop':62s} {ours_default:10.1f} "
              f"{bare:9.1f} {ours_default / bare:6.2f}")
    print(f"\nhead stage, {args.head_epochs} epochs over {len(train_y)} train + {len(val_y)} val images "
          "(model build, validation and checkpoints included)")
    print(f"{'with the feature cache (extraction included)':62s} {with_cache:9.1f} s")
    print(f"{'without it (frozen backbone forward every epoch)':62s} {without:9.1f} s")
    print(f"{'saving':62s} {without / with_cache:9.1f} x  ({without - with_cache:.1f} s)")
    if b4 is not None:
        print(f"\nEfficientNet-B4 at 380 px, AMP + channels_last, bare loop: {b4:.1f} img/s")


if __name__ == "__main__":
    main()
