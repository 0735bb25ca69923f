"""helpers.checkpoints: names resolve to the right file, damage is reported by file name, pruning spares bests."""

from __future__ import annotations

import pytest
import torch

from helpers.training import checkpoints
from helpers.training.checkpoints import CheckpointError


def _write(run, rel, cycle, val=0.5):
    checkpoints.save(run / "checkpoints" / rel, {"config": {"arch": "x", "classes": ["a"]}, "cycle": cycle,
                                                 "val_accuracy": val, "model": {"w": torch.zeros(2)}})


def test_resolve_and_load(tmp_path):
    for n in (1, 2, 3):
        _write(tmp_path, f"cycle-{n}/best.pt", n)
    _write(tmp_path, "best.pt", 2, 0.9)
    assert checkpoints.resolve(tmp_path, 0).name == "best.pt" and checkpoints.resolve(tmp_path, "best") == \
        tmp_path / "checkpoints" / "best.pt"
    assert checkpoints.resolve(tmp_path, "cycle:3") == checkpoints.resolve(tmp_path, 3) == \
        tmp_path / "checkpoints" / "cycle-3" / "best.pt"
    assert checkpoints.available_cycles(tmp_path) == [1, 2, 3] and checkpoints.run_best_val(tmp_path) == 0.9
    with pytest.raises(CheckpointError, match="cycle 7: .* are 1, 2, 3"):
        checkpoints.resolve(tmp_path, 7)
    with pytest.raises(CheckpointError, match="last.pt not found"):
        checkpoints.resolve(tmp_path, "last")


def test_damaged_files_are_named(tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match=f"{bad} is unreadable"):
        checkpoints.load(bad)
    torch.save({"weights": 1}, bad)
    with pytest.raises(CheckpointError, match="not a checkpoint written by 03"):
        checkpoints.load(bad)


def test_prune_last_keeps_the_newest_and_every_best(tmp_path):
    for n in (1, 2, 10):
        _write(tmp_path, f"cycle-{n}/best.pt", n)
        _write(tmp_path, f"cycle-{n}/last.pt", n)
    removed = checkpoints.prune_last(tmp_path, 2)
    assert [p.parent.name for p in removed] == ["cycle-1"]  # by number, not by name: 10 is the newest
    assert checkpoints.prune_last(tmp_path, 0) == [] and len(list(tmp_path.rglob("best.pt"))) == 3
