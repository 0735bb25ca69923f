"""Small generated datasets in the shapes Kaggle really ships, with what 02 must make of each."""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .conftest import make_image

SIZE = (16, 16)


@dataclass
class Shape:
    """A dataset builder and the facts 02 must find in it."""

    build: Callable[[Path], Path]
    layout: str
    classes: list[str]
    n_images: int
    unlabelled: dict[str, int] = field(default_factory=dict)  # folder (as explained) → images left out
    params: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    given: dict[str, int] = field(default_factory=dict)  # images per given split, with keep_given_split


def _img(path: Path, shade: int) -> Path:
    """A tiny image whose pixels depend on its path inside the dataset only (the same in every test run)."""
    return make_image(path, seed=zlib.crc32("/".join(path.parts[-3:]).encode()), shade=shade, size=SIZE)


def _classes(folder: Path, classes: dict[str, int], prefix: str = "", suffix: str = ".jpg") -> None:
    for k, (c, n) in enumerate(classes.items()):
        for i in range(n):
            _img(folder / c / f"{prefix}{c}_{i}{suffix}", k)


def training_testing(root: Path) -> Path:
    """Brain-tumour style: Training/<class>, Testing/<class> — the folders are splits, not classes."""
    _classes(root / "Training", {"glioma": 5, "meningioma": 5})
    _classes(root / "Testing", {"glioma": 2, "meningioma": 2})
    return root


def seg_repeated(root: Path) -> Path:
    """Intel scenes: seg_train/seg_train/<class>, seg_test/seg_test/<class>, seg_pred/seg_pred/*.jpg."""
    _classes(root / "seg_train" / "seg_train", {"forest": 5, "sea": 5})
    _classes(root / "seg_test" / "seg_test", {"forest": 2, "sea": 2})
    for i in range(3):
        _img(root / "seg_pred" / "seg_pred" / f"{i}.jpg", 2)
    return root


def chest_xray(root: Path) -> Path:
    """Chest X-ray: a top folder, a full copy of the tree inside itself, and __MACOSX debris."""
    top = root / "chest_xray"
    for split, n in (("train", 5), ("val", 2), ("test", 2)):
        _classes(top / split, {"NORMAL": n, "PNEUMONIA": n}, suffix=".jpeg")
    for p in sorted((top).rglob("*.jpeg")):
        copy = top / "chest_xray" / p.relative_to(top)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(p.read_bytes())
    (root / "__MACOSX" / "chest_xray").mkdir(parents=True)
    (root / "__MACOSX" / "chest_xray" / "._x.jpeg").write_bytes(b"\0junk")
    return root


def dogs_vs_cats_nested(root: Path) -> Path:
    """The competition download: one zip holding train.zip, test1.zip and sampleSubmission.csv."""
    work = root / "build"
    for k, c in enumerate(("cat", "dog")):
        for i in range(5):
            _img(work / "train" / f"{c}.{i}.jpg", k)
    for i in range(1, 4):
        _img(work / "test1" / f"{i}.jpg", 2)
    inner = {}
    for name in ("train", "test1"):
        inner[name] = work / f"{name}.zip"
        with zipfile.ZipFile(inner[name], "w") as zf:
            for p in sorted((work / name).iterdir()):
                zf.write(p, f"{name}/{p.name}")
    archive = root / "dogs-vs-cats.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, path in inner.items():
            zf.write(path, f"{name}.zip")
        zf.writestr("sampleSubmission.csv", "id,label\n1,0\n2,0\n3,0\n")
    return archive


def csv_with_sample_submission(root: Path) -> Path:
    """train.csv beside sample_submission.csv (alphabetically first), images in train_images/ and test_images/."""
    rows = ["image_id,label"]
    for k, c in enumerate(("rust", "scab")):
        for i in range(5):
            _img(root / "train_images" / f"{c[0]}{i}.png", k)
            rows.append(f"{c[0]}{i}.png,{c}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    for i in range(3):
        _img(root / "test_images" / f"t{i}.png", 2)
    (root / "sample_submission.csv").write_text("image_id,label\n" + "".join(f"t{i}.png,rust\n" for i in range(3)))
    return root


def metadata_groups(root: Path) -> Path:
    """HAM10000 style: a metadata CSV (label column 'dx', groups in 'lesion_id'), images in two part folders."""
    rows = ["lesion_id,image_id,dx,age,sex"]
    n = 0
    for k, dx in enumerate(("mel", "nv")):
        for lesion in range(5):
            for _ in range(2):  # two images of every lesion
                part = "HAM10000_images_part_1" if n % 2 else "HAM10000_images_part_2"
                _img(root / part / f"ISIC_{n:07d}.jpg", k)
                rows.append(f"HAM_{k}{lesion},ISIC_{n:07d},{dx},{40 + n % 7},{'male' if n % 3 else 'female'}")
                n += 1
    (root / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def int_labels_json(root: Path) -> Path:
    """Cassava style: integer labels in train.csv, names in label_num_to_disease_map.json."""
    rows = ["image_id,label"]
    for k in range(2):
        for i in range(5):
            _img(root / "train_images" / f"{k}{i}.jpg", k)
            rows.append(f"{k}{i}.jpg,{k}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    (root / "label_num_to_disease_map.json").write_text(json.dumps({"0": "healthy", "1": "mosaic"}))
    return root


def int_labels_csv_map(root: Path) -> Path:
    """Integer class folders with a CSV map of class ids to names."""
    _classes(root, {"0": 4, "1": 4})
    (root / "classes.csv").write_text("class_id,name\n0,apple\n1,pear\n")
    return root


def odd_names(root: Path) -> Path:
    """Upper-case suffixes, spaces and commas in names, base names that collide across class folders."""
    for k, c in enumerate(("big cat", "small, dog")):
        for i in range(4):
            _img(root / c / f"IMG {i}.JPG", k)
        _img(root / c / "photo, 1.PNG", k)
    return root


SHAPES = {
    "training_testing": Shape(training_testing, "presplit", ["glioma", "meningioma"], 14,
                              given={"train": 10, "test": 4}),
    "seg_repeated": Shape(seg_repeated, "presplit", ["forest", "sea"], 14, unlabelled={"seg_pred": 3}),
    "chest_xray": Shape(chest_xray, "presplit", ["NORMAL", "PNEUMONIA"], 18, ignored=["chest_xray/chest_xray"],
                        given={"train": 10, "val": 4, "test": 4}),
    "dogs_vs_cats_nested": Shape(dogs_vs_cats_nested, "filenames", ["cat", "dog"], 10, unlabelled={"test1": 3}),
    "csv_with_sample_submission": Shape(csv_with_sample_submission, "csv", ["rust", "scab"], 10,
                                        unlabelled={"test_images": 3}, ignored=["sample_submission.csv"]),
    "metadata_groups": Shape(metadata_groups, "csv", ["mel", "nv"], 20, params={"group_column": "lesion_id"}),
    "int_labels_json": Shape(int_labels_json, "csv", ["healthy", "mosaic"], 10),
    "int_labels_csv_map": Shape(int_labels_csv_map, "class_folders", ["apple", "pear"], 8),
    "odd_names": Shape(odd_names, "class_folders", ["big cat", "small, dog"], 10),
}
