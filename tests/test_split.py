"""helpers.split: grouped, stratified, and stable — adding images never moves an earlier image to another split."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from helpers.data import split
from helpers.data.errors import DataError

RATIOS = (0.7, 0.15, 0.15)


def _keys(n: int, start: int = 0) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(start, start + n)]


def test_adding_images_never_moves_earlier_ones():
    keys = _keys(900)
    labels = [f"c{i % 3}" for i in range(900)]
    before = split.split_groups(labels, list(range(900)), keys, RATIOS, seed=42)
    more_keys = keys + _keys(2000, start=900)
    more_labels = labels + [f"c{i % 4}" for i in range(2000)]  # more of every class, and a new class
    after = split.split_groups(more_labels, list(range(2900)), more_keys, RATIOS, seed=42)
    assert after[:900] == before
    share = Counter(after)
    assert share["test"] / 2900 == pytest.approx(0.15, abs=0.02) and share["val"] / 2900 == pytest.approx(0.15, abs=0.02)
    assert split.split_groups(labels, list(range(900)), keys, RATIOS, seed=7) != before


def test_a_group_stays_in_one_split_and_small_classes_get_every_split():
    keys = _keys(60)
    groups = [i // 4 for i in range(60)]  # 15 groups of 4 (a patient's images)
    labels = ["big"] * 48 + ["small"] * 12  # "small" has 3 groups only
    out = split.split_groups(labels, groups, keys, RATIOS, seed=1)
    by_group = {}
    for g, s in zip(groups, out):
        by_group.setdefault(g, set()).add(s)
    assert all(len(s) == 1 for s in by_group.values())
    assert {s for s, label in zip(out, labels) if label == "small"} == {"train", "val", "test"}


def test_too_few_groups_is_refused_by_class():
    with pytest.raises(DataError, match=r"classes \['b'\] have fewer than 3 distinct images"):
        split.split_groups(["a"] * 5 + ["b"] * 2, list(range(7)), _keys(7), RATIOS, seed=0)


def test_carve_takes_from_train_only():
    keys = _keys(400)
    labels = [f"c{i % 2}" for i in range(400)]
    given = ["test" if i % 5 == 0 else "train" for i in range(400)]
    out = split.carve(given, labels, list(range(400)), keys, "val", 0.15, seed=3)
    assert all(o == "test" for g, o in zip(given, out) if g == "test")
    moved = sum(o == "val" for o in out)
    assert 25 <= moved <= 70 and {label for label, o in zip(labels, out) if o == "val"} == {"c0", "c1"}
