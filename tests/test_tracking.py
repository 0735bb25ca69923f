"""helpers.tracking: none imports nothing; a missing package is one sentence; a tracker gets params, epochs, figures."""

from __future__ import annotations

import importlib.machinery
import subprocess
import sys
import types

import pytest

from helpers.training import tracking


def test_none_imports_no_tracker():
    code = ("import sys; from helpers.training import tracking, cycle; t = tracking.start('none', '.', 1, {'lr': 1});"
            "t.log_epoch({'val_accuracy': 0.5}, 1); t.finish({}); tracking.log_figure('none', '.', 1, 'x.png');"
            "print(sorted(m for m in sys.modules if m.startswith(('mlflow', 'tensorboard', 'torch.utils.tensorboard'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_asked_for_but_not_installed_is_one_sentence(monkeypatch):
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(tracking.TrackingError, match=r"^tracking=mlflow: the mlflow package is not installed .*"
                                                     r"or use tracking=none\.$"):
        tracking.start("mlflow", "run", 1, {})


def test_the_schema_refuses_a_missing_tracker_before_anything_runs(monkeypatch):
    from helpers.runner import preflight
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="tensorboard package is not installed"):
        preflight.check({"tracking": "tensorboard"})


def _fake_mlflow(calls: list) -> types.ModuleType:
    fake = types.ModuleType("mlflow")
    fake.__spec__ = importlib.machinery.ModuleSpec("mlflow", None)
    for name in ("set_tracking_uri", "set_experiment", "start_run", "log_params", "log_metrics", "log_artifact",
                 "end_run"):
        setattr(fake, name, lambda *a, _n=name, **k: calls.append((_n, a, k)))
    return fake


def test_mlflow_gets_parameters_epochs_and_figures(monkeypatch, tmp_path):
    calls: list = []
    monkeypatch.setitem(sys.modules, "mlflow", _fake_mlflow(calls))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    t = tracking.start("mlflow", tmp_path / "my-run", 2, {"lr": 0.002, "arch": "efficientnet-lite0"})
    t.log_epoch({"epoch": 1, "val_accuracy": 0.81, "stage": "head", "val_loss": float("nan")}, step=1)
    t.log_figure(tmp_path / "training_metrics.png")
    t.finish({"best_val_accuracy": 0.81, "device": "cpu"})
    names = [c[0] for c in calls]
    assert names == ["set_tracking_uri", "set_experiment", "start_run", "log_params", "log_metrics", "log_artifact",
                     "log_metrics", "end_run"]
    assert calls[0][1][0].endswith("/mlruns") and calls[1][1] == ("my-run",)
    assert calls[2][2] == {"run_name": "cycle-2"}
    assert calls[3][1][0] == {"lr": "0.002", "arch": "efficientnet-lite0"}
    assert calls[4][1][0] == {"epoch": 1.0, "val_accuracy": 0.81} and calls[4][2] == {"step": 1}
    assert calls[6][1][0] == {"cycle_best_val_accuracy": 0.81}


@pytest.mark.integration
def test_a_training_cycle_logs_each_epoch_and_its_row(monkeypatch, tmp_path):
    import numpy as np
    import torch

    from helpers.training.config import TrainConfig
    from helpers.training.cycle import run_cycle
    calls: list = []
    monkeypatch.setitem(sys.modules, "mlflow", _fake_mlflow(calls))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(12, 3, 32, 32), dtype=np.uint8)
    labels = [i % 2 for i in range(12)]
    cfg = TrainConfig(arch="mobilenet_v3_small", classes=["a", "b"], image_size=32, batch_size=6, epochs=1,
                            head_epochs=1, weights="none", tracking="mlflow")
    row = run_cycle(cfg, tmp_path / "run", images, labels, images, labels, torch.device("cpu"), progress=False)
    epochs = [c for c in calls if c[0] == "log_metrics" and "step" in c[2]]
    assert [c[2]["step"] for c in epochs] == [1, 2]
    history = __import__("pandas").read_csv(tmp_path / "run" / "history.csv")
    assert [round(c[1][0]["val_accuracy"], 5) for c in epochs] == history["val_accuracy"].tolist()
    summary = [c for c in calls if c[0] == "log_metrics" and "step" not in c[2]][0][1][0]
    assert summary["cycle_best_val_accuracy"] == row["best_val_accuracy"]
    assert calls[-1][0] == "end_run"
