"""Export: every arch exports to ONNX and TorchScript with parity; a run's bundle is self-contained and checked."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.evaluation import export, predict, preprocess
from helpers.models import inference
from helpers.models.zoo import build_model
from helpers.reporting import report
from helpers.utils import paths
from tests.test_predict import run, trained_home  # noqa: F401  (the trained run fixture)


@pytest.mark.parametrize("arch", ["efficientnet-lite0", "efficientnet-b0", "resnet50", "mobilenet_v3_small",
                                  "mobilenet_v3_large"])
@pytest.mark.integration
def test_every_arch_exports_with_parity(arch, tmp_path):
    torch.manual_seed(0)
    model = build_model(arch, 3, "none").eval()
    norm = inference.normalizer_for(arch)
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    reference = inference.predict_proba(model, norm, images, torch.device("cpu"), batch_size=4)
    net = export.exportable(model, norm)
    if arch == "efficientnet-lite0":  # its ReLU6 must survive: set_swish would have put Swish back
        assert not [m for m in net.modules() if type(m).__name__ in ("Swish", "MemoryEfficientSwish")]
    formats = ["onnx", "torchscript"] if arch == "efficientnet-b0" else ["onnx"]  # TorchScript of Lite0: below
    for fmt in formats:
        path = tmp_path / export.FORMATS[fmt]
        export.write_model(net, fmt, path, 32)
        result = export.parity(reference, export.run_exported(path, fmt, images, batch_size=3), [0, 1, 2, 0, 1])
        assert result["passed"] and result["max_abs_diff"] < export.TOLERANCE, (fmt, result)
        assert result["top1_agreement"] == 1.0 and result["accuracy_exported"] == result["accuracy_pytorch"]


@pytest.mark.integration
def test_run_export_writes_a_self_contained_bundle_and_parity(run, capsys):  # noqa: F811
    assert export.main(["--run-id", "tiny", "--format", "onnx"]) == 0
    assert export.main(["--run-id", "tiny", "--format", "torchscript"]) == 0
    assert "top-1 agreement 1.0000" in capsys.readouterr().out
    folder = run / "export"
    assert {"model.onnx", "model.pt", "preprocessing.json", "classes.txt", "parity.json", "README.md"} <= \
        {p.name for p in folder.iterdir()}
    config = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["config"]
    spec = json.loads((folder / "preprocessing.json").read_text())
    assert spec == json.loads(json.dumps(preprocess.spec_from_config(config)))
    assert (folder / "classes.txt").read_text().split() == config["classes"]
    parity = json.loads((folder / "parity.json").read_text())
    assert set(parity) == {"onnx", "torchscript"}
    for fmt, figures in parity.items():
        assert figures["passed"] and figures["max_abs_diff"] <= figures["tolerance"] == export.TOLERANCE
        assert figures["n"] == (pd.read_csv(run / "split.csv")["split"] == "test").sum()
        assert figures["accuracy_exported"] == figures["accuracy_pytorch"]
    # Self-contained: preprocessing.json alone prepares an image the ONNX model answers like 05 does.
    test = predict.predict_images(run, "", torch.device("cpu"))
    x = preprocess.load_images(test["images"].files, spec)
    probs = export.run_exported(folder / "model.onnx", "onnx", x)
    assert np.abs(probs - test["probs"]).max() < export.TOLERANCE
    lines = report.render("tiny", "en")
    assert "Exported model" in lines and f"{parity['onnx']['max_abs_diff']:.1e}" in lines


def test_parity_above_tolerance_is_an_error_and_keeps_no_model(run, monkeypatch):  # noqa: F811
    real = export.run_exported
    monkeypatch.setattr(export, "run_exported", lambda *a, **k: np.clip(real(*a, **k) + 1e-3, 0, 1))
    (run / "export" / "model.pt").unlink(missing_ok=True)
    with pytest.raises(export.ExportError, match=r"differs from PyTorch by up to 0\.001 .*tolerance 0\.0001"):
        export.export_run(run, "torchscript")
    assert not (run / "export" / "model.pt").exists()
    assert json.loads((run / "export" / "parity.json").read_text())["torchscript"]["passed"] is False


def test_export_without_a_checkpoint_names_it(capsys):
    assert export.main(["--run-id", "untrained", "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "best.pt not found" in err
    assert not (paths.run_dir("untrained") / "export").exists()


def test_an_exporter_failure_is_one_sentence_naming_arch_and_format(run, monkeypatch):  # noqa: F811
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate\nlong trace ...")
    monkeypatch.setattr(export.torch.onnx, "export", broken)
    with pytest.raises(export.ExportError, match=r"onnx export of efficientnet-lite0 \(best.pt\) failed: "
                                                 r"RuntimeError: unsupported operator aten::frobnicate; try"):
        export.export_run(run, "onnx")


@pytest.mark.integration
def test_the_export_folder_holds_one_models_bundle_and_a_failed_check_keeps_no_file_of_its_format(
        run, monkeypatch):  # noqa: F811
    import shutil

    from helpers.training import checkpoints
    other = paths.run_dir("two-cycles")
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("export", ".lock"))
    second = torch.load(checkpoints.cycle_dir(other, 1) / "best.pt", weights_only=True)
    head = [k for k in second["model"] if k.endswith("weight")][-1]
    second["model"][head] = second["model"][head] * 1.5  # cycle 2: another model of the same run
    second["cycle"] = 2
    checkpoints.save(checkpoints.cycle_dir(other, 2) / "best.pt", second)
    folder = other / "export"
    export.export_run(other, "onnx", cycle=1)
    result = export.export_run(other, "torchscript", cycle=2)
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["README.md", "classes.txt", "model.pt",
                                                                       "parity.json", "preprocessing.json"]
    parity = json.loads((folder / "parity.json").read_text())
    assert set(parity) == {"torchscript"} and parity["torchscript"]["cycle"] == 2
    assert parity["torchscript"]["checkpoint"] == "checkpoints/cycle-2/best.pt"
    assert "model.onnx" not in (folder / "README.md").read_text()
    aside = other / result["superseded"]
    assert (aside / "model.onnx").exists() and json.loads((aside / "parity.json").read_text())["onnx"]["cycle"] == 1
    # A failed parity check leaves no model file of its format, not even the one that passed before.
    real = export.run_exported
    monkeypatch.setattr(export, "run_exported", lambda *a, **k: np.clip(real(*a, **k) + 1e-3, 0, 1))
    with pytest.raises(export.ExportError, match=r"no model.pt was kept \(the earlier one is in "
                                                 r"export/superseded/\d{8}-\d{6}\+?\)"):
        export.export_run(other, "torchscript", cycle=2)
    assert not (folder / "model.pt").exists() and not list(folder.glob(".*.tmp"))
    assert json.loads((folder / "parity.json").read_text())["torchscript"]["passed"] is False
