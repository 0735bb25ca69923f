"""helpers.distributed: 2 gloo processes train like one with the same global batch; a killed rank loses nothing.

resnet50 with frozen BatchNorm, no augmentation and no head stage is used because it has no dropout, so a
single process and two processes compute the same thing up to the order of floating-point sums.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import pipeline, session
from helpers.data import dataset as data
from helpers.data import imagecache
from helpers.params.schema import ParameterError, defaults
from helpers.training import distributed
from helpers.training.config import config_from
from helpers.training.cycle import run_cycle
from helpers.utils import paths

# The same cycle for both: 16 training images, global batch 8, two epochs, resnet50 with nothing random in it.
CYCLE = dict(arch="resnet50", weights="none", image_size=32, epochs=2, head_epochs=0, augment="none",
             freeze_bn=True, deterministic=True, device="cpu", lr=0.0005, workers=0)
# Stated tolerance. Two processes reorder floating-point sums, and AdamW turns noise-level gradient differences
# into steps of about lr, so the cycles agree closely but not bit for bit. Measured here: mean |weight
# difference| 5e-7 (two processes vs one), validation loss 0.2 % apart. A single process with HALF the global
# batch is 1.3e-4 off in weights and 50 %+ off in validation loss, and the test checks that it fails the tolerance.
WEIGHT_TOLERANCE = 1e-5  # mean absolute difference over every weight of the final model
LOSS_RTOL = 0.01  # validation and training loss per epoch, relative


def make_run(run_id: str, per_class: int = 12) -> Path:
    """A run whose 02 is done: split.csv (2 classes, 8 train + 4 val images each) and data_report.json."""
    home = paths.home()
    root, run = home / "ds", paths.run_dir(run_id)
    run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for k, label in enumerate(["a", "b"]):
        for i in range(per_class):
            arr = rng.integers(0, 60, size=(24, 24, 3), dtype=np.uint8)
            arr[..., k] += 180
            path = root / label / f"{label}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
            rows.append({"path": f"{label}/{path.name}", "label": label, "split": "train" if i < 8 else "val",
                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    pd.DataFrame(rows).to_csv(run / "split.csv", index=False)
    (run / "data_report.json").write_text(json.dumps({"root": str(root), "classes": ["a", "b"],
                                                      "image_sizes": [["24x24", 2 * per_class]]}))
    return run


def context(run_id: str, **kw) -> SimpleNamespace:
    """03's parameters as the notebook's context holds them."""
    p = {**defaults("03_train"), **CYCLE, "run_id": run_id, **kw}
    return SimpleNamespace(**p)


def one_process(run_id: str, **kw) -> dict:
    """The reference: the same cycle in this process, as 03 runs it with devices=1."""
    ctx = context(run_id, **kw)
    run = paths.run_dir(run_id)
    frame, report = data.load_split(run)
    cfg = config_from(SimpleNamespace(**{**vars(ctx), "device": torch.device("cpu")}), report["classes"], 32)
    x, y = imagecache.split_arrays(frame, report["classes"], "train", 32)
    vx, vy = imagecache.split_arrays(frame, report["classes"], "val", 32)
    return run_cycle(cfg, run, x, y, vx, vy, torch.device("cpu"), progress=False)


def weights(run_id: str) -> dict:
    return torch.load(paths.run_dir(run_id) / "checkpoints" / "cycle-1" / "last.pt", weights_only=True)["model"]


def weight_difference(a: str, b: str) -> float:
    """Mean absolute difference over every floating-point weight of two runs' final models."""
    wa, wb = weights(a), weights(b)
    keys = [k for k in wb if wb[k].is_floating_point()]
    return float(torch.cat([(wa[k].float() - wb[k].float()).abs().flatten() for k in keys]).mean())


def history(run_id: str) -> pd.DataFrame:
    return pd.read_csv(paths.run_dir(run_id) / "history.csv")


@pytest.mark.e2e
def test_two_gloo_processes_from_03_match_one_process_with_the_same_global_batch(tmp_path):
    import papermill
    for run_id in ("two", "one", "half"):
        make_run(run_id)
    params = vars(context("two", batch_size=4, devices="2"))
    papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / "03_train.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters=params, kernel_name=pipeline._kernel_name(), cwd=str(tmp_path),
                               progress_bar=False)
    one_process("one", batch_size=8)  # the same global batch in one process
    one_process("half", batch_size=4)  # a different global batch: must fall outside the tolerance

    two, one, half = history("two"), history("one"), history("half")
    assert two["epoch"].tolist() == one["epoch"].tolist() == [1, 2]
    for col in ("val_loss", "train_loss"):
        np.testing.assert_allclose(two[col], one[col], rtol=LOSS_RTOL, err_msg=col)
        assert not np.allclose(half[col], one[col], rtol=LOSS_RTOL)
    assert two["val_accuracy"].tolist() == one["val_accuracy"].tolist()
    assert weight_difference("two", "one") < WEIGHT_TOLERANCE < weight_difference("half", "one")
    ledger = pd.read_csv(paths.run_dir("two") / "cycles.csv")
    assert len(ledger) == 1 and ledger["device_name"][0].startswith("2 × CPU")
    assert ledger["batch_size"][0] == 4  # per process; the global batch is 8
    assert "[rank0]: cycle 1 epoch 2/2" in (tmp_path / "out.ipynb").read_text()  # the ranks' progress, streamed


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _rank_of(pid: int) -> int | None:
    try:
        env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the ranks through /proc (Linux)")
def test_kill_9_of_one_rank_mid_cycle_then_rerun_resumes_with_one_ledger_row():
    run = make_run("kill")
    ctx = context("kill", batch_size=4, devices="2", epochs=4)
    args = distributed.cycle_args("kill", vars(ctx))
    proc = subprocess.Popen(distributed.torchrun_command(2, args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=paths.PROJECT_ROOT, env=distributed.launch_env(2))
    last = run / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not (last.exists() and (run / "history.csv").exists()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the cycle ended before a rank could be killed"
    victim = next(p for p in _children(proc.pid) if _rank_of(p) == 1)
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    history = pd.read_csv(run / "history.csv")
    assert 1 <= len(history) < 4 and not (run / "cycles.csv").exists()

    lines: list[str] = []
    distributed.launch(ctx, echo=lines.append)
    cycles = pd.read_csv(run / "cycles.csv")
    assert cycles["cycle"].tolist() == [1] and cycles["epochs"].tolist() == [4]
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2, 3, 4]
    epochs = [x for x in lines if "cycle 1 epoch" in x]
    assert epochs and not epochs[0].startswith("[rank0]: cycle 1 epoch 1/")  # resumed, not restarted


@pytest.mark.e2e
def test_a_rank_that_dies_at_start_is_named_with_its_last_lines(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import os\nprint('rank', os.environ['RANK'], 'up', flush=True)\n"
                      "if os.environ['RANK'] == '1':\n    print('loading the split', flush=True)\n"
                      "    raise FileNotFoundError('split.csv is gone')\n"
                      "import time\ntime.sleep(30)\n")
    lines: list[str] = []
    with pytest.raises(distributed.LaunchError) as err:
        distributed.run(distributed.torchrun_command(2, [], script=str(script)), 2, echo=lines.append)
    message = str(err.value)
    assert message.startswith("rank 1 of 2 failed (exit code 1): FileNotFoundError: split.csv is gone.")
    assert "loading the split" in message and "rank 1 up" in message
    assert any(x.startswith("[rank1]: ") for x in lines)  # streamed while it ran


def _namespace(**kw) -> dict:
    return {**defaults("03_train"), **kw}


def test_more_devices_than_the_machine_has_stop_before_anything_is_written(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with pytest.raises(ParameterError, match=r"^devices=4 with device=cpu: this machine has 2 CPU core\(s\)"):
        session.start("03_train", _namespace(run_id="big", devices="4", device="cpu"))
    assert not paths.run_dir("big").exists()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"^devices=4: this machine has 1 CUDA device\(s\); use devices=1"):
        distributed.resolve_devices("4", torch.device("cuda"))
    assert distributed.resolve_devices("2", torch.device("cpu")) == 2  # gloo on CPU is allowed (testing)
    assert distributed.resolve_devices("all", torch.device("cpu")) == 1  # one CPU process uses every core
    assert distributed.resolve_devices("all", torch.device("cuda")) == 1


def test_torchrun_missing_is_one_sentence_before_anything_is_written(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH …
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # … nor next to the interpreter
    assert distributed.find_torchrun() is None
    with pytest.raises(ParameterError, match=r"^devices=2: torchrun is not installed next to this Python"):
        session.start("03_train", _namespace(run_id="norun", devices="2", device="cpu"))
    assert not paths.run_dir("norun").exists()
    assert session.start("03_train", _namespace(run_id="solo", devices="1", device="cpu")).devices == 1


def test_entry_point_refuses_a_parameter_03_does_not_have():
    from helpers.training import cli as train_cli
    with pytest.raises(ParameterError, match="'dataset' is not a parameter of 03"):
        train_cli.parse(["--run-id", "x", "-p", "dataset", "sample"])
    run_id, params = train_cli.parse(["--run-id", "x", "-p", "batch_size", "16", "-p", "freeze_bn", "False"])
    assert (run_id, params["batch_size"], params["freeze_bn"]) == ("x", 16, False)


def test_one_process_keeps_its_model_and_batchnorm():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.sync_batchnorm(model, torch.device("cuda"), freeze_bn=False) is model  # world of one
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert distributed.all_reduce_sums([1, 2.5], torch.device("cpu")) == [1.0, 2.5]


@pytest.mark.e2e
def test_the_head_stage_under_two_processes_matches_one_at_the_same_global_batch():
    """Every process runs the whole head stage: its schedule must count its real steps (none at rate 0)."""
    for run_id in ("head2", "head1"):
        make_run(run_id)
    stages = dict(head_epochs=3, epochs=1)
    distributed.launch(context("head2", batch_size=4, devices="2", **stages), echo=lambda line: None)
    one_process("head1", batch_size=8, **stages)  # the same global batch in one process
    two, one = history("head2"), history("head1")
    assert two["stage"].tolist() == one["stage"].tolist() == ["head"] * 3 + ["full"]
    assert two["lr"].tolist() == one["lr"].tolist()  # the same schedule, step for step
    for col in ("train_loss", "val_loss"):
        np.testing.assert_allclose(two[col], one[col], rtol=LOSS_RTOL, err_msg=col)
    assert weight_difference("head2", "head1") < WEIGHT_TOLERANCE


RECORD_DRAWS = '''
import json, os, sys
import torch
from helpers.training import batches
from helpers.training.cli import main

draws, real = [], batches.make_transform


def recording(augment, size):
    transform = real(augment, size)

    def apply(x):
        draws.append(float(torch.rand(())))  # what a random flip or crop draws from, per image
        return transform(x)
    return apply


batches.make_transform = recording
try:
    main(sys.argv[1:])
finally:
    with open(os.path.join(os.environ["DRAWS_DIR"], f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump(draws, f)
'''


@pytest.mark.e2e
def test_each_process_draws_its_own_augmentation_stream(tmp_path, monkeypatch):
    make_run("streams")
    script = tmp_path / "record_draws.py"
    script.write_text(RECORD_DRAWS)
    monkeypatch.setenv("DRAWS_DIR", str(tmp_path))
    distributed.launch(context("streams", batch_size=4, devices="2", head_epochs=0, epochs=2, augment="flip",
                               freeze_early=False),  # the transform path (cached early outputs draw alike)
                       echo=lambda line: None, script=str(script))
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) == len(rank1) == 16  # 8 images per process and epoch, two epochs
    assert rank0 != rank1  # not the same flips of different images
    assert rank0[:8] != rank0[8:]  # and a new stream every epoch
