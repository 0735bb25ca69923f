"""helpers.stats: each figure equals the textbook or library value on a case small enough to check by hand."""

from __future__ import annotations

import numpy as np
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
