"""Figures of the study; every function returns a matplotlib Figure and leaves saving to the caller.

Each takes `lang` and words its titles, axes and legends from strings.yaml (`figures`), so the Russian
report's figures are in Russian. Layouts are constrained and long titles wrapped, so no text sits on another.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from helpers.reporting.texts import strings, translate

# A character of a sans-serif font is about this many font sizes wide (for wrapping titles to a width).
CHAR_WIDTH = 0.6


def _words(lang: str, figure: str) -> dict:
    """The texts of one figure in `lang`."""
    return strings(lang)["figures"][figure]


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """`text` broken into lines that fit `width_in` inches at `fontsize` points."""
    chars = max(8, int(width_in * 72 / (fontsize * CHAR_WIDTH)))
    return "\n".join(textwrap.fill(line, chars) for line in str(text).split("\n"))


def class_balance(report: dict, lang: str = "ru") -> Figure:
    """Images per class and split, as seaborn bars."""
    w, splits = _words(lang, "class_balance"), strings(lang)["figures"]["splits"]
    rows = [{"class": c, "split": splits.get(s, s), "images": n}
            for c, d in report["counts"].items() for s, n in d.items()]
    width = max(6, 0.6 * len(report["counts"]))
    fig, ax = plt.subplots(figsize=(width, 3.8), layout="constrained")
    sns.barplot(data=pd.DataFrame(rows), x="class", y="images", hue="split", ax=ax)
    longest = max((len(str(c)) for c in report["counts"]), default=0)
    if longest * 10 * CHAR_WIDTH / 72 > 0.9 * width / max(1, len(report["counts"])):
        ax.tick_params(axis="x", rotation=90)  # upright labels would run into each other
    ax.set_xlabel(w["x"])
    ax.set_ylabel(w["y"])
    ax.legend(title=w["legend"], loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(w["title"])
    return fig


def _mark_cycles(ax, h: pd.DataFrame, label: str) -> None:
    """A dotted line where each cycle starts, named upright beside it (names that would touch are skipped)."""
    gap, last = 0.035 * (len(h) + 1), None
    for cycle, part in h.groupby("cycle"):
        start = part["step"].min()
        ax.axvline(start - 0.5, color="grey", ls=":", lw=1)
        if last is None or start - last >= gap:
            ax.annotate(label.format(cycle=cycle), (start - 0.5, 0.98), xycoords=ax.get_xaxis_transform(),
                        xytext=(2, 0), textcoords="offset points", va="top", ha="left", rotation=90, fontsize=8,
                        color="grey")
            last = start


def training_metrics(history: pd.DataFrame, lang: str = "ru") -> Figure:
    """Loss and accuracy per epoch, train and validation, over every cycle, cycles marked."""
    w = _words(lang, "training_metrics")
    h = history.reset_index(drop=True).copy()
    h["step"] = np.arange(1, len(h) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(h["step"], h[f"train_{metric}"], "o-", label=w[f"train_{metric}"])
        ax.plot(h["step"], h[f"val_{metric}"], "s-", label=w[f"val_{metric}"])
        _mark_cycles(ax, h, w["cycle"])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.set_xlabel(w["x"])
        ax.set_ylabel(w[metric])
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.suptitle(w["title"])
    return fig


def roc_figure(curves: dict, lang: str = "ru") -> Figure:
    """ROC curves from `evaluate.roc_curves`: per class, plus micro and macro averages."""
    w = _words(lang, "roc")
    fig, ax = plt.subplots(figsize=(6.5, 6), layout="constrained")
    if curves.get("why"):  # one class in the test split: the figure says why there is no curve
        why = translate(curves["why"], strings(lang)["phrases"]["evaluation"], lang)
        ax.text(0.5, 0.5, wrap(why, 5.5, 9), ha="center", va="center", fontsize=9, transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    for name, c in curves["curves"].items():
        ax.plot(c["fpr"], c["tpr"], lw=1, label=w["curve"].format(name=name, auc=f"{c['auc']:.3f}"))
    if curves["kind"] == "multiclass":
        ax.plot(curves["micro"]["fpr"], curves["micro"]["tpr"], "k--", lw=2,
                label=w["micro"].format(auc=f"{curves['micro']['auc']:.3f}"))
        ax.plot(curves["macro"]["fpr"], curves["macro"]["tpr"], "k:", lw=2,
                label=w["macro"].format(auc=f"{curves['macro']['auc']:.3f}"))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlabel(w["x"])
    ax.set_ylabel(w["y"])
    title = w["title_multiclass"] if curves["kind"] == "multiclass" else \
        w["title_binary"].format(positive=curves["positive"])
    ax.set_title(wrap(title, 6, 12))
    ax.legend(fontsize=7, loc="lower right")
    return fig


def confusion_figure(matrix: list[list[int]], classes: list[str], lang: str = "ru") -> Figure:
    """Confusion matrix as counts and row-normalised, seaborn heatmaps side by side (one set of row names)."""
    w = _words(lang, "confusion")
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    size = max(5, 0.55 * len(classes) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size), layout="constrained")
    sns.heatmap(cm.astype(int), annot=True, fmt="d", cmap="Blues", xticklabels=classes, yticklabels=classes,
                ax=axes[0], cbar=False)
    sns.heatmap(norm, annot=True, fmt=".2f", cmap="Blues", xticklabels=classes, yticklabels=False,
                ax=axes[1], vmin=0, vmax=1, cbar=False)
    for ax, title in zip(axes, (w["counts"], w["normalised"])):
        ax.set_xlabel(w["x"])
        ax.set_title(title)
    axes[0].set_ylabel(w["y"])
    return fig


def reliability_diagram(table: pd.DataFrame, ece: float, lang: str = "ru") -> Figure:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    w = _words(lang, "reliability")
    fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    ax.bar(table["bin_lo"], table["accuracy"], width=table["bin_hi"] - table["bin_lo"], align="edge",
           edgecolor="k", alpha=0.7, label=w["bars"])
    ax.plot([0, 1], [0, 1], "r--", label=w["diagonal"])
    ax.set_xlabel(w["x"])
    ax.set_ylabel(w["y"])
    ax.set_title(w["title"].format(ece=f"{ece:.3f}"))
    ax.legend(loc="upper left")
    return fig


def _grid(n: int, cols: int, cell: tuple[float, float], title: str = "", title_size: float = 10):
    """One axes holding `n` image cells in rows of `cols`, axis off; (fig, ax, the cells' top-left corners, width).

    Each cell is `cell` inches: a square image and, above it, room for its title (height minus width). The axes
    spans the figure in inches (y downwards), and every image is drawn into it at its cell: one axes instead of
    one per image, whose creation took most of a 60-image grid's time (and constrained layout, before, 3 s of 4).
    """
    cols = max(1, min(cols, n))
    rows = max(1, int(np.ceil(n / cols)))
    room = cell[1] - cell[0]  # inches above every image for its title
    top = (0.12 + 0.18 * (title_size / 10) * (title.count("\n") + 1)) if title else 0.0
    gap = 0.06 * cell[0]  # between images in a row
    width, height = cell[0] * cols + gap * (cols - 1), cell[1] * rows + top
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_autoscale_on(False)  # the images keep the axes in inches
    ax.axis("off")
    if title:
        fig.suptitle(title, y=1 - 0.06 / height, va="top", fontsize=title_size)
    corners = [((i % cols) * (cell[0] + gap), top + (i // cols) * cell[1] + room) for i in range(n)]
    return fig, ax, corners, cell[0]


def _cell(ax, corner: tuple[float, float], side: float, img: np.ndarray, name: str, size: float, **overlay) -> None:
    """One image (CHW uint8) at its cell's corner, its title centred above it; `overlay`: a heatmap over it."""
    x, y = corner
    extent = (x, x + side, y + side, y)
    ax.imshow(np.transpose(img, (1, 2, 0)), extent=extent, aspect="auto")
    if overlay:
        ax.imshow(overlay.pop("cam"), extent=extent, aspect="auto", **overlay)
    ax.text(x + side / 2, y - 0.04, wrap(name, side, size), ha="center", va="bottom", fontsize=size)


def image_grid(images: list[np.ndarray], titles: list[str], cols: int = 8, title: str = "") -> Figure:
    """A grid of CHW uint8 images with a title each (titles wrapped to their image's width; the caller words them)."""
    cols = max(1, min(cols, len(images)))
    fig, ax, corners, side = _grid(len(images), cols, (1.6, 1.9), wrap(title, 1.6 * cols, 9), 9)
    for corner, img, name in zip(corners, images, titles):
        _cell(ax, corner, side, img, name, 7)
    return fig


def gradcam_grid(images: list[np.ndarray], cams: np.ndarray, titles: list[str], where: dict | str = "",
                 cols: int = 4, lang: str = "ru") -> Figure:
    """Test images with their Grad-CAM heatmaps laid over them; `where` (gradcam.location) names layer and size."""
    w = _words(lang, "gradcam")
    layer = w["where"].format(**where) if isinstance(where, dict) else where
    title = w["title"] + (f"\n{layer}" if layer else "")
    cols = max(1, min(cols, len(images)))
    fig, ax, corners, side = _grid(len(images), cols, (2.6, 2.9), wrap(title, 2.6 * cols, 10))
    for corner, img, cam, name in zip(corners, images, cams, titles):
        _cell(ax, corner, side, img, name, 8, cam=cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    return fig


def _spread_labels(fig: Figure, ax, labels: list) -> None:
    """Move annotation labels up, one line at a time, until none sits on an earlier one; keep them in the axes."""
    renderer = fig.canvas.get_renderer()
    placed = []
    for label in sorted(labels, key=lambda a: a.xy[1]):
        for _ in range(len(labels) + 1):
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(p) for p in placed):
                break
            dx, dy = label.get_position()
            label.set_position((dx, dy + box.height * 72 / fig.dpi + 1))
        placed.append(label.get_window_extent(renderer))
    top = max((p.y1 for p in placed), default=0)
    frame = ax.get_window_extent(renderer)
    if top > frame.y1:  # raise the axis by what the highest label needs, so it stays below the title
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 1.1 * (top - frame.y1) / frame.height * (hi - lo))


def research_scatter(table: pd.DataFrame, lang: str = "ru") -> Figure:
    """Published ImageNet top-1 against measured latency, marker size by parameters; names kept apart."""
    w = _words(lang, "research")
    fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
    t = table.dropna(subset=["imagenet_top1", "latency_ms"])
    ax.scatter(t["latency_ms"], t["imagenet_top1"], s=20 + 12 * t["params_m"], alpha=0.6)
    labels = [ax.annotate(r["arch"], (r["latency_ms"], r["imagenet_top1"]), fontsize=8,
                          xytext=(4, 4), textcoords="offset points") for _, r in t.iterrows()]
    ax.set_xlabel(w["x"])
    ax.set_ylabel(w["y"])
    ax.set_title(wrap(w["title"], 6.5, 12))
    ax.grid(alpha=0.3)
    fig.canvas.draw()  # the labels' sizes are known once drawn
    _spread_labels(fig, ax, labels)
    return fig


def size_distribution(report: dict, lang: str = "ru") -> Figure:
    """Image widths against heights, marker area by how many images share the size."""
    w = _words(lang, "sizes")
    sizes = [(int(s.split("x")[0]), int(s.split("x")[1]), n) for s, n in report["image_sizes"]]
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    width, height, n = (np.array(v) for v in zip(*sizes)) if sizes else (np.array([]),) * 3
    ax.scatter(width, height, s=20 + 200 * n / max(1, n.max() if len(n) else 1), alpha=0.6)
    ax.set_xlabel(w["x"])
    ax.set_ylabel(w["y"])
    ax.set_title(w["title"].format(n=len(sizes)))
    ax.grid(alpha=0.3)
    return fig


def _runs_points(ax, rows: pd.DataFrame, y: np.ndarray, colours: dict, markers: dict) -> None:
    """Each cycle's validation accuracy (hollow) and test accuracy with its interval (filled)."""
    for yi, (_, r) in zip(y, rows.iterrows()):
        colour, marker = colours[str(r["device_type"])], markers[str(r["arch"])]
        if pd.notna(r["best_val_accuracy"]):
            ax.plot(100 * r["best_val_accuracy"], yi, marker, mfc="none", mec=colour, ms=8, mew=1.5)
        if pd.notna(r["test_accuracy"]):
            err = None
            if pd.notna(r.get("ci_lo")) and pd.notna(r.get("ci_hi")):
                err = [[100 * (r["test_accuracy"] - r["ci_lo"])], [100 * (r["ci_hi"] - r["test_accuracy"])]]
            ax.errorbar(100 * r["test_accuracy"], yi, xerr=err, fmt=marker, color=colour, ms=8, capsize=3)


def runs_comparison(cycles: pd.DataFrame, lang: str = "ru") -> Figure:
    """Every cycle of every run: validation accuracy (hollow) and test accuracy with its 95 % interval (filled).

    Colour is the device type, marker the architecture, so CPU against CUDA cycles and one arch against
    another read off one axis. `cycles` holds run_id, cycle, device_type, arch, best_val_accuracy,
    test_accuracy, ci_lo, ci_hi (accuracies as fractions).
    """
    w = _words(lang, "runs")
    rows = cycles.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, max(2.8, 0.38 * len(rows) + 1.6)), layout="constrained")
    devices = sorted(rows["device_type"].astype(str).unique())
    archs = sorted(rows["arch"].astype(str).unique())
    colours = dict(zip(devices, sns.color_palette("colorblind", max(1, len(devices)))))
    markers = dict(zip(archs, "osD^vP*XhH<>" * 2))
    y = np.arange(len(rows))[::-1]
    _runs_points(ax, rows, y, colours, markers)
    ax.set_yticks(y, [w["tick"].format(run=r["run_id"], cycle=int(r["cycle"])) for _, r in rows.iterrows()])
    ax.set_xlabel(wrap(w["x"], 5.5, 10))
    handles = [Patch(color=colours[d], label=d) for d in devices]
    handles += [Line2D([], [], ls="", marker=markers[a], color="grey", label=a) for a in archs]
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(w["title"])
    return fig
