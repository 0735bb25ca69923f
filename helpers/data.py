"""Find the images of a dataset, check every file, group duplicates, and split 70/15/15 by class."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import tarfile
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

import imagehash
import pandas as pd
from PIL import Image, UnidentifiedImageError

from . import paths
from .progress import bar as progress_bar

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
SPLIT_COLUMNS = ["path", "label", "split", "sha256"]


class DataError(ValueError):
    """The dataset cannot be used as given; the message names the culprit and what to do."""


@dataclass
class Checked:
    """Outcome of decoding one file."""

    path: str
    sha256: str = ""
    phash: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    error: str = ""


def is_hidden(rel: PurePosixPath) -> bool:
    """True for dot files and folders, __MACOSX and similar debris anywhere in the path."""
    return any(part.startswith((".", "__")) for part in rel.parts)


def resolve_dataset(dataset: str) -> Path:
    """Turn the `dataset` parameter into a local folder (extracting or downloading as needed)."""
    if dataset == "sample":
        return paths.SAMPLE_DIR
    if dataset.startswith(("kaggle:", "kaggle-competition:")):
        from .kaggle_source import download
        return download(dataset)
    path = _local_path(dataset)
    if path.is_file():
        if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise DataError(f"dataset={dataset!r} is a file but not an archive (.zip, .tar.gz, .tar).")
        return extract_archive(path, paths.raw_dir() / _archive_stem(path))
    return path


def _local_path(dataset: str) -> Path:
    """The file or folder a local `dataset` names (relative to the working directory or the project)."""
    path = Path(dataset).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() / path) if (Path.cwd() / path).exists() else paths.PROJECT_ROOT / path
    if not path.exists():
        raise DataError(f"dataset={dataset!r}: no such file or folder; give 'sample', a folder of "
                        "class subfolders, a .zip/.tar.gz archive, or kaggle:<owner>/<dataset>.")
    return path


def check_dataset_arg(dataset: str) -> None:
    """Fail fast, before any file is written, on a dataset that cannot exist."""
    if dataset.startswith(("kaggle:", "kaggle-competition:")):
        from .kaggle_source import preflight
        preflight(dataset)
    elif dataset != "sample":
        _local_path(dataset)


def _archive_stem(path: Path) -> str:
    """Folder name for an archive's contents: its stem, so a second run finds it again."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _safe_member(target: Path, name: str) -> Path:
    """Where an archive member lands, or an error if it would land outside `target`."""
    dest = (target / name).resolve()
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or not dest.is_relative_to(target.resolve()):
        raise DataError(f"archive member {name!r} would be written outside {target}; "
                        "the archive is unsafe and nothing was extracted.")
    return dest


def extract_archive(archive: Path, target: Path) -> Path:
    """Extract a .zip or .tar(.gz) into `target` once, refusing members that escape it."""
    if target.exists() and any(target.iterdir()):
        return target
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _safe_member(tmp, name)
            zf.extractall(tmp)
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _safe_member(tmp, member.name)
                if member.issym() or member.islnk():
                    raise DataError(f"archive member {member.name!r} is a link; "
                                    "the archive is unsafe and nothing was extracted.")
            tf.extractall(tmp, filter="data")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _visible_children(folder: Path) -> list[Path]:
    """Sub-entries of a folder without hidden ones, sorted by name."""
    return sorted(p for p in folder.iterdir() if not is_hidden(PurePosixPath(p.name)))


LABEL_COLUMNS = ["label", "labels", "class", "class_name", "category", "target", "breed", "species", "y"]


def _has_subdirs(folder: Path) -> bool:
    """True when a folder holds at least one visible subfolder."""
    return any(c.is_dir() for c in _visible_children(folder))


def _images_in(folder: Path) -> list[Path]:
    """Visible image files directly inside a folder."""
    return [c for c in _visible_children(folder) if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES]


def _label_from_name(name: str) -> str:
    """'cat.12.jpg' or 'cat_12.png' → 'cat' (Kaggle's dogs-vs-cats style); '' when there is no word label."""
    stem = name.rsplit(".", 1)[0]
    for sep in (".", "_", "-"):
        if sep in stem:
            head = stem.split(sep, 1)[0]
            return head if head and not head.isdigit() else ""
    return ""


def detect_layout(root: Path) -> tuple[str, Path]:
    """Return the layout ('class_folders', 'presplit', 'csv' or 'filenames') and the data root."""
    children = _visible_children(root)
    dirs = [c for c in children if c.is_dir()]
    files = [c for c in children if c.is_file()]
    csvs = [f for f in files if f.suffix.lower() == ".csv"]
    if len(dirs) == 1 and not files and dirs[0].name.lower() not in SPLIT_NAMES \
            and any(c.is_dir() or c.suffix.lower() == ".csv" for c in _visible_children(dirs[0])):
        return detect_layout(dirs[0])  # one extra top folder, as archives often have
    if csvs:
        return "csv", root
    split_dirs = [d for d in dirs if d.name.lower() in SPLIT_NAMES]
    if split_dirs and any(SPLIT_NAMES[d.name.lower()] == "train" for d in split_dirs) \
            and all(_has_subdirs(d) for d in split_dirs):
        return "presplit", root
    images = _images_in(root) or [i for d in split_dirs if SPLIT_NAMES[d.name.lower()] == "train"
                                  for i in _images_in(d)]
    if images and len({_label_from_name(i.name) for i in images} - {""}) >= 2:
        return "filenames", root
    if not dirs:
        raise DataError(f"{root} holds no class folders: put the images in one subfolder per class "
                        "(root/<class>/image.jpg), or add a CSV of file names and labels.")
    return "class_folders", root


def _csv_items(root: Path) -> tuple[list[tuple[str, str, str]], list[dict]]:
    """Items of a CSV layout: the CSV column holding labels and the one naming files below `root`."""
    csv_path = sorted(f for f in _visible_children(root) if f.suffix.lower() == ".csv")[0]
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    lower = {c.lower().strip(): c for c in table.columns}
    label_col = next((lower[c] for c in LABEL_COLUMNS if c in lower), None)
    if label_col is None:
        raise DataError(f"{csv_path.name}: no label column found among its columns {list(table.columns)}; "
                        f"name it one of {LABEL_COLUMNS}.")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not is_hidden(PurePosixPath(p.relative_to(root).as_posix()))]
    by_rel = {p.relative_to(root).as_posix(): p for p in files}
    by_name = {p.name: p for p in files}
    by_stem = {p.stem: p for p in files}

    def find(value: str) -> Path | None:
        value = value.strip()
        return by_rel.get(value) or by_name.get(Path(value).name) or by_stem.get(Path(value).stem)

    scores = {c: sum(find(v) is not None for v in table[c].head(200)) for c in table.columns if c != label_col}
    path_col = max(scores, key=scores.get) if scores else None
    if not path_col or scores[path_col] == 0:
        raise DataError(f"{csv_path.name}: no column names image files found below {root} "
                        f"(columns: {list(table.columns)}).")
    items, skipped = [], []
    for value, label in zip(table[path_col], table[label_col]):
        found = find(value)
        if found is None:
            skipped.append({"path": value, "reason": f"listed in {csv_path.name} but not found"})
        else:
            items.append((found.relative_to(root).as_posix(), str(label).strip(), ""))
    return items, skipped


def list_images(root: Path) -> tuple[str, Path, list[tuple[str, str, str]], list[dict]]:
    """List (relative path, label, given split) of every candidate file, and the files skipped already."""
    layout, data_root = detect_layout(root)
    items: list[tuple[str, str, str]] = []
    skipped: list[dict] = []
    if layout == "csv":
        items, skipped = _csv_items(data_root)
        return layout, data_root, items, skipped
    if layout == "filenames":
        folder = data_root if _images_in(data_root) else next(
            d for d in _visible_children(data_root) if d.is_dir() and SPLIT_NAMES.get(d.name.lower()) == "train")
        for image in _images_in(folder):
            label = _label_from_name(image.name)
            rel = image.relative_to(data_root).as_posix()
            if label:
                items.append((rel, label, ""))
            else:
                skipped.append({"path": rel, "reason": "no label in the file name"})
        return layout, data_root, items, skipped
    tops = [(d, SPLIT_NAMES[d.name.lower()]) for d in _visible_children(data_root)
            if d.is_dir() and d.name.lower() in SPLIT_NAMES] if layout == "presplit" else [(data_root, "")]
    for top, given_split in tops:
        for class_dir in _visible_children(top):
            if not class_dir.is_dir():
                skipped.append({"path": class_dir.relative_to(data_root).as_posix(),
                                "reason": "file outside any class folder"})
                continue
            for dirpath, dirnames, filenames in os.walk(class_dir):
                dirnames[:] = sorted(d for d in dirnames if not is_hidden(PurePosixPath(d)))
                for name in sorted(filenames):
                    if is_hidden(PurePosixPath(name)):
                        continue
                    rel = Path(dirpath, name).relative_to(data_root).as_posix()
                    items.append((rel, class_dir.name, given_split))
    return layout, data_root, items, skipped


def check_image(path: Path) -> Checked:
    """Hash and fully decode one file; say why it is unusable, if it is."""
    out = Checked(path=str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        out.error = f"unreadable: {exc.strerror}"
        return out
    if not data:
        out.error = "zero-byte file"
        return out
    out.sha256 = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as img:
            out.mode = img.mode
            img.load()
            out.width, out.height = img.size
            out.phash = str(imagehash.phash(to_rgb(img)))
    except UnidentifiedImageError:
        out.error = "not an image"
    except (OSError, SyntaxError, ValueError) as exc:
        out.error = f"corrupt or truncated image ({str(exc).splitlines()[0][:80]})"
    return out


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (CMYK, P, RGBA, I;16, L, …) to 8-bit RGB the same way everywhere."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / max(top, 255.0))).astype("uint8"), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


def check_images(files: Iterable[Path], workers: int | None = None, progress: bool = False) -> list[Checked]:
    """Check many files in parallel threads (PIL and hashlib release the GIL)."""
    files = list(files)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(check_image, files, chunksize=32)
        if progress:
            results = progress_bar(results, total=len(files), desc="check images", unit="images")
        return list(results)


def _group_ids(frame: pd.DataFrame) -> list[int]:
    """Union-find over equal sha256 or equal perceptual hash; returns a group id per row."""
    parent = list(range(len(frame)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in ("sha256", "phash"):
        first: dict[str, int] = {}
        for i, key in enumerate(frame[column]):
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    return [find(i) for i in range(len(frame))]


def split_groups(labels: list[str], groups: list[int], ratios: tuple[float, float, float],
                 seed: int) -> list[str]:
    """Stratified, seeded split at the group level: a duplicate group never spans two splits."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for g, label in sorted(set(zip(groups, labels)), key=lambda t: t[0]):
        if g not in by_class[label]:
            by_class[label].append(g)
    small = sorted(c for c, gs in by_class.items() if len(gs) < 3)
    if small:
        raise DataError(f"classes {small} have fewer than 3 distinct images, too few for a "
                        "train/val/test split; add images or remove those class folders.")
    rng = random.Random(seed)
    assignment: dict[int, str] = {}
    for label in sorted(by_class):
        gs = sorted(by_class[label])
        rng.shuffle(gs)
        n = len(gs)
        n_test = max(1, round(n * ratios[2]))
        n_val = max(1, round(n * ratios[1]))
        for i, g in enumerate(gs):
            assignment[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return [assignment[g] for g in groups]


def prepare_split(root: Path, seed: int = 42, ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
                  keep_given_split: bool = False, progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """Scan, check and split a dataset folder; return split.csv's frame and the data report."""
    layout, data_root, items, skipped = list_images(root)
    checked = check_images((data_root / rel for rel, _, _ in items), progress=progress)
    rows = []
    for (rel, label, given), c in zip(items, checked):
        if c.error:
            skipped.append({"path": rel, "reason": c.error})
        else:
            rows.append({"path": rel, "label": label, "given_split": given, "sha256": c.sha256,
                         "phash": c.phash, "width": c.width, "height": c.height, "mode": c.mode})
    frame = pd.DataFrame(rows, columns=["path", "label", "given_split", "sha256", "phash",
                                        "width", "height", "mode"])
    all_classes = sorted({label for _, label, _ in items} | {Path(s["path"]).parts[0] for s in skipped
                                                                   if layout == "class_folders" and "/" in s["path"]})
    empty = sorted(set(all_classes) - set(frame["label"]))
    if empty:
        raise DataError(f"class folders {empty} under {data_root} hold no valid image; "
                        "add images or remove them (skipped files are listed in the data report).")
    classes = sorted(frame["label"].unique())
    if len(classes) < 2:
        raise DataError(f"{data_root} has {len(classes)} class ({classes}); a classifier needs at "
                        "least two class folders.")
    frame = frame.sort_values("path", kind="stable").reset_index(drop=True)
    frame["group"] = _group_ids(frame)
    if keep_given_split and layout == "presplit":
        frame["split"] = frame["given_split"].replace("", "train")
    else:
        frame["split"] = split_groups(frame["label"].tolist(), frame["group"].tolist(), ratios, seed)
    report = data_report(frame, classes, skipped, layout, data_root, seed, ratios)
    return frame, report


def data_report(frame: pd.DataFrame, classes: list[str], skipped: list[dict], layout: str,
                root: Path, seed: int, ratios: tuple[float, float, float]) -> dict:
    """Counts per class and split, skipped files, duplicate groups: data_report.json's content."""
    counts = {c: {s: int(((frame["label"] == c) & (frame["split"] == s)).sum())
                  for s in ("train", "val", "test")} for c in classes}
    dup_groups = []
    for _, members in frame.groupby("group", sort=True):
        if len(members) > 1:
            dup_groups.append({"paths": members["path"].tolist(), "labels": sorted(set(members["label"])),
                               "kind": "exact" if members["sha256"].nunique() == 1 else "near",
                               "split": members["split"].iloc[0]})
    fingerprint = hashlib.sha256("\n".join(f"{p},{label},{h}" for p, label, h in
                                           zip(frame["path"], frame["label"], frame["sha256"])).encode()).hexdigest()
    return {
        "root": str(root), "layout": layout, "classes": classes, "n_images": int(len(frame)),
        "seed": seed, "ratios": list(ratios),
        "counts": counts,
        "split_totals": {s: int((frame["split"] == s).sum()) for s in ("train", "val", "test")},
        "skipped": skipped,
        "duplicate_groups": dup_groups,
        "conflicting_duplicates": [g for g in dup_groups if len(g["labels"]) > 1],
        "image_sizes": Counter(f"{w}x{h}" for w, h in zip(frame["width"], frame["height"])).most_common(),
        "fingerprint": fingerprint,
    }


def load_split(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Read split.csv and data_report.json of a run, with an absolute `file` column added."""
    split_path, report_path = run_dir / "split.csv", run_dir / "data_report.json"
    if not split_path.exists() or not report_path.exists():
        raise DataError(f"{split_path} not found: run notebooks/02_data.ipynb (or the pipeline) "
                        "for this run_id first.")
    from .io import read_json
    report = read_json(report_path)
    frame = pd.read_csv(split_path, dtype=str, keep_default_na=False)
    frame["file"] = [str(Path(report["root"]) / p) for p in frame["path"]]
    return frame, report


def save_split(run_dir: Path, frame: pd.DataFrame, report: dict) -> None:
    """Write split.csv and data_report.json; refuse to replace a different split that a run trained on."""
    from . import io
    split_path = run_dir / "split.csv"
    if split_path.exists() and (run_dir / "checkpoints").exists():
        old = io.read_json(run_dir / "data_report.json") if (run_dir / "data_report.json").exists() else {}
        if old.get("fingerprint") != report["fingerprint"] or old.get("seed") != report["seed"] \
                or old.get("ratios") != report["ratios"]:
            raise DataError(f"run {run_dir.name!r} already trained on another split ({split_path}); "
                            "use a new run_id for new data, seed or ratios.")
    io.write_csv(split_path, frame[SPLIT_COLUMNS])
    io.write_json(run_dir / "data_report.json", report)


def median_side(report: dict) -> float | None:
    """Median shorter side of the dataset's images, from the data report's size histogram."""
    sizes = []
    for size, count in report.get("image_sizes", []):
        w, h = (int(v) for v in size.split("x"))
        sizes += [min(w, h)] * int(count)
    return float(sorted(sizes)[len(sizes) // 2]) if sizes else None


def sample_grid(frame: pd.DataFrame, root: Path, per_class: int = 6, seed: int = 42,
                size: int = 96) -> tuple[list, list[str]]:
    """A few images of every class (CHW uint8) and their labels, for a look at the data."""
    from .imagecache import load_resized
    images, titles = [], []
    for label, part in frame.groupby("label", sort=True):
        for path in part.sample(min(per_class, len(part)), random_state=seed)["path"]:
            images.append(load_resized(Path(root) / path, size))
            titles.append(str(label))
    return images, titles


def split_for(run_dir: Path, dataset: str, seed: int) -> tuple[pd.DataFrame, dict]:
    """The run's split (made by 02), or the default 70/15/15 split of `dataset`, saved for 02 to confirm."""
    if not (run_dir / "split.csv").exists():
        frame, report = prepare_split(resolve_dataset(dataset), seed)
        save_split(run_dir, frame, report)
    return load_split(run_dir)
