"""Honest uncertainty for test figures: Wilson intervals, paired McNemar comparisons, bootstrap intervals, calibration.

Everything here is a function of labels and probabilities, so 04 and the report compute each figure the same way.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from scipy.stats import binomtest, norm, rankdata


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy's binomtest)."""
    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test on the same images: only the discordant pairs count (binomial test at 1/2)."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same images: {a.shape[0]} vs {b.shape[0]} predictions.")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"n": int(a.size), "only_a_correct": only_a, "only_b_correct": only_b, "both_correct": int((a & b).sum()),
            "both_wrong": int((~a & ~b).sum()), "p_value": p}


def paired_accuracy_difference(correct_a: np.ndarray, correct_b: np.ndarray,
                               confidence: float = 0.95) -> tuple[float, float, float]:
    """Accuracy of a minus accuracy of b on the same images, with the Agresti–Min adjusted Wald interval.

    Agresti & Min (2005): add 1/2 to each cell of the paired 2x2 table; the interval then keeps its coverage
    even when the models disagree on only a few images.
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    n = a.size
    diff = float(a.mean() - b.mean()) if n else 0.0
    p_ab = (int((a & ~b).sum()) + 0.5) / (n + 2)
    p_ba = (int((~a & b).sum()) + 0.5) / (n + 2)
    d = p_ab - p_ba
    se = np.sqrt(max(0.0, p_ab + p_ba - d * d) / (n + 2))
    z = norm.ppf(0.5 + confidence / 2)
    return diff, float(max(-1.0, d - z * se)), float(min(1.0, d + z * se))


def stratified_bootstrap(y: np.ndarray, probs: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
                         n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
                         groups: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic, resampling images within each class.

    Resampling within classes keeps every class present in every resample, so ROC AUC is always defined and
    the test split's class balance is kept. `statistic(y, probs)` takes a batch of resamples — y (B, n),
    probs (B, n, k) — and returns B values (vectorised: a thousand sklearn calls would take most of a minute).
    With `groups` (one id per image: duplicates, a patient) whole groups are resampled, within the class of
    their first image: images of one group are not independent, and resampling them singly narrows the interval.
    """
    y, probs = np.asarray(y), np.asarray(probs, dtype=float)
    rng = np.random.default_rng(seed)
    if groups is not None:
        return _group_bootstrap(y, probs, statistic, np.asarray(groups), n_boot, confidence, rng)
    groups = [np.flatnonzero(y == k) for k in np.unique(y)]
    values = []
    for start in range(0, n_boot, 100):  # chunks keep memory at 100 copies of the probabilities
        b = min(100, n_boot - start)
        idx = np.concatenate([g[rng.integers(0, g.size, size=(b, g.size))] for g in groups], axis=1)
        values.append(statistic(y[idx], probs[idx]))
    lo, hi = np.quantile(np.concatenate(values), [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def _group_bootstrap(y: np.ndarray, probs: np.ndarray, statistic: Callable, groups: np.ndarray, n_boot: int,
                     confidence: float, rng: np.random.Generator) -> tuple[float, float]:
    """The bootstrap over whole groups (resamples differ in size, so one statistic call each)."""
    ids, first = np.unique(groups, return_index=True)
    members = [np.flatnonzero(groups == g) for g in ids]
    strata = [np.flatnonzero(y[first] == k) for k in np.unique(y[first])]
    values = []
    for _ in range(n_boot):
        picked = np.concatenate([s[rng.integers(0, s.size, size=s.size)] for s in strata])
        idx = np.concatenate([members[i] for i in picked])
        values.append(float(np.asarray(statistic(y[idx][None], probs[idx][None])).ravel()[0]))
    lo, hi = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def accuracy(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Accuracy of the arg-max predictions, per resample row."""
    return (np.atleast_2d(np.asarray(probs).argmax(-1)) == np.atleast_2d(y)).mean(-1)


def macro_f1(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Macro F1 of the arg-max predictions over every class (sklearn's, zero_division=0), per resample row."""
    y, pred = np.atleast_2d(y), np.atleast_2d(np.asarray(probs).argmax(-1))
    scores = []
    for c in range(np.asarray(probs).shape[-1]):
        tp = ((pred == c) & (y == c)).sum(1)
        denom = 2 * tp + ((pred == c) & (y != c)).sum(1) + ((pred != c) & (y == c)).sum(1)
        scores.append(np.divide(2 * tp, denom, out=np.zeros(len(y)), where=denom > 0))
    return np.mean(scores, axis=0)


def balanced_accuracy(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present (sklearn's balanced_accuracy_score), per resample row."""
    y, pred = np.atleast_2d(y), np.atleast_2d(np.asarray(probs).argmax(-1))
    recalls = []
    for c in np.unique(y):
        n = (y == c).sum(1)
        recalls.append(np.divide(((pred == c) & (y == c)).sum(1), n, out=np.full(len(y), np.nan), where=n > 0))
    return np.nanmean(recalls, axis=0)


def _auc_rows(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row as the Mann–Whitney statistic over average ranks (ties count one half)."""
    ranks = rankdata(scores, axis=-1)
    n1 = positive.sum(-1)
    n0 = positive.shape[-1] - n1
    return ((ranks * positive).sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def roc_auc(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Binary: AUC of the second class; multiclass: macro one-vs-rest AUC over the classes present; per row."""
    y, probs = np.atleast_2d(y), np.asarray(probs, dtype=float)
    probs = probs[None] if probs.ndim == 2 else probs
    if probs.shape[-1] == 2:
        return _auc_rows(y == 1, probs[..., 1])
    present = np.unique(y)
    # every class's one-vs-rest rows ranked in one call (B, classes, n): a call per class cost 2.5 of 04's 4 s
    positive = y[:, None, :] == present[None, :, None]
    return _auc_rows(positive, np.moveaxis(probs[..., present], -1, -2)).mean(-1)


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> tuple[float, pd.DataFrame]:
    """ECE over equal-width confidence bins, and the per-bin table of a reliability diagram."""
    probs = np.asarray(probs, dtype=float)
    conf = probs.max(1)
    correct = (probs.argmax(1) == np.asarray(y)).astype(float)
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


def _views(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities as (views, n, classes): one view for plain (n, classes) probabilities."""
    probs = np.asarray(probs, dtype=float)
    return np.log(np.clip(probs if probs.ndim == 3 else probs[None], 1e-12, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities of logits divided by `temperature`: per view when `probs` is (views, n, classes), then averaged.

    Log-probabilities are logits up to a per-row shift, so this is exactly what dividing the network's last
    layer by the temperature gives, TTA views included.
    """
    return softmax(_views(probs) / temperature, axis=2).mean(0)


def fit_temperature(y: np.ndarray, probs: np.ndarray) -> float:
    """The one temperature that minimises the negative log-likelihood on these (validation) labels.

    `probs` may hold every TTA view, (views, n, classes): the temperature is then fitted on the averaged
    probabilities of the divided views, the transform it is applied as.
    """
    y = np.asarray(y)

    def nll(log_t: float) -> float:
        p = apply_temperature(probs, float(np.exp(log_t)))[np.arange(len(y)), y]
        return float(-np.log(np.clip(p, 1e-12, 1.0)).mean())
    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


def temperature_scaling(val_y: np.ndarray, val_probs: np.ndarray, test_y: np.ndarray,
                        test_probs: np.ndarray) -> dict:
    """Fit T on validation; apply it to test only if it lowers validation ECE. ECE before/after on both splits.

    Probabilities may be (n, classes) or every TTA view, (views, n, classes); views are averaged for the figures.
    """
    t = fit_temperature(val_y, val_probs)
    val_plain, test_plain = apply_temperature(val_probs, 1.0), apply_temperature(test_probs, 1.0)
    val_before, _ = expected_calibration_error(val_y, val_plain)
    val_after, _ = expected_calibration_error(val_y, apply_temperature(val_probs, t))
    applied = val_after < val_before
    test_before, _ = expected_calibration_error(test_y, test_plain)
    scaled = apply_temperature(test_probs, t)
    test_after, _ = expected_calibration_error(test_y, scaled)
    return {"temperature": t, "applied": bool(applied), "val_ece_before": val_before, "val_ece_after": val_after,
            "test_ece_before": test_before, "test_ece_after": test_after,
            "probs": scaled if applied else test_plain}
