"""helpers.stats: each figure equals the textbook or library value on a case small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import f1_score, roc_auc_score

from helpers.evaluation import stats


def test_mcnemar_counts_only_discordant_pairs():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([1, 0, 0, 0, 0, 1, 0, 1, 1, 0], bool)
    result = stats.mcnemar_exact(a, b)
    assert (result["only_a_correct"], result["only_b_correct"], result["both_correct"], result["both_wrong"]) == \
        (4, 1, 3, 2)
    assert result["p_value"] == pytest.approx(binomtest(4, 5, 0.5).pvalue)  # 0.375
    assert stats.mcnemar_exact(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError, match="same images"):
        stats.mcnemar_exact(a, b[:5])


def test_paired_difference_and_its_interval():
    a = np.r_[np.ones(90), np.zeros(10)].astype(bool)
    b = np.r_[np.ones(80), np.zeros(20)].astype(bool)
    diff, lo, hi = stats.paired_accuracy_difference(a, b)
    assert diff == pytest.approx(0.10) and lo < diff < hi and lo > 0  # 10 discordant pairs, all one way
    diff, lo, hi = stats.paired_accuracy_difference(a, a)
    assert diff == 0 and lo < 0 < hi


def test_wilson_interval():
    lo, hi = stats.wilson_interval(45, 50)
    assert (lo, hi) == pytest.approx((0.7864, 0.9565), abs=1e-4)


def test_vectorised_f1_and_auc_equal_sklearn_and_bootstrap_brackets_them():
    rng = np.random.default_rng(1)
    for k in (2, 3):
        y = rng.integers(0, k, 120)
        p = rng.dirichlet(np.ones(k), 120)
        p[np.arange(120), y] += 0.4
        p /= p.sum(1, keepdims=True)
        f1 = f1_score(y, p.argmax(1), average="macro")
        auc = roc_auc_score(y, p[:, 1]) if k == 2 else roc_auc_score(y, p, multi_class="ovr")
        assert stats.macro_f1(y, p)[0] == pytest.approx(f1) and stats.roc_auc(y, p)[0] == pytest.approx(auc)
        for fn, value in ((stats.macro_f1, f1), (stats.roc_auc, auc)):
            lo, hi = stats.stratified_bootstrap(y, p, fn, n_boot=300)
            assert lo < value < hi and hi - lo < 0.3


def test_temperature_fixes_overconfidence_and_is_applied_only_when_validation_ece_drops():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    logits = rng.normal(0, 1, (400, 3))
    logits[np.arange(400), y] += 1.0
    overconfident = stats.apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 0.25)
    t = stats.fit_temperature(y, overconfident)
    assert t > 2  # undoes the sharpening
    result = stats.temperature_scaling(y[:200], overconfident[:200], y[200:], overconfident[200:])
    assert result["applied"] and result["val_ece_after"] < result["val_ece_before"]
    assert result["test_ece_after"] < result["test_ece_before"]
    np.testing.assert_allclose(result["probs"], stats.apply_temperature(overconfident[200:], result["temperature"]))
    np.testing.assert_array_equal(result["probs"].argmax(1), overconfident[200:].argmax(1))  # accuracy unchanged


def test_intervals_resample_whole_groups_where_the_test_split_has_them():
    from helpers.evaluation import evaluate
    rng = np.random.default_rng(3)
    n = 60
    y = np.arange(n) % 2
    probs = np.clip(rng.normal(0.5, 0.25, n), 0.01, 0.99)
    probs = np.stack([1 - probs, probs], 1)
    copies = 5  # every image five times, as exact duplicates: 300 images that carry the information of 60
    big_y, big_p = np.repeat(y, copies), np.repeat(probs, copies, axis=0)
    groups = np.repeat(np.arange(n), copies)
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(n * copies)], "label": np.array(["a", "b"])[big_y],
                          **{f"p_{c}": big_p[:, k] for k, c in enumerate("ab")}})
    singly = evaluate.compute_metrics(frame, ["a", "b"])
    grouped = evaluate.compute_metrics(frame, ["a", "b"], groups=groups)
    unique = stats.stratified_bootstrap(y, probs, stats.accuracy)  # the 60 images the copies repeat
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert grouped["intervals"] == {"unit": "group", "n_images": 300, "n_groups": 60,
                                    "why": grouped["intervals"]["why"]}
    assert singly["intervals"] == {"unit": "image", "n_images": 300}
    assert width(grouped["test_accuracy_ci95"]) == pytest.approx(width(unique), rel=0.25)
    assert width(grouped["test_accuracy_ci95"]) > 1.8 * width(singly["test_accuracy_ci95"])
    assert width(grouped["macro_f1_ci95"]) > 1.8 * width(singly["macro_f1_ci95"])
    assert width(grouped["roc_auc_ci95"]) > 1.8 * width(singly["roc_auc_ci95"])
    # The test split's groups come from the data report: duplicates, and group_column groups.
    report = {"multi_image_groups": [["0.png", "1.png", "x.png"], ["5.png", "6.png"]]}
    ids = evaluate.test_groups(["0.png", "1.png", "2.png", "5.png"], report)
    assert ids.tolist() == [0, 0, 2, 3] and evaluate.test_groups(["2.png", "5.png"], report) is None
