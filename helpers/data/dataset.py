"""The data stage (notebook 02) in one place: resolve the dataset, read its layout, check every file, group
duplicates, split, report.

Each stage is its own module; this one wires them and is the entry point the notebooks import:
  archives.py   — unpack archives (and archives inside them) with zip-slip checks
  layouts.py    — find the data root and the layout, list labelled and unlabelled images, explain why
                  (csvlayout.py: which CSV and which columns, by evidence)
  images.py     — decode and check a file: hashes, size, EXIF orientation, decompression bombs
  duplicates.py — exact and near-duplicate groups
  split.py      — where the split is made: grouped, stratified, by content hash and seed
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pandas as pd

from helpers.data import balance, duplicates, layouts, split, splitrecord
from helpers.data.archives import (
    ARCHIVE_SUFFIXES,
    extract_archive,
    extract_keyed,
    extract_nested,
    working_copy,
)
from helpers.data.errors import DataError
from helpers.data.images import (
    IMAGE_SUFFIXES,
    Checked,
    check_image,
    check_images,
    to_rgb,
)
from helpers.utils import paths

__all__ = ["ARCHIVE_SUFFIXES", "IMAGE_SUFFIXES", "SPLIT_COLUMNS", "Checked", "DataError", "check_dataset_arg",
           "check_image", "check_images", "extract_archive", "load_split", "median_side", "prepare_split",
           "resolve_dataset", "sample_grid", "save_split", "split_for", "to_rgb"]

SPLIT_COLUMNS = ["path", "label", "split", "sha256"]


def resolve_dataset(dataset: str) -> Path:
    """Turn the `dataset` parameter into a local folder (extracting or downloading as needed)."""
    if dataset == "sample":
        return paths.SAMPLE_DIR
    if dataset.startswith(("kaggle:", "kaggle-competition:")):
        from helpers.data.kaggle import download
        return download(dataset)
    path = _local_path(dataset)
    if path.is_file():
        if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise DataError(f"dataset={dataset!r} is a file but not an archive (.zip, .tar.gz, .tar).")
        folder = extract_keyed(path, paths.raw_dir() / "archives")  # named by content: an update is read afresh
    else:
        folder = working_copy(path, paths.raw_dir())  # the user's folder itself is never written to
        if folder == path:
            return path
    extract_nested(folder)
    return folder


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
        from helpers.data.kaggle import preflight
        preflight(dataset)
    elif dataset != "sample":
        _local_path(dataset)


def _checked_frame(found: layouts.Layout, progress: bool) -> pd.DataFrame:
    """Decode every listed file; the unusable ones join found.skipped with their reason."""
    checked = check_images((found.root / rel for rel, *_ in found.items), progress=progress)
    rows = []
    for (rel, label, given, group), c in zip(found.items, checked):
        if c.error:
            found.skipped.append({"path": rel, "reason": c.error})
        else:
            rows.append((rel, label, given, group, c.sha256, c.phash, c.width, c.height, c.mode))
    frame = pd.DataFrame(rows, columns=["path", "label", "given_split", "group_value", "sha256", "phash",
                                        "width", "height", "mode"])
    labels = {label for _, label, *_ in found.items}
    empty = sorted(labels - set(frame["label"]))
    if empty:
        raise DataError(f"class folders {empty} under {found.root} hold no valid image; "
                        "add images or remove them (skipped files are listed in the data report).")
    classes = sorted(frame["label"].unique())
    if len(classes) < 2:
        raise DataError(f"{found.root} has {len(classes)} class ({classes}); a classifier needs at "
                        "least two class folders.")
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def _given_split(frame: pd.DataFrame, ratios: tuple[float, float, float], seed: int) -> tuple[list[str], list[str]]:
    """The dataset's own split, with val (and test) carved from train when it has none; and what was done."""
    splits = [s or "train" for s in frame["given_split"]]
    notes = []
    for name, share in (("val", ratios[1]), ("test", ratios[2])):
        if name not in splits:
            splits = split.carve(splits, frame["label"].tolist(), frame["group"].tolist(), frame["sha256"].tolist(),
                                 name, share, seed)
            notes.append(f"{name}: the given split has none, so {share:.0%} of train's groups of every class "
                         "were carved from train (by content hash and seed)")
    return splits, notes


def prepare_split(root: Path, seed: int = 42, ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
                  keep_given_split: bool = False, progress: bool = False, layout: str = "auto",
                  label_column: str = "", path_column: str = "", group_column: str = "",
                  move_leaks: bool = False) -> tuple[pd.DataFrame, dict]:
    """Scan, check and split a dataset folder; return split.csv's frame and the data report.

    With `keep_given_split`, a duplicate group or a `group_column` group that spans the given splits is a
    leak: listed, and with `move_leaks` moved whole into the most held-out split it touches.
    """
    found = layouts.detect(Path(root), layout, label_column, path_column, group_column)
    frame = _checked_frame(found, progress)
    sha, phash = frame["sha256"].tolist(), frame["phash"].tolist()
    frame["dup_group"] = duplicates.group_ids(sha, phash)
    frame["group"] = duplicates.group_ids(sha, phash, frame["group_value"].tolist()) if group_column \
        else frame["dup_group"]
    notes = []
    moved: list[dict] = []
    if keep_given_split and (frame["given_split"] != "").any():
        frame["split"], notes = _given_split(frame, ratios, seed)
        if move_leaks:
            frame["split"], moved = split.join_spanning_groups(frame["split"].tolist(), frame["group"].tolist(),
                                                               frame["path"].tolist())
            notes.append(f"move_leaks: {len(moved)} group(s) spanning the given splits moved whole into the most "
                         f"held-out split each touches ({sum(len(m['moved']) for m in moved)} image(s) moved; "
                         "the dataset's own test images all stay test)")
    else:
        if keep_given_split:
            notes.append(f"keep_given_split: the dataset has no split of its own; split {ratios} instead")
        frame["split"] = split.split_groups(frame["label"].tolist(), frame["group"].tolist(), sha, ratios, seed)
    report = data_report(frame, found, seed, ratios, notes, group_column)
    report["moved_leaks"] = moved
    report["split_parameters"] = {"layout": layout, "label_column": label_column, "path_column": path_column,
                                  "group_column": group_column, "keep_given_split": bool(keep_given_split),
                                  "move_leaks": bool(move_leaks), "seed": seed,
                                  "ratios": [round(float(r), 6) for r in ratios]}
    report["assignment"] = splitrecord.assignment_hash(frame)
    return frame, report


def _groups_listing(frame: pd.DataFrame) -> list[dict]:
    """Every duplicate group of two or more images: paths, labels, kind, splits."""
    kinds = duplicates.group_kinds(frame["sha256"].tolist(), frame["phash"].tolist(), frame["dup_group"].tolist())
    out = []
    for g, members in frame.groupby("dup_group", sort=True):
        if len(members) > 1:
            splits = sorted(set(members["split"]))
            out.append({"paths": members["path"].tolist(), "labels": sorted(set(members["label"])),
                        "kind": kinds[g], "split": splits[0] if len(splits) == 1 else splits})
    return out


def data_report(frame: pd.DataFrame, found: layouts.Layout, seed: int, ratios: tuple[float, float, float],
                notes: list[str], group_column: str = "") -> dict:
    """data_report.json's content: layout and why, counts, skipped, unlabelled, duplicates, leaks."""
    classes = sorted(frame["label"].unique())
    counts = {c: {s: int(((frame["label"] == c) & (frame["split"] == s)).sum()) for s in split.SPLITS}
              for c in classes}
    dup_groups = _groups_listing(frame)
    fingerprint = hashlib.sha256("\n".join(f"{p},{label},{h}" for p, label, h in
                                           zip(frame["path"], frame["label"], frame["sha256"])).encode()).hexdigest()
    report = {
        "root": str(found.root), "data_root": found.root_rel or ".", "layout": found.kind, "classes": classes,
        "n_images": int(len(frame)), "seed": seed, "ratios": list(ratios),
        "counts": counts,
        "split_totals": {s: int((frame["split"] == s).sum()) for s in split.SPLITS},
        "explanation": found.explained,
        "notes": notes + found.hints,
        "skipped": found.skipped,
        "unlabelled": found.unlabelled,
        "duplicate_groups": dup_groups,
        "conflicting_duplicates": [g for g in dup_groups if len(g["labels"]) > 1],
        "leaks": [g for g in dup_groups if isinstance(g["split"], list)],
        "image_sizes": Counter(f"{w}x{h}" for w, h in zip(frame["width"], frame["height"])).most_common(),
        "fingerprint": fingerprint,
        # Images that are not independent (duplicates; a group_column value): 04's intervals resample them whole.
        "multi_image_groups": [m["path"].tolist() for _, m in frame.groupby("group", sort=True) if len(m) > 1],
        "imbalance": balance.imbalance(frame["label"]),
    }
    if group_column:
        sizes = frame.groupby("group").size()
        report["groups"] = {"column": group_column, "n_groups": int(len(sizes)), "largest": int(sizes.max())}
        report["group_leaks"] = _group_leaks(frame, group_column)
    return report


def _group_leaks(frame: pd.DataFrame, group_column: str) -> list[dict]:
    """`group_column` groups (a patient, with its duplicates) whose images lie in more than one split."""
    out = []
    for _, members in frame.groupby("group", sort=True):
        splits = sorted(set(members["split"]))
        values = sorted(set(members["group_value"]) - {""})
        if len(splits) > 1 and values:
            out.append({group_column: values, "paths": members["path"].tolist(),
                        "labels": sorted(set(members["label"])), "split": splits})
    return out


def load_split(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Read split.csv and data_report.json of a run, with an absolute `file` column added.

    Training images that 02 flagged as likely mislabelled and was told to leave out (label_issues=exclude_train,
    listed in data_report.json's label_issues.excluded) are dropped here; validation and test rows never are.
    """
    split_path, report_path = run_dir / "split.csv", run_dir / "data_report.json"
    if not split_path.exists() or not report_path.exists():
        raise DataError(f"{split_path} not found: run notebooks/02_data.ipynb (or the pipeline) "
                        "for this run_id first.")
    from helpers.utils.files import read_json
    report = read_json(report_path)
    frame = pd.read_csv(split_path, dtype=str, keep_default_na=False)
    frame["file"] = [str(Path(report["root"]) / p) for p in frame["path"]]
    left_out = excluded_training(report)
    if left_out:
        frame = frame[~(frame["path"].isin(left_out) & (frame["split"] == "train"))].reset_index(drop=True)
    return frame, report


def excluded_training(report: dict) -> set[str]:
    """Paths of the training images 02 left out of training (label_issues=exclude_train)."""
    return {e["path"] for e in report.get("label_issues", {}).get("excluded", []) if e.get("split") == "train"}


def save_split(run_dir: Path, frame: pd.DataFrame, report: dict, restart_training: bool = False) -> Path | None:
    """Write split.csv and data_report.json; a run that trained on another split refuses it by default.

    Any change of which file is in which split (or of a file's label or content) under trained checkpoints
    is refused with what changed; with `restart_training` the run's checkpoints and ledger are moved aside
    first (returned: the folder they went to) and training starts over on the new split.
    """
    from helpers.utils import files
    moved = splitrecord.guard(run_dir, frame, report, restart_training)
    if moved is not None:
        report = {**report, "notes": [*report.get("notes", []),
                                      f"restart_training: the trained record of the previous split was moved to "
                                      f"{moved.relative_to(run_dir).as_posix()}/"]}
    files.write_csv(run_dir / "split.csv", frame[SPLIT_COLUMNS])
    files.write_json(run_dir / "data_report.json", report)
    return moved


def median_side(report: dict) -> float | None:
    """Median shorter side of the dataset's images, from the data report's size histogram."""
    sizes = []
    for size, count in report.get("image_sizes", []):
        w, h = (int(v) for v in size.split("x"))
        sizes += [min(w, h)] * int(count)
    return float(sorted(sizes)[len(sizes) // 2]) if sizes else None


def sample_grid(frame: pd.DataFrame, report: dict, per_class: int = 6, seed: int = 42,
                size: int = 96) -> tuple[list, list[str]]:
    """A few images of every class (CHW uint8) and their labels; paths are joined to the report's data root."""
    from helpers.data.imagecache import load_resized
    root = Path(report["root"])
    images, titles = [], []
    for label, part in frame.groupby("label", sort=True):
        for path in part.sample(min(per_class, len(part)), random_state=seed)["path"]:
            images.append(load_resized(root / path, size))
            titles.append(str(label))
    return images, titles


DATA_PARAMETERS = ("layout", "label_column", "path_column", "group_column", "keep_given_split", "move_leaks")


def _runner_data_parameters(run_dir: Path) -> dict:
    """02's parameters as the runner was given them (params.json), so that 01's early split equals 02's."""
    from helpers.params.schema import coerce
    from helpers.utils.files import read_json
    recorded = run_dir / "params.json"
    given = read_json(recorded).get("notebooks", {}).get("pipeline", {}).get("parameters", {}) \
        if recorded.exists() else {}
    out = {k: coerce(k, given[k]) for k in DATA_PARAMETERS if k in given}
    if "val_ratio" in given or "test_ratio" in given:
        val = coerce("val_ratio", given.get("val_ratio", 0.15))
        test = coerce("test_ratio", given.get("test_ratio", 0.15))
        out["ratios"] = (1 - val - test, val, test)
    return out


def split_for(run_dir: Path, dataset: str, seed: int) -> tuple[pd.DataFrame, dict]:
    """The run's split (made by 02), or the split 02 will make of `dataset`, saved for 02 to confirm."""
    if not (run_dir / "split.csv").exists():
        frame, report = prepare_split(resolve_dataset(dataset), seed, **_runner_data_parameters(run_dir))
        save_split(run_dir, frame, report)
    return load_split(run_dir)
