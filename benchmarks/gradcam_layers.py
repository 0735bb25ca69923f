"""Grad-CAM benchmark: do a trained run's heatmaps follow the object, at which layer and input size?

For test images of a run and their left-right mirror images, at the run's input size (and, with --sizes, the
images upsampled), Grad-CAM at the layer 04 used before (EfficientNet: `_conv_head`, the last layer), at the
network's last block, and at the layer 04 uses now (the end of the stride-16 stage) side by side:
- where the maps peak: the share of images whose map peaks in the bottom-right ninth, for the images and
  for their mirror images (a map that follows the object peaks there for about as many of each; a map fixed
  to the network's grid peaks there for both);
- the maps' mean centre of mass, x and y from -1 (left, top) to +1 (right, bottom);
- moves: each image shrunk to 3/4 and placed at the left, then at the right of a canvas of its border colour
  (the object moves by 1/4 of the width): the map's centre moves by this share of that, on average
  (1: the map moves with the object; 0: it stays where it was).
With --imagenet the same network before fine-tuning (ImageNet weights) is measured on the same images.

Usage: python benchmarks/gradcam_layers.py [--run-id default] [--n 192] [--sizes 224,225] [--imagenet]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F

from helpers.data.dataset import load_split
from helpers.data.imagecache import split_arrays
from helpers.evaluation import gradcam
from helpers.evaluation.trained import load_trained
from helpers.models.zoo import arch_spec, build_model
from helpers.utils import paths


def layers(model, arch: str, size: int) -> dict[str, torch.nn.Module]:
    """The layers compared: 04's former choice, the last block, and today's stride-16 block."""
    named = gradcam.blocks(model, arch)
    out = {}
    if arch_spec(arch).library == "efficientnet-pytorch":
        out["_conv_head (04 before)"] = model._conv_head
    elif arch == "resnet50":
        out["layer4 (04 before)"] = model.layer4
    else:
        out["features (04 before)"] = model.features
    out[f"{named[-1][0]} (last block)"] = named[-1][1]
    name, module, _ = gradcam.target_layer(model, arch, size)
    out[f"{name} (stride 16, 04 now)"] = module
    return out


def grid_of(model, layer: torch.nn.Module, size: int) -> tuple[int, int]:
    """The output grid of `layer` (its last call) for a square input of `size` pixels."""
    seen = []
    hook = layer.register_forward_hook(lambda _m, _i, o: seen.append(tuple(o.shape[-2:])))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        hook.remove()
    return seen[-1]


def centre(cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each map's centre of mass, x and y in [-1, 1]."""
    n, h, w = cams.shape
    xs, ys = ((np.arange(k) + 0.5) / k * 2 - 1 for k in (w, h))
    mass = cams.sum((1, 2)).clip(1e-12)
    return (cams.sum(1) * xs).sum(1) / mass, (cams.sum(2) * ys).sum(1) / mass


def bottom_right(cams: np.ndarray) -> float:
    """Share of maps whose peak lies in the bottom-right ninth of the image."""
    n, h, w = cams.shape
    rows, cols = np.unravel_index(cams.reshape(n, -1).argmax(1), (h, w))
    return float(((rows >= h * 2 / 3) & (cols >= w * 2 / 3)).mean())


def shifted(x: torch.Tensor, side: str) -> torch.Tensor:
    """Images (uint8) shrunk to 3/4 and placed at the left or right of a canvas of their border colour."""
    n, c, h, w = x.shape
    small = F.interpolate(x.float(), size=(3 * h // 4, 3 * w // 4), mode="bilinear", antialias=True)
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1).float()
    canvas = border.median(dim=-1).values[..., None, None].expand(n, c, h, w).clone()
    top, left = h // 8, 0 if side == "left" else w - small.shape[-1]
    canvas[..., top:top + small.shape[-2], left:left + small.shape[-1]] = small
    return canvas.round().clamp(0, 255).to(torch.uint8)


def measure(model, norm, arch: str, x: torch.Tensor, y: np.ndarray, size: int, batch: int = 32) -> None:
    """Print one row per layer for inputs `x` (uint8) shown to the network at `size` pixels."""
    t0 = time.time()
    sources = {"image": x, "mirror": torch.flip(x, dims=[3]), "left": shifted(x, "left"),
               "right": shifted(x, "right")}
    chosen = layers(model, arch, size)
    maps: dict[tuple[str, str], list] = {(k, s): [] for k in chosen for s in sources}
    hits = 0
    for i in range(0, len(x), batch):
        for s, source in sources.items():
            z = norm(source[i:i + batch])
            if size != z.shape[-1]:
                z = F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            if s == "image":
                with torch.no_grad():
                    hits += int((model(z).argmax(1).numpy() == y[i:i + batch]).sum())
            for name, layer in chosen.items():
                maps[name, s].append(gradcam.grad_cam(model, arch, z, layer=layer))
    print(f"input {size} px, {len(x)} test images, accuracy {hits / len(x):.3f} ({time.time() - t0:.0f} s)")
    print(f"  {'layer':32s} {'grid':>5s} | peak bottom-right: images / mirrors | centre x, y  | moves")
    for name, layer in chosen.items():
        cams = {s: np.concatenate(maps[name, s]) for s in sources}
        cx, cy = centre(cams["image"])
        moves = float((centre(cams["right"])[0] - centre(cams["left"])[0]).mean() / 0.5)
        h, w = grid_of(model, layer, size)
        print(f"  {name:32s} {f'{h}x{w}':>5s} | {bottom_right(cams['image']):>17.2f} / {bottom_right(cams['mirror']):<15.2f}"
              f" | {cx.mean():+.2f}, {cy.mean():+.2f} | {moves:+.2f}", flush=True)


def main() -> None:
    """Measure the run's maps at each layer and size, then (with --imagenet) the ImageNet network's."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-id", default="default")
    ap.add_argument("--n", type=int, default=192, help="test images (a seeded sample)")
    ap.add_argument("--sizes", default="", help="extra input sizes, the images upsampled, e.g. 224,225")
    ap.add_argument("--imagenet", action="store_true", help="also the network before fine-tuning")
    args = ap.parse_args()
    torch.manual_seed(0)
    run = paths.run_dir(args.run_id)
    model, norm, cfg = load_trained(run / "checkpoints" / "best.pt", torch.device("cpu"))
    model = model.to(memory_format=torch.contiguous_format)
    frame, _ = load_split(run)
    size, arch = int(cfg["image_size"]), cfg["arch"]
    images, labels = split_arrays(frame, list(cfg["classes"]), "test", size)
    pick = np.sort(np.random.default_rng(0).choice(len(labels), size=min(args.n, len(labels)), replace=False))
    x, y = torch.from_numpy(np.array(images[pick])), np.asarray(labels)[pick]
    print(f"run {args.run_id}: {arch} trained at {size} px, {torch.get_num_threads()} threads")
    for s in [size] + [int(v) for v in args.sizes.split(",") if v]:
        measure(model, norm, arch, x, y, s)
    if args.imagenet:
        print("the same network before fine-tuning (ImageNet weights, 1000 classes; accuracy is meaningless):")
        measure(build_model(arch, 1000, "imagenet").eval(), norm, arch, x, np.full(len(y), -1), size)


if __name__ == "__main__":
    main()
