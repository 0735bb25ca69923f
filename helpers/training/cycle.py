"""A training cycle's lifecycle: open it (number it, resume an interrupted one or start from `weights`/`init`),
run its head stage and its network stage epoch by epoch, close it with its row in cycles.csv.

`run_cycle` is the whole story in one call (torchrun's ranks use it); notebook 03 calls the same steps one by one:
`open_cycle`, `run_stage(c, "head", ...)`, `run_stage(c, "full", ...)`, `close_cycle`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers.models import zoo
from helpers.models.inference import normalizer_for
from helpers.training import balance, checkpoints, distributed, ledger, loop, tracking
from helpers.training.config import TrainConfig, TrainError
from helpers.training.randomness import seed_everything, set_rng_state
from helpers.training.records import (
    final_row,
    history_row,
    ledger_row,
    save_epoch,
    save_last,
)
from helpers.training.stages import deepen_frozen, enter_stage
from helpers.training.state import Cycle

STAGES = ("head", "full")
SELECT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")  # the schema's select_metric choices


def run_cycle(cfg: TrainConfig, run_dir: Path, train_images: np.ndarray, train_labels: list[int],
              val_images: np.ndarray, val_labels: list[int], device: torch.device,
              progress: bool = True) -> dict:
    """Train one cycle (or resume an interrupted one) and append its row to cycles.csv."""
    c = open_cycle(cfg, run_dir, train_labels, val_labels, device, progress)
    for stage in STAGES:
        run_stage(c, stage, train_images, train_labels, val_images, val_labels)
    return close_cycle(c)


def open_cycle(cfg: TrainConfig, run_dir: Path, train_labels: list[int], val_labels: list[int],
               device: torch.device, progress: bool = True) -> Cycle:
    """Check everything, then number the cycle, seed it, build the model where it starts and put it on the device.

    An unfinished last.pt with the same parameters is resumed; one with other parameters is recorded as
    interrupted and a new cycle starts. Every check runs before the first write.
    """
    run_dir = Path(run_dir)
    cfg.check()
    check_splits(cfg.classes, train_labels, val_labels, run_dir)
    last, resume, abandoned = _read_last(cfg, run_dir)
    start = _initial_weights(cfg, run_dir) if resume is None else None
    run_best = checkpoints.run_best_score(run_dir, cfg.select_metric) if resume is None else None
    if distributed.is_main():
        _record_unrecorded(run_dir, last, abandoned, cfg.keep_last)
    distributed.barrier()  # every rank numbers the cycle from the same ledger
    c = _numbered(cfg, run_dir, device, last, resume, start, run_best, progress)
    c.generator = seed_everything(cfg.seed + c.number, cfg.deterministic)  # before the new head is initialised
    c.model = distributed.sync_batchnorm(_build(cfg, resume, start), device, cfg.freeze_bn)
    if distributed.is_main():
        checkpoints.check_room(run_dir, c.model, c.number)  # a full disk is found now, not after an epoch
    c.norm = normalizer_for(cfg.arch).to(device)
    # channels_last is faster on CUDA and, with oneDNN, about 1.5x faster on CPU too (benchmarks/).
    c.model.to(device, memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic  # autotuning picks kernels by timing: not repeatable
    # fp16 needs a gradient scaler (kept across epochs and checkpoints); bf16 and CPU do not.
    c.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    weight = balance.class_weights(train_labels, len(cfg.classes)).to(device) if cfg.class_weights == "balanced" \
        else None  # inverse-frequency weights: the same loss in the head and the network stage
    c.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    if resume:
        set_rng_state(resume["rng"])
        c.generator.set_state(resume["rng"]["loader"])
        if resume.get("scaler"):
            c.scaler.load_state_dict(resume["scaler"])
        if distributed.is_main():
            ledger.drop_history_after(run_dir, c.number, c.state["epoch"])
    c.tracker = tracking.start(cfg.tracking if distributed.is_main() else "none", run_dir, c.number, asdict(cfg))
    return c


def run_stage(c: Cycle, stage: str, train_images, train_labels: list[int], val_images,
              val_labels: list[int]) -> None:
    """The stage's epochs that have not run yet; each ends with its history row and checkpoints.

    A resumed cycle skips what its last.pt already holds; after early stopping nothing more runs.
    """
    last_epoch = c.cfg.head_epochs if stage == "head" else c.total_epochs
    while c.state["epoch"] < last_epoch and not c.stopped_early:
        epoch = c.state["epoch"] + 1
        enter_stage(c, stage, len(train_labels), train_images, val_images, train_labels)
        if stage == "full":
            deepen_frozen(c, epoch)
        t0 = time.perf_counter()
        train_loss, train_acc, lr = loop.fit_epoch(c, epoch, train_images, train_labels)
        # Rank 0 validates; every rank takes its numbers, so best-epoch and early-stop decisions agree.
        val_loss, val_acc, found = loop.validate(c, val_images, val_labels) if distributed.is_main() \
            else (0.0, 0.0, {})
        val_loss, *figures = distributed.broadcast_floats(
            [val_loss, val_acc] + [found.get(m, val_acc) for m in SELECT_METRICS[1:]], c.device)
        val = dict(zip(SELECT_METRICS, figures))
        val_acc = val["accuracy"]
        seconds = time.perf_counter() - t0
        improved, run_best = _count_epoch(c, epoch, val, seconds)
        if distributed.is_main():
            ledger.append_history(c.run_dir, history_row(c, epoch, train_loss, train_acc, val_loss, val, lr,
                                                         seconds))
            c.tracker.log_epoch({"train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
                                 "val_accuracy": val_acc, "lr": lr, "seconds": seconds}, step=epoch)
        if c.progress:
            print(f"cycle {c.number} epoch {epoch}/{c.total_epochs} [{c.stage}] train_loss {train_loss:.4f} "
                  f"train_acc {train_acc:.4f} val_loss {val_loss:.4f} val_acc {val_acc:.4f} ({seconds:.1f}s)"
                  + (" · the run's new best" if run_best else ""), flush=True)
        c.stopped_early = bool(c.cfg.patience and c.state["since_best"] >= c.cfg.patience)
        if distributed.is_main():
            save_epoch(c, epoch, val, improved, run_best, epoch >= c.total_epochs or c.stopped_early)


def close_cycle(c: Cycle) -> dict:
    """Append the row, keep the cycle's last.pt in its folder, prune older ones (never a best)."""
    if c.total_epochs == 0 and distributed.is_main():  # nothing trained: the cycle still leaves its model and row
        save_last(c, finished=True)
    row = final_row(c)
    if distributed.is_main():
        ledger.append_cycle(c.run_dir, row)
        if c.tracker is not None:
            c.tracker.finish(row)
        checkpoints.keep_cycle_last(c.run_dir, c.number)
        checkpoints.prune_last(c.run_dir, c.cfg.keep_last)
    distributed.barrier()  # no rank leaves before the row is written
    return row


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
            row = ledger_row(TrainConfig(**abandoned["config"]), cycle, abandoned["started_at"],
                             abandoned["state"], abandoned["config"]["device"], "", False,
                             f"interrupted after {done} epoch(s) and not resumed: 03 ran again with other "
                             "parameters", abandoned.get("init_from", ""))
        else:
            row = last.get("ledger_row") or {}
        if row:
            ledger.append_cycle(run_dir, row)
    checkpoints.keep_cycle_last(run_dir, cycle)
    checkpoints.prune_last(run_dir, keep_last)


def _numbered(cfg: TrainConfig, run_dir: Path, device: torch.device, last: dict | None, resume: dict | None,
              start: tuple | None, run_best: float | None, progress: bool) -> Cycle:
    """The cycle's number, start time and progress: the resumed one's, or the next number after the ledger's."""
    if resume:
        number, started_at, init_from = int(resume["cycle"]), resume["started_at"], resume.get("init_from", "")
        state = dict(resume["state"])
        state.setdefault("run_best_val", -1.0)
        state.setdefault("best_score", state["best_val"])  # a checkpoint from before select_metric: accuracy
        state.setdefault("best_scores", {})
    else:
        recorded = ledger.recorded_cycles(run_dir)
        number = max([0, *recorded, int(last["cycle"]) if last else 0]) + 1
        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        init_from = start[1]
        state = {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "since_best": 0, "seconds": 0.0,
                 "run_best_val": run_best, "best_score": -1.0, "best_scores": {}}
        if distributed.is_main():  # epochs of a killed attempt whose checkpoint never landed
            ledger.drop_history_after(run_dir, number, 0)
    return Cycle(cfg=cfg, run_dir=run_dir, device=device, number=number, started_at=started_at,
                 init_from=init_from, state=state, resume=resume, progress=progress)


def _build(cfg: TrainConfig, resume: dict | None, start: tuple | None) -> nn.Module:
    """The network with the weights this cycle starts from: resumed, continued, or `weights`."""
    if resume:
        model = zoo.build_model(cfg.arch, len(cfg.classes), "none")
        model.load_state_dict(resume["model"])
        return model
    state, origin = start
    if state is None:
        return zoo.build_model(cfg.arch, len(cfg.classes), cfg.weights)
    model = zoo.build_model(cfg.arch, len(cfg.classes), "none")
    zoo.load_weights(model, cfg.arch, state, f"cycle {origin}'s checkpoint")
    return model


def _count_epoch(c: Cycle, epoch: int, val: dict, seconds: float) -> tuple[bool, bool]:
    """Count the epoch; is it the cycle's best so far, and the run's best across all cycles, by select_metric?

    `run_best_val` holds the run's best value of the cycle's select_metric (its name is older than the parameter).
    """
    s = c.state
    s["seconds"] += seconds
    s["epoch"] = epoch
    score = val[c.cfg.select_metric]
    improved = score > s["best_score"]
    if improved:
        s.update(best_val=val["accuracy"], best_score=score, best_scores=dict(val), best_epoch=epoch, since_best=0)
    else:
        s["since_best"] += 1
    run_best = score > s["run_best_val"]  # strictly better: a tie keeps the earlier cycle's model
    if run_best:
        s["run_best_val"] = score
    return improved, run_best
