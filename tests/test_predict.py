"""05 and `python -m helpers.predict`: any input, the model's own preprocessing, bad input listed, never a crash."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import pipeline
from helpers.data import dataset as data
from helpers.data import imagecache
from helpers.evaluation import predict, preprocess, stats
from helpers.training.checkpoints import CheckpointError
from helpers.training.config import TrainConfig
from helpers.training.cycle import run_cycle
from helpers.utils import paths
from tests.conftest import make_image

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory):
    """A STUDY_HOME holding run 'tiny': Lite0 (ImageNet weights, 32 px) with a head trained for one epoch."""
    home = tmp_path_factory.mktemp("home")
    ds = tmp_path_factory.mktemp("ds")
    for k, c in enumerate(CLASSES):
        for i in range(8):
            make_image(ds / c / f"{c}_{i}.png", seed=1000 * k + i, shade=k)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(paths.HOME_ENV, str(home))
        run = paths.run_dir("tiny")
        frame, report = data.split_for(run, str(ds), 42)
        cfg = TrainConfig(arch="efficientnet-lite0", classes=report["classes"], image_size=32, batch_size=8,
                                epochs=0, head_epochs=1, weights="imagenet")
        run_cycle(cfg, run, *imagecache.split_arrays(frame, cfg.classes, "train", 32),
                        *imagecache.split_arrays(frame, cfg.classes, "val", 32), torch.device("cpu"), progress=False)
    return home


@pytest.fixture
def run(trained_home, monkeypatch):
    """The trained run, with STUDY_HOME pointing at it."""
    monkeypatch.setenv(paths.HOME_ENV, str(trained_home))
    return paths.run_dir("tiny")


def _mixed_folder(root):
    """Class folders the model knows and one it does not, plus a truncated file, a text file and odd modes."""
    for k, c in enumerate(["cat", "dog", "wolf"]):
        for i in range(3):
            make_image(root / c / f"{c}{i}.png", seed=50 + 10 * k + i, shade=k)
    make_image(root / "cat" / "gray.png", seed=7, mode="L")
    make_image(root / "dog" / "cmyk.jpg", seed=8, mode="CMYK")
    arr16 = (np.random.default_rng(9).integers(0, 255, (24, 24)) * 257).astype(np.uint16)
    Image.fromarray(arr16).save(root / "dog" / "deep16.png")
    whole = (root / "cat" / "cat0.png").read_bytes()
    (root / "cat" / "broken.png").write_bytes(whole[: len(whole) // 2])
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0\1")
    return root


@pytest.mark.notebook
def test_test_split_through_05_gives_exactly_04s_probabilities(run):
    """04 and 05 run as notebooks; 05 alone through the runner (--from 05_predict), on the run's test split."""
    import papermill
    shutil.rmtree(run / "predictions", ignore_errors=True)
    papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / "04_evaluate.ipynb"), str(run / "04.ipynb"),
                               parameters={"run_id": "tiny", "lang": "en"}, cwd=str(paths.NOTEBOOKS_DIR),
                               kernel_name=pipeline._kernel_name(), progress_bar=False)
    assert pipeline.select("05_predict") == ["05_predict"]
    assert pipeline.main(["--run-id", "tiny", "--from", "05_predict", "-p", "top_k", "3", "-p", "export",
                          "torchscript"]) == 0
    assert (run / "notebooks" / "05_predict.ipynb").exists() and not (run / "notebooks" / "04_evaluate.ipynb").exists()
    ours = pd.read_csv(run / "predictions" / "test.csv")
    theirs = pd.read_csv(run / "predictions.csv")
    assert ours["path"].tolist() == theirs["path"].tolist() and ours["label"].tolist() == theirs["label"].tolist()
    for i in range(len(ours)):
        got = {ours.loc[i, f"class_{j}"]: ours.loc[i, f"prob_{j}"] for j in (1, 2, 3)}
        assert got == {c: theirs.loc[i, f"p_{c}"] for c in CLASSES}  # equal to the last printed digit
    assert list(ours.columns) == ["path", "label", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3"]
    record = json.loads((run / "predictions" / "test.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert record["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert record["accuracy_ci95"] == pytest.approx(metrics["test_accuracy_ci95"])
    assert (run / "figures" / "predictions_test.png").stat().st_size > 1000
    assert json.loads((run / "export" / "parity.json").read_text())["torchscript"]["passed"]  # 05's export cell


def test_cli_on_a_mixed_folder_lists_bad_files_and_names_unknown_labels(run, tmp_path, capsys):
    root = _mixed_folder(tmp_path / "new photos")
    assert predict.main(["--run-id", "tiny", str(root), "--top-k", "2", "--tta", "flip"]) == 0
    out = capsys.readouterr().out
    frame = pd.read_csv(run / "predictions" / "new_photos.csv", keep_default_na=False)
    assert list(frame.columns) == ["path", "label", "class_1", "prob_1", "class_2", "prob_2"]
    assert sorted(frame["path"]) == sorted(["cat/cat0.png", "cat/cat1.png", "cat/cat2.png", "cat/gray.png",
                                            "dog/dog0.png", "dog/dog1.png", "dog/dog2.png", "dog/cmyk.jpg",
                                            "dog/deep16.png", "wolf/wolf0.png", "wolf/wolf1.png", "wolf/wolf2.png"])
    record = json.loads((run / "predictions" / "new_photos.json").read_text())
    reasons = {s["path"]: s["reason"] for s in record["skipped"]}
    assert set(reasons) == {"cat/broken.png", "cat/notes.txt"}
    assert reasons["cat/notes.txt"] == "not an image" and "truncated" in reasons["cat/broken.png"]
    assert "cat/broken.png" in out and "wolf (3)" in out
    assert record["unknown_labels"] == {"wolf": 3} and record["n_labelled"] == 9
    known = frame[frame["label"].isin(CLASSES)]
    correct = int((known["class_1"] == known["label"]).sum())
    assert record["accuracy"] == pytest.approx(correct / 9)
    assert record["accuracy_ci95"] == pytest.approx(list(stats.wilson_interval(correct, 9)))
    assert record["tta"] == "flip" and record["top_k"] == 2
    counts = {r["class"]: r["predicted"] for r in record["counts"]}
    assert counts == frame["class_1"].value_counts().reindex(CLASSES, fill_value=0).to_dict()


def test_grayscale_cmyk_and_16_bit_images_are_converted_as_in_training(tmp_path):
    rgb = np.asarray(Image.open(make_image(tmp_path / "rgb.png", seed=3)))
    gray = Image.fromarray(rgb).convert("L")
    gray.save(tmp_path / "gray.png")
    Image.fromarray((np.asarray(gray).astype(np.uint16) * 257)).save(tmp_path / "deep.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    spec = {"image_size": 32}
    arr = preprocess.load_images([tmp_path / n for n in ("gray.png", "deep.png", "cmyk.jpg")], spec)
    assert arr.shape == (3, 3, 32, 32) and arr.dtype == np.uint8
    assert (arr[0, 0] == arr[0, 1]).all() and (arr[0, 1] == arr[0, 2]).all()  # gray → three equal channels
    # 16-bit: scaled to 8 bits by the image's own maximum, as 02 and the training cache do (never clipped at 255).
    assert np.abs(arr[1] - arr[0] * (255.0 / np.asarray(gray).max())).max() <= 4  # resize rounding, stretched
    assert np.abs(arr[2].astype(int) - imagecache.load_resized(tmp_path / "rgb.png", 32).astype(int)).mean() < 8
    assert (arr[0] == imagecache.load_resized(tmp_path / "gray.png", 32)).all()  # the cache's resize, not a copy


def test_archive_nested_folders_single_file_and_csv(run, tmp_path):
    src = tmp_path / "src"
    for k, c in enumerate(CLASSES):
        make_image(src / "export" / "test" / c / "a" / f"{c}.png", seed=k, shade=k)
    with zipfile.ZipFile(tmp_path / "batch.zip", "w") as zf:
        for f in sorted(src.rglob("*.png")):
            zf.write(f, f.relative_to(src).as_posix())
    zipped = predict.predict_images(run, str(tmp_path / "batch.zip"), torch.device("cpu"))
    assert zipped["csv"].name == "batch.csv"
    assert zipped["predictions"]["label"].tolist() == CLASSES  # labels from the class level, two folders deep
    single = predict.predict_images(run, str(src / "export" / "test" / "dog" / "a" / "dog.png"), torch.device("cpu"))
    assert single["csv"].name == "dog.csv" and single["predictions"]["path"].tolist() == ["dog.png"]
    assert single["probs"][0] == pytest.approx(zipped["probs"][1], abs=1e-6)
    listing = tmp_path / "list.csv"
    pd.DataFrame({"file": ["export/test/cat/a/cat", "missing.png", str(src / "export/test/fox/a/fox.png")],
                  "class": ["cat", "dog", "fox"]}).to_csv(listing, index=False)
    (src / "list.csv").write_bytes(listing.read_bytes())
    listed = predict.predict_images(run, str(src / "list.csv"), torch.device("cpu"), top_k=1)
    assert listed["predictions"]["label"].tolist() == ["cat", "fox"]  # an id without its suffix is found too
    assert listed["images"].skipped == [{"path": "missing.png", "reason": "listed in list.csv but not found"}]
    assert list(listed["predictions"].columns) == ["path", "label", "class_1", "prob_1"]


def test_folder_labels_pick_the_level_that_names_classes():
    assert predict.folder_labels(["test/cat/1.png", "test/wolf/2.png"], CLASSES) == ["cat", "wolf"]
    assert predict.folder_labels(["cat/x/1.png", "dog/2.png"], CLASSES) == ["cat", "dog"]
    assert predict.folder_labels(["2024/jan/1.png", "3.png"], CLASSES) == ["", ""]


def test_an_earlier_prediction_is_never_overwritten(run, tmp_path):
    make_image(tmp_path / "one" / "x.png", seed=1)
    first = predict.predict_images(run, str(tmp_path / "one"), torch.device("cpu"))
    before = first["csv"].read_bytes()
    second = predict.predict_images(run, str(tmp_path / "one"), torch.device("cpu"))
    assert first["csv"].name == "one.csv" and second["csv"].name == "one-2.csv"
    assert first["csv"].read_bytes() == before


def test_bad_inputs_stop_with_one_sentence(run, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"definitely not a jpeg")
    cases = [([str(tmp_path / "nowhere")], "no such file or folder"),
             ([str(tmp_path / "empty")], "holds no readable image"),
             ([str(tmp_path / "junk")], "a.jpg: not an image"),
             (["--run-id", "nothing-trained", str(tmp_path / "junk")], "best.pt not found")]
    for argv, message in cases:
        args = argv if argv[0] == "--run-id" else ["--run-id", "tiny", *argv]
        assert predict.main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    with pytest.raises(CheckpointError, match="cycle 7: .* not found"):
        predict.predict_images(run, "", torch.device("cpu"), cycle=7)
    assert not (paths.run_dir("nothing-trained") / "predictions").exists()


def test_a_path_relative_to_the_project_is_found_from_the_notebooks_folder(run, tmp_path, monkeypatch):
    """The runner's notebooks run in notebooks/; `-p images photos` typed at the project root must still work."""
    from helpers.params.schema import ParameterError
    from helpers.runner import preflight
    project = tmp_path / "project"
    make_image(project / "photos" / "cat" / "a.png", seed=2)
    (project / "notebooks").mkdir()
    monkeypatch.setattr(paths, "PROJECT_ROOT", project)
    monkeypatch.chdir(project / "notebooks")
    preflight.check({"images": "photos"})  # what session.start runs inside the kernel
    result = predict.predict_images(run, "photos", torch.device("cpu"))
    assert result["predictions"]["path"].tolist() == ["cat/a.png"] and result["csv"].name == "photos.csv"
    with pytest.raises(ParameterError, match="images='nowhere': no such file or folder"):
        preflight.check({"images": "nowhere"})
