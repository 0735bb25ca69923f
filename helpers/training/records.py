"""What a cycle leaves behind: checkpoint payloads (best, last) and its row in cycles.csv."""

from __future__ import annotations

from dataclasses import asdict

from helpers.training import checkpoints, distributed, lrfind
from helpers.training.config import TrainConfig
from helpers.training.loop import oom_note
from helpers.training.randomness import rng_state
from helpers.training.state import Cycle
from helpers.utils.devices import device_name


def common_payload(c: Cycle) -> dict:
    """What every checkpoint of this cycle holds besides its own fields."""
    return {"config": asdict(c.cfg), "config_key": c.cfg.resume_key(), "cycle": c.number,
            "started_at": c.started_at, "init_from": c.init_from, "model": checkpoints.model_state(c.model)}


def save_epoch(c: Cycle, epoch: int, val: dict, improved: bool, run_best: bool, finished: bool) -> None:
    """The cycle's best (and the run's best) when improved, then last.pt, which a resume starts from."""
    if improved:
        checkpoints.save_best(c.run_dir, c.number, {**common_payload(c), "epoch": epoch,
                                                    "val_accuracy": val["accuracy"], "val_scores": dict(val),
                                                    "select_metric": c.cfg.select_metric, "finished": True}, run_best)
    save_last(c, finished)


def save_last(c: Cycle, finished: bool) -> None:
    """checkpoints/last.pt: the full training state; a finished one also carries the cycle's ledger row."""
    payload = {**common_payload(c), "finished": finished, "state": dict(c.state), "stage": c.stage,
               "rng": {**rng_state(), "loader": c.generator.get_state()}}
    if c.optimizer is not None:
        payload.update(optimizer=c.optimizer.state_dict(), scheduler=c.scheduler.state_dict(),
                       scaler=c.scaler.state_dict())
    if finished:
        # Written with the checkpoint so that a kill before the ledger append still yields the row next run.
        payload["ledger_row"] = final_row(c)
    checkpoints.save(checkpoints.checkpoint_dir(c.run_dir) / "last.pt", payload)


def final_row(c: Cycle) -> dict:
    """The cycle's row in cycles.csv."""
    name = device_name(c.device)
    if distributed.world_size() > 1:
        name = f"{distributed.world_size()} × {name}"
    return ledger_row(c.cfg, c.number, c.started_at, c.state, str(c.device), name,
                      c.stopped_early, oom_note(c.cfg, c.state.get("micro_batch", 0)), c.init_from)


def ledger_row(cfg: TrainConfig, cycle: int, started_at: str, state: dict, device: str, name: str,
               stopped_early: bool, note: str, init_from: int | str = "") -> dict:
    """One row of cycles.csv from a cycle's configuration and final state."""
    best_val = round(state["best_val"], 5) if state["best_val"] >= 0 else ""
    return {"cycle": cycle, "started_at": started_at, "device": device, "device_name": name,
            "arch": cfg.arch, "image_size": cfg.image_size, "epochs": max(0, state["epoch"] - cfg.head_epochs),
            "batch_size": cfg.batch_size, "best_epoch": state["best_epoch"] or "", "best_val_accuracy": best_val,
            "test_accuracy": "", "seconds": round(state["seconds"], 1), "init": cfg.init, "weights": cfg.weights,
            "head_epochs": min(state["epoch"], cfg.head_epochs), "lr": _used_lr(cfg, state),
            "stopped_early": stopped_early,
            "note": note, "init_from": init_from, "select_metric": cfg.select_metric,
            "best_val_balanced_accuracy": _rounded(state.get("best_scores", {}).get("balanced_accuracy")),
            "best_val_macro_f1": _rounded(state.get("best_scores", {}).get("macro_f1")),
            "class_weights": cfg.class_weights, "sampler": cfg.sampler,
            "lr_found": lrfind.suggestion_note(state.get("lr_tests") or {})}


def _used_lr(cfg: TrainConfig, state: dict) -> float | str:
    """The head's rate the cycle trained with: `lr`, or the head range test's suggestion under lr=auto."""
    if cfg.lr != "auto":
        return cfg.lr
    tests = state.get("lr_tests") or {}
    return float(f"{tests['head']['suggestion']:.4g}") if "head" in tests else "auto"


def _rounded(value: float | None) -> float | str:
    """A figure for the ledger, or an empty cell."""
    return "" if value is None else round(float(value), 5)


def history_row(c: Cycle, epoch: int, train_loss: float, train_acc: float, val_loss: float, val: dict,
                lr: float, seconds: float) -> dict:
    """One row of history.csv: an epoch's figures."""
    return {"cycle": c.number, "epoch": epoch, "train_loss": round(train_loss, 5),
            "train_accuracy": round(train_acc, 5), "val_loss": round(val_loss, 5),
            "val_accuracy": round(val["accuracy"], 5), "lr": f"{lr:.3g}", "seconds": round(seconds, 2),
            "stage": c.stage, "val_balanced_accuracy": round(val["balanced_accuracy"], 5),
            "val_macro_f1": round(val["macro_f1"], 5)}
