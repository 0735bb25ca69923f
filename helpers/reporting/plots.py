"""Figures of the study; every function returns a matplotlib Figure and leaves saving to the caller."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def class_balance(report: dict) -> Figure:
    """Images per class and split, as seaborn bars."""
    rows = [{"class": c, "split": s, "images": n} for c, d in report["counts"].items() for s, n in d.items()]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(report["counts"])), 3.6))
    sns.barplot(data=pd.DataFrame(rows), x="class", y="images", hue="split", ax=ax)
    ax.tick_params(axis="x", rotation=45)
    ax.set_title("Images per class and split")
    fig.tight_layout()
    return fig


def training_metrics(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, train and validation, over every cycle, cycles marked."""
    h = history.reset_index(drop=True).copy()
    h["step"] = np.arange(1, len(h) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(h["step"], h[f"train_{metric}"], "o-", label=f"train {metric}")
        ax.plot(h["step"], h[f"val_{metric}"], "s-", label=f"val {metric}")
        for cycle, part in h.groupby("cycle"):
            start = part["step"].min()
            ax.axvline(start - 0.5, color="grey", ls=":", lw=1)
            ax.text(start - 0.4, ax.get_ylim()[1], f"cycle {cycle}", va="top", fontsize=8, color="grey")
        ax.set_xlabel("epoch (all cycles)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training metrics")
    fig.tight_layout()
    return fig


def roc_figure(curves: dict) -> Figure:
    """ROC curves from `evaluate.roc_curves`: per class, plus micro and macro averages."""
    fig, ax = plt.subplots(figsize=(6.5, 6))
    if curves.get("why"):  # one class in the test split: the figure says why there is no curve
        ax.text(0.5, 0.5, textwrap.fill(curves["why"], 48), ha="center", va="center", fontsize=9,
                transform=ax.transAxes)
        ax.set_axis_off()
        fig.tight_layout()
        return fig
    for name, c in curves["curves"].items():
        ax.plot(c["fpr"], c["tpr"], lw=1, label=f"{name} (AUC {c['auc']:.3f})")
    if curves["kind"] == "multiclass":
        ax.plot(curves["micro"]["fpr"], curves["micro"]["tpr"], "k--", lw=2,
                label=f"micro-average (AUC {curves['micro']['auc']:.3f})")
        ax.plot(curves["macro"]["fpr"], curves["macro"]["tpr"], "k:", lw=2,
                label=f"macro-average (AUC {curves['macro']['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    title = "Test ROC, one-vs-rest" if curves["kind"] == "multiclass" else f"Test ROC, positive class {curves['positive']}"
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def confusion_figure(matrix: list[list[int]], classes: list[str]) -> Figure:
    """Confusion matrix as counts and row-normalised, seaborn heatmaps."""
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    size = max(5, 0.55 * len(classes) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    sns.heatmap(cm.astype(int), annot=True, fmt="d", cmap="Blues", xticklabels=classes, yticklabels=classes,
                ax=axes[0], cbar=False)
    sns.heatmap(norm, annot=True, fmt=".2f", cmap="Blues", xticklabels=classes, yticklabels=classes,
                ax=axes[1], vmin=0, vmax=1, cbar=False)
    for ax, title in zip(axes, ("counts", "row-normalised (recall)")):
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    fig.tight_layout()
    return fig


def reliability_diagram(table: pd.DataFrame, ece: float) -> Figure:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.bar(table["bin_lo"], table["accuracy"], width=table["bin_hi"] - table["bin_lo"], align="edge",
           edgecolor="k", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "r--", label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram (ECE {ece:.3f})")
    ax.legend()
    fig.tight_layout()
    return fig


def image_grid(images: list[np.ndarray], titles: list[str], cols: int = 8) -> Figure:
    """A grid of CHW uint8 images with a title each."""
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles):
        ax.imshow(np.transpose(img, (1, 2, 0)))
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def research_scatter(table: pd.DataFrame) -> Figure:
    """Published ImageNet top-1 against measured latency, marker size by parameters."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    t = table.dropna(subset=["imagenet_top1", "latency_ms"])
    ax.scatter(t["latency_ms"], t["imagenet_top1"], s=20 + 12 * t["params_m"], alpha=0.6)
    for _, r in t.iterrows():
        ax.annotate(r["arch"], (r["latency_ms"], r["imagenet_top1"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("measured latency, batch 1 (ms)")
    ax.set_ylabel("published ImageNet top-1 (%)")
    ax.set_title("Accuracy against latency (marker size: parameters)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def gradcam_grid(images: list[np.ndarray], cams: np.ndarray, titles: list[str], where: str = "",
                 cols: int = 4) -> Figure:
    """Test images with their Grad-CAM heatmaps laid over them; `where` names the layer and input size."""
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cam, title in zip(axes.ravel(), images, cams, titles):
        ax.imshow(np.transpose(img, (1, 2, 0)))
        ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    fig.suptitle("Grad-CAM: regions behind the predicted class" + (f"\n{where}" if where else ""), fontsize=11)
    fig.tight_layout()
    return fig


def size_distribution(report: dict) -> Figure:
    """Image widths against heights, marker area by how many images share the size."""
    sizes = [(int(s.split("x")[0]), int(s.split("x")[1]), n) for s, n in report["image_sizes"]]
    fig, ax = plt.subplots(figsize=(5, 4))
    w, h, n = (np.array(v) for v in zip(*sizes)) if sizes else (np.array([]),) * 3
    ax.scatter(w, h, s=20 + 200 * n / max(1, n.max() if len(n) else 1), alpha=0.6)
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title(f"Image sizes ({len(sizes)} distinct)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def runs_comparison(cycles: pd.DataFrame) -> Figure:
    """Every cycle of every run: validation accuracy (hollow) and test accuracy with its 95 % interval (filled).

    Colour is the device type, marker the architecture, so CPU against CUDA cycles and one arch against
    another read off one axis. `cycles` holds run_id, cycle, device_type, arch, best_val_accuracy,
    test_accuracy, ci_lo, ci_hi (accuracies as fractions).
    """
    rows = cycles.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.38 * len(rows) + 1.4)))
    devices = sorted(rows["device_type"].astype(str).unique())
    archs = sorted(rows["arch"].astype(str).unique())
    colours = dict(zip(devices, sns.color_palette("colorblind", max(1, len(devices)))))
    markers = dict(zip(archs, "osD^vP*XhH<>" * 2))
    y = np.arange(len(rows))[::-1]
    for yi, (_, r) in zip(y, rows.iterrows()):
        colour, marker = colours[str(r["device_type"])], markers[str(r["arch"])]
        if pd.notna(r["best_val_accuracy"]):
            ax.plot(100 * r["best_val_accuracy"], yi, marker, mfc="none", mec=colour, ms=8, mew=1.5)
        if pd.notna(r["test_accuracy"]):
            err = None
            if pd.notna(r.get("ci_lo")) and pd.notna(r.get("ci_hi")):
                err = [[100 * (r["test_accuracy"] - r["ci_lo"])], [100 * (r["ci_hi"] - r["test_accuracy"])]]
            ax.errorbar(100 * r["test_accuracy"], yi, xerr=err, fmt=marker, color=colour, ms=8, capsize=3)
    ax.set_yticks(y, [f"{r['run_id']} · cycle {int(r['cycle'])}" for _, r in rows.iterrows()])
    ax.set_xlabel("accuracy (%): hollow = best validation, filled = test with 95 % interval")
    from matplotlib.patches import Patch
    handles = [Patch(color=colours[d], label=d) for d in devices]
    handles += [plt.Line2D([], [], ls="", marker=markers[a], color="grey", label=a) for a in archs]
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title("Runs compared: every training cycle")
    fig.tight_layout()
    return fig
