"""helpers.research and helpers.measure: rows at native sizes, memory of a training step, reuse, claims checked."""

import sys
import time

import pandas as pd
import pytest
import torch

from helpers.params.schema import DEFAULT_RESEARCH_ARCHS, parse_list
from helpers.research import measure
from helpers.research import study as research

CPU = torch.device("cpu")


def test_measure_gives_exact_params_and_positive_figures():
    row = measure.measure("mobilenet_v3_small", 64, CPU, batch_size=2, num_classes=5, repeats=1)
    assert row["params_m"] == pytest.approx(2.542856, abs=1e-6)
    assert row["head_params"] == 1024 * 5 + 5
    assert row["gflops"] > 0 and row["latency_ms"] > 0 and row["train_ips"] > 0
    assert row["imagenet_top1"] == pytest.approx(67.668)
    assert (row["image_size"], row["native_size"], row["batch_size"]) == (64, 224, 2)
    assert row["latency_runs"] == row["throughput_runs"] == row["train_runs"] == 1


def test_every_architecture_is_measured_at_its_native_size_by_default():
    sizes = research.sizes_for(parse_list(DEFAULT_RESEARCH_ARCHS))
    assert sizes == {"efficientnet-lite0": 224, "efficientnet-b0": 224, "efficientnet-b1": 240,
                     "efficientnet-b2": 260, "efficientnet-b3": 300, "efficientnet-b4": 380, "resnet50": 224,
                     "mobilenet_v3_large": 224, "mobilenet_v3_small": 224}
    assert set(research.sizes_for(["efficientnet-b4", "resnet50"], 128).values()) == {128}
    assert research.memory_arch(parse_list(DEFAULT_RESEARCH_ARCHS)) == "efficientnet-b4"
    assert research.memory_arch(["resnet50"]) is None


def test_a_slow_run_is_timed_once_and_a_fast_one_repeatedly():
    calls = []
    seconds, runs = measure.timed(lambda: (calls.append(1), time.sleep(0.06)), CPU, repeats=5, budget_s=0.05)
    assert runs == 1 and len(calls) == 1 and seconds >= 0.06  # its warm-up run is the figure
    calls.clear()
    seconds, runs = measure.timed(lambda: calls.append(1), CPU, repeats=4, budget_s=1.0)
    assert runs == 4 and len(calls) == 5  # a warm-up, then four timed runs


@pytest.mark.integration
def test_peak_memory_of_a_training_step_grows_with_the_batch():
    with measure.Measurer() as measurer:
        small, big = (measurer.run({"kind": "memory", "arch": "mobilenet_v3_small", "image_size": 160,
                                    "device": "cpu", "batch_size": b, "num_classes": 10, "threads": 1})
                      for b in (1, 16))
    # activations of 15 more 160 px images: several MB each; a figure that ignored the step would not grow
    assert big["peak_mem_mb"] > small["peak_mem_mb"] + 100
    assert small["mem_measure"] == measure.CPU_MEMORY and small["image_size"] == 160


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the peak-RSS mark is reset through Linux /proc")
def test_peak_memory_is_the_peak_not_what_is_left_after_it():
    memory = measure._Memory(CPU)
    block = torch.ones(100 * 2**20)  # 400 MB, written, then handed back to the system
    del block
    assert memory.peak_mb() > 350 and memory.measure == measure.CPU_MEMORY


def test_a_failed_measurement_names_the_architecture():
    with measure.Measurer() as measurer, pytest.raises(RuntimeError, match=r"measuring mobilenet_v3_small at 64 px"):
        measurer.run({"kind": "memory", "arch": "mobilenet_v3_small", "image_size": 64, "device": "cuda:99",
                      "batch_size": 1, "num_classes": 10, "threads": 1})


@pytest.mark.integration
def test_study_states_sizes_checks_memory_at_the_native_size_and_reuses_on_the_same_machine(monkeypatch):
    archs = ["efficientnet-lite0", "mobilenet_v3_small"]
    table, memory = research.study(archs, 64, CPU, 2, repeats=1, memory_batches=[2, 3], progress=False)
    assert list(table.columns) == research.RESEARCH_COLUMNS and table["image_size"].tolist() == [64, 64]
    assert table["native_size"].tolist() == [224, 224] and not table["reused"].any()
    # the memory claim is checked on the study's EfficientNet at its native size, not at the smaller 64 px
    assert memory["arch"].tolist() == ["efficientnet-lite0"] * 2 and memory["image_size"].tolist() == [224, 224]
    assert memory["batch_size"].tolist() == [2, 3] and memory["peak_mem_mb"].iloc[1] > memory["peak_mem_mb"].iloc[0]

    def no_measuring(self, request):
        raise AssertionError(f"measured {request['arch']} again")
    monkeypatch.setattr(measure.Measurer, "run", no_measuring)
    again, memory_again = research.study(archs, 64, CPU, 2, repeats=1, memory_batches=[2, 3], progress=False)
    assert again["reused"].all() and memory_again["reused"].all()
    assert again["measured_at"].tolist() == table["measured_at"].tolist()
    assert again["latency_ms"].tolist() == table["latency_ms"].tolist()
    with pytest.raises(AssertionError, match="measured efficientnet-lite0 again"):
        research.study(archs, 64, CPU, 2, repeats=1, reuse=False, progress=False)
    with pytest.raises(AssertionError, match="measured efficientnet-lite0 again"):  # another batch: another key
        research.study(archs, 64, CPU, 4, repeats=1, progress=False)
    real_threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: real_threads + 1)
    with pytest.raises(AssertionError, match="measured efficientnet-lite0 again"):  # other threads: other key
        research.study(archs, 64, CPU, 2, repeats=1, progress=False)


def test_qualitative_table_in_both_languages():
    ru, en = research.qualitative_table("ru"), research.qualitative_table("en")
    assert ru.iloc[:, 0].tolist() == en.iloc[:, 0].tolist() == ["EfficientNet", "ResNet-50", "MobileNetV3"]
    assert "8 ГБ видеопамяти" in ru.iloc[0, 2] and "8 GB" in en.iloc[0, 2]


def test_claim_check_reports_measured_ratio_and_the_size():
    table = pd.DataFrame({"arch": ["resnet50", "mobilenet_v3_large"], "latency_ms": [30.0, 10.0]})
    checks = research.claim_checks(table, "en")
    assert checks.iloc[0, 1].startswith("mobilenet_v3_large: 3.0× faster")
    ru = research.claim_checks(table, "ru")
    assert list(ru.columns) == ["Утверждение источника", "Что измерено здесь"]
    assert ru.iloc[0, 1] == "mobilenet_v3_large: в 3.0 раза быстрее (30.0 / 10.0 мс)"
    sized = research.claim_checks(table.assign(image_size=[224, 224]), "en")
    assert sized.iloc[0, 1] == "mobilenet_v3_large: 3.0× faster (30.0 / 10.0 ms), batch 1 at 224 px"


def _memory(device="cpu") -> pd.DataFrame:
    how = measure.CUDA_MEMORY if device.startswith("cuda") else measure.CPU_MEMORY
    return pd.DataFrame([{"arch": "efficientnet-b4", "image_size": 380, "batch_size": b, "peak_mem_mb": mb,
                          "step_seconds": s, "mem_measure": how, "device": device,
                          "measured_at": "2026-12-01T18:00:00+00:00", "reused": False}
                         for b, mb, s in ((8, 6000.0, 9.0), (16, 11500.0, 27.0))])


def test_memory_claim_names_arch_size_batches_and_the_verdict():
    table = _measured_rows()
    en = research.claim_checks(table, "en", _memory()).set_index("Quoted claim")
    text = en.loc["EfficientNet needs at least 8 GB of video memory", "What this machine measured"]
    assert text.startswith("efficientnet-b4 at 380 px (its native size), one training step (AdamW): "
                           "batch 8 — 5.9 GB, batch 16 — 11.2 GB of RAM (cpu: peak RSS increase")
    assert "above 8 GB at batch 16" in text and "device=cuda" in text
    ru = research.claim_checks(table, "ru", _memory("cuda:0")).iloc[-1, 1]
    assert "батч 8 — 5.9 ГБ, батч 16 — 11.2 ГБ видеопамяти (cuda:0: torch.cuda.max_memory_allocated)" in ru
    assert "больше 8 ГБ при батче 16" in ru and "device=cuda" not in ru
    small = _memory().assign(peak_mem_mb=[3000.0, 6000.0])
    assert "below 8 GB at every batch" in research.claim_checks(table, "en", small).iloc[-1, 1]


def _measured_rows() -> pd.DataFrame:
    return pd.DataFrame([{"arch": "efficientnet-lite0", "family": "EfficientNet", "params_m": 4.652008,
                          "head_params": 12810, "gflops": 0.79812, "latency_ms": 21.2345, "throughput_ips": 101.37,
                          "train_ips": 12.345, "peak_mem_mb": 812.44, "imagenet_top1": 75.1,
                          "source": "TensorFlow TPU EfficientNet-Lite README (ImageNet top-1)", "image_size": 224,
                          "native_size": 224, "batch_size": 8, "latency_runs": 5, "throughput_runs": 3,
                          "train_runs": 1, "mem_measure": measure.CPU_MEMORY, "device": "cpu", "threads": 2,
                          "measured_at": "2026-12-01T18:36:30+00:00", "reused": True}],
                        columns=research.RESEARCH_COLUMNS)


def test_readable_table_is_russian_rounded_and_titled_with_units_sizes_and_runs():
    ru = research.readable(_measured_rows(), "ru")
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
    en = research.readable(_measured_rows(), "en")
    assert "Parameters, M" in en.columns and en.iloc[0]["Throughput (batch 8), images/s"] == "101"


def test_study_note_says_sizes_repetitions_and_when_figures_were_reused():
    table = _measured_rows()
    note = research.study_note(table, "en", _memory(), repeats=5)
    assert "cpu, 2 threads" in note and "its own native input size" in note and "up to 5 timed runs" in note
    assert "Measured 2026-12-01 18:00–18:36 UTC. 1 of 3 measurements were reused" in note
    off_native = table.assign(image_size=[128], reused=[False])
    note = research.study_note(off_native, "ru", None, repeats=5)
    assert "Вход: 128 px" in note and "только строки родного размера" in note and "из кэша" not in note
    assert research.scatter_rows(off_native).empty and len(research.scatter_rows(table)) == 1
    assert research.scatter_table(table)["arch"].tolist() == ["efficientnet-lite0 · 224 px"]


def test_bakeoff_trains_candidates_with_weights_and_names_the_rest(make_dataset, tmp_path, monkeypatch):
    import urllib.error

    from helpers.data import dataset as data

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


def test_memory_batches_parameter_names_a_bad_value():
    from helpers.params.schema import ParameterError, check
    with pytest.raises(ParameterError, match=r"research_memory_batches has \['x'\]"):
        check("research_memory_batches", "8,x")
    assert check("research_memory_batches", "") == "" and check("research_memory_batches", "8, 16") == "8, 16"
