"""The report's sections 1–3 and its provenance as data: each function reads a run's artifacts and returns
what its section shows (section 4 is helpers.reporting.results).

Numbers are formatted here and put into sentences from strings.yaml; templates/REPORT.md.j2 lays the sections
out. No number is typed in: every one comes from an artifact of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.params.schema import late_epochs
from helpers.reporting import studytables
from helpers.reporting.texts import strings, translate
from helpers.utils import files


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals."""
    return f"{100 * float(x):.2f}%"


def given(value) -> bool:
    """True for a filled cell of a CSV (not NaN, not empty)."""
    return value is not None and not pd.isna(value) and str(value) != ""


@dataclass
class Run:
    """One run's artifacts, read once, and the report's words in its language."""

    run_id: str
    dir: Path
    lang: str
    words: dict = field(default_factory=dict)  # strings.yaml in `lang`
    params: dict = field(default_factory=dict)

    @classmethod
    def open(cls, run_id: str, run_dir: Path, lang: str) -> "Run":
        run = cls(run_id, Path(run_dir), lang, strings(lang))
        run.params = run.read("params.json") or {}
        return run

    @property
    def t(self) -> dict:
        """The report's own words."""
        return self.words["report"]

    def read(self, name: str):
        """An artifact of the run (a frame for CSV, the content for JSON), or None when it does not exist."""
        p = self.dir / name
        if not p.exists():
            return None
        return pd.read_csv(p) if p.suffix == ".csv" else files.read_json(p)

    def parameters(self, notebook: str | None = None, key: str = "parameters") -> dict:
        """The parameters one notebook (or, merged, every notebook) ran with, from params.json."""
        books = self.params.get("notebooks", {})
        if notebook:
            return books.get(notebook, {}).get(key, {})
        return {k: v for nb in books.values() for k, v in nb.get(key, {}).items()}

    def figures(self) -> list[str]:
        """The names of the run's figures."""
        folder = self.dir / "figures"
        return sorted(p.name for p in folder.glob("*.png")) if folder.exists() else []

    def word(self, table: str, value) -> str:
        """A value in words from one of the report's word tables (the value itself where it has none)."""
        return self.t.get(table, {}).get(str(value), str(value))


def study(run: Run) -> dict:
    """Section 1: the write-up's table, then (when 01 ran) how it was measured, the figures and the claims."""
    out = {"qualitative": studytables.qualitative_table(run.lang).to_markdown(index=False), "note": "", "table": "",
           "claims": ""}
    research = run.read("research.csv")
    if research is None or not len(research):
        return out
    memory = run.read("research_memory.csv")
    repeats = run.parameters("01_research").get("research_repeats")
    checks = studytables.claim_checks(research, run.lang, memory)
    return out | {"note": studytables.study_note(research, run.lang, memory, repeats),
                  "table": studytables.as_markdown(studytables.readable(research, run.lang)),
                  "claims": checks.to_markdown(index=False) if len(checks) else ""}


def _data_facts(run: Run, data: dict) -> list[str]:
    """Section 2's list: source, layout, sizes, the split and what was left out."""
    t = run.t
    ratios = "/".join(f"{round(100 * r)}" for r in data["ratios"])
    totals = data["split_totals"]
    dataset = run.parameters().get("dataset", run.parameters(key="resolved").get("dataset", "?"))
    return [f"{t['source']}: `{dataset}`",
            f"{t['layout']}: {run.word('layouts', data['layout'])}",
            f"{t['images']}: {data['n_images']}, {t['classes']}: {len(data['classes'])}",
            f"{t['split']}: {ratios} % ({t['seed']} {data['seed']}): "
            f"{totals['train']} / {totals['val']} / {totals['test']}",
            f"{t['skipped']}: {len(data['skipped'])}",
            f"{t['dups']}: {len(data['duplicate_groups'])}, {t['conflicts']}: {len(data['conflicting_duplicates'])}"]


def _read_as(run: Run, data: dict, limit: int = 20) -> dict:
    """How 02 read the dataset and which files it skipped, its English reasons in the report's language."""
    reasons = run.words["phrases"]["reasons"]
    read_as = pd.DataFrame([[f"`{r['path']}`", run.word("roles", r["role"]), translate(r["reason"], reasons, run.lang)]
                            for r in data.get("explanation", [])[:limit]], columns=run.t["read_as_head"])
    skipped = pd.DataFrame([[s["path"], translate(s["reason"], reasons, run.lang)] for s in data["skipped"][:limit]],
                           columns=run.t["skipped_head"])
    return {"read_as": read_as.to_markdown(index=False) if len(read_as) else "",
            "skipped_table": skipped.to_markdown(index=False) if len(skipped) else ""}


def _imbalance(run: Run, report: dict) -> str:
    """The largest-to-smallest class ratio in a sentence, and the suggestion past the threshold (02's balance)."""
    imb, t = report.get("imbalance") or {}, run.t
    if not imb.get("ratio"):
        return ""
    said = t["imbalance"].format(largest=imb["largest"], ln=imb["largest_n"], smallest=imb["smallest"],
                                 sn=imb["smallest_n"], ratio=f"{imb['ratio']:.1f}")
    verdict = t["imbalance_yes" if imb["imbalanced"] else "imbalance_no"]
    return said + " " + verdict.format(threshold=f"{imb['threshold']:g}")


def _label_issues(run: Run, report: dict) -> dict:
    """02's label-issue search: how many were flagged per class and split, the method, what was left out."""
    found, t = report.get("label_issues"), run.t
    if not found:
        return {}
    per_class = pd.DataFrame([[c, v["images"], v["flagged"]] for c, v in found["per_class"].items()],
                             columns=t["labels_head"])
    by_split = found.get("by_split", {})
    splits = ", ".join(f"{run.word('roles', s)} {by_split[s]}" for s in ("train", "val", "test")
                       if s in by_split) or "–"
    total = sum(int(v["images"]) for v in found["per_class"].values())
    reasons = run.words["phrases"]["reasons"]
    lines = [t["labels_found"].format(n=found["n_flagged"], total=total, splits=splits,
                                      oof=pct(found.get("out_of_fold_accuracy") or 0)),
             t["labels_excluded"].format(n=len(found.get("excluded", []))) if found.get("mode") == "exclude_train"
             else t["labels_report"],
             t["labels_hints"].format(outliers=found.get("n_outliers", 0), near=found.get("n_near_duplicates", 0))]
    lines += [translate(n, reasons, run.lang) for n in found.get("notes", [])]
    return {"lines": lines, "method": found["method"], "table": per_class.to_markdown(index=False)}


def data(run: Run) -> dict | None:
    """Section 2: the dataset, its split per class, notes, leaks, how it was read (None before 02 ran)."""
    report = run.read("data_report.json")
    if not report:
        return None
    t, reasons = run.t, run.words["phrases"]["reasons"]
    counts = pd.DataFrame([[c, d["train"], d["val"], d["test"], d["train"] + d["val"] + d["test"]]
                           for c, d in report["counts"].items()], columns=t["counts_head"])
    unlabelled = sum(int(u.get("images", 0)) for u in report.get("unlabelled", []))
    return {"facts": _data_facts(run, report), "counts": counts.to_markdown(index=False),
            "notes": [translate(n, reasons, run.lang) for n in report.get("notes", [])],
            "leaks": t["leaks"].format(n=len(report["leaks"])) if report.get("leaks") else "",
            "group_leaks": t["group_leaks"].format(n=len(report["group_leaks"]), column=report["groups"]["column"])
            if report.get("group_leaks") else "",
            "unlabelled": f"{t['unlabelled']}: {unlabelled}" if unlabelled else "",
            "imbalance": _imbalance(run, report), "label_issues": _label_issues(run, report)} | _read_as(run, report)


def _recipe(run: Run) -> str:
    """03's recipe in one sentence, from the parameters it ran with ('' when params.json does not say)."""
    rec = run.parameters("03_train")
    if not rec:
        return ""
    t = run.t
    return t["recipe_text"].format(
        head=rec.get("head_epochs"), lr=rec.get("lr"), scale=rec.get("backbone_lr_scale"),
        unfreeze=run.word("values", rec.get("unfreeze", "all")), schedule=run.word("values", rec.get("schedule", "cosine")),
        ls=rec.get("label_smoothing"), bn=t["bn_frozen"] if rec.get("freeze_bn") else t["bn_train"],
        aug=run.word("values", rec.get("augment"))) + _frozen(run, rec)


def _frozen(run: Run, rec: dict) -> str:
    """What stayed frozen in the network stage (freeze_early, freeze_stride, late_freeze), '' when nothing did."""
    if not rec.get("freeze_early"):
        return ""
    stride = rec.get("freeze_stride")
    late = late_epochs(float(rec.get("late_freeze") or 0), int(rec.get("epochs") or 0))
    text = run.t["frozen_early"].format(stride=stride)
    if late:  # the late freeze's clause follows the early one's
        text += run.t["frozen_late_one" if late == 1 else "frozen_late"].format(late=late, deeper=2 * int(stride))
    return text


def model(run: Run) -> dict | None:
    """Section 3: the network, its input and batch, the recipe, and each cycle's best epoch (None before 03)."""
    cycles = run.read("cycles.csv")
    if cycles is None or not len(cycles):
        return None
    t, last = run.t, cycles.iloc[-1]
    facts = [f"{t['arch']}: `{last['arch']}`", f"{t['weights']}: `{last['weights']}`",
             f"{t['image_size']}: {int(last['image_size'])}×{int(last['image_size'])} px",
             f"{t['batch']}: {int(last['batch_size'])}"]
    recipe, rec = _recipe(run), run.parameters("03_train")
    balance = t["balance_recipe"].format(weights=run.word("values", rec.get("class_weights", "none")),
                                         sampler=run.word("values", rec.get("sampler", "shuffle")),
                                         metric=run.word("values", rec.get("select_metric", "accuracy"))) if rec else ""
    lines = [t["cycle_line"].format(cycle=int(c["cycle"]), best_epoch=int(c["best_epoch"]),
                                    val=pct(c["best_val_accuracy"]))
             if given(c.get("best_val_accuracy")) and given(c.get("best_epoch"))
             else t["cycle_no_val"].format(cycle=int(c["cycle"])) for _, c in cycles.iterrows()]
    tested = [(int(c["cycle"]), c["lr_found"]) for _, c in cycles.iterrows() if given(c.get("lr_found"))]
    return {"facts": facts + ([f"{t['recipe']}: {recipe}"] if recipe else []) + ([balance] if balance else []),
            "cycles": lines + [t["lr_found"].format(cycle=n, note=note) for n, note in tested],
            "lr_figures": [(f"lr_range_cycle-{n}.png", t["fig_lr"].format(cycle=n)) for n, _ in tested]}


def provenance(run: Run) -> list[str]:
    """The last section's list: git commit, dataset fingerprint, every parameter, library versions."""
    t, params, report = run.t, run.parameters(), run.read("data_report.json")
    items = [f"{t['commit']}: `{run.params.get('git_commit', 'unknown')}`"]
    if report:
        items.append(f"{t['fingerprint']}: `{report['fingerprint'][:16]}`")
    if params:
        items.append(f"{t['params']}: " + ", ".join(f"`{k}={v}`" for k, v in sorted(params.items())))
    if run.params.get("versions"):
        items.append(f"{t['versions']}: " + ", ".join(f"{k} {v}" for k, v in run.params["versions"].items()))
    return items
