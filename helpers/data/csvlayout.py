"""CSV layouts: which CSV labels the images, and which of its columns name the files, the labels and the groups.

Every choice is made by evidence, never by file order: a labelling CSV's rows name image files that
exist; a sample submission (Kaggle's `sample_submission.csv`, `sampleSubmission.csv`) is recognised by
name and ignored; a label column is one with a few repeated values, preferring a usual name (label,
class, dx, diagnosis, …). Integer labels are mapped through a class-name map the dataset ships.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.data.errors import DataError
from helpers.data.images import is_image_name

LABEL_NAMES = ("label", "labels", "class", "classes", "class_name", "classname", "category", "target", "breed",
               "species", "y", "dx", "diagnosis", "disease", "level")
GROUP_HINTS = ("patient", "lesion", "subject", "individual", "person", "animal", "case", "study")
SNIFF_ROWS = 200  # enough rows to tell a file column from a label column, cheap on a pixel table
MAX_COLUMNS = 64  # wider tables are pixel tables (Fashion-MNIST as CSV), not lists of files
MAX_CLASSES = 1000


def _norm(name: str) -> str:
    """A column name compared loosely: 'Class Name' → 'class_name'."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def is_sample_submission(name: str) -> bool:
    """True for Kaggle's sample submission files, however spelled."""
    flat = re.sub(r"[^a-z]", "", name.lower())
    return "submission" in flat


def _int_like(values: pd.Series) -> bool:
    """True when every non-empty value is an integer written in decimal."""
    values = values[values.str.strip() != ""]
    return bool(len(values)) and bool(values.str.strip().str.fullmatch(r"[+-]?\d+").all())


class FileIndex:
    """Every image below the data root by relative path, file name and stem, to look CSV values up."""

    def __init__(self, rels: list[str]) -> None:
        self.rels = set(rels)
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.by_stem: dict[str, list[str]] = defaultdict(list)
        for rel in rels:
            name = rel.rsplit("/", 1)[-1]
            self.by_name[name].append(rel)
            self.by_stem[name.rsplit(".", 1)[0]].append(rel)

    def find(self, value: str) -> list[str]:
        """The files a CSV value names: an exact relative path, else by name or stem, narrowed by its folders."""
        value = value.strip().replace("\\", "/").lstrip("./") if value else ""
        if not value:
            return []
        if value in self.rels:
            return [value]
        base = value.rsplit("/", 1)[-1]
        found = self.by_name.get(base, []) if is_image_name(base) else self.by_stem.get(base, [])
        if len(found) > 1 and "/" in value:  # '../input/x/train/a.jpg', 'train/a': the files agreeing on most folders
            folders = value.split("/")[:-1]

            def agree(rel: str) -> int:
                n = 0  # the name (or stem) already matched; count the folders above it that agree
                for a, b in zip(reversed(rel.split("/")[:-1]), reversed(folders)):
                    if a != b:
                        break
                    n += 1
                return n
            best = max(agree(r) for r in found)
            found = [r for r in found if agree(r) == best]
        return list(found)


@dataclass
class Table:
    """One CSV of the dataset, what it was read as, and why."""

    path: Path
    shown: str
    role: str = "ignored"
    reason: str = ""
    columns: list[str] = field(default_factory=list)
    path_column: str = ""
    label_column: str = ""
    split_column: str = ""
    group_column: str = ""
    matches: int = 0
    frame: pd.DataFrame | None = None


def read_csv(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """A CSV as strings, empty cells as ''."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, nrows=nrows)


def _path_scores(frame: pd.DataFrame, index: FileIndex) -> dict[str, int]:
    """How many of a column's first rows name an existing image, per column."""
    return {c: sum(bool(index.find(v)) for v in frame[c].head(SNIFF_ROWS)) for c in frame.columns}


def _split_column(frame: pd.DataFrame, meaning) -> str:
    """A column whose every value is a split name (train/valid/test), if any."""
    for c in frame.columns:
        values = set(frame[c].str.strip())
        if values and all(meaning(v) in ("train", "val", "test") for v in values):
            return c
    return ""


def _label_candidates(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Columns with a few repeated values: 2 distinct at least, at most half the rows (ids are not labels)."""
    n = len(frame)
    out = []
    for c in frame.columns:
        if c in exclude:
            continue
        values = frame[c].str.strip()
        distinct = values[values != ""].nunique()
        if (values == "").mean() <= 0.5 and 2 <= distinct <= min(MAX_CLASSES, max(2, n // 2)):
            out.append(c)
    return out


def _column(table: Table, name: str, param: str) -> str:
    """A column a parameter names, or an error listing the columns that exist."""
    if name not in table.columns:
        raise DataError(f"{param}={name!r} is not a column of {table.shown}; its columns are {table.columns}.")
    return name


def _choose_label_column(table: Table, label_column: str) -> None:
    """Fill table.label_column by the parameter, by a usual name, or by being the only candidate."""
    if label_column:
        table.label_column = _column(table, label_column, "label_column")
        table.reason += f"; labels from {label_column!r} (label_column)"
        return
    exclude = {table.path_column, table.split_column, table.group_column}
    candidates = _label_candidates(table.frame, exclude)
    named = [c for c in candidates if _norm(c) in LABEL_NAMES]
    if len(named) == 1 or (not named and len(candidates) == 1):
        table.label_column = (named or candidates)[0]
        why = "its usual name" if named else "the only column with a few repeated values"
        table.reason += f"; labels from {table.label_column!r} ({why})"
    elif candidates:
        pool = named or candidates
        described = ", ".join(f"{c!r} ({table.frame[c].nunique()} values)" for c in pool)
        table.role, table.reason = "undecided", (f"{table.shown}: cannot tell which column holds the labels: "
                                                 f"{described}; set label_column to one of them.")
    else:
        table.role, table.reason = "unlabelled", (f"{table.shown}: no label column found among its columns "
                                                  f"{table.columns}; set label_column to the column holding "
                                                  "the labels.")


def label_map_from_table(frame: pd.DataFrame) -> dict[str, str] | None:
    """A two-column table of integer ids and class names, as {id: name}."""
    if frame.shape[1] != 2 or not len(frame):
        return None
    a, b = frame.columns
    for ids, names in ((a, b), (b, a)):
        if _int_like(frame[ids]) and not _int_like(frame[names]) and frame[ids].nunique() == len(frame):
            return {str(int(i)): str(n).strip() for i, n in zip(frame[ids], frame[names])}
    return None


def label_map_from_json(path: Path) -> dict[str, str] | None:
    """{id: name} from a JSON object or list, in either direction; None when the file is not such a map."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, list) and data and all(isinstance(v, str) for v in data):
        return {str(i): v for i, v in enumerate(data)}
    if not isinstance(data, dict) or not data:
        return None
    keys, values = [str(k) for k in data], list(data.values())
    if all(re.fullmatch(r"[+-]?\d+", k) for k in keys) and all(isinstance(v, str) for v in values):
        return {str(int(k)): v for k, v in zip(keys, values)}
    if all(isinstance(v, int) for v in values):
        return {str(v): k for k, v in zip(keys, values)}
    return None


def examine(paths: list[tuple[Path, str]], index: FileIndex, meaning, path_column: str, label_column: str,
            group_column: str) -> list[Table]:
    """Read every CSV (a sniff of its first rows) and say what it is: labels, sample submission, label map, …"""
    tables = []
    for path, shown in paths:
        table = Table(path=path, shown=shown)
        tables.append(table)
        try:
            sniff = read_csv(path, SNIFF_ROWS)
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            table.reason = f"not readable as CSV ({str(exc).splitlines()[0][:80]})"
            continue
        table.columns = [str(c) for c in sniff.columns]
        if is_sample_submission(path.name):
            table.role, table.reason = "sample submission", "a sample submission: names the test images, no labels"
            table.frame = read_csv(path)
            table.path_column = max(_path_scores(table.frame, index).items(), key=lambda t: t[1],
                                    default=("", 0))[0]
            continue
        if len(sniff.columns) > MAX_COLUMNS:
            table.reason = f"a table of {len(sniff.columns)} columns (pixel values?), not a list of image files"
            continue
        if path_column and path_column in table.columns:
            scores = {path_column: _path_scores(sniff[[path_column]], index)[path_column]}
        else:
            scores = _path_scores(sniff, index)
        best = max(scores.values(), default=0)
        if best == 0:
            mapping = label_map_from_table(read_csv(path))
            if mapping:
                table.role, table.reason = "label map", f"maps {len(mapping)} integer labels to class names"
            else:
                table.reason = f"none of its columns {table.columns} names an image file found in the dataset"
            continue
        tops = [c for c, s in scores.items() if s == best]
        if len(tops) > 1:
            table.role, table.reason = "undecided", (f"{shown}: columns {tops} all name image files; "
                                                     "set path_column to the one to use.")
            continue
        table.frame = read_csv(path)
        table.path_column, table.matches = tops[0], best
        table.split_column = _split_column(table.frame.drop(columns=[tops[0]]), meaning)
        if group_column and group_column in table.columns:
            table.group_column = group_column
        table.role = "labels"
        table.reason = (f"its column {tops[0]!r} names image files ({best} of its first "
                        f"{min(SNIFF_ROWS, len(sniff))} rows)")
        if table.split_column:
            table.reason += f"; the given split from {table.split_column!r}"
        _choose_label_column(table, label_column if label_column in table.columns else "")
    return tables


def group_hint(table: Table) -> str:
    """A sentence suggesting group_column when a column looks like a subject id that repeats."""
    for c in table.columns:
        if c != table.group_column and any(h in _norm(c) for h in GROUP_HINTS):
            n = table.frame[c].nunique()
            if 1 < n < len(table.frame):
                return (f"column {c!r} repeats ({n} values over {len(table.frame)} rows): if it names a patient, "
                        f"lesion or animal, set group_column={c!r} so its images stay in one split")
    return ""


def rows(table: Table, index: FileIndex) -> tuple[list[tuple[str, str, str, str]], list[dict]]:
    """(path, label, given split, group) per row of the labelling CSV, and the rows that name no file."""
    frame = table.frame
    items, skipped, seen = [], [], {}
    splits = frame[table.split_column] if table.split_column else [""] * len(frame)
    groups = frame[table.group_column] if table.group_column else [""] * len(frame)
    for value, label, given, group in zip(frame[table.path_column], frame[table.label_column], splits, groups):
        found = index.find(value)
        if not found:
            skipped.append({"path": value, "reason": f"listed in {table.shown} but not found"})
            continue
        if len(found) > 1:
            raise DataError(f"{table.shown}: {table.path_column} value {value!r} matches {len(found)} files "
                            f"({', '.join(found[:4])}); write paths relative to the dataset folder in that "
                            "column so that each row names one file.")
        rel = found[0]
        if rel in seen:
            skipped.append({"path": rel, "reason": f"listed twice in {table.shown} (row of {seen[rel]!r} kept)"})
            continue
        seen[rel] = value
        items.append((rel, str(label).strip(), given.strip(), str(group).strip()))
    return items, skipped


def apply_label_map(labels: list[str], mapping: dict[str, str], source: str, map_name: str) -> list[str]:
    """Integer labels as class names; a label the map lacks is an error naming both files."""
    keys = [str(int(v)) for v in labels]
    missing = sorted(set(keys) - set(mapping), key=int)
    if missing:
        raise DataError(f"labels {missing} of {source} are not in the label map {map_name} (it maps "
                        f"{sorted(mapping, key=int)}); add them to the map or remove those rows.")
    return [mapping[k] for k in keys]
