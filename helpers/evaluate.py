"""Test-split evaluation through scikit-learn: accuracy with its interval, per-class scores, ROC, calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest
from sklearn.metrics import (auc, classification_report, confusion_matrix, roc_auc_score, roc_curve)
from sklearn.preprocessing import label_binarize

from . import io
from .data import load_split
from .gradcam import grad_cam
from .imagecache import load_resized, split_arrays
from .models import arch_spec, build_model, load_weights
from .checkpoints import load as load_checkpoint
from .inference import Normalizer, predict_proba
from .ledger import fill_test_accuracy


class EvaluationError(ValueError):
    """The evaluation inputs disagree; the message names the disagreement."""


def predictions_frame(paths: list[str], labels: list[str], probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """predictions.csv: path, label, pred and p_<class> for every class."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise EvaluationError(f"probabilities have {probs.shape[-1] if probs.ndim == 2 else '?'} columns "
                              f"but the split has {len(classes)} classes {classes}; the checkpoint was "
                              "trained on another class list.")
    frame = pd.DataFrame({"path": paths, "label": labels,
                          "pred": [classes[i] for i in probs.argmax(1)]})
    for k, c in enumerate(classes):
        frame[f"p_{c}"] = np.round(probs[:, k], 6)
    return frame


def probabilities(frame: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The (n, classes) probability matrix of a predictions frame."""
    missing = [f"p_{c}" for c in classes if f"p_{c}" not in frame.columns]
    if missing:
        raise EvaluationError(f"predictions lack columns {missing}: they disagree with the classes {classes}.")
    return frame[[f"p_{c}" for c in classes]].to_numpy(dtype=float)


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy's binomtest)."""
    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def roc_curves(y_true: list[str], probs: np.ndarray, classes: list[str]) -> dict:
    """ROC from probabilities: binary → the positive class; multiclass → one-vs-rest, micro and macro."""
    y = np.asarray([classes.index(c) for c in y_true])
    probs = np.asarray(probs, dtype=float)
    if len(classes) == 2:
        positive = classes[1]
        if len(set(y)) < 2:
            return {"kind": "binary", "positive": positive, "curves": {}, "auc": None,
                    "skipped": [classes[k] for k in (0, 1) if k not in set(y)]}
        fpr, tpr, _ = roc_curve(y, probs[:, 1])
        value = float(roc_auc_score(y, probs[:, 1]))
        return {"kind": "binary", "positive": positive, "auc": value, "skipped": [],
                "curves": {positive: {"fpr": fpr, "tpr": tpr, "auc": value}}}
    onehot = label_binarize(y, classes=list(range(len(classes))))
    curves, skipped = {}, []
    for k, c in enumerate(classes):
        if onehot[:, k].min() == onehot[:, k].max():
            skipped.append(c)  # absent (or alone) in the test split: no ROC is defined
            continue
        fpr, tpr, _ = roc_curve(onehot[:, k], probs[:, k])
        curves[c] = {"fpr": fpr, "tpr": tpr, "auc": float(roc_auc_score(onehot[:, k], probs[:, k]))}
    present = [classes.index(c) for c in curves]
    micro_fpr, micro_tpr, _ = roc_curve(onehot[:, present].ravel(), probs[:, present].ravel())
    grid = np.linspace(0.0, 1.0, 201)
    macro_tpr = np.mean([np.interp(grid, v["fpr"], v["tpr"]) for v in curves.values()], axis=0)
    return {"kind": "multiclass", "curves": curves, "skipped": skipped,
            "micro": {"fpr": micro_fpr, "tpr": micro_tpr, "auc": float(auc(micro_fpr, micro_tpr))},
            "macro": {"fpr": grid, "tpr": macro_tpr,
                      "auc": float(np.mean([v["auc"] for v in curves.values()]))}}


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> tuple[float, pd.DataFrame]:
    """ECE over equal-width confidence bins, and the per-bin table of a reliability diagram."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append({"bin_lo": edges[b], "bin_hi": edges[b + 1], "n": int(mask.sum()),
                         "confidence": float(conf[mask].mean()), "accuracy": float(correct[mask].mean())})
    table = pd.DataFrame(rows, columns=["bin_lo", "bin_hi", "n", "confidence", "accuracy"])
    ece = float((table["n"] * (table["confidence"] - table["accuracy"]).abs()).sum() / max(1, len(y)))
    return ece, table


def compute_metrics(frame: pd.DataFrame, classes: list[str], curves: dict | None = None) -> dict:
    """metrics.json's content from predictions.csv's frame (`curves`: its roc_curves, if already computed)."""
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise EvaluationError(f"test labels {unknown} are not among the model's classes {classes}.")
    probs = probabilities(frame, classes)
    y = np.asarray([classes.index(c) for c in frame["label"]])
    pred = probs.argmax(1)
    n, correct = len(y), int((pred == y).sum())
    lo, hi = wilson_interval(correct, n)
    curves = curves or roc_curves(frame["label"].tolist(), probs, classes)
    if curves["kind"] == "binary":
        roc_auc = curves["auc"]
    else:
        roc_auc = {"macro": curves["macro"]["auc"], "micro": curves["micro"]["auc"],
                   "per_class": {c: v["auc"] for c, v in curves["curves"].items()}}
    report = classification_report(y, pred, labels=list(range(len(classes))), target_names=classes,
                                   output_dict=True, zero_division=0)
    cm = confusion_matrix(y, pred, labels=list(range(len(classes))))
    ece, _ = expected_calibration_error(y, probs)
    pairs = [{"true": classes[i], "pred": classes[j], "count": int(cm[i, j])}
             for i in range(len(classes)) for j in range(len(classes)) if i != j and cm[i, j] > 0]
    pairs.sort(key=lambda d: (-d["count"], d["true"], d["pred"]))
    return {
        "test_accuracy": correct / n if n else 0.0,
        "test_accuracy_ci95": [lo, hi],
        "n_test": n,
        "n_correct": correct,
        "classes": classes,
        "roc_auc": roc_auc,
        "roc_skipped_classes": curves["skipped"],
        "per_class": {c: {"precision": report[c]["precision"], "recall": report[c]["recall"],
                          "f1": report[c]["f1-score"], "support": int(report[c]["support"])} for c in classes},
        "macro_f1": report["macro avg"]["f1-score"],
        "confusion_matrix": cm.tolist(),
        "most_confused": pairs[:10],
        "ece": ece,
    }


def confident_errors(frame: pd.DataFrame, classes: list[str], k: int = 16) -> pd.DataFrame:
    """The `k` wrong predictions made with the highest confidence."""
    probs = probabilities(frame, classes)
    out = frame[["path", "label", "pred"]].copy()
    out["confidence"] = probs.max(1)
    return out[out["label"] != out["pred"]].sort_values("confidence", ascending=False, kind="stable").head(k)


def evaluate_run(run_dir, device, batch_size: int = 32) -> dict:
    """Evaluate a run's best checkpoint on its test split; write predictions.csv, metrics.json, the ledger cell."""
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    frame, report = load_split(run_dir)
    cfg = ckpt["config"]
    classes = list(cfg["classes"])
    if classes != list(report["classes"]):
        raise EvaluationError(f"the checkpoint's classes {classes} disagree with split.csv's "
                              f"{report['classes']} in {run_dir}; rerun 03 on this split.")
    test = frame[frame["split"] == "test"]
    absent = sorted(set(classes) - set(test["label"]))
    model = build_model(cfg["arch"], len(classes), "none")
    load_weights(model, cfg["arch"], ckpt["model"], "best.pt")
    model.to(device, memory_format=torch.channels_last)
    spec = arch_spec(cfg["arch"])
    norm = Normalizer(spec.mean, spec.std).to(device)
    images, _ = split_arrays(frame, classes, "test", int(cfg["image_size"]))
    preds = predictions_frame(test["path"].tolist(), test["label"].tolist(),
                              predict_proba(model, norm, images, device, batch_size), classes)
    probs = probabilities(preds, classes)  # what predictions.csv holds: every figure is computed from it
    curves = roc_curves(preds["label"].tolist(), probs, classes)
    metrics = compute_metrics(preds, classes, curves)
    metrics.update(cycle=int(ckpt["cycle"]), best_epoch=int(ckpt["epoch"]), arch=cfg["arch"],
                   image_size=int(cfg["image_size"]), classes_absent_from_test=absent)
    io.write_csv(run_dir / "predictions.csv", preds)
    io.write_json(run_dir / "metrics.json", metrics)
    fill_test_accuracy(run_dir, int(ckpt["cycle"]), metrics["test_accuracy"])
    y = np.asarray([classes.index(c) for c in preds["label"]])
    _, calibration = expected_calibration_error(y, probs)
    errors = confident_errors(preds, classes)
    root = Path(report["root"])
    gallery = ([load_resized(root / p, 96) for p in errors["path"]],
               [f"{t} → {p} ({c:.2f})" for t, p, c in zip(errors["label"], errors["pred"], errors["confidence"])])
    # Grad-CAM over one test image per class (up to eight), at the network's input size.
    picks = [int(np.flatnonzero(preds["label"].to_numpy() == c)[0]) for c in classes
             if (preds["label"] == c).any()][:8]
    x = torch.from_numpy(np.array(images[picks])).to(device)
    cams = grad_cam(model, cfg["arch"], norm(x))
    cam_titles = [f"{preds['label'].iloc[i]} → {preds['pred'].iloc[i]}" for i in picks]
    return {"metrics": metrics, "predictions": preds, "curves": curves, "calibration": calibration, "errors": gallery,
            "gradcam": ([np.array(images[i]) for i in picks], cams, cam_titles)}
