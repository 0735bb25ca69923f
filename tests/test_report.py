"""helpers.report: every number comes from an artifact; both languages; partial runs still render."""

import re

import pandas as pd
import pytest

from helpers.reporting import report, texts
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
    metrics["per_class"] = {"cat": {"precision": 0.9876, "recall": 0.5, "recall_ci95": [0.0944, 0.9055],
                                    "f1": 0.6639, "support": 3},
                            "dog": {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 3}}
    files.write_json(run / "metrics.json", metrics)
    text = report.render("r", "en")
    counts = [line for line in text.splitlines() if line.startswith("| dog") and line.count("|") == 6]
    assert [c.strip() for c in counts[0].split("|")[2:-1]] == ["13", "4", "3", "20"]
    per_class = [[c.strip() for c in line.split("|")[2:-1]] for line in text.splitlines()
                 if line.startswith(("| cat", "| dog")) and line.count("|") == 7]
    assert per_class == [["0.988", "0.500", "0.094 – 0.905", "0.664", "3"],
                         ["0.667", "1.000", "–", "0.800", "3"]]  # an older metrics.json without intervals: a dash
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


def _every_artifact(run_id="full"):
    """A run with every artifact the report reads: 01's study, 02's data report, 03's cycles, 04's metrics with
    its selection, TTA, calibration and paired comparison, an export's parity, and params.json."""
    from helpers.research.study import RESEARCH_COLUMNS
    run = _artifacts(run_id)
    metrics = files.read_json(run / "metrics.json")
    metrics.update({
        "classes": ["cat", "dog", "fox"], "roc_auc": {"macro": 0.98765, "micro": 0.97654, "per_class": {}},
        "roc_skipped_classes": ["fox"], "selected_by": "validation", "selection": {"val_accuracy": 0.9311,
                                                                                    "run_best_cycle": 2},
        "macro_f1": 0.9123, "macro_f1_ci95": [0.8712, 0.9534], "roc_auc_ci95": [0.9612, 0.9943],
        "tta": {"mode": "flip", "val_accuracy_without": 0.9211, "val_accuracy": 0.9311,
                "test_accuracy_without": 0.9911, "test_accuracy": 0.9956},
        "calibration": {"temperature": 1.2345, "applied": True, "val_ece_before": 0.0521, "val_ece_after": 0.0213,
                        "test_ece_before": 0.0432, "test_ece_after": 0.0123},
        "paired_comparison": {"comparable": True, "other_cycle": 1, "difference": 0.1423,
                              "difference_ci95": [0.1012, 0.1834],
                              "mcnemar": {"n": 450, "p_value": 0.000123, "only_a_correct": 70, "only_b_correct": 6}},
        "per_class": {"cat": {"precision": 0.9876, "recall": 0.5, "f1": 0.6639, "support": 3}},
        "most_confused": [{"true": "cat", "pred": "dog", "count": 3}]})
    files.write_json(run / "metrics.json", metrics)
    files.write_json(run / "data_report.json", {
        "root": "/data", "layout": "presplit", "classes": ["cat", "dog"], "n_images": 41, "seed": 7,
        "ratios": [0.7, 0.15, 0.15], "counts": {"cat": {"train": 14, "val": 3, "test": 3},
                                                 "dog": {"train": 13, "val": 4, "test": 4}},
        "split_totals": {"train": 27, "val": 7, "test": 7}, "skipped": [{"path": "cat/x.jpg", "reason": "zero-byte file"}],
        "duplicate_groups": [{"kind": "exact"}, {"kind": "near"}], "conflicting_duplicates": [{"kind": "exact"}],
        "image_sizes": [["28x28", 41]], "fingerprint": "ab" * 32, "leaks": [{"kind": "exact"}],
        "unlabelled": [{"path": "pred", "images": 5, "reason": "'pred' names images to predict, without labels"}],
        "notes": [], "explanation": [{"path": "Training", "role": "train",
                                      "reason": "split folder: 'Training' means train; 2 class folders"}]})
    files.write_csv(run / "research.csv", pd.DataFrame([
        {"arch": "resnet50", "family": "ResNet-50", "params_m": 25.557032, "gflops": 8.1812, "latency_ms": 61.23,
         "image_size": 224, "device": "cpu", "imagenet_top1": 80.858, "batch_size": 8},
        {"arch": "mobilenet_v3_large", "family": "MobileNetV3", "params_m": 5.483032, "gflops": 0.4345,
         "latency_ms": 12.1, "image_size": 224, "device": "cpu", "imagenet_top1": 75.274, "batch_size": 8}],
        columns=RESEARCH_COLUMNS))
    files.write_json(run / "export" / "parity.json", {"onnx": {
        "file": "model.onnx", "max_abs_diff": 1.234e-6, "tolerance": 1e-4, "top1_agreement": 0.9978,
        "accuracy_pytorch": 0.9956, "accuracy_exported": 0.9933, "size_mb": 13.1, "passed": True, "n": 450}})
    files.write_json(run / "params.json", {"git_commit": "c0ffee1", "versions": {"torch": "2.14.1"},
                                           "notebooks": {"02_data": {"parameters": {"dataset": "kaggle:o/s"}},
                                                         "03_train": {"parameters": {"head_epochs": 5, "lr": 0.002,
                                                                                      "epochs": 8, "freeze_early": True,
                                                                                      "freeze_stride": 8,
                                                                                      "late_freeze": 0.5}}}})
    return run


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_every_number_of_a_full_run_reaches_both_reports(lang):
    _every_artifact()
    path = report.write_report("full", lang)
    text = path.read_text()
    numbers = ["99.56%", "98.10%", "99.88%", "n = 450", "0.9877", "0.9765", "fox", "0.0123",  # final, AUC, ECE
               "93.11%", "0.9123", "0.8712", "0.9534", "0.9612", "0.9943",  # selection, bootstrap intervals
               "92.11% → 93.11%", "99.11% → 99.56%", "1.234", "0.0521 → 0.0213", "0.0432 → 0.0123",  # TTA, calibration
               "+14.23", "+10.12", "+18.34", "p = 0.000123", ": 70", ": 6",  # the paired comparison
               "0.988", "0.500", "0.664",  # per class
               "1.2e-06", "99.78%", "99.33%", "13.1",  # export parity
               "27 / 7 / 7", "`kaggle:o/s`", "ababababababab", "c0ffee1", "25.56", "8.18", "61.2", "в 5.1 раза"
               if lang == "ru" else "5.1× faster"]
    for number in numbers:
        assert number in text, number
    frozen = ("до шага 8 заморожены с весами ImageNet, в последних 4 эпохах — и до шага 16" if lang == "ru" else
              "the layers up to stride 8 frozen at their ImageNet weights, in the last 4 epochs also those up to "
              "stride 16")
    assert frozen in text  # the recipe says what stayed frozen, and for how long
    confused = _table(text, "Истинный класс" if lang == "ru" else "True class")
    assert confused == [["cat", "dog", "3"]]
    counts = _table(text, "Класс" if lang == "ru" else "Class")
    assert counts[1] == ["dog", "13", "4", "4", "21"]
    headings = [line for line in text.splitlines() if line.startswith("#")]
    words = texts.strings(lang)["report"]
    assert headings == [f"# {words['title']}", f"## {words['s1']}", f"## {words['s2']}", f"## {words['s3']}",
                        f"## {words['s4']}", f"### {words['export_title']}", f"## {words['prov']}"]
    tables = sum(1 for line in text.splitlines() if re.match(r"^\|[:-]+", line))
    html = (path.parent / "REPORT.html").read_text()
    assert html.count("<table>") == tables  # every markdown table, the export's |Δp| column included, is a table


def test_a_cycle_without_a_validation_figure_says_so():
    run = _artifacts()
    cycles = pd.read_csv(run / "cycles.csv")
    cycles.loc[len(cycles)] = {**cycles.iloc[0].to_dict(), "cycle": 3, "best_epoch": None, "best_val_accuracy": None,
                               "test_accuracy": None}
    files.write_csv(run / "cycles.csv", cycles)
    text = report.render("r", "en")
    assert "Cycle 1: best epoch 6, validation accuracy 87.11%." in text  # an integer epoch, though the column has a gap
    assert "Cycle 3: no validation accuracy (no epoch was evaluated)." in text and not re.search(r"\bnan\b", text)


def test_an_impossible_paired_comparison_says_why_in_the_reports_language():
    run = _artifacts()
    metrics = files.read_json(run / "metrics.json")
    metrics["paired_comparison"] = {"other_cycle": 1, "comparable": False,
                                    "reason": "the test split changed between the two evaluations (02 ran again)"}
    files.write_json(run / "metrics.json", metrics)
    assert "Парное сравнение с циклом 1 невозможно: тестовая выборка изменилась между двумя оценками" in \
        report.render("r", "ru")
    assert "No paired comparison with cycle 1: the test split changed between the two evaluations" in \
        report.render("r", "en")


def test_an_interval_over_groups_is_named_in_the_final_sentence():
    run = _artifacts()
    metrics = files.read_json(run / "metrics.json")
    metrics["intervals"] = {"unit": "group", "n_groups": 37, "why": "duplicates in the test split"}
    files.write_json(run / "metrics.json", metrics)
    assert "**99.56%** (95% бутстреп-интервал по 37 группам тестовой выборки: 98.10% – 99.88%" in report.render("r", "ru")
    assert "**99.56%** (95% bootstrap interval over the test split's 37 groups: 98.10% – 99.88%" in \
        report.render("r", "en")


def test_a_test_split_of_one_class_says_why_there_is_no_roc_in_both_languages():
    from helpers.evaluation import evaluate
    from helpers.reporting import plots
    run = _artifacts()
    curves = evaluate.roc_curves(["cat"] * 3, [[0.9, 0.1]] * 3, ["cat", "dog"])
    metrics = files.read_json(run / "metrics.json")
    metrics.update({"roc_auc": None, "roc_skipped_classes": curves["skipped"], "roc_note": curves["why"],
                    "n_test": 3})
    files.write_json(run / "metrics.json", metrics)
    assert "ROC не построена: в тестовой выборке только класс cat (3 изобр.)" in report.render("r", "ru")
    assert "No ROC: the test split holds only class cat (3 image(s))" in report.render("r", "en")
    ru, en = plots.roc_figure(curves, "ru"), plots.roc_figure(curves, "en")
    assert ru.axes[0].texts[0].get_text().replace("\n", " ").startswith("ROC не построена: в тестовой выборке только")
    assert en.axes[0].texts[0].get_text().replace("\n", " ").startswith("no ROC: the test split holds only class")


def _with_data_quality(run_id="dq"):
    """A full run whose 02 searched labels (exclude_train) on lopsided classes, whose 03 found its lr and chose
    by balanced accuracy, and whose 04 wrote balanced accuracy and recall intervals."""
    run = _every_artifact(run_id)
    data = files.read_json(run / "data_report.json")
    data["imbalance"] = {"largest": "dog", "largest_n": 210, "smallest": "cat", "smallest_n": 20, "ratio": 10.5,
                         "threshold": 3.0, "imbalanced": True}
    data["label_issues"] = {
        "mode": "exclude_train", "method": "cleanlab 2.7 find_label_issues on 5-fold logistic regression",
        "n_flagged": 7, "out_of_fold_accuracy": 0.8734,
        "per_class": {"cat": {"images": 20, "flagged": 3}, "dog": {"images": 210, "flagged": 4}},
        "by_split": {"test": 1, "train": 5, "val": 1},
        "excluded": [{"path": f"dog/{i}.png", "label": "dog", "split": "train"} for i in range(5)],
        "n_outliers": 2, "n_near_duplicates": 3,
        "notes": ["class 'cat': every training image was flagged; none left out, check this class by hand"]}
    files.write_json(run / "data_report.json", data)
    cycles = pd.read_csv(run / "cycles.csv")
    cycles["lr_found"] = ["", "head 0.00312; full 0.000412"]
    files.write_csv(run / "cycles.csv", cycles)
    metrics = files.read_json(run / "metrics.json")
    metrics.update({"select_metric": "balanced_accuracy", "balanced_accuracy": 0.8123,
                    "balanced_accuracy_ci95": [0.7456, 0.8789],
                    "selection": {"val_accuracy": 0.9311, "val_scores": {"accuracy": 0.9311,
                                                                          "balanced_accuracy": 0.9012},
                                  "run_best_cycle": 2}})
    metrics["per_class"]["cat"]["recall_ci95"] = [0.1234, 0.8766]
    files.write_json(run / "metrics.json", metrics)
    params = files.read_json(run / "params.json")
    params["notebooks"]["03_train"]["parameters"].update(class_weights="balanced", sampler="shuffle",
                                                          select_metric="balanced_accuracy", lr="auto")
    files.write_json(run / "params.json", params)
    for name in ("label_issues.png", "lr_range_cycle-2.png"):
        (run / "figures").mkdir(exist_ok=True)
        (run / "figures" / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    return run


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_label_issues_imbalance_and_the_found_lr_reach_both_reports(lang):
    _with_data_quality()
    text = report.write_report("dq", lang).read_text()
    words = texts.strings(lang)["report"]
    for number in ["10.5:1", "**7** из 230" if lang == "ru" else "**7** of 230", "87.34%",
                   "cleanlab 2.7 find_label_issues", "0.8123", "0.7456", "0.8789", "90.12%", "0.123 – 0.877",
                   "head 0.00312; full 0.000412"]:
        assert number in text, number
    flagged = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
               if line.startswith(("| cat", "| dog")) and line.count("|") == 4 and line.split("|")[2].strip().isdigit()]
    assert flagged == [["cat", "20", "3"], ["dog", "210", "4"]]
    assert ("тренировка 5, валидация 1, тест 1" if lang == "ru" else "train 5, val 1, test 1") in text
    assert words["labels_excluded"].format(n=5) in text  # what was left out, and that val/test never are
    assert words["imbalance_yes"].format(threshold="3") in text
    assert words["values"]["balanced_accuracy"] in text  # the figure that chose the run's best is named
    assert f"![{words['fig_labels']}](label_issues.png)" in text
    assert f"![{words['fig_lr'].format(cycle=2)}](lr_range_cycle-2.png)" in text
    assert "lr_range_cycle-1.png" not in text  # cycle 1 ran without the finder: no figure, no broken link
    if lang == "ru":
        assert "every training image was flagged" not in text  # 02's English note is translated


def test_a_run_without_label_search_or_lr_finder_shows_neither():
    _every_artifact("plain")
    text = report.render("plain", "en")
    words = texts.strings("en")["report"]
    assert words["labels_title"] not in text and "lr_range" not in text and "Class ratio" not in text
