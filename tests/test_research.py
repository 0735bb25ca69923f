"""helpers.research: measured rows, the quoted table, claims checked against measurements."""

import pandas as pd
import pytest
import torch

from helpers import research


def test_measure_gives_exact_params_and_positive_figures():
    row = research.measure("mobilenet_v3_small", 64, torch.device("cpu"), batch_size=2, num_classes=5, repeats=1)
    assert row["params_m"] == pytest.approx(2.542856, abs=1e-6)
    assert row["head_params"] == 1024 * 5 + 5
    assert row["gflops"] > 0 and row["latency_ms"] > 0 and row["train_ips"] > 0
    assert row["imagenet_top1"] == pytest.approx(67.668)


def test_qualitative_table_in_both_languages():
    ru, en = research.qualitative_table("ru"), research.qualitative_table("en")
    assert ru.iloc[:, 0].tolist() == en.iloc[:, 0].tolist() == ["EfficientNet", "ResNet-50", "MobileNetV3"]
    assert "8 ГБ видеопамяти" in ru.iloc[0, 2] and "8 GB" in en.iloc[0, 2]


def test_claim_check_reports_measured_ratio():
    table = pd.DataFrame({"arch": ["resnet50", "mobilenet_v3_large"], "latency_ms": [30.0, 10.0]})
    checks = research.claim_checks(table, "en")
    assert checks.iloc[0, 1].startswith("mobilenet_v3_large: 3.0× faster")
    ru = research.claim_checks(table, "ru")
    assert list(ru.columns) == ["Утверждение источника", "Что измерено здесь"]
    assert ru.iloc[0, 1] == "mobilenet_v3_large: в 3.0 раза быстрее (30.0 / 10.0 мс)"


def _measured_rows() -> pd.DataFrame:
    return pd.DataFrame([{"arch": "efficientnet-lite0", "family": "EfficientNet", "params_m": 4.652008,
                          "head_params": 12810, "gflops": 0.79812, "latency_ms": 21.2345, "throughput_ips": 101.37,
                          "train_ips": 12.345, "peak_mem_mb": 812.44, "imagenet_top1": 75.1,
                          "source": "TensorFlow TPU EfficientNet-Lite README (ImageNet top-1)", "image_size": 224,
                          "device": "cpu"}])


def test_readable_table_is_russian_rounded_and_titled_with_units():
    ru = research.readable(_measured_rows(), "ru")
    assert list(ru.columns) == ["Архитектура", "Семейство", "Параметры, млн", "Параметры новой головы",
                                "Вычисления, GFLOPs", "Задержка (батч 1), мс", "Пропускная способность, изобр./с",
                                "Шаг обучения, изобр./с", "Пиковая память, МБ",
                                "Top-1 на ImageNet (опубликовано), %", "Источник top-1"]
    row = ru.iloc[0]
    assert row["Параметры, млн"] == "4.65" and row["Задержка (батч 1), мс"] == "21.2"
    assert row["Параметры новой головы"] == "12\u202f810" and row["Пиковая память, МБ"] == "812"
    assert row["Источник top-1"] == "README EfficientNet-Lite в репозитории TensorFlow TPU"
    en = research.readable(_measured_rows(), "en")
    assert "Parameters, M" in en.columns and en.iloc[0]["Throughput, images/s"] == "101"


def test_bakeoff_trains_candidates_with_weights_and_names_the_rest(make_dataset, tmp_path, monkeypatch):
    import urllib.error

    from helpers import data

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    run = tmp_path / "run"
    frame, report = data.split_for(run, str(make_dataset(per_class=8)), 42)
    table = research.bakeoff(["efficientnet-lite0", "mobilenet_v3_small"], frame, report["classes"], 32,
                             torch.device("cpu"), 1, 8, 42, run / "bakeoff")
    lite, mobile = table.iloc[0], table.iloc[1]
    assert 0 <= lite["bakeoff_val_accuracy"] <= 1 and lite["bakeoff_note"] == ""
    assert pd.isna(mobile["bakeoff_val_accuracy"])
    assert "ImageNet weights for arch=mobilenet_v3_small are not on this machine" in mobile["bakeoff_note"]
    assert (run / "bakeoff" / "efficientnet-lite0" / "cycles.csv").exists()
