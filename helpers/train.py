"""Fine-tuning cycles: the head on cached features, then the network; a checkpoint every epoch, a ledger row a cycle."""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import io
from .devices import device_name
from .imagecache import CachedImages
from .models import arch_spec, build_model, head_of, load_weights
from .progress import bar as progress_bar

CYCLE_COLUMNS = ["cycle", "started_at", "device", "device_name", "arch", "image_size", "epochs",
                 "batch_size", "best_epoch", "best_val_accuracy", "test_accuracy", "seconds",
                 "init", "weights", "head_epochs", "lr", "stopped_early", "note"]
HISTORY_COLUMNS = ["cycle", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "lr", "seconds", "stage"]


class TrainError(ValueError):
    """Training cannot start as asked; the message says why and what to do."""


@dataclass
class TrainConfig:
    """Everything that decides a training cycle; saved inside every checkpoint as plain types."""

    arch: str
    classes: list[str]
    image_size: int
    batch_size: int = 32
    epochs: int = 7
    head_epochs: int = 5
    weights: str = "imagenet"
    init: str = "weights"
    lr: float = 2e-3
    backbone_lr_scale: float = 0.5
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.5
    freeze_bn: bool = True
    augment: str = "flip"
    patience: int = 0
    unfreeze: str = "all"
    schedule: str = "cosine"
    deterministic: bool = False
    seed: int = 42
    device: str = "cpu"
    workers: int = -1
    extra: dict = field(default_factory=dict)

    def resume_key(self) -> dict:
        """The fields that must match for an interrupted cycle to be resumed rather than restarted."""
        d = asdict(self)
        d.pop("device")
        d.pop("workers")
        return d


def validate_config(cfg: TrainConfig) -> None:
    """Reject impossible values with one sentence each."""
    arch_spec(cfg.arch)
    if int(cfg.batch_size) < 1:
        raise TrainError(f"batch_size={cfg.batch_size}: must be an integer ≥ 1.")
    if int(cfg.epochs) < 0:
        raise TrainError(f"epochs={cfg.epochs}: must be an integer ≥ 0.")
    if cfg.init not in ("weights", "best", "last"):
        raise TrainError(f"init={cfg.init!r}: use weights, best or last.")
    if cfg.augment not in ("none", "flip", "crop"):
        raise TrainError(f"augment={cfg.augment!r}: use none, flip or crop.")
    if not (str(cfg.unfreeze) == "all" or str(cfg.unfreeze).isdigit()):
        raise TrainError(f"unfreeze={cfg.unfreeze!r}: use all, or the number of top backbone blocks to train.")
    if cfg.schedule not in ("cosine", "onecycle"):
        raise TrainError(f"schedule={cfg.schedule!r}: use cosine or onecycle.")


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed python, numpy and torch; return the generator that orders the batches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
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


class Normalizer(nn.Module):
    """uint8 batch → float, normalised for the arch's pretrained weights."""

    def __init__(self, mean: tuple, std: tuple) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def set_bn_eval(model: nn.Module) -> None:
    """Freeze BatchNorm running statistics (small batches make them noisy; see ASSETS.md)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def predict_proba(model: nn.Module, norm: Normalizer, images: np.ndarray, device: torch.device,
                  batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities of `model` over a cache array, in order."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start:start + batch_size])).to(device, non_blocking=True)
        with _autocast(device):
            out.append(model(norm(x).contiguous(memory_format=torch.channels_last)).float().softmax(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


@torch.no_grad()
def extract_features(model: nn.Module, arch: str, norm: Normalizer, images: np.ndarray,
                     device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """Pooled backbone features (the head's input) of every image, computed once."""
    spec = arch_spec(arch)
    head = getattr(model, spec.head)
    setattr(model, spec.head, nn.Identity())
    try:
        model.eval()
        feats = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[start:start + batch_size])).to(device)
            with _autocast(device):
                feats.append(model(norm(x).contiguous(memory_format=torch.channels_last)).float())
        return torch.cat(feats)
    finally:
        setattr(model, spec.head, head)


def _autocast(device: torch.device):
    """Mixed precision where the device has it (bf16 if supported, else fp16), nothing on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warmup then cosine decay to zero, as a factor of the base learning rate."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def backbone_blocks(model: nn.Module, arch: str) -> list[nn.Module]:
    """The backbone's stages from input to output, the unit that `unfreeze=N` counts from the top."""
    spec = arch_spec(arch)
    if spec.library == "efficientnet-pytorch":
        return [nn.ModuleList([model._conv_stem, model._bn0]), *model._blocks,
                nn.ModuleList([model._conv_head, model._bn1])]
    if arch == "resnet50":
        return [nn.ModuleList([model.conv1, model.bn1]), model.layer1, model.layer2, model.layer3, model.layer4]
    return list(model.features)


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
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


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
    return 0 if device.type == "cpu" else min(8, max(0, (os.cpu_count() or 1) - 1))


def read_cycles(run_dir: Path) -> pd.DataFrame:
    """The cycles ledger of a run (empty frame with the right columns if none yet)."""
    path = run_dir / "cycles.csv"
    if not path.exists():
        return pd.DataFrame(columns=CYCLE_COLUMNS)
    return pd.read_csv(path)


def read_history(run_dir: Path) -> pd.DataFrame:
    """Per-epoch history of every cycle of a run."""
    path = run_dir / "history.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=HISTORY_COLUMNS)


def load_checkpoint(path: Path) -> dict:
    """Read one of our checkpoints (plain types and tensors only)."""
    if not path.exists():
        raise TrainError(f"{path} not found: this run has no such checkpoint yet; "
                         "run a cycle with init=weights first.")
    return torch.load(path, map_location="cpu", weights_only=True)


def _save_checkpoint(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically (temporary file, then rename)."""
    with io.atomic_path(path) as tmp:
        torch.save(payload, tmp)


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


def _initial_model(cfg: TrainConfig, ckpt_dir: Path) -> nn.Module:
    """The model a new cycle starts from: pretrained weights, or this run's best/last checkpoint."""
    if cfg.init == "weights":
        return build_model(cfg.arch, len(cfg.classes), cfg.weights)
    ckpt = load_checkpoint(ckpt_dir / f"{cfg.init}.pt")
    if ckpt["config"]["arch"] != cfg.arch:
        raise TrainError(f"init={cfg.init}: {ckpt_dir / (cfg.init + '.pt')} holds arch "
                         f"{ckpt['config']['arch']}, not {cfg.arch}; use the same arch or init=weights.")
    if list(ckpt["config"]["classes"]) != list(cfg.classes):
        raise TrainError(f"init={cfg.init}: the checkpoint's classes {ckpt['config']['classes']} differ "
                         f"from this split's {cfg.classes}; use init=weights for a new dataset.")
    model = build_model(cfg.arch, len(cfg.classes), "none")
    load_weights(model, cfg.arch, ckpt["model"], f"{cfg.init}.pt")
    return model


def run_cycle(cfg: TrainConfig, run_dir: Path, train_images: np.ndarray, train_labels: list[int],
              val_images: np.ndarray, val_labels: list[int], device: torch.device,
              progress: bool = True) -> dict:
    """Train one cycle (or resume an interrupted one) and append its row to cycles.csv."""
    validate_config(cfg)
    ckpt_dir = run_dir / "checkpoints"
    cycles = read_cycles(run_dir)
    last_path = ckpt_dir / "last.pt"
    resume = abandoned = None
    if last_path.exists():
        last = load_checkpoint(last_path)
        if not last["finished"]:
            resume, abandoned = (last, None) if last["config_key"] == cfg.resume_key() else (None, last)
    cycle = int(resume["cycle"]) if resume else len(cycles) + 1 + (abandoned is not None)
    started_at = resume["started_at"] if resume else datetime.now(timezone.utc).isoformat(timespec="seconds")
    generator = seed_everything(cfg.seed + cycle, cfg.deterministic)  # before the new head is initialised
    model = build_model(cfg.arch, len(cfg.classes), "none") if resume else _initial_model(cfg, ckpt_dir)
    if abandoned:  # a cycle that ran is a row, even one that was interrupted and never resumed
        done = int(abandoned["state"]["epoch"])
        io.append_csv_row(run_dir / "cycles.csv", _ledger_row(
            TrainConfig(**abandoned["config"]), int(abandoned["cycle"]), abandoned["started_at"], abandoned["state"],
            abandoned["config"]["device"], "", False,
            f"interrupted after {done} epoch(s) and not resumed: 03 ran again with other parameters"), CYCLE_COLUMNS)
    if resume:
        model.load_state_dict(resume["model"])
    spec = arch_spec(cfg.arch)
    norm = Normalizer(spec.mean, spec.std).to(device)
    # channels_last is faster on CUDA and, with oneDNN, about 1.5x faster on CPU too (benchmarks/).
    model.to(device, memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    head_epochs = cfg.head_epochs
    total_epochs = head_epochs + cfg.epochs
    steps_per_epoch = max(1, math.ceil(len(train_labels) / cfg.batch_size))
    state = {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "since_best": 0, "seconds": 0.0}
    if resume:
        state = dict(resume["state"])
        _set_rng_state(resume["rng"])
        generator.set_state(resume["rng"]["loader"])
        # A kill between an epoch's history row and its checkpoint leaves a row the resume will redo.
        history = read_history(run_dir)
        stale = (history["cycle"] == cycle) & (history["epoch"] > state["epoch"])
        if stale.any():
            io.write_csv(run_dir / "history.csv", history[~stale])

    y_val = torch.as_tensor(val_labels)
    # fp16 needs a gradient scaler (kept across epochs and checkpoints); bf16 and CPU do not.
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    if resume and resume.get("scaler"):
        scaler.load_state_dict(resume["scaler"])
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    feats = None
    optimizer = scheduler = None
    stage = None
    history_path = run_dir / "history.csv"
    stopped_early = False

    while state["epoch"] < total_epochs:
        epoch = state["epoch"] + 1
        new_stage = "head" if epoch <= head_epochs else "full"
        if new_stage != stage:
            stage = new_stage
            head_only = stage == "head"
            set_trainable(model, cfg.arch, stage, cfg.unfreeze)
            optimizer = _optimizer(model, cfg, head_only)
            n_epochs = head_epochs if head_only else cfg.epochs
            total = n_epochs * steps_per_epoch
            warm = 0 if head_only else int(cfg.warmup_epochs * steps_per_epoch)
            scheduler = _scheduler(optimizer, cfg, total, warm) if not head_only else \
                torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, 0))
            if resume and resume["state"]["epoch"] > 0 and resume.get("stage") == stage:
                optimizer.load_state_dict(resume["optimizer"])
                scheduler.load_state_dict(resume["scheduler"])
            if head_only and feats is None:
                feats = (extract_features(model, cfg.arch, norm, train_images, device),
                         extract_features(model, cfg.arch, norm, val_images, device))
        t0 = time.perf_counter()
        if stage == "head":
            train_loss, train_acc, lr = _head_epoch(model, cfg, feats[0], torch.as_tensor(train_labels),
                                                    optimizer, scheduler, criterion, generator, device)
            with torch.no_grad():
                logits = head_of(model, cfg.arch).eval()(feats[1])
        else:
            train_loss, train_acc, lr, micro = _full_epoch(model, cfg, norm, train_images, train_labels, optimizer,
                                                           scheduler, scaler, criterion, generator, device, epoch,
                                                           progress, state.get("micro_batch", 0))
            state["micro_batch"] = micro
            logits = None
        if logits is None:
            probs = torch.from_numpy(predict_proba(model, norm, val_images, device))
            val_loss = float(nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y_val))
            val_acc = float((probs.argmax(1) == y_val).float().mean())
        else:
            logits = logits.cpu()
            val_loss = float(nn.functional.cross_entropy(logits, y_val))
            val_acc = float((logits.argmax(1) == y_val).float().mean())
        seconds = time.perf_counter() - t0
        state["seconds"] += seconds
        state["epoch"] = epoch
        improved = val_acc > state["best_val"]
        if improved:
            state.update(best_val=val_acc, best_epoch=epoch, since_best=0)
        else:
            state["since_best"] += 1
        io.append_csv_row(history_path, {"cycle": cycle, "epoch": epoch, "train_loss": round(train_loss, 5),
                                         "train_accuracy": round(train_acc, 5), "val_loss": round(val_loss, 5),
                                         "val_accuracy": round(val_acc, 5), "lr": f"{lr:.3g}",
                                         "seconds": round(seconds, 2), "stage": stage}, HISTORY_COLUMNS)
        if progress:
            print(f"cycle {cycle} epoch {epoch}/{total_epochs} [{stage}] train_loss {train_loss:.4f} "
                  f"train_acc {train_acc:.4f} val_loss {val_loss:.4f} val_acc {val_acc:.4f} ({seconds:.1f}s)",
                  flush=True)
        stopped_early = bool(cfg.patience and state["since_best"] >= cfg.patience)
        finished = epoch >= total_epochs or stopped_early
        payload_model = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        common = {"config": asdict(cfg), "config_key": cfg.resume_key(), "cycle": cycle,
                  "started_at": started_at, "model": payload_model}
        if improved:
            _save_checkpoint(ckpt_dir / "best.pt", {**common, "epoch": epoch, "val_accuracy": val_acc,
                                                    "finished": True})
        _save_checkpoint(last_path, {**common, "finished": finished, "state": dict(state), "stage": stage,
                                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                     "scaler": scaler.state_dict(),
                                     "rng": {**_rng_state(), "loader": generator.get_state()}})
        if stopped_early:
            break

    if total_epochs == 0:
        _save_checkpoint(last_path, {"config": asdict(cfg), "config_key": cfg.resume_key(), "cycle": cycle,
                                     "started_at": started_at, "finished": True, "state": state,
                                     "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}})
    row = _ledger_row(cfg, cycle, started_at, state, str(device), device_name(device), stopped_early,
                      _oom_note(cfg, state.get("micro_batch", 0)))
    io.append_csv_row(run_dir / "cycles.csv", row, CYCLE_COLUMNS)
    return row


def _ledger_row(cfg: TrainConfig, cycle: int, started_at: str, state: dict, device: str, name: str,
                stopped_early: bool, note: str) -> dict:
    """One row of cycles.csv from a cycle's configuration and final state."""
    best_val = round(state["best_val"], 5) if state["best_val"] >= 0 else ""
    return {"cycle": cycle, "started_at": started_at, "device": device, "device_name": name,
            "arch": cfg.arch, "image_size": cfg.image_size, "epochs": max(0, state["epoch"] - cfg.head_epochs),
            "batch_size": cfg.batch_size, "best_epoch": state["best_epoch"] or "", "best_val_accuracy": best_val,
            "test_accuracy": "", "seconds": round(state["seconds"], 1), "init": cfg.init, "weights": cfg.weights,
            "head_epochs": min(state["epoch"], cfg.head_epochs), "lr": cfg.lr, "stopped_early": stopped_early,
            "note": note}


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
                epoch, progress, micro: int = 0):
    """One epoch of the network over the cached images; halves the micro-batch on out-of-memory and goes on."""
    loader = DataLoader(CachedImages(images, labels, make_transform(cfg.augment, cfg.image_size)),
                        batch_size=cfg.batch_size, shuffle=True, generator=generator,
                        num_workers=loader_workers(cfg, device), pin_memory=device.type == "cuda")
    model.train()
    if cfg.freeze_bn:
        set_bn_eval(model)
    total_loss, correct, seen = 0.0, 0, 0
    batches = loader
    if progress:
        # headless, the epoch's own summary line (run_cycle) is the one line per epoch
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
    return total_loss / max(1, seen), correct / max(1, seen), scheduler.get_last_lr()[0], micro


def fill_test_accuracy(run_dir: Path, cycle: int, accuracy: float) -> None:
    """Write `accuracy` into the test_accuracy cell of one cycle's row; every other cell stays as it was."""
    path = run_dir / "cycles.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    mask = frame["cycle"] == str(cycle)
    if not mask.any():
        raise TrainError(f"{path} has no row for cycle {cycle}; the checkpoint and the ledger disagree.")
    frame.loc[mask, "test_accuracy"] = f"{accuracy:.5f}"
    io.write_csv(path, frame)
