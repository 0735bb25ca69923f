"""REPORT.md from a run's artifacts (JSON and CSV → markdown), in Russian or English; no number typed in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from helpers.reporting.html import to_html
from helpers.research.study import (
    as_markdown,
    claim_checks,
    qualitative_table,
    readable,
    study_note,
)
from helpers.utils import files, paths

TEXT = {
    "ru": {
        "title": "Отчет о выполнении задания",
        "run": "Запуск", "s1": "1. Исследование архитектур", "s2": "2. Подготовка данных", "s3": "3. Модель",
        "s4": "4. Результаты обучения",
        "claims": "Проверка цитируемых утверждений", "no_research": "Исследование не запускалось (нет research.csv).",
        "source": "Источник", "layout": "Структура", "images": "Изображений", "classes": "Классов",
        "split": "Разделение на выборки (тренировка/валидация/тест)", "seed": "зерно генератора",
        "skipped": "Пропущено файлов", "dups": "Групп дубликатов (каждая целиком в одной выборке)",
        "conflicts": "из них с противоречащими метками",
        "class": "Класс", "train": "тренировка", "val": "валидация", "test": "тест", "total": "всего",
        "arch": "Архитектура", "weights": "Начальные веса", "image_size": "Размер входа", "batch": "Размер батча",
        "recipe": "Рецепт", "recipe_text": "этап 1 — {head} эпох(и) только головы на закэшированных признаках; этап 2 — "
                  "обучаемые блоки основы: {unfreeze}, lr головы {lr}, lr основы ×{scale}, AdamW, расписание {schedule}, "
                  "сглаживание меток {ls}, статистики BatchNorm {bn}, аугментации: {aug}",
        "bn_frozen": "заморожены", "bn_train": "обучаются",
        "cycle_line": "Цикл {cycle}: лучшая эпоха {best_epoch}, точность на валидации {val}.",
        "table_head": ["№ цикла обучения", "Устройство", "Количество эпох", "Размер батча", "Точность"],
        "acc_note": "Точность — на тестовой выборке, если цикл оценивался в 04, иначе лучшая на валидации (помечена «вал.»).",
        "val_mark": "вал.",
        "val_head": "Лучшая точность на валидации (по ней выбор)", "selected_mark": "выбран",
        "not_selected": "не использовалась для выбора",
        "sel_val": "Модель выбрана по валидации: цикл {cycle} (лучшая точность на валидации среди всех циклов, "
                   "{val}); тестовые значения других циклов для выбора не использовались.",
        "sel_param": "Оценен цикл {cycle} по параметру cycle={cycle}; лучший по валидации — цикл {best}.",
        "f1_ci": "Макро-F1: {f1} (95% бутстрэп-интервал {lo} – {hi}).",
        "auc_ci": "95% бутстрэп-интервал ROC AUC: {lo} – {hi}.",
        "tta_none": "Аугментация при тестировании (TTA): не использовалась.",
        "tta": "TTA «{mode}»: точность на валидации {vw} → {v}, на тесте {tw} → {tt} (без TTA → с TTA).",
        "cal": "Калибровка: температура {temp} подобрана на валидации и {applied}; ECE на валидации {vb} → {va}, "
               "на тесте {tb} → {ta}.",
        "cal_yes": "применена к тестовым вероятностям", "cal_no": "не применена (ECE на валидации не снизилась)",
        "paired": "Парное сравнение с циклом {other} на тех же {n} изображениях: разница точности {diff} "
                  "(95% ДИ {lo} – {hi}), точный тест Мак-Немара p = {p} (верно только у цикла {cycle}: {a}, "
                  "только у цикла {other}: {b}).",
        "paired_no": "Парное сравнение с циклом {other} невозможно: {reason}.",
        "final": "Итоговой точностью модели (цикл {cycle}, тестовая выборка, n = {n}) является значение "
                 "**{acc}** (95% доверительный интервал Уилсона: {lo} – {hi}).",
        "final_groups": "Итоговой точностью модели (цикл {cycle}, тестовая выборка, n = {n}) является значение "
                        "**{acc}** (95% бутстреп-интервал по {g} группам тестовой выборки: {lo} – {hi}; дубликаты и "
                        "изображения с одним значением group_column не независимы, поэтому группы берутся целиком — "
                        "так же получены интервалы F1 и AUC).",
        "auc_bin": "ROC AUC (положительный класс «{pos}»): {auc}.",
        "auc_multi": "ROC AUC один-против-всех: макро-среднее {macro} (среднее AUC по классам), "
                     "микро-среднее {micro} (все пары «класс–изображение» в одной кривой).",
        "auc_skip": "Классы без ROC (нет в тестовой выборке): {classes}.",
        "no_roc": "ROC не построена: в тестовой выборке только класс {classes} ({n} изобр.), а для ROC нужны "
                  "изображения класса и остальных; точность и показатели по классам верны.",
        "ece": "Ожидаемая ошибка калибровки (ECE): {ece}.",
        "fig_metrics": "Метрики обучения (все циклы)", "fig_roc": "ROC на тестовой выборке",
        "fig_cm": "Матрица ошибок", "fig_rel": "Диаграмма надежности", "fig_err": "Самые уверенные ошибки",
        "fig_cam": "Grad-CAM: области, на которые смотрит сеть",
        "fig_balance": "Баланс классов", "fig_research": "Точность и задержка",
        "confused": "Чаще всего путаются", "per_class": "Метрики по классам",
        "no_eval": "Оценка на тестовой выборке еще не выполнялась (нет metrics.json).",
        "prov": "Происхождение", "commit": "Коммит git", "fingerprint": "Отпечаток набора данных",
        "versions": "Версии библиотек", "params": "Параметры",
        "per_class_head": ["Класс", "Точность (precision)", "Полнота (recall)", "F1", "Изображений в тесте"],
        "confused_head": ["Истинный класс", "Предсказанный класс", "Изображений"],
        "skipped_head": ["Файл", "Причина"],
        "read_as": "Как прочитан набор данных", "read_as_head": ["Путь", "Прочитан как", "Почему"],
        "unlabelled": "Изображений без меток (не вошли в выборки)",
        "leaks": "**Утечка:** {n} групп(ы) одинаковых изображений лежат в разных выборках заданного разбиения "
                 "(keep_given_split=True); точность на тесте из-за этого может быть завышена.",
        "group_leaks": "**Утечка:** {n} групп(ы) по `{column}` (пациент, очаг) лежат в разных выборках заданного "
                       "разбиения; move_leaks=True переносит каждую целиком в одну выборку.",
        "roles": {"train": "тренировка", "val": "валидация", "test": "тест", "class": "класс", "labels": "метки",
                  "images": "изображения", "unlabelled": "без меток", "ignored": "пропущено",
                  "wrapper": "обертка", "sample submission": "образец посылки", "label map": "словарь меток"},
        "values": {"all": "все", "cosine": "косинусное с разогревом", "onecycle": "one-cycle", "none": "нет",
                   "flip": "отражение по горизонтали",
                   "crop": "отражение и случайное кадрирование"},
        "layouts": {"class_folders": "папки по классам", "presplit": "готовые папки train/val/test",
                    "csv": "таблица CSV с метками", "filenames": "метки в именах файлов"},
    },
    "en": {
        "title": "Assignment report",
        "run": "Run", "s1": "1. Architecture study", "s2": "2. Data preparation", "s3": "3. Model",
        "s4": "4. Training results",
        "claims": "Quoted claims checked", "no_research": "The study was not run (no research.csv).",
        "source": "Source", "layout": "Layout", "images": "Images", "classes": "Classes",
        "split": "Split (train/validation/test)", "seed": "seed",
        "skipped": "Files skipped", "dups": "Duplicate groups (each kept within one split)",
        "conflicts": "of them with conflicting labels",
        "class": "Class", "train": "train", "val": "validation", "test": "test", "total": "total",
        "arch": "Architecture", "weights": "Initial weights", "image_size": "Input size", "batch": "Batch size",
        "recipe": "Recipe", "recipe_text": "stage 1 — {head} head-only epoch(s) on cached features; stage 2 — "
                  "backbone blocks trained: {unfreeze}, head lr {lr}, backbone lr ×{scale}, AdamW, {schedule} schedule, label "
                  "smoothing {ls}, BatchNorm statistics {bn}, augmentation: {aug}",
        "bn_frozen": "frozen", "bn_train": "trained",
        "cycle_line": "Cycle {cycle}: best epoch {best_epoch}, validation accuracy {val}.",
        "table_head": ["Training cycle", "Device", "Epochs", "Batch size", "Accuracy"],
        "acc_note": "Accuracy is on the test split where 04 evaluated the cycle, otherwise the best validation "
                    "accuracy (marked 'val').",
        "val_mark": "val",
        "val_head": "Best validation accuracy (the selection figure)", "selected_mark": "selected",
        "not_selected": "not used for selection",
        "sel_val": "Selected by validation: cycle {cycle} (the best validation accuracy across all cycles, {val}); "
                   "test figures of other cycles were not used for selection.",
        "sel_param": "Evaluated cycle {cycle} as asked (cycle={cycle}); the run's best by validation is cycle {best}.",
        "f1_ci": "Macro F1: {f1} (95% bootstrap interval {lo} – {hi}).",
        "auc_ci": "95% bootstrap interval of the ROC AUC: {lo} – {hi}.",
        "tta_none": "Test-time augmentation (TTA): not used.",
        "tta": "TTA '{mode}': validation accuracy {vw} → {v}, test {tw} → {tt} (without → with TTA).",
        "cal": "Calibration: temperature {temp} fitted on validation, {applied}; ECE on validation {vb} → {va}, "
               "on test {tb} → {ta}.",
        "cal_yes": "applied to the test probabilities", "cal_no": "not applied (validation ECE did not drop)",
        "paired": "Paired comparison with cycle {other} on the same {n} images: accuracy difference {diff} "
                  "(95% CI {lo} – {hi}), McNemar's exact test p = {p} (right only in cycle {cycle}: {a}, "
                  "only in cycle {other}: {b}).",
        "paired_no": "No paired comparison with cycle {other}: {reason}.",
        "final": "The model's final accuracy (cycle {cycle}, test split, n = {n}) is **{acc}** "
                 "(95% Wilson confidence interval: {lo} – {hi}).",
        "final_groups": "The model's final accuracy (cycle {cycle}, test split, n = {n}) is **{acc}** (95% bootstrap "
                        "interval over the test split's {g} groups: {lo} – {hi}; duplicates and images sharing a "
                        "group_column value are not independent, so whole groups are resampled — as for the F1 and "
                        "AUC intervals).",
        "auc_bin": "ROC AUC (positive class '{pos}'): {auc}.",
        "auc_multi": "One-vs-rest ROC AUC: macro-average {macro} (the mean of per-class AUCs), micro-average "
                     "{micro} (all class–image pairs pooled into one curve).",
        "auc_skip": "Classes without a ROC (absent from the test split): {classes}.",
        "no_roc": "No ROC: the test split holds only class {classes} ({n} image(s)), and a ROC needs images of a "
                  "class and of the others; the accuracy and the per-class figures stand.",
        "ece": "Expected calibration error (ECE): {ece}.",
        "fig_metrics": "Training metrics (all cycles)", "fig_roc": "Test ROC", "fig_cm": "Confusion matrix",
        "fig_rel": "Reliability diagram", "fig_err": "Most confident mistakes", "fig_balance": "Class balance",
        "fig_cam": "Grad-CAM: where the network looked",
        "fig_research": "Accuracy against latency",
        "confused": "Most confused pairs", "per_class": "Per-class metrics",
        "no_eval": "The test split has not been evaluated yet (no metrics.json).",
        "prov": "Provenance", "commit": "Git commit", "fingerprint": "Dataset fingerprint",
        "versions": "Library versions", "params": "Parameters",
        "per_class_head": ["Class", "Precision", "Recall", "F1", "Test images"],
        "confused_head": ["True class", "Predicted class", "Images"],
        "skipped_head": ["File", "Reason"],
        "read_as": "How the dataset was read", "read_as_head": ["Path", "Read as", "Why"],
        "unlabelled": "Unlabelled images (left out of the split)",
        "leaks": "**Leak:** {n} group(s) of identical images sit in different splits of the given split "
                 "(keep_given_split=True); the test accuracy may be inflated by it.",
        "group_leaks": "**Leak:** {n} `{column}` group(s) (a patient, a lesion) sit in different splits of the given "
                       "split; move_leaks=True moves each whole into one split.",
    },
}


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals."""
    return f"{100 * float(x):.2f}%"


def _read(run_dir: Path, name: str):
    """An artifact of the run, or None when it does not exist."""
    p = run_dir / name
    if not p.exists():
        return None
    return pd.read_csv(p) if p.suffix == ".csv" else files.read_json(p)


def _figure(lines: list[str], figures: dict[str, Path], name: str, caption: str) -> None:
    """Append a markdown image link when the figure exists."""
    if name in figures:
        lines += [f"**{caption}**", "", f"![{caption}]({name})", ""]


def _word(t: dict, value) -> str:
    """A parameter value as the report's language says it (the value itself where it has no translation)."""
    return t.get("values", {}).get(str(value), str(value))


def cycles_table(cycles: pd.DataFrame, t: dict, overview: pd.DataFrame | None = None) -> pd.DataFrame:
    """The write-up's table of training cycles from cycles.csv, with each cycle's selection figure (validation).

    `overview` (helpers.evaluate.cycles_overview) says which test figure is the evaluated model's; another
    cycle's test figure is marked as not used for selection.
    """
    roles = {} if overview is None else dict(zip(overview["cycle"], overview["role"]))
    selected = set() if overview is None else set(overview.loc[overview["selected"].astype(bool), "cycle"])
    rows = []
    for _, c in cycles.iterrows():
        n = int(c["cycle"])
        has_val = pd.notna(c.get("best_val_accuracy")) and str(c.get("best_val_accuracy")) != ""
        if pd.notna(c.get("test_accuracy")) and str(c.get("test_accuracy")) != "":
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


def _evaluation_lines(metrics: dict, t: dict) -> list[str]:
    """How the evaluated model was chosen, its intervals, TTA, calibration and the paired comparison."""
    sel = metrics.get("selection")
    lines = []
    if sel:
        lines.append(t["sel_val"].format(cycle=metrics["cycle"], val=pct(sel["val_accuracy"] or 0))
                     if metrics.get("selected_by") == "validation" else
                     t["sel_param"].format(cycle=metrics["cycle"], best=sel.get("run_best_cycle") or "?"))
    if metrics.get("macro_f1_ci95"):
        lo, hi = metrics["macro_f1_ci95"]
        lines.append(t["f1_ci"].format(f1=f"{metrics['macro_f1']:.4f}", lo=f"{lo:.4f}", hi=f"{hi:.4f}"))
    if metrics.get("roc_auc_ci95"):
        lines.append(t["auc_ci"].format(lo=f"{metrics['roc_auc_ci95'][0]:.4f}", hi=f"{metrics['roc_auc_ci95'][1]:.4f}"))
    tta = metrics.get("tta")
    if tta:
        lines.append(t["tta_none"] if tta["mode"] == "none" else t["tta"].format(
            mode=tta["mode"], vw=pct(tta["val_accuracy_without"]), v=pct(tta["val_accuracy"]),
            tw=pct(tta["test_accuracy_without"]), tt=pct(tta["test_accuracy"])))
    cal = metrics.get("calibration")
    if cal:
        lines.append(t["cal"].format(temp=f"{cal['temperature']:.3f}", applied=t["cal_yes" if cal["applied"] else "cal_no"],
                                     vb=f"{cal['val_ece_before']:.4f}", va=f"{cal['val_ece_after']:.4f}",
                                     tb=f"{cal['test_ece_before']:.4f}", ta=f"{cal['test_ece_after']:.4f}"))
    pc = metrics.get("paired_comparison")
    if pc and pc.get("comparable"):
        m = pc["mcnemar"]
        lines.append(t["paired"].format(other=pc["other_cycle"], n=m["n"], diff=f"{100 * pc['difference']:+.2f} pp",
                                        lo=f"{100 * pc['difference_ci95'][0]:+.2f}",
                                        hi=f"{100 * pc['difference_ci95'][1]:+.2f} pp", p=f"{m['p_value']:.3g}",
                                        cycle=metrics["cycle"], a=m["only_a_correct"], b=m["only_b_correct"]))
    elif pc:
        lines.append(t["paired_no"].format(other=pc["other_cycle"], reason=pc["reason"]))
    return lines + [""] if lines else []


def render(run_id: str, lang: str = "ru") -> str:
    """The markdown of REPORT.md for a run."""
    t = TEXT[lang]
    run_dir = paths.run_dir(run_id)
    figures = {p.name: p for p in sorted((run_dir / "figures").glob("*.png"))} if (run_dir / "figures").exists() else {}
    params = _read(run_dir, "params.json") or {}
    nb_params = {k: v for nb in params.get("notebooks", {}).values() for k, v in nb.get("parameters", {}).items()}
    resolved = {k: v for nb in params.get("notebooks", {}).values() for k, v in nb.get("resolved", {}).items()}
    lines = [f"# {t['title']}", "", f"{t['run']}: `{run_id}`", ""]

    lines += [f"## {t['s1']}", "", qualitative_table(lang).to_markdown(index=False), ""]
    research = _read(run_dir, "research.csv")
    if research is not None and len(research):
        study_table = readable(research, lang)
        memory = _read(run_dir, "research_memory.csv")
        repeats = params.get("notebooks", {}).get("01_research", {}).get("parameters", {}).get("research_repeats")
        lines += [study_note(research, lang, memory, repeats), "",
                  as_markdown(study_table), ""]
        checks = claim_checks(research, lang, memory)
        if len(checks):
            lines += [f"**{t['claims']}**", "", checks.to_markdown(index=False), ""]
        _figure(lines, figures, "research_latency_accuracy.png", t["fig_research"])
    else:
        lines += [t["no_research"], ""]

    lines += [f"## {t['s2']}", ""]
    data = _read(run_dir, "data_report.json")
    if data:
        ratios = "/".join(f"{round(100 * r)}" for r in data["ratios"])
        lines += [f"- {t['source']}: `{nb_params.get('dataset', resolved.get('dataset', '?'))}`",
                  f"- {t['layout']}: {t.get('layouts', {}).get(data['layout'], data['layout'])}",
                  f"- {t['images']}: {data['n_images']}, {t['classes']}: {len(data['classes'])}",
                  f"- {t['split']}: {ratios} % ({t['seed']} {data['seed']}): "
                  f"{data['split_totals']['train']} / {data['split_totals']['val']} / {data['split_totals']['test']}",
                  f"- {t['skipped']}: {len(data['skipped'])}",
                  f"- {t['dups']}: {len(data['duplicate_groups'])}, {t['conflicts']}: "
                  f"{len(data['conflicting_duplicates'])}", ""]
        counts = pd.DataFrame([[c, d["train"], d["val"], d["test"], d["train"] + d["val"] + d["test"]]
                               for c, d in data["counts"].items()],
                              columns=[t["class"], t["train"], t["val"], t["test"], t["total"]])
        lines += [counts.to_markdown(index=False), ""]
        lines += [f"- {note}" for note in data.get("notes", [])] + ([""] if data.get("notes") else [])
        if data.get("leaks"):
            lines += [t["leaks"].format(n=len(data["leaks"])), ""]
        if data.get("group_leaks"):
            lines += [t["group_leaks"].format(n=len(data["group_leaks"]), column=data["groups"]["column"]), ""]
        unlabelled = sum(int(u.get("images", 0)) for u in data.get("unlabelled", []))
        if unlabelled:
            lines += [f"- {t['unlabelled']}: {unlabelled}", ""]
        if data.get("explanation"):
            roles = t.get("roles", {})
            read_as = pd.DataFrame([[f"`{r['path']}`", roles.get(r["role"], r["role"]), r["reason"]]
                                    for r in data["explanation"][:20]], columns=t["read_as_head"])
            lines += [f"**{t['read_as']}**", "", read_as.to_markdown(index=False), ""]
        if data["skipped"]:
            skipped = pd.DataFrame(data["skipped"][:20], columns=["path", "reason"])
            lines += [skipped.set_axis(t["skipped_head"], axis=1).to_markdown(index=False), ""]
        _figure(lines, figures, "class_balance.png", t["fig_balance"])

    lines += [f"## {t['s3']}", ""]
    cycles = _read(run_dir, "cycles.csv")
    if cycles is not None and len(cycles):
        last = cycles.iloc[-1]
        rec = params.get("notebooks", {}).get("03_train", {}).get("parameters", {})
        lines += [f"- {t['arch']}: `{last['arch']}`", f"- {t['weights']}: `{last['weights']}`",
                  f"- {t['image_size']}: {int(last['image_size'])}×{int(last['image_size'])} px",
                  f"- {t['batch']}: {int(last['batch_size'])}"]
        if rec:
            lines.append(f"- {t['recipe']}: " + t["recipe_text"].format(
                head=rec.get("head_epochs"), lr=rec.get("lr"), scale=rec.get("backbone_lr_scale"),
                unfreeze=_word(t, rec.get("unfreeze", "all")), schedule=_word(t, rec.get("schedule", "cosine")),
                ls=rec.get("label_smoothing"), bn=t["bn_frozen"] if rec.get("freeze_bn") else t["bn_train"],
                aug=_word(t, rec.get("augment"))))
        lines.append("")
        for _, c in cycles.iterrows():
            val = pct(c["best_val_accuracy"]) if pd.notna(c["best_val_accuracy"]) else "—"
            lines.append(t["cycle_line"].format(cycle=int(c["cycle"]), best_epoch=c["best_epoch"], val=val))
        lines.append("")

    lines += [f"## {t['s4']}", ""]
    if cycles is not None and len(cycles):
        from helpers.evaluation.evaluate import (
            cycles_overview,  # which test figure is the evaluated model's, which cycle was selected
        )
        lines += [cycles_table(cycles, t, cycles_overview(run_dir)).to_markdown(index=False, colalign=["center"] * 6),
                  "", t["acc_note"], ""]
    metrics = _read(run_dir, "metrics.json")
    if metrics:
        lo, hi = metrics["test_accuracy_ci95"]
        unit = metrics.get("intervals", {})
        final = t["final_groups"] if unit.get("unit") == "group" else t["final"]
        lines += [final.format(cycle=metrics.get("cycle", "?"), n=metrics["n_test"], g=unit.get("n_groups"),
                               acc=pct(metrics["test_accuracy"]), lo=pct(lo), hi=pct(hi)), ""]
        auc = metrics["roc_auc"]
        if isinstance(auc, dict):
            lines.append(t["auc_multi"].format(macro=f"{auc['macro']:.4f}", micro=f"{auc['micro']:.4f}"))
        elif auc is not None:
            lines.append(t["auc_bin"].format(pos=metrics["classes"][1], auc=f"{auc:.4f}"))
        if metrics.get("roc_note"):
            present = [c for c in metrics["classes"] if c not in metrics.get("roc_skipped_classes", [])]
            lines.append(t["no_roc"].format(classes=", ".join(present) or "–", n=metrics["n_test"]))
        elif metrics.get("roc_skipped_classes"):
            lines.append(t["auc_skip"].format(classes=", ".join(metrics["roc_skipped_classes"])))
        lines += [t["ece"].format(ece=f"{metrics['ece']:.4f}"), ""] + _evaluation_lines(metrics, t)
    else:
        lines += [t["no_eval"], ""]
    _figure(lines, figures, "training_metrics.png", t["fig_metrics"])
    _figure(lines, figures, "test_roc_curve.png", t["fig_roc"])
    _figure(lines, figures, "confusion_matrix.png", t["fig_cm"])
    if metrics:
        per_class = pd.DataFrame([[c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
                                  for c, v in metrics["per_class"].items()],
                                 columns=t["per_class_head"])
        lines += [f"**{t['per_class']}**", "", per_class.to_markdown(index=False, disable_numparse=True, colalign=["left"] + ["right"] * 4), ""]
        if metrics.get("most_confused"):
            confused = pd.DataFrame(metrics["most_confused"][:5], columns=["true", "pred", "count"])
            lines += [f"**{t['confused']}**", "", confused.set_axis(t["confused_head"], axis=1).to_markdown(index=False),
                      ""]
    _figure(lines, figures, "reliability_diagram.png", t["fig_rel"])
    _figure(lines, figures, "confident_errors.png", t["fig_err"])
    _figure(lines, figures, "gradcam.png", t["fig_cam"])
    from helpers.evaluation.export import (
        parity_markdown,  # export/parity.json, when the model was exported (05 or helpers.export)
    )
    lines += parity_markdown(run_dir, lang)

    lines += [f"## {t['prov']}", "", f"- {t['commit']}: `{params.get('git_commit', 'unknown')}`"]
    if data:
        lines.append(f"- {t['fingerprint']}: `{data['fingerprint'][:16]}`")
    if nb_params:
        lines.append(f"- {t['params']}: " + ", ".join(f"`{k}={v}`" for k, v in sorted(nb_params.items())))
    if params.get("versions"):
        lines.append(f"- {t['versions']}: " + ", ".join(f"{k} {v}" for k, v in params["versions"].items()))
    return "\n".join(lines) + "\n"


def results_markdown(path: Path) -> str:
    """Section 4 of a written REPORT.md for showing in a notebook: the figures above it stand in for its images.

    Its image links are relative to reports/<run_id>/, so a notebook would show them as broken pictures.
    """
    text = Path(path).read_text(encoding="utf-8")
    section = "## 4." + text.split("## 4.", 1)[1] if "## 4." in text else text
    kept = [line for line in section.splitlines() if not line.startswith("![")]
    return "\n".join(kept)


def write_report(run_id: str, lang: str = "ru") -> Path:
    """Write reports/<run_id>/REPORT.md (figures beside it) and a self-contained REPORT.html."""
    if lang not in TEXT:
        raise ValueError(f"lang={lang!r}: use ru or en.")
    out = paths.report_dir(run_id)
    out.mkdir(parents=True, exist_ok=True)
    text = render(run_id, lang)
    fig_dir = paths.run_dir(run_id) / "figures"
    if fig_dir.exists():
        for fig in fig_dir.glob("*.png"):
            with files.atomic_path(out / fig.name) as tmp:
                shutil.copyfile(fig, tmp)
    path = out / "REPORT.md"
    files.write_text(path, text)
    files.write_text(out / "REPORT.html", to_html(text, out, f"{TEXT[lang]['title']}: {run_id}", lang))
    from helpers.reporting.index import (
        write_index,  # every report also refreshes reports/index.md, the runs side by side
    )
    write_index(lang)
    return path
