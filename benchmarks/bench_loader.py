"""Loader benchmark: 03's training loader over the memory-mapped cache against the loader a user would otherwise
write (a torchvision-style dataset decoding the original files, with as many DataLoader workers as cores).

Two datasets, each at the size 03 trains it at (`image_size=0`): the committed sample (28 px PNGs in
data/sample, trained at 80 px) and generated Kaggle-like photos (500x375 JPEGs, trained at 224 px).
- ours: `imagecache.build_cache` once (all cores), then 03's own training DataLoader (its dataset, flip
  transform and sampler; on the CPU no workers, as 03 uses) over the memory-mapped cache;
- baseline: a Dataset that opens each file with PIL and applies Resize + CenterCrop + RandomHorizontalFlip +
  ToTensor + Normalize, in a shuffled DataLoader with num_workers = the cores, persistent workers, pinned memory on CUDA only.
For each: images/s of the loader alone (first epoch and a later one), images/s of training steps behind it
(`--arch`, whose compute shares the cores with the decoding workers), and after how many epochs the cache build
has paid for itself. On CUDA it adds decoding the JPEGs on the GPU (nvJPEG).

Usage: python benchmarks/bench_loader.py [--sample-n 0] [--photos 500] [--sample-size 80] [--photo-size 224] [--batch 32]
       [--arch efficientnet-lite0] [--steps 8] [--rounds 2] [--workers <cores>] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from helpers.data import dataset as data
from helpers.data import imagecache
from helpers.models import zoo as models
from helpers.models.inference import autocast, normalizer_for
from helpers.params import schema as params
from helpers.training.batches import train_loader
from helpers.training.config import TrainConfig
from helpers.utils.devices import device_name, resolve_device

DEFAULTS = params.defaults("03_train")


def generate_photos(root: Path, n: int) -> list[str]:
    """n photo-sized JPEGs (500x375, smooth content with noise, quality 90): a typical Kaggle photo dataset."""
    root.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> str:
        rng = np.random.default_rng(i)
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC), dtype=np.int16)
        arr = np.clip(arr + rng.integers(-12, 12, arr.shape), 0, 255).astype(np.uint8)
        path = root / f"{i}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        return str(path)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        return list(pool.map(one, range(n)))


def sample_files() -> list[str]:
    """The committed sample's image files (28 px PNGs)."""
    root = data.resolve_dataset("sample")
    return sorted(str(p) for p in root.rglob("*.png"))


class DecodeOriginals(Dataset):
    """The baseline a user writes: PIL decode, then torchvision's Resize, CenterCrop, flip, ToTensor, Normalize."""

    def __init__(self, files: list[str], labels: list[int], size: int, arch: str) -> None:
        from torchvision import transforms
        spec = models.arch_spec(arch)
        self.files, self.labels = files, labels
        self.transform = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size),
                                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                             transforms.Normalize(spec.mean, spec.std)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB")), self.labels[i]


def baseline_loader(files, labels, size, batch, workers, arch, device) -> DataLoader:
    """Multi-worker DataLoader over DecodeOriginals: shuffled, persistent workers, pinned memory on CUDA only."""
    return DataLoader(DecodeOriginals(files, labels, size, arch), batch_size=batch, shuffle=True, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=device.type == "cuda")


def kit_loader(images, labels, size, batch, device) -> DataLoader:
    """The one call into helpers/train.py: 03's training DataLoader over `images` (default augment and workers)."""
    cfg = TrainConfig(arch=DEFAULTS["arch"], classes=[str(c) for c in range(10)], image_size=size,
                            batch_size=batch, device=str(device))
    loader = train_loader(cfg, images, labels, device, torch.Generator().manual_seed(0), cfg.seed)
    loader.sampler.set_epoch(0)
    return loader


def epoch_seconds(dl: DataLoader, device: torch.device, epochs: int = 2) -> list[float]:
    """Seconds of each of `epochs` full passes over the loader, batches moved to the device."""
    out = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, _y in dl:
            x.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def train_rate(dl: DataLoader, arch: str, device: torch.device, steps: int, uint8: bool) -> float:
    """Training images/s behind `dl`: `steps` steps after two warm-up steps (uint8 batches normalised on the device)."""
    model = models.build_model(arch, 10, "none").to(device, memory_format=torch.channels_last).train()
    norm = normalizer_for(arch).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    it, done, seen, t0 = iter(dl), 0, 0, 0.0
    while done <= steps + 1:
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(dl)
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = norm(x) if uint8 else x  # the baseline's workers normalised already
        with autocast(device):
            loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if done == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()  # after the warm-up step (workers started, allocator warm)
        else:
            seen += len(y)
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def gpu_decode_rate(files: list[str], size: int, batch: int, device: torch.device) -> float:
    """Images/s of torchvision.io.decode_jpeg on the GPU, resized and cropped there (second pass)."""
    rate = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        for start in range(0, len(files), batch):
            imagecache.decode_jpeg_batch(files[start:start + batch], size, device)
        torch.cuda.synchronize()
        rate = len(files) / (time.perf_counter() - t0)
    return rate


def measure(name: str, files: list[str], size: int, args, device: torch.device, cache_root: Path) -> dict:
    """Cache build, both loaders' epochs and the training rate behind each, for one dataset."""
    labels = [i % 10 for i in range(len(files))]
    t0 = time.perf_counter()
    cached = imagecache.build_cache(files, [f"{name}{i}" for i in range(len(files))], size, cache_root)
    build = time.perf_counter() - t0
    ours = kit_loader(cached, labels, size, args.batch, device)
    theirs = baseline_loader(files, labels, size, args.batch, args.workers, args.arch, device)
    row = {"name": name, "n": len(files), "size": size, "build": build,
           "ours": epoch_seconds(ours, device), "theirs": epoch_seconds(theirs, device),
           "ours_rounds": [], "theirs_rounds": []}
    for _ in range(args.rounds):  # alternating, so that a busy moment does not favour one
        row["ours_rounds"].append(train_rate(ours, args.arch, device, args.steps, uint8=True))
        row["theirs_rounds"].append(train_rate(theirs, args.arch, device, args.steps, uint8=False))
    row["ours_train"] = sum(row["ours_rounds"]) / args.rounds
    row["theirs_train"] = sum(row["theirs_rounds"]) / args.rounds
    if device.type == "cuda" and files[0].endswith(".jpg"):
        row["nvjpeg"] = gpu_decode_rate(files, size, args.batch, device)
    del theirs  # persistent workers end with their loader
    return row


def report(r: dict, arch: str, workers: int) -> None:
    """One dataset's table: loader alone, training behind it, when the cache pays."""
    n = r["n"]
    print(f"\n{r['name']}: {n} images, trained at {r['size']} px")
    print(f"{'':46s} {'ours (cache)':>13s} {f'decode, {workers} workers':>18s} {'ratio':>7s}")
    o1, o2 = (n / s for s in r["ours"])
    t1, t2 = (n / s for s in r["theirs"])
    print(f"{'loader alone, first epoch (img/s)':46s} {o1:13.0f} {t1:18.0f} {o1 / t1:7.1f}")
    print(f"{'loader alone, second epoch (img/s)':46s} {o2:13.0f} {t2:18.0f} {o2 / t2:7.1f}")
    print(f"{f'training {arch} behind it (img/s, mean)':46s} {r['ours_train']:13.1f} {r['theirs_train']:18.1f} "
          f"{r['ours_train'] / r['theirs_train']:7.2f}")
    spread = ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(r["ours_rounds"], r["theirs_rounds"]))
    print(f"{'  each round, ours / baseline':46s} {spread}")
    print(f"{'cache build, once (s)':46s} {r['build']:13.2f} {'–':>18s}")
    saved_loader = r["theirs"][1] - r["ours"][1]
    epoch_train = (n / r["theirs_train"]) - (n / r["ours_train"])
    # Training rates whose difference is within the rounds' own spread are no measurable difference.
    noise = max(max(r["ours_rounds"]) - min(r["ours_rounds"]), max(r["theirs_rounds"]) - min(r["theirs_rounds"]))
    within = abs(r["ours_train"] - r["theirs_train"]) <= noise
    for what, saved in (("loader alone", saved_loader), ("training", epoch_train)):
        if what == "training" and within:
            when = "— not measurably: the training rates differ by less than their round-to-round spread"
        else:
            when = f"after {r['build'] / saved:.1f} epoch(s)" if saved > 0 else "never (it saves no time per epoch)"
        print(f"  the cache pays for its build ({what}: {saved:+.2f} s an epoch) {when}")
    if "nvjpeg" in r:
        print(f"{'decode_jpeg on the GPU (nvJPEG), img/s':46s} {r['nvjpeg']:13.0f}")


def main() -> None:
    """Measure both datasets and print each beside its baseline."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample-n", type=int, default=0, help="use the first N sample images (0: all)")
    ap.add_argument("--photos", type=int, default=500, help="generated 500x375 JPEGs")
    ap.add_argument("--sample-size", type=int, default=80, help="training size of the sample (image_size=0 picks 80)")
    ap.add_argument("--photo-size", type=int, default=224, help="training size of the photos (image_size=0: 224)")
    ap.add_argument("--batch", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--arch", default=DEFAULTS["arch"])
    ap.add_argument("--steps", type=int, default=8, help="timed training steps behind each loader, per round")
    ap.add_argument("--rounds", type=int, default=2, help="training rounds, alternating the two loaders")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the baseline's DataLoader workers")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    print(f"{device_name(device)}, {os.cpu_count()} cores, torch {torch.__version__}; batch {args.batch}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(measure("committed sample (28 px PNG)", sample_files()[:args.sample_n or None], args.sample_size, args, device,
                            Path(tmp) / "cache"))
        t0 = time.perf_counter()
        photos = generate_photos(Path(tmp) / "photos", args.photos)
        print(f"generated {args.photos} JPEGs of 500x375 in {time.perf_counter() - t0:.0f} s")
        rows.append(measure("Kaggle-like photos (500x375 JPEG)", photos, args.photo_size, args, device,
                            Path(tmp) / "cache"))
    for r in rows:
        report(r, args.arch, args.workers)
    print("\nours: 03's training DataLoader over the memory-mapped cache (uint8, normalised on the device);"
          "\nbaseline: PIL decode + Resize + CenterCrop + flip + ToTensor + Normalize in DataLoader workers "
          "(persistent).")


if __name__ == "__main__":
    main()
