"""Checkpoints of a run: per-cycle best/last, the run's best across cycles, pruning, clear errors on bad files.

Layout under runs/<id>/checkpoints/: best.pt (the run's best by validation across all cycles), last.pt (the
newest cycle's latest state, what an interrupted cycle resumes from), cycle-<N>/best.pt and cycle-<N>/last.pt.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from torch import nn

from helpers.utils import files


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit; the message names the file and what to do."""


def checkpoint_dir(run_dir: Path) -> Path:
    """The run's checkpoints folder."""
    return Path(run_dir) / "checkpoints"


def cycle_dir(run_dir: Path, cycle: int) -> Path:
    """The folder holding one cycle's own best.pt and last.pt."""
    return checkpoint_dir(run_dir) / f"cycle-{int(cycle)}"


def available_cycles(run_dir: Path) -> list[int]:
    """Cycles that have their own best.pt, in order."""
    found = []
    for d in checkpoint_dir(run_dir).glob("cycle-*"):
        m = re.fullmatch(r"cycle-(\d+)", d.name)
        if m and (d / "best.pt").exists():
            found.append(int(m.group(1)))
    return sorted(found)


def resolve(run_dir: Path, which: str | int) -> Path:
    """The checkpoint named by init (best, last, cycle:N) or by 04's cycle (0 = best, N = cycle N's best)."""
    which = str(which)
    if which in ("0", "best"):
        path = checkpoint_dir(run_dir) / "best.pt"
    elif which == "last":
        path = checkpoint_dir(run_dir) / "last.pt"
    else:
        m = re.fullmatch(r"(?:cycle:)?([1-9]\d*)", which)
        if not m:
            raise CheckpointError(f"{which!r}: name a checkpoint as best, last, cycle:<N> or a cycle number.")
        path = cycle_dir(run_dir, int(m.group(1))) / "best.pt"
        if not path.exists():
            have = available_cycles(run_dir)
            listed = ", ".join(map(str, have)) if have else "none yet"
            raise CheckpointError(f"cycle {m.group(1)}: {path} not found; this run's cycles with a checkpoint "
                                  f"are {listed} — name one of them, or the run's best by validation "
                                  "(init=best, cycle=0).")
    if not path.exists():
        raise CheckpointError(f"{path} not found: this run has no such checkpoint yet; "
                              "run a cycle with init=weights first.")
    return path


def load(path: Path) -> dict:
    """Read one of our checkpoints (plain types and tensors only); a damaged file is named in the error."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} not found: this run has no such checkpoint yet; "
                              "run a cycle with init=weights first.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, a pickle with foreign objects: all mean "damaged"
        raise CheckpointError(f"{path} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}): "
                              "it is truncated or corrupt. The run's other checkpoints are separate files — "
                              "use another cycle (cycle=N, init=cycle:N), or copy a cycle's best.pt over it."
                              ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint written by 03 (no model or config inside).")
    return ckpt


def save(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically and durably (temporary file flushed to disk, then renamed).

    A kill or a power cut never leaves half a file; a full disk raises files.DiskFullError and leaves the
    earlier checkpoint of that name as it was.
    """
    with files.atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # through a file object, so a full disk surfaces as ENOSPC, not a bare RuntimeError


def copy(src: Path, dst: Path) -> None:
    """Copy a checkpoint file atomically and durably."""
    with files.atomic_path(Path(dst)) as tmp:
        shutil.copyfile(src, tmp)


def model_state(model: nn.Module) -> dict:
    """The model's weights on the CPU, detached: what a checkpoint stores."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def cycle_bytes(model: nn.Module) -> int:
    """Disk a cycle's checkpoints may take at once: its best.pt and last.pt (weights plus AdamW's two moments),
    the run's best.pt and checkpoints/last.pt, each beside its temporary copy while it is renamed in place."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    last = weights + 2 * sum(p.numel() * p.element_size() for p in model.parameters())
    return 2 * weights + 2 * last


def check_room(run_dir: Path, model: nn.Module, cycle: int) -> None:
    """Refuse, before the first epoch, a cycle whose checkpoints cannot fit on the disk of the run's folder."""
    folder = checkpoint_dir(run_dir)
    need, free = cycle_bytes(model), files.free_bytes(folder)
    if need > free:
        raise CheckpointError(f"cycle {cycle} needs about {files.human_bytes(need)} for its checkpoints in {folder} "
                              f"(best.pt and last.pt with the optimiser's state, each with a temporary copy while "
                              f"it is saved) but the disk holding that folder has {files.human_bytes(free)} free; "
                              "nothing was trained or written — free some space (a smaller keep_last keeps fewer "
                              "older cycles' last.pt) or point STUDY_HOME at a larger disk, then run 03 again.")


def run_best_val(run_dir: Path) -> float:
    """Validation accuracy of the run's best model so far (-1 when there is none)."""
    return run_best_score(run_dir, "accuracy")


def run_best_score(run_dir: Path, metric: str = "accuracy") -> float:
    """The run's best model's validation figure `metric` (-1 when there is none, or it was not recorded)."""
    path = checkpoint_dir(run_dir) / "best.pt"
    if not path.exists():
        return -1.0
    best = load(path)
    scores = best.get("val_scores") or {"accuracy": best.get("val_accuracy", -1.0)}
    return float(scores.get(metric, -1.0))


def save_best(run_dir: Path, cycle: int, payload: dict, run_best: bool) -> None:
    """Save a cycle's new best; also the run's best when it beats every earlier cycle on validation."""
    save(cycle_dir(run_dir, cycle) / "best.pt", payload)
    if run_best:
        copy(cycle_dir(run_dir, cycle) / "best.pt", checkpoint_dir(run_dir) / "best.pt")


def keep_cycle_last(run_dir: Path, cycle: int) -> None:
    """Keep the cycle's final state as cycle-<N>/last.pt (checkpoints/last.pt moves on with the next cycle)."""
    src, dst = checkpoint_dir(run_dir) / "last.pt", cycle_dir(run_dir, cycle) / "last.pt"
    if src.exists() and not dst.exists():
        copy(src, dst)


def prune_last(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete cycle-<N>/last.pt of all but the newest `keep_last` cycles (0 keeps all); never a best.pt."""
    if keep_last <= 0:
        return []
    lasts = sorted((p for p in checkpoint_dir(run_dir).glob("cycle-*/last.pt") if p.parent.name[6:].isdigit()),
                   key=lambda p: int(p.parent.name[6:]))
    removed = lasts[:-keep_last]
    for path in removed:
        path.unlink()
    return removed
