"""helpers.reporting.plots: figures speak the report's language, and no text of a figure sits on another.

Every figure is drawn with hard inputs — long class names, many classes, close points, short cycles — and
the drawn texts' bounding boxes are compared pairwise (and titles against the images of a grid).
"""

from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest

from helpers.reporting import diagnostics, plots

matplotlib.use("Agg")

NAMES = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor", "cat", "dog", "fox", "wolf"]
CYRILLIC = set("абвгдежзийклмнопрстуфхцчшщъыьэюя")


def _drawn_texts(fig) -> list:
    """(text, box) of every text the canvas drew: titles, labels, visible tick labels, legends, annotations."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = list(fig.texts) + ([fig._suptitle] if fig._suptitle else [])
    for legend in fig.legends:
        texts += [*legend.get_texts(), legend.get_title()]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.get_legend():
            texts += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
        if not ax.axison:
            continue
        for axis in (ax.xaxis, ax.yaxis):
            texts.append(axis.label)
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                    texts += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    unique = {id(t): t for t in texts if t.get_visible() and t.get_text().strip()}
    for t in unique.values():
        assert t.get_rotation() % 90 == 0, f"{t.get_text()!r} is drawn at {t.get_rotation()}°: its box is not its ink"
    return [(t.get_text(), t.get_window_extent(renderer)) for t in unique.values()]


def assert_no_overlap(fig) -> None:
    """No two drawn texts intersect, and no axes title lies on an image of the figure."""
    texts = _drawn_texts(fig)
    for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
        assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"
    renderer = fig.canvas.get_renderer()
    images = [im.get_window_extent(renderer) for ax in fig.axes for im in ax.images]
    titles = [ax.title for ax in fig.axes if ax.title.get_text()] + ([fig._suptitle] if fig._suptitle else [])
    for title in titles:
        box = title.get_window_extent(renderer)
        assert not any(box.overlaps(im) for im in images), f"title {title.get_text()!r} lies on an image"


def _figures(lang: str) -> dict:
    """Every figure of the kit, drawn from hard inputs, by name."""
    rng = np.random.default_rng(0)
    n = len(NAMES)
    images = [rng.integers(0, 255, (3, 64, 64), dtype=np.uint8) for _ in range(n)]
    titles = [f"{a} → {NAMES[(i + 1) % n]}" for i, a in enumerate(NAMES)]
    where = {"layer": "_blocks.10", "stride": 16, "rows": 14, "cols": 14, "size": 224}
    history = pd.DataFrame([{"cycle": c, "epoch": e, "train_loss": 1 / (e + c), "train_accuracy": 0.5 + 0.04 * e,
                             "val_loss": 1.1 / (e + c), "val_accuracy": 0.5 + 0.03 * e}
                            for c, epochs in ((1, 5), (2, 1), (3, 1), (4, 6)) for e in range(1, epochs + 1)])
    fpr = np.linspace(0, 1, 20)
    curve = {"fpr": fpr, "tpr": np.sqrt(fpr), "auc": 0.8}
    curves = {"kind": "multiclass", "curves": {c: curve for c in NAMES}, "micro": curve, "macro": curve}
    counts = {c: {"train": 70 + i, "val": 15, "test": 15} for i, c in enumerate(NAMES)}
    study = pd.DataFrame({"arch": ["efficientnet-lite0 · 224 px", "efficientnet-b0 · 224 px",
                                   "mobilenet_v3_large · 224 px", "efficientnet-b1 · 240 px", "resnet50 · 224 px"],
                          "latency_ms": [14.0, 14.5, 13.5, 15.0, 60.0], "imagenet_top1": [75.1, 75.3, 75.2, 75.4, 80.9],
                          "params_m": [4.7, 5.3, 5.5, 7.8, 25.6]})
    cycles = pd.DataFrame([{"run_id": f"run-{k}", "cycle": c, "device_type": d, "arch": a, "best_val_accuracy": 0.9,
                            "test_accuracy": 0.88, "ci_lo": 0.85, "ci_hi": 0.91}
                           for k, (d, a) in enumerate([("cpu", "efficientnet-lite0"), ("cuda", "efficientnet-b4")])
                           for c in (1, 2)])
    return {
        "class_balance": plots.class_balance({"counts": counts}, lang=lang),
        "training_metrics": plots.training_metrics(history, lang=lang),
        "roc": plots.roc_figure(curves, lang=lang),
        "roc_binary": plots.roc_figure({"kind": "binary", "positive": "pituitary_tumor",
                                        "curves": {"pituitary_tumor": curve}}, lang=lang),
        "roc_none": plots.roc_figure({"kind": "binary", "positive": "dog", "curves": {}, "skipped": ["dog"],
                                      "why": "no ROC: the test split holds only class 'cat' (3 image(s)), and a ROC "
                                             "needs images of a class and of the others; the accuracy and the "
                                             "per-class figures stand."}, lang=lang),
        "confusion": plots.confusion_figure(rng.integers(0, 30, (n, n)).tolist(), NAMES, lang=lang),
        "reliability": plots.reliability_diagram(pd.DataFrame({"bin_lo": [0.0, 0.5], "bin_hi": [0.5, 1.0],
                                                               "accuracy": [0.4, 0.8]}), 0.05, lang=lang),
        "image_grid": plots.image_grid(images, [f"{t} (0.97)" for t in titles], cols=6),
        "gradcam": plots.gradcam_grid(images, rng.random((n, 64, 64)), titles, where, lang=lang),
        "gradcam_three": plots.gradcam_grid(images[:3], rng.random((3, 64, 64)), titles[:3], where, lang=lang),
        "research": plots.research_scatter(study, lang=lang),
        "sizes": plots.size_distribution({"image_sizes": [["512x512", 30], ["640x480", 5], ["28x28", 1]]}, lang=lang),
        "runs": plots.runs_comparison(cycles, lang=lang),
        "label_issues": diagnostics.label_issue_gallery(images, [f"{t} (0.03)" for t in titles], lang=lang),
        "label_issues_none": diagnostics.label_issue_gallery([], [], lang=lang),
        "lr_range": diagnostics.lr_range_figure({stage: _range_test(rng) for stage in ("head", "full")}, lang=lang),
    }


def _range_test(rng) -> dict:
    """A range test's record as helpers.training.lrfind keeps it: a valley between 1e-4 and 1e-2."""
    lrs = np.geomspace(1e-6, 1.0, 100)
    smoothed = 2.0 - 1.5 * np.exp(-((np.log10(lrs) + 3) ** 2) / 2) + np.where(lrs > 0.1, 10 * lrs, 0)
    return {"lrs": lrs, "losses": smoothed + rng.normal(0, 0.05, lrs.size), "smoothed": smoothed,
            "suggestion": 1e-3, "steps": 100, "rule": "valley (fastai)"}


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_no_text_of_any_figure_sits_on_another(lang):
    for name, fig in _figures(lang).items():
        try:
            assert_no_overlap(fig)
        except AssertionError as exc:
            raise AssertionError(f"{name} ({lang}): {exc}") from None
        finally:
            matplotlib.pyplot.close(fig)


def test_the_old_gradcam_layout_is_caught():
    """The check finds what the Grad-CAM grid used to do: second-row titles drawn on the first row's images."""
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(2, 4, figsize=(2.6 * 4, 2.8 * 2), squeeze=False)  # the old layout, as it was
    for ax, name in zip(axes.ravel(), NAMES):
        ax.axis("off")
        ax.imshow(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        ax.set_title(f"{name} → cat", fontsize=8)
    fig.suptitle("Grad-CAM: regions behind the predicted class\nlayer _blocks.10 (end of the stride-16 stage, "
                 "14×14 cells) at the 224 px network input", fontsize=11)
    fig.tight_layout()
    with pytest.raises(AssertionError, match="lies on an image"):
        assert_no_overlap(fig)
    plt.close(fig)


def test_every_grid_title_sits_above_its_own_image():
    """Image grids draw each image into one axes at its cell: every title is above its image and on none."""
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (3, 32, 32), dtype=np.uint8) for _ in range(7)]
    titles = [f"{a} → {b} (0.{i}3)" for i, (a, b) in enumerate(zip(NAMES, NAMES[1:]))]
    grids = ((plots.image_grid(images, titles, cols=3, title="A sample"), 1),
             (plots.gradcam_grid(images, rng.random((7, 8, 8)), titles, "layer _blocks.10", cols=3), 2))
    for fig, per_image in grids:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (ax,) = fig.axes
        boxes = [im.get_window_extent(renderer) for im in ax.images]
        assert len(boxes) == per_image * len(images)
        assert ["".join(t.get_text().split()) for t in ax.texts] == ["".join(t.split()) for t in titles]
        for text, own in zip(ax.texts, boxes[::per_image]):
            box = text.get_window_extent(renderer)
            assert not any(box.overlaps(b) for b in boxes), f"{text.get_text()!r} lies on an image"
            assert box.y0 >= own.y1 - 1 and own.x0 - 1 <= (box.x0 + box.x1) / 2 <= own.x1 + 1
        assert_no_overlap(fig)
        matplotlib.pyplot.close(fig)


def _words_of(fig) -> str:
    texts = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
        if ax.get_legend():
            texts += [t.get_text() for t in ax.get_legend().get_texts()] + [ax.get_legend().get_title().get_text()]
    return " ".join(texts)


def _drawn_words(lang: str) -> tuple[dict, dict]:
    """Every figure's words by name, and the few figures a test reads further; the rest are closed."""
    figures = _figures(lang)
    words = {name: _words_of(fig) for name, fig in figures.items()}
    kept = {name: figures.pop(name) for name in ("training_metrics", "gradcam", "class_balance", "reliability")}
    for fig in figures.values():
        matplotlib.pyplot.close(fig)
    return words, kept


def test_russian_figures_are_titled_in_russian_and_english_ones_in_english():
    from helpers.reporting.texts import strings
    (ru_words, ru), (en_words, en) = _drawn_words("ru"), _drawn_words("en")
    for name in ru_words:
        if name == "image_grid":  # its titles are the caller's (class names and scores)
            continue
        assert CYRILLIC & set(ru_words[name].lower()), f"{name}: no Russian in {ru_words[name]!r}"
        assert not CYRILLIC & set(en_words[name].lower()), f"{name}: Russian in the English figure: {en_words[name]!r}"
    metrics = ru["training_metrics"]
    assert metrics._suptitle.get_text() == strings("ru")["figures"]["training_metrics"]["title"] == "Метрики обучения"
    assert [t.get_text() for t in metrics.axes[0].get_legend().get_texts()] == \
        ["потери на тренировке", "потери на валидации"]
    assert en["training_metrics"]._suptitle.get_text() == "Training metrics"
    assert ru["gradcam"]._suptitle.get_text().startswith("Grad-CAM: области")
    assert "слой _blocks.10" in ru["gradcam"]._suptitle.get_text()
    assert ru["class_balance"].axes[0].get_title() == "Изображений по классам и выборкам"
    assert ru["reliability"].axes[0].get_title() == "Диаграмма надежности (ECE 0.050)"
    for fig in [*ru.values(), *en.values()]:
        matplotlib.pyplot.close(fig)
