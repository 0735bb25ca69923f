"""Test-split evaluation through scikit-learn: accuracy with its interval, per-class scores, ROC, calibration.

04 evaluates one checkpoint: the run's best by validation (cycle=0) or a named cycle's best. Every evaluation is
also kept under evaluations/cycle-<N>.{csv,json}, so two evaluated cycles can be compared on the same images.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import (
    auc,
    classification_report,
    confusion_matrix,
    roc_auc_score,
    roc_curve,
)
from sklearn.preprocessing import label_binarize

from helpers.data.dataset import load_split
from helpers.data.imagecache import load_resized, split_arrays
from helpers.evaluation import stats
from helpers.evaluation.gradcam import grad_cam, location
from helpers.evaluation.groups import interval_unit, test_groups
from helpers.evaluation.stats import expected_calibration_error, wilson_interval  # noqa: F401  (their home is stats)
from helpers.evaluation.trained import load_trained, set_temperature
from helpers.models.inference import TTA_CHOICES, predict_proba, predict_view_probs
from helpers.training import checkpoints, ledger
from helpers.training.checkpoints import load as load_checkpoint  # noqa: F401  (re-exported for older callers)
from helpers.utils import files


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


def roc_curves(y_true: list[str], probs: np.ndarray, classes: list[str]) -> dict:
    """ROC from probabilities: binary → the positive class; multiclass → one-vs-rest, micro and macro."""
    y = np.asarray([classes.index(c) for c in y_true])
    probs = np.asarray(probs, dtype=float)
    if len(set(y.tolist())) < 2:  # no negatives (or no positives) for any class: no ROC is defined
        present = sorted({classes[k] for k in y.tolist()})
        return {"kind": "binary" if len(classes) == 2 else "multiclass", "positive": classes[-1], "curves": {},
                "auc": None, "micro": None, "macro": None, "skipped": [c for c in classes if c not in present],
                "why": no_roc_reason(present, len(y))}
    if len(classes) == 2:
        positive = classes[1]
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


def no_roc_reason(present: list[str], n: int) -> str:
    """Why a test split gives no ROC (its accuracy still stands)."""
    held = f"only class {present[0]!r}" if present else "no image"
    return (f"no ROC: the test split holds {held} ({n} image(s)), and a ROC needs images of a class and of "
            "the others; the accuracy and the per-class figures stand.")


def compute_metrics(frame: pd.DataFrame, classes: list[str], curves: dict | None = None,
                    groups: np.ndarray | None = None) -> dict:
    """metrics.json's content from predictions.csv's frame (`curves`: its roc_curves, if already computed).

    With `groups` (test_groups) the intervals resample whole groups: the accuracy's by a group bootstrap
    instead of Wilson's images, macro F1's and the AUC's likewise.
    """
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise EvaluationError(f"test labels {unknown} are not among the model's classes {classes}.")
    probs = probabilities(frame, classes)
    y = np.asarray([classes.index(c) for c in frame["label"]])
    pred = probs.argmax(1)
    n, correct = len(y), int((pred == y).sum())
    lo, hi = wilson_interval(correct, n) if groups is None else \
        stats.stratified_bootstrap(y, probs, stats.accuracy, groups=groups)
    curves = curves or roc_curves(frame["label"].tolist(), probs, classes)
    if curves.get("why"):
        roc_auc = None
    elif curves["kind"] == "binary":
        roc_auc = curves["auc"]
    else:
        roc_auc = {"macro": curves["macro"]["auc"], "micro": curves["micro"]["auc"],
                   "per_class": {c: v["auc"] for c, v in curves["curves"].items()}}
    report = classification_report(y, pred, labels=list(range(len(classes))), target_names=classes,
                                   output_dict=True, zero_division=0)
    recall_ci = {c: wilson_interval(int(((pred == k) & (y == k)).sum()), int((y == k).sum()))
                 for k, c in enumerate(classes)}
    cm = confusion_matrix(y, pred, labels=list(range(len(classes))))
    ece, _ = expected_calibration_error(y, probs)
    f1_ci = stats.stratified_bootstrap(y, probs, stats.macro_f1, groups=groups) if n else [0.0, 1.0]
    auc_ci = stats.stratified_bootstrap(y, probs, stats.roc_auc, groups=groups) if not curves.get("why") and (
        not curves["skipped"] or (curves["kind"] == "multiclass" and curves["curves"])) else None
    pairs = [{"true": classes[i], "pred": classes[j], "count": int(cm[i, j])}
             for i in range(len(classes)) for j in range(len(classes)) if i != j and cm[i, j] > 0]
    pairs.sort(key=lambda d: (-d["count"], d["true"], d["pred"]))
    return {
        "test_accuracy": correct / n if n else 0.0,
        "test_accuracy_ci95": [lo, hi],
        "intervals": interval_unit(groups, n),
        "n_test": n,
        "n_correct": correct,
        "classes": classes,
        "roc_auc": roc_auc,
        "roc_skipped_classes": curves["skipped"],
        "roc_note": curves.get("why"),
        "per_class": {c: {"precision": report[c]["precision"], "recall": report[c]["recall"],
                          "recall_ci95": list(recall_ci[c]), "f1": report[c]["f1-score"],
                          "support": int(report[c]["support"])} for c in classes},
        # mean recall over the classes in the test split, with a stratified bootstrap interval
        "balanced_accuracy": float(stats.balanced_accuracy(y, probs)[0]) if n else 0.0,
        "balanced_accuracy_ci95": list(stats.stratified_bootstrap(y, probs, stats.balanced_accuracy))
        if n else [0.0, 1.0],
        "macro_f1": report["macro avg"]["f1-score"],
        "macro_f1_ci95": list(f1_ci),
        "roc_auc_ci95": list(auc_ci) if auc_ci else None,  # of the binary AUC, or of the macro one-vs-rest AUC
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



def select_checkpoint(run_dir: Path, cycle: int, select_metric: str = "accuracy") -> tuple[Path, str]:
    """The checkpoint 04 evaluates and why: cycle=0 → the run's best by validation `select_metric`, N → cycle N's best.

    checkpoints/best.pt is the run's best by the select_metric 03 ran with; asked for another figure, 04 picks
    among the cycles' own best checkpoints the one with the highest validation value of it (the earliest of equals).
    """
    path = checkpoints.resolve(run_dir, cycle)
    if int(cycle) != 0:
        return path, f"parameter cycle={int(cycle)}"
    if checkpoints.load(path).get("select_metric", "accuracy") == select_metric:
        return path, "validation"
    best, best_value = path, -1.0
    for n in checkpoints.available_cycles(run_dir):
        candidate = checkpoints.cycle_dir(run_dir, n) / "best.pt"
        ckpt = checkpoints.load(candidate)
        value = float((ckpt.get("val_scores") or {"accuracy": ckpt.get("val_accuracy", -1.0)}).get(select_metric, -1))
        if value > best_value:
            best, best_value = candidate, value
    return best, "validation"


def evaluate_run(run_dir, device, batch_size: int = 32, cycle: int = 0, tta: str = "none",
                 select_metric: str = "accuracy") -> dict:
    """Evaluate one checkpoint on the test split; write predictions.csv, metrics.json and the ledger cell together."""
    run_dir = Path(run_dir)
    if tta not in TTA_CHOICES:
        raise EvaluationError(f"tta={tta!r}: use one of {', '.join(TTA_CHOICES)}.")
    path, selected_by = select_checkpoint(run_dir, cycle, select_metric)
    model, norm, cfg = load_trained(path, device, calibrated=False)  # the temperature is fitted anew below
    frame, report = load_split(run_dir)
    classes = list(cfg["classes"])
    if classes != list(report["classes"]):
        raise EvaluationError(f"the checkpoint's classes {classes} disagree with split.csv's "
                              f"{report['classes']} in {run_dir}; rerun 03 on this split.")
    size = int(cfg["image_size"])
    test = frame[frame["split"] == "test"]
    absent = sorted(set(classes) - set(test["label"]))
    images, test_y = split_arrays(frame, classes, "test", size)
    val_images, val_y = split_arrays(frame, classes, "val", size)
    test_views = predict_view_probs(model, norm, images, device, batch_size, tta)
    val_views = predict_view_probs(model, norm, val_images, device, batch_size, tta)
    test_probs, val_probs = test_views.mean(0), val_views.mean(0)
    tta_effect = _tta_effect(model, norm, images, test_y, val_images, val_y, test_probs, val_probs, device,
                             batch_size, tta)
    # One temperature fitted on validation, on every TTA view divided by it and then averaged: the transform
    # folding it into the last layer applies. Test probabilities change only where it helped on validation.
    calibration = stats.temperature_scaling(np.asarray(val_y), val_views, np.asarray(test_y), test_views)
    calibration.pop("probs")
    if calibration["applied"]:
        # Folded into the last layer, as 05 and the exports load it: predictions.csv is what they will give.
        set_temperature(model, cfg["arch"], calibration["temperature"])
        test_probs = predict_proba(model, norm, images, device, batch_size, tta)
        calibration["test_ece_after"], _ = expected_calibration_error(np.asarray(test_y), test_probs)
    preds = predictions_frame(test["path"].tolist(), test["label"].tolist(), test_probs, classes)
    probs = probabilities(preds, classes)  # what predictions.csv holds: every figure is computed from it
    curves = roc_curves(preds["label"].tolist(), probs, classes)
    metrics = compute_metrics(preds, classes, curves, test_groups(preds["path"].tolist(), report))
    metrics.update(cycle=int(cfg["cycle"]), best_epoch=int(cfg["epoch"]), arch=cfg["arch"], image_size=size,
                   classes_absent_from_test=absent, selected_by=selected_by, select_metric=select_metric,
                   selection=_selection(run_dir, cfg, selected_by), tta=tta_effect, calibration=calibration,
                   evaluated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    metrics["paired_comparison"] = paired_comparison(run_dir, metrics["cycle"], preds)
    cycles = ledger.with_test_accuracy(run_dir, metrics["cycle"], metrics["test_accuracy"])
    _write_together(run_dir, preds, metrics, cycles)
    _, calibration_table = expected_calibration_error(np.asarray([classes.index(c) for c in preds["label"]]), probs)
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
    return {"metrics": metrics, "predictions": preds, "curves": curves, "calibration": calibration_table,
            "errors": gallery,
            "gradcam": ([np.array(images[i]) for i in picks], cams, cam_titles, location(model, cfg["arch"], size))}


def _tta_effect(model, norm, images, test_y, val_images, val_y, test_probs, val_probs, device, batch_size,
                tta: str) -> dict:
    """TTA used or not; when used, accuracy with and without it on validation (the split to decide on) and test."""
    out = {"mode": tta}
    if tta == "none":
        return out
    plain_test = predict_proba(model, norm, images, device, batch_size)
    plain_val = predict_proba(model, norm, val_images, device, batch_size)

    def acc(p, y):
        return float((p.argmax(1) == np.asarray(y)).mean()) if len(y) else 0.0
    out.update(val_accuracy=acc(val_probs, val_y), val_accuracy_without=acc(plain_val, val_y),
               test_accuracy=acc(test_probs, test_y), test_accuracy_without=acc(plain_test, test_y))
    return out


def _selection(run_dir: Path, cfg: dict, selected_by: str) -> dict:
    """Which checkpoint was evaluated, its validation figure, and the run's best by validation for contrast."""
    best_path = checkpoints.checkpoint_dir(run_dir) / "best.pt"
    try:
        best = checkpoints.load(best_path) if selected_by != "validation" else None
    except checkpoints.CheckpointError:
        best = None  # a damaged best.pt must not stop the evaluation of another cycle
    run_best_cycle = int(cfg["cycle"]) if best is None and selected_by == "validation" else \
        (int(best["cycle"]) if best else None)
    return {"checkpoint": str(Path(cfg["checkpoint"]).relative_to(run_dir)), "cycle": int(cfg["cycle"]),
            "epoch": int(cfg["epoch"]), "val_accuracy": cfg.get("val_accuracy"), "val_scores": cfg.get("val_scores"),
            "run_best_cycle": run_best_cycle,
            "run_best_val_accuracy": cfg.get("val_accuracy") if selected_by == "validation" else
            (best.get("val_accuracy") if best else None)}


def paired_comparison(run_dir: Path, cycle: int, preds: pd.DataFrame) -> dict | None:
    """McNemar's exact test and the accuracy difference between this evaluation and the previous one of another cycle."""
    previous = _previous_evaluation(run_dir, cycle)
    if previous is None:
        return None
    other_metrics, other = previous
    mine = preds.set_index("path")
    other = other.set_index("path")
    if set(mine.index) != set(other.index):
        return {"other_cycle": other_metrics["cycle"], "comparable": False,
                "reason": "the test split changed between the two evaluations (02 ran again)"}
    other = other.loc[mine.index]
    a = (mine["pred"] == mine["label"]).to_numpy()
    b = (other["pred"] == other["label"]).to_numpy()
    diff, lo, hi = stats.paired_accuracy_difference(a, b)
    return {"other_cycle": int(other_metrics["cycle"]), "other_tta": other_metrics.get("tta", {}).get("mode", "none"),
            "comparable": True, "accuracy": float(a.mean()), "other_accuracy": float(b.mean()),
            "difference": diff, "difference_ci95": [lo, hi], "mcnemar": stats.mcnemar_exact(a, b)}


def _previous_evaluation(run_dir: Path, cycle: int) -> tuple[dict, pd.DataFrame] | None:
    """The most recent kept evaluation of a cycle other than `cycle` (metrics and predictions)."""
    found = []
    for path in (run_dir / "evaluations").glob("cycle-*.json"):
        m = files.read_json(path)
        if int(m["cycle"]) != int(cycle) and path.with_suffix(".csv").exists():
            found.append((m.get("evaluated_at", ""), m, path.with_suffix(".csv")))
    if not found:
        return None
    _, m, csv = max(found, key=lambda t: t[0])
    return m, pd.read_csv(csv, keep_default_na=False)


def _write_together(run_dir: Path, preds: pd.DataFrame, metrics: dict, cycles: pd.DataFrame) -> None:
    """predictions.csv, metrics.json, the ledger cell and the kept evaluation: all written, or none.

    Every file is written to a temporary name and flushed to disk first; only when all are complete are they
    renamed into place, so an error or a full disk leaves the previous evaluation intact (metrics.json, renamed
    last, marks the new one complete).
    """
    keep = run_dir / "evaluations" / f"cycle-{metrics['cycle']}"
    targets = [(keep.with_suffix(".csv"), "preds"), (run_dir / "predictions.csv", "preds"),
               (run_dir / "cycles.csv", "cycles"), (keep.with_suffix(".json"), "json"),
               (run_dir / "metrics.json", "json")]
    with files.atomic_paths([t for t, _ in targets]) as temps:
        for tmp, (_, kind) in zip(temps, targets):
            if kind == "json":
                tmp.write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=str) + "\n",
                               encoding="utf-8")
            else:
                (cycles if kind == "cycles" else preds).to_csv(tmp, index=False, lineterminator="\n")
