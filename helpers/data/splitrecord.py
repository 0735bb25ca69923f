"""The split as part of a run's record: once a run has trained on it, no rerun of 02 may change it silently.

Which file is in which split is compared by a hash of path → split (and each file's label and content); a
change under trained checkpoints is refused with what changed and the two ways on — a new run_id, or
`restart_training`, which moves the run's trained record aside (never deletes it) so training starts over.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pandas as pd

from helpers.data.errors import DataError
from helpers.utils import files

SUPERSEDED = "superseded"
# What a run trained on the old split produced; split.csv and data_report.json go along to keep the record whole.
TRAINED_RECORD = ("checkpoints", "cycles.csv", "history.csv", "evaluations", "metrics.json", "predictions.csv",
                  "predictions", "export", "figures", "split.csv", "data_report.json", "label_issues.csv")


def assignment_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of the sorted `path<TAB>split` lines: equal exactly when every file is in the same split."""
    lines = sorted(f"{p}\t{s}" for p, s in zip(frame["path"], frame["split"]))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def has_trained(run_dir: Path) -> bool:
    """Whether any checkpoint of the run exists (a cycle trained on its split)."""
    folder = Path(run_dir) / "checkpoints"
    return folder.is_dir() and any(folder.rglob("*.pt"))


def differences(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, int]:
    """How many files changed split, are new, are gone, changed label or changed content."""
    a, b = old.set_index("path"), new.set_index("path")
    both = a.index.intersection(b.index)
    return {"moved": int((a.loc[both, "split"] != b.loc[both, "split"]).sum()),
            "added": int(len(b.index.difference(a.index))), "removed": int(len(a.index.difference(b.index))),
            "relabelled": int((a.loc[both, "label"].astype(str) != b.loc[both, "label"].astype(str)).sum()),
            "changed": int((a.loc[both, "sha256"] != b.loc[both, "sha256"]).sum())}


def _changed_parameters(old: dict, new: dict) -> list[str]:
    """`group_column '' → 'lesion_id'` for each split parameter whose recorded value differs."""
    before = old.get("split_parameters") or {k: old[k] for k in ("seed", "ratios") if k in old}
    after = new.get("split_parameters", {})
    out = [f"{k} {before[k]!r} → {after[k]!r}" for k in after if k in before and before[k] != after[k]]
    if old.get("root") and new.get("root") and old["root"] != new["root"]:
        out.append(f"the dataset's folder {old['root']} → {new['root']}")
    return out


def change_sentence(run_dir: Path, old: pd.DataFrame, new: pd.DataFrame, old_report: dict, new_report: dict) -> str:
    """The refusal: what changed, and the two ways on."""
    diff = differences(old, new)
    words = {"moved": "change split", "added": "are new", "removed": "are gone", "relabelled": "change label",
             "changed": "change content"}
    what = ", ".join(f"{n} image(s) {words[k]}" for k, n in diff.items() if n) or "the split differs"
    params = _changed_parameters(old_report, new_report)
    why = f" (changed: {'; '.join(params)})" if params else ""
    name = Path(run_dir).name
    return (f"run {name!r} has trained on its split ({Path(run_dir) / 'split.csv'}) and this 02 would change it: "
            f"{what}{why}; evaluating or continuing its checkpoints on the new split would mix test and training "
            f"images — use a new run_id for the new split, or run 02 with restart_training=True to move this run's "
            f"checkpoints and ledger aside (into runs/{name}/{SUPERSEDED}/) and train it afresh.")


def set_aside(run_dir: Path) -> Path:
    """Move the run's trained record into runs/<id>/superseded/<time>/ (nothing is deleted); return that folder."""
    run_dir = Path(run_dir)
    target = run_dir / SUPERSEDED / time.strftime("%Y%m%d-%H%M%S")
    while target.exists():
        target = target.with_name(target.name + "+")
    files.make_folder(target)
    for name in TRAINED_RECORD:
        if (run_dir / name).exists():
            (run_dir / name).rename(target / name)
    files.fsync_folder(target)
    files.fsync_folder(run_dir)
    return target


def guard(run_dir: Path, frame: pd.DataFrame, report: dict, restart_training: bool = False) -> Path | None:
    """Before split.csv is written: refuse a change under trained checkpoints, or set the old record aside.

    Returns the folder the old record went to when `restart_training` moved it, else None.
    """
    run_dir = Path(run_dir)
    split_path = run_dir / "split.csv"
    if not split_path.exists() or not has_trained(run_dir):
        return None
    old = pd.read_csv(split_path, dtype=str, keep_default_na=False)
    report_path = run_dir / "data_report.json"
    old_report = files.read_json(report_path) if report_path.exists() else {}
    new = frame[["path", "label", "split", "sha256"]].astype(str)
    if not any(differences(old, new).values()):
        return None
    if not restart_training:
        raise DataError(change_sentence(run_dir, old, new, old_report, report))
    return set_aside(run_dir)
