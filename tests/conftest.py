"""Fixtures: small generated image datasets, never the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_image(path: Path, seed: int, size: tuple[int, int] = (24, 24), mode: str = "RGB", shade: int = 0) -> Path:
    """Write a random image whose colour depends on `shade` (so classes are learnable)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 60, size=(size[1], size[0], 3), dtype=np.uint8)
    arr[..., shade % 3] += 180
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr, "RGB")
    img = img.convert(mode) if mode != "RGB" else img
    img.save(path)
    return path


@pytest.fixture
def make_dataset(tmp_path):
    """Factory: a class-folder dataset with `per_class` images of each class."""
    def factory(classes=("cat", "dog", "fox"), per_class=10, root: Path | None = None, ext=".png",
                size=(24, 24)) -> Path:
        root = root or tmp_path / "ds"
        for k, c in enumerate(classes):
            for i in range(per_class):
                make_image(root / c / f"{c}_{i}{ext}", seed=1000 * k + i, shade=k, size=size)
        return root
    return factory


@pytest.fixture(autouse=True)
def study_home(tmp_path, monkeypatch):
    """Each test gets its own STUDY_HOME, so nothing lands in the user's runs/ or reports/."""
    home = tmp_path / "home"
    monkeypatch.setenv("STUDY_HOME", str(home))
    return home
