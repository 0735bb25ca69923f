"""The headless console: a start and an end line per notebook, one line per epoch, a summary block at the end.

Every line is read from the files the notebooks leave (research.csv, data_report.json, history.csv, cycles.csv,
metrics.json), not parsed from their output: the full output goes to the run's log (helpers.runner.notebooks).
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from helpers.utils import paths

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
WIDTH = 12  # the notebook names' column


def shown(path: Path) -> str:
    """A path as a person types it here: relative to the working directory when under it, else absolute."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f}%"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{int(s // 60)} min {s % 60:02.0f} s"


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def start_line(step: int, total: int, name: str, given: dict[str, Any]) -> str:
    """`[2/4] 02_data       dataset=… ` — which notebook starts, with the parameters given to it."""
    told = ", ".join(f"{k}={v}" for k, v in given.items() if k != "run_id") or "defaults"
    return f"[{step}/{total}] {name:<{WIDTH}} started · {told}"


def end_line(step: int, total: int, name: str, run_dir: Path, seconds: float) -> str:
    """`[2/4] 02_data       done in 12 s · 1000 images, 10 classes …` — the notebook's key result."""
    result = RESULTS.get(name, lambda _: None)(run_dir)
    return f"[{step}/{total}] {name:<{WIDTH}} done in {_seconds(seconds)}" + (f" · {result}" if result else "")


def research_result(run_dir: Path) -> str | None:
    """01: how many architectures, reused or disturbed, and the batch-1 latency range."""
    try:
        table = pd.read_csv(run_dir / "research.csv")
    except (OSError, ValueError):
        return None
    if table.empty:
        return None
    reused = int(table["reused"].astype(str).str.lower().eq("true").sum()) if "reused" in table else 0
    parts = [f"{len(table)} architecture{'s' * (len(table) != 1)} measured"
             + (f" ({reused} reused from this machine's cache)" if reused else "")]
    if "disturbed" in table:
        disturbed = table.loc[table["disturbed"].astype(str).str.lower().eq("true"), "arch"].tolist()
        if disturbed:
            parts.append(f"disturbed timings: {', '.join(disturbed)}")
    latency = table.dropna(subset=["latency_ms"])
    if len(latency):
        fast, slow = latency.loc[latency["latency_ms"].idxmin()], latency.loc[latency["latency_ms"].idxmax()]
        parts.append(f"batch-1 latency {fast['latency_ms']:.1f} ms ({fast['arch']})"
                     + (f" … {slow['latency_ms']:.1f} ms ({slow['arch']})" if len(latency) > 1 else ""))
    return " · ".join(parts)


def data_result(run_dir: Path) -> str | None:
    """02: images, classes, split sizes, and what was left out."""
    report = _json(run_dir / "data_report.json")
    if not report:
        return None
    totals = report.get("split_totals", {})
    parts = [f"{report.get('n_images', sum(totals.values()))} images, {len(report.get('classes', []))} classes",
             " · ".join(f"{s} {totals[s]}" for s in ("train", "val", "test") if s in totals)]
    left = [f"{len(report[k])} {words}" for k, words in
            (("skipped", "skipped"), ("duplicate_groups", "duplicate groups"), ("leaks", "leaks"))
            if report.get(k)]
    return " · ".join(parts + left)


def train_result(run_dir: Path) -> str | None:
    """03: the newest cycle's best validation accuracy and its epoch."""
    try:
        cycles = pd.read_csv(run_dir / "cycles.csv")
    except (OSError, ValueError):
        return None
    if cycles.empty:
        return None
    row = cycles.iloc[-1]
    early = " (stopped early)" if str(row.get("stopped_early")).lower() == "true" else ""
    return (f"cycle {int(row['cycle'])}: best val accuracy {_pct(row['best_val_accuracy'])} at epoch "
            f"{int(row['best_epoch'])}{early}, {row['arch']} at {int(row['image_size'])} px on {row['device']}")


def test_figures(metrics: dict) -> str:
    """Test accuracy with its interval, macro F1 and ROC AUC, as one phrase."""
    lo, hi = metrics["test_accuracy_ci95"]
    text = (f"test accuracy {_pct(metrics['test_accuracy'])} (95% CI {_pct(lo)}–{_pct(hi)}, "
            f"n={metrics['n_test']})")
    if metrics.get("macro_f1") is not None:
        text += f" · macro F1 {metrics['macro_f1']:.3f}"
    auc = metrics.get("roc_auc")
    auc = auc.get("macro") if isinstance(auc, dict) else auc
    if auc is not None:
        text += f" · ROC AUC {auc:.3f}"
    return text


def evaluate_result(run_dir: Path) -> str | None:
    """04: the evaluated cycle's test figures."""
    metrics = _json(run_dir / "metrics.json")
    if not metrics or "test_accuracy" not in metrics:
        return None
    return f"cycle {metrics.get('cycle', '?')}: " + test_figures(metrics)


def predict_result(run_dir: Path) -> str | None:
    """05: the newest predictions file and how many images it holds."""
    found = sorted((run_dir / "predictions").glob("*.csv"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    with found[-1].open(encoding="utf-8") as f:
        rows = sum(1 for _ in f) - 1
    return f"{rows} images predicted → {shown(found[-1])}"


RESULTS: dict[str, Callable[[Path], str | None]] = {
    "01_research": research_result, "02_data": data_result, "03_train": train_result,
    "04_evaluate": evaluate_result, "05_predict": predict_result}


class EpochLines:
    """While 03 runs: print each new row of history.csv as one line (a thread polling the file)."""

    def __init__(self, run_dir: Path, total: int | None = None, say: Callable[[str], None] = print,
                 every_s: float = 0.5) -> None:
        self.path, self.total, self.say, self.every_s = Path(run_dir) / "history.csv", total, say, every_s
        self.seen = {key for key, _ in self._rows()}  # epochs of earlier cycles (or runs) are not news
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "EpochLines":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # the last epoch may have landed after the thread's last look

    def _rows(self) -> list[tuple[tuple[str, str], dict]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:
            return []
        complete = text[: text.rfind("\n") + 1]  # a row being appended right now is read next time
        return [((r["cycle"], r["epoch"]), r) for r in csv.DictReader(complete.splitlines())]

    def poll(self) -> None:
        """Print the rows that are new since the last look."""
        rows = self._rows()
        self.seen &= {key for key, _ in rows}  # an epoch dropped to be redone (a resumed cycle) is news again
        for key, row in rows:
            if key not in self.seen:
                self.seen.add(key)
                self.say(self.line(row))

    def line(self, row: dict) -> str:
        """`  epoch 3/9  head  train loss 0.4312  val acc 91.3%  2.1 s`"""
        of = f"/{self.total}" if self.total else ""
        stage = row.get("stage") or ""
        return (f"      epoch {row['epoch']:>2}{of}  {stage:<4}  train loss {float(row['train_loss']):.4f}  "
                f"val acc {_pct(row['val_accuracy'])}  {float(row['seconds']):.1f} s")

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            self.poll()


def our_errors() -> set[str]:
    """Names of the ValueError subclasses that helpers defines (its errors carry one sentence for a person).

    Read from the source (class statements and their bases), so nothing is imported to find them.
    """
    bases: dict[str, set[str]] = {}
    for path in (paths.PROJECT_ROOT / "helpers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(
                    b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases)
    found, grew = set(), True
    while grew:
        new = {name for name, of in bases.items() if name not in found and of & (found | {"ValueError"})}
        found |= new
        grew = bool(new)
    return found


def last_frame(traceback: list[str]) -> list[str]:
    """The traceback's last frame as two lines: where (file, line, function) and the line that raised."""
    frames = [ANSI.sub("", t) for t in traceback if ANSI.sub("", t).lstrip().startswith(("File ", "Cell "))]
    if not frames:
        return []
    lines = frames[-1].rstrip("\n").splitlines()
    arrow = [ln for ln in lines if ln.lstrip().startswith("--")]
    return [lines[0].strip()] + ([re.sub(r"^-+>\s*\d*\s?", "", arrow[-1].strip()).strip()] if arrow else [])


def failure_lines(step: int, total: int, name: str, seconds: float, error: Any, log: Path,
                  executed: Path) -> list[str]:
    """What a failed notebook prints: the failing cell's error (our errors: their sentence; others: the
    traceback's last frame and the error), then where the full log and the executed notebook are."""
    ename, evalue = getattr(error, "ename", type(error).__name__), getattr(error, "evalue", str(error))
    cell = getattr(error, "exec_count", None)
    lines = [f"[{step}/{total}] {name:<{WIDTH}} failed after {_seconds(seconds)}"
             + (f" in cell [{cell}]" if cell is not None else "") + ":"]
    frame = last_frame(getattr(error, "traceback", None) or [])
    raised_by_us = bool(frame) and f"{os.sep}helpers{os.sep}" in frame[0]
    ours = ename in our_errors() or (ename == "ValueError" and raised_by_us)
    if not ours:
        lines += [f"      {ln}" for ln in frame]
    lines.append(f"      {evalue}" if ours else f"      {ename}: {evalue}")
    lines.append(f"      full log: {shown(log)} · executed notebook: {shown(executed)}")
    return lines


def traceback_text(error: Any) -> str:
    """A kernel error's whole traceback without terminal colours (for the log)."""
    return "\n".join(ANSI.sub("", t) for t in getattr(error, "traceback", []) or [str(error)])


def summary(run_id: str, names: list[str], seconds: float, log: Path, ok: bool = True) -> list[str]:
    """The block after the last notebook: the run's figures, then where the report, index and log are."""
    run = paths.run_dir(run_id)
    out = [f"── run {run_id} {'finished' if ok else 'stopped'} after {_seconds(seconds)}"]
    rows: list[tuple[str, str | None]] = []
    if ok:  # after a failure the files may hold an earlier run's figures: only the log and the index are said
        rows += [("data", data_result(run) if "02_data" in names else None),
                 ("training", train_result(run) if "03_train" in names else None)]
        metrics = _json(run / "metrics.json") if "04_evaluate" in names else None
        if metrics and "test_accuracy" in metrics:
            rows.append(("result", test_figures(metrics)))
        figures = sorted((run / "figures").glob("*.png")) if (run / "figures").is_dir() else []
        if figures:
            rows.append(("figures", f"{shown(run / 'figures')}{os.sep} ({len(figures)} images)"))
        report = paths.report_dir(run_id) / "REPORT.md"
        if "04_evaluate" in names and report.exists():
            rows.append(("report", shown(report)))
        if "05_predict" in names:
            rows.append(("predicted", predict_result(run)))
    index = paths.home() / "reports" / "index.md"
    if index.exists():
        rows.append(("index", shown(index)))
    rows.append(("log", shown(log)))
    out += [f"   {k:<10}{v}" for k, v in rows if v]
    return out
