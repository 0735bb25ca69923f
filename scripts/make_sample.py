"""Regenerate data/sample/fashion-mnist: a seeded stratified sample of the Fashion-MNIST training set.

Source: Debian's `dataset-fashion-mnist` package (apt-get install dataset-fashion-mnist), which holds
the original IDX files from Zalando Research (MIT licence).
Usage: python scripts/make_sample.py [--per-class 300] [--seed 42] [--source DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
OUT_DIR = Path(__file__).resolve().parents[1] / "data" / "sample" / "fashion-mnist"


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file into a numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> None:
    """Write per_class PNGs of every class, chosen with a seeded generator."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--source", type=Path, default=DEBIAN_DIR)
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args()
    images_file = args.source / "train-images-idx3-ubyte.gz"
    if not images_file.exists():
        raise SystemExit(f"{images_file} not found: install it with "
                         "'apt-get install dataset-fashion-mnist' or pass --source")
    images = read_idx(images_file)
    labels = read_idx(args.source / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp(dir=args.out.parent if args.out.parent.exists() else None))
    for k, name in enumerate(CLASSES):
        chosen = np.sort(rng.choice(np.flatnonzero(labels == k), args.per_class, replace=False))
        (tmp / name).mkdir(parents=True)
        for i in chosen:
            Image.fromarray(images[i], mode="L").save(tmp / name / f"train-{i:05d}.png", optimize=True)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(args.out)
    print(f"wrote {args.per_class * len(CLASSES)} images to {args.out}")


if __name__ == "__main__":
    main()
