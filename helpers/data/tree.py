"""The dataset's files as a tree (what each folder holds), the names that mean a split or a label, and `Layout`:
what detection found, with an explanation row for every folder and CSV at the data root."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from helpers.data.archives import is_hidden
from helpers.data.images import is_image_name

LAYOUTS = ("auto", "class_folders", "presplit", "csv", "filenames")
SPLIT_WORDS = {
    "train": {"train", "training", "trn", "trainset", "trainingset"},
    "val": {"val", "valid", "validation", "validate", "dev", "valset", "validset"},
    "test": {"test", "testing", "tst", "eval", "evaluation", "testset"},
    "unlabelled": {"pred", "predict", "prediction", "predictions", "unlabeled", "unlabelled", "unknown",
                   "inference"},
}
SPLITS = ("train", "val", "test")


def split_meaning(name: str) -> str:
    """What a folder name means as a split — 'train', 'val', 'test', 'unlabelled' — or '' for none."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    tokens = set(re.findall(r"[a-z]+", spaced.lower()))
    meanings = {m for m, words in SPLIT_WORDS.items() if tokens & words}
    return meanings.pop() if len(meanings) == 1 else ""


def label_from_name(name: str) -> str:
    """'cat.12.jpg' or 'cat_12.png' → 'cat' (Kaggle's dogs-vs-cats style); '' when there is no word label."""
    stem = name.rsplit(".", 1)[0]
    for sep in (".", "_", "-"):
        if sep in stem:
            head = stem.split(sep, 1)[0]
            return head if head and not head.isdigit() else ""
    return ""


def join(rel: str, name: str) -> str:
    """A path relative to the scanned folder, '' being the folder itself."""
    return f"{rel}/{name}" if rel else name


def shown(rel: str) -> str:
    """A relative path as the explanation table shows it."""
    return rel or "."


class Tree:
    """The visible folders and files below `top`, read once (links followed, hidden entries left out)."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.dirs: dict[str, list[str]] = {}
        self.files: dict[str, list[str]] = {}
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
            rel = Path(dirpath).relative_to(top).as_posix()
            rel = "" if rel == "." else rel
            dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
            self.dirs[rel] = list(dirnames)
            self.files[rel] = sorted(f for f in filenames if not is_hidden(f))
        self.below: dict[str, int] = {}
        for rel in sorted(self.dirs, key=lambda r: -r.count("/") if r else 1):  # deepest first
            self.below[rel] = self.images(rel).__len__() + sum(self.below.get(join(rel, d), 0)
                                                                 for d in self.dirs[rel])

    def images(self, rel: str) -> list[str]:
        """Image file names directly in a folder."""
        return [f for f in self.files.get(rel, []) if is_image_name(f)]

    def has_classes(self, rel: str) -> bool:
        """True when a folder holds subfolders that hold images."""
        return any(self.below[join(rel, d)] for d in self.dirs[rel])

    def walk(self, rel: str, skip: set[str] = frozenset()) -> list[str]:
        """Every visible file below a folder, as paths relative to top, in sorted order."""
        out, stack = [], [rel]
        while stack:
            here = stack.pop()
            out += [join(here, f) for f in self.files[here]]
            stack += [join(here, d) for d in reversed(self.dirs[here]) if join(here, d) not in skip]
        return sorted(out)

    def copies(self, rel: str) -> list[str]:
        """Subfolders that repeat the folder they sit in (chest_xray/chest_xray): read once, not twice."""
        name = (rel.rsplit("/", 1)[-1] if rel else self.top.name).lower()
        here = set(self.dirs[rel]) | set(self.files[rel])
        out = []
        for d in self.dirs[rel]:
            inner = set(self.dirs[join(rel, d)]) | set(self.files[join(rel, d)])
            others = here - {d}
            if inner and ((d.lower() == name and inner & others) or (len(others) >= 2 and inner == others)):
                out.append(join(rel, d))
        return out


@dataclass
class Layout:
    """What was found: the layout, the data root, the labelled items and everything left out, with reasons."""

    kind: str
    top: Path
    root_rel: str
    items: list[tuple[str, str, str, str]] = field(default_factory=list)  # path, label, given split, group
    skipped: list[dict] = field(default_factory=list)
    unlabelled: list[dict] = field(default_factory=list)
    explained: list[dict] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The data root: split.csv's paths are relative to it."""
        return self.top / self.root_rel if self.root_rel else self.top

    def explain(self, rel: str, role: str, reason: str) -> None:
        """Add a row to the explanation table."""
        self.explained.append({"path": shown(rel), "role": role, "reason": reason})

    def leave_out(self, tree: Tree, rel: str, reason: str) -> None:
        """Record a folder of unlabelled images (left out of the split) and say why."""
        self.unlabelled.append({"path": shown(rel), "images": tree.below[rel], "reason": reason})
        self.explain(rel, "unlabelled", reason)
