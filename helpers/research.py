"""The architecture study: the write-up's qualitative table beside figures measured on this machine."""

from __future__ import annotations

import gc
import json
import resource
import statistics
import time
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import paths
from .models import arch_spec, build_model, count_parameters, head_of, published_top1

RESEARCH_COLUMNS = ["arch", "family", "params_m", "head_params", "gflops", "latency_ms", "throughput_ips",
                    "train_ips", "peak_mem_mb", "imagenet_top1", "source", "image_size", "device"]

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


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float:
    """A memory figure of this process from /proc (VmHWM: peak, VmRSS: current) in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `fn` after warm-up runs, synchronising CUDA."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(arch: str, image_size: int, device: torch.device, batch_size: int = 8, num_classes: int = 10,
            repeats: int = 3, train_step: bool = True) -> dict:
    """Measure one architecture: parameters, FLOPs, latency, throughput, a training step, peak memory."""
    spec = arch_spec(arch)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base = _rss_mb("VmRSS")
    reset = _peak_rss_reset()
    model = build_model(arch, 1000, "none")
    params = count_parameters(model)
    in_features = getattr(head_of(model, arch), "in_features", None) or model.classifier[-1].in_features
    head_params = in_features * num_classes + num_classes
    model = model.to(device).eval()
    x1 = torch.randn(1, 3, image_size, image_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x1)
    flops = counter.get_total_flops()
    with torch.no_grad():
        latency = _median_seconds(lambda: model(x1), repeats + 2)
        xb = torch.randn(batch_size, 3, image_size, image_size, device=device)
        batch_time = _median_seconds(lambda: model(xb), repeats)
    train_ips = None
    if train_step:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        y = torch.randint(0, 1000, (batch_size,), device=device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb), y).backward()
            opt.step()
        train_ips = batch_size / _median_seconds(step, max(1, repeats - 2))  # the slowest figure to take
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _rss_mb("VmHWM") - base if reset else float("nan")
    top1, source = published_top1(arch)
    return {"arch": arch, "family": spec.family, "params_m": round(params / 1e6, 6), "head_params": head_params,
            "gflops": round(flops / 1e9, 3), "latency_ms": round(latency * 1000, 2),
            "throughput_ips": round(batch_size / batch_time, 1),
            "train_ips": round(train_ips, 2) if train_ips else None, "peak_mem_mb": round(peak, 1),
            "imagenet_top1": top1, "source": source, "image_size": image_size, "device": str(device)}


def study(archs: list[str], image_size: int, device: torch.device, batch_size: int, num_classes: int = 10,
          progress: bool = True) -> pd.DataFrame:
    """research.csv's frame: one measured row per architecture."""
    for arch in archs:
        arch_spec(arch)
    rows = []
    # Each architecture is measured in a fresh process: memory freed by one model stays with the
    # allocator and would hide the next one's peak.
    for arch in archs:
        t0 = time.perf_counter()
        request = json.dumps({"arch": arch, "image_size": image_size, "device": str(device),
                              "batch_size": batch_size, "num_classes": num_classes,
                              "threads": torch.get_num_threads()})
        done = subprocess.run([sys.executable, "-m", "helpers.research", request], capture_output=True,
                              text=True, cwd=paths.PROJECT_ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"measuring {arch} failed: {done.stderr.strip().splitlines()[-1:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if progress:
            print(f"{arch}: {time.perf_counter() - t0:.1f}s", flush=True)
    return pd.DataFrame(rows, columns=RESEARCH_COLUMNS)


# research.csv keeps short machine names; a reader sees words with units, in the report's language.
COLUMN_TITLES = {
    "arch": ("Архитектура", "Architecture"),
    "family": ("Семейство", "Family"),
    "params_m": ("Параметры, млн", "Parameters, M"),
    "head_params": ("Параметры новой головы", "New head parameters"),
    "gflops": ("Вычисления, GFLOPs", "Compute, GFLOPs"),
    "latency_ms": ("Задержка (батч 1), мс", "Latency (batch 1), ms"),
    "throughput_ips": ("Пропускная способность, изобр./с", "Throughput, images/s"),
    "train_ips": ("Шаг обучения, изобр./с", "Training step, images/s"),
    "peak_mem_mb": ("Пиковая память, МБ", "Peak memory, MB"),
    "imagenet_top1": ("Top-1 на ImageNet (опубликовано), %", "ImageNet top-1 (published), %"),
    "source": ("Источник top-1", "Top-1 source"),
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


def readable(table: pd.DataFrame, lang: str = "ru") -> pd.DataFrame:
    """research.csv as a reader sees it: titled columns with units, figures rounded, in `lang`."""
    k = 0 if lang == "ru" else 1
    out = pd.DataFrame(index=table.index)
    for col in table.columns:
        if col not in COLUMN_TITLES:
            continue  # device and image size are said once above the table
        values = table[col]
        if col in DECIMALS:
            values = values.map(lambda v, d=DECIMALS[col]: _number(v, d))
        elif col == "head_params":
            values = values.map(lambda v: _number(v, 0))
        elif col == "bakeoff_val_accuracy":
            values = values.map(lambda v: _number(100 * v, 1) if pd.notna(v) else "—")
        elif col == "source":
            values = values.map(lambda v: _source(v, lang))
        elif col == "bakeoff_note":
            values = values.map(lambda v: ("" if not isinstance(v, str) or not v else
                                           "нет весов ImageNet на этой машине" if lang == "ru" else v))
        out[COLUMN_TITLES[col][k]] = values
    return out.reset_index(drop=True)


def alignments(frame: pd.DataFrame) -> list[str]:
    """Markdown column alignment for a `readable` table: figures right, words left."""
    words = {COLUMN_TITLES[c][k] for c in ("arch", "family", "source", "bakeoff_note") for k in (0, 1)}
    return ["left" if c in words else "right" for c in frame.columns]


def claim_checks(table: pd.DataFrame, lang: str = "ru") -> pd.DataFrame:
    """Quoted claims of the write-up beside what the measurement says, in `lang`."""
    ru = lang == "ru"
    rows = []
    lat = dict(zip(table["arch"], table["latency_ms"]))
    for mobile in ("mobilenet_v3_large", "mobilenet_v3_small"):
        if "resnet50" in lat and mobile in lat:
            ratio = lat["resnet50"] / lat[mobile]
            times = f"в {ratio:.1f} раза быстрее" if ru else f"{ratio:.1f}× faster"
            ms = "мс" if ru else "ms"
            rows.append(["MobileNetV3 в 3 раза быстрее ResNet" if ru else "MobileNetV3 is 3× faster than ResNet",
                         f"{mobile}: {times} ({lat['resnet50']:.1f} / {lat[mobile]:.1f} {ms})"])
    effnets = table[table["arch"].str.startswith("efficientnet")] if "peak_mem_mb" in table else table.iloc[:0]
    if len(effnets):
        worst = effnets.loc[effnets["peak_mem_mb"].idxmax()]
        gpu = str(worst.get("device", "cpu")).startswith("cuda")
        size = int(worst.get("image_size", 0))
        gb = f"{worst['peak_mem_mb'] / 1024:.1f}"
        if ru:
            where = "видеопамяти" if gpu else "оперативной памяти"
            measured = f"{worst['arch']}: пик {gb} ГБ {where} на шаг обучения при входе {size} px"
        else:
            measured = f"{worst['arch']}: {gb} GB {'GPU' if gpu else 'RAM'} peak for a training step at {size} px"
        rows.append(["EfficientNet требует минимум 8 ГБ видеопамяти" if ru
                     else "EfficientNet needs at least 8 GB of video memory", measured])
    cols = ["Утверждение источника", "Что измерено здесь"] if ru else ["Quoted claim", "What this machine measured"]
    return pd.DataFrame(rows, columns=cols)


if __name__ == "__main__":  # one isolated measurement, as `study` runs it
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args.pop("threads"))
    args["device"] = torch.device(args["device"])
    print(json.dumps(measure(**args)))


def bakeoff(archs: list[str], frame: pd.DataFrame, classes: list[str], image_size: int, device: torch.device,
            epochs: int, batch_size: int, seed: int, out_dir: Path, progress: bool = False) -> pd.DataFrame:
    """Fine-tune every candidate whose ImageNet weights are available on one split, same budget and seed."""
    from .imagecache import split_arrays
    from .models import WeightsError, imagenet_state_dict
    from .train import TrainConfig, run_cycle
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
