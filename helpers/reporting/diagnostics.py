"""Figures of what was checked before and during training: likely wrong labels, the learning-rate range test."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from helpers.reporting.plots import image_grid
from helpers.reporting.texts import strings


def label_issue_gallery(images: list[np.ndarray], titles: list[str], lang: str = "ru", cols: int = 8) -> Figure:
    """The most likely wrong labels, each titled given → suggested (label quality); a note when there are none."""
    w = strings(lang)["figures"]["label_issues"]
    if not images:
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, w["none"], ha="center", va="center")
        return fig
    return image_grid(images, titles, cols=cols, title=w["title"])


def lr_range_figure(tests: dict, lang: str = "ru") -> Figure:
    """Loss against learning rate of each range test (log axis), the suggested rate marked."""
    w = strings(lang)["figures"]["lr_range"]
    fig, axes = plt.subplots(1, len(tests), figsize=(5.2 * len(tests), 3.6), squeeze=False)
    for ax, (stage, t) in zip(axes[0], tests.items()):
        lrs, loss = np.asarray(t["lrs"]), np.asarray(t["smoothed"])
        ax.plot(lrs, t["losses"], color="0.8", lw=0.8, label=w["raw"])
        ax.plot(lrs, loss, lw=1.5, label=w["smoothed"])
        ax.axvline(t["suggestion"], color="tab:red", ls="--", lw=1)
        at = int(np.argmin(np.abs(np.log(lrs) - np.log(t["suggestion"]))))
        ax.plot([t["suggestion"]], [loss[at]], "o", color="tab:red",
                label=w["suggested"].format(lr=f"{t['suggestion']:.2g}"))
        ax.set_xscale("log")
        ax.set_xlabel(w["x"])
        ax.set_ylabel(w["y"])
        finite = loss[np.isfinite(loss)]
        if finite.size:
            ax.set_ylim(finite.min() - 0.05 * abs(finite.min()), min(finite.max(), 4 * finite[0]) * 1.05)
        ax.set_title(w["title"].format(stage=stage, steps=t["steps"], rule=t["rule"]), fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
