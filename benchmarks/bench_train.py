"""Training-loop benchmark: our loop against a bare PyTorch loop, real against synthetic data, and the
stage-1 feature cache against a frozen-backbone epoch without it. Prints each figure beside its baseline.

Usage: python benchmarks/bench_train.py [--arch efficientnet-lite0] [--size 64] [--batch 32] [--steps 20]
       [--device auto] [--b4]   (--b4 adds EfficientNet-B4 at 380 px with AMP and channels_last: a GPU figure)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers import data, imagecache, train
from helpers.devices import resolve_device
from helpers.models import arch_spec, build_model


def bare_loop(model, images, labels, batch, steps, device, norm) -> float:
    """Images per second of the plainest fine-tuning loop: slice, normalise, forward, backward, step."""
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    model.train()
    train.set_bn_eval(model)
    x_all = torch.from_numpy(np.asarray(images))
    y_all = torch.as_tensor(labels)
    n = 0
    t0 = None
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        s = (i * batch) % max(1, len(y_all) - batch)
        x = x_all[s:s + batch].to(device)
        y = y_all[s:s + batch].to(device)
        with train._autocast(device):
            loss = nn.functional.cross_entropy(model(norm(x).contiguous(memory_format=torch.channels_last)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def our_epoch(model, cfg, images, labels, device, norm) -> float:
    """Images per second of helpers.train's full-network epoch over `images`."""
    opt = train._optimizer(model, cfg, head_only=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    g = torch.Generator().manual_seed(0)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    train._full_epoch(model, cfg, norm, images[: 2 * cfg.batch_size], labels[: 2 * cfg.batch_size], opt, sched,
                      scaler, crit, g, device, 0, False)  # warm-up
    t0 = time.perf_counter()
    train._full_epoch(model, cfg, norm, images, labels, opt, sched, scaler, crit, g, device, 1, False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(labels) / (time.perf_counter() - t0)


def main() -> None:
    """Run every comparison and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="efficientnet-lite0")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--b4", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    frame, report = data.prepare_split(data.resolve_dataset("sample"))
    frame["file"] = [str(Path(report["root"]) / p) for p in frame["path"]]
    with tempfile.TemporaryDirectory() as cache:
        part = frame[frame["split"] == "train"]
        n = min(len(part), args.batch * args.steps)
        real = imagecache.build_cache(part["file"].tolist()[:n], part["sha256"].tolist()[:n], args.size, Path(cache))
        real = np.array(real)
        labels = [report["classes"].index(c) for c in part["label"]][:n]
        synthetic = np.random.default_rng(0).integers(0, 255, real.shape, dtype=np.uint8)
        spec = arch_spec(args.arch)
        norm = train.Normalizer(spec.mean, spec.std).to(device)
        cfg = train.TrainConfig(arch=args.arch, classes=report["classes"], image_size=args.size,
                                batch_size=args.batch, augment="flip")

        def fresh():
            return build_model(args.arch, len(report["classes"]), "imagenet").to(
                device, memory_format=torch.channels_last)
        rows = []
        bare = bare_loop(fresh(), synthetic, labels, args.batch, args.steps, device, norm)
        ours_syn = our_epoch(fresh(), cfg, synthetic, labels, device, norm)
        ours_real = our_epoch(fresh(), cfg, real, labels, device, norm)
        rows.append(("training step: our loop vs bare loop (synthetic data)", ours_syn, bare, "≥ 0.95"))
        rows.append(("our loop: real cached data vs synthetic data", ours_real, ours_syn, "≥ 0.90"))
        model = fresh()
        t0 = time.perf_counter()
        feats = train.extract_features(model, args.arch, norm, real, device)
        extract = time.perf_counter() - t0
        head = nn.Linear(feats.shape[1], len(report["classes"])).to(device)
        opt = torch.optim.AdamW(head.parameters(), 1e-3)
        y = torch.as_tensor(labels, device=device)
        t0 = time.perf_counter()
        for s in range(0, len(y), args.batch):
            loss = nn.functional.cross_entropy(head(feats[s:s + args.batch]), y[s:s + args.batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        cached_epoch = time.perf_counter() - t0
        # Without the cache a frozen-backbone epoch still runs the backbone forward for every image.
        rows.append(("stage-1 epoch: feature cache vs backbone forward", len(y) / cached_epoch, len(y) / extract,
                     "≥ 10"))
        if args.b4:
            b4 = build_model("efficientnet-b4", 10, "none").to(device, memory_format=torch.channels_last)
            b4_data = np.random.default_rng(0).integers(0, 255, (args.batch * 4, 3, 380, 380), dtype=np.uint8)
            b4_norm = train.Normalizer(arch_spec("efficientnet-b4").mean, arch_spec("efficientnet-b4").std).to(device)
            ips = bare_loop(b4, b4_data, [0] * len(b4_data), args.batch, 10, device, b4_norm)
            rows.append(("EfficientNet-B4 380 px training, AMP + channels_last", ips, float("nan"), "img/s"))
    print(f"device: {device}, arch: {args.arch}, {args.size}px, batch {args.batch}, {n} images")
    print(f"{'comparison':58s} {'ours img/s':>11s} {'baseline':>10s} {'ratio':>7s}  goal")
    for name, ours, base, goal in rows:
        ratio = ours / base if base == base else float("nan")
        print(f"{name:58s} {ours:11.1f} {base:10.1f} {ratio:7.2f}  {goal}")


if __name__ == "__main__":
    main()
