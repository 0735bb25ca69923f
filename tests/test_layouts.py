"""helpers.layouts (and csvlayout): every Kaggle shape is read right, explained, and bad shapes named."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from helpers.data import dataset as data
from helpers.data import layouts
from helpers.data.dataset import DataError

from .conftest import make_image
from .kaggle_shapes import SHAPES


@pytest.mark.parametrize("name", SHAPES)
def test_kaggle_shape_through_the_helpers(name, tmp_path):
    shape = SHAPES[name]
    source = data.resolve_dataset(str(shape.build(tmp_path / name)))
    frame, report = data.prepare_split(source, **shape.params)
    assert report["layout"] == shape.layout
    assert report["classes"] == shape.classes
    assert report["n_images"] == shape.n_images == len(frame)
    assert {u["path"].rsplit("/", 1)[-1]: u["images"] for u in report["unlabelled"]} == shape.unlabelled
    roles = {row["path"]: row["role"] for row in report["explanation"]}
    for path in shape.ignored:
        assert roles[path] in ("ignored", "sample submission"), roles
    for split in ("train", "val", "test"):  # every split holds every class
        assert set(frame.loc[frame["split"] == split, "label"]) == set(shape.classes), split
    assert all((Path(report["root"]) / p).is_file() for p in frame["path"])  # paths are relative to the data root
    if shape.given:
        kept, kept_report = data.prepare_split(source, keep_given_split=True, **shape.params)
        given = kept["split"].value_counts().to_dict()
        for split, n in shape.given.items():
            assert given[split] <= n and (split != "train" or given[split] >= n - 3)
        assert set(given) == {"train", "val", "test"}
        assert any("carved from train" in note for note in kept_report["notes"]) == ("val" not in shape.given)


def test_split_names_are_read_by_meaning():
    assert [layouts.split_meaning(n) for n in ("Training", "seg_train", "Train_set", "trn", "TrainSet")] == ["train"] * 5
    assert [layouts.split_meaning(n) for n in ("dev", "valid", "Validation", "val_images")] == ["val"] * 4
    assert [layouts.split_meaning(n) for n in ("Testing", "test1", "test_images", "eval")] == ["test"] * 4
    assert [layouts.split_meaning(n) for n in ("seg_pred", "unlabeled")] == ["unlabelled"] * 2
    assert [layouts.split_meaning(n) for n in ("devil", "cat", "train_test", "contest")] == [""] * 4


def test_chest_xray_copy_is_read_once(tmp_path):
    frame, report = data.prepare_split(SHAPES["chest_xray"].build(tmp_path / "cx"))
    assert not any(p.startswith("chest_xray/") for p in frame["path"])
    assert report["data_root"] == "chest_xray"
    assert {"path": ".", "role": "wrapper"}.items() <= report["explanation"][0].items()


def test_groups_keep_a_lesion_in_one_split_and_are_suggested(tmp_path):
    root = SHAPES["metadata_groups"].build(tmp_path / "ham")
    frame, report = data.prepare_split(root, group_column="lesion_id")
    meta = pd.read_csv(root / "HAM10000_metadata.csv")
    lesion = dict(zip(meta["image_id"], meta["lesion_id"]))
    frame["lesion"] = [lesion[Path(p).stem] for p in frame["path"]]
    assert frame.groupby("lesion")["split"].nunique().max() == 1
    assert report["groups"] == {"column": "lesion_id", "n_groups": 10, "largest": 2}
    _, plain = data.prepare_split(root)
    assert any("set group_column='lesion_id'" in note for note in plain["notes"])


def test_sample_submission_is_never_the_labels(tmp_path):
    root = SHAPES["csv_with_sample_submission"].build(tmp_path / "leaf")
    _, report = data.prepare_split(root)
    rows = {r["path"]: r for r in report["explanation"]}
    assert rows["train.csv"]["role"] == "labels" and "'image_id' names image files" in rows["train.csv"]["reason"]
    assert rows["sample_submission.csv"]["role"] == "sample submission"
    assert report["unlabelled"] == [{"path": "test_images", "images": 3,
                                     "reason": "named in sample_submission.csv, the sample submission"}]


def test_integer_labels_are_mapped_by_the_shipped_map(tmp_path):
    _, report = data.prepare_split(SHAPES["int_labels_json"].build(tmp_path / "cassava"))
    rows = {r["path"]: r["role"] for r in report["explanation"]}
    assert rows["label_num_to_disease_map.json"] == "label map"
    _, report = data.prepare_split(SHAPES["int_labels_csv_map"].build(tmp_path / "fruit"))
    assert report["classes"] == ["apple", "pear"]


def test_odd_names_survive_split_csv(tmp_path):
    root = SHAPES["odd_names"].build(tmp_path / "odd")
    frame, report = data.prepare_split(root)
    run = tmp_path / "run"
    data.save_split(run, frame, report)
    loaded, _ = data.load_split(run)
    assert sorted(loaded["path"]) == sorted(frame["path"])
    assert "small, dog/photo, 1.PNG" in set(loaded["path"]) and all(Path(f).is_file() for f in loaded["file"])


def test_layout_parameter_overrides_detection(tmp_path):
    root = SHAPES["training_testing"].build(tmp_path / "tt")
    _, report = data.prepare_split(root, layout="class_folders")  # the user says the folders are classes
    assert report["layout"] == "class_folders" and report["classes"] == ["Testing", "Training"]
    with pytest.raises(DataError, match=r"layout='presplit': no train/val/test folder with class subfolders"):
        data.prepare_split(SHAPES["odd_names"].build(tmp_path / "odd"), layout="presplit")
    csv_root = SHAPES["csv_with_sample_submission"].build(tmp_path / "leaf")
    _, report = data.prepare_split(csv_root, layout="class_folders")
    assert report["layout"] == "class_folders" and report["classes"] == ["test_images", "train_images"]


def _csv_set(root: Path, header: str, rows: list[str]) -> Path:
    for i, row in enumerate(rows):
        name = row.split(",")[0]
        make_image(root / "imgs" / (name if "." in name else f"{name}.png"), i, shade=i % 2, size=(16, 16))
    (root / "labels.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root


# Bad input: each with the sentence the user reads.

def test_split_folders_without_classes_are_refused(tmp_path):
    for split in ("train", "test"):
        for i in range(3):
            make_image(tmp_path / "ds" / split / f"{i}.jpg", i)
    with pytest.raises(DataError, match=r"its folders \['test', 'train'\] are split folders but hold no class "
                                        r"folders; .* or set\s+layout=filenames"):
        data.prepare_split(tmp_path / "ds")


def test_csv_naming_no_existing_file_is_refused(tmp_path):
    root = _csv_set(tmp_path / "ds", "file,label", [f"a{i},{'xy'[i % 2]}" for i in range(6)])
    (root / "labels.csv").write_text("file,label\n" + "".join(f"zz{i}.png,x\n" for i in range(6)))
    with pytest.raises(DataError, match=r"labels.csv: none of its columns \['file', 'label'\] names an image "
                                        r"file found below .*set path_column"):
        data.prepare_split(root)


def test_csv_value_matching_two_files_is_refused(tmp_path):
    root = _csv_set(tmp_path / "ds", "file,label", [f"a{i}.png,{'xy'[i % 2]}" for i in range(6)])
    make_image(root / "more" / "a0.png", 99, size=(16, 16))
    with pytest.raises(DataError, match=r"labels.csv: file value 'a0.png' matches 2 files \(imgs/a0.png, "
                                        r"more/a0.png\)"):
        data.prepare_split(root)


def test_unknown_group_column_lists_the_columns(tmp_path):
    root = SHAPES["metadata_groups"].build(tmp_path / "ham")
    with pytest.raises(DataError, match=r"group_column='patient' is not a column of HAM10000_metadata.csv; its "
                                        r"columns are \['lesion_id', 'image_id', 'dx', 'age', 'sex'\]"):
        data.prepare_split(root, group_column="patient")


def test_label_map_lacking_a_label_is_refused(tmp_path):
    root = SHAPES["int_labels_json"].build(tmp_path / "cassava")
    (root / "label_num_to_disease_map.json").write_text(json.dumps({"0": "healthy"}))
    with pytest.raises(DataError, match=r"labels \['1'\] of train.csv are not in the label map "
                                        r"label_num_to_disease_map.json \(it maps \['0'\]\)"):
        data.prepare_split(root)


def test_undecided_label_column_lists_candidates_and_names_the_parameter(tmp_path):
    root = _csv_set(tmp_path / "ds", "file,colour,shape", [f"a{i},{'rg'[i % 2]},{'so'[i // 3]}" for i in range(6)])
    with pytest.raises(DataError, match=r"cannot tell which column holds the labels: 'colour' \(2 values\), "
                                        r"'shape' \(2 values\); set label_column"):
        data.prepare_split(root)
    _, report = data.prepare_split(root, label_column="shape")
    assert report["classes"] == ["o", "s"]


def test_nested_archive_with_an_escaping_member_is_refused(tmp_path):
    inner = tmp_path / "train.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("train/cat.1.jpg", "x")
        zf.writestr("../../escape.txt", "bad")
    outer = tmp_path / "download.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(inner, "train.zip")
    with pytest.raises(DataError, match=r"archive member '../../escape.txt' of train.zip would be written outside"):
        data.resolve_dataset(str(outer))
    assert not list(tmp_path.rglob("escape.txt"))


def test_two_labelling_csvs_are_listed_not_guessed(tmp_path):
    root = _csv_set(tmp_path / "ds", "file,label", [f"a{i},{'xy'[i % 2]}" for i in range(6)])
    (root / "more_labels.csv").write_text("file,category\n" + "".join(f"a{i},{'pq'[i % 2]}\n" for i in range(6)))
    with pytest.raises(DataError, match=r"several CSVs under .* label the images: labels.csv \(labels in 'label'\), "
                                        r"more_labels.csv \(labels in 'category'\); set label_column"):
        data.prepare_split(root)
    _, report = data.prepare_split(root, label_column="category")
    assert report["classes"] == ["p", "q"]


def test_pixel_tables_are_ignored_and_csv_layout_needs_a_csv(make_dataset, tmp_path):
    root = make_dataset(per_class=4, size=(16, 16))
    header = ",".join(["label"] + [f"pixel{i}" for i in range(784)])
    (root / "fashion-mnist_train.csv").write_text(header + "\n" + ",".join(["3"] + ["0"] * 784) + "\n")
    _, report = data.prepare_split(root)
    rows = {r["path"]: r for r in report["explanation"]}
    assert report["layout"] == "class_folders"
    assert rows["fashion-mnist_train.csv"]["reason"].startswith("a table of 785 columns (pixel values?)")
    bare = make_dataset(per_class=4, size=(16, 16), root=tmp_path / "bare")
    with pytest.raises(DataError, match=r"holds no CSV, so layout='csv' / label_column / path_column cannot apply"):
        data.prepare_split(bare, layout="csv")
