"""Layouts: find the data root of a dataset, tell how it is organised, list its labelled images, explain why.

Recognised: class folders (root/<class>/…), given splits (train/val/test folders by meaning: seg_train,
Training, Train_set, dev, …, even repeated one level down), a labelling CSV (chosen by evidence, see
csvlayout), and labels in file names (cat.1.jpg). Around them: one folder around everything, a copy
of the tree inside itself (chest_xray/chest_xray), unlabelled folders (test1/, seg_pred/, the images a
sample submission names), hidden debris (__MACOSX, dot files). Every folder and CSV at the data root
gets a row in the explanation: what it was read as and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from helpers.data import csvlayout
from helpers.data.archives import archive_stem, is_archive
from helpers.data.errors import DataError
from helpers.data.images import is_image_name
from helpers.data.tree import (
    LAYOUTS,
    SPLITS,
    Layout,
    Tree,
    join,
    label_from_name,
    shown,
    split_meaning,
)


def _descend(tree: Tree, rel: str, out: Layout) -> str:
    """Step through folders that only wrap the data (one folder, no data files beside it)."""
    while True:
        dirs = [d for d in tree.dirs[rel] if join(rel, d) not in tree.copies(rel)]
        data_files = [f for f in tree.files[rel] if is_image_name(f) or f.lower().endswith((".csv", ".json"))]
        if len(dirs) != 1 or data_files or split_meaning(dirs[0]):
            return rel
        inner = join(rel, dirs[0])
        if not tree.dirs[inner] and not any(f.lower().endswith(".csv") for f in tree.files[inner]):
            return rel  # a single class folder: let the class check say so
        out.explain(rel, "wrapper", f"holds only the folder {dirs[0]!r}: the data root is inside it")
        rel = inner


def _unrepeat(tree: Tree, rel: str, meaning: str) -> tuple[str, bool]:
    """seg_train/seg_train → the inner folder: a split folder repeated one level down."""
    repeated = False
    while len(tree.dirs[rel]) == 1 and not tree.images(rel) and split_meaning(tree.dirs[rel][0]) == meaning:
        rel, repeated = join(rel, tree.dirs[rel][0]), True
    return rel, repeated


def _name_labels(names: list[str]) -> bool:
    """True when file names carry labels: two words at least, on at least half of the images."""
    labels = [label_from_name(n) for n in names]
    return len({x for x in labels if x}) >= 2 and sum(bool(x) for x in labels) * 2 >= len(labels)


@dataclass
class _Folders:
    """The folders at the data root, sorted by what they can be."""

    splits: list[tuple[str, str, str]] = field(default_factory=list)  # rel, meaning, reason: class subfolders
    flat: list[tuple[str, str]] = field(default_factory=list)  # rel, meaning: images without class folders
    unlabelled: list[str] = field(default_factory=list)  # named so (pred, unlabelled)
    classes: list[str] = field(default_factory=list)  # other folders with images
    copies: list[str] = field(default_factory=list)


def _sort_folders(tree: Tree, r: str, out: Layout) -> _Folders:
    """Look at every folder of the data root once."""
    f = _Folders(copies=tree.copies(r))
    for rel in f.copies:
        out.explain(rel, "ignored", f"a copy of the folder it sits in ({tree.below[rel]} images): read once")
    for d in tree.dirs[r]:
        rel = join(r, d)
        if rel in f.copies:
            continue
        meaning = split_meaning(d)
        if not tree.below[rel]:
            out.explain(rel, "ignored", "holds no image")
        elif meaning in SPLITS:
            inner, repeated = _unrepeat(tree, rel, meaning)
            why = f"split folder: {d!r} means {meaning}" + ("; repeated one level down" if repeated else "")
            if tree.has_classes(inner):
                f.splits.append((inner, meaning, why))
            else:
                f.flat.append((inner, meaning))
        elif meaning == "unlabelled":
            f.unlabelled.append(rel)
        else:
            f.classes.append(rel)
    return f


def _class_items(tree: Tree, out: Layout, folder: str, label: str, given: str, skip: set[str]) -> None:
    """Every file below a class folder becomes an item (non-images are skipped later, with a reason)."""
    for rel in tree.walk(folder, skip):
        if not _unpacked(tree, rel):
            out.items.append((_relative(rel, out.root_rel), label, given, ""))


def _unpacked(tree: Tree, rel: str) -> bool:
    """True for an archive already unpacked beside itself (train.zip beside train/)."""
    parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
    return is_archive(Path(rel)) and join(parent, archive_stem(Path(rel))) in tree.dirs


def _relative(rel: str, root_rel: str) -> str:
    """A path relative to the scanned folder, made relative to the data root."""
    return rel[len(root_rel) + 1:] if root_rel else rel


def _outside(tree: Tree, out: Layout, folder: str) -> None:
    """Images lying beside class folders belong to no class: skipped, named."""
    for name in tree.images(folder):
        out.skipped.append({"path": _relative(join(folder, name), out.root_rel),
                            "reason": "file outside any class folder"})


def _filename_items(tree: Tree, out: Layout, folder: str, given: str) -> None:
    """Images whose names carry their label (cat.1.jpg); the others are skipped, named."""
    for name in tree.images(folder):
        rel = _relative(join(folder, name), out.root_rel)
        label = label_from_name(name)
        if label:
            out.items.append((rel, label, given, ""))
        else:
            out.skipped.append({"path": rel, "reason": "no label in the file name"})


def _explain_files(tree: Tree, r: str, out: Layout, tables: list) -> None:
    """Rows for the files at the data root that are not images: CSVs, label maps, archives, the rest."""
    described = {t.shown for t in tables}
    for name in tree.files[r]:
        rel = join(r, name)
        if rel in described or is_image_name(name):
            continue
        if is_archive(Path(name)):
            stem = archive_stem(Path(name))
            done = stem in tree.dirs[r]
            out.explain(rel, "ignored", f"archive, unpacked into {stem}/" if done else "archive, not unpacked")
        elif name.lower().endswith(".json") and csvlayout.label_map_from_json(tree.top / rel):
            out.explain(rel, "label map", "maps integer labels to class names")
        else:
            out.explain(rel, "ignored", "not an image, a CSV or a label map")


def _csv_layout(out: Layout, table, tables: list, index: csvlayout.FileIndex) -> None:
    """Items from the labelling CSV; the images it does not label are listed as unlabelled, by folder."""
    out.kind = "csv"
    out.explain(table.shown, "labels", table.reason)
    items, skipped = csvlayout.rows(table, index)
    blank = [p for p, label, *_ in items if not label]  # a row without a label: unlabelled, never a class ''
    items = [item for item in items if item[1]]
    out.items += [(p, label, given if split_meaning(given) not in SPLITS else split_meaning(given), g)
                  for p, label, given, g in items]
    out.skipped += skipped
    hint = csvlayout.group_hint(table)
    if hint:
        out.hints.append(hint)
    labelled = {p for p, *_ in items}
    named: dict[str, str] = {}
    for p in blank:
        named[p] = f"their {table.label_column!r} cell in {table.shown} is blank"
    for t in tables:
        if t is table or t.frame is None or not t.path_column:
            continue
        why = (f"named in {t.shown}, the sample submission" if t.role == "sample submission"
               else f"listed in {t.shown}, which has no labels")
        for v in t.frame[t.path_column]:
            for p in index.find(v):
                named.setdefault(p, why)
    folders: dict[tuple[str, str], list[str]] = {}
    for p in sorted(index.rels - labelled):
        folder = p.rsplit("/", 1)[0] if "/" in p else ""
        folders.setdefault((folder, named.get(p, f"not listed in {table.shown}")), []).append(p)
    for (folder, why), members in folders.items():
        rel = join(out.root_rel, folder) if folder else out.root_rel
        if why.endswith("is blank"):  # name the files: each is a row the user may want to fill in
            why += f" ({', '.join(m.rsplit('/', 1)[-1] for m in members[:5])}{', …' if len(members) > 5 else ''})"
        out.unlabelled.append({"path": shown(rel), "images": len(members), "reason": why})
        out.explain(rel, "unlabelled", f"{len(members)} images: {why}")
    for rel in {join(out.root_rel, p.rsplit("/", 1)[0]) for p in labelled if "/" in p}:
        if shown(rel) not in {row["path"] for row in out.explained}:
            out.explain(rel, "images", f"images labelled by {table.shown}")


def _choose_table(tables: list, label_column: str, root_shown: str):
    """The one labelling CSV, or None; an error listing the candidates when evidence cannot decide."""
    labelling = [t for t in tables if t.role == "labels"]
    if label_column:
        labelling = [t for t in labelling if label_column in t.columns]
    if len(labelling) > 1:
        preferred = [t for t in labelling if split_meaning(t.path.stem) == "train"
                     or re.search(r"label|meta", t.path.stem, re.I)]
        labelling = preferred if len(preferred) == 1 else labelling
    if len(labelling) > 1:
        names = ", ".join(f"{t.shown} (labels in {t.label_column!r})" for t in labelling)
        raise DataError(f"several CSVs under {root_shown} label the images: {names}; set label_column to a "
                        "column only the one to use has, or remove the others.")
    return labelling[0] if labelling else None


def _label_maps(tree: Tree, r: str, tables: list) -> list[tuple[str, dict[str, str]]]:
    """Class-name maps the dataset ships: JSON files and two-column CSVs at the data root."""
    maps = [(t.shown, csvlayout.label_map_from_table(csvlayout.read_csv(t.path)))
            for t in tables if t.role == "label map"]
    for name in tree.files[r]:
        if name.lower().endswith(".json"):
            mapping = csvlayout.label_map_from_json(tree.top / join(r, name))
            if mapping:
                maps.append((join(r, name), mapping))
    return sorted(maps)


def _map_labels(tree: Tree, r: str, out: Layout, tables: list, source: str) -> None:
    """Integer labels become class names when the dataset ships a map for them."""
    labels = [label for _, label, _, _ in out.items]
    if not labels or not all(re.fullmatch(r"[+-]?\d+", x) for x in labels):
        return
    maps = _label_maps(tree, r, tables)
    if not maps:
        return
    name, mapping = maps[0]
    mapped = csvlayout.apply_label_map(labels, mapping, source, name)
    out.items = [(p, m, g, grp) for (p, _, g, grp), m in zip(out.items, mapped)]
    out.explain(name, "label map", f"integer labels of {source} mapped to class names"
                + (f" (first of {len(maps)} maps)" if len(maps) > 1 else ""))


def detect(top: Path, layout: str = "auto", label_column: str = "", path_column: str = "",
           group_column: str = "") -> Layout:
    """Find the data root below `top`, decide the layout (or take the one given) and list the labelled images."""
    if layout not in LAYOUTS:
        raise DataError(f"layout={layout!r}: choose one of {list(LAYOUTS)}.")
    tree = Tree(top)
    out = Layout(kind="", top=top, root_rel="")
    r = out.root_rel = _descend(tree, "", out)
    folders = _sort_folders(tree, r, out)
    skip = set(folders.copies)
    csvs = [(top / join(r, n), join(r, n)) for n in tree.files[r] if n.lower().endswith(".csv")]
    csvs += [(top / join(join(r, d), n), join(join(r, d), n)) for d in tree.dirs[r] if join(r, d) not in skip
             for n in tree.files[join(r, d)] if n.lower().endswith(".csv")]
    tables, table, index = [], None, None
    if csvs and layout in ("auto", "csv"):
        index = csvlayout.FileIndex([_relative(p, r) for p in tree.walk(r, skip) if is_image_name(p)])
        tables = csvlayout.examine(csvs, index, split_meaning, path_column, label_column, group_column)
        table = _choose_table(tables, label_column, str(top / r))
    if table is None and (layout == "csv" or label_column or path_column):
        _no_csv(tables, str(top / r), layout, label_column, path_column)
    if group_column and table is None:
        raise DataError(f"group_column={group_column!r} needs a CSV layout, but {top / r} was not read as one; "
                        "leave group_column empty or add a CSV of file names, labels and groups.")
    if table is not None:
        if group_column and group_column not in table.columns:
            raise DataError(f"group_column={group_column!r} is not a column of {table.shown}; "
                            f"its columns are {table.columns}.")
        _csv_layout(out, table, tables, index)
    else:
        _folder_layout(tree, r, out, folders, layout, tables, skip)
    for t in tables:
        if t is not table:
            out.explain(t.shown, t.role if t.role in ("sample submission", "label map") else "ignored",
                        t.reason if t.role != "undecided" else t.reason.split(": ", 1)[-1])
    _explain_files(tree, r, out, tables)
    _map_labels(tree, r, out, tables, table.shown if table is not None else "the folder names")
    return out


def _no_csv(tables: list, root_shown: str, layout: str, label_column: str, path_column: str) -> None:
    """The error when a CSV layout was asked for (by layout or a column parameter) and none can be read."""
    undecided = [t.reason for t in tables if t.role in ("undecided", "unlabelled")]
    if undecided:
        raise DataError(undecided[0])
    if not tables:
        raise DataError(f"{root_shown} holds no CSV, so layout={layout!r} / label_column / path_column cannot "
                        "apply; set layout=auto for folders.")
    described = "; ".join(f"{t.shown}: {t.reason}" for t in tables)
    asked = "path_column" if path_column else "label_column" if label_column else "layout=csv"
    raise DataError(f"no CSV under {root_shown} labels the images ({described}); check {asked}.")


def _folder_layout(tree: Tree, r: str, out: Layout, f: _Folders, layout: str, tables: list, skip: set[str]) -> None:
    """Class folders, given splits or labels in file names; the folders left out are explained."""
    named_flat = [(rel, m) for rel, m in f.flat if _name_labels(tree.images(rel))]
    root_named = _name_labels(tree.images(r))
    if layout == "class_folders":
        kind = "class_folders"
        f.classes += [rel for rel, *_ in f.splits] + [rel for rel, _ in f.flat] + f.unlabelled
        f.splits, f.flat, f.unlabelled = [], [], []
    elif layout == "presplit" or (layout == "auto" and f.splits):
        kind = "presplit"
        if not f.splits:
            raise DataError(f"layout='presplit': no train/val/test folder with class subfolders under "
                            f"{tree.top / r} (its folders: {tree.dirs[r]}); set layout=auto or class_folders.")
    elif layout == "filenames" or (layout == "auto" and (named_flat or root_named)):
        kind = "filenames"
        if not (named_flat or root_named):
            raise DataError(f"layout='filenames': no folder under {tree.top / r} holds images named like "
                            "'<label>.<n>.jpg'; set layout=auto.")
    elif len(f.classes) > 1 or (f.classes and (layout != "auto" or not _unmatched(tables))):
        kind = "class_folders"  # one folder beside a CSV that names nothing: the CSV is the culprit
    else:
        _no_layout(tree, r, f, tables)
    out.kind = kind
    if kind == "class_folders":
        for rel in f.classes:
            out.explain(rel, "class", f"class folder ({tree.below[rel]} images)")
            _class_items(tree, out, rel, rel.rsplit("/", 1)[-1], "", skip)
        _outside(tree, out, r)
    elif kind == "presplit":
        for rel, meaning, why in f.splits:
            out.explain(rel, meaning, f"{why}; {len(tree.dirs[rel])} class folders")
            for d in tree.dirs[rel]:
                _class_items(tree, out, join(rel, d), d, meaning, skip)
            _outside(tree, out, rel)
        for rel in f.classes:
            if tree.has_classes(rel):
                out.explain(rel, "ignored", "not a split folder name, beside split folders")
            else:
                out.leave_out(tree, rel, "images without class folders, beside labelled split folders")
        _outside(tree, out, r)
    else:
        if root_named:
            out.explain(r, "train", "labels from file names (cat.1.jpg → cat)")
            _filename_items(tree, out, r, "")
        for rel, meaning in named_flat:
            out.explain(rel, meaning, f"split folder: {rel.rsplit('/', 1)[-1]!r} means {meaning}; "
                        "labels from file names (cat.1.jpg → cat)")
            _filename_items(tree, out, rel, meaning)
        for rel in f.classes:
            out.explain(rel, "ignored", "a folder beside images labelled by their names")
    for rel, meaning in f.flat:
        if (rel, meaning) not in named_flat or kind != "filenames":
            out.leave_out(tree, rel, f"images without class folders ({rel.rsplit('/', 1)[-1]!r} means {meaning}; "
                          "no labels in names)" if meaning != "test" else
                          f"test images without labels ({rel.rsplit('/', 1)[-1]!r}: no class folders)")
    for rel in f.unlabelled:
        out.leave_out(tree, rel, f"{rel.rsplit('/', 1)[-1]!r} names images to predict, without labels")


def _unmatched(tables: list) -> list:
    """CSVs that could have labelled the images but did not: undecided columns, or naming no existing file."""
    return [t for t in tables if t.role in ("undecided", "unlabelled")
            or (t.role == "ignored" and t.columns and "names an image" in t.reason)]


def _no_layout(tree: Tree, r: str, f: _Folders, tables: list) -> None:
    """The error when no layout fits, naming what was there and what to set."""
    for t in tables:
        if t.role in ("undecided", "unlabelled"):
            raise DataError(t.reason)
    unmatched = _unmatched(tables)
    if unmatched:
        t = unmatched[0]
        raise DataError(f"{t.shown}: none of its columns {t.columns} names an image file found below "
                        f"{tree.top / r}; check the file names in it, or set path_column.")
    if f.flat:
        names = [rel.rsplit("/", 1)[-1] for rel, _ in f.flat]
        raise DataError(f"{tree.top / r}: its folders {names} are split folders but hold no class folders; put "
                        "the images in <split>/<class>/, add a CSV of file names and labels, or set "
                        "layout=filenames when the file names carry the labels.")
    raise DataError(f"{tree.top / r} holds no class folders: put the images in one subfolder per class "
                    "(root/<class>/image.jpg), or add a CSV of file names and labels.")
