"""helpers.csvlayout: CSV values find the right file; sample submissions and label maps are recognised."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers.data import csvlayout
from helpers.data.errors import DataError


def test_file_index_finds_by_path_name_and_stem_and_narrows_by_folders():
    index = csvlayout.FileIndex(["train/a/1.jpg", "train/b/1.jpg", "x/ISIC_01.JPG"])
    assert index.find("train/a/1.jpg") == ["train/a/1.jpg"]
    assert index.find("../input/set/train/b/1.jpg") == ["train/b/1.jpg"]
    assert sorted(index.find("1.jpg")) == ["train/a/1.jpg", "train/b/1.jpg"]  # ambiguous: the caller refuses it
    assert index.find("ISIC_01") == ["x/ISIC_01.JPG"] and index.find("") == [] and index.find("2.jpg") == []


def test_sample_submissions_by_any_spelling():
    assert all(csvlayout.is_sample_submission(n) for n in ("sample_submission.csv", "sampleSubmission.csv",
                                                            "SampleSubmission.csv"))
    assert not csvlayout.is_sample_submission("train.csv")


def test_label_maps_in_either_direction(tmp_path):
    for i, data in enumerate(({"0": "healthy", "1": "rust"}, {"healthy": 0, "rust": 1}, ["healthy", "rust"])):
        (tmp_path / f"m{i}.json").write_text(json.dumps(data))
        assert csvlayout.label_map_from_json(tmp_path / f"m{i}.json") == {"0": "healthy", "1": "rust"}
    (tmp_path / "x.json").write_text(json.dumps({"a": "b"}))
    assert csvlayout.label_map_from_json(tmp_path / "x.json") is None
    table = pd.DataFrame({"name": ["apple", "pear"], "id": ["1", "0"]})
    assert csvlayout.label_map_from_table(table) == {"1": "apple", "0": "pear"}
    assert csvlayout.apply_label_map(["0", "01"], {"0": "a", "1": "b"}, "t.csv", "m.json") == ["a", "b"]
    with pytest.raises(DataError, match=r"labels \['7'\] of t.csv are not in the label map m.json"):
        csvlayout.apply_label_map(["7"], {"0": "a"}, "t.csv", "m.json")


def test_a_path_without_extension_is_matched_by_its_folder_and_stem(tmp_path):
    from helpers.data import dataset as data

    from .conftest import make_image
    index = csvlayout.FileIndex(["train/abc.jpg", "test/abc.jpg", "train/x/abc.png"])
    assert index.find("train/abc") == ["train/abc.jpg"] and index.find("test/abc") == ["test/abc.jpg"]
    assert index.find("data/train/x/abc") == ["train/x/abc.png"]
    # End to end: a CSV naming 'train/<stem>' where test/ holds files of the same stems.
    rows = ["image,label"]
    for i in range(6):
        for folder in ("train", "test"):
            make_image(tmp_path / "ds" / folder / f"img{i}.jpg", seed=10 * i + len(folder), shade=i % 2)
            rows.append(f"{folder}/img{i},{'cat' if i % 2 else 'dog'}")
    (tmp_path / "ds" / "labels.csv").write_text("\n".join(rows) + "\n")
    frame, report = data.prepare_split(tmp_path / "ds")
    assert report["layout"] == "csv" and sorted(frame["path"]) == sorted(f"{f}/img{i}.jpg" for i in range(6)
                                                                           for f in ("train", "test"))


def test_blank_labels_are_unlabelled_and_listed_never_a_class(tmp_path):
    from helpers.data import dataset as data

    from .conftest import make_image
    rows = ["file,label"]
    for i in range(12):
        make_image(tmp_path / "ds" / "images" / f"{i}.png", seed=i, shade=i % 3)
        label = "" if i in (4, 9) else str(i % 2)  # integer labels, mapped by labels.json; two cells left blank
        rows.append(f"images/{i}.png,{label}")
    (tmp_path / "ds" / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "ds" / "labels.json").write_text(json.dumps({"0": "healthy", "1": "rust"}))
    frame, report = data.prepare_split(tmp_path / "ds")
    assert report["classes"] == ["healthy", "rust"] and len(frame) == 10
    assert report["unlabelled"] == [{"path": "images", "images": 2,
                                     "reason": "their 'label' cell in train.csv is blank (4.png, 9.png)"}]
