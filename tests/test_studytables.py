"""helpers.reporting.studytables: the study as a reader sees it — the write-up's table, titled and rounded
figures, claims checked with sizes and batches named — in both languages."""

import pandas as pd

from helpers.reporting import studytables
from helpers.research import measure
from helpers.research.study import RESEARCH_COLUMNS


def test_qualitative_table_in_both_languages():
    ru, en = studytables.qualitative_table("ru"), studytables.qualitative_table("en")
    assert ru.iloc[:, 0].tolist() == en.iloc[:, 0].tolist() == ["EfficientNet", "ResNet-50", "MobileNetV3"]
    assert "8 ГБ видеопамяти" in ru.iloc[0, 2] and "8 GB" in en.iloc[0, 2]


def test_claim_check_reports_measured_ratio_and_the_size():
    table = pd.DataFrame({"arch": ["resnet50", "mobilenet_v3_large"], "latency_ms": [30.0, 10.0]})
    checks = studytables.claim_checks(table, "en")
    assert checks.iloc[0, 1].startswith("mobilenet_v3_large: 3.0× faster")
    ru = studytables.claim_checks(table, "ru")
    assert list(ru.columns) == ["Утверждение источника", "Что измерено здесь"]
    assert ru.iloc[0, 1] == "mobilenet_v3_large: в 3.0 раза быстрее (30.0 / 10.0 мс)"
    sized = studytables.claim_checks(table.assign(image_size=[224, 224]), "en")
    assert sized.iloc[0, 1] == "mobilenet_v3_large: 3.0× faster (30.0 / 10.0 ms), batch 1 at 224 px"


def _memory(device="cpu") -> pd.DataFrame:
    how = measure.CUDA_MEMORY if device.startswith("cuda") else measure.CPU_MEMORY
    return pd.DataFrame([{"arch": "efficientnet-b4", "image_size": 380, "batch_size": b, "peak_mem_mb": mb,
                          "step_seconds": s, "mem_measure": how, "device": device,
                          "measured_at": "2026-12-01T18:00:00+00:00", "reused": False}
                         for b, mb, s in ((8, 6000.0, 9.0), (16, 11500.0, 27.0))])


def test_memory_claim_names_arch_size_batches_and_the_verdict():
    table = _measured_rows()
    en = studytables.claim_checks(table, "en", _memory()).set_index("Quoted claim")
    text = en.loc["EfficientNet needs at least 8 GB of video memory", "What this machine measured"]
    assert text.startswith("efficientnet-b4 at 380 px (its native size), one training step (AdamW): "
                           "batch 8 — 5.9 GB, batch 16 — 11.2 GB of RAM (cpu: peak RSS increase")
    assert "above 8 GB at batch 16" in text and "device=cuda" in text
    ru = studytables.claim_checks(table, "ru", _memory("cuda:0")).iloc[-1, 1]
    assert "батч 8 — 5.9 ГБ, батч 16 — 11.2 ГБ видеопамяти (cuda:0: torch.cuda.max_memory_allocated)" in ru
    assert "больше 8 ГБ при батче 16" in ru and "device=cuda" not in ru
    small = _memory().assign(peak_mem_mb=[3000.0, 6000.0])
    assert "below 8 GB at every batch" in studytables.claim_checks(table, "en", small).iloc[-1, 1]


def _measured_rows() -> pd.DataFrame:
    return pd.DataFrame([{"arch": "efficientnet-lite0", "family": "EfficientNet", "params_m": 4.652008,
                          "head_params": 12810, "gflops": 0.79812, "latency_ms": 21.2345, "throughput_ips": 101.37,
                          "train_ips": 12.345, "peak_mem_mb": 812.44, "imagenet_top1": 75.1,
                          "source": "TensorFlow TPU EfficientNet-Lite README (ImageNet top-1)", "image_size": 224,
                          "native_size": 224, "batch_size": 8, "latency_runs": 5, "throughput_runs": 3,
                          "train_runs": 1, "mem_measure": measure.CPU_MEMORY, "device": "cpu", "threads": 2,
                          "measured_at": "2026-12-01T18:36:30+00:00", "reused": True}],
                        columns=RESEARCH_COLUMNS)


def test_readable_table_is_russian_rounded_and_titled_with_units_sizes_and_runs():
    ru = studytables.readable(_measured_rows(), "ru")
    assert list(ru.columns) == ["Архитектура", "Семейство", "Вход, px", "Параметры, млн", "Параметры новой головы",
                                "Вычисления, GFLOPs", "Задержка (батч 1), мс",
                                "Пропускная способность (батч 8), изобр./с", "Шаг обучения (батч 8), изобр./с",
                                "Пиковая память шага обучения (батч 8), МБ",
                                "Top-1 на ImageNet (опубликовано), %", "Источник top-1",
                                "Замеров: задержка / батч / обучение"]
    row = ru.iloc[0]
    assert row["Параметры, млн"] == "4.65" and row["Задержка (батч 1), мс"] == "21.2" and row["Вход, px"] == "224"
    assert row["Параметры новой головы"] == "12\u202f810" and row["Пиковая память шага обучения (батч 8), МБ"] == "812"
    assert row["Источник top-1"] == "README EfficientNet-Lite в репозитории TensorFlow TPU"
    assert row["Замеров: задержка / батч / обучение"] == "5 / 3 / 1"
    en = studytables.readable(_measured_rows(), "en")
    assert "Parameters, M" in en.columns and en.iloc[0]["Throughput (batch 8), images/s"] == "101"


def test_study_note_says_sizes_repetitions_and_when_figures_were_reused():
    table = _measured_rows()
    note = studytables.study_note(table, "en", _memory(), repeats=5)
    assert "cpu, 2 threads" in note and "its own native input size" in note and "up to 5 timed runs" in note
    assert "Measured 2026-12-01 18:00–18:36 UTC. 1 of 3 measurements were reused" in note
    off_native = table.assign(image_size=[128], reused=[False])
    note = studytables.study_note(off_native, "ru", None, repeats=5)
    assert "Вход: 128 px" in note and "только строки родного размера" in note and "из кэша" not in note
