"""helpers.report: every number comes from an artifact; both languages; partial runs still render."""

import re

import pandas as pd
import pytest

from helpers.reporting import report
from helpers.utils import files, paths


def _artifacts(run_id="r"):
    run = paths.run_dir(run_id)
    files.write_csv(run / "cycles.csv", pd.DataFrame([
        {"cycle": 1, "started_at": "t", "device": "cpu", "device_name": "CPU", "arch": "efficientnet-lite0",
         "image_size": 64, "epochs": 7, "batch_size": 8, "best_epoch": 6, "best_val_accuracy": 0.8711,
         "test_accuracy": None, "seconds": 10, "weights": "imagenet"},
        {"cycle": 2, "started_at": "t", "device": "cuda:0", "device_name": "RTX", "arch": "efficientnet-lite0",
         "image_size": 64, "epochs": 12, "batch_size": 16, "best_epoch": 9, "best_val_accuracy": 0.9311,
         "test_accuracy": 0.9956, "seconds": 10, "weights": "imagenet"}]))
    files.write_json(run / "metrics.json", {"test_accuracy": 0.9956, "test_accuracy_ci95": [0.981, 0.9988],
                                         "n_test": 450, "classes": ["cat", "dog"], "roc_auc": 0.99871,
                                         "roc_skipped_classes": [], "ece": 0.0123, "cycle": 2,
                                         "per_class": {}, "most_confused": []})
    return run


def _table(text: str, header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header row starts with `header`, as stripped cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and line.strip("| ").startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_cycles_table_and_final_accuracy_come_from_artifacts():
    _artifacts()
    text = report.render("r", "ru")
    assert _table(text, "№ цикла обучения") == [
        ["1 *(cpu)*", "CPU", "7", "8", "`87.11%` (вал.)", "`87.11%`"],  # not evaluated: its validation accuracy
        ["2 *(cuda)*", "RTX", "12", "16", "`99.56%`", "`93.11%` (выбран)"]]
    assert "`87.11%` (вал.)" in text and "`99.56%`" in text
    assert "**99.56%**" in text and "98.10% – 99.88%" in text and "n = 450" in text
    assert "положительный класс «dog»): 0.9987" in text
    assert "Исследование не запускалось" in text


def test_english_and_bad_language():
    _artifacts()
    path = report.write_report("r", "en")
    text = path.read_text()
    assert "## 4. Training results" in text
    assert _table(text, "Training cycle") == [["1 *(cpu)*", "CPU", "7", "8", "`87.11%` (val)", "`87.11%`"],
                                              ["2 *(cuda)*", "RTX", "12", "16", "`99.56%`", "`93.11%` (selected)"]]
    with pytest.raises(ValueError, match="lang='de'"):
        report.write_report("r", "de")


def test_report_without_evaluation_says_so():
    run = _artifacts()
    (run / "metrics.json").unlink()
    assert "has not been evaluated yet" in report.render("r", "en")


def test_html_copy_embeds_figures():
    run = _artifacts()
    from helpers.reporting import plots
    files.save_figure(plots.reliability_diagram(pd.DataFrame({"bin_lo": [0.5], "bin_hi": [1.0], "n": [3],
                                                           "confidence": [0.8], "accuracy": [0.7]}), 0.1),
                   run / "figures" / "reliability_diagram.png")
    report.write_report("r", "en")
    html = (paths.report_dir("r") / "REPORT.html").read_text()
    assert "<table>" in html and 'src="data:image/png;base64,' in html
    assert 'src="reliability_diagram.png"' not in html


def test_every_table_number_equals_its_artifact():
    run = _artifacts()
    files.write_json(run / "data_report.json", {
        "root": "/data", "layout": "class_folders", "classes": ["cat", "dog"], "n_images": 40, "seed": 42,
        "ratios": [0.7, 0.15, 0.15], "counts": {"cat": {"train": 14, "val": 3, "test": 3},
                                                 "dog": {"train": 13, "val": 4, "test": 3}},
        "split_totals": {"train": 27, "val": 7, "test": 6}, "skipped": [{"path": "cat/x.jpg", "reason": "zero-byte file"}],
        "duplicate_groups": [], "conflicting_duplicates": [], "image_sizes": [["28x28", 40]], "fingerprint": "f" * 64})
    metrics = files.read_json(run / "metrics.json")
    metrics["per_class"] = {"cat": {"precision": 0.9876, "recall": 0.5, "f1": 0.6639, "support": 3},
                            "dog": {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 3}}
    files.write_json(run / "metrics.json", metrics)
    text = report.render("r", "en")
    counts = [line for line in text.splitlines() if line.startswith("| dog") and line.count("|") == 6]
    assert [c.strip() for c in counts[0].split("|")[2:-1]] == ["13", "4", "3", "20"]
    per_class = [line for line in text.splitlines() if line.startswith("| cat") and "0.988" in line]
    assert [float(c) for c in per_class[0].split("|")[2:-1]] == [0.988, 0.5, 0.664, 3]
    assert "27 / 7 / 6" in text and "Files skipped: 1" in text and "70/15/15" in text
    assert "`ffffffffffffffff`" in text


def test_russian_report_has_no_english_study_columns_and_rounds_numbers():
    run = _artifacts()
    from helpers.research.study import RESEARCH_COLUMNS
    files.write_csv(run / "research.csv", pd.DataFrame([
        {"arch": "efficientnet-lite0", "family": "EfficientNet", "params_m": 4.652008, "head_params": 12810,
         "gflops": 0.79812, "latency_ms": 21.2345, "throughput_ips": 101.37, "train_ips": 12.345,
         "peak_mem_mb": 812.44, "imagenet_top1": 75.1, "source": "efficientnet-pytorch README (ImageNet top-1)",
         "image_size": 224, "device": "cpu"},
        {"arch": "resnet50", "family": "ResNet-50", "params_m": 25.557032, "head_params": 20490, "gflops": 8.18,
         "latency_ms": 60.0, "throughput_ips": 20.0, "train_ips": 3.0, "peak_mem_mb": 1500.0, "imagenet_top1": 80.858,
         "source": "torchvision weights metadata (ResNet50_Weights.IMAGENET1K_V2)", "image_size": 224, "device": "cpu"},
        {"arch": "mobilenet_v3_large", "family": "MobileNetV3", "params_m": 5.483032, "head_params": 12810,
         "gflops": 0.43, "latency_ms": 12.0, "throughput_ips": 90.0, "train_ips": 20.0, "peak_mem_mb": 400.0,
         "imagenet_top1": 75.274, "source": "torchvision weights metadata (MobileNet_V3_Large_Weights.IMAGENET1K_V2)",
         "image_size": 224, "device": "cpu"}], columns=RESEARCH_COLUMNS))
    text = report.render("r", "ru")
    study = text.split("## 1.")[1].split("## 2.")[0]
    headers = [line for line in study.splitlines() if line.startswith("| ")]
    header_cells = {c.strip() for line in headers for c in line.strip("|").split("|")}
    for name in RESEARCH_COLUMNS + ["claim", "measured", "precision", "recall"]:
        assert name not in header_cells, name
    assert re.search(r"\|\s+4\.65 \|", study) and "4.652008" not in study and "80.9" in study
    assert "в 5.0 раза быстрее (60.0 / 12.0 мс)" in study and "оперативной памяти" in study
    assert "метаданные весов torchvision" in study
    html = report.to_html(text, run, "r")
    assert "overflow-x:auto" in html


def test_results_shown_in_the_notebook_have_no_broken_image_links():
    run = _artifacts()
    from helpers.reporting import plots
    files.save_figure(plots.reliability_diagram(pd.DataFrame({"bin_lo": [0.5], "bin_hi": [1.0], "n": [3],
                                                           "confidence": [0.8], "accuracy": [0.7]}), 0.1),
                   run / "figures" / "reliability_diagram.png")
    path = report.write_report("r", "ru")
    shown = report.results_markdown(path)
    assert shown.startswith("## 4. Результаты обучения") and "**99.56%**" in shown
    assert "![" not in shown and "![" in path.read_text()
