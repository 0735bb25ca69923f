"""The frozen early layers of a network and their cached outputs (`freeze_early`).

The stem and the stages at stride ≤ 4 (ImageNet's edge and texture filters, the costliest layers per image;
`freeze_stride` 8 or 16 takes in the next stages too) stay at their pretrained weights in the whole-network stage, in eval mode. Their output is then a fixed function
of the image, so it is computed once per image (and once per mirror image when `augment=flip`) and every epoch
trains only the rest of the network on it — the same numbers as running the frozen layers every step, without
their forward and backward cost. Detectron2 freezes the same layers by default (its `FREEZE_AT=2`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from helpers.data import imagecache
from helpers.models.batching import inference_batch
from helpers.models.inference import Normalizer, autocast
from helpers.models.zoo import arch_spec, backbone_blocks
from helpers.training.randomness import flip_draws

MAX_STRIDE = 4  # by default the frozen part ends with the last layer whose output is at least 1/4 of the input's side
CACHE_SHARE_OF_MEMORY = 0.25  # the cached outputs may take this share of the memory available when they are made


def _units(model: nn.Module, arch: str) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The network's forward as a chain of callables, input to the last feature map (before pooling)."""
    spec = arch_spec(arch)
    if spec.library == "efficientnet-pytorch":
        rate, n = model._global_params.drop_connect_rate, len(model._blocks)

        def block(i: int) -> Callable[[torch.Tensor], torch.Tensor]:
            return lambda x: model._blocks[i](x, drop_connect_rate=rate * i / n if rate else rate)
        return [lambda x: model._swish(model._bn0(model._conv_stem(x))), *(block(i) for i in range(n)),
                lambda x: model._swish(model._bn1(model._conv_head(x)))]
    if arch == "resnet50":
        return [lambda x: model.maxpool(model.relu(model.bn1(model.conv1(x)))), model.layer1, model.layer2,
                model.layer3, model.layer4]
    return list(model.features)


def _tail(model: nn.Module, arch: str, x: torch.Tensor) -> torch.Tensor:
    """Logits from the last feature map: pooling, flatten, dropout, classifier, as the network's own forward."""
    spec = arch_spec(arch)
    if spec.library == "efficientnet-pytorch":
        return model._fc(model._dropout(model._avg_pooling(x).flatten(1)))
    if arch == "resnet50":
        return model.fc(torch.flatten(model.avgpool(x), 1))
    return model.classifier(torch.flatten(model.avgpool(x), 1))


def _unit_shapes(model: nn.Module, arch: str, size: int) -> list[torch.Size]:
    """Each unit's output shape for one `size`-pixel image (a probe forward in eval mode)."""
    was = model.training
    model.eval()
    shapes, x = [], torch.zeros(1, 3, size, size, device=next(model.parameters()).device)
    with torch.no_grad():
        for unit in _units(model, arch):
            x = unit(x)
            shapes.append(x.shape)
    model.train(was)
    return shapes


def early_units(model: nn.Module, arch: str, size: int, max_stride: int = MAX_STRIDE) -> int:
    """How many leading units keep their output at stride ≤ `max_stride` for a `size`-pixel input (measured)."""
    k = 0
    for shape in _unit_shapes(model, arch, size)[:-1]:
        if shape[-1] * max_stride < size:
            break
        k += 1
    return k


class Rest(nn.Module):
    """The network with its first `k` units frozen: logits from their cached output (`cached`) or from images."""

    def __init__(self, model: nn.Module, arch: str, k: int, cached: bool = True) -> None:
        super().__init__()
        self.model, self.arch, self.k, self.start = model, arch, k, k if cached else 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of the network from unit `start` on (the frozen units' output, or normalised images)."""
        for unit in _units(self.model, self.arch)[self.start:]:
            h = unit(h)
        return _tail(self.model, self.arch, h)

    def train(self, mode: bool = True) -> Rest:
        """Train mode for the rest; the frozen early units stay in eval mode."""
        super().train(mode)
        for m in backbone_blocks(self.model, self.arch)[:self.k]:
            m.eval()
        return self


def freeze(model: nn.Module, arch: str, k: int) -> None:
    """The first `k` units stop learning and stay in eval mode (BatchNorm statistics and all)."""
    for m in backbone_blocks(model, arch)[:k]:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)


@torch.no_grad()
def early_features(model: nn.Module, arch: str, k: int, norm: Normalizer, images, device: torch.device,
                   flip: bool = False, batch_size: int = 64, workers: int = 0) -> torch.Tensor:
    """The first `k` units' output for every image (mirrored first with `flip`), in order, float32 on the CPU."""
    units = _units(model, arch)[:k]
    model.eval()
    out = []
    batch_size = inference_batch(model, images.shape[-1], batch_size, device) if len(images) else batch_size
    for x in imagecache.batches(images, batch_size, device, workers):
        h = norm(x.flip(-1) if flip else x).contiguous(memory_format=torch.channels_last)
        with autocast(device):
            for unit in units:
                h = unit(h)
        out.append(h.float().cpu().contiguous())
    return torch.cat(out) if out else torch.zeros(0)


def _through(units: list, maps: torch.Tensor, device: torch.device, batch_size: int,
             after: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """`units` over `maps` a batch at a time (channels_last, autocast); each batch's output passed to `after`."""
    out = []
    for start in range(0, len(maps), batch_size):
        h = maps[start:start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device):
            for unit in units:
                h = unit(h)
            out.append(after(h))
    return out


@torch.no_grad()
def advance(model: nn.Module, arch: str, start: int, k: int, maps: torch.Tensor, device: torch.device,
            batch_size: int = 64) -> torch.Tensor:
    """Units `start`..`k` (eval mode) over the cached output of the first `start` units: the first `k` units' output."""
    model.eval()
    out = _through(_units(model, arch)[start:k], maps, device, batch_size, lambda h: h.float().cpu().contiguous())
    return torch.cat(out) if out else maps


def cache_bytes(model: nn.Module, arch: str, k: int, size: int, n_images: int) -> int:
    """Bytes of the cached early outputs of `n_images` (float32)."""
    return _unit_shapes(model, arch, size)[k - 1].numel() * 4 * n_images


def memory_available() -> int:
    """Bytes of memory available now (Linux /proc/meminfo; elsewhere psutil if installed, else 4 GB)."""
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        return 4 << 30


def fits(nbytes: int) -> bool:
    """May the cache take `nbytes` of memory?"""
    return nbytes <= CACHE_SHARE_OF_MEMORY * memory_available()


class EarlyFeatureSet(Dataset):
    """Cached early outputs with integer labels; with mirrored outputs, each draw takes one at random (p = 0.5).

    Read a batch at a time (__getitems__): a DataLoader over it needs collate_fn=imagecache.whole_batch."""

    def __init__(self, plain: torch.Tensor, labels: list[int], mirrored: torch.Tensor | None = None) -> None:
        self.plain, self.mirrored, self.labels = plain, mirrored, torch.as_tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mirrored is not None and flip_draws(1):  # the uncached path's flip draw
            return self.mirrored[i], self.labels[i]
        return self.plain[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch in one indexing (DataLoader asks for it so), with the same draws image by image."""
        idx = torch.as_tensor(indices)
        if self.mirrored is None:
            return self.plain[idx], self.labels[idx]
        flip = flip_draws(len(idx)).view(-1, *[1] * (self.plain.dim() - 1))
        return torch.where(flip, self.mirrored[idx], self.plain[idx]), self.labels[idx]


@torch.no_grad()
def rest_proba(rest: Rest, feats: torch.Tensor, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities of the rest of the network over cached early outputs, in order."""
    rest.eval()
    out = []
    for start in range(0, len(feats), batch_size):
        h = feats[start:start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device):
            out.append(rest(h).float().softmax(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


@torch.no_grad()
def pooled_features(rest: Rest, feats: torch.Tensor, device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """The head's input (pooled last feature map, before dropout) from cached early outputs."""
    rest.eval()
    model, arch = rest.model, rest.arch
    pool = model._avg_pooling if arch_spec(arch).library == "efficientnet-pytorch" else model.avgpool
    return torch.cat(_through(_units(model, arch)[rest.start:], feats, device, batch_size,
                              lambda h: torch.flatten(pool(h), 1).float()))
