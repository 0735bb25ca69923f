"""Predict new images with a run's trained model: any input (folder, archive, file, CSV of paths), top-k CSV.

Usage: python -m helpers.predict --run-id ID IMAGES [--top-k K] [--tta none|flip|flip+crops] [--cycle N]

Unreadable, truncated and non-image files are listed with their reason, never a crash. Images in class
folders carry their folder's name as label; labels the model does not know are named and left out of the
accuracy. The preprocessing is the checkpoint's own (helpers.preprocess), the same as 04's.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import torch

from helpers.data.archives import archive_stem, extract_keyed, is_archive, is_hidden
from helpers.data.csvlayout import LABEL_NAMES
from helpers.data.dataset import load_split
from helpers.data.images import IMAGE_SUFFIXES, check_images
from helpers.evaluation import preprocess, trained
from helpers.evaluation.stats import wilson_interval
from helpers.models import inference
from helpers.params.schema import check
from helpers.training import checkpoints
from helpers.utils import allocator, files, lock, paths
from helpers.utils.devices import resolve_device

PATH_COLUMNS = ["path", "file", "filename", "file_name", "filepath", "image", "image_path", "img", "id"]
GALLERY_SIZE = 16


class PredictError(ValueError):
    """What to predict cannot be used as given; the message names the culprit and what to do."""


@dataclass
class ImageSet:
    """The images to predict: readable files in order, how to name each, labels where known, and the rest."""

    source: str
    name: str
    files: list[Path] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- reading what to predict

def _walk(root: Path) -> list[Path]:
    """Every visible file below `root`, sorted; hidden files and folders (.DS_Store, __MACOSX) are left out."""
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not is_hidden(PurePosixPath(p.relative_to(root).as_posix())))


def folder_labels(rels: list[str], classes: list[str]) -> list[str]:
    """Labels from class folders: the folder level whose names best match the model's classes ('' if none)."""
    known = set(classes)
    parts = [PurePosixPath(r).parts[:-1] for r in rels]
    depth = max(len(p) for p in parts) if parts else 0
    hits = [sum(1 for p in parts if len(p) > d and p[d] in known) for d in range(depth)]
    if not hits or max(hits) == 0:
        return [""] * len(rels)
    level = int(np.argmax(hits))  # the shallowest best level: root/test/<class>/… and root/<class>/… both work
    return [p[level] if len(p) > level else "" for p in parts]


def _from_files(source: str, name: str, root: Path, files: list[Path], classes: list[str],
                labels: list[str] | None = None, shown: list[str] | None = None,
                skipped: list[dict] | None = None) -> ImageSet:
    """Check every candidate file (a full decode, as 02 does) and keep the readable ones."""
    shown = shown or [f.relative_to(root).as_posix() for f in files]
    labels = labels if labels is not None else folder_labels(shown, classes)
    out = ImageSet(source=source, name=name, skipped=list(skipped or []))
    for f, rel, label, checked in zip(files, shown, labels, check_images(files)):
        if checked.error:
            out.skipped.append({"path": rel, "reason": checked.error})
        else:
            out.files.append(f)
            out.paths.append(rel)
            out.labels.append(label)
    return out


def _extract(archive: Path) -> Path:
    """Extract an archive once, into a folder named by its content hash, after checking it."""
    return extract_keyed(archive, paths.raw_dir() / "predict")


def _csv_column(table: pd.DataFrame, wanted: list[str]) -> str | None:
    lower = {str(c).lower().strip(): c for c in table.columns}
    return next((lower[c] for c in wanted if c in lower), None)


def _from_csv(csv_path: Path, source: str, classes: list[str]) -> ImageSet:
    """A CSV of paths (relative to the CSV's folder, or absolute), with an optional label column."""
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PredictError(f"images={source!r}: {csv_path.name} is not a readable CSV "
                           f"({str(exc).splitlines()[0][:100]}).") from None

    def resolve(value: str) -> Path:
        p = Path(str(value).strip()).expanduser()
        p = p if p.is_absolute() else csv_path.parent / p
        if not p.is_file():  # Kaggle lists often give ids without the suffix: "img_0001" for img_0001.jpg
            p = next((p.with_name(p.name + s) for s in sorted(IMAGE_SUFFIXES) if p.with_name(p.name + s).is_file()), p)
        return p

    path_col = _csv_column(table, PATH_COLUMNS)
    if path_col is None:  # no telling name: the column whose values name the most existing files
        scores = {c: sum(resolve(v).is_file() for v in table[c].head(200) if str(v).strip()) for c in table.columns}
        path_col = max(scores, key=scores.get) if scores and max(scores.values()) > 0 else None
    if path_col is None:
        raise PredictError(f"images={source!r}: no column of {csv_path.name} names image files "
                           f"(columns: {list(table.columns)}); name it 'path', relative to the CSV's folder.")
    label_col = _csv_column(table, list(LABEL_NAMES))
    files, shown, labels, skipped = [], [], [], []
    for i, value in enumerate(table[path_col]):
        value = str(value).strip()
        f = resolve(value)
        if not value or not f.is_file():
            skipped.append({"path": value, "reason": f"listed in {csv_path.name} but not found"})
            continue
        files.append(f)
        shown.append(value)
        labels.append(str(table[label_col].iloc[i]).strip() if label_col else "")
    if not label_col:  # no label column: class folders in the listed paths may still name them
        labels = folder_labels(shown, classes)
    return _from_files(source, csv_path.stem, csv_path.parent, files, classes, labels, shown, skipped)


def input_path(images: str) -> Path:
    """The file or folder `images` names: as given, else relative to the project (the runner's notebooks run
    in notebooks/, so a path typed at the project root must still be found there)."""
    path = Path(images).expanduser()
    if not path.is_absolute() and not path.exists():
        path = paths.PROJECT_ROOT / path
    if not path.exists():
        raise PredictError(f"images={images!r}: no such file or folder; give a folder, an archive, an image file "
                           "or a CSV of paths (empty: the run's test split).")
    return path


def collect_images(images: str, run_dir: Path, classes: list[str]) -> ImageSet:
    """What `images` names, as readable files with labels: '' = the run's test split; else a folder (nested or
    not), an archive (.zip, .tar, .tar.gz), a single image, or a CSV of paths."""
    if not str(images).strip():
        frame, _ = load_split(run_dir)
        test = frame[frame["split"] == "test"]
        if test.empty:
            raise PredictError(f"images='': the run {run_dir.name!r} has no test split to predict; "
                               "give images=<folder, archive, file or CSV>.")
        # Named as in 04's predictions.csv; checked again, since a file may have gone since 02.
        return _from_files("", "test", Path("."), [Path(f) for f in test["file"]], classes,
                           labels=test["label"].tolist(), shown=test["path"].tolist())
    path = input_path(images)
    if path.is_dir():
        result = _from_files(images, path.resolve().name, path, _walk(path), classes)
    elif is_archive(path):
        root = _extract(path)
        result = _from_files(images, archive_stem(path), root, _walk(root), classes)
    elif path.suffix.lower() == ".csv":
        result = _from_csv(path, images, classes)
    else:
        result = _from_files(images, path.stem, path.parent, [path], classes, labels=[""])
    if not result.files:
        why = "; ".join(f"{s['path']}: {s['reason']}" for s in result.skipped[:3])
        raise PredictError(f"images={images!r} holds no readable image" + (f" ({len(result.skipped)} file(s) "
                           f"skipped — {why})" if result.skipped else "") + "; give a folder of .jpg/.png files, "
                           "an archive of them, one image, or a CSV of their paths.")
    return result


# ---------------------------------------------------------------- predicting

def top_k_frame(paths_: list[str], labels: list[str], probs: np.ndarray, classes: list[str], k: int) -> pd.DataFrame:
    """predictions/<name>.csv: path, label ('' if unknown), then class_i and prob_i for the k best classes."""
    k = min(int(k), len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    frame = pd.DataFrame({"path": paths_, "label": labels})
    for i in range(k):
        frame[f"class_{i + 1}"] = [classes[j] for j in order[:, i]]
        frame[f"prob_{i + 1}"] = np.round(np.take_along_axis(probs, order[:, i:i + 1], 1)[:, 0], 6)
    return frame


def summarize(labels: list[str], probs: np.ndarray, classes: list[str]) -> dict:
    """Class counts, and for images whose label the model knows, the accuracy with its 95 % Wilson interval."""
    pred = [classes[i] for i in probs.argmax(1)]
    known = [i for i, label in enumerate(labels) if label in classes]
    unknown = Counter(label for label in labels if label and label not in classes)
    truth = Counter(labels[i] for i in known)
    counts = pd.DataFrame({"class": classes, "predicted": [pred.count(c) for c in classes]})
    if known:
        counts["labelled"] = [truth.get(c, 0) for c in classes]
    out = {"n_images": len(labels), "counts": counts, "n_labelled": len(known),
           "unknown_labels": dict(sorted(unknown.items()))}
    if known:
        correct = sum(pred[i] == labels[i] for i in known)
        out.update(accuracy=correct / len(known), accuracy_ci95=list(wilson_interval(correct, len(known))),
                   n_correct=int(correct))
    return out


def output_path(run_dir: Path, name: str) -> Path:
    """predictions/<name>.csv, or <name>-2.csv, -3, … so an earlier prediction is never overwritten."""
    folder = Path(run_dir) / "predictions"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._") or "images"
    candidate, n = folder / f"{safe}.csv", 1
    while candidate.exists() or candidate.with_suffix(".json").exists():
        n += 1
        candidate = folder / f"{safe}-{n}.csv"
    return candidate


def predict_images(run_dir: Path, images: str, device: torch.device, batch_size: int = 32, cycle: int = 0,
                   tta: str = "none", top_k: int = 3) -> dict:
    """Predict every readable image of `images` with the run's best (or `cycle`'s) model; write the CSV.

    Returns the top-k frame, the full probabilities, the image set, the summary, a gallery and the CSV path.
    """
    run_dir = Path(run_dir)
    if tta not in inference.TTA_CHOICES:
        raise PredictError(f"tta={tta!r}: use one of {', '.join(inference.TTA_CHOICES)}.")
    if int(top_k) < 1:
        raise PredictError(f"top_k={top_k}: must be an integer ≥ 1.")
    ckpt_path = checkpoints.resolve(run_dir, int(cycle))
    model, norm, config = trained.load_trained(ckpt_path, device)
    spec = preprocess.spec_from_config(config)
    classes = spec["classes"]
    found = collect_images(images, run_dir, classes)
    chunk = int(batch_size) * 8  # decode a few batches at a time; batches stay those of 04 for equal numbers
    parts, gallery = [], []
    for start in range(0, len(found.files), chunk):
        arr = preprocess.load_images(found.files[start:start + chunk], spec)
        parts.append(inference.predict_proba(model, norm, arr, device, int(batch_size), tta=tta))
        gallery += list(arr[: max(0, GALLERY_SIZE - len(gallery))])
    probs = np.concatenate(parts)
    frame = top_k_frame(found.paths, found.labels, probs, classes, top_k)
    summary = summarize(found.labels, probs, classes)
    target = output_path(run_dir, found.name)
    record = {"source": found.source or "test split", "checkpoint": ckpt_path.relative_to(run_dir).as_posix(),
              "cycle": config["cycle"], "arch": config["arch"], "temperature": config.get("temperature", 1.0),
              "tta": tta, "top_k": int(top_k),
              **{k: v for k, v in summary.items() if k != "counts"},
              "counts": summary["counts"].to_dict(orient="records"),
              "n_skipped": len(found.skipped), "skipped": found.skipped, "preprocessing": spec}
    files.write_csv(target, frame)
    files.write_json(target.with_suffix(".json"), record)
    titles = [(f"{lab} → " if lab else "") + f"{frame['class_1'].iloc[i]} ({frame['prob_1'].iloc[i]:.2f})"
              for i, lab in enumerate(found.labels[:len(gallery)])]
    return {"predictions": frame, "probs": probs, "images": found, "summary": summary, "csv": target,
            "config": config, "gallery": (gallery, titles), "record": record}


def describe(result: dict) -> str:
    """A few plain lines about a prediction: how many, skipped ones, accuracy when labelled."""
    s, found = result["summary"], result["images"]
    lines = [f"{s['n_images']} image(s) predicted with cycle {result['config']['cycle']}'s model "
             f"({result['config']['arch']}, tta={result['record']['tta']})"]
    if found.skipped:
        lines.append(f"{len(found.skipped)} file(s) skipped:")
        lines += [f"  {x['path']}: {x['reason']}" for x in found.skipped]
    if s["unknown_labels"]:
        named = ", ".join(f"{k} ({v})" for k, v in s["unknown_labels"].items())
        lines.append(f"labels the model does not know, left out of the accuracy: {named}")
    if "accuracy" in s:
        lo, hi = s["accuracy_ci95"]
        lines.append(f"accuracy {s['accuracy']:.4f} (95% Wilson CI {lo:.4f}–{hi:.4f}, n={s['n_labelled']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    allocator.keep_large_blocks()
    ap = argparse.ArgumentParser(prog="python -m helpers.predict", description=__doc__.splitlines()[0])
    ap.add_argument("images", help="a folder, an archive, an image file or a CSV of paths ('' = the test split)")
    ap.add_argument("--run-id", default="default", help="the run whose model predicts")
    ap.add_argument("--top-k", type=int, default=3, help="how many classes per image")
    ap.add_argument("--tta", default="none", choices=inference.TTA_CHOICES, help="test-time augmentation")
    ap.add_argument("--cycle", type=int, default=0, help="which cycle's best (0: the run's best)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    ap.add_argument("--batch-size", type=int, default=32, help="images per step on the device")
    args = ap.parse_args(argv)
    try:
        for name in ("run_id", "top_k", "cycle", "batch_size", "images"):
            check(name, getattr(args, name))
        device = resolve_device(check("device", args.device))
        with lock.hold(paths.run_dir(args.run_id), "python -m helpers.predict"):  # one writer per run
            result = predict_images(paths.run_dir(args.run_id), args.images, device, args.batch_size, args.cycle,
                                    args.tta, args.top_k)
    except ValueError as exc:  # our errors are ValueErrors with a user-facing sentence
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(result))
    print(result["summary"]["counts"].to_string(index=False))
    print(f"written: {result['csv']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
