"""helpers.train: a cycle is a ledger row, checkpoints load with weights_only, interruption loses nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.models import zoo
from helpers.training import checkpoints, ledger, loop, optim, randomness
from helpers.training import cycle as train
from helpers.training.config import TrainConfig, TrainError, config_from

DEVICE = torch.device("cpu")


def _data(n=24, size=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = [i % classes for i in range(n)]
    images = rng.integers(0, 50, size=(n, 3, size, size), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, y] += 150  # one bright channel per class: learnable in an epoch
    return images, labels


def _config(**kw):
    base = dict(arch="mobilenet_v3_small", classes=["a", "b", "c"], image_size=32, batch_size=8, epochs=2,
                head_epochs=1, weights="none", lr=3e-3)
    base.update(kw)
    return TrainConfig(**base)


def _crash_on(call: int, monkeypatch):
    """Make the `call`-th whole-network epoch raise KeyboardInterrupt (the user pressed stop)."""
    original = loop.train_one_epoch
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)
    monkeypatch.setattr(loop, "train_one_epoch", crashing)
    return original


def test_cycle_writes_ledger_history_and_checkpoints(tmp_path):
    x, y = _data()
    row = train.run_cycle(_config(), tmp_path, x, y, x, y, DEVICE, progress=False)
    cycles = pd.read_csv(tmp_path / "cycles.csv")
    assert list(cycles.columns[:12]) == ["cycle", "started_at", "device", "device_name", "arch", "image_size",
                                         "epochs", "batch_size", "best_epoch", "best_val_accuracy",
                                         "test_accuracy", "seconds"]
    assert cycles["cycle"].tolist() == [1] and cycles["epochs"].tolist() == [2]
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["stage"].tolist() == ["head", "full", "full"]
    assert history["epoch"].tolist() == [1, 2, 3]
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["config"]["classes"] == ["a", "b", "c"] and best["epoch"] == row["best_epoch"]
    assert best["val_accuracy"] == pytest.approx(history["val_accuracy"].max(), abs=1e-4)
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["finished"] is True


def test_continuation_cycles_append_rows_and_keep_earlier_ones(tmp_path):
    x, y = _data()
    train.run_cycle(_config(epochs=1, head_epochs=0), tmp_path, x, y, x, y, DEVICE, progress=False)
    first = (tmp_path / "cycles.csv").read_text().splitlines()[1]
    train.run_cycle(_config(epochs=1, head_epochs=0, init="best"), tmp_path, x, y, x, y, DEVICE, progress=False)
    lines = (tmp_path / "cycles.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1] == first
    ledger.fill_test_accuracy(tmp_path, 2, 0.5)
    cycles = pd.read_csv(tmp_path / "cycles.csv", dtype=str, keep_default_na=False)
    assert cycles["test_accuracy"].tolist() == ["", "0.50000"]
    assert (tmp_path / "cycles.csv").read_text().splitlines()[1] == first


def test_interrupted_cycle_resumes_from_last_epoch(tmp_path, monkeypatch):
    x, y = _data()
    cfg = _config(epochs=3, head_epochs=0)
    original = _crash_on(3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train.run_cycle(cfg, tmp_path, x, y, x, y, DEVICE, progress=False)
    assert not (tmp_path / "cycles.csv").exists()
    monkeypatch.setattr(loop, "train_one_epoch", original)
    row = train.run_cycle(cfg, tmp_path, x, y, x, y, DEVICE, progress=False)
    assert row["cycle"] == 1 and row["epochs"] == 3
    assert len(pd.read_csv(tmp_path / "cycles.csv")) == 1
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1, 2, 3]


@pytest.mark.integration
@pytest.mark.parametrize("settings, crash", [(dict(epochs=2, augment="none", late_freeze=0.0), 2),
                                             # interrupted in the second epoch after the late freeze's switch
                                             (dict(epochs=3, augment="flip", late_freeze=2 / 3), 3)])
def test_resumed_cycle_equals_uninterrupted_one(tmp_path, monkeypatch, settings, crash):
    x, y = _data()
    cfg = _config(head_epochs=0, **settings)
    train.run_cycle(cfg, tmp_path / "straight", x, y, x, y, DEVICE, progress=False)
    original = _crash_on(crash, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train.run_cycle(cfg, tmp_path / "resumed", x, y, x, y, DEVICE, progress=False)
    monkeypatch.setattr(loop, "train_one_epoch", original)
    train.run_cycle(cfg, tmp_path / "resumed", x, y, x, y, DEVICE, progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_bad_configs_fail_before_anything_is_written(tmp_path):
    x, y = _data()
    for kwargs, message in [({"batch_size": 0}, "batch_size=0"), ({"epochs": -1}, "epochs=-1"),
                            ({"arch": "vgg"}, "arch='vgg' is not known"),
                            ({"late_freeze": 1.5}, "late_freeze=1.5: must be a share")]:
        with pytest.raises(ValueError, match=message):
            train.run_cycle(_config(**kwargs), tmp_path, x, y, x, y, DEVICE, progress=False)
    with pytest.raises(checkpoints.CheckpointError, match="no such checkpoint yet"):
        train.run_cycle(_config(init="best"), tmp_path, x, y, x, y, DEVICE, progress=False)
    assert not (tmp_path / "cycles.csv").exists()


@pytest.mark.integration
def test_checkpoint_of_other_arch_or_classes_is_refused(tmp_path):
    x, y = _data()
    train.run_cycle(_config(epochs=1, head_epochs=0), tmp_path, x, y, x, y, DEVICE, progress=False)
    with pytest.raises(TrainError, match="holds arch mobilenet_v3_small, not efficientnet-lite0"):
        train.run_cycle(_config(arch="efficientnet-lite0", init="best"), tmp_path, x, y, x, y, DEVICE,
                        progress=False)
    with pytest.raises(TrainError, match="classes .* differ"):
        train.run_cycle(_config(classes=["a", "b", "z"], init="last"), tmp_path, x, y, x, y, DEVICE,
                        progress=False)
    assert len(pd.read_csv(tmp_path / "cycles.csv")) == 1


@pytest.mark.integration
def test_out_of_memory_halves_the_batch_and_keeps_the_effective_batch(tmp_path, monkeypatch):
    x, y = _data()
    def check(module, inputs):  # the classifier's layers run in every path of a training step
        if isinstance(module, torch.nn.Linear) and module.training and inputs[0].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    hook = torch.nn.modules.module.register_module_forward_pre_hook(check)  # as a small GPU would
    try:
        row = train.run_cycle(_config(epochs=1, head_epochs=0), tmp_path, x, y, x, y, DEVICE, progress=False)
    finally:
        hook.remove()
    assert row["epochs"] == 1
    note = pd.read_csv(tmp_path / "cycles.csv")["note"].iloc[0]
    assert note == ("out of memory at batch 8: trained in micro-batches of 2 with 4 accumulation steps "
                    "(effective batch 8)")


def test_unfreeze_top_blocks_and_onecycle(tmp_path):
    from helpers.models.zoo import build_model
    model = build_model("mobilenet_v3_small", 3, "none")
    optim.set_trainable(model, "mobilenet_v3_small", "full", "2")
    blocks = zoo.backbone_blocks(model, "mobilenet_v3_small")
    assert all(p.requires_grad for b in blocks[-2:] for p in b.parameters())
    assert not any(p.requires_grad for b in blocks[:-2] for p in b.parameters())
    optim.set_trainable(model, "mobilenet_v3_small", "head", "all")
    assert [p.requires_grad for p in model.parameters()].count(True) == len(list(model.classifier.parameters()))
    x, y = _data()
    row = train.run_cycle(_config(epochs=1, head_epochs=0, unfreeze="2", schedule="onecycle"), tmp_path,
                          x, y, x, y, DEVICE, progress=False)
    assert row["epochs"] == 1
    with pytest.raises(ValueError, match="unfreeze='top'"):
        train.run_cycle(_config(unfreeze="top"), tmp_path / "top", x, y, x, y, DEVICE, progress=False)
    assert not (tmp_path / "top").exists()


@pytest.mark.e2e
def test_killed_process_resumes_with_one_ledger_row(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from helpers.utils import paths
    script = ("import torch; from tests.test_train import _data, _config; from helpers.training import cycle as train\n"
              "x, y = _data(n=256, size=64)\n"
              f"train.run_cycle(_config(epochs=6, head_epochs=0), __import__('pathlib').Path({str(tmp_path)!r}),"
              " x, y, x[:32], y[:32], torch.device('cpu'), progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=paths.PROJECT_ROOT)
    history = tmp_path / "history.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not history.exists() or len(history.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no cleanup, no finally: like a crash or a closed laptop
    proc.wait()
    assert not (tmp_path / "cycles.csv").exists()
    x, y = _data(n=256, size=64)
    row = train.run_cycle(_config(epochs=6, head_epochs=0), tmp_path, x, y, x[:32], y[:32], DEVICE, progress=False)
    assert row["epochs"] == 6 and len(pd.read_csv(tmp_path / "cycles.csv")) == 1
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1, 2, 3, 4, 5, 6]


@pytest.mark.integration
def test_interrupted_cycle_rerun_with_other_parameters_still_gets_its_row(tmp_path, monkeypatch):
    x, y = _data()
    original = _crash_on(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train.run_cycle(_config(epochs=3, head_epochs=0), tmp_path, x, y, x, y, DEVICE, progress=False)
    monkeypatch.setattr(loop, "train_one_epoch", original)
    train.run_cycle(_config(epochs=1, head_epochs=0, lr=1e-3), tmp_path, x, y, x, y, DEVICE, progress=False)
    cycles = pd.read_csv(tmp_path / "cycles.csv")
    assert cycles["cycle"].tolist() == [1, 2] and cycles["epochs"].tolist() == [1, 1]
    assert cycles["note"].iloc[0].startswith("interrupted after 1 epoch(s) and not resumed")


def _scripted_validation(monkeypatch, accuracies):
    """Make every validation return the next accuracy of `accuracies`: which model is kept is then certain."""
    it = iter(accuracies)
    monkeypatch.setattr(loop, "validate", lambda c, images, labels: (1.0, next(it), {}))


def _ckpt(path):
    return torch.load(path, weights_only=True)


@pytest.mark.integration
def test_a_worse_cycle_never_replaces_the_runs_best(tmp_path, monkeypatch):
    x, y = _data()
    head_only = dict(epochs=0, head_epochs=2)  # the head on cached features: the cheapest real cycle
    _scripted_validation(monkeypatch, [0.5, 0.8, 0.6, 0.7, 0.9, 0.85])
    train.run_cycle(_config(**head_only), tmp_path, x, y, x, y, DEVICE, progress=False)
    train.run_cycle(_config(**head_only, init="best", lr=0.5), tmp_path, x, y, x, y, DEVICE, progress=False)
    ckpts = tmp_path / "checkpoints"
    best = _ckpt(ckpts / "best.pt")
    assert (best["cycle"], best["epoch"], best["val_accuracy"]) == (1, 2, 0.8)  # cycle 2's best was 0.7
    assert _ckpt(ckpts / "cycle-2" / "best.pt")["val_accuracy"] == 0.7
    for k, v in _ckpt(ckpts / "cycle-1" / "best.pt")["model"].items():
        assert torch.equal(v, best["model"][k])
    train.run_cycle(_config(**head_only, init="cycle:2"), tmp_path, x, y, x, y, DEVICE, progress=False)
    assert (_ckpt(ckpts / "best.pt")["cycle"], _ckpt(ckpts / "best.pt")["val_accuracy"]) == (3, 0.9)
    cycles = pd.read_csv(tmp_path / "cycles.csv")
    assert cycles["init_from"].fillna(0).astype(int).tolist() == [0, 1, 2]
    assert cycles["best_val_accuracy"].tolist() == [0.8, 0.7, 0.9]
    assert list(cycles.columns[:12]) == ledger.CYCLE_COLUMNS[:12] and list(cycles.columns) == ledger.CYCLE_COLUMNS


@pytest.mark.integration
def test_init_names_the_checkpoint_a_cycle_starts_from(tmp_path, monkeypatch):
    x, y = _data()
    _scripted_validation(monkeypatch, [0.9, 0.4])
    for _ in range(2):
        train.run_cycle(_config(epochs=0, head_epochs=1, init="best" if _ else "weights"), tmp_path, x, y, x, y,
                        DEVICE, progress=False)
    # epochs=0: the cycle trains nothing, so its last.pt is exactly the model it started from
    train.run_cycle(_config(epochs=0, head_epochs=0, init="cycle:2"), tmp_path, x, y, x, y, DEVICE, progress=False)
    start = _ckpt(tmp_path / "checkpoints" / "cycle-3" / "last.pt")["model"]
    for k, v in _ckpt(tmp_path / "checkpoints" / "cycle-2" / "best.pt")["model"].items():
        assert torch.equal(v, start[k])
    train.run_cycle(_config(epochs=0, head_epochs=0, init="best"), tmp_path, x, y, x, y, DEVICE, progress=False)
    start = _ckpt(tmp_path / "checkpoints" / "cycle-4" / "last.pt")["model"]
    for k, v in _ckpt(tmp_path / "checkpoints" / "cycle-1" / "best.pt")["model"].items():
        assert torch.equal(v, start[k])  # best = cycle 1 (0.9), not the newer cycle 2 (0.4)
    assert pd.read_csv(tmp_path / "cycles.csv")["init_from"].fillna(0).astype(int).tolist() == [0, 1, 2, 1]


@pytest.mark.integration
def test_continuation_may_change_batch_size_lr_and_epochs(tmp_path, monkeypatch):
    x, y = _data()
    train.run_cycle(_config(epochs=1, head_epochs=0, batch_size=8), tmp_path, x, y, x, y, DEVICE, progress=False)
    loaded = {}
    real = zoo.load_weights

    def spy(model, arch, state, source):
        loaded["state"] = state
        return real(model, arch, state, source)
    monkeypatch.setattr(zoo, "load_weights", spy)
    row = train.run_cycle(_config(epochs=2, head_epochs=0, batch_size=16, lr=1e-3, init="best"), tmp_path,
                          x, y, x, y, DEVICE, progress=False)
    assert (row["cycle"], row["batch_size"], row["epochs"], row["lr"], row["init_from"]) == (2, 16, 2, 1e-3, 1)
    best1 = _ckpt(tmp_path / "checkpoints" / "cycle-1" / "best.pt")["model"]
    assert all(torch.equal(best1[k], loaded["state"][k]) for k in best1)  # started from cycle 1's best
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["cycle"].tolist() == [1, 2, 2]


@pytest.mark.integration
def test_keep_last_prunes_older_cycles_last_but_never_a_best(tmp_path):
    x, y = _data()
    for n in range(3):
        train.run_cycle(_config(epochs=0, head_epochs=1, init="weights" if n == 0 else "last", keep_last=1),
                        tmp_path, x, y, x, y, DEVICE, progress=False)
    ckpts = tmp_path / "checkpoints"
    assert sorted(str(p.relative_to(ckpts)) for p in ckpts.rglob("*.pt")) == [
        "best.pt", "cycle-1/best.pt", "cycle-2/best.pt", "cycle-3/best.pt", "cycle-3/last.pt", "last.pt"]


def test_kill_between_last_checkpoint_and_ledger_row_still_yields_the_row(tmp_path, monkeypatch):
    from helpers.training import ledger
    x, y = _data()
    real = ledger.append_cycle

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(ledger, "append_cycle", killed)
    with pytest.raises(KeyboardInterrupt):
        train.run_cycle(_config(epochs=0, head_epochs=1), tmp_path, x, y, x, y, DEVICE, progress=False)
    assert not (tmp_path / "cycles.csv").exists() and _ckpt(tmp_path / "checkpoints" / "last.pt")["finished"]
    monkeypatch.setattr(ledger, "append_cycle", real)
    train.run_cycle(_config(epochs=0, head_epochs=1, init="best"), tmp_path, x, y, x, y, DEVICE, progress=False)
    cycles = pd.read_csv(tmp_path / "cycles.csv")
    assert cycles["cycle"].tolist() == [1, 2] and cycles["head_epochs"].tolist() == [1, 1]
    assert (tmp_path / "checkpoints" / "cycle-1" / "last.pt").exists()


def test_bad_init_is_refused_before_anything_is_written(tmp_path):
    x, y = _data()
    with pytest.raises(checkpoints.CheckpointError, match=r"best.pt not found: this run has no such checkpoint yet"):
        train.run_cycle(_config(init="best"), tmp_path, x, y, x, y, DEVICE, progress=False)
    for _ in range(3):
        train.run_cycle(_config(epochs=0, head_epochs=1, init="last" if _ else "weights"), tmp_path, x, y, x, y,
                        DEVICE, progress=False)
    before = (tmp_path / "cycles.csv").read_text()
    with pytest.raises(checkpoints.CheckpointError, match=r"cycle 7: .*cycle-7/best.pt not found; this run's cycles "
                                                    r"with a checkpoint are 1, 2, 3"):
        train.run_cycle(_config(init="cycle:7"), tmp_path, x, y, x, y, DEVICE, progress=False)
    with pytest.raises(TrainError, match=r"init=cycle:2: .*cycle-2/best.pt holds arch mobilenet_v3_small, "
                                         r"not efficientnet-lite0"):
        train.run_cycle(_config(arch="efficientnet-lite0", init="cycle:2"), tmp_path, x, y, x, y, DEVICE,
                        progress=False)
    with pytest.raises(TrainError, match=r"init=cycle:2: .*classes \['a', 'b', 'c'\] differ"):
        train.run_cycle(_config(classes=["a", "b", "z"], init="cycle:2"), tmp_path, x, y, x, y, DEVICE,
                        progress=False)
    best = tmp_path / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])  # truncated, as by a full disk
    with pytest.raises(checkpoints.CheckpointError, match=rf"{best} is unreadable .*truncated or corrupt"):
        train.run_cycle(_config(init="best"), tmp_path, x, y, x, y, DEVICE, progress=False)
    assert (tmp_path / "cycles.csv").read_text() == before
    assert _ckpt(tmp_path / "checkpoints" / "cycle-2" / "best.pt")["cycle"] == 2  # the others are intact


def test_deterministic_sets_the_cuda_switches(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        randomness.seed_everything(0, deterministic=True)
        import os
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_config_from_takes_every_training_parameter_by_name():
    from types import SimpleNamespace
    ctx = SimpleNamespace(arch="mobilenet_v3_small", batch_size=16, epochs=3, lr=0.01, init="cycle:2",
                          keep_last=1, device=torch.device("cpu"), unfreeze="all", run_id="x", lang="en")
    cfg = config_from(ctx, ["a", "b"], 48)
    assert (cfg.batch_size, cfg.epochs, cfg.lr, cfg.init, cfg.keep_last, cfg.device) == (16, 3, 0.01, "cycle:2", 1,
                                                                                         "cpu")
    assert cfg.classes == ["a", "b"] and cfg.image_size == 48 and cfg.head_epochs == 5  # absent: the default


@pytest.mark.notebook
def test_notebooks_03_twice_then_04_on_a_named_cycle(make_dataset, study_home):
    """Through papermill: a worse second cycle (init=best, far too high lr) leaves best.pt as it was; 04 cycle=2."""
    import hashlib
    import json

    import papermill

    from helpers import pipeline
    from helpers.data import dataset as data
    from helpers.utils import paths
    run = paths.run_dir("cycles")
    data.split_for(run, str(make_dataset(per_class=8)), 42)
    common = {"run_id": "cycles", "arch": "efficientnet-lite0", "image_size": 32, "batch_size": 8, "epochs": 0,
              "head_epochs": 2, "weights": "imagenet", "device": "cpu"}

    def notebook(name, **params):
        papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / f"{name}.ipynb"), str(run / f"{name}-out.ipynb"),
                                   parameters=params, cwd=str(paths.NOTEBOOKS_DIR),
                                   kernel_name=pipeline._kernel_name(), progress_bar=False)
    notebook("03_train", **{**common, "head_epochs": 10, "lr": 0.02})  # a good first cycle
    best = run / "checkpoints" / "best.pt"
    digest = hashlib.sha256(best.read_bytes()).hexdigest()
    notebook("03_train", **{**common, "init": "best", "lr": 50.0})
    cycles = pd.read_csv(run / "cycles.csv")
    assert cycles["cycle"].tolist() == [1, 2] and cycles["init_from"].fillna(0).astype(int).tolist() == [0, 1]
    assert cycles["best_val_accuracy"].iloc[1] <= cycles["best_val_accuracy"].iloc[0] == 1.0
    assert hashlib.sha256(best.read_bytes()).hexdigest() == digest  # the worse cycle kept only its own best
    assert (run / "checkpoints" / "cycle-2" / "best.pt").exists()
    notebook("04_evaluate", run_id="cycles", device="cpu", lang="en", cycle=2)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["cycle"], metrics["selected_by"]) == (2, "parameter cycle=2")
    assert metrics["selection"]["run_best_cycle"] == 1
    assert pd.read_csv(run / "cycles.csv")["test_accuracy"].notna().tolist() == [False, True]


def test_a_split_without_val_or_with_an_untrained_class_is_one_sentence(tmp_path):
    import numpy as np

    from helpers.training.cycle import check_splits

    with pytest.raises(TrainError, match=r"split.csv has no val images; rerun 02"):
        check_splits(["a", "b"], [0, 1], [], tmp_path)
    with pytest.raises(TrainError, match=r"class\(es\) \['b'\] have no train images"):
        check_splits(["a", "b"], np.array([0, 0]), [0, 1], tmp_path)
    check_splits(["a", "b"], [0, 1], [1], tmp_path)


def _files(folder):
    """Every file below `folder` but a test's filler, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "filler.bin"}


@pytest.mark.integration
def test_a_cycle_that_cannot_fit_its_checkpoints_is_refused_before_its_first_epoch(small_disk):
    import subprocess

    disk = small_disk("64m")
    run = disk / "run"
    x, y = _data()
    train.run_cycle(_config(epochs=1, head_epochs=0), run, x, y, x, y, DEVICE, progress=False)
    before = _files(run)
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"^cycle 2 needs about \d+\.\d MB for its checkpoints in .*run/checkpoints \(best\.pt "
                             r"and last\.pt .*\) but the disk holding that folder has \d+\.\d MB free; nothing was "
                             r"trained or written"):
        train.run_cycle(_config(epochs=1, head_epochs=0), run, x, y, x, y, DEVICE, progress=False)
    assert _files(run) == before and not list(run.rglob("*.tmp"))
    # The user makes room: the same call now trains cycle 2 after cycle 1.
    subprocess.run(["mount", "-o", "remount,size=128m", str(disk)], check=True)
    train.run_cycle(_config(epochs=1, head_epochs=0), run, x, y, x, y, DEVICE, progress=False)
    assert ledger.read_cycles(run)["cycle"].tolist() == [1, 2]


@pytest.mark.integration
def test_a_disk_filled_while_a_cycle_trains_loses_nothing_and_the_next_run_goes_on(small_disk):
    from helpers.utils import files

    from .conftest import fill_disk
    run = small_disk("128m") / "run"
    x, y = _data()
    train.run_cycle(_config(epochs=1, head_epochs=0), run, x, y, x, y, DEVICE, progress=False)
    before = _files(run)
    c = train.open_cycle(_config(epochs=2, head_epochs=0), run, y, y, DEVICE, progress=False)
    filler = fill_disk(run, leave=256 * 1024)  # another program fills the disk after the check
    with pytest.raises(files.DiskFullError, match=r"^no space left to write (best|last)\.pt in .*run/checkpoints"
                                                  r"(/cycle-2)?: the disk holding that folder has .* free; nothing "
                                                  r"was replaced"):
        train.run_stage(c, "full", x, y, x, y)
    after = _files(run)
    kept = set(before) - {"history.csv"}
    assert set(after) == set(before) and {k: after[k] for k in kept} == {k: before[k] for k in kept}
    # The epoch's history row may be there (its checkpoint is not): the next run drops it when it redoes the epoch.
    assert after["history.csv"].startswith(before["history.csv"])
    assert not list(run.rglob("*.tmp"))
    filler.unlink()
    train.run_cycle(_config(epochs=2, head_epochs=0), run, x, y, x, y, DEVICE, progress=False)
    assert ledger.read_cycles(run)["cycle"].tolist() == [1, 2]
    history = ledger.read_history(run)
    assert history[history["cycle"] == 2]["epoch"].tolist() == [1, 2]  # no epoch twice
    for path in run.rglob("*.pt"):
        checkpoints.load(path)


@pytest.mark.notebook
def test_notebook_03_on_a_disk_too_small_for_its_checkpoints_stops_with_one_sentence(make_dataset, small_disk,
                                                                                      monkeypatch):
    import papermill

    from helpers import pipeline
    from helpers.data import dataset as data
    from helpers.utils import paths
    monkeypatch.setenv("STUDY_HOME", str(small_disk("16m") / "home"))
    run = paths.run_dir("small")
    data.split_for(run, str(make_dataset(per_class=8)), 42)
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / "03_train.ipynb"), str(run.parent / "03-out.ipynb"),
                                   parameters={"run_id": "small", "arch": "mobilenet_v3_small", "weights": "none",
                                               "image_size": 32, "batch_size": 8, "epochs": 1, "head_epochs": 1,
                                               "device": "cpu"},
                                   cwd=str(paths.NOTEBOOKS_DIR), kernel_name=pipeline._kernel_name(),
                                   progress_bar=False)
    assert caught.value.ename == "CheckpointError"
    assert caught.value.evalue.startswith("cycle 1 needs about ") and "for its checkpoints in " in caught.value.evalue
    assert " free; nothing was trained or written" in caught.value.evalue
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").rglob("*"))
    assert not (run / "cycles.csv").exists() and not (run / "history.csv").exists()
