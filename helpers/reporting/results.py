"""The report's section 4 as data: the cycles table, the final accuracy and its intervals, how the model was
chosen, per-class figures, and the exported model's parity.

Every number comes from cycles.csv, metrics.json or export/parity.json; every sentence from strings.yaml.
"""

from __future__ import annotations

import pandas as pd

from helpers.evaluation.summary import cycles_overview
from helpers.reporting.sections import Run, given, pct
from helpers.reporting.texts import translate


def cycles_table(cycles: pd.DataFrame, t: dict, overview: pd.DataFrame | None = None) -> pd.DataFrame:
    """The write-up's table of training cycles from cycles.csv, with each cycle's selection figure (validation).

    `overview` (helpers.evaluation.summary.cycles_overview) says which test figure is the evaluated model's;
    another cycle's test figure is marked as not used for selection.
    """
    roles = {} if overview is None else dict(zip(overview["cycle"], overview["role"]))
    selected = set() if overview is None else set(overview.loc[overview["selected"].astype(bool), "cycle"])
    rows = []
    for _, c in cycles.iterrows():
        n, has_val = int(c["cycle"]), given(c.get("best_val_accuracy"))
        if given(c.get("test_accuracy")):
            acc = f"`{pct(c['test_accuracy'])}`"
            if roles.get(n) == "not used for selection":
                acc += f" ({t['not_selected']})"
        elif has_val:
            acc = f"`{pct(c['best_val_accuracy'])}` ({t['val_mark']})"
        else:
            acc = "—"
        val = (f"`{pct(c['best_val_accuracy'])}`" + (f" ({t['selected_mark']})" if n in selected else "")) \
            if has_val else "—"
        rows.append([f"{n} *({str(c['device']).split(':')[0]})*", c["device_name"], int(c["epochs"]),
                     int(c["batch_size"]), acc, val])
    return pd.DataFrame(rows, columns=[*t["table_head"], t["val_head"]])


def _final(metrics: dict, t: dict) -> str:
    """The sentence of the write-up: the model's final accuracy and its interval (Wilson, or over groups)."""
    lo, hi = metrics["test_accuracy_ci95"]
    unit = metrics.get("intervals") or {}
    final = t["final_groups"] if unit.get("unit") == "group" else t["final"]  # a bootstrap over whole groups
    return final.format(cycle=metrics.get("cycle", "?"), n=metrics["n_test"], g=unit.get("n_groups"),
                        acc=pct(metrics["test_accuracy"]), lo=pct(lo), hi=pct(hi))


def _auc(metrics: dict, t: dict) -> list[str]:
    """ROC AUC (binary or one-vs-rest), the classes without a ROC, and the calibration error."""
    auc, lines = metrics["roc_auc"], []
    if isinstance(auc, dict):
        lines.append(t["auc_multi"].format(macro=f"{auc['macro']:.4f}", micro=f"{auc['micro']:.4f}"))
    elif auc is not None:
        lines.append(t["auc_bin"].format(pos=metrics["classes"][1], auc=f"{auc:.4f}"))
    if metrics.get("roc_note"):  # one class in the test split: no ROC, the accuracy stands
        present = [c for c in metrics["classes"] if c not in metrics.get("roc_skipped_classes", [])]
        lines.append(t["no_roc"].format(classes=", ".join(present) or "–", n=metrics["n_test"]))
    elif metrics.get("roc_skipped_classes"):
        lines.append(t["auc_skip"].format(classes=", ".join(metrics["roc_skipped_classes"])))
    return lines + [t["ece"].format(ece=f"{metrics['ece']:.4f}")]


def _selection(metrics: dict, t: dict) -> list[str]:
    """How the evaluated model was chosen, then balanced accuracy, macro F1 and ROC AUC with bootstrap intervals."""
    lines, sel, words = [], metrics.get("selection"), t.get("values", {})
    if sel:
        metric = metrics.get("select_metric", "accuracy")
        val = (sel.get("val_scores") or {}).get(metric, sel["val_accuracy"] if metric == "accuracy" else None)
        lines.append(t["sel_val"].format(cycle=metrics["cycle"], metric=words.get(metric, metric),
                                         val=pct(val) if val is not None else "–")
                     if metrics.get("selected_by") == "validation" else
                     t["sel_param"].format(cycle=metrics["cycle"], best=sel.get("run_best_cycle") or "?"))
    if metrics.get("balanced_accuracy_ci95"):
        lo, hi = metrics["balanced_accuracy_ci95"]
        lines.append(t["bal_acc"].format(ba=f"{metrics['balanced_accuracy']:.4f}", lo=f"{lo:.4f}", hi=f"{hi:.4f}"))
    if metrics.get("macro_f1_ci95"):
        lo, hi = metrics["macro_f1_ci95"]
        lines.append(t["f1_ci"].format(f1=f"{metrics['macro_f1']:.4f}", lo=f"{lo:.4f}", hi=f"{hi:.4f}"))
    if metrics.get("roc_auc_ci95"):
        lo, hi = metrics["roc_auc_ci95"]
        lines.append(t["auc_ci"].format(lo=f"{lo:.4f}", hi=f"{hi:.4f}"))
    return lines


def _tta_and_calibration(metrics: dict, t: dict) -> list[str]:
    """What test-time augmentation and the fitted temperature changed, on validation and test."""
    lines, tta, cal = [], metrics.get("tta"), metrics.get("calibration")
    if tta:
        lines.append(t["tta_none"] if tta["mode"] == "none" else t["tta"].format(
            mode=tta["mode"], vw=pct(tta["val_accuracy_without"]), v=pct(tta["val_accuracy"]),
            tw=pct(tta["test_accuracy_without"]), tt=pct(tta["test_accuracy"])))
    if cal:
        lines.append(t["cal"].format(temp=f"{cal['temperature']:.3f}", applied=t["cal_yes" if cal["applied"] else "cal_no"],
                                     vb=f"{cal['val_ece_before']:.4f}", va=f"{cal['val_ece_after']:.4f}",
                                     tb=f"{cal['test_ece_before']:.4f}", ta=f"{cal['test_ece_after']:.4f}"))
    return lines


def _paired(metrics: dict, t: dict, run: Run) -> list[str]:
    """The paired comparison with the previously evaluated cycle (McNemar), or why there is none."""
    pc = metrics.get("paired_comparison")
    if not pc:
        return []
    if not pc.get("comparable"):
        reason = translate(pc["reason"], run.words["phrases"]["evaluation"], run.lang)
        return [t["paired_no"].format(other=pc["other_cycle"], reason=reason)]
    m, (lo, hi), pp = pc["mcnemar"], pc["difference_ci95"], t["points"]
    return [t["paired"].format(other=pc["other_cycle"], n=m["n"], diff=f"{100 * pc['difference']:+.2f} {pp}",
                               lo=f"{100 * lo:+.2f}", hi=f"{100 * hi:+.2f} {pp}", p=f"{m['p_value']:.3g}",
                               cycle=metrics["cycle"], a=m["only_a_correct"], b=m["only_b_correct"])]


def _per_class(metrics: dict, t: dict) -> dict:
    """The per-class table and the most confused pairs, as markdown."""
    def ci(v: dict) -> str:
        lo, hi = v.get("recall_ci95") or (None, None)
        return "–" if lo is None else f"{lo:.3f} – {hi:.3f}"
    per_class = pd.DataFrame([[c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", ci(v), f"{v['f1']:.3f}",
                               v["support"]] for c, v in metrics["per_class"].items()], columns=t["per_class_head"])
    confused = pd.DataFrame(metrics.get("most_confused", [])[:5], columns=["true", "pred", "count"])
    confused = confused.set_axis(t["confused_head"], axis=1)
    return {"per_class": per_class.to_markdown(index=False, disable_numparse=True,
                                               colalign=["left"] + ["right"] * 5) if len(per_class) else "",
            "confused": confused.to_markdown(index=False) if len(confused) else ""}


def results(run: Run) -> dict:
    """Section 4: the cycles table, then (once 04 ran) the final accuracy and everything that qualifies it."""
    out = {"cycles_table": "", "final": "", "auc": [], "evaluation": [], "per_class": "", "confused": ""}
    cycles = run.read("cycles.csv")
    if cycles is not None and len(cycles):
        table = cycles_table(cycles, run.t, cycles_overview(run.dir))
        out["cycles_table"] = table.to_markdown(index=False, colalign=["center"] * table.shape[1])
    metrics = run.read("metrics.json")
    if not metrics:
        return out
    t = run.t
    return out | {"final": _final(metrics, t), "auc": _auc(metrics, t),
                  "evaluation": _selection(metrics, t) + _tta_and_calibration(metrics, t) + _paired(metrics, t, run),
                  **_per_class(metrics, t)}


def export(run: Run) -> dict | None:
    """The exported model against PyTorch on the test split, from export/parity.json (None when not exported)."""
    record = run.read("export/parity.json")
    if not record:
        return None
    t = run.t
    rows = [[fmt, f"`{r['file']}`", f"{r['max_abs_diff']:.1e}", f"{r['tolerance']:g}",
             f"{100 * r['top1_agreement']:.2f}%", f"{100 * r.get('accuracy_pytorch', float('nan')):.2f}%",
             f"{100 * r.get('accuracy_exported', float('nan')):.2f}%", r.get("size_mb", ""),
             t["export_yes"] if r.get("passed") else t["export_no"]]
            for fmt, r in sorted(record.items())]
    return {"intro": t["export_intro"].format(n=max(r["n"] for r in record.values())),
            "table": pd.DataFrame(rows, columns=t["export_head"]).to_markdown(index=False)}
