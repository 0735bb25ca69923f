"""How lopsided the classes are: the largest-to-smallest ratio and, past a threshold, what 03 can do about it."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

# Past a largest/smallest ratio of 3, 02 suggests class_weights=balanced and sampler=balanced. Below it the
# inverse-frequency weights differ by less than 3x, so weighting changes little, and plain accuracy still gives
# the smallest class at least a quarter of the say of the largest; HAM10000 (58x) is far past it, the committed
# sample (1x) far below. The sampler comes first: at a ratio of 10, benchmarks/bench_imbalance.py found it ahead of
# plain training on every seed's validation balanced accuracy, and the class weights not (README).
IMBALANCE_THRESHOLD = 3.0


def imbalance(labels: Iterable[str], threshold: float = IMBALANCE_THRESHOLD) -> dict:
    """The largest and smallest class, their ratio, and the suggestion when the ratio reaches `threshold`."""
    counts = Counter(labels)
    if not counts:
        return {"ratio": None, "threshold": threshold, "imbalanced": False, "suggest": {}, "sentence": ""}
    largest = max(sorted(counts), key=lambda c: counts[c])
    smallest = min(sorted(counts), key=lambda c: counts[c])
    ratio = counts[largest] / counts[smallest]
    imbalanced = ratio >= threshold
    sentence = (f"largest class {largest!r} has {counts[largest]} images, smallest {smallest!r} {counts[smallest]}: "
                f"ratio {ratio:.1f}")
    if imbalanced:
        sentence += (f", at or past {threshold:g}: consider 03 with sampler=balanced (or class_weights=balanced), "
                     "and select_metric=balanced_accuracy (plain accuracy rewards predicting the large classes)")
    else:
        sentence += f", below {threshold:g}: plain training and accuracy are fine"
    return {"largest": largest, "largest_n": counts[largest], "smallest": smallest, "smallest_n": counts[smallest],
            "ratio": round(ratio, 3), "threshold": threshold, "imbalanced": imbalanced,
            "suggest": {"class_weights": "balanced", "sampler": "balanced", "select_metric": "balanced_accuracy"}
            if imbalanced else {}, "sentence": sentence}
