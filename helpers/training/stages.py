"""The two stages of a cycle: the head alone on cached backbone features, then the network. Entering a stage sets
what trains, a fresh optimiser and schedule (or the resumed ones), and the cached inputs it trains on.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from helpers.models.inference import extract_features
from helpers.params import schema
from helpers.training import distributed, frozen, frozencache
from helpers.training.batches import loader_workers
from helpers.training.config import TrainConfig
from helpers.training import lrfind
from helpers.training.optim import (
    make_optimizer,
    make_scheduler,
    set_bn_eval,
    set_trainable,
    warmup_cosine,
)
from helpers.training.state import Cycle, Early


def enter_stage(c: Cycle, stage: str, n_train: int, train_images, val_images,
                train_labels: list[int] | None = None) -> None:
    """On a stage change: what trains, a fresh optimizer and schedule (or the resumed ones), cached features."""
    if stage == c.stage:
        return
    c.stage = stage
    cfg, head_only = c.cfg, stage == "head"
    steps_per_epoch = stage_steps(stage, n_train, cfg.batch_size)
    set_trainable(c.model, cfg.arch, stage, cfg.unfreeze)
    if cfg.freeze_early and c.early is None:
        c.early = frozen_early(c, train_images, val_images)
    if c.early is not None:
        frozen.freeze(c.model, cfg.arch, c.early.rest.k)
    if stage == "full":  # DDP registers only what trains now, so wrap after set_trainable
        net = c.early.rest if c.early is not None else c.model
        c.forward = compiled(distributed.wrap(net, c.device), cfg, c.device, c.progress)
    if head_only and c.feats is None:
        c.feats = head_features(c, train_images, val_images)
    c.optimizer = make_optimizer(c.model, cfg, head_only, stage_lr(c, stage, train_images, val_images, train_labels))
    total = (cfg.head_epochs if head_only else cfg.epochs) * steps_per_epoch
    if head_only:
        c.scheduler = torch.optim.lr_scheduler.LambdaLR(c.optimizer, warmup_cosine(total, 0))
    else:
        c.scheduler = make_scheduler(c.optimizer, cfg, total, int(cfg.warmup_epochs * steps_per_epoch))
    if c.resume and c.resume["state"]["epoch"] > 0 and c.resume.get("stage") == stage:
        c.optimizer.load_state_dict(c.resume["optimizer"])
        c.scheduler.load_state_dict(c.resume["scheduler"])


def stage_lr(c: Cycle, stage: str, train_images, val_images, train_labels) -> float:
    """The head's learning rate in this stage: `lr`, or with lr=auto the range test's suggestion (run once).

    The head stage's test (cheap, on cached features) sets both stages' rate; lr_find=both runs a second test on
    the network stage. The tests are kept in the cycle's state, so a resumed cycle does not run them again.
    """
    cfg = c.cfg
    if cfg.lr != "auto":
        return float(cfg.lr)
    tests = c.state.setdefault("lr_tests", {})
    if "head" not in tests:
        if c.feats is None:
            c.feats = head_features(c, train_images, val_images)
        tests["head"] = lrfind.head_test(c.model, cfg, c.feats[0], torch.as_tensor(train_labels),
                                         lambda: make_optimizer(c.model, cfg, True, 1.0), c.criterion,
                                         cfg.seed + c.number, c.device,
                                         batch_size=cfg.batch_size * distributed.world_size())  # global batches
        _say(c, "head", tests["head"])
    if stage == "full" and cfg.lr_find == "both" and "full" not in tests:
        tests["full"] = network_range_test(c, train_images, train_labels)
        _say(c, "network", tests["full"])
    return float(tests["full" if stage == "full" and "full" in tests else "head"]["suggestion"])


def network_range_test(c: Cycle, train_images, train_labels: list[int]) -> dict:
    """The range test on the network stage: its loader, loss, optimiser groups and frozen BatchNorm."""
    from helpers.training import loop
    cfg, device = c.cfg, c.device
    loader = loop.stage_loader(c, train_images, train_labels)
    norm, micro = loop.stage_norm(c), c.state.get("micro_batch", 0) or cfg.batch_size
    scaler_state = c.scaler.state_dict()

    def step(forward, x, y, optimizer) -> float:
        c.model.train()
        if cfg.freeze_bn:
            set_bn_eval(c.model)
        return loop.train_step(forward, norm, x.to(device), y.to(device), micro, optimizer, c.scaler, c.criterion,
                               device)[0]
    try:
        return lrfind.network_test(c.model, c.forward, loader, lambda: make_optimizer(c.model, cfg, False, 1.0),
                                   step)
    finally:
        c.scaler.load_state_dict(scaler_state)


def _say(c: Cycle, stage: str, test: dict) -> None:
    if c.progress:
        print(f"lr=auto: {stage} range test over {test['steps']} steps suggests {test['suggestion']:.3g} "
              f"({test['rule']})", flush=True)


def stage_steps(stage: str, n_train: int, batch_size: int) -> int:
    """Optimizer steps per epoch of a stage, on every process.

    The network stage: each of N processes steps through its 1/N share (DistributedSampler) in batches of
    `batch_size`. The head stage: every process runs the whole of it on all the cached features, in global
    batches of N × batch_size, so its schedule, steps and head equal one process's at the same global batch.
    """
    world = distributed.world_size()
    if stage == "head":
        return max(1, math.ceil(n_train / (batch_size * world)))
    return max(1, math.ceil(math.ceil(n_train / world) / batch_size))


def head_features(c: Cycle, train_images, val_images) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's inputs, computed once: pooled features of the frozen backbone for train and val."""
    if c.early is not None and c.early.pooled is not None:  # kept with the early output (frozencache)
        return tuple(p.to(c.device) for p in c.early.pooled)
    if c.early is not None and c.early.cached:  # the backbone's rest on the cached early output
        return tuple(frozen.pooled_features(c.early.rest, f, c.device) for f in (c.early.train, c.early.val))
    workers = loader_workers(c.cfg, c.device)
    return (extract_features(c.model, c.cfg.arch, c.norm, train_images, c.device, workers=workers),
            extract_features(c.model, c.cfg.arch, c.norm, val_images, c.device, workers=workers))


def frozen_early(c: Cycle, train_images, val_images) -> Early | None:
    """freeze_early: how many units to freeze and, when augmentation and memory allow, their cached output."""
    cfg = c.cfg
    k = frozen.early_units(c.model, cfg.arch, cfg.image_size, cfg.freeze_stride)
    if k == 0:
        return None
    mirror = cfg.augment == "flip"
    n = len(train_images) * (2 if mirror else 1) + len(val_images)
    if cfg.augment == "crop" or not frozen.fits(frozen.cache_bytes(c.model, cfg.arch, k, cfg.image_size, n)):
        return Early(frozen.Rest(c.model, cfg.arch, k, cached=False))  # frozen, but run on every image
    workers = loader_workers(cfg, c.device)
    t0 = time.perf_counter()
    feats, pooled, kept = [], [], 0
    for imgs, flip in ((train_images, False), (train_images, True), (val_images, False)):
        if flip > mirror:
            continue
        found = frozencache.load(c.model, cfg.arch, k, imgs, c.device, flip)  # computed by 02, or an earlier cycle
        if found is None:
            out = frozen.early_features(c.model, cfg.arch, k, c.norm, imgs, c.device, flip=flip, workers=workers)
            if distributed.is_main():
                frozencache.save(c.model, cfg.arch, k, imgs, c.device, out, flip)
            found = (out, None)
        else:
            kept += len(imgs)
        feats.append(found[0])
        if not flip:
            pooled.append(found[1])
    if c.progress:
        print(f"frozen early layers ({k} units): output cached for {n} images in {time.perf_counter() - t0:.1f}s"
              + (f" ({kept} of them kept from before: data/cache/frozen)" if kept else ""), flush=True)
    train, *rest = feats
    heads = tuple(pooled) if all(p is not None for p in pooled) else None
    return Early(frozen.Rest(c.model, cfg.arch, k), train, rest[0] if mirror else None, rest[-1], heads)


def late_epochs(cfg: TrainConfig) -> int:
    """How many of the network stage's last epochs run with the late freeze (late_freeze's share, rounded down)."""
    return schema.late_epochs(cfg.late_freeze, cfg.epochs) if cfg.freeze_early else 0


def deepen_frozen(c: Cycle, epoch: int) -> None:
    """late_freeze: for the last floor(late_freeze × epochs) epochs of the network stage, the next stage (up to
    stride 2 × freeze_stride) is frozen too and its output, from its weights as trained so far, cached once.

    Idempotent; a resumed cycle past the switch recomputes the same output, since those units have not changed
    since it. Without a cached early output (augment=crop, or too little memory) the deeper units only stop
    learning."""
    cfg, early = c.cfg, c.early
    n = late_epochs(cfg)
    if not n or early is None or epoch - cfg.head_epochs <= cfg.epochs - n:
        return
    k = frozen.early_units(c.model, cfg.arch, cfg.image_size, 2 * cfg.freeze_stride)
    if k <= early.rest.k:
        return
    t0 = time.perf_counter()
    frozen.freeze(c.model, cfg.arch, k)
    if early.cached:
        maps = [None if m is None else frozen.advance(c.model, cfg.arch, early.rest.k, k, m, c.device)
                for m in (early.train, early.mirrored, early.val)]
        c.early = Early(frozen.Rest(c.model, cfg.arch, k), *maps)
    else:
        c.early = Early(frozen.Rest(c.model, cfg.arch, k, cached=False))
    c.forward = compiled(distributed.wrap(c.early.rest, c.device), cfg, c.device, False)
    c.loader = None  # rebuilt over the new output
    if c.progress:
        print(f"late freeze from epoch {epoch}: {k} units frozen (up to stride {2 * cfg.freeze_stride})"
              + (f", their output cached in {time.perf_counter() - t0:.1f}s" if early.cached else ""), flush=True)


def compiled(model: nn.Module, cfg: TrainConfig, device: torch.device, progress: bool) -> nn.Module:
    """torch.compile'd forward with compile=True on CUDA; elsewhere compiling costs more than it saves."""
    if not cfg.compile:
        return model
    if device.type != "cuda":
        if progress:
            print(f"compile=True applies on CUDA; on {device.type} the network runs as it is", flush=True)
        return model
    return torch.compile(model)
