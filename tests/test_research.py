"""helpers.research.study and .measure: rows at native sizes, memory of a training step, reuse, the bake-off."""

import sys
import time

import pandas as pd
import pytest
import torch

from helpers.params.schema import DEFAULT_RESEARCH_ARCHS, parse_list
from helpers.research import disturbance, measure, stepmemory
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
    seconds, runs, spread = measure.timed(lambda: (calls.append(1), time.sleep(0.06)), CPU, repeats=5, budget_s=0.05)
    assert runs == 1 and len(calls) == 1 and seconds >= 0.06 and spread is None  # its warm-up run is the figure
    calls.clear()
    seconds, runs, spread = measure.timed(lambda: calls.append(1), CPU, repeats=4, budget_s=1.0)
    assert runs == 4 and len(calls) == 5 and spread >= 1  # a warm-up, then four timed runs


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="processes die with their parent through Linux prctl")
def test_a_study_stopped_mid_measurement_leaves_no_measuring_process(tmp_path):
    import os
    import subprocess
    script = tmp_path / "stopped.py"
    script.write_text(
        "import os, sys, threading, time\n"
        "from helpers.research import measure\n"
        "m = measure.Measurer()\n"
        "request = {'kind': 'memory', 'arch': 'efficientnet-b4', 'image_size': 380, 'device': 'cpu',\n"
        "           'batch_size': 16, 'num_classes': 10, 'threads': 1}\n"
        "threading.Thread(target=m.run, args=(request,), daemon=True).start()\n"
        "time.sleep(4)\n"
        "print(m._server.pid, flush=True)\n"
        "os._exit(0)  # as a kernel killed by a timeout: no close, no goodbye\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(measure.paths.PROJECT_ROOT)})
    server = int(done.stdout.split()[-1])

    def alive(pid: int) -> bool:  # a zombie waiting for init to reap it has ended
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False
    deadline = time.time() + 10
    while time.time() < deadline and alive(server):
        time.sleep(0.2)
    children = subprocess.run(["pgrep", "-P", str(server)], capture_output=True, text=True).stdout.split()
    assert not alive(server) and not any(alive(int(c)) for c in children)


def test_a_failed_measurement_names_the_architecture():
    with measure.Measurer() as measurer, pytest.raises(RuntimeError, match=r"measuring mobilenet_v3_small at 64 px"):
        measurer.run({"kind": "memory", "arch": "mobilenet_v3_small", "image_size": 64, "device": "cuda:99",
                      "batch_size": 1, "num_classes": 10, "threads": 1})


@pytest.mark.integration
def test_study_states_sizes_checks_memory_at_the_native_size_and_reuses_on_the_same_machine(monkeypatch):
    for bound in ("SPREAD_BOUND", "LOAD_BOUND", "FLOPS_RATIO"):  # reuse is the point here, on a machine maybe busy
        monkeypatch.setattr(disturbance, bound, float("inf"))
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


class FakeMeasurer:
    """Answers Measurer requests from a script: per arch, the timings of each successive measurement."""

    def __init__(self, script: dict[str, list[dict]], memory_mb=lambda batch: 500.0 + 600.0 * batch):
        self.script, self.memory_mb, self.asked = script, memory_mb, []

    def run(self, request: dict) -> dict:
        self.asked.append((request["kind"], request["arch"], request["batch_size"]))
        base = {"arch": request["arch"], "image_size": request["image_size"], "batch_size": request["batch_size"],
                "device": "cpu", "mem_measure": measure.CPU_MEMORY}
        if request["kind"] == "memory":
            return base | {"peak_mem_mb": self.memory_mb(request["batch_size"]), "step_seconds": 1.0}
        times = [r for r in self.asked if r[:2] == ("row", request["arch"])]
        timing = self.script[request["arch"]][min(len(times), len(self.script[request["arch"]])) - 1]
        family = "EfficientNet" if request["arch"].startswith("efficientnet") else "MobileNetV3"
        return base | {"family": family, "params_m": 1.0, "head_params": 10, "peak_mem_mb": self.memory_mb(8),
                       "imagenet_top1": 70.0, "source": "test", "native_size": request["image_size"],
                       "latency_runs": 5, "throughput_runs": 5, "train_runs": 3, "latency_spread": 1.1,
                       "throughput_spread": 1.1, "train_spread": 1.1, "others_cores": 0.0} | timing


def _fake_study(monkeypatch, script, archs, **kwargs):
    fake = FakeMeasurer(script, **kwargs.pop("memory", {}))
    monkeypatch.setattr(measure.Measurer, "run", lambda self, request: fake.run(request))
    table, memory = research.study(archs, 0, CPU, 8, repeats=5, reuse=False, progress=False, **kwargs)
    return table.set_index("arch"), memory, fake


STEADY = {"gflops": 0.4, "latency_ms": 10.0, "throughput_ips": 100.0, "train_ips": 20.0}


def test_disturbed_repeats_are_measured_again_once_and_marked_only_if_they_stay_disturbed(monkeypatch):
    script = {"mobilenet_v3_small": [STEADY | {"latency_spread": 2.4}, STEADY],  # calm on the second look
              "mobilenet_v3_large": [STEADY | {"train_spread": 1.9}, STEADY | {"train_spread": 1.7}],
              "efficientnet-lite0": [STEADY | {"others_cores": 0.9}, STEADY | {"others_cores": 0.8}]}
    table, _, fake = _fake_study(monkeypatch, script, list(script), memory_batches=[])
    assert [a for k, a, _ in fake.asked].count("mobilenet_v3_small") == 2  # measured again once, not more
    assert [a for k, a, _ in fake.asked].count("mobilenet_v3_large") == 2
    small, large, lite = table.loc["mobilenet_v3_small"], table.loc["mobilenet_v3_large"], table.loc["efficientnet-lite0"]
    assert small["remeasured"] and not small["disturbed"] and small["latency_spread"] == 1.1
    assert large["remeasured"] and large["disturbed"] and large["disturbed_by"] == "spread:train=1.70"
    assert lite["disturbed"] and lite["disturbed_by"] == "load:0.80"
    assert disturbance.SPREAD_BOUND == 1.5 and disturbance.LOAD_BOUND == 0.25


def test_a_row_slower_than_its_family_with_twice_the_flops_is_measured_again(monkeypatch):
    script = {"efficientnet-lite0": [STEADY | {"gflops": 0.8, "latency_ms": 60.0}] * 2,  # slower than B2, stays so
              "efficientnet-b0": [STEADY | {"gflops": 0.8, "latency_ms": 70.0}, STEADY | {"gflops": 0.8}],
              "efficientnet-b2": [STEADY | {"gflops": 2.0, "latency_ms": 50.0}],
              "mobilenet_v3_small": [STEADY | {"gflops": 0.1, "latency_ms": 80.0}]}  # another family: not compared
    table, _, fake = _fake_study(monkeypatch, script, list(script), memory_batches=[])
    assert table.loc["efficientnet-lite0", "disturbed_by"] == "order:latency<efficientnet-b2"
    assert table.loc["efficientnet-b0", "remeasured"] and not table.loc["efficientnet-b0", "disturbed"]
    assert not table.loc["efficientnet-b2", "remeasured"] and not table.loc["mobilenet_v3_small", "remeasured"]
    # steady figures of the defaults, measured on 2 cores: EfficientNet's times follow its FLOPs well within 2x
    quiet = {"efficientnet-lite0": (0.8, 19.6), "efficientnet-b0": (0.78, 33.4), "efficientnet-b1": (1.4, 44.1),
             "efficientnet-b2": (2.0, 77.5), "efficientnet-b3": (3.7, 115.5), "efficientnet-b4": (8.8, 189.7)}
    rows = [{"arch": a, "family": "EfficientNet", "device": "cpu", "gflops": g, "latency_ms": ms}
            for a, (g, ms) in quiet.items()]
    assert not any(disturbance.signs(r, rows) for r in rows)


def test_a_slow_batch_is_extrapolated_on_a_line_through_measured_ones(monkeypatch):
    slow = STEADY | {"gflops": 8.8, "train_ips": 0.8}  # a step of batch 16 would take 20 s
    table, memory, fake = _fake_study(monkeypatch, {"efficientnet-b4": [slow]}, ["efficientnet-b4"],
                                      memory_batches=[8, 16])
    assert ("memory", "efficientnet-b4", 2) in fake.asked and ("memory", "efficientnet-b4", 16) not in fake.asked
    assert memory["batch_size"].tolist() == [8, 16] and memory["how"].tolist() == ["measured", "extrapolated"]
    assert memory.loc[1, "peak_mem_mb"] == pytest.approx(500.0 + 600.0 * 16) and memory.loc[1, "fit_batches"] == "2,8"
    assert pd.isna(memory.loc[1, "step_seconds"])
    # near the 8 GB line the verdict hangs on the figure: it is measured, not read off the line
    near = lambda batch: 500.0 + 480.0 * batch if batch != 16 else 8000.0  # noqa: E731  the line says 8 180 MB
    _, memory, fake = _fake_study(monkeypatch, {"efficientnet-b4": [slow]}, ["efficientnet-b4"],
                                  memory_batches=[8, 16], memory={"memory_mb": near})
    assert ("memory", "efficientnet-b4", 16) in fake.asked and memory["how"].tolist() == ["measured", "measured"]
    assert memory.loc[1, "peak_mem_mb"] == 8000.0
    fast = STEADY | {"gflops": 8.8, "train_ips": 20.0}  # quick steps (a GPU): every batch measured directly
    _, memory, fake = _fake_study(monkeypatch, {"efficientnet-b4": [fast]}, ["efficientnet-b4"],
                                  memory_batches=[8, 16, 32])
    assert memory["how"].tolist() == ["measured"] * 3 and ("memory", "efficientnet-b4", 2) not in fake.asked


def test_the_table_and_its_note_show_spreads_bounds_and_disturbed_rows_in_both_languages(monkeypatch):
    from helpers.reporting import studytables
    script = {"efficientnet-lite0": [STEADY | {"gflops": 0.8, "latency_ms": 60.0, "others_cores": 0.8}] * 2,
              "efficientnet-b2": [STEADY | {"gflops": 2.0, "latency_ms": 50.0, "latency_spread": 1.05}]}
    table, _, _ = _fake_study(monkeypatch, script, list(script), memory_batches=[])
    table = table.reset_index()
    en = studytables.readable(table, "en")
    assert en["Architecture"].tolist() == ["efficientnet-lite0 ⚠", "efficientnet-b2"]
    spread = "Spread of timed runs (slowest / fastest): latency / batch / training"
    assert en[spread].tolist() == ["⚠ 1.10× / 1.10× / 1.10×", "1.05× / 1.10× / 1.10×"]
    note = studytables.study_note(table, "en", None, 5)
    assert "slowest timed run is over 1.5× its fastest" in note and "over 0.25 of a core" in note
    assert "at least 2× its FLOPs" in note
    assert ("marked ⚠ disturbed: efficientnet-lite0 (other processes took 0.80 cores; latency longer than "
            "efficientnet-b2's)") in note
    ru = studytables.study_note(table, "ru", None, 5)
    assert "помечены ⚠ как нарушенные: efficientnet-lite0 (другие процессы заняли 0.80 ядра; задержка дольше, " \
           "чем у efficientnet-b2)" in ru
    steady = studytables.study_note(table.assign(disturbed=False, disturbed_by=""), "en", None, 5)
    assert "no row stayed so (measured again: efficientnet-lite0)" in steady


def test_the_memory_claim_says_which_batch_was_extrapolated(monkeypatch):
    from helpers.reporting import studytables
    slow = STEADY | {"gflops": 8.8, "train_ips": 0.8}
    table, memory, _ = _fake_study(monkeypatch, {"efficientnet-b4": [slow]}, ["efficientnet-b4"],
                                   memory_batches=[8, 16])
    text = studytables.claim_checks(table.reset_index(), "en", memory).iloc[-1, 1]
    assert "batch 8 — 5.2 GB, batch 16 — 9.9 GB (extrapolated on the line through the measured batches 2, 8)" in text
    assert "above 8 GB at batch 16" in text
    ru = studytables.claim_checks(table.reset_index(), "ru", memory).iloc[-1, 1]
    assert "батч 16 — 9.9 ГБ (экстраполяция по прямой через измеренные батчи 2, 8)" in ru
