"""The runner and the notebooks through papermill: bad parameters stop early; a small study runs end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch

from helpers import pipeline
from helpers.reporting.report import pct
from helpers.utils import paths


def _run(argv, capsys):
    code = pipeline.main(argv)
    return code, capsys.readouterr().err


def test_unknown_parameter_is_an_error_listing_valid_names(capsys):
    code, err = _run(["-p", "bach_size", "16", "--run-id", "bad"], capsys)
    assert code == 2
    assert "unknown parameter(s) ['bach_size']" in err and "batch_size" in err and "valid names are" in err
    assert not paths.run_dir("bad").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_stops_before_writing(capsys):
    code, err = _run(["-p", "device", "cuda", "--run-id", "bad"], capsys)
    assert code == 2 and "device='cuda': CUDA is not available" in err
    assert not paths.run_dir("bad").exists()


def test_missing_dataset_and_bad_types_stop_before_writing(capsys, tmp_path):
    code, err = _run(["-p", "dataset", str(tmp_path / "nope"), "--run-id", "bad"], capsys)
    assert code == 2 and f"dataset='{tmp_path / 'nope'}': no such file or folder" in err
    code, err = _run(["-p", "batch_size", "lots", "--run-id", "bad"], capsys)
    assert code == 2 and "batch_size='lots': expected an integer" in err
    code, err = _run(["-p", "epochs", "seven", "--run-id", "bad"], capsys)
    assert code == 2 and "epochs='seven': expected an integer" in err
    code, err = _run(["-p", "augment", "mixup", "--run-id", "bad"], capsys)  # a 03 value stops before 01 starts
    assert code == 2 and "augment='mixup'" in err
    code, err = _run(["-p", "batch_size", "0", "--run-id", "bad"], capsys)
    assert code == 2 and "batch_size=0: must be an integer ≥ 1" in err
    assert not paths.run_dir("bad").exists()


def test_yaml_with_an_unknown_key_names_the_file(capsys, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("epochs: 2\nbatchsize: 4\n")
    code, err = _run(["-f", str(f), "--run-id", "bad"], capsys)
    assert code == 2 and str(f) in err and "batchsize" in err
    assert not paths.run_dir("bad").exists()


def test_kaggle_without_credentials_stops_in_seconds(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    code, err = _run(["-p", "dataset", "kaggle:owner/slug", "--run-id", "bad"], capsys)
    assert code == 2 and "no Kaggle credentials found" in err
    assert not paths.run_dir("bad").exists()


def test_a_notebook_without_its_parameters_tag_is_refused_by_name(capsys, monkeypatch, tmp_path):
    import shutil

    import nbformat
    copy = tmp_path / "notebooks"
    shutil.copytree(paths.NOTEBOOKS_DIR, copy)
    book = nbformat.read(copy / "03_train.ipynb", as_version=4)
    for cell in book.cells:
        cell.metadata.pop("tags", None)
    nbformat.write(book, copy / "03_train.ipynb")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", copy)
    code, err = _run(["--run-id", "bad"], capsys)
    assert code == 2 and "notebooks/03_train.ipynb has no cell tagged 'parameters'" in err
    assert not paths.run_dir("bad").exists()


def test_help_lists_every_parameter_by_notebook(capsys):
    with pytest.raises(SystemExit):
        pipeline.main(["--help"])
    out = capsys.readouterr().out
    assert "  01_research:" in out and "research_batch_size" in out and "  03_train:" in out and "keep_last" in out


def test_each_notebook_declares_a_literal_parameters_cell():
    declared = pipeline.declared_parameters()
    assert set(declared) == set(paths.NOTEBOOK_NAMES)
    shared = ["run_id", "device", "batch_size"]
    for name in shared:
        defaults = {nb: p[name] for nb, p in declared.items() if name in p}
        assert len(defaults) >= 2, name
    assert declared["03_train"]["arch"] == declared["01_research"]["arch"] == '"efficientnet-lite0"'
    assert declared["02_data"]["dataset"] == '"sample"'


def test_the_runner_sees_every_parameter_each_notebook_declares():
    """A -p NAME the schema gives a notebook is one the runner accepts (papermill skips lines it cannot parse)."""
    from helpers.params.schema import for_notebook
    declared = pipeline.declared_parameters()
    for nb in paths.NOTEBOOK_NAMES:
        assert sorted(declared[nb]) == sorted(p.name for p in for_notebook(nb)), nb


@pytest.mark.e2e
def test_small_study_end_to_end(make_dataset, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # figures as JupyterLab shows them
    root = make_dataset(per_class=12, size=(20, 20))
    params = tmp_path / "params.yaml"
    params.write_text(f"dataset: {root}\nresearch_archs: mobilenet_v3_small\nepochs: 1\nhead_epochs: 1\n"
                      "lang: en\nbatch_size: 8\n")
    assert pipeline.main(["-f", str(params), "--run-id", "tiny"]) == 0
    run = paths.run_dir("tiny")
    _check_console(capfd.readouterr(), run)
    _check_notebook_outputs(run / "notebooks")
    research = pd.read_csv(run / "research.csv")
    assert list(research.columns[:7]) == ["arch", "family", "params_m", "head_params", "gflops", "latency_ms",
                                          "throughput_ips"]
    assert research.loc[0, "params_m"] == pytest.approx(2.543, abs=1e-3)
    split = pd.read_csv(run / "split.csv")
    assert list(split.columns) == ["path", "label", "split", "sha256"] and len(split) == 36
    assert split.groupby("sha256")["split"].nunique().max() == 1
    cycles = pd.read_csv(run / "cycles.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(cycles) == 1 and cycles.loc[0, "test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-5)
    assert {"test_accuracy", "test_accuracy_ci95", "n_test", "classes", "roc_auc"} <= set(metrics)
    assert set(metrics["roc_auc"]) == {"macro", "micro", "per_class"}
    preds = pd.read_csv(run / "predictions.csv")
    assert list(preds.columns) == ["path", "label", "pred", "p_cat", "p_dog", "p_fox"]
    assert len(preds) == metrics["n_test"]
    for fig in ("training_metrics.png", "test_roc_curve.png", "confusion_matrix.png", "class_balance.png"):
        assert (run / "figures" / fig).stat().st_size > 1000
    assert sorted(p.name for p in (run / "notebooks").iterdir()) == [f"{n}.ipynb" for n in paths.NOTEBOOK_NAMES]
    # as JupyterLab would show them: no error, each figure once, no machine path printed (scripts/lab_check.py)
    import importlib.util
    spec = importlib.util.spec_from_file_location("lab_check", paths.PROJECT_ROOT / "scripts" / "lab_check.py")
    sys.path.insert(0, str(paths.PROJECT_ROOT / "scripts"))
    lab_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lab_check)
    sys.path.remove(str(paths.PROJECT_ROOT / "scripts"))
    for executed in sorted((run / "notebooks").glob("*.ipynb")):
        assert lab_check.check_executed(executed, [str(paths.home()), str(paths.PROJECT_ROOT)]) == []
    recorded = json.loads((run / "params.json").read_text())
    assert recorded["notebooks"]["02_data"]["parameters"]["dataset"] == str(root)
    assert recorded["notebooks"]["03_train"]["parameters"]["epochs"] == 1
    assert recorded["notebooks"]["pipeline"]["parameters"]["lang"] == "en"
    assert "torch" in recorded["versions"]

    report = (paths.report_dir("tiny") / "REPORT.md").read_text()
    for heading in ("## 1. Architecture study", "## 2. Data preparation", "## 3. Model", "## 4. Training results"):
        assert heading in report
    lo, hi = metrics["test_accuracy_ci95"]
    assert f"**{pct(metrics['test_accuracy'])}**" in report and pct(lo) in report and pct(hi) in report
    assert f"n = {metrics['n_test']}" in report
    assert f"micro-average {metrics['roc_auc']['micro']:.4f}" in report
    row = re.search(r"\|\s*1 \*\(cpu\)\*\s*\|[^|]*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*`([\d.]+)%`", report)
    assert row and int(row[1]) == cycles.loc[0, "epochs"] and int(row[2]) == cycles.loc[0, "batch_size"]
    assert float(row[3]) == pytest.approx(100 * cycles.loc[0, "test_accuracy"], abs=0.005)
    for fig in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (paths.report_dir("tiny") / fig).exists()

    # A second cycle continues from the best checkpoint; the first row stays as it was.
    first = (run / "cycles.csv").read_text().splitlines()[1]
    # Two epochs: the default late_freeze=0.5 runs the second with the next stage frozen too.
    assert pipeline.main(["--run-id", "tiny", "--from", "03_train", "-p", "init", "best", "-p", "epochs", "2",
                          "-p", "head_epochs", "0", "-p", "lang", "ru"]) == 0
    lines = (run / "cycles.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1] == first
    sizes = split["split"].value_counts()  # the second cycle computes none of its frozen layers' output again
    assert f"({2 * sizes['train'] + sizes['val']} of them kept from before" in (run / "pipeline.log").read_text()
    assert sorted(p.name.split(".")[0] for p in (run / "notebooks" / "history").iterdir()) == \
        ["03_train", "04_evaluate"]
    report = (paths.report_dir("tiny") / "REPORT.md").read_text()
    assert "## 4. Результаты обучения" in report and "2 *(cpu)*" in report
    assert "late freeze from epoch 2" in (run / "pipeline.log").read_text()
    assert "в последней эпохе — и до шага 16" in report  # its recipe says so
    runs_index = (paths.home() / "reports" / "index.md").read_text()  # rebuilt after each run
    assert "[отчет](tiny/REPORT.md)" in runs_index and runs_index.count("| `tiny`") == 3  # the run and its 2 cycles


def _check_console(captured, run):
    """What the console showed for a 01→04 run: a line per notebook and epoch and a summary, nothing else."""
    out, err = captured.out, captured.err
    for noise in ("Executing Cell", "Ending Cell", "<Figure size", "object>", "Kernel is running over TCP",
                  "Empty DataFrame", "Input Notebook", "..."):
        assert noise not in out + err, noise
    lines = out.splitlines()
    history = pd.read_csv(run / "history.csv")
    split = pd.read_csv(run / "split.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(lines) == 2 * 4 + len(history) + 8 <= 60, out
    for step, name in enumerate(paths.NOTEBOOK_NAMES, 1):
        assert sum(ln.startswith(f"[{step}/4] {name}") and " started" in ln for ln in lines) == 1, out
        assert sum(ln.startswith(f"[{step}/4] {name}") and " done in " in ln for ln in lines) == 1, out
    sizes = split["split"].value_counts()
    data_line = next(ln for ln in lines if ln.startswith("[2/4] 02_data") and "done" in ln)
    assert f"{len(split)} images, 3 classes · train {sizes['train']} · val {sizes['val']} · test {sizes['test']}" \
        in data_line
    epochs = [ln for ln in lines if ln.lstrip().startswith("epoch ")]
    assert len(epochs) == len(history)
    for ln, (_, row) in zip(epochs, history.iterrows()):
        assert f"train loss {row['train_loss']:.4f}" in ln and f"val acc {100 * row['val_accuracy']:.1f}%" in ln
    lo, hi = metrics["test_accuracy_ci95"]
    test_line = next(ln for ln in lines if ln.startswith("[4/4] 04_evaluate") and "done" in ln)
    assert f"test accuracy {100 * metrics['test_accuracy']:.1f}% (95% CI {100 * lo:.1f}%–{100 * hi:.1f}%" in test_line
    assert f"macro F1 {metrics['macro_f1']:.3f}" in test_line and f"ROC AUC {metrics['roc_auc']['macro']:.3f}" in test_line
    tail = "\n".join(lines[-8:])
    for path in (paths.report_dir("tiny") / "REPORT.md", paths.home() / "reports" / "index.md",
                 run / "pipeline.log", run / "figures"):
        assert str(path) in tail
    log = (run / "pipeline.log").read_text()  # the full stream: every cell of every notebook, their prints
    for name in paths.NOTEBOOK_NAMES:
        assert f"===== {name} started" in log
    assert log.count("Executing Cell") >= 20 and "layout: class_folders" in log and "cycle 1 epoch 2/2" in log
    kept = sizes["train"] + sizes["val"]  # 02's feature pass left the frozen layers' output of both for 03
    assert f"({kept} of them kept from before" in log, log


def _check_notebook_outputs(folder):
    """As JupyterLab shows them: no bare object reprs, no empty tables, no cell cut to '...'."""
    import nbformat
    shown = []
    for executed in sorted(folder.glob("*.ipynb")):
        for i, cell in enumerate(nbformat.read(executed, as_version=4).cells):
            for out in cell.get("outputs", []):
                data, where = out.get("data", {}), f"{executed.name} cell {i}"
                plain = data.get("text/plain", "")
                if out["output_type"] not in ("execute_result", "display_data"):
                    continue
                assert set(data) - {"text/plain"}, f"{where}: only a repr: {plain[:80]}"
                assert "Empty DataFrame" not in plain, where
                assert "..." not in data.get("text/html", ""), f"{where}: a table cell is cut"
                shown.append(data.get("text/markdown", ""))
    assert "*no file was skipped*" in shown and "*no duplicate or near-duplicate files*" in shown
    # the write-up's long sentence whole, as the notebook shows the qualitative table
    book = nbformat.read(folder / "01_research.ipynb", as_version=4)
    html = "".join(o.get("data", {}).get("text/html", "") for c in book.cells for o in c.get("outputs", []))
    assert "Top efficiency thanks to compound scaling; suits high resolutions; depth, width and resolution" in html


@pytest.mark.notebook
def test_a_notebook_failing_on_bad_data_prints_its_sentence_and_the_log(make_dataset, capfd, tmp_path):
    root = make_dataset(classes=("cat",), per_class=4)  # one class: 02 refuses it inside the notebook
    assert pipeline.main(["--from", "02_data", "-p", "dataset", str(root), "--run-id", "bad"]) == 1
    captured = capfd.readouterr()
    log = paths.run_dir("bad") / "pipeline.log"
    lines = captured.err.splitlines()
    assert lines[0].startswith("[1/3] 02_data      failed after") and "in cell [" in lines[0]
    assert lines[1].strip() == f"{root} has 1 class (['cat']); a classifier needs at least two class folders."
    assert str(log) in lines[2] and len(lines) == 3
    assert "Traceback" not in captured.out + captured.err and "03_train" not in captured.out
    assert str(log) in captured.out.splitlines()[-1]
    assert "a classifier needs at least two class folders" in log.read_text()  # the traceback is in the log


def _failing_02(tmp_path, monkeypatch, code="print('before the failure')\nimport fractions\nfractions.Fraction(1, 0)"):
    """A copy of the notebooks whose 02 runs `code` after its parameters (by default: fails in the standard
    library, not one of our errors)."""
    import shutil

    import nbformat
    copy = tmp_path / "notebooks"
    shutil.copytree(paths.NOTEBOOKS_DIR, copy)
    book = nbformat.read(copy / "02_data.ipynb", as_version=4)
    cells = [c for c in book.cells if c.cell_type == "code"]
    book.cells = [cells[0], nbformat.v4.new_code_cell(code)]
    nbformat.write(book, copy / "02_data.ipynb")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", copy)


@pytest.mark.notebook
def test_a_failure_outside_our_code_prints_the_last_frame(tmp_path, monkeypatch, capfd):
    _failing_02(tmp_path, monkeypatch)
    assert pipeline.main(["--from", "02_data", "--run-id", "odd"]) == 1
    err = capfd.readouterr().err.splitlines()
    assert err[0].startswith("[1/3] 02_data") and "failed after" in err[0]
    assert err[1].strip().startswith("File ") and "fractions.py" in err[1] and "Fraction.__new__" in err[1]
    assert "raise ZeroDivisionError" in err[2]
    assert err[3].strip() == "ZeroDivisionError: Fraction(1, 0)"
    assert str(paths.run_dir("odd") / "pipeline.log") in err[4]


@pytest.mark.notebook
def test_a_kernel_that_dies_is_a_failed_notebook_not_a_crash(tmp_path, monkeypatch, capfd):
    _failing_02(tmp_path, monkeypatch, "import os\nos._exit(3)")
    assert pipeline.main(["--from", "02_data", "--run-id", "dead"]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err and "[1/3] 02_data" in err and "failed after" in err
    assert "DeadKernelError" in err and str(paths.run_dir("dead") / "pipeline.log") in err


@pytest.mark.notebook
def test_verbose_streams_every_cell(tmp_path, monkeypatch, capfd):
    _failing_02(tmp_path, monkeypatch)
    assert pipeline.main(["--from", "02_data", "--run-id", "odd", "-v"]) == 1
    out = capfd.readouterr().out
    assert "Executing Cell 2" in out and "before the failure" in out
    assert "before the failure" in (paths.run_dir("odd") / "pipeline.log").read_text()


@pytest.mark.notebook
def test_a_notebook_runs_alone_from_any_directory(make_dataset, tmp_path, study_home):
    root = make_dataset(per_class=6)
    out = tmp_path / "elsewhere"
    out.mkdir()
    subprocess.run([sys.executable, "-m", "papermill", str(paths.NOTEBOOKS_DIR / "02_data.ipynb"), "out.ipynb",
                    "-p", "dataset", str(root), "-p", "run_id", "solo", "--kernel", pipeline._kernel_name()],
                   cwd=out, check=True, capture_output=True)
    assert len(pd.read_csv(study_home / "runs" / "solo" / "split.csv")) == 18
    assert (out / "out.ipynb").exists()


def _kernels() -> list:
    """This process's kernel processes still running."""
    import psutil
    return [p for p in psutil.Process().children(recursive=True)
            if p.is_running() and any("ipykernel" in part for part in p.cmdline())]


@pytest.mark.notebook
def test_a_failed_notebook_leaves_no_kernel_behind(tmp_path, monkeypatch, capfd):
    """03's kernel is started while 02 runs; 02 failing stops it as well as 02's own."""
    _failing_02(tmp_path, monkeypatch)
    assert pipeline.main(["--from", "02_data", "--run-id", "odd"]) == 1
    assert _kernels() == []


@pytest.mark.notebook
def test_a_kernel_started_ahead_runs_the_notebook_as_a_fresh_one(tmp_path):
    """Its imports are loaded before the first cell; cells count from 1 and no name of the warm-up is left."""
    import nbformat

    from helpers.runner import notebooks
    source, target, log = tmp_path / "nb.ipynb", tmp_path / "out.ipynb", tmp_path / "log.txt"
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell("import sys\nwarmed = 'colorsys' in sys.modules"),
                  nbformat.v4.new_code_cell("%time 1"),  # a magic: not Python, passed over by the warm-up
                  nbformat.v4.new_code_cell("import colorsys\nfrom json import dumps as d\nimport no_such_module_here"),
                  nbformat.v4.new_code_cell("print(warmed, '_warm_imports' in dir())")]
    nbformat.write(book, source)
    assert notebooks.imports_of(source) == ["import sys", "import colorsys", "from json import dumps as d",
                                            "import no_such_module_here"]
    kernel = notebooks.Kernel(source, tmp_path, log)
    with pytest.raises(Exception, match="no_such_module_here"):  # a failing import fails in its own cell
        notebooks.execute(source, target, {}, tmp_path, log, kernel)
    ran = nbformat.read(target, as_version=4)
    assert [c.execution_count for c in ran.cells if c.cell_type == "code"] == [1, 2, 3, None]
    book.cells = book.cells[:2] + [nbformat.v4.new_code_cell("import colorsys")] + book.cells[3:]
    nbformat.write(book, source)
    kernel = notebooks.Kernel(source, tmp_path, log)
    notebooks.execute(source, target, {}, tmp_path, log, kernel)
    ran = nbformat.read(target, as_version=4)
    assert [c.execution_count for c in ran.cells] == [1, 2, 3, 4]
    assert ran.cells[3].outputs[0]["text"].strip() == "True False"
    notebooks.execute(source, target, {}, tmp_path, log)  # a fresh kernel: nothing loaded ahead
    assert nbformat.read(target, as_version=4).cells[3].outputs[0]["text"].strip() == "False False"
    assert _kernels() == []


@pytest.mark.notebook
def test_a_finished_notebooks_kernel_runs_its_exit_handlers_and_ends(tmp_path):
    """The kernel ends without the interpreter's teardown, but what the notebook registered to run at exit runs."""
    import nbformat

    from helpers.runner import notebooks
    source, target, log, mark = tmp_path / "nb.ipynb", tmp_path / "out.ipynb", tmp_path / "log.txt", tmp_path / "m"
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(f"import atexit\natexit.register(lambda: open({str(mark)!r}, 'w')"
                                            ".write('flushed at exit'))")]
    nbformat.write(book, source)
    notebooks.execute(source, target, {}, tmp_path, log, notebooks.Kernel(source, tmp_path, log))
    assert mark.read_text() == "flushed at exit"
    assert _kernels() == []
