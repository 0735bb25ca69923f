"""helpers.utils.lock: one writer per run; a second is refused by name (or waits), a killed holder never blocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.utils import lock, paths

HOLD = ("import sys, time; from helpers.utils import lock; "
        "lock.acquire(sys.argv[1], sys.argv[2]); print('held', flush=True); time.sleep(float(sys.argv[3]))")


def _holder(run_dir, holder="notebook 03_train", seconds=120, env=None):
    """Another process that holds the run (like a JupyterLab kernel running 03), started and holding."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), holder, str(seconds)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def holders():
    """Holder processes started by a test, stopped after it."""
    started = []
    yield lambda *a, **k: started.append(_holder(*a, **k)) or started[-1]
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_second_writer_is_refused_at_once_with_the_holder_named(holders, tmp_path):
    run = tmp_path / "runs" / "default"
    proc = holders(run)
    t0 = time.monotonic()
    with pytest.raises(lock.RunLockedError) as caught:
        lock.acquire(run, "python -m helpers.pipeline --from 03_train")
    assert time.monotonic() - t0 < 2
    assert str(caught.value).startswith(f"run 'default' is being written by notebook 03_train (process {proc.pid}, "
                                        "since 20")
    assert "wait for it to finish, or stop it" in str(caught.value) and "STUDY_LOCK_WAIT=<seconds>" in str(caught.value)


def test_a_second_writer_waits_when_asked(holders, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    holders(run, seconds=2)
    monkeypatch.setenv(lock.WAIT_ENV, "60")
    t0 = time.monotonic()
    held = lock.acquire(run, "python -m helpers.export")
    assert 0.5 < time.monotonic() - t0 < 30 and not held.guest
    assert "waiting for run 'run': it is being written by notebook 03_train" in capsys.readouterr().err
    assert lock.read_holder(run)["holder"] == "python -m helpers.export"
    held.release()


def test_a_lock_left_by_a_killed_process_is_never_in_the_way(holders, tmp_path):
    run = tmp_path / "run"
    proc = holders(run)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock.read_holder(run)["pid"] == proc.pid  # its note is still there; the lock itself died with it
    t0 = time.monotonic()
    with lock.hold(run, "notebook 02_data") as held:
        assert time.monotonic() - t0 < 1 and lock.read_holder(run)["pid"] == os.getpid() and not held.guest


def test_the_holders_children_are_let_in_and_no_one_else(tmp_path):
    run = tmp_path / "run"
    child = [sys.executable, "-c", "import sys; from helpers.utils import lock; "
             "print(lock.acquire(sys.argv[1], 'python -m helpers.train_cli').guest)", str(run)]
    with lock.hold(run, "notebook 03_train"):
        inside = subprocess.run(child, capture_output=True, text=True, env={**os.environ, **lock.child_env()})
        assert inside.returncode == 0 and inside.stdout.strip() == "True"
        stranger = subprocess.run(child, capture_output=True, text=True,
                                  env={k: v for k, v in os.environ.items() if k != lock.TOKEN_ENV})
        assert stranger.returncode != 0
        assert "RunLockedError: run 'run' is being written by notebook 03_train" in stranger.stderr
    # Released: the stranger now takes it, and the old token lets no one in.
    assert subprocess.run(child, capture_output=True, text=True).stdout.strip() == "False"


def test_rerunning_the_first_cell_in_the_same_kernel_never_waits_for_itself(holders, study_home):
    from helpers import session
    from helpers.params.schema import defaults
    first = session.start("02_data", defaults("02_data"))
    again = session.start("02_data", defaults("02_data"))  # Run All again, or the first cell again
    assert again.run_dir == first.run_dir
    assert lock.read_holder(first.run_dir)["pid"] == os.getpid()
    # Another run_id in the same kernel lets the first run go: another process can take it at once.
    session.start("02_data", {**defaults("02_data"), "run_id": "other"})
    holders(first.run_dir, holder="notebook 03_train").kill()
    # The notebook's last cell frees its run too.
    ctx = session.start("02_data", {**defaults("02_data"), "run_id": "third"})
    session.finish(ctx)
    holders(ctx.run_dir, holder="notebook 04_evaluate").kill()
    session.finish(ctx)


def test_every_entry_point_refuses_while_the_run_is_held(holders, capsys, study_home):
    from helpers import pipeline
    from helpers.evaluation import export, predict
    from helpers.training import cli as train_cli
    run = paths.run_dir("busy")
    holders(run, holder="notebook 04_evaluate")
    for main, argv in ((pipeline.main, ["--run-id", "busy", "--from", "03_train"]),
                       (train_cli.main, ["--run-id", "busy", "-p", "device", "cpu"]),
                       (predict.main, ["--run-id", "busy", ""]),
                       (export.main, ["--run-id", "busy", "--format", "onnx"])):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: run 'busy' is being written by notebook 04_evaluate (process "), err
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # none of them wrote a thing


@pytest.mark.notebook
def test_two_03_cycles_of_one_run_at_once_give_one_row_and_the_refused_one_says_why(make_dataset, study_home,
                                                                                     tmp_path):
    import nbformat
    import pandas as pd

    from helpers.data import dataset as data
    from helpers.runner import notebooks
    from helpers.training import checkpoints, ledger
    run = paths.run_dir("both")
    data.split_for(run, str(make_dataset(per_class=12, size=(48, 48))), 42)
    params = ["-p", "run_id", "both", "-p", "arch", "mobilenet_v3_small", "-p", "weights", "none", "-p", "image_size",
              "48", "-p", "batch_size", "8", "-p", "epochs", "3", "-p", "head_epochs", "1", "-p", "device", "cpu"]

    def start(name):
        return subprocess.Popen([sys.executable, "-m", "papermill", str(paths.NOTEBOOKS_DIR / "03_train.ipynb"),
                                 str(tmp_path / f"{name}.ipynb"), "-k", notebooks.kernel_name(), "--cwd",
                                 str(paths.NOTEBOOKS_DIR), *params], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    # A student's JupyterLab 03 and `make run ARGS="--from 03_train"` on the same run, started together.
    first, second = start("first"), start("second")
    codes = [first.wait(timeout=600), second.wait(timeout=600)]
    assert sorted(codes) == [0, 1], codes
    refused = tmp_path / ("second.ipynb" if codes[1] else "first.ipynb")
    errors = [o for c in nbformat.read(refused, as_version=4).cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "RunLockedError"
    assert errors[0]["evalue"].startswith("run 'both' is being written by notebook 03_train (process ")
    cycles = ledger.read_cycles(run)
    assert cycles["cycle"].tolist() == [1]  # one row more, never two rows with one number
    history = ledger.read_history(run)
    assert history.groupby(["cycle", "epoch"]).size().max() == 1 and len(history) == 4
    for path in sorted(run.rglob("*.pt")):
        checkpoints.load(path)
    assert pd.read_csv(run / "cycles.csv")["cycle"].is_unique
