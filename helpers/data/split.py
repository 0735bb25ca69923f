"""Where the split is made: grouped, stratified train/val/test, decided by each group's content hash and the seed.

A group (duplicates, or a patient/lesion given by a group column) goes to one split as a whole. Its
place comes from a number in [0, 1) drawn from sha256(seed, salt, smallest sha256 of the group), so
it does not depend on the other images: adding images never moves an earlier group to another split.
Within a class, a group whose number is below test_ratio goes to test, below test_ratio + val_ratio to
val, else to train. Only a class too small for that to give every split a group (few groups, unlucky
draws) is ranked instead: its groups sorted by the same numbers, the lowest to test, then val.
Cost: one hash per group and one sort per class, O(n log n).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Sequence

from helpers.data.errors import DataError

SPLITS = ("train", "val", "test")


def unit_score(key: str, seed: int, salt: str = "split") -> float:
    """A number in [0, 1) fixed by the group's content key, the seed and a salt; uniform over keys."""
    digest = hashlib.sha256(f"{seed}:{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _group_table(labels: Sequence[str], groups: Sequence[int], keys: Sequence[str]) -> dict[int, tuple[str, str]]:
    """Per group: its label (the most common of its members, ties by name) and its content key (smallest sha256)."""
    votes: dict[int, Counter] = defaultdict(Counter)
    key: dict[int, str] = {}
    for label, g, k in zip(labels, groups, keys):
        votes[g][label] += 1
        key[g] = min(key.get(g, k), k)
    return {g: (min(v.items(), key=lambda t: (-t[1], t[0]))[0], key[g]) for g, v in votes.items()}


def _assign_class(scored: list[tuple[float, int]], shares: list[tuple[str, float]], rest: str) -> dict[int, str]:
    """Assign one class's groups: by threshold on their numbers, or ranked when a split would be left empty."""
    out: dict[int, str] = {}
    for u, g in scored:
        edge = 0.0
        out[g] = rest
        for name, share in shares:
            edge += share
            if u < edge:
                out[g] = name
                break
    names = [name for name, _ in shares] + [rest]
    if len(scored) >= len(names) and set(out.values()) != set(names):
        ranked = sorted(scored)
        counts = [max(1, round(len(ranked) * share)) for _, share in shares]
        while sum(counts) > len(ranked) - 1:  # the rest split keeps at least one group
            counts[counts.index(max(counts))] -= 1
        i = 0
        for (name, _), n in zip(shares, counts):
            for _, g in ranked[i:i + n]:
                out[g] = name
            i += n
        for _, g in ranked[i:]:
            out[g] = rest
    return out


def split_groups(labels: Sequence[str], groups: Sequence[int], keys: Sequence[str],
                 ratios: tuple[float, float, float], seed: int) -> list[str]:
    """Stratified, seeded, grouped split: the split name of every item; no group spans two splits."""
    table = _group_table(labels, groups, keys)
    by_class: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for g, (label, key) in table.items():
        by_class[label].append((unit_score(key, seed), g))
    small = sorted(c for c, gs in by_class.items() if len(gs) < 3)
    if small:
        raise DataError(f"classes {small} have fewer than 3 distinct images, too few for a "
                        "train/val/test split; add images or remove those class folders.")
    assignment: dict[int, str] = {}
    for label in sorted(by_class):
        assignment.update(_assign_class(by_class[label], [("test", ratios[2]), ("val", ratios[1])], "train"))
    return [assignment[g] for g in groups]


def carve(splits: Sequence[str], labels: Sequence[str], groups: Sequence[int], keys: Sequence[str],
          into: str, share: float, seed: int) -> list[str]:
    """Move `share` of train's groups of every class (by their numbers) to `into`, for a given split that lacks it."""
    train = [i for i, s in enumerate(splits) if s == "train"]
    table = _group_table([labels[i] for i in train], [groups[i] for i in train], [keys[i] for i in train])
    by_class: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for g, (label, key) in table.items():
        by_class[label].append((unit_score(key, seed, salt=into), g))
    moved: dict[int, str] = {}
    for label in sorted(by_class):
        moved.update(_assign_class(by_class[label], [(into, share)], "train"))
    out = list(splits)
    for i in train:
        out[i] = moved[groups[i]]
    return out


HELD_OUT = {"train": 0, "val": 1, "test": 2}  # the more held out, the higher


def join_spanning_groups(splits: list[str], groups: list, paths: list[str]) -> tuple[list[str], list[dict]]:
    """Move every group whose images lie in several splits whole into the most held-out one it touches.

    Test, then val: a given test split only grows, so every image the dataset itself held out stays held
    out. Returns the new splits and, per moved group, the paths that moved and where to.
    """
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out, moved = list(splits), []
    for g, idx in members.items():
        touched = {splits[i] for i in idx}
        if len(touched) < 2:
            continue
        to = max(touched, key=HELD_OUT.__getitem__)
        moved.append({"paths": [paths[i] for i in idx], "from": sorted(touched, key=HELD_OUT.__getitem__),
                      "to": to, "moved": [paths[i] for i in idx if splits[i] != to]})
        for i in idx:
            out[i] = to
    return out, moved
