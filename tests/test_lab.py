"""`make lab` and the browser check: a taken port moves to the next free one; every notebook runs in JupyterLab."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module


lab = _script("lab")
lab_check = _script("lab_check")


@pytest.fixture
def taken_port():
    """A port something already listens on (as a JupyterLab left running would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.browser
def test_make_lab_on_a_taken_port_says_so_and_starts_on_the_next_free_one(taken_port):
    cmd = ["make", "-s", "-o", ".venv/.installed", "lab", f"LAB_PORT={taken_port}",
           "LAB_ARGS=--no-browser --IdentityProvider.token=test-token"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    want = f"127.0.0.1:{taken_port + 1}/lab"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(want in line for line in lines) and proc.poll() is None:
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    text = "".join(lines)
    assert f"make lab: port {taken_port} is taken" in text and f"starting on port {taken_port + 1} instead" in text
    assert want in text, text[-2000:]


def test_every_port_taken_is_one_sentence(taken_port, monkeypatch):
    monkeypatch.setattr(lab, "TRIES", 0)
    with pytest.raises(SystemExit, match=rf"ports {taken_port}–{taken_port} are all taken; .*LAB_PORT=9999\.$"):
        lab.choose_port(taken_port)


def test_lab_command_is_the_projects_jupyter():
    cmd = lab.command(8890, ROOT, ["--no-browser"])
    assert Path(cmd[0]) == Path(sys.executable).with_name("jupyter") and cmd[1] == "lab"
    assert "--port=8890" in cmd and "--ServerApp.port_retries=0" in cmd and cmd[-1] == "--no-browser"


def test_executed_notebook_check_names_errors_missing_and_doubled_figures(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    nb = new_notebook(cells=[
        new_code_cell("files.save_figure(plots.roc_figure(c), p)", execution_count=1, outputs=[]),
        new_code_cell("plots.image_grid(*g)", execution_count=2,
                      outputs=[new_output("display_data", data=png), new_output("execute_result", data=png,
                                                                                 execution_count=2)]),
        new_code_cell("1 / 0", execution_count=3, outputs=[new_output("error", ename="ZeroDivisionError",
                                                                      evalue="division by zero", traceback=[])]),
        new_code_cell("path", execution_count=4, outputs=[new_output("execute_result", execution_count=4, data={
            "text/plain": "PosixPath('/home/me/runs/default/x.png')"})]),
        new_code_cell("x = 1", execution_count=None),
        new_code_cell("import warnings", execution_count=5, outputs=[new_output(
            "stream", name="stderr", text="/home/me/.venv/lib/torch/x.py:1: UserWarning: a library's warning")])])
    path = tmp_path / "04_evaluate.ipynb"
    nbformat.write(nb, path)
    problems = lab_check.check_executed(path, ["/home/me"])
    assert problems == ["04_evaluate.ipynb cell 0: its figure is missing",
                        "04_evaluate.ipynb cell 1: shows 2 figures for 1 (a figure appears twice)",
                        "04_evaluate.ipynb cell 2: ZeroDivisionError: division by zero",
                        "04_evaluate.ipynb cell 3: prints a machine path: \"PosixPath('/home/me/runs/default/x.png')\"",
                        "04_evaluate.ipynb cell 4: never ran (an earlier cell failed?)"]


WHY = lab_check.unavailable()


@pytest.mark.browser
@pytest.mark.skipif(WHY is not None, reason=f"browser check skipped: {WHY}")
def test_every_notebook_runs_all_in_jupyterlab_in_headless_chromium(tmp_path):
    home = tmp_path / "lab"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "lab_check.py"), "--home", str(home)],
                          capture_output=True, text=True, timeout=3600)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shots = sorted(p.name for p in (home / "runs" / "default" / "screenshots").glob("*.png"))
    assert shots == [f"{name}.png" for name in lab_check.notebooks()]
    assert (home / "reports" / "default" / "REPORT.md").exists() and (home / "reports" / "index.md").exists()
