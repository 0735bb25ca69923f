"""Which test images are not independent: duplicates and `group_column` groups, read from 02's data report.

04's intervals resample such groups whole (helpers.evaluation.stats.stratified_bootstrap with `groups`).
"""

from __future__ import annotations

import numpy as np


def test_groups(paths: list[str], report: dict) -> np.ndarray | None:
    """One group id per test image from the data report (duplicates; `group_column` values), or None when every
    test image is its own group."""
    index = {p: i for i, p in enumerate(paths)}
    ids = np.arange(len(paths))
    listed = report.get("multi_image_groups") or [g["paths"] for g in report.get("duplicate_groups", [])]
    joined = False
    for members in listed:
        inside = [index[p] for p in members if p in index]
        if len(inside) > 1:
            ids[inside] = inside[0]
            joined = True
    return ids if joined else None


def interval_unit(groups: np.ndarray | None, n: int) -> dict:
    """What the intervals resample, for metrics.json and the report."""
    if groups is None:
        return {"unit": "image", "n_images": n}
    return {"unit": "group", "n_images": n, "n_groups": int(len(np.unique(groups))),
            "why": "the test split holds groups (duplicates, or images sharing a group_column value) whose images "
                   "are not independent, so whole groups are resampled"}
