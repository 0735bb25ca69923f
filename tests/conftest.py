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


@pytest.fixture
def small_disk(tmp_path):
    """Factory: a real small filesystem (tmpfs of `size`, e.g. '2m') mounted on a fresh folder, unmounted after.

    Skipped, with the reason, where this process may not mount one (not root, or a container without the
    capability): a full disk is tested by making it happen, not by pretending.
    """
    import shutil
    import subprocess
    mounted = []

    def factory(size: str = "2m", name: str = "disk") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command here, so no small filesystem can be made for a full-disk test")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a {size} tmpfs for a full-disk test ({done.stderr.strip() or 'not permitted'})")
        mounted.append(folder)
        return folder

    yield factory
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Fill the filesystem holding `folder` with one file until `leave` bytes (rounded to pages) stay free."""
    import shutil
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free
    with filler.open("ab") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
            f.flush()
        except OSError:
            pass
    return filler
