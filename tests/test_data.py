"""helpers.data, the wired stage: split.csv and data_report.json as a user reads them, and the 02 notebook
on every Kaggle shape."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from helpers import pipeline
from helpers.data import dataset as data
from helpers.data import split
from helpers.data.dataset import DataError
from helpers.utils import paths

from .conftest import make_image
from .kaggle_shapes import SHAPES


def test_split_is_stratified_70_15_15_and_reproducible(make_dataset, tmp_path):
    root = make_dataset(per_class=40, size=(16, 16))
    frame, report = data.prepare_split(root, seed=7)
    assert report["layout"] == "class_folders"
    assert report["classes"] == ["cat", "dog", "fox"]
    for counts in report["counts"].values():  # decided per image by hash: near, not exactly, 70/15/15
        assert 20 <= counts["train"] <= 36 and 1 <= counts["val"] <= 12 and 1 <= counts["test"] <= 12
    assert report["split_totals"]["train"] == pytest.approx(0.7 * 120, abs=12)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    data.save_split(run_a, frame, report)
    data.save_split(run_b, *data.prepare_split(root, seed=7))
    assert (run_a / "split.csv").read_bytes() == (run_b / "split.csv").read_bytes()
    assert list(pd.read_csv(run_a / "split.csv").columns) == ["path", "label", "split", "sha256"]
    other, _ = data.prepare_split(root, seed=8)
    assert other["split"].tolist() != frame["split"].tolist()


def test_duplicates_never_span_two_splits(make_dataset):
    root = make_dataset(per_class=12)
    for i in range(6):  # the same bytes under other names, in the same class and across classes
        (root / "cat" / f"copy_{i}.png").write_bytes((root / "cat" / f"cat_{i}.png").read_bytes())
    (root / "dog" / "stolen.png").write_bytes((root / "cat" / "cat_0.png").read_bytes())
    frame, report = data.prepare_split(root, seed=1)
    assert frame.groupby("sha256")["split"].nunique().max() == 1
    groups = sorted(sorted(g["paths"]) for g in report["duplicate_groups"])
    assert groups == [["cat/cat_0.png", "cat/copy_0.png", "dog/stolen.png"]] + [
        [f"cat/cat_{i}.png", f"cat/copy_{i}.png"] for i in range(1, 6)]
    conflicts = report["conflicting_duplicates"]
    assert len(conflicts) == 1 and conflicts[0]["labels"] == ["cat", "dog"]


def test_broken_and_hidden_files_are_skipped_with_reasons(make_dataset):
    root = make_dataset(per_class=6)
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "notes.txt").write_text("not an image")
    good = (root / "dog" / "dog_0.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    make_image(root / ".ipynb_checkpoints" / "x.png", 1)
    make_image(root / "__MACOSX" / "cat" / "._a.png", 2)
    make_image(root / "fox" / ".hidden.png", 3)
    frame, report = data.prepare_split(root)
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert reasons["cat/empty.jpg"] == "zero-byte file"
    assert reasons["cat/notes.txt"] == "not an image"
    assert reasons["dog/truncated.png"].startswith("corrupt or truncated")
    assert report["classes"] == ["cat", "dog", "fox"]
    assert not any("hidden" in p or "MACOSX" in p for p in frame["path"])


def _presplit(top: Path, other: str) -> dict[str, str]:
    """archive_top/dataset/{train,<other>}/<class>/ with distinct images (no leak); each file's given folder."""
    given = {}
    for k, c in enumerate(("cat", "dog", "fox")):
        for folder, n in (("train", 20), (other, 4)):
            for i in range(n):
                rel = f"{folder}/{c}/{c}_{i}.png"
                make_image(top / "dataset" / rel, seed=1000 * k + i + (500 if folder != "train" else 0), shade=k)
                given[rel] = folder
    return given


@pytest.mark.parametrize("other", ["test", "valid"])
def test_presplit_is_resplit_by_content_by_default(tmp_path, other):
    given = _presplit(tmp_path / "archive_top", other)
    frame, report = data.prepare_split(tmp_path / "archive_top")
    assert report["layout"] == "presplit" and Path(report["root"]).name == "dataset"  # the extra top folder is seen through
    assert sorted(frame["path"]) == sorted(given) and report["n_images"] == 72
    assert (frame["label"] == frame["path"].str.split("/").str[1]).all()
    # Re-split ignores the folders: each image's split is fixed by its content hash and the seed alone.
    score = [split.unit_score(sha, 42) for sha in frame["sha256"]]
    expected = ["test" if u < 0.15 else "val" if u < 0.30 else "train" for u in score]
    assert frame["split"].tolist() == expected
    from_other = frame[frame["path"].str.startswith(f"{other}/")]
    assert (from_other["split"] == "train").any()  # the given test/valid folder is not kept as such
    assert report["counts"] == {c: {s: int(((frame["label"] == c) & (frame["split"] == s)).sum())
                                    for s in ("train", "val", "test")} for c in ("cat", "dog", "fox")}
    assert sum(report["split_totals"].values()) == 72


@pytest.mark.parametrize("other", ["test", "valid"])
def test_keep_given_split_keeps_every_file_where_it_was(tmp_path, other):
    given = _presplit(tmp_path / "archive_top", other)
    kept, report = data.prepare_split(tmp_path / "archive_top", keep_given_split=True)
    assert report["layout"] == "presplit" and sorted(kept["path"]) == sorted(given)
    where = dict(zip(kept["path"], kept["split"]))
    kept_as = "test" if other == "test" else "val"
    carved = "val" if other == "test" else "test"  # the split the dataset lacks comes from its train only
    for rel, folder in given.items():  # the given folder's files keep their split, file by file
        if folder == other:
            assert where[rel] == kept_as, rel
    # Of train, exactly the files whose content hash draws below 15% (salted by the carved split) move.
    train = kept[kept["path"].str.startswith("train/")]
    moved = {p for p, sha in zip(train["path"], train["sha256"]) if split.unit_score(sha, 42, salt=carved) < 0.15}
    assert {p for p in train["path"] if where[p] == carved} == moved
    assert {p for p in train["path"] if where[p] == "train"} == set(train["path"]) - moved
    for c in ("cat", "dog", "fox"):
        n_moved = sum(p.split("/")[1] == c for p in moved)
        assert 1 <= n_moved <= 6  # every class gives some of its 20 to the carved split
        assert report["counts"][c] == {"train": 20 - n_moved, kept_as: 4, carved: n_moved}
    assert report["notes"] == [f"{carved}: the given split has none, so 15% of train's groups of every "
                               "class were carved from train (by content hash and seed)"]
    assert report["leaks"] == []


def test_bad_inputs_name_the_culprit(make_dataset, tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        data.resolve_dataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no class folders"):
        data.prepare_split(tmp_path / "empty")
    one = make_dataset(classes=("only",), root=tmp_path / "one")
    with pytest.raises(DataError, match=r"at\s+least two class folders"):
        data.prepare_split(one)
    root = make_dataset(root=tmp_path / "emptyclass")
    (root / "ghost").mkdir()
    (root / "ghost" / "bad.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"\['ghost'\] .* hold no valid image"):
        data.prepare_split(root)
    small = make_dataset(per_class=2, root=tmp_path / "small")
    with pytest.raises(DataError, match=r"classes \['cat', 'dog', 'fox'\] have fewer than 3"):
        data.prepare_split(small)


def test_zip_is_extracted_once_and_escaping_members_refused(make_dataset, tmp_path, study_home):
    root = make_dataset(per_class=5)
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in root.rglob("*.png"):
            zf.write(p, f"pets/{p.relative_to(root)}")
    folder = data.resolve_dataset(str(archive))
    assert folder.is_relative_to(study_home)
    frame, report = data.prepare_split(folder)
    assert report["n_images"] == 15
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ok/a.txt", "fine")
        zf.writestr("../escape.txt", "bad")
    with pytest.raises(DataError, match=r"'../escape.txt' of evil.zip would be written outside the folder it is unpacked into \(evil/\)"):
        data.resolve_dataset(str(evil))
    assert not list((study_home / "data" / "raw" / "archives").glob("evil*"))
    tgz = tmp_path / "evil.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        info = tarfile.TarInfo("/etc/owned")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError, match="'/etc/owned' of evil.tar.gz would be written outside"):
        data.resolve_dataset(str(tgz))


def test_load_split_requires_02(tmp_path):
    with pytest.raises(DataError, match="run notebooks/02_data.ipynb"):
        data.load_split(tmp_path / "run")


def test_sample_dataset_is_committed():
    frame, report = data.prepare_split(data.resolve_dataset("sample"))
    assert report["n_images"] == 3000
    assert len(report["classes"]) == 10
    assert all(sum(c.values()) == 300 for c in report["counts"].values())


def test_csv_layout_finds_label_and_path_columns(tmp_path):
    root = tmp_path / "csvset"
    rows = ["image_id,breed"]
    for k, c in enumerate(["pug", "husky"]):
        for i in range(5):
            make_image(root / "images" / f"{c}{i}.jpg", 10 * k + i, shade=k)
            rows.append(f"{c}{i},{c}")
    rows.append("ghost,pug")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    frame, report = data.prepare_split(root)
    assert report["layout"] == "csv" and report["classes"] == ["husky", "pug"]
    assert {"path": "ghost", "reason": "listed in labels.csv but not found"} in report["skipped"]
    (root / "labels.csv").write_text("image_id,something\npug0,x\n")
    with pytest.raises(DataError, match=r"labels.csv: no label column found among its columns \['image_id', 'something'\]"):
        data.prepare_split(root)


def test_labels_in_file_names_like_dogs_vs_cats(tmp_path):
    root = tmp_path / "dogs-vs-cats" / "train"
    for k, c in enumerate(["cat", "dog"]):
        for i in range(5):
            make_image(root / f"{c}.{i}.jpg", 10 * k + i, shade=k)
    make_image(root / "17.jpg", 99)
    frame, report = data.prepare_split(tmp_path / "dogs-vs-cats")
    assert report["layout"] == "filenames" and report["classes"] == ["cat", "dog"]
    assert report["skipped"] == [{"path": "train/17.jpg", "reason": "no label in the file name"}]


@pytest.mark.notebook
@pytest.mark.parametrize("name", SHAPES)
def test_02_notebook_on_every_kaggle_shape(name, tmp_path, study_home, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as JupyterLab shows figures
    shape = SHAPES[name]
    dataset = shape.build(tmp_path / name)
    out = tmp_path / "02.ipynb"
    papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / "02_data.ipynb"), str(out), kernel_name=pipeline._kernel_name(),
                               parameters={"dataset": str(dataset), "run_id": name, **shape.params},
                               cwd=str(tmp_path), progress_bar=False)
    run = study_home / "runs" / name
    report = json.loads((run / "data_report.json").read_text())
    assert report["layout"] == shape.layout and report["n_images"] == shape.n_images
    split = pd.read_csv(run / "split.csv", keep_default_na=False)
    assert list(split.columns) == ["path", "label", "split", "sha256"]
    assert all((Path(report["root"]) / p).is_file() for p in split["path"])
    book = nbformat.read(out, as_version=4)
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    text = json.dumps([o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs])
    assert str(tmp_path) not in text and "PosixPath" not in text  # no machine path as a cell result
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4  # balance, label issues, samples, sizes
    roles = {row["role"] for row in report["explanation"]}
    assert roles and all(role in text for role in roles)  # the explanation table is shown
    for folder in shape.unlabelled:
        assert folder in text


def test_a_given_split_that_leaks_is_reported(tmp_path):
    root = SHAPES["training_testing"].build(tmp_path / "tt")
    leaked = root / "Testing" / "glioma" / "copy_of_train.jpg"
    leaked.write_bytes((root / "Training" / "glioma" / "glioma_0.jpg").read_bytes())
    frame, report = data.prepare_split(root, keep_given_split=True)
    leak, = report["leaks"]  # the train copy may have gone to the val carved from train: still a leak
    assert leak["paths"] == ["Testing/glioma/copy_of_train.jpg", "Training/glioma/glioma_0.jpg"]
    sha = frame.loc[frame["path"] == "Training/glioma/glioma_0.jpg", "sha256"].item()
    carved = split.unit_score(sha, 42, salt="val") < 0.15
    assert leak["kind"] == "exact" and leak["split"] == ["test", "val" if carved else "train"]
    _, resplit = data.prepare_split(root)  # re-split: the copies land together, no leak
    assert resplit["leaks"] == [] and len(resplit["duplicate_groups"]) == 1
    # The report says so too, beside how the dataset was read.
    from helpers.reporting import report as report_module
    from helpers.utils import paths
    data.save_split(paths.run_dir("leaky"), frame, report)
    for lang, word in (("en", "**Leak:** 1 group(s)"), ("ru", "**Утечка:** 1 групп(ы)")):
        text = report_module.render("leaky", lang)
        assert word in text
        assert ("How the dataset was read" if lang == "en" else "Как прочитан набор данных") in text
        assert "`Training`" in text and "`Testing`" in text


def test_01s_early_split_uses_02s_parameters_given_to_the_runner(tmp_path):
    root = SHAPES["metadata_groups"].build(tmp_path / "ham")
    run = tmp_path / "run"
    run.mkdir()
    (run / "params.json").write_text(json.dumps({"notebooks": {"pipeline": {"parameters": {
        "group_column": "lesion_id", "test_ratio": "0.2"}}}}))
    _, report = data.split_for(run, str(root), 42)
    assert report["groups"]["column"] == "lesion_id" and report["ratios"] == pytest.approx([0.65, 0.15, 0.2])


@pytest.mark.notebook
def test_02_on_an_interrupted_download_stops_with_one_sentence_and_writes_nothing(make_dataset, tmp_path,
                                                                                   study_home):
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in make_dataset(per_class=4).rglob("*.png"):
            zf.write(p, f"pets/{p.relative_to(tmp_path / 'ds')}")
    archive.write_bytes(archive.read_bytes()[:-300])
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / "02_data.ipynb"), str(tmp_path / "02.ipynb"),
                                   kernel_name=pipeline._kernel_name(), cwd=str(tmp_path), progress_bar=False,
                                   parameters={"dataset": str(archive), "run_id": "broken"})
    assert caught.value.ename == "DataError"
    assert caught.value.evalue == (f"{archive} is truncated or corrupt (File is not a zip file): an interrupted "
                                   "download looks like this; download or copy it again. Nothing was extracted.")
    run = study_home / "runs" / "broken"
    assert not (run / "split.csv").exists() and not (run / "data_report.json").exists()
    archives_dir = study_home / "data" / "raw" / "archives"
    assert not archives_dir.exists() or not list(archives_dir.iterdir())


def _ham_with_given_split(root):
    """HAM-style metadata with a given split column in which lesions HAM_00 and HAM_11 span train and test."""
    from .kaggle_shapes import metadata_groups
    metadata_groups(root)
    csv = root / "HAM10000_metadata.csv"
    rows = csv.read_text().splitlines()
    out = [rows[0] + ",split"]
    for i, row in enumerate(rows[1:]):
        lesion = row.split(",")[0]
        given = "test" if (lesion in ("HAM_03", "HAM_14") or (lesion in ("HAM_00", "HAM_11") and i % 2)) \
            else "train"
        out.append(f"{row},{given}")
    csv.write_text("\n".join(out) + "\n")
    return root


def test_a_given_split_that_splits_a_group_lists_it_and_moves_it_when_asked(tmp_path):
    root = _ham_with_given_split(tmp_path / "ham")
    frame, report = data.prepare_split(root, keep_given_split=True, group_column="lesion_id")
    leaks = {tuple(g["lesion_id"]): g for g in report["group_leaks"]}
    assert set(leaks) == {("HAM_00",), ("HAM_11",)}
    assert all("test" in g["split"] and len(g["paths"]) == 2 for g in leaks.values())
    frame, report = data.prepare_split(root, keep_given_split=True, group_column="lesion_id", move_leaks=True)
    assert report["group_leaks"] == [] and report["split_parameters"]["move_leaks"] is True
    assert sorted(m["to"] for m in report["moved_leaks"]) == ["test", "test"]
    by_path = dict(zip(frame["path"], frame["split"]))
    assert all(by_path[p] == "test" for g in leaks.values() for p in g["paths"])  # the given test set only grew
    assert any(n.startswith("move_leaks: 2 group(s) spanning the given splits moved whole") for n in report["notes"])
    # Exact duplicates that span the given splits are moved the same way.
    tt = SHAPES["training_testing"].build(tmp_path / "tt")
    copy = tt / "Testing" / "glioma" / "copy_of_train.jpg"
    copy.write_bytes((tt / "Training" / "glioma" / "glioma_0.jpg").read_bytes())
    frame, report = data.prepare_split(tt, keep_given_split=True, move_leaks=True)
    assert report["leaks"] == [] and len(report["moved_leaks"]) == 1
    assert set(frame.loc[frame["path"].isin(report["moved_leaks"][0]["paths"]), "split"]) == {"test"}
    # The report says so.
    from helpers.reporting import report as report_module
    from helpers.utils import paths
    data.save_split(paths.run_dir("patients"), *data.prepare_split(root, keep_given_split=True,
                                                                    group_column="lesion_id"))
    assert "**Leak:** 2 `lesion_id` group(s) (a patient, a lesion) sit in different splits" in \
        report_module.render("patients", "en")
