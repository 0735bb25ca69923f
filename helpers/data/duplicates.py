"""Duplicate groups: equal bytes (sha256), equal or near-equal perceptual hashes, and user-given groups.

Near duplicates (a resized or re-encoded copy) are pairs of 64-bit perceptual hashes within
NEAR_DISTANCE bits. They are found by multi-index hashing: split the hash into NEAR_DISTANCE + 1
chunks; two hashes that close must agree exactly on at least one chunk (pigeonhole), so only hashes
sharing a chunk value are compared — about n·(chunks) bucket look-ups instead of n² comparisons.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

NEAR_DISTANCE = 2  # bits of 64; on the Fashion-MNIST sample 4 bits already joins distinct garments
BLOCK = 2048  # rows per pairwise block inside one bucket, to bound memory on degenerate data


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        """The representative of i's set."""
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        """Join the sets of a and b (the smaller index stays the representative, for stable ids)."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _chunk_masks(bits: int, chunks: int) -> list[tuple[int, int]]:
    """(shift, mask) of `chunks` nearly equal bit ranges covering a `bits`-bit hash."""
    out, start = [], 0
    for k in range(chunks):
        width = bits // chunks + (1 if k < bits % chunks else 0)
        out.append((start, (1 << width) - 1))
        start += width
    return out


def near_pairs(hashes: Sequence[str], max_distance: int = NEAR_DISTANCE) -> list[tuple[int, int]]:
    """Index pairs (i < j) of distinct hex hashes within `max_distance` bits of each other."""
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    pairs: set[tuple[int, int]] = set()
    for shift, mask in _chunk_masks(64, max_distance + 1):
        keys = (values >> np.uint64(shift)) & np.uint64(mask)
        order = np.argsort(keys, kind="stable")
        bounds = np.flatnonzero(np.diff(keys[order])) + 1
        for bucket in np.split(order, bounds):
            if len(bucket) < 2:
                continue
            for lo in range(0, len(bucket), BLOCK):
                rows = bucket[lo:lo + BLOCK]
                dist = np.bitwise_count(values[rows][:, None] ^ values[bucket][None, :])
                for r, c in zip(*np.nonzero(dist <= max_distance)):
                    i, j = int(rows[r]), int(bucket[c])
                    if i < j:
                        pairs.add((i, j))
    return sorted(pairs)


def group_ids(sha256: Sequence[str], phash: Sequence[str], groups: Sequence[str] | None = None,
              max_distance: int = NEAR_DISTANCE) -> list[int]:
    """A group id per item: items joined by equal bytes, near-equal perceptual hashes or an equal `groups` value."""
    uf = UnionFind(len(sha256))
    keyed = [sha256, phash] + ([groups] if groups is not None else [])
    for column in keyed:
        first: dict[str, int] = {}
        for i, key in enumerate(column):
            if not key:
                continue  # an empty group value means "no group", not one big group
            if key in first:
                uf.union(i, first[key])
            else:
                first[key] = i
    # Near pairs among distinct hashes only: equal hashes are joined above, so each value is hashed once.
    by_hash: dict[str, int] = {}
    for i, h in enumerate(phash):
        if h:
            by_hash.setdefault(h, i)
    distinct = list(by_hash)
    for a, b in near_pairs(distinct, max_distance):
        uf.union(by_hash[distinct[a]], by_hash[distinct[b]])
    return [uf.find(i) for i in range(len(sha256))]


def group_kinds(sha256: Sequence[str], phash: Sequence[str], ids: Sequence[int]) -> dict[int, str]:
    """For every group of two or more: 'exact' (equal bytes), 'near' (equal-looking) or 'group' (the group column)."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(ids):
        members[g].append(i)
    kinds = {}
    for g, rows in members.items():
        if len(rows) > 1:
            kinds[g] = ("exact" if len({sha256[i] for i in rows}) == 1
                        else "near" if _all_near(phash, rows) else "group")
    return kinds


def _all_near(phash: Sequence[str], rows: list[int]) -> bool:
    """True when the rows' perceptual hashes alone connect the group (no group-column link needed)."""
    hashes = sorted({phash[i] for i in rows})
    uf = UnionFind(len(hashes))
    for a, b in near_pairs(hashes):
        uf.union(a, b)
    return len({uf.find(i) for i in range(len(hashes))}) == 1
