"""Progress: one line per pass headless, tqdm widgets only in a kernel that JupyterLab started."""

from __future__ import annotations

import sys

from helpers.utils import progress


def test_headless_prints_one_line_per_pass(monkeypatch, capsys):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.mode() == "lines"
    for pass_no in range(3):
        assert list(progress.bar(range(500), total=500, desc=f"pass {pass_no}", unit="images")) == list(range(500))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("pass 0: 500 images in ")
    assert "\r" not in "".join(lines)


def test_summary_false_leaves_the_line_to_the_caller(monkeypatch, capsys):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert sum(progress.bar(range(10), summary=False)) == 45
    assert capsys.readouterr().out == ""


def test_long_headless_pass_reports_while_it_runs(monkeypatch, capsys):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.0)
    list(progress.bar(range(3), total=3, desc="cache"))
    assert len(capsys.readouterr().out.splitlines()) == 4  # three heartbeats and the summary


def test_widgets_in_a_jupyterlab_kernel(monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/03_train.ipynb")
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or type(sys)("ipykernel"))
    assert progress.mode() == "widgets"
    monkeypatch.setenv(progress.ENV, "off")
    assert progress.mode() == "off"
    assert list(progress.bar([1, 2])) == [1, 2]
