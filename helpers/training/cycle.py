"""Fine-tuning cycles: the head on cached features, then the network; a checkpoint every epoch, a ledger row a cycle.

`run_cycle` is the whole story of a cycle as named steps; checkpoints live in helpers/checkpoints.py, the ledgers
in helpers/ledger.py and inference (validation, 04, 05) in helpers/inference.py.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from helpers.data import imagecache
from helpers.data.imagecache import CachedImages
from helpers.models.inference import Normalizer, normalizer_for, predict_proba
from helpers.models.inference import autocast as _autocast
from helpers.models.zoo import (
    arch_spec,
    backbone_blocks,
    build_model,
    head_of,
    load_weights,
)
from helpers.params import schema as params
from helpers.training import checkpoints, distributed, frozen, ledger, tracking
from helpers.training.checkpoints import CheckpointError
from helpers.training.checkpoints import load as load_checkpoint
from helpers.training.ledger import (
    CYCLE_COLUMNS,
    HISTORY_COLUMNS,
    fill_test_accuracy,
    read_cycles,
    read_history,
)
from helpers.utils.devices import device_name
from helpers.utils.progress import bar as progress_bar

__all__ = ["TrainConfig", "TrainError", "CheckpointError", "config_from", "validate_config", "run_cycle",
           "seed_everything", "Normalizer", "predict_proba", "extract_features", "load_checkpoint",
           "read_cycles", "read_history", "fill_test_accuracy", "CYCLE_COLUMNS", "HISTORY_COLUMNS"]


class TrainError(ValueError):
    """Training cannot start as asked; the message says why and what to do."""


_DEFAULTS = params.defaults("03_train")  # one source of truth: the schema


@dataclass
class TrainConfig:
    """Everything that decides a training cycle; saved inside every checkpoint as plain types."""

    arch: str
    classes: list[str]
    image_size: int
    batch_size: int = _DEFAULTS["batch_size"]
    epochs: int = _DEFAULTS["epochs"]
    head_epochs: int = _DEFAULTS["head_epochs"]
    weights: str = _DEFAULTS["weights"]
    init: str = _DEFAULTS["init"]
    lr: float = _DEFAULTS["lr"]
    backbone_lr_scale: float = _DEFAULTS["backbone_lr_scale"]
    weight_decay: float = 0.01
    label_smoothing: float = _DEFAULTS["label_smoothing"]
    warmup_epochs: float = 0.5
    freeze_bn: bool = _DEFAULTS["freeze_bn"]
    freeze_early: bool = _DEFAULTS["freeze_early"]
    augment: str = _DEFAULTS["augment"]
    patience: int = _DEFAULTS["patience"]
    unfreeze: str = _DEFAULTS["unfreeze"]
    schedule: str = _DEFAULTS["schedule"]
    deterministic: bool = _DEFAULTS["deterministic"]
    seed: int = _DEFAULTS["seed"]
    device: str = "cpu"
    workers: int = _DEFAULTS["workers"]
    keep_last: int = _DEFAULTS["keep_last"]
    compile: bool = _DEFAULTS["compile"]
    tracking: str = _DEFAULTS["tracking"]
    extra: dict = field(default_factory=dict)

    def resume_key(self) -> dict:
        """The fields that must match for an interrupted cycle to be resumed rather than restarted."""
        d = asdict(self)
        for where_or_housekeeping in ("device", "workers", "keep_last", "compile", "tracking"):
            d.pop(where_or_housekeeping)
        return d


def config_from(ctx: Any, classes: list[str], image_size: int) -> TrainConfig:
    """TrainConfig from a notebook's validated context: every field the context has, by name."""
    values = {f.name: getattr(ctx, f.name) for f in fields(TrainConfig)
              if f.name not in ("classes", "image_size", "extra") and hasattr(ctx, f.name)}
    values.update(classes=list(classes), image_size=int(image_size))
    if "device" in values:
        values["device"] = str(values["device"])
    if "unfreeze" in values:
        values["unfreeze"] = str(values["unfreeze"])
    return TrainConfig(**values)


def validate_config(cfg: TrainConfig) -> None:
    """Reject impossible values with one sentence each."""
    arch_spec(cfg.arch)
    if int(cfg.batch_size) < 1:
        raise TrainError(f"batch_size={cfg.batch_size}: must be an integer ≥ 1.")
    if int(cfg.epochs) < 0:
        raise TrainError(f"epochs={cfg.epochs}: must be an integer ≥ 0.")
    if cfg.init not in ("weights", "best", "last") and not re.fullmatch(r"cycle:[1-9]\d*", str(cfg.init)):
        raise TrainError(f"init={cfg.init!r}: use weights, best, last or cycle:<N>.")
    if cfg.augment not in ("none", "flip", "crop"):
        raise TrainError(f"augment={cfg.augment!r}: use none, flip or crop.")
    if not (str(cfg.unfreeze) == "all" or str(cfg.unfreeze).isdigit()):
        raise TrainError(f"unfreeze={cfg.unfreeze!r}: use all, or the number of top backbone blocks to train.")
    if cfg.schedule not in ("cosine", "onecycle"):
        raise TrainError(f"schedule={cfg.schedule!r}: use cosine or onecycle.")


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed python, numpy and torch; return the generator that orders the batches.

    deterministic=True also makes CUDA deterministic: cuDNN autotuning off, deterministic cuDNN kernels and the
    cuBLAS workspace setting that deterministic matrix products need (see README for what it costs).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this when its handle is created; setting it before the first CUDA matmul is enough.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def make_transform(augment: str, size: int):
    """Train-time augmentation on uint8 CHW tensors (torchvision transforms v2), or None."""
    from torchvision.transforms import v2
    if augment == "flip":
        return v2.RandomHorizontalFlip()
    if augment == "crop":
        return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True)])
    return None


def set_bn_eval(model: nn.Module) -> None:
    """Freeze BatchNorm running statistics (small batches make them noisy; see ASSETS.md)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def extract_features(model: nn.Module, arch: str, norm: Normalizer, images: np.ndarray,
                     device: torch.device, batch_size: int = 64, workers: int = 0) -> torch.Tensor:
    """Pooled backbone features (the head's input) of every image, computed once."""
    spec = arch_spec(arch)
    head = getattr(model, spec.head)
    setattr(model, spec.head, nn.Identity())
    try:
        model.eval()
        feats = []
        for x in imagecache.batches(images, batch_size, device, workers):  # decoded by workers beyond the cache
            with _autocast(device):
                feats.append(model(norm(x).contiguous(memory_format=torch.channels_last)).float())
        return torch.cat(feats)
    finally:
        setattr(model, spec.head, head)


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warmup then cosine decay to zero, as a factor of the base learning rate."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def set_trainable(model: nn.Module, arch: str, stage: str, unfreeze: str) -> None:
    """Head only in stage 1; in stage 2 the whole network or its top `unfreeze` blocks, plus the head."""
    for p in model.parameters():
        p.requires_grad_(stage == "full" and str(unfreeze) == "all")
    if stage == "full" and str(unfreeze) != "all":
        blocks = backbone_blocks(model, arch)
        for block in blocks[len(blocks) - int(unfreeze):] if int(unfreeze) else []:
            for p in block.parameters():
                p.requires_grad_(True)
    for p in head_of(model, arch).parameters():
        p.requires_grad_(True)


def _optimizer(model: nn.Module, cfg: TrainConfig, head_only: bool) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, with a lower learning rate for the backbone than for the head."""
    head_params = list(head_of(model, cfg.arch).parameters())
    head_ids = {id(p) for p in head_params}
    groups = [{"params": head_params, "lr": cfg.lr}]
    backbone = [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad]
    if not head_only and backbone:
        groups.append({"params": backbone, "lr": cfg.lr * cfg.backbone_lr_scale})
    # The fused kernel (CPU and CUDA) does the whole update in one pass: 17 → 4 ms a step for Lite0 on 2 CPU cores.
    fused = next(iter(head_params)).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int, warm: int):
    """Warmup then cosine (LambdaLR), or one-cycle, stepped once per optimizer step."""
    if cfg.schedule == "onecycle" and total > 1:
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=total, pct_start=0.3)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, warm))


def loader_workers(cfg: TrainConfig, device: torch.device) -> int:
    """DataLoader workers: as given, or (workers=-1) none on CPU, where the cores train, and cores-1 on a GPU."""
    if cfg.workers >= 0:
        return cfg.workers
    # N data-parallel processes on one machine share its cores.
    return 0 if device.type == "cpu" else min(8, max(0, (os.cpu_count() or 1) // distributed.local_world_size() - 1))


def _train_loader(cfg: TrainConfig, images, labels: list[int], device: torch.device, generator: torch.Generator,
                  seed: int, dataset: Dataset | None = None) -> DataLoader:
    """The training DataLoader: this process's share through a seeded DistributedSampler (one replica alone).

    `dataset` replaces the images (the frozen early units' cached output, in memory: read without workers).
    """
    workers = 0 if dataset is not None else loader_workers(cfg, device)
    if dataset is None:
        dataset = CachedImages(images, labels, make_transform(cfg.augment, cfg.image_size))
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=distributed.sampler(dataset, seed),
                      generator=generator, **imagecache.loader_options(workers, device))


def _compiled(model: nn.Module, cfg: TrainConfig, device: torch.device, progress: bool) -> nn.Module:
    """torch.compile'd forward with compile=True on CUDA; elsewhere compiling costs more than it saves."""
    if not cfg.compile:
        return model
    if device.type != "cuda":
        if progress:
            print(f"compile=True applies on CUDA; on {device.type} the network runs as it is", flush=True)
        return model
    return torch.compile(model)


def _rng_state() -> dict:
    """Torch RNG states, so a resumed cycle draws the same numbers."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    """Restore what `_rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------------------
# A cycle, step by step
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Cycle:
    """What one cycle carries from step to step."""

    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    number: int
    started_at: str
    init_from: int | str
    state: dict
    resume: dict | None = None
    model: nn.Module | None = None
    norm: Normalizer | None = None
    generator: torch.Generator | None = None
    scaler: Any = None
    criterion: Any = None
    optimizer: Any = None
    scheduler: Any = None
    stage: str | None = None
    feats: tuple | None = None
    early: Any = None  # freeze_early: the frozen units' count and, when they fit in memory, their cached output
    forward: Any = None  # the network as the full stage calls it: DDP- and/or torch.compile-wrapped
    loader: Any = None  # one DataLoader per cycle, so persistent workers live across epochs
    progress: bool = True
    stopped_early: bool = False
    tracker: Any = None  # helpers.tracking: a no-op unless tracking=mlflow|tensorboard


def run_cycle(cfg: TrainConfig, run_dir: Path, train_images: np.ndarray, train_labels: list[int],
              val_images: np.ndarray, val_labels: list[int], device: torch.device,
              progress: bool = True) -> dict:
    """Train one cycle (or resume an interrupted one) and append its row to cycles.csv."""
    run_dir = Path(run_dir)
    validate_config(cfg)
    check_splits(cfg.classes, train_labels, val_labels, run_dir)
    last, resume, abandoned = _read_last(cfg, run_dir)
    start = _initial_weights(cfg, run_dir) if resume is None else None  # every check before any write
    run_best = checkpoints.run_best_val(run_dir) if resume is None else None
    if distributed.is_main():
        _record_unrecorded(run_dir, last, abandoned, cfg.keep_last)
    distributed.barrier()  # every rank numbers the cycle from the same ledger
    c = _open_cycle(cfg, run_dir, device, last, resume, start, run_best, progress)
    c.tracker = tracking.start(cfg.tracking if distributed.is_main() else "none", run_dir, c.number, asdict(cfg))
    _train_epochs(c, train_images, train_labels, val_images, val_labels)
    return _close_cycle(c)


def check_splits(classes: list[str], train_labels: list[int], val_labels: list[int], run_dir: Path) -> None:
    """One sentence, before any write, when split.csv cannot train: no train or val images, a class never trained."""
    split_csv = Path(run_dir) / "split.csv"
    for name, labels in (("train", train_labels), ("val", val_labels)):
        if len(labels) == 0:
            raise TrainError(f"{split_csv} has no {name} images; rerun 02 (it carves a val split from train when "
                             "a dataset has none) instead of editing split.csv by hand.")
    untrained = sorted(set(range(len(classes))) - set(int(y) for y in train_labels))
    if untrained:
        raise TrainError(f"{split_csv}: class(es) {[classes[i] for i in untrained]} have no train images, so the "
                         "model could never predict them; rerun 02 without keep_given_split or add train images.")


def _read_last(cfg: TrainConfig, run_dir: Path) -> tuple[dict | None, dict | None, dict | None]:
    """checkpoints/last.pt, and whether it is a cycle to resume or an interrupted one to set aside."""
    path = checkpoints.checkpoint_dir(run_dir) / "last.pt"
    if not path.exists():
        return None, None, None
    last = checkpoints.load(path)
    if last["finished"]:
        return last, None, None
    if last["config_key"] == cfg.resume_key():
        return last, last, None
    return last, None, last


def _initial_weights(cfg: TrainConfig, run_dir: Path) -> tuple[dict | None, int | str]:
    """The state dict a new cycle starts from (None: the `weights` option) and the cycle it came from."""
    if cfg.init == "weights":
        return None, ""
    path = checkpoints.resolve(run_dir, cfg.init)
    ckpt = checkpoints.load(path)
    if ckpt["config"]["arch"] != cfg.arch:
        raise TrainError(f"init={cfg.init}: {path} holds arch {ckpt['config']['arch']}, not {cfg.arch}; "
                         "use the same arch or init=weights.")
    if list(ckpt["config"]["classes"]) != list(cfg.classes):
        raise TrainError(f"init={cfg.init}: {path}'s classes {ckpt['config']['classes']} differ "
                         f"from this split's {cfg.classes}; use init=weights for a new dataset.")
    return ckpt["model"], int(ckpt["cycle"])


def _record_unrecorded(run_dir: Path, last: dict | None, abandoned: dict | None, keep_last: int) -> None:
    """A cycle that ran is a row: one killed after its last checkpoint, or one interrupted and never resumed."""
    if last is None or (not last["finished"] and abandoned is None):
        return
    cycle = int(last["cycle"])
    if cycle not in ledger.recorded_cycles(run_dir):
        if abandoned is not None:
            done = int(abandoned["state"]["epoch"])
            row = _ledger_row(TrainConfig(**abandoned["config"]), cycle, abandoned["started_at"],
                              abandoned["state"], abandoned["config"]["device"], "", False,
                              f"interrupted after {done} epoch(s) and not resumed: 03 ran again with other "
                              "parameters", abandoned.get("init_from", ""))
        else:
            row = last.get("ledger_row") or {}
        if row:
            ledger.append_cycle(run_dir, row)
    checkpoints.keep_cycle_last(run_dir, cycle)
    checkpoints.prune_last(run_dir, keep_last)


def _open_cycle(cfg: TrainConfig, run_dir: Path, device: torch.device, last: dict | None, resume: dict | None,
                start: tuple | None, run_best: float | None, progress: bool) -> Cycle:
    """Number the cycle, seed it, build the model where it starts and put it on the device."""
    if resume:
        number, started_at, init_from = int(resume["cycle"]), resume["started_at"], resume.get("init_from", "")
        state = dict(resume["state"])
        state.setdefault("run_best_val", -1.0)
    else:
        recorded = ledger.recorded_cycles(run_dir)
        number = max([0, *recorded, int(last["cycle"]) if last else 0]) + 1
        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        init_from = start[1]
        state = {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "since_best": 0, "seconds": 0.0,
                 "run_best_val": run_best}
        if distributed.is_main():  # epochs of a killed attempt whose checkpoint never landed
            ledger.drop_history_after(run_dir, number, 0)
    c = Cycle(cfg=cfg, run_dir=run_dir, device=device, number=number, started_at=started_at, init_from=init_from,
              state=state, resume=resume, progress=progress)
    c.generator = seed_everything(cfg.seed + number, cfg.deterministic)  # before the new head is initialised
    c.model = distributed.sync_batchnorm(_build(cfg, resume, start), device, cfg.freeze_bn)
    c.norm = normalizer_for(cfg.arch).to(device)
    # channels_last is faster on CUDA and, with oneDNN, about 1.5x faster on CPU too (benchmarks/).
    c.model.to(device, memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic  # autotuning picks kernels by timing: not repeatable
    # fp16 needs a gradient scaler (kept across epochs and checkpoints); bf16 and CPU do not.
    c.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    c.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if resume:
        _set_rng_state(resume["rng"])
        c.generator.set_state(resume["rng"]["loader"])
        if resume.get("scaler"):
            c.scaler.load_state_dict(resume["scaler"])
        if distributed.is_main():
            ledger.drop_history_after(run_dir, number, state["epoch"])
    return c


def _build(cfg: TrainConfig, resume: dict | None, start: tuple | None) -> nn.Module:
    """The network with the weights this cycle starts from: resumed, continued, or `weights`."""
    if resume:
        model = build_model(cfg.arch, len(cfg.classes), "none")
        model.load_state_dict(resume["model"])
        return model
    state, origin = start
    if state is None:
        return build_model(cfg.arch, len(cfg.classes), cfg.weights)
    model = build_model(cfg.arch, len(cfg.classes), "none")
    load_weights(model, cfg.arch, state, f"cycle {origin}'s checkpoint")
    return model


def _train_epochs(c: Cycle, train_images: np.ndarray, train_labels: list[int], val_images: np.ndarray,
                  val_labels: list[int]) -> None:
    """Epochs until the cycle's count or early stopping; each ends with its history row and checkpoints."""
    total_epochs = c.cfg.head_epochs + c.cfg.epochs
    while c.state["epoch"] < total_epochs:
        epoch = c.state["epoch"] + 1
        _enter_stage(c, "head" if epoch <= c.cfg.head_epochs else "full", len(train_labels), train_images,
                     val_images)
        t0 = time.perf_counter()
        train_loss, train_acc, lr = _fit_epoch(c, epoch, train_images, train_labels)
        # Rank 0 validates; every rank takes its numbers, so best-epoch and early-stop decisions agree.
        val_loss, val_acc = _validate(c, val_images, val_labels) if distributed.is_main() else (0.0, 0.0)
        val_loss, val_acc = distributed.broadcast_floats([val_loss, val_acc], c.device)
        seconds = time.perf_counter() - t0
        improved, run_best = _update_state(c, epoch, val_acc, seconds)
        if distributed.is_main():
            ledger.append_history(c.run_dir, {"cycle": c.number, "epoch": epoch, "train_loss": round(train_loss, 5),
                                          "train_accuracy": round(train_acc, 5), "val_loss": round(val_loss, 5),
                                          "val_accuracy": round(val_acc, 5), "lr": f"{lr:.3g}",
                                          "seconds": round(seconds, 2), "stage": c.stage})
            c.tracker.log_epoch({"train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
                                 "val_accuracy": val_acc, "lr": lr, "seconds": seconds}, step=epoch)
        if c.progress:
            print(f"cycle {c.number} epoch {epoch}/{total_epochs} [{c.stage}] train_loss {train_loss:.4f} "
                  f"train_acc {train_acc:.4f} val_loss {val_loss:.4f} val_acc {val_acc:.4f} ({seconds:.1f}s)"
                  + (" · the run's new best" if run_best else ""), flush=True)
        c.stopped_early = bool(c.cfg.patience and c.state["since_best"] >= c.cfg.patience)
        finished = epoch >= total_epochs or c.stopped_early
        if distributed.is_main():
            _save_epoch(c, epoch, val_acc, improved, run_best, finished)
        if c.stopped_early:
            break
    if total_epochs == 0 and distributed.is_main():  # nothing trained: the cycle still leaves its model and row
        _save_last(c, finished=True)


def _enter_stage(c: Cycle, stage: str, n_train: int, train_images: np.ndarray, val_images: np.ndarray) -> None:
    """On a stage change: what trains, a fresh optimizer and schedule (or the resumed ones), cached features."""
    if stage == c.stage:
        return
    c.stage = stage
    cfg, head_only = c.cfg, stage == "head"
    # Each of N processes sees a 1/N share of the images per epoch (DistributedSampler).
    steps_per_epoch = max(1, math.ceil(math.ceil(n_train / distributed.world_size()) / cfg.batch_size))
    set_trainable(c.model, cfg.arch, stage, cfg.unfreeze)
    if cfg.freeze_early and c.early is None:
        c.early = _early(c, train_images, val_images)
    if c.early is not None:
        frozen.freeze(c.model, cfg.arch, c.early.rest.k)
    if stage == "full":  # DDP registers only what trains now, so wrap after set_trainable
        net = c.early.rest if c.early is not None else c.model
        c.forward = _compiled(distributed.wrap(net, c.device), cfg, c.device, c.progress)
    c.optimizer = _optimizer(c.model, cfg, head_only)
    total = (cfg.head_epochs if head_only else cfg.epochs) * steps_per_epoch
    if head_only:
        c.scheduler = torch.optim.lr_scheduler.LambdaLR(c.optimizer, _lr_lambda(total, 0))
    else:
        c.scheduler = _scheduler(c.optimizer, cfg, total, int(cfg.warmup_epochs * steps_per_epoch))
    if c.resume and c.resume["state"]["epoch"] > 0 and c.resume.get("stage") == stage:
        c.optimizer.load_state_dict(c.resume["optimizer"])
        c.scheduler.load_state_dict(c.resume["scheduler"])
    if head_only and c.feats is None:
        if c.early is not None and c.early.train is not None:  # the backbone's rest on the cached early output
            c.feats = tuple(frozen.pooled_features(c.early.rest, f, c.device) for f in (c.early.train, c.early.val))
        else:
            workers = loader_workers(cfg, c.device)
            c.feats = (extract_features(c.model, cfg.arch, c.norm, train_images, c.device, workers=workers),
                       extract_features(c.model, cfg.arch, c.norm, val_images, c.device, workers=workers))


@dataclass
class Early:
    """The frozen early units (`rest` runs the network after them) and their cached output, when cached."""

    rest: frozen.Rest
    train: torch.Tensor | None = None
    mirrored: torch.Tensor | None = None
    val: torch.Tensor | None = None


def _early(c: Cycle, train_images, val_images) -> Early | None:
    """freeze_early: how many units to freeze and, when augmentation and memory allow, their cached output."""
    cfg = c.cfg
    k = frozen.early_units(c.model, cfg.arch, cfg.image_size)
    if k == 0:
        return None
    mirror = cfg.augment == "flip"
    n = len(train_images) * (2 if mirror else 1) + len(val_images)
    if cfg.augment == "crop" or not frozen.fits(frozen.cache_bytes(c.model, cfg.arch, k, cfg.image_size, n)):
        return Early(frozen.Rest(c.model, cfg.arch, k, cached=False))  # frozen, but run on every image
    workers = loader_workers(cfg, c.device)
    t0 = time.perf_counter()
    feats = [frozen.early_features(c.model, cfg.arch, k, c.norm, imgs, c.device, flip=flip, workers=workers)
             for imgs, flip in ((train_images, False), (train_images, True), (val_images, False)) if flip <= mirror]
    if c.progress:
        print(f"frozen early layers ({k} units): output cached for {n} images in {time.perf_counter() - t0:.1f}s",
              flush=True)
    train, *rest = feats
    return Early(frozen.Rest(c.model, cfg.arch, k), train, rest[0] if mirror else None, rest[-1])


def _fit_epoch(c: Cycle, epoch: int, train_images: np.ndarray, train_labels: list[int]) -> tuple[float, float, float]:
    """One training epoch of the current stage: loss, accuracy, learning rate at its end."""
    if c.stage == "head":
        return _head_epoch(c.model, c.cfg, c.feats[0], torch.as_tensor(train_labels), c.optimizer, c.scheduler,
                           c.criterion, c.generator, c.device)
    cached = c.early is not None and c.early.train is not None
    if c.loader is None:
        dataset = frozen.EarlyFeatureSet(c.early.train, train_labels, c.early.mirrored) if cached else None
        c.loader = _train_loader(c.cfg, train_images, train_labels, c.device, c.generator, c.cfg.seed + c.number,
                                 dataset)
    c.loader.sampler.set_epoch(epoch)  # a new order every epoch, the same on every rank and on resume
    norm = nn.Identity() if cached else c.norm  # cached early output is already past the normalisation
    loss, acc, lr, micro = _full_epoch(c.forward, c.cfg, norm, train_images, train_labels, c.optimizer,
                                       c.scheduler, c.scaler, c.criterion, c.generator, c.device, epoch,
                                       c.progress, c.state.get("micro_batch", 0), loader=c.loader)
    c.state["micro_batch"] = micro
    return loss, acc, lr


def _validate(c: Cycle, val_images: np.ndarray, val_labels: list[int]) -> tuple[float, float]:
    """Validation loss and accuracy (on cached features in the head stage)."""
    y_val = torch.as_tensor(val_labels)
    if c.stage == "head":
        with torch.no_grad():
            logits = head_of(c.model, c.cfg.arch).eval()(c.feats[1]).cpu()
        return float(nn.functional.cross_entropy(logits, y_val)), float((logits.argmax(1) == y_val).float().mean())
    if c.early is not None and c.early.val is not None:
        probs = torch.from_numpy(frozen.rest_proba(c.early.rest, c.early.val, c.device))
    else:
        probs = torch.from_numpy(predict_proba(c.model, c.norm, val_images, c.device,
                                               workers=loader_workers(c.cfg, c.device)))
    return (float(nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y_val)),
            float((probs.argmax(1) == y_val).float().mean()))


def _update_state(c: Cycle, epoch: int, val_acc: float, seconds: float) -> tuple[bool, bool]:
    """Count the epoch; is it the cycle's best so far, and the run's best across all cycles?"""
    s = c.state
    s["seconds"] += seconds
    s["epoch"] = epoch
    improved = val_acc > s["best_val"]
    if improved:
        s.update(best_val=val_acc, best_epoch=epoch, since_best=0)
    else:
        s["since_best"] += 1
    run_best = val_acc > s["run_best_val"]  # strictly better: a tie keeps the earlier cycle's model
    if run_best:
        s["run_best_val"] = val_acc
    return improved, run_best


def _common_payload(c: Cycle) -> dict:
    """What every checkpoint of this cycle holds besides its own fields."""
    return {"config": asdict(c.cfg), "config_key": c.cfg.resume_key(), "cycle": c.number,
            "started_at": c.started_at, "init_from": c.init_from, "model": checkpoints.model_state(c.model)}


def _save_epoch(c: Cycle, epoch: int, val_acc: float, improved: bool, run_best: bool, finished: bool) -> None:
    """The cycle's best (and the run's best) when improved, then last.pt, which a resume starts from."""
    if improved:
        checkpoints.save_best(c.run_dir, c.number, {**_common_payload(c), "epoch": epoch, "val_accuracy": val_acc,
                                                    "finished": True}, run_best)
    _save_last(c, finished)


def _save_last(c: Cycle, finished: bool) -> None:
    """checkpoints/last.pt: the full training state; a finished one also carries the cycle's ledger row."""
    payload = {**_common_payload(c), "finished": finished, "state": dict(c.state), "stage": c.stage,
               "rng": {**_rng_state(), "loader": c.generator.get_state()}}
    if c.optimizer is not None:
        payload.update(optimizer=c.optimizer.state_dict(), scheduler=c.scheduler.state_dict(),
                       scaler=c.scaler.state_dict())
    if finished:
        # Written with the checkpoint so that a kill before the ledger append still yields the row next run.
        payload["ledger_row"] = _final_row(c)
    checkpoints.save(checkpoints.checkpoint_dir(c.run_dir) / "last.pt", payload)


def _final_row(c: Cycle) -> dict:
    """The cycle's row in cycles.csv."""
    name = device_name(c.device)
    if distributed.world_size() > 1:
        name = f"{distributed.world_size()} × {name}"
    return _ledger_row(c.cfg, c.number, c.started_at, c.state, str(c.device), name,
                       c.stopped_early, _oom_note(c.cfg, c.state.get("micro_batch", 0)), c.init_from)


def _close_cycle(c: Cycle) -> dict:
    """Append the row, keep the cycle's last.pt in its folder, prune older ones (never a best)."""
    row = _final_row(c)
    if distributed.is_main():
        ledger.append_cycle(c.run_dir, row)
        if c.tracker is not None:
            c.tracker.finish(row)
        checkpoints.keep_cycle_last(c.run_dir, c.number)
        checkpoints.prune_last(c.run_dir, c.cfg.keep_last)
    distributed.barrier()  # no rank leaves before the row is written
    return row


def _ledger_row(cfg: TrainConfig, cycle: int, started_at: str, state: dict, device: str, name: str,
                stopped_early: bool, note: str, init_from: int | str = "") -> dict:
    """One row of cycles.csv from a cycle's configuration and final state."""
    best_val = round(state["best_val"], 5) if state["best_val"] >= 0 else ""
    return {"cycle": cycle, "started_at": started_at, "device": device, "device_name": name,
            "arch": cfg.arch, "image_size": cfg.image_size, "epochs": max(0, state["epoch"] - cfg.head_epochs),
            "batch_size": cfg.batch_size, "best_epoch": state["best_epoch"] or "", "best_val_accuracy": best_val,
            "test_accuracy": "", "seconds": round(state["seconds"], 1), "init": cfg.init, "weights": cfg.weights,
            "head_epochs": min(state["epoch"], cfg.head_epochs), "lr": cfg.lr, "stopped_early": stopped_early,
            "note": note, "init_from": init_from}


def _head_epoch(model, cfg, feats, labels, optimizer, scheduler, criterion, generator, device):
    """One epoch of the head on cached backbone features."""
    head = head_of(model, cfg.arch).train()
    order = torch.randperm(len(labels), generator=generator)
    total_loss, correct = 0.0, 0
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        x, y = feats[idx.to(feats.device)], labels[idx].to(device)
        x = nn.functional.dropout(x, p=0.2, training=True)
        logits = head(x)
        loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(order), correct / len(order), scheduler.get_last_lr()[0]


def _oom_note(cfg: TrainConfig, micro: int) -> str:
    """The ledger's note when out-of-memory forced micro-batches."""
    if not micro or micro >= cfg.batch_size:
        return ""
    steps = math.ceil(cfg.batch_size / micro)
    return (f"out of memory at batch {cfg.batch_size}: trained in micro-batches of {micro} with {steps} "
            f"accumulation steps (effective batch {cfg.batch_size})")


def _train_step(model, norm, x, y, micro, optimizer, scaler, criterion, device):
    """One optimizer step over a batch, in micro-batches with gradient accumulation; returns loss and logits."""
    optimizer.zero_grad(set_to_none=True)
    total, outputs = 0.0, []
    for xs, ys in zip(x.split(micro), y.split(micro)):
        with _autocast(device):
            logits = model(norm(xs).contiguous(memory_format=torch.channels_last))
            loss = criterion(logits.float(), ys)
        scaler.scale(loss * (len(ys) / len(y))).backward()
        total += loss.item() * len(ys)
        outputs.append(logits.detach())
    scaler.step(optimizer)
    scaler.update()
    return total / len(y), torch.cat(outputs)


def _full_epoch(model, cfg, norm, images, labels, optimizer, scheduler, scaler, criterion, generator, device,
                epoch, progress, micro: int = 0, loader=None):
    """One epoch of the network over the cached images; halves the micro-batch on out-of-memory and goes on."""
    if loader is None:
        loader = _train_loader(cfg, images, labels, device, generator, cfg.seed)
        loader.sampler.set_epoch(epoch)
    model.train()
    if cfg.freeze_bn:
        set_bn_eval(model)
    total_loss, correct, seen = 0.0, 0, 0
    batches = loader
    if progress:
        # headless, the epoch's own summary line (_train_epochs) is the one line per epoch
        batches = progress_bar(loader, total=len(loader), desc=f"epoch {epoch}", unit="batches", summary=False)
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        while True:
            try:
                loss, logits = _train_step(model, norm, x, y, micro or cfg.batch_size, optimizer, scaler,
                                           criterion, device)
                break
            except torch.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if distributed.world_size() > 1:  # ranks must run the same all-reduces: none can shrink alone
                    raise TrainError(f"out of memory at batch_size={cfg.batch_size} per process with "
                                     f"{distributed.world_size()} processes; use a smaller batch_size.") from None
                current = micro or cfg.batch_size
                if current <= 1:
                    raise TrainError("out of memory even with micro-batches of 1 image; use a smaller "
                                     "image_size or arch.") from None
                micro = current // 2
                print(f"out of memory at micro-batch {current}: continuing with {micro} and gradient "
                      "accumulation", flush=True)
        scheduler.step()
        total_loss += loss * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    total_loss, correct, seen = distributed.all_reduce_sums([total_loss, correct, seen], device)
    return total_loss / max(1, seen), correct / max(1, seen), scheduler.get_last_lr()[0], micro
