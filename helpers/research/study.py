"""The architecture study: the write-up's qualitative table beside figures measured on this machine."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from helpers.models.zoo import arch_spec
from helpers.research import measure

RESEARCH_COLUMNS = ["arch", "family", "params_m", "head_params", "gflops", "latency_ms", "throughput_ips",
                    "train_ips", "peak_mem_mb", "imagenet_top1", "source", "image_size", "native_size", "batch_size",
                    "latency_runs", "throughput_runs", "train_runs", "mem_measure", "device", "threads",
                    "measured_at", "reused"]
MEMORY_COLUMNS = ["arch", "image_size", "batch_size", "peak_mem_mb", "step_seconds", "mem_measure", "device",
                  "measured_at", "reused"]

# The write-up's own table (section 1), kept verbatim in Russian and translated for lang=en.
QUALITATIVE = {
    "EfficientNet": {
        "ru": ("Максимальная эффективность благодаря составному масштабированию, подходит для высокого "
               "разрешения, автоматически подбирает глубину, ширину и разрешение (как конструктор)",
               "Требует больше ресурсов для обучения (минимум 8 ГБ видеопамяти)"),
        "en": ("Top efficiency thanks to compound scaling; suits high resolutions; depth, width and resolution "
               "are scaled together (like a construction kit)",
               "Needs more resources to train (at least 8 GB of video memory)"),
        "source": "https://habr.com/ru/articles/498168/",
    },
    "ResNet-50": {
        "ru": ("Стабильно работает даже на устаревших ПК. «Прыгающие связи» решают проблему «забывчивости» "
               "нейросети. Часто берут для первых экспериментов",
               "На маленьких датасетах (менее 10 тыс. фото) может переобучаться"),
        "en": ("Runs reliably even on old PCs. Skip connections solve the network's 'forgetting'. "
               "A common first experiment",
               "May overfit on small datasets (under 10k photos)"),
        "source": "https://top-technologies.ru/ru/article/view?id=37190",
    },
    "MobileNetV3": {
        "ru": ("Легкая модель. Заточена под смартфоны и дроны: работает даже на процессорах с 1 ГБ памяти. "
               "Экономит заряд батареи (в 3 раза быстрее ResNet). Идеальна для приложений типа «камера-шопинг»",
               "Ниже точность на сложных данных. Не подходит для научных задач (анализ рентгена, микроскопия)."),
        "en": ("A light model for phones and drones: runs on processors with 1 GB of memory. Saves battery "
               "(3× faster than ResNet). Ideal for 'camera shopping' apps",
               "Lower accuracy on hard data. Not for scientific tasks (X-ray analysis, microscopy)."),
        "source": "https://top-technologies.ru/ru/article/view?id=37190",
    },
}


def qualitative_table(lang: str = "ru") -> pd.DataFrame:
    """The write-up's table of families: advantages, drawbacks, source."""
    cols = {"ru": ["Архитектура", "Преимущества", "Недостатки", "Источник"],
            "en": ["Architecture", "Advantages", "Drawbacks", "Source"]}[lang]
    rows = [[family, d[lang][0], d[lang][1], d["source"]] for family, d in QUALITATIVE.items()]
    return pd.DataFrame(rows, columns=cols)


def sizes_for(archs: list[str], image_size: int = 0) -> dict[str, int]:
    """The input size each architecture is measured at: its own native size, or `image_size` when given."""
    return {arch: image_size or arch_spec(arch).native_size for arch in archs}


def memory_arch(archs: list[str]) -> str | None:
    """The EfficientNet the memory claim is checked on: the study's largest (the write-up's B4 by default)."""
    effnets = [a for a in archs if arch_spec(a).family == "EfficientNet"]
    return max(effnets, key=lambda a: (arch_spec(a).native_size, a)) if effnets else None


def study(archs: list[str], image_size: int, device: torch.device, batch_size: int, num_classes: int = 10,
          repeats: int = 5, reuse: bool = True, memory_batches: list[int] | None = None,
          progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(research.csv, research_memory.csv): one measured row per architecture, each at its own size, and the
    peak memory of a training step of the study's largest EfficientNet at `memory_batches`, at its native size.

    Every figure comes from a fresh process (see helpers.measure); with `reuse`, one measured earlier on this
    machine with the same libraries, device, threads and request is taken from the cache instead.
    """
    sizes = sizes_for(archs, image_size)
    machine = measure.machine_key(device, torch.get_num_threads())
    rows, memory = [], []
    with measure.Measurer() as measurer:
        for arch in archs:
            t0 = time.perf_counter()
            request = {"kind": "row", "arch": arch, "image_size": sizes[arch], "device": str(device),
                       "batch_size": batch_size, "num_classes": num_classes, "repeats": repeats}
            rows.append(measure.cached(request, machine, measurer, reuse))
            if progress:
                _say(arch, sizes[arch], batch_size, rows[-1], time.perf_counter() - t0)
        target = memory_arch(archs)
        for batch in (memory_batches or []) if target else []:
            native = arch_spec(target).native_size
            same = [r for r in rows if r["arch"] == target and r["image_size"] == native and r["batch_size"] == batch]
            if same:  # the row's own process already took a training step at this batch and size
                r = same[0]
                memory.append({k: r[k] for k in ("arch", "image_size", "batch_size", "peak_mem_mb", "mem_measure",
                                                 "device", "measured_at", "reused")}
                              | {"step_seconds": round(batch / r["train_ips"], 2) if r.get("train_ips") else None})
                continue
            t0 = time.perf_counter()
            request = {"kind": "memory", "arch": target, "image_size": native, "device": str(device),
                       "batch_size": batch, "num_classes": num_classes}
            memory.append(measure.cached(request, machine, measurer, reuse))
            if progress:
                _say(target, native, batch, memory[-1], time.perf_counter() - t0, "memory of a training step")
    table = pd.DataFrame(rows)
    table["threads"] = machine["threads"]
    return table.reindex(columns=RESEARCH_COLUMNS), pd.DataFrame(memory).reindex(columns=MEMORY_COLUMNS)


def _say(arch: str, size: int, batch: int, result: dict, seconds: float, what: str = "") -> None:
    """One progress line: what was measured, at which size, and whether it was reused."""
    how = f"reused (measured {result['measured_at']})" if result.get("reused") else f"{seconds:.1f}s"
    print(f"{arch} at {size} px, batch {batch}{', ' + what if what else ''}: {how}", flush=True)


def scatter_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows measured at their native size, the resolution their published top-1 was measured at."""
    native = table["arch"].map(lambda a: arch_spec(a).native_size)
    return table[table["image_size"] == native]


def scatter_table(table: pd.DataFrame) -> pd.DataFrame:
    """`scatter_rows`, each named with its input size ('efficientnet-b4 · 380 px') for the figure's labels."""
    rows = scatter_rows(table).copy()
    rows["arch"] = rows["arch"] + " · " + rows["image_size"].astype(int).astype(str) + " px"
    return rows


# research.csv keeps short machine names; a reader sees words with units, in the report's language.
# {batch} is the batch the figure was measured at.
COLUMN_TITLES = {
    "arch": ("Архитектура", "Architecture"),
    "family": ("Семейство", "Family"),
    "image_size": ("Вход, px", "Input, px"),
    "params_m": ("Параметры, млн", "Parameters, M"),
    "head_params": ("Параметры новой головы", "New head parameters"),
    "gflops": ("Вычисления, GFLOPs", "Compute, GFLOPs"),
    "latency_ms": ("Задержка (батч 1), мс", "Latency (batch 1), ms"),
    "throughput_ips": ("Пропускная способность (батч {batch}), изобр./с", "Throughput (batch {batch}), images/s"),
    "train_ips": ("Шаг обучения (батч {batch}), изобр./с", "Training step (batch {batch}), images/s"),
    "peak_mem_mb": ("Пиковая память шага обучения (батч {batch}), МБ",
                    "Peak memory of a training step (batch {batch}), MB"),
    "imagenet_top1": ("Top-1 на ImageNet (опубликовано), %", "ImageNet top-1 (published), %"),
    "source": ("Источник top-1", "Top-1 source"),
    "runs": ("Замеров: задержка / батч / обучение", "Timed runs: latency / batch / training"),
    "bakeoff_val_accuracy": ("Точность на валидации своих данных, %", "Validation accuracy on this data, %"),
    "bakeoff_seconds": ("Время дообучения, с", "Fine-tuning time, s"),
    "bakeoff_note": ("Примечание", "Note"),
}
# How many decimals a reader needs: enough to tell the candidates apart, no more.
DECIMALS = {"params_m": 2, "gflops": 2, "latency_ms": 1, "throughput_ips": 0, "train_ips": 1, "peak_mem_mb": 0,
            "imagenet_top1": 1, "bakeoff_seconds": 0}
SOURCES_RU = {
    "TensorFlow TPU EfficientNet-Lite README (ImageNet top-1)": "README EfficientNet-Lite в репозитории TensorFlow TPU",
    "efficientnet-pytorch README (ImageNet top-1)": "README пакета efficientnet-pytorch",
}


def _number(value, decimals: int) -> str:
    """A figure rounded for reading, with a thin space between thousands; a dash when missing."""
    if value is None or pd.isna(value):
        return "—"
    if decimals == 0 and abs(float(value)) < 10:
        decimals = 1  # 0.8 and 1.2 images/s must not both read "1"
    return f"{float(value):,.{decimals}f}".replace(",", "\u202f")


def _source(text: str, lang: str) -> str:
    """Where a published top-1 comes from, in the report's language."""
    if lang != "ru" or not isinstance(text, str):
        return text if isinstance(text, str) else "—"
    if text.startswith("torchvision weights metadata"):
        return "метаданные весов torchvision" + text[len("torchvision weights metadata"):]
    return SOURCES_RU.get(text, text)


def _batch(table: pd.DataFrame) -> str:
    """The batch of the study's batch figures, as a title says it ('8'; '?' for a table that does not record it)."""
    batches = sorted({int(b) for b in table.get("batch_size", pd.Series(dtype=float)).dropna()})
    return "/".join(map(str, batches)) or "?"


def _runs(row: pd.Series) -> str:
    """How many timed runs each figure of a row is the median of: latency / batch / training step."""
    cols = ("latency_runs", "throughput_runs", "train_runs")
    if any(pd.isna(row.get(c)) for c in cols):
        return "—"
    return " / ".join(str(int(row[c])) for c in cols)


def readable(table: pd.DataFrame, lang: str = "ru") -> pd.DataFrame:
    """research.csv as a reader sees it: titled columns with units and sizes, figures rounded, in `lang`."""
    k = 0 if lang == "ru" else 1
    batch = _batch(table)
    table = table.assign(runs=table.apply(_runs, axis=1)) if {"latency_runs", "train_runs"} <= set(table) else table
    out = pd.DataFrame(index=table.index)
    for col in COLUMN_TITLES:  # device, threads and dates are said once above the table
        if col not in table.columns:
            continue
        values = table[col]
        if col in DECIMALS:
            values = values.map(lambda v, d=DECIMALS[col]: _number(v, d))
        elif col == "head_params":
            values = values.map(lambda v: _number(v, 0))
        elif col == "image_size":
            values = values.map(lambda v: "—" if pd.isna(v) else str(int(v)))
        elif col == "bakeoff_val_accuracy":
            values = values.map(lambda v: _number(100 * v, 1) if pd.notna(v) else "—")
        elif col == "source":
            values = values.map(lambda v: _source(v, lang))
        elif col == "bakeoff_note":
            values = values.map(lambda v: ("" if not isinstance(v, str) or not v else
                                           "нет весов ImageNet на этой машине" if lang == "ru" else v))
        out[COLUMN_TITLES[col][k].format(batch=batch)] = values
    return out.reset_index(drop=True)


def alignments(frame: pd.DataFrame) -> list[str]:
    """Markdown column alignment for a `readable` table: figures right, words left."""
    words = {COLUMN_TITLES[c][k] for c in ("arch", "family", "source", "bakeoff_note") for k in (0, 1)}
    return ["left" if c in words else "right" for c in frame.columns]


def as_markdown(frame: pd.DataFrame) -> str:
    """A `readable` or `claim_checks` table as markdown: whole cells (no '…'), figures right-aligned."""
    return frame.to_markdown(index=False, disable_numparse=True, colalign=alignments(frame))


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f}"


def _memory_claim(table: pd.DataFrame, memory: pd.DataFrame | None, ru: bool) -> str | None:
    """What was measured against 'EfficientNet needs at least 8 GB of video memory', sizes and batches named."""
    if memory is not None and len(memory):
        first = memory.iloc[0]
        gpu = str(first["device"]).startswith("cuda")
        size, arch = int(first["image_size"]), first["arch"]
        native = size == arch_spec(arch).native_size
        unit = "ГБ" if ru else "GB"
        parts = [f"{'батч' if ru else 'batch'} {int(r['batch_size'])} — {_gb(r['peak_mem_mb'])} {unit}"
                 for _, r in memory.iterrows()]
        over = [str(int(r["batch_size"])) for _, r in memory.iterrows() if r["peak_mem_mb"] > 8 * 1024]
        how = str(first["mem_measure"])
        if ru:
            kind = "видеопамяти" if gpu else "оперативной памяти"
            how = {measure.CPU_MEMORY: "прирост пикового RSS свежего процесса"}.get(how, how)
            verdict = (f"больше 8 ГБ при батче {', '.join(over)}" if over else "8 ГБ не превышены ни при одном батче")
            text = (f"{arch}, вход {size} px{' (родной размер)' if native else ''}, один шаг обучения (AdamW): "
                    f"{', '.join(parts)} {kind} ({first['device']}: {how}); {verdict}")
            return text + ("" if gpu else "; на GPU видеопамять измеряется с device=cuda")
        kind = "of GPU memory" if gpu else "of RAM"
        verdict = f"above 8 GB at batch {', '.join(over)}" if over else "below 8 GB at every batch"
        text = (f"{arch} at {size} px{' (its native size)' if native else ''}, one training step (AdamW): "
                f"{', '.join(parts)} {kind} ({first['device']}: {how}); {verdict}")
        return text + ("" if gpu else "; run with device=cuda to measure video memory")
    if "peak_mem_mb" not in table:
        return None
    effnets = table[table["arch"].str.startswith("efficientnet")].dropna(subset=["peak_mem_mb"])
    if not len(effnets):
        return None
    worst = effnets.loc[effnets["peak_mem_mb"].idxmax()]
    gpu = str(worst.get("device", "cpu")).startswith("cuda")
    size, batch = int(worst.get("image_size", 0)), worst.get("batch_size")
    at_batch = "" if pd.isna(batch) else (f", батч {int(batch)}" if ru else f", batch {int(batch)}")
    if ru:
        where = "видеопамяти" if gpu else "оперативной памяти"
        return f"{worst['arch']}: пик {_gb(worst['peak_mem_mb'])} ГБ {where} на шаг обучения при входе {size} px{at_batch}"
    return (f"{worst['arch']}: {_gb(worst['peak_mem_mb'])} GB {'GPU' if gpu else 'RAM'} peak for a training step "
            f"at {size} px{at_batch}")


def claim_checks(table: pd.DataFrame, lang: str = "ru", memory: pd.DataFrame | None = None) -> pd.DataFrame:
    """Quoted claims of the write-up beside what the measurement says, sizes named, in `lang`."""
    ru = lang == "ru"
    rows = []
    lat = dict(zip(table["arch"], table["latency_ms"]))
    size = dict(zip(table["arch"], table["image_size"])) if "image_size" in table else {}
    for mobile in ("mobilenet_v3_large", "mobilenet_v3_small"):
        if "resnet50" in lat and mobile in lat:
            ratio = lat["resnet50"] / lat[mobile]
            times = f"в {ratio:.1f} раза быстрее" if ru else f"{ratio:.1f}× faster"
            ms = "мс" if ru else "ms"
            text = f"{mobile}: {times} ({lat['resnet50']:.1f} / {lat[mobile]:.1f} {ms})"
            if size and pd.notna(size.get("resnet50")) and pd.notna(size.get(mobile)):
                a, b = int(size["resnet50"]), int(size[mobile])
                px = f"{a} px" if a == b else f"{a} / {b} px"
                text += f", {'батч 1, вход' if ru else 'batch 1 at'} {px}"
            rows.append(["MobileNetV3 в 3 раза быстрее ResNet" if ru else "MobileNetV3 is 3× faster than ResNet", text])
    measured = _memory_claim(table, memory, ru)
    if measured:
        rows.append(["EfficientNet требует минимум 8 ГБ видеопамяти" if ru
                     else "EfficientNet needs at least 8 GB of video memory", measured])
    cols = ["Утверждение источника", "Что измерено здесь"] if ru else ["Quoted claim", "What this machine measured"]
    return pd.DataFrame(rows, columns=cols)


def _when(values: pd.Series) -> str:
    """The span of measurement times, e.g. '2026-12-01 18:36–18:40 UTC'."""
    stamps = pd.to_datetime(values.dropna(), utc=True, errors="coerce").dropna()
    if not len(stamps):
        return ""
    lo, hi = stamps.min().strftime("%Y-%m-%d %H:%M"), stamps.max().strftime("%Y-%m-%d %H:%M")
    if lo == hi:
        return f"{lo} UTC"
    return f"{lo}–{hi[11:] if lo[:10] == hi[:10] else hi} UTC"


def study_note(table: pd.DataFrame, lang: str = "ru", memory: pd.DataFrame | None = None,
               repeats: int | None = None) -> str:
    """How the study table was measured: device, threads, sizes, repetitions, when, and what was reused."""
    ru = lang == "ru"
    device = table["device"].iloc[0] if "device" in table and len(table) else "?"
    threads = table["threads"].dropna() if "threads" in table else pd.Series(dtype=float)
    on = f"{device}, {int(threads.iloc[0])} {'потока' if ru else 'threads'}" if len(threads) else f"{device}"
    native = len(scatter_rows(table)) == len(table)
    sizes = sorted({int(s) for s in table["image_size"].dropna()}) if "image_size" in table else []
    if ru:
        text = [f"Измерено на этой машине ({on}): параметры — у конфигурации ImageNet на 1000 классов; "
                "GFLOPs — по torch.utils.flop_counter (2 операции на умножение-сложение), на одно изображение."]
        text.append("Каждая архитектура измерена при своем родном размере входа (столбец «Вход, px»), "
                    "при котором опубликована ее точность top-1." if native else
                    f"Вход: {', '.join(map(str, sizes))} px (столбец «Вход, px»); опубликованная top-1 относится к "
                    "родному размеру, и на графике «точность — задержка» только строки родного размера.")
        text.append("Каждая строка — в свежем процессе; пиковая память — у шага обучения (AdamW): на CPU — прирост "
                    "пикового RSS процесса, на GPU — torch.cuda.max_memory_allocated.")
        text.append(f"Задержка, пропускная способность и шаг обучения — медиана до {repeats or 'N'} замеров после "
                    "разогревочного; если один прогон дольше 2 с, замеров меньше, вплоть до одного — самого "
                    "разогревочного (столбец «Замеров»).")
    else:
        text = [f"Measured on this machine ({on}): parameters of the 1000-class ImageNet configuration; GFLOPs by "
                "torch.utils.flop_counter (2 per multiply-add), per image."]
        text.append("Each architecture is measured at its own native input size (column 'Input, px'), the size its "
                    "published top-1 was measured at." if native else
                    f"Input: {', '.join(map(str, sizes))} px (column 'Input, px'); a published top-1 belongs to the "
                    "native size, so the accuracy–latency figure shows only rows at their native size.")
        text.append("Each row in a fresh process; peak memory is that of a training step (AdamW): on CPU the "
                    "process's peak RSS increase, on GPU torch.cuda.max_memory_allocated.")
        text.append(f"Latency, throughput and the training step are medians of up to {repeats or 'N'} timed runs "
                    "after a warm-up; a network whose one run takes over 2 s is timed fewer times, down to its "
                    "single warm-up run (column 'Timed runs').")
    frames = [table] + ([memory] if memory is not None and len(memory) else [])
    stamps = pd.concat([f["measured_at"] for f in frames if "measured_at" in f])
    reused = pd.concat([f["reused"] for f in frames if "reused" in f]).astype("boolean").fillna(False)
    when = _when(stamps) if len(stamps) else ""
    if when:
        n, total = int(reused.sum()), len(reused)
        if ru:
            text.append(f"Измерено {when}." + (f" {n} из {total} измерений взяты из кэша этой машины (тот же "
                                                "хост и процессор, версии torch, устройство, число потоков и "
                                                "параметры замера; research_reuse=False измеряет заново)."
                                                if n else ""))
        else:
            text.append(f"Measured {when}." + (f" {n} of {total} measurements were reused from this machine's "
                                               "cache (same host and CPU, torch version, device, threads and "
                                               "measurement settings; research_reuse=False measures afresh)."
                                               if n else ""))
    return " ".join(text)


def bakeoff(archs: list[str], frame: pd.DataFrame, classes: list[str], image_size: int, device: torch.device,
            epochs: int, batch_size: int, seed: int, out_dir: Path, progress: bool = False) -> pd.DataFrame:
    """Fine-tune every candidate whose ImageNet weights are available on one split, same budget and seed."""
    from helpers.data.imagecache import split_arrays
    from helpers.models.zoo import WeightsError, imagenet_state_dict
    from helpers.training.cycle import TrainConfig, run_cycle
    train_data = split_arrays(frame, classes, "train", image_size)
    val_data = split_arrays(frame, classes, "val", image_size)
    rows = []
    for arch in archs:
        try:
            imagenet_state_dict(arch)
        except WeightsError as exc:
            rows.append({"arch": arch, "bakeoff_val_accuracy": None, "bakeoff_seconds": None,
                         "bakeoff_note": str(exc).split(":")[0]})
            continue
        cfg = TrainConfig(arch=arch, classes=classes, image_size=image_size, batch_size=batch_size, epochs=epochs,
                          head_epochs=5, seed=seed, device=str(device))
        row = run_cycle(cfg, Path(out_dir) / arch, *train_data, *val_data, device, progress=progress)
        rows.append({"arch": arch, "bakeoff_val_accuracy": row["best_val_accuracy"],
                     "bakeoff_seconds": row["seconds"], "bakeoff_note": ""})
    return pd.DataFrame(rows, columns=["arch", "bakeoff_val_accuracy", "bakeoff_seconds", "bakeoff_note"])
