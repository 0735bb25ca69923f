"""helpers.index: every run side by side, numbers equal to each run's artifacts, a figure, links that resolve."""

from __future__ import annotations

import re

import pandas as pd

from helpers.reporting import index
from helpers.utils import files, paths


def _run(run_id: str, cycles: list[dict], metrics: dict | None, dataset: str) -> None:
    run = paths.run_dir(run_id)
    base = {"started_at": "2026-12-01T10:00:00+00:00", "image_size": 64, "epochs": 3, "batch_size": 16,
            "best_epoch": 2, "test_accuracy": None, "seconds": 120.0}
    files.write_csv(run / "cycles.csv", pd.DataFrame([{**base, **c} for c in cycles]))
    files.write_json(run / "params.json", {"run_id": run_id, "notebooks": {"02_data": {"parameters": {"dataset": dataset}}}})
    if metrics:
        files.write_json(run / "metrics.json", metrics)
    files.write_text(paths.report_dir(run_id) / "REPORT.md", "# report\n")


def _table_rows(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|") and not line.startswith("|:")]


def _two_runs() -> None:
    _run("cpu-lite0", [
        {"cycle": 1, "device": "cpu", "device_name": "CPU", "arch": "efficientnet-lite0", "best_val_accuracy": 0.8711},
        {"cycle": 2, "device": "cuda:0", "device_name": "H100", "arch": "efficientnet-lite0",
         "best_val_accuracy": 0.9122, "test_accuracy": 0.9067}],
        {"test_accuracy": 0.9067, "test_accuracy_ci95": [0.876, 0.930], "n_test": 450, "cycle": 2}, "sample")
    _run("b4", [{"cycle": 1, "device": "cuda:0", "device_name": "H100", "arch": "efficientnet-b4",
                 "image_size": 380, "best_val_accuracy": 0.9500}], None, "kaggle:owner/slug")


def test_index_rows_equal_the_runs_artifacts():
    _two_runs()
    runs, cycles = index.collect()
    assert list(runs["run_id"]) == ["b4", "cpu-lite0"]
    lite = runs.set_index("run_id").loc["cpu-lite0"]
    assert lite["cycles"] == 2 and lite["devices"] == "cpu, cuda" and lite["dataset"] == "sample"
    assert lite["best_val_accuracy"] == 0.9122 and lite["test_accuracy"] == 0.9067
    assert (lite["ci_lo"], lite["ci_hi"]) == (0.876, 0.930) and lite["seconds"] == 240.0
    assert len(cycles) == 3
    evaluated = cycles[(cycles["run_id"] == "cpu-lite0") & (cycles["cycle"] == 2)].iloc[0]
    assert evaluated["ci_lo"] == 0.876 and evaluated["device_type"] == "cuda"

    path = index.write_index("en")
    text = path.read_text()
    rows = {cells[0]: cells for cells in _table_rows(text.split("## Runs")[1].split("##")[0])}
    assert rows["`cpu-lite0`"][1:8] == ["`sample`", "efficientnet-lite0", "64", "2", "cpu, cuda", "91.2", "90.7 (№2)"]
    assert rows["`cpu-lite0`"][8:10] == ["87.6 – 93.0", "4.0"]
    assert rows["`b4`"][1:4] == ["`kaggle:owner/slug`", "efficientnet-b4", "380"]
    assert rows["Run"][6] == "Best validation accuracy, %"
    assert (path.parent / index.FIGURE).stat().st_size > 1000
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (path.parent / link).exists(), link
    html = (path.parent / "index.html").read_text()
    assert 'src="data:image/png;base64,' in html
    for link in re.findall(r'href="([^"]+)"', html):
        assert link.endswith("REPORT.html"), link


def test_russian_index_and_no_runs():
    path = index.write_index("ru")
    assert "Запусков пока нет." in path.read_text()
    _two_runs()
    text = index.write_index("ru").read_text()
    assert "Точность на тесте, %" in text and "[отчет](b4/REPORT.md)" in text
