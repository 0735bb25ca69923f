"""The training loop in plain sight: one epoch of the head on cached features, one epoch of the network (halving
the micro-batch on out-of-memory), and validation. Everything else about a cycle lives in cycle.py and stages.py.
"""

from __future__ import annotations

import math
import warnings

import torch
from sklearn.metrics import balanced_accuracy_score, f1_score  # loaded with the module, as a kernel started ahead does
from torch import nn

from helpers.models.inference import autocast, predict_proba
from helpers.models.zoo import head_of
from helpers.training import balance, distributed, frozen
from helpers.training.batches import loader_workers, train_loader
from helpers.training.config import TrainConfig, TrainError
from helpers.training.optim import set_bn_eval
from helpers.training.randomness import rank_generator, seed_rank_epoch
from helpers.training.state import Cycle
from helpers.utils.progress import bar as progress_bar

# Dropout on the pooled features while the head trains alone: Lite0's own classifier dropout (efficientnet-pytorch's
# global_params.dropout_rate), so the head stage regularises like the network it belongs to.
HEAD_DROPOUT = 0.2


def fit_epoch(c: Cycle, epoch: int, train_images, train_labels: list[int]) -> tuple[float, float, float]:
    """One training epoch of the cycle's current stage: loss, accuracy, learning rate at its end."""
    if c.stage == "head":  # every process runs the whole head stage, in global batches (stages.stage_steps)
        return train_head_epoch(c.model, c.cfg, c.feats[0], torch.as_tensor(train_labels), c.optimizer,
                                c.scheduler, c.criterion, c.generator, c.device,
                                c.cfg.batch_size * distributed.world_size())
    if distributed.world_size() > 1:  # each process augments (and drops out) with its own random stream
        seed_rank_epoch(c.cfg.seed + c.number, epoch, distributed.rank())
    stage_loader(c, train_images, train_labels)
    c.loader.sampler.set_epoch(epoch)  # a new order every epoch, the same on every rank and on resume
    norm = stage_norm(c)
    loss, acc, lr, micro = train_one_epoch(c.forward, c.cfg, norm, c.loader, c.optimizer, c.scheduler, c.scaler,
                                           c.criterion, c.device, epoch, c.progress, c.state.get("micro_batch", 0))
    c.state["micro_batch"] = micro
    return loss, acc, lr


def stage_loader(c: Cycle, train_images, train_labels: list[int]):
    """The network stage's DataLoader, built once per cycle (over the cached early output when there is one)."""
    cached = c.early is not None and c.early.cached
    if c.loader is None:
        dataset = frozen.EarlyFeatureSet(c.early.train, train_labels, c.early.mirrored) if cached else None
        # Data-parallel: the loader's workers are seeded from this process's own generator, not rank 0's.
        generator = c.generator if distributed.world_size() == 1 else \
            rank_generator(c.cfg.seed + c.number, c.state["epoch"], distributed.rank())
        c.loader = train_loader(c.cfg, train_images, train_labels, c.device, generator, c.cfg.seed + c.number,
                                dataset)
    return c.loader


def stage_norm(c: Cycle) -> nn.Module:
    """The normalisation the network stage applies: none over cached early output (it is already past it)."""
    return nn.Identity() if c.early is not None and c.early.cached else c.norm


def train_head_epoch(model, cfg: TrainConfig, feats, labels, optimizer, scheduler, criterion, generator, device,
                     batch_size: int | None = None):
    """One epoch of the head on cached backbone features, in batches of `batch_size` (default cfg.batch_size)."""
    head = head_of(model, cfg.arch).train()
    order = balance.epoch_order(labels, cfg.sampler, generator)
    total_loss, correct = 0.0, 0
    step = batch_size or cfg.batch_size
    for start in range(0, len(order), step):
        idx = order[start:start + step]
        x, y = feats[idx.to(feats.device)], labels[idx].to(device)
        x = nn.functional.dropout(x, p=HEAD_DROPOUT, training=True)
        logits = head(x)
        loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(order), correct / len(order), scheduler.get_last_lr()[0]


def train_one_epoch(model, cfg: TrainConfig, norm, loader, optimizer, scheduler, scaler, criterion, device,
                    epoch: int, progress: bool, micro: int = 0):
    """One epoch of the network over `loader`; halves the micro-batch on out-of-memory and goes on.

    Returns mean loss, accuracy, the learning rate at the end, and the micro-batch in use (0: the whole batch).
    """
    model.train()
    if cfg.freeze_bn:
        set_bn_eval(model)
    total_loss, correct, seen = 0.0, 0, 0
    batches = loader
    if progress:  # headless, the epoch's own summary line is the one line per epoch
        batches = progress_bar(loader, total=len(loader), desc=f"epoch {epoch}", unit="batches", summary=False)
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        while True:
            try:
                loss, logits = train_step(model, norm, x, y, micro or cfg.batch_size, optimizer, scaler,
                                          criterion, device)
                break
            except torch.OutOfMemoryError:
                micro = _halved(cfg, micro, optimizer, device)
        scheduler.step()
        total_loss += loss * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    total_loss, correct, seen = distributed.all_reduce_sums([total_loss, correct, seen], device)
    return total_loss / max(1, seen), correct / max(1, seen), scheduler.get_last_lr()[0], micro


def train_step(model, norm, x, y, micro: int, optimizer, scaler, criterion, device):
    """One optimizer step over a batch, in micro-batches with gradient accumulation; returns loss and logits."""
    optimizer.zero_grad(set_to_none=True)
    total, outputs = 0.0, []
    for xs, ys in zip(x.split(micro), y.split(micro)):
        with autocast(device):
            logits = model(norm(xs).contiguous(memory_format=torch.channels_last))
            loss = criterion(logits.float(), ys)
        scaler.scale(loss * (len(ys) / len(y))).backward()
        total += loss.item() * len(ys)
        outputs.append(logits.detach())
    scaler.step(optimizer)
    scaler.update()
    return total / len(y), torch.cat(outputs)


def _halved(cfg: TrainConfig, micro: int, optimizer, device) -> int:
    """After an out-of-memory error: the next smaller micro-batch, or one sentence when there is none."""
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if distributed.world_size() > 1:  # ranks must run the same all-reduces: none can shrink alone
        raise TrainError(f"out of memory at batch_size={cfg.batch_size} per process with "
                         f"{distributed.world_size()} processes; use a smaller batch_size.") from None
    current = micro or cfg.batch_size
    if current <= 1:
        raise TrainError("out of memory even with micro-batches of 1 image; use a smaller image_size or arch.") from None
    print(f"out of memory at micro-batch {current}: continuing with {current // 2} and gradient accumulation",
          flush=True)
    return current // 2


def oom_note(cfg: TrainConfig, micro: int) -> str:
    """The ledger's note when out-of-memory forced micro-batches."""
    if not micro or micro >= cfg.batch_size:
        return ""
    steps = math.ceil(cfg.batch_size / micro)
    return (f"out of memory at batch {cfg.batch_size}: trained in micro-batches of {micro} with {steps} "
            f"accumulation steps (effective batch {cfg.batch_size})")


def validate(c: Cycle, val_images, val_labels: list[int]) -> tuple[float, float, dict]:
    """Validation loss, accuracy, and the figures select_metric may choose by (on cached features in the head stage)."""
    y_val = torch.as_tensor(val_labels)
    if c.stage == "head":
        with torch.no_grad():
            logits = head_of(c.model, c.cfg.arch).eval()(c.feats[1]).cpu()
        pred = logits.argmax(1)
        return (float(nn.functional.cross_entropy(logits, y_val)), float((pred == y_val).float().mean()),
                scores(y_val, pred, len(c.cfg.classes)))
    if c.early is not None and c.early.val is not None:
        probs = torch.from_numpy(frozen.rest_proba(c.early.rest, c.early.val, c.device))
    else:
        probs = torch.from_numpy(predict_proba(c.model, c.norm, val_images, c.device,
                                               workers=loader_workers(c.cfg, c.device)))
    pred = probs.argmax(1)
    return (float(nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y_val)),
            float((pred == y_val).float().mean()), scores(y_val, pred, len(c.cfg.classes)))


def scores(y: torch.Tensor, pred: torch.Tensor, n_classes: int) -> dict:
    """Accuracy, balanced accuracy (mean recall over the classes present) and macro F1 (over every class)."""
    y, pred = y.numpy(), pred.numpy()
    with warnings.catch_warnings():  # a class predicted but absent from validation: sklearn warns, the mean is right
        warnings.simplefilter("ignore")
        balanced = float(balanced_accuracy_score(y, pred))
    return {"accuracy": float((y == pred).mean()), "balanced_accuracy": balanced,
            "macro_f1": float(f1_score(y, pred, labels=list(range(n_classes)), average="macro", zero_division=0))}
