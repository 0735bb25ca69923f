"""What 04 shows of an evaluation: every cycle beside its test figure, the decisions taken, recall per class.

Reads only what evaluate.py kept (metrics.json, evaluations/cycle-<N>.json, cycles.csv); computes nothing anew.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.training import ledger
from helpers.utils import files


def evaluated_cycles(run_dir: Path) -> dict[int, dict]:
    """Every kept evaluation of the run by cycle: its metrics.json content."""
    out = {}
    for path in sorted((Path(run_dir) / "evaluations").glob("cycle-*.json")):
        m = files.read_json(path)
        out[int(m["cycle"])] = m
    return out


def cycles_overview(run_dir: Path) -> pd.DataFrame:
    """Every cycle's selection figure (best validation accuracy) beside the test accuracy of evaluated cycles.

    `role`: "evaluated" for the model metrics.json reports, "not used for selection" for another cycle's test
    figure, "" for a cycle never evaluated. `selected` marks the run's best by validation.
    """
    run_dir = Path(run_dir)
    cycles = ledger.read_cycles(run_dir)
    metrics_path = run_dir / "metrics.json"
    final = files.read_json(metrics_path) if metrics_path.exists() else {}
    evaluated = evaluated_cycles(run_dir)
    val = pd.to_numeric(cycles["best_val_accuracy"], errors="coerce")
    best_cycle = final.get("selection", {}).get("run_best_cycle")
    if best_cycle is None and val.notna().any():
        best_cycle = int(cycles.loc[val.idxmax(), "cycle"])  # idxmax: the first of equals, as best.pt keeps it
    rows = []
    for (_, c), v in zip(cycles.iterrows(), val):
        n = int(c["cycle"])
        test = evaluated.get(n, {}).get("test_accuracy")
        if test is None and str(c.get("test_accuracy", "")) not in ("", "nan"):
            test = float(c["test_accuracy"])
        role = "" if test is None else ("evaluated" if n == final.get("cycle") else "not used for selection")
        rows.append({"cycle": n, "device": c["device"], "epochs": c["epochs"], "batch_size": c["batch_size"],
                     "init_from": c.get("init_from", ""), "best_val_accuracy": None if pd.isna(v) else float(v),
                     "selected": n == best_cycle, "test_accuracy": test, "role": role})
    return pd.DataFrame(rows, columns=["cycle", "device", "epochs", "batch_size", "init_from", "best_val_accuracy",
                                       "selected", "test_accuracy", "role"])


def evaluation_summary(metrics: dict) -> pd.DataFrame:
    """What 04 decided and how sure it is: selection, TTA, calibration, paired comparison — one row each."""
    sel = metrics.get("selection", {})
    rows = [("selection", f"cycle {metrics.get('cycle')} by {metrics.get('selected_by', 'validation')}: "
                          f"validation accuracy {_f(sel.get('val_accuracy'))} at epoch {sel.get('epoch')}"
                          + ("" if metrics.get("selected_by") == "validation" else
                             f"; the run's best by validation is cycle {sel.get('run_best_cycle')}"))]
    tta = metrics.get("tta", {"mode": "none"})
    rows.append(("test-time augmentation", "none" if tta["mode"] == "none" else
                 f"{tta['mode']}: validation {_f(tta['val_accuracy_without'])} → {_f(tta['val_accuracy'])}, "
                 f"test {_f(tta['test_accuracy_without'])} → {_f(tta['test_accuracy'])}"))
    cal = metrics.get("calibration")
    if cal:
        rows.append(("calibration", f"temperature {cal['temperature']:.3f} fitted on validation, "
                                    f"{'applied' if cal['applied'] else 'not applied (no lower validation ECE)'}; "
                                    f"ECE validation {cal['val_ece_before']:.4f} → {cal['val_ece_after']:.4f}, "
                                    f"test {cal['test_ece_before']:.4f} → {cal['test_ece_after']:.4f}"))
    pc = metrics.get("paired_comparison")
    if pc and pc.get("comparable"):
        lo, hi = pc["difference_ci95"]
        rows.append(("paired comparison", f"cycle {metrics['cycle']} vs cycle {pc['other_cycle']} on the same "
                                          f"{pc['mcnemar']['n']} images: difference {pc['difference']:+.4f} "
                                          f"(95% CI {lo:+.4f} to {hi:+.4f}), McNemar exact p = "
                                          f"{pc['mcnemar']['p_value']:.3g} ({pc['mcnemar']['only_a_correct']} vs "
                                          f"{pc['mcnemar']['only_b_correct']} images right in only one)"))
    elif pc:
        rows.append(("paired comparison", f"not made with cycle {pc['other_cycle']}: {pc['reason']}"))
    return pd.DataFrame(rows, columns=["what", "result"])


def _f(value) -> str:
    """A figure with four decimals, or a dash."""
    return "–" if value is None else f"{float(value):.4f}"


def recall_table(metrics: dict) -> pd.DataFrame:
    """Per-class recall with its 95% Wilson interval and support, from metrics.json."""
    rows = [{"class": c, "recall": v["recall"], "ci95_low": v.get("recall_ci95", [None, None])[0],
             "ci95_high": v.get("recall_ci95", [None, None])[1], "support": v["support"]}
            for c, v in metrics["per_class"].items()]
    return pd.DataFrame(rows, columns=["class", "recall", "ci95_low", "ci95_high", "support"])
