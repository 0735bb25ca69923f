"""helpers.research.study and .measure: rows at native sizes, memory of a training step, reuse, the bake-off."""

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


def test_scatter_keeps_only_rows_at_their_native_size():
    native = pd.DataFrame({"arch": ["efficientnet-lite0"], "image_size": [224]})
    assert research.scatter_rows(native.assign(image_size=[128])).empty and len(research.scatter_rows(native)) == 1
    assert research.scatter_table(native)["arch"].tolist() == ["efficientnet-lite0 · 224 px"]


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
