"""The split is part of the record: a trained run's split never changes silently, whatever parameter caused it."""

from __future__ import annotations

import hashlib
import json

import nbformat
import papermill
import pandas as pd
import pytest
import torch

from helpers import pipeline
from helpers.data import dataset as data
from helpers.data import splitrecord
from helpers.data.errors import DataError
from helpers.training import checkpoints, ledger
from helpers.utils import paths

from .kaggle_shapes import SHAPES


def _trained(run):
    """Give the run a checkpoint and a ledger row, as a cycle of 03 leaves them."""
    checkpoints.save(checkpoints.cycle_dir(run, 1) / "best.pt", {"model": {"w": torch.ones(2)}, "config": {}})
    checkpoints.copy(checkpoints.cycle_dir(run, 1) / "best.pt", checkpoints.checkpoint_dir(run) / "best.pt")
    ledger.append_cycle(run, {"cycle": 1, "arch": "efficientnet-lite0"})


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("change", ["group_column", "keep_given_split"])
def test_a_changed_split_under_trained_checkpoints_is_refused_naming_what_changed(change, tmp_path):
    shape = "metadata_groups" if change == "group_column" else "training_testing"
    root = SHAPES[shape].build(tmp_path / shape)
    run = tmp_path / "run"
    data.save_split(run, *data.prepare_split(root))
    _trained(run)
    before = _digests(run)
    kw = {"group_column": "lesion_id"} if change == "group_column" else {"keep_given_split": True}
    frame, report = data.prepare_split(root, **kw)  # same files, labels, seed and ratios: only the assignment moves
    old = pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False)
    moved = splitrecord.differences(old, frame)["moved"]
    assert moved > 0
    was, now = ("''", "'lesion_id'") if change == "group_column" else ("False", "True")
    with pytest.raises(DataError) as caught:
        data.save_split(run, frame, report)
    assert str(caught.value) == (
        f"run 'run' has trained on its split ({run / 'split.csv'}) and this 02 would change it: {moved} image(s) "
        f"change split (changed: {change} {was} → {now}); "
        "evaluating or continuing its checkpoints on the new split would mix test and training images — use a "
        "new run_id for the new split, or run 02 with restart_training=True to move this run's checkpoints and "
        "ledger aside (into runs/run/superseded/) and train it afresh.")
    assert _digests(run) == before  # nothing was written
    data.save_split(run, *data.prepare_split(root))  # the very same split again is fine


def test_restart_training_moves_the_trained_record_aside_and_keeps_every_byte(tmp_path):
    root = SHAPES["metadata_groups"].build(tmp_path / "ham")
    run = tmp_path / "run"
    data.save_split(run, *data.prepare_split(root))
    _trained(run)
    before = _digests(run)
    frame, report = data.prepare_split(root, group_column="lesion_id")
    moved = data.save_split(run, frame, report, restart_training=True)
    assert moved.parent == run / "superseded"
    assert _digests(moved) == before  # checkpoints, ledger, split and report: all there, byte for byte
    assert not (run / "checkpoints").exists() and not (run / "cycles.csv").exists()
    saved = json.loads((run / "data_report.json").read_text())
    assert saved["split_parameters"]["group_column"] == "lesion_id" and saved["split_parameters"]["seed"] == 42
    assert saved["assignment"] == splitrecord.assignment_hash(pd.read_csv(run / "split.csv"))
    assert any(n.startswith("restart_training: the trained record of the previous split was moved to superseded/")
               for n in saved["notes"])


def test_the_data_report_records_what_shaped_the_split(tmp_path):
    root = SHAPES["metadata_groups"].build(tmp_path / "ham")
    _, report = data.prepare_split(root, seed=7, ratios=(0.6, 0.2, 0.2), group_column="lesion_id")
    assert report["split_parameters"] == {"layout": "auto", "label_column": "", "path_column": "",
                                          "group_column": "lesion_id", "keep_given_split": False, "move_leaks": False, "seed": 7,
                                          "ratios": [0.6, 0.2, 0.2]}


@pytest.mark.notebook
def test_02_refuses_a_new_split_of_a_trained_run_then_restarts_training_when_asked(tmp_path, study_home):
    root = SHAPES["metadata_groups"].build(tmp_path / "ham")
    run = paths.run_dir("ham")

    def notebook(**params):
        papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / "02_data.ipynb"), str(tmp_path / "02.ipynb"),
                                   kernel_name=pipeline._kernel_name(), cwd=str(tmp_path), progress_bar=False,
                                   parameters={"dataset": str(root), "run_id": "ham", **params})
    notebook()
    _trained(run)
    before = _digests(run / "checkpoints")
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        notebook(group_column="lesion_id")  # 02's own hint for HAM10000, on a run that trained without it
    assert caught.value.ename == "DataError"
    assert caught.value.evalue.startswith("run 'ham' has trained on its split (")
    assert "(changed: group_column '' → 'lesion_id')" in caught.value.evalue
    assert _digests(run / "checkpoints") == before
    notebook(group_column="lesion_id", restart_training=True)
    aside, = (run / "superseded").iterdir()
    assert _digests(aside / "checkpoints") == before and ledger.read_cycles(aside)["cycle"].tolist() == [1]
    assert json.loads((run / "data_report.json").read_text())["split_parameters"]["group_column"] == "lesion_id"
    outputs = [o for c in nbformat.read(tmp_path / "02.ipynb", as_version=4).cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
