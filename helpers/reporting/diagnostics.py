"""Figures of what was checked before and during training: likely wrong labels, the learning-rate range test."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from helpers.reporting.plots import image_grid


def label_issue_gallery(images: list[np.ndarray], titles: list[str], method: str = "", cols: int = 8) -> Figure:
    """The most likely wrong labels, each titled given → suggested (label quality); a note when there are none."""
    if not images:
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no likely wrong labels found", ha="center", va="center")
        return fig
    fig = image_grid(images, titles, cols=min(cols, len(images)))
    fig.suptitle("likely wrong labels: given → suggested (label quality)", fontsize=9)
    if method:
        fig.text(0.5, 0.0, method, ha="center", va="bottom", fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.05 if method else 0, 1, 0.95))
    return fig


def lr_range_figure(tests: dict) -> Figure:
    """Loss against learning rate of each range test (log axis), the suggested rate marked."""
    fig, axes = plt.subplots(1, len(tests), figsize=(5.2 * len(tests), 3.6), squeeze=False)
    for ax, (stage, t) in zip(axes[0], tests.items()):
        lrs, loss = np.asarray(t["lrs"]), np.asarray(t["smoothed"])
        ax.plot(lrs, t["losses"], color="0.8", lw=0.8, label="loss per step")
        ax.plot(lrs, loss, lw=1.5, label="smoothed")
        ax.axvline(t["suggestion"], color="tab:red", ls="--", lw=1)
        at = int(np.argmin(np.abs(np.log(lrs) - np.log(t["suggestion"]))))
        ax.plot([t["suggestion"]], [loss[at]], "o", color="tab:red", label=f"suggested {t['suggestion']:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        finite = loss[np.isfinite(loss)]
        if finite.size:
            ax.set_ylim(finite.min() - 0.05 * abs(finite.min()), min(finite.max(), 4 * finite[0]) * 1.05)
        ax.set_title(f"{stage} stage: {t['steps']} steps, {t['rule']}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
