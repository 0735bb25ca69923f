"""helpers.evaluate: golden ROC/AUC against scikit-learn, the Wilson interval, calibration, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from helpers import evaluate
from helpers.evaluate import EvaluationError


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

    from helpers import data, imagecache, train
    run = tmp_path / "run"
    frame, report = data.split_for(run, str(make_dataset(per_class=8)), 42)
    classes = report["classes"]
    cfg = train.TrainConfig(arch="mobilenet_v3_small", classes=classes, image_size=32, batch_size=8, epochs=1,
                            head_epochs=0, weights="none")
    train.run_cycle(cfg, run, *imagecache.split_arrays(frame, classes, "train", 32),
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

    from helpers import io
    from helpers.checkpoints import CheckpointError
    with pytest.raises(CheckpointError, match="best.pt not found: this run has no such checkpoint yet"):
        evaluate.evaluate_run(tmp_path / "empty", torch.device("cpu"))
    run = _trained_run(tmp_path, make_dataset)
    report = io.read_json(run / "data_report.json")
    report["classes"] = ["cat", "dog", "wolf"]
    io.write_json(run / "data_report.json", report)
    with pytest.raises(EvaluationError, match=r"checkpoint's classes \['cat', 'dog', 'fox'\] disagree"):
        evaluate.evaluate_run(run, torch.device("cpu"))
    assert not (run / "predictions.csv").exists() and not (run / "metrics.json").exists()
