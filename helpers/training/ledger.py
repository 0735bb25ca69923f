"""The run's ledgers: cycles.csv (a row per cycle, appended) and history.csv (a row per epoch)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.utils import files

# The contract's columns first and in its order; later additions go at the end so old readers keep working.
CYCLE_COLUMNS = ["cycle", "started_at", "device", "device_name", "arch", "image_size", "epochs",
                 "batch_size", "best_epoch", "best_val_accuracy", "test_accuracy", "seconds",
                 "init", "weights", "head_epochs", "lr", "stopped_early", "note", "init_from",
                 "select_metric", "best_val_balanced_accuracy", "best_val_macro_f1", "class_weights", "sampler",
                 "lr_found"]
HISTORY_COLUMNS = ["cycle", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "lr", "seconds", "stage", "val_balanced_accuracy", "val_macro_f1"]


class LedgerError(ValueError):
    """The ledger and the checkpoints disagree; the message names the file."""


def read_cycles(run_dir: Path) -> pd.DataFrame:
    """The cycles ledger of a run (empty frame with the right columns if none yet)."""
    path = Path(run_dir) / "cycles.csv"
    if not path.exists():
        return pd.DataFrame(columns=CYCLE_COLUMNS)
    return pd.read_csv(path)


def read_history(run_dir: Path) -> pd.DataFrame:
    """Per-epoch history of every cycle of a run."""
    path = Path(run_dir) / "history.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=HISTORY_COLUMNS)


def recorded_cycles(run_dir: Path) -> set[int]:
    """Cycle numbers that already have a row in cycles.csv."""
    return {int(c) for c in read_cycles(run_dir)["cycle"]}


def append_cycle(run_dir: Path, row: dict) -> None:
    """Append one cycle's row (missing columns stay empty)."""
    path = Path(run_dir) / "cycles.csv"
    widen(path, CYCLE_COLUMNS)
    files.append_csv_row(path, row, CYCLE_COLUMNS)


def append_history(run_dir: Path, row: dict) -> None:
    """Append one epoch's row to history.csv."""
    path = Path(run_dir) / "history.csv"
    widen(path, HISTORY_COLUMNS)
    files.append_csv_row(path, row, HISTORY_COLUMNS)


def widen(path: Path, columns: list[str]) -> None:
    """A ledger written before newer columns existed gains them, empty in its earlier rows (values unchanged)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split(",")
    if header == columns or header != columns[:len(header)]:
        return  # current, or not ours to reshape
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in columns[len(header):]:
        frame[column] = ""
    files.write_csv(path, frame[columns])


def drop_history_after(run_dir: Path, cycle: int, epoch: int) -> None:
    """Remove history rows of `cycle` past `epoch`: epochs whose checkpoint never landed will be redone."""
    history = read_history(run_dir)
    stale = (history["cycle"] == cycle) & (history["epoch"] > epoch)
    if stale.any():
        files.write_csv(Path(run_dir) / "history.csv", history[~stale])


def fill_test_accuracy(run_dir: Path, cycle: int, accuracy: float) -> None:
    """Write `accuracy` into the test_accuracy cell of one cycle's row; every other cell stays as it was."""
    files.write_csv(Path(run_dir) / "cycles.csv", with_test_accuracy(run_dir, cycle, accuracy))


def with_test_accuracy(run_dir: Path, cycle: int, accuracy: float) -> pd.DataFrame:
    """cycles.csv as text cells with one test_accuracy filled in (for a caller that writes it with others)."""
    path = Path(run_dir) / "cycles.csv"
    if not path.exists():
        raise LedgerError(f"{path} not found: the run has no cycles; run 03 first.")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    mask = frame["cycle"] == str(cycle)
    if not mask.any():
        raise LedgerError(f"{path} has no row for cycle {cycle}; the checkpoint and the ledger disagree.")
    frame.loc[mask, "test_accuracy"] = f"{accuracy:.5f}"
    return frame
