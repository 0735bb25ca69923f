"""helpers.duplicates: exact and near duplicates (resized, re-encoded copies) in one group, others apart."""

from __future__ import annotations

import io

import imagehash
import numpy as np
from PIL import Image

from helpers.data import duplicates, images


def _smooth(seed: int, side: int = 128) -> Image.Image:
    """A photo-like image: low-frequency structure, so its perceptual hash is meaningful."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8))
    return small.resize((side, side), Image.Resampling.BICUBIC)


def _jpeg(img: Image.Image, side: int, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.resize((side, side), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_resized_and_reencoded_copies_are_near_duplicates(tmp_path):
    originals = [_smooth(s) for s in range(30)]
    paths = []
    for i, img in enumerate(originals):
        img.save(tmp_path / f"o{i}.png")
        paths.append(tmp_path / f"o{i}.png")
    for i in range(5):  # copies of the first five: smaller, larger, and JPEG at low quality
        for k, (side, q) in enumerate([(96, 75), (160, 85), (128, 50)]):
            _jpeg(originals[i], side, q).save(tmp_path / f"c{i}_{k}.jpg", quality=95)
            paths.append(tmp_path / f"c{i}_{k}.jpg")
    checked = images.check_images(paths)
    names = [p.stem for p in paths]
    phash = [c.phash for c in checked]
    ids = duplicates.group_ids([c.sha256 for c in checked], phash)
    group = dict(zip(names, ids))
    for i in range(5):
        assert {group[f"c{i}_{k}"] for k in range(3)} == {group[f"o{i}"]}, i
    assert len({group[f"o{i}"] for i in range(30)}) == 30  # distinct images stay apart
    assert any(phash[names.index(f"c{i}_{k}")] != phash[i] for i in range(5) for k in range(3))  # not only equal hashes
    kinds = duplicates.group_kinds([c.sha256 for c in checked], phash, ids)
    assert set(kinds.values()) == {"near"} and len(kinds) == 5


def test_near_pairs_match_brute_force_on_random_hashes():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2 ** 63, 400, dtype=np.int64).astype(np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (400, 2)).astype(np.uint64)
    near = base ^ flips[:, 0] ^ np.where(rng.random(400) < 0.5, flips[:, 1], np.uint64(0))
    values = np.concatenate([base, near])
    hashes = [f"{int(v):016x}" for v in values]
    brute = sorted((i, j) for i in range(len(values)) for j in range(i + 1, len(values))
                   if bin(int(values[i]) ^ int(values[j])).count("1") <= 2)
    assert duplicates.near_pairs(hashes, 2) == brute
    assert len(brute) >= 400


def test_equal_bytes_and_group_values_join_groups():
    ids = duplicates.group_ids(["a", "a", "b", "c", "d"], ["0" * 16, "0" * 16, "f" * 16, "ff00ff00ff00ff00", "1234" * 4],
                               groups=["", "", "p1", "p1", ""])
    assert ids[0] == ids[1] and ids[2] == ids[3] and len(set(ids)) == 3
    assert str(imagehash.hex_to_hash("f" * 16) - imagehash.hex_to_hash("0" * 16)) == "64"
