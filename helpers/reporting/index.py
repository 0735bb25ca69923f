"""reports/index.md and index.html: every run side by side, one row per run and one per training cycle.

Read from each run's artifacts (cycles.csv, metrics.json, params.json), so "did the CUDA cycles beat the
CPU ones, did B4 beat Lite0 on my data" is one look at one table and one figure. Rebuilt after every run.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from helpers.reporting.html import to_html
from helpers.reporting.texts import check_lang, fill, strings
from helpers.utils import files, paths

FIGURE = "index_runs.png"


def _read_cycles(run: Path) -> pd.DataFrame:
    """A run's cycles.csv, or an empty frame."""
    path = run / "cycles.csv"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["cycle"])
    return pd.read_csv(path)


def _dataset(params: dict) -> str:
    """The dataset a run used, from the parameters 02 (or 01) ran with."""
    for nb in ("02_data", "01_research"):
        given = params.get("notebooks", {}).get(nb, {}).get("parameters", {})
        if "dataset" in given:
            return str(given["dataset"])
    return "sample" if params else "—"


def collect() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per run, one row per cycle of every run), with accuracies as fractions."""
    runs_root = paths.home() / "runs"
    run_rows, cycle_rows = [], []
    for run in sorted(p for p in runs_root.glob("*") if p.is_dir()) if runs_root.exists() else []:
        params = files.read_json(run / "params.json") if (run / "params.json").exists() else {}
        metrics = files.read_json(run / "metrics.json") if (run / "metrics.json").exists() else {}
        cycles = _read_cycles(run)
        if not params and not len(cycles):
            continue  # not a run folder
        ci = metrics.get("test_accuracy_ci95") or [None, None]
        for _, c in cycles.iterrows():
            evaluated = metrics.get("cycle") == int(c["cycle"])
            cycle_rows.append({
                "run_id": run.name, "cycle": int(c["cycle"]), "device": str(c.get("device", "")),
                "device_type": str(c.get("device", "")).split(":")[0], "device_name": c.get("device_name", ""),
                "arch": c.get("arch", ""), "image_size": c.get("image_size"), "epochs": c.get("epochs"),
                "batch_size": c.get("batch_size"), "best_val_accuracy": c.get("best_val_accuracy"),
                "test_accuracy": c.get("test_accuracy"), "ci_lo": ci[0] if evaluated else None,
                "ci_hi": ci[1] if evaluated else None, "seconds": c.get("seconds"),
                "started_at": c.get("started_at")})
        last = cycles.iloc[-1] if len(cycles) else {}
        run_rows.append({
            "run_id": run.name, "dataset": _dataset(params),
            "arch": ", ".join(dict.fromkeys(cycles["arch"].astype(str))) if "arch" in cycles else "",
            "image_size": ", ".join(dict.fromkeys(str(int(s)) for s in cycles["image_size"].dropna()))
            if "image_size" in cycles else "",
            "cycles": len(cycles),
            "devices": ", ".join(dict.fromkeys(str(d).split(":")[0] for d in cycles["device"]))
            if "device" in cycles else "",
            "best_val_accuracy": cycles["best_val_accuracy"].max() if "best_val_accuracy" in cycles else None,
            "test_accuracy": metrics.get("test_accuracy"), "ci_lo": ci[0], "ci_hi": ci[1],
            "test_cycle": metrics.get("cycle"),
            "seconds": float(cycles["seconds"].sum()) if "seconds" in cycles and len(cycles) else None,
            "last_started": str(last.get("started_at", "")) if len(cycles) else "",
            "report": (paths.report_dir(run.name) / "REPORT.md").exists()})
    return pd.DataFrame(run_rows), pd.DataFrame(cycle_rows)


def _pct(x) -> str:
    """A fraction as a percentage with one decimal, or a dash."""
    return "—" if x is None or pd.isna(x) else f"{100 * float(x):.1f}"


def _when(text: str) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM', or the text as it is."""
    try:
        return datetime.fromisoformat(str(text)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(text) or "—"


def _runs_table(runs: pd.DataFrame, t: dict, report_name: str) -> str:
    """One row per run, as markdown; report links point at `<run_id>/<report_name>`."""
    table = pd.DataFrame([[
        f"`{r['run_id']}`", f"`{r['dataset']}`", r["arch"] or "—", r["image_size"] or "—", r["cycles"],
        r["devices"] or "—", _pct(r["best_val_accuracy"]),
        _pct(r["test_accuracy"]) + (f" (№{int(r['test_cycle'])})" if pd.notna(r["test_cycle"]) else ""),
        f"{_pct(r['ci_lo'])} – {_pct(r['ci_hi'])}" if pd.notna(r["ci_lo"]) else "—",
        "—" if pd.isna(r["seconds"]) else f"{r['seconds'] / 60:.1f}", _when(r["last_started"]),
        f"[{t['report']}]({r['run_id']}/{report_name})" if r["report"] else "—"]
        for _, r in runs.iterrows()], columns=t["run_cols"])
    return table.to_markdown(index=False, disable_numparse=True)


def _whole(x) -> str:
    """An integer cell, or a dash."""
    return "—" if pd.isna(x) else str(int(x))


def _cycles_table(cycles: pd.DataFrame, t: dict) -> str:
    """One row per training cycle of every run, as markdown."""
    table = pd.DataFrame([[
        f"`{c['run_id']}`", c["cycle"], c["device"], c["device_name"], c["arch"], _whole(c["image_size"]),
        _whole(c["epochs"]), _whole(c["batch_size"]), _pct(c["best_val_accuracy"]), _pct(c["test_accuracy"]),
        "—" if pd.isna(c["seconds"]) else f"{float(c['seconds']):.0f}"]
        for _, c in cycles.iterrows()], columns=t["cycle_cols"])
    return table.to_markdown(index=False, disable_numparse=True)


def render(runs: pd.DataFrame, cycles: pd.DataFrame, lang: str = "ru", report_name: str = "REPORT.md") -> str:
    """The markdown of the index (templates/INDEX.md.j2); report links point at `<run_id>/<report_name>`."""
    t = strings(lang)["index"]
    return fill("INDEX.md.j2", t=t, figure=FIGURE, runs=_runs_table(runs, t, report_name) if len(runs) else "",
                cycles=_cycles_table(cycles, t) if len(cycles) else "")


def write_index(lang: str = "ru") -> Path:
    """Rebuild reports/index.md, index.html and the comparison figure from every run; return index.md."""
    import matplotlib.pyplot as plt

    from helpers.reporting import plots  # matplotlib: only when the index is written
    check_lang(lang)
    out = paths.home() / "reports"
    out.mkdir(parents=True, exist_ok=True)
    runs, cycles = collect()
    if len(cycles):
        fig = plots.runs_comparison(cycles, lang)
        files.save_figure(fig, out / FIGURE)
        plt.close(fig)  # built inside 04 too: it must not show up there as a stray figure
    path = out / "index.md"
    files.write_text(path, render(runs, cycles, lang))
    html = to_html(render(runs, cycles, lang, "REPORT.html"), out, strings(lang)["index"]["title"], lang)
    files.write_text(out / "index.html", html)
    return path


def main(argv: list[str] | None = None) -> int:
    """python -m helpers.index [ru|en]: rebuild reports/index.md and index.html."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    try:
        path = write_index(*(args[:1] or ["ru"]))
    except ValueError as exc:  # an unknown language: one sentence, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path.relative_to(paths.home()))
    return 0
