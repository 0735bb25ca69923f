"""helpers.evaluate: golden ROC/AUC against scikit-learn, the Wilson interval, calibration, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from helpers.evaluation import evaluate, summary
from helpers.evaluation.evaluate import EvaluationError


def _frame(labels, probs, classes):
    return evaluate.predictions_frame([f"img{i}.png" for i in range(len(labels))], labels, np.asarray(probs), classes)


def test_binary_roc_equals_sklearn_on_the_positive_class():
    classes = ["neg", "pos"]
    y = ["neg", "pos", "pos", "neg", "pos", "neg", "pos", "neg"]
    p_pos = np.array([0.1, 0.8, 0.35, 0.4, 0.9, 0.05, 0.6, 0.7])
    frame = _frame(y, np.c_[1 - p_pos, p_pos], classes)
    metrics = evaluate.compute_metrics(frame, classes)
    truth = np.array([c == "pos" for c in y]).astype(int)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, p_pos))
    curves = evaluate.roc_curves(y, np.c_[1 - p_pos, p_pos], classes)
    fpr, tpr, _ = roc_curve(truth, p_pos)
    np.testing.assert_allclose(curves["curves"]["pos"]["fpr"], fpr)
    np.testing.assert_allclose(curves["curves"]["pos"]["tpr"], tpr)


def test_multiclass_auc_equals_sklearn_ovr_macro_and_micro():
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c", "d"]
    y_idx = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 1.5 * np.eye(4)[y_idx]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = [classes[i] for i in y_idx]
    metrics = evaluate.compute_metrics(_frame(labels, probs, classes), classes)
    probs6 = np.round(probs, 6)  # predictions.csv keeps six decimals
    assert metrics["roc_auc"]["macro"] == pytest.approx(roc_auc_score(y_idx, probs6, multi_class="ovr", average="macro"))
    onehot = np.eye(4)[y_idx]
    assert metrics["roc_auc"]["micro"] == pytest.approx(roc_auc_score(onehot, probs6, average="micro"))
    for k, c in enumerate(classes):
        assert metrics["roc_auc"]["per_class"][c] == pytest.approx(roc_auc_score(onehot[:, k], probs6[:, k]))


def test_auc_comes_from_probabilities_not_predicted_labels():
    # The ranking is perfect (AUC 1.0) but one positive falls below 0.5: an AUC computed from the
    # predicted labels would say 0.75.
    classes = ["neg", "pos"]
    p_pos = np.array([0.9, 0.4, 0.3, 0.1])
    frame = _frame(["pos", "pos", "neg", "neg"], np.c_[1 - p_pos, p_pos], classes)
    metrics = evaluate.compute_metrics(frame, classes)
    assert metrics["test_accuracy"] == 0.75
    assert roc_auc_score([1, 1, 0, 0], (p_pos > 0.5).astype(int)) == 0.75
    assert metrics["roc_auc"] == 1.0
    multi = evaluate.compute_metrics(_frame(["a", "b", "c", "a"], [[0.4, 0.5, 0.1], [0.2, 0.7, 0.1],
                                                                  [0.1, 0.2, 0.7], [0.8, 0.1, 0.1]],
                                            ["a", "b", "c"]), ["a", "b", "c"])
    assert multi["test_accuracy"] == 0.75
    assert multi["roc_auc"]["per_class"]["a"] == 1.0


def test_wilson_interval_and_accuracy():
    lo, hi = evaluate.wilson_interval(90, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.8256, 0.9448)
    assert evaluate.wilson_interval(0, 0) == (0.0, 1.0)


def test_class_absent_from_test_is_skipped_in_roc_with_a_note():
    classes = ["a", "b", "c"]
    labels = ["a", "b", "a", "b"]
    probs = [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.3, 0.6, 0.1]]
    metrics = evaluate.compute_metrics(_frame(labels, probs, classes), classes)
    assert metrics["roc_skipped_classes"] == ["c"]
    assert set(metrics["roc_auc"]["per_class"]) == {"a", "b"}


def test_predictions_whose_classes_disagree_are_refused():
    with pytest.raises(EvaluationError, match="3 columns but the split has 2 classes"):
        _frame(["a"], [[0.2, 0.3, 0.5]], ["a", "b"])
    frame = _frame(["a", "z"], [[0.6, 0.4], [0.3, 0.7]], ["a", "b"])
    with pytest.raises(EvaluationError, match=r"test labels \['z'\] are not among"):
        evaluate.compute_metrics(frame, ["a", "b"])


def test_calibration_and_confident_errors():
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.6, 0.4]])
    ece, table = evaluate.expected_calibration_error(y, probs, bins=10)
    assert table["n"].sum() == 4
    assert ece == pytest.approx((abs(0.9 - 1) + abs(0.8 - 1) + abs(0.95 - 0) + abs(0.6 - 1)) / 4)
    frame = _frame(["a", "b", "b", "a"], probs, ["a", "b"])
    errors = evaluate.confident_errors(frame, ["a", "b"])
    assert errors["path"].tolist() == ["img2.png"]
    assert list(frame.columns) == ["path", "label", "pred", "p_a", "p_b"]


def _trained_run(tmp_path, make_dataset):
    import torch

    from helpers.data import dataset as data
    from helpers.data import imagecache
    from helpers.training.config import TrainConfig
    from helpers.training.cycle import run_cycle
    run = tmp_path / "run"
    frame, report = data.split_for(run, str(make_dataset(per_class=8)), 42)
    classes = report["classes"]
    cfg = TrainConfig(arch="mobilenet_v3_small", classes=classes, image_size=32, batch_size=8, epochs=1,
                            head_epochs=0, weights="none")
    run_cycle(cfg, run, *imagecache.split_arrays(frame, classes, "train", 32),
                    *imagecache.split_arrays(frame, classes, "val", 32), torch.device("cpu"), progress=False)
    return run


def test_evaluate_run_writes_predictions_metrics_and_the_ledger_cell(tmp_path, make_dataset):
    import torch
    run = _trained_run(tmp_path, make_dataset)
    result = evaluate.evaluate_run(run, torch.device("cpu"))
    preds = pd.read_csv(run / "predictions.csv")
    split = pd.read_csv(run / "split.csv")
    assert len(preds) == result["metrics"]["n_test"] == (split["split"] == "test").sum()
    assert pd.read_csv(run / "cycles.csv")["test_accuracy"].iloc[0] == pytest.approx(
        result["metrics"]["test_accuracy"], abs=1e-5)
    assert result["gradcam"][1].shape == (3, 32, 32)


def test_evaluate_run_refuses_missing_checkpoint_and_other_classes(tmp_path, make_dataset):
    import torch

    from helpers.training.checkpoints import CheckpointError
    from helpers.utils import files
    with pytest.raises(CheckpointError, match="best.pt not found: this run has no such checkpoint yet"):
        evaluate.evaluate_run(tmp_path / "empty", torch.device("cpu"))
    run = _trained_run(tmp_path, make_dataset)
    report = files.read_json(run / "data_report.json")
    report["classes"] = ["cat", "dog", "wolf"]
    files.write_json(run / "data_report.json", report)
    with pytest.raises(EvaluationError, match=r"checkpoint's classes \['cat', 'dog', 'fox'\] disagree"):
        evaluate.evaluate_run(run, torch.device("cpu"))
    assert not (run / "predictions.csv").exists() and not (run / "metrics.json").exists()


def _two_cycle_run(tmp_path, make_dataset):
    """A run with two cheap cycles (head only, on cached features) and its split."""
    import torch

    from helpers.data import dataset as data
    from helpers.data import imagecache
    from helpers.training.config import TrainConfig
    from helpers.training.cycle import run_cycle
    from helpers.utils import paths
    run = paths.run_dir("pair")  # under the test's STUDY_HOME, so the report renders it
    frame, report = data.split_for(run, str(make_dataset(per_class=8)), 42)
    classes = report["classes"]
    arrays = (*imagecache.split_arrays(frame, classes, "train", 32), *imagecache.split_arrays(frame, classes, "val", 32))
    for init, lr in (("weights", 3e-3), ("best", 0.3)):
        cfg = TrainConfig(arch="mobilenet_v3_small", classes=classes, image_size=32, batch_size=8, epochs=0,
                                head_epochs=2, weights="none", init=init, lr=lr)
        run_cycle(cfg, run, *arrays, torch.device("cpu"), progress=False)
    return run


@pytest.mark.integration
def test_cycles_are_chosen_on_validation_compared_paired_and_written_together(tmp_path, make_dataset, monkeypatch):
    import torch

    from helpers.evaluation import stats
    from helpers.training.checkpoints import CheckpointError
    from helpers.utils import files
    cpu = torch.device("cpu")
    run = _two_cycle_run(tmp_path, make_dataset)
    best_cycle = int(torch.load(run / "checkpoints" / "best.pt", weights_only=True)["cycle"])
    other = 3 - best_cycle
    first = evaluate.evaluate_run(run, cpu)["metrics"]
    assert (first["cycle"], first["selected_by"]) == (best_cycle, "validation")
    assert first["selection"]["checkpoint"] == "checkpoints/best.pt" and first["paired_comparison"] is None
    assert first["macro_f1_ci95"][0] <= first["macro_f1"] <= first["macro_f1_ci95"][1]
    cal = first["calibration"]
    assert cal["applied"] == (cal["val_ece_after"] < cal["val_ece_before"])
    second = evaluate.evaluate_run(run, cpu, cycle=other, tta="flip")["metrics"]
    assert (second["cycle"], second["selected_by"]) == (other, f"parameter cycle={other}")
    assert second["selection"]["run_best_cycle"] == best_cycle and second["tta"]["mode"] == "flip"
    assert {"val_accuracy", "val_accuracy_without", "test_accuracy", "test_accuracy_without"} <= set(second["tta"])
    pc = second["paired_comparison"]
    mine, prev = (pd.read_csv(run / "evaluations" / f"cycle-{c}.csv") for c in (other, best_cycle))
    a, b = (mine["pred"] == mine["label"]).to_numpy(), (prev["pred"] == prev["label"]).to_numpy()
    assert pc["other_cycle"] == best_cycle and pc["mcnemar"] == stats.mcnemar_exact(a, b)
    assert pc["difference"] == pytest.approx(second["test_accuracy"] - first["test_accuracy"])
    overview = summary.cycles_overview(run).set_index("cycle")
    assert overview.loc[other, "role"] == "evaluated" and overview.loc[best_cycle, "role"] == "not used for selection"
    assert bool(overview.loc[best_cycle, "selected"]) and not bool(overview.loc[other, "selected"])
    assert not summary.evaluation_summary(second).empty
    from helpers.reporting import report
    text = report.render("pair", "en")
    assert f"Evaluated cycle {other} as asked (cycle={other}); the run's best by validation is cycle {best_cycle}" \
        in text
    assert f"Paired comparison with cycle {best_cycle} on the same {pc['mcnemar']['n']} images" in text
    assert "(not used for selection)" in text and "(selected)" in text and "TTA 'flip'" in text
    assert "Calibration: temperature" in text and "Macro F1:" in text

    # A failure while writing leaves the previous evaluation whole; a missing cycle is refused by name.
    before = {f: (run / f).read_bytes() for f in ("predictions.csv", "metrics.json", "cycles.csv")}

    def broken(self, *args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        evaluate.evaluate_run(run, cpu)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"cycle 7: .* this run's cycles with a checkpoint are 1, 2"):
        evaluate.evaluate_run(run, cpu, cycle=7)
    assert {f: (run / f).read_bytes() for f in before} == before

    # A truncated best.pt is named; every cycle's own checkpoint still evaluates.
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=rf"{best} is unreadable"):
        evaluate.evaluate_run(run, cpu)
    assert evaluate.evaluate_run(run, cpu, cycle=best_cycle)["metrics"]["cycle"] == best_cycle
    assert files.read_json(run / "metrics.json")["cycle"] == best_cycle


def test_evaluation_files_are_flushed_before_rename_and_their_folder_after(tmp_path, make_dataset, monkeypatch):
    import os

    import torch
    run = _trained_run(tmp_path, make_dataset)
    calls = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(("replace", str(a), str(b))), replace(a, b))[1])
    evaluate.evaluate_run(run, torch.device("cpu"))
    for name in ("metrics.json", "cycles.csv", "predictions.csv"):
        i, (_, tmp, _) = next((i, c) for i, c in enumerate(calls) if c[0] == "replace" and c[2] == str(run / name))
        assert ("fsync", tmp) in calls[:i] and ("fsync", str(run)) in calls[i + 1:]
    renamed = [c[2] for c in calls if c[0] == "replace"]
    assert renamed.index(str(run / "metrics.json")) == len(renamed) - 1  # it marks the evaluation complete


@pytest.mark.integration
def test_with_tta_the_reported_calibration_is_that_of_the_model_as_04_and_05_apply_it(tmp_path, make_dataset):
    import torch

    from helpers.data import dataset as data
    from helpers.data import imagecache
    from helpers.evaluation import stats, trained
    from helpers.models import inference
    from helpers.training import cycle as train
    from helpers.training.config import TrainConfig
    run = tmp_path / "run"
    frame, report = data.split_for(run, str(make_dataset(per_class=10)), 42)
    cpu = torch.device("cpu")
    arrays = {s: imagecache.split_arrays(frame, report["classes"], s, 32) for s in ("train", "val")}
    # A head trained hard on few images: over-confident, and its views disagree — what calibration is for.
    cfg = TrainConfig(arch="efficientnet-lite0", classes=report["classes"], image_size=32, batch_size=8, epochs=0,
                      head_epochs=8, weights="imagenet", lr=0.05)
    train.run_cycle(cfg, run, *arrays["train"], *arrays["val"], cpu, progress=False)
    cal = evaluate.evaluate_run(run, cpu, tta="flip+crops")["metrics"]["calibration"]
    tempered, norm, cfg = trained.load_trained(run / "checkpoints" / "best.pt", cpu, calibrated=False)
    trained.set_temperature(tempered, cfg["arch"], cal["temperature"])  # folded in, as 05 and the exports load it
    val_x, val_y = arrays["val"]
    probs = inference.predict_proba(tempered, norm, val_x, cpu, tta="flip+crops")
    assert abs(np.log(cal["temperature"])) > 0.1  # a real correction, so a wrong transform would show
    assert cal["val_ece_after"] == pytest.approx(stats.expected_calibration_error(np.asarray(val_y), probs)[0],
                                                 abs=1e-5)


@pytest.mark.parametrize("classes", [["a", "b", "c"], ["a", "b"]])
def test_a_test_split_of_one_class_gives_its_accuracy_and_says_why_there_is_no_roc(classes):
    probs = [[0.7, 0.2, 0.1][:len(classes)], [0.2, 0.7, 0.1][:len(classes)], [0.6, 0.3, 0.1][:len(classes)]]
    metrics = evaluate.compute_metrics(_frame(["a", "a", "a"], probs, classes), classes)
    assert metrics["test_accuracy"] == pytest.approx(2 / 3) and metrics["roc_auc"] is None
    assert metrics["roc_note"] == ("no ROC: the test split holds only class 'a' (3 image(s)), and a ROC needs "
                                   "images of a class and of the others; the accuracy and the per-class figures "
                                   "stand.")
    from helpers.reporting import plots
    plots.roc_figure(evaluate.roc_curves(["a"] * 3, np.asarray(probs), classes))  # a figure that says so


@pytest.mark.notebook
def test_04_on_a_test_split_of_one_class(tmp_path, study_home):
    import json

    import papermill
    import torch

    from helpers import pipeline
    from helpers.data import dataset as data
    from helpers.data import imagecache
    from helpers.training import cycle as train
    from helpers.training.config import TrainConfig
    from helpers.utils import paths

    from .conftest import make_image
    root = tmp_path / "given"
    for split, classes in (("train", ("cat", "dog", "fox")), ("val", ("cat", "dog", "fox")), ("test", ("cat",))):
        for k, c in enumerate(classes):
            for i in range(6 if split == "train" else 3):
                make_image(root / split / c / f"{split}_{c}_{i}.png", seed=hash((split, c, i)) % 10_000, shade=k)
    run = paths.run_dir("onecls")
    frame, report = data.prepare_split(root, keep_given_split=True)
    data.save_split(run, frame, report)
    frame, report = data.load_split(run)
    assert set(frame.loc[frame["split"] == "test", "label"]) == {"cat"}
    cfg = TrainConfig(arch="mobilenet_v3_small", classes=report["classes"], image_size=32, batch_size=8, epochs=1,
                      head_epochs=0, weights="none")
    train.run_cycle(cfg, run, *imagecache.split_arrays(frame, report["classes"], "train", 32),
                    *imagecache.split_arrays(frame, report["classes"], "val", 32), torch.device("cpu"),
                    progress=False)
    papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / "04_evaluate.ipynb"), str(tmp_path / "04.ipynb"),
                               parameters={"run_id": "onecls", "device": "cpu", "lang": "en"},
                               cwd=str(paths.NOTEBOOKS_DIR), kernel_name=pipeline._kernel_name(), progress_bar=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_test"] == 3 and 0 <= metrics["test_accuracy"] <= 1 and metrics["roc_auc"] is None
    assert metrics["roc_note"].startswith("no ROC: the test split holds only class 'cat' (3 image(s))")
    text = (paths.report_dir("onecls") / "REPORT.md").read_text()
    assert "No ROC: the test split holds only class cat (3 image(s))" in text


@pytest.mark.integration
def test_04_resamples_the_test_splits_duplicate_groups_and_the_report_says_so(make_dataset):
    import shutil

    import torch

    from helpers.data import dataset as data
    from helpers.data import imagecache
    from helpers.reporting import report as report_module
    from helpers.training import cycle as train
    from helpers.training.config import TrainConfig
    from helpers.utils import paths
    root = make_dataset(per_class=8)
    for p in sorted(root.rglob("*.png")):
        for k in (1, 2):  # every image three times: the copies always share a split
            shutil.copyfile(p, p.with_name(f"{p.stem}_copy{k}.png"))
    run = paths.run_dir("dups")
    frame, report = data.split_for(run, str(root), 42)
    cfg = TrainConfig(arch="mobilenet_v3_small", classes=report["classes"], image_size=32, batch_size=8, epochs=1,
                      head_epochs=0, weights="none")
    train.run_cycle(cfg, run, *imagecache.split_arrays(frame, report["classes"], "train", 32),
                    *imagecache.split_arrays(frame, report["classes"], "val", 32), torch.device("cpu"),
                    progress=False)
    metrics = evaluate.evaluate_run(run, torch.device("cpu"))["metrics"]
    n = int((frame["split"] == "test").sum())
    assert metrics["intervals"]["unit"] == "group" and metrics["intervals"]["n_groups"] == n // 3
    text = report_module.render("dups", "en")
    assert f"(95% bootstrap interval over the test split's {n // 3} groups: " in text
    assert "Wilson" not in text.split("final accuracy")[1].split("\n")[0]
