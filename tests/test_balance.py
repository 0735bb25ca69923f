"""Imbalanced classes: the ratio 02 states, class weights and the balanced sampler of 03, select_metric, and 04's
balanced accuracy with per-class recall intervals — through the notebooks on a one-sided fixture."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import papermill
import pytest
import torch

from helpers import pipeline
from helpers.data.balance import imbalance
from helpers.evaluation import evaluate
from helpers.training import balance, checkpoints, ledger, loop
from helpers.training import cycle as train
from helpers.training.config import TrainConfig
from helpers.utils import paths

from .conftest import make_image


def test_class_weights_are_sklearns_balanced_weights():
    from sklearn.utils.class_weight import compute_class_weight
    labels = [0] * 30 + [1] * 6 + [2] * 3
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert torch.allclose(balance.class_weights(labels, 3), torch.tensor(expected, dtype=torch.float32))
    assert balance.class_weights([0, 0, 2], 3)[1] == 0  # a class without images weighs nothing


def test_balanced_sampler_draws_classes_equally_and_splits_one_sequence_across_ranks():
    labels = [0] * 900 + [1] * 90 + [2] * 10
    one = balance.BalancedSampler(labels, 1, 0, seed=5)
    one.set_epoch(3)
    drawn = list(one)
    share = np.bincount(np.asarray(labels)[drawn], minlength=3) / len(drawn)
    assert len(drawn) == 1000 and np.allclose(share, 1 / 3, atol=0.05)
    ranks = [balance.BalancedSampler(labels, 2, r, seed=5) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(3)
    a, b = (list(r) for r in ranks)
    assert len(a) == len(b) == 500 and [x for pair in zip(a, b) for x in pair] == drawn  # DistributedSampler's split
    one.set_epoch(4)
    assert list(one) != drawn  # a new draw each epoch


def test_a_one_sided_ratio_is_stated_and_suggests_the_remedies():
    found = imbalance(["a"] * 40 + ["b"] * 4 + ["c"] * 20)
    assert (found["largest"], found["smallest"], found["ratio"], found["imbalanced"]) == ("a", "b", 10.0, True)
    assert found["suggest"] == {"class_weights": "balanced", "sampler": "balanced",
                                "select_metric": "balanced_accuracy"}
    assert "ratio 10.0" in found["sentence"] and "class_weights=balanced" in found["sentence"]
    assert not imbalance(["a"] * 10 + ["b"] * 5)["imbalanced"]  # 2x: below the threshold of 3


def _data(n=24, size=32):
    rng = np.random.default_rng(0)
    labels = [i % 3 for i in range(n)]
    images = rng.integers(0, 50, size=(n, 3, size, size), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, y] += 150
    return images, labels


def test_select_metric_decides_the_runs_best_and_04_can_pick_by_another(tmp_path, monkeypatch):
    x, y = _data()
    figures = iter([(0.9, 0.5), (0.7, 0.8)])  # cycle 1: accuracy 0.9, balanced 0.5; cycle 2: 0.7, 0.8

    def scripted(c, images, labels):
        acc, bal = next(figures)
        return 1.0, acc, {"balanced_accuracy": bal, "macro_f1": bal}
    monkeypatch.setattr(loop, "validate", scripted)
    cfg = dict(arch="mobilenet_v3_small", classes=["a", "b", "c"], image_size=32, batch_size=8, epochs=0,
               head_epochs=1, weights="none", select_metric="balanced_accuracy")
    for _ in range(2):
        train.run_cycle(TrainConfig(**cfg), tmp_path, x, y, x, y, torch.device("cpu"), progress=False)
    best = checkpoints.load(tmp_path / "checkpoints" / "best.pt")
    assert (best["cycle"], best["select_metric"], best["val_scores"]["balanced_accuracy"]) == (2, "balanced_accuracy",
                                                                                            0.8)
    cycles = pd.read_csv(tmp_path / "cycles.csv")
    assert cycles["select_metric"].tolist() == ["balanced_accuracy"] * 2
    assert cycles["best_val_accuracy"].tolist() == [0.9, 0.7] and cycles["best_val_balanced_accuracy"].tolist() == [
        0.5, 0.8]
    assert evaluate.select_checkpoint(tmp_path, 0, "balanced_accuracy")[0].parent.name == "checkpoints"
    assert evaluate.select_checkpoint(tmp_path, 0, "accuracy")[0].parent.name == "cycle-1"


def test_a_ledger_from_before_the_new_columns_gains_them_and_keeps_its_rows(tmp_path):
    old = ledger.CYCLE_COLUMNS[:19]
    pd.DataFrame([{c: "7" if c == "cycle" else "x" for c in old}]).to_csv(tmp_path / "cycles.csv", index=False)
    ledger.append_cycle(tmp_path, {"cycle": 8, "select_metric": "macro_f1"})
    frame = pd.read_csv(tmp_path / "cycles.csv", dtype=str, keep_default_na=False)
    assert list(frame.columns) == ledger.CYCLE_COLUMNS
    assert frame.iloc[0][old].tolist() == ["7"] + ["x"] * 18 and frame.iloc[0]["select_metric"] == ""
    assert frame.iloc[1]["select_metric"] == "macro_f1"


def test_notebooks_on_a_one_sided_dataset_report_weight_and_select_by_balanced_accuracy(tmp_path, study_home):
    from sklearn.metrics import balanced_accuracy_score
    root = tmp_path / "lopsided"
    for k, (c, n) in enumerate({"common": 40, "rare": 4, "some": 12}.items()):
        for i in range(n):
            make_image(root / c / f"{c}_{i}.png", 1000 * k + i, shade=k)
    run = study_home / "runs" / "lop"

    def notebook(name, **params):
        papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / f"{name}.ipynb"), str(run / f"{name}-out.ipynb"),
                                   parameters={"run_id": "lop", "device": "cpu", **params}, cwd=str(tmp_path),
                                   kernel_name=pipeline._kernel_name(), progress_bar=False)
    run.mkdir(parents=True)
    notebook("02_data", dataset=str(root))
    report = json.loads((run / "data_report.json").read_text())["imbalance"]
    assert (report["largest"], report["smallest"], report["ratio"], report["imbalanced"]) == ("common", "rare", 10.0,
                                                                                             True)
    assert report["sentence"] in (run / "02_data-out.ipynb").read_text()
    notebook("03_train", image_size=32, batch_size=8, epochs=1, head_epochs=2, class_weights="balanced",
             sampler="balanced", select_metric="balanced_accuracy")
    row = pd.read_csv(run / "cycles.csv").iloc[-1]
    assert (row["select_metric"], row["class_weights"], row["sampler"]) == ("balanced_accuracy", "balanced", "balanced")
    notebook("04_evaluate", lang="en", select_metric="balanced_accuracy")
    metrics = json.loads((run / "metrics.json").read_text())
    preds = pd.read_csv(run / "predictions.csv")
    assert metrics["select_metric"] == "balanced_accuracy"
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(preds["label"], preds["pred"]))
    lo, hi = metrics["balanced_accuracy_ci95"]
    assert lo <= metrics["balanced_accuracy"] <= hi
    for c, v in metrics["per_class"].items():
        assert v["recall_ci95"][0] <= v["recall"] <= v["recall_ci95"][1] and v["support"] == (preds["label"] == c).sum()
