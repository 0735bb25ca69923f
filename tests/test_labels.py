"""helpers.evaluation.labels and helpers.models.features: labels flipped on purpose are found, hints are listed,
features are computed once, and exclude_train leaves only flagged training images out — through 02 too."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
import torch
from PIL import Image

from helpers import pipeline
from helpers.data import dataset as data
from helpers.evaluation import labels
from helpers.models import features
from helpers.utils import paths

from .conftest import make_image


def _blobs(n_per_class=60, classes=4, dims=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(classes, dims))
    y = np.repeat(np.arange(classes), n_per_class)
    return centres[y] + rng.normal(0, 1, size=(len(y), dims)), y


@pytest.mark.parametrize("seed", range(4))
def test_flipped_labels_are_found_with_their_true_class_and_ranked_first(seed):
    """Confident learning is conservative: on these blobs it finds 78 of 80 flips over ten seeds, never a clean one."""
    x, y = _blobs(seed=seed)
    rng = np.random.default_rng(seed + 1)
    flipped = rng.choice(len(y), 8, replace=False)
    given = y.copy()
    given[flipped] = (y[flipped] + 1 + rng.integers(0, 3, 8)) % 4
    probs = labels.out_of_sample_probabilities(labels.reduce(x), given)
    names = [f"img{i}.png" for i in range(len(y))]
    issues = labels.label_issues(names, given, ["train"] * len(y), ["a", "b", "c", "d"], probs)
    assert list(issues.columns) == ["path", "given_label", "suggested_label", "label_quality", "rank", "split"]
    assert set(issues["path"]) <= {names[i] for i in flipped} and len(issues) >= 7  # no clean image flagged
    true = {names[i]: "abcd"[y[i]] for i in flipped}
    assert all(true[p] == s for p, s in zip(issues["path"], issues["suggested_label"]))
    assert issues["rank"].tolist() == list(range(1, len(issues) + 1))
    assert issues["label_quality"].is_monotonic_increasing


def test_clean_separable_labels_flag_nothing():
    x, y = _blobs(seed=3)
    probs = labels.out_of_sample_probabilities(labels.reduce(x), y)
    assert labels.label_issues([str(i) for i in range(len(y))], y, ["train"] * len(y), list("abcd"), probs).empty


def test_an_outlier_and_a_near_duplicate_are_hinted_not_hidden():
    x, y = _blobs(n_per_class=40, classes=3, dims=16, seed=2)
    x = np.abs(x)  # pooled ReLU features are non-negative
    x[5] = x[17] + 1e-4  # one image almost equal to another
    x[30] = -50 * x[30]  # one image pointing away from all others
    names = [f"p{i}" for i in range(len(y))]
    outliers, near = labels.neighbour_hints(x, names, list("abc"[k] for k in y), ["train"] * len(y))
    assert outliers["path"].iloc[0] == "p30" and outliers["rank"].iloc[0] == 1
    assert {near["path"].iloc[0], near["other"].iloc[0]} == {"p5", "p17"} and len(near) == 1
    groups = list(range(len(y)))
    groups[5] = groups[17]  # already a duplicate group of 02: not listed twice
    _, near = labels.neighbour_hints(x, names, list("abc"[k] for k in y), ["train"] * len(y), groups)
    assert near.empty


def test_features_are_computed_once_per_image_and_a_damaged_shard_is_recomputed(tmp_path, monkeypatch):
    files = [str(make_image(tmp_path / f"i{i}.png", i, shade=i)) for i in range(4)]
    shas = [f"sha{i}" for i in range(4)]
    first = features.cached_features(files[:3], shas[:3], "mobilenet_v3_small", 32, torch.device("cpu"),
                                     root=tmp_path / "cache", model=_random_net())
    assert first.shape == (3, 576)
    calls = []
    monkeypatch.setattr(features, "extract_features",
                        lambda *a, **k: calls.append(len(a[3])) or torch.zeros(len(a[3]), 576))
    again = features.cached_features(files, shas, "mobilenet_v3_small", 32, torch.device("cpu"),
                                     root=tmp_path / "cache", model=_random_net())
    assert calls == [1] and np.array_equal(again[:3], first)  # only the new image was computed
    assert features.lookup(shas, "mobilenet_v3_small", 32, tmp_path / "cache") is not None
    assert features.lookup(shas + ["new"], "mobilenet_v3_small", 32, tmp_path / "cache") is None
    for shard in features.store_dir("mobilenet_v3_small", 32, root=tmp_path / "cache").glob("*.npz"):
        shard.write_bytes(b"truncated")
    features.cached_features(files, shas, "mobilenet_v3_small", 32, torch.device("cpu"), root=tmp_path / "cache",
                             model=_random_net())
    assert calls == [1, 4]
    for shard in features.store_dir("mobilenet_v3_small", 32, root=tmp_path / "cache").glob("*.npz"):
        shard.write_bytes(shard.read_bytes()[:200])  # cut off mid-write by another tool: a zip without its end
    features.cached_features(files, shas, "mobilenet_v3_small", 32, torch.device("cpu"), root=tmp_path / "cache",
                             model=_random_net())
    assert calls == [1, 4, 4]


def _random_net():
    from helpers.models import zoo
    return zoo.build_model("mobilenet_v3_small", 1000, "none").eval()


def test_exclusion_never_empties_a_class_and_load_split_drops_only_training_rows(tmp_path):
    frame = pd.DataFrame({"path": ["a1", "a2", "b1", "b2", "b3"], "label": ["a", "a", "b", "b", "b"],
                          "split": ["train", "val", "train", "train", "test"], "sha256": list("12345")})
    issues = pd.DataFrame({"path": ["a1", "a2", "b1", "b3"], "given_label": ["a", "a", "b", "b"],
                           "suggested_label": ["b", "b", "a", "a"], "label_quality": [0.1] * 4,
                           "rank": [1, 2, 3, 4], "split": ["train", "val", "train", "test"]})
    keep, notes = labels.to_exclude(issues, frame)
    assert keep["path"].tolist() == ["b1"] and "class 'a': every training image was flagged" in notes[0]
    report = {"root": str(tmp_path), "classes": ["a", "b"],
              "label_issues": {"excluded": [{"path": "b1", "label": "b", "split": "train"}]}}
    frame.to_csv(tmp_path / "split.csv", index=False)
    (tmp_path / "data_report.json").write_text(json.dumps(report))
    loaded, _ = data.load_split(tmp_path)
    assert loaded["path"].tolist() == ["a1", "a2", "b2", "b3"]


def _pattern_image(path, kind: int, seed: int) -> None:
    """A 32 px grey image of one texture per class (horizontal stripes, vertical stripes, checks), random phase."""
    rng = np.random.default_rng(seed)
    r, c = np.indices((32, 32)) + rng.integers(0, 8, 2)[:, None, None]
    wave = [(r // 4) % 2, (c // 4) % 2, ((r // 4) + (c // 4)) % 2][kind]
    arr = (wave * 160 + rng.integers(0, 60, (32, 32))).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([arr] * 3, -1), "RGB").save(path)


def _flipped_dataset(root, per_class=30):
    """Three texture classes; one image of each is filed under another class (its texture is its true class)."""
    classes = ["checks", "horizontal", "vertical"]
    kind = {"horizontal": 0, "vertical": 1, "checks": 2}
    flipped = {}
    for k, c in enumerate(classes):
        for i in range(per_class):
            folder = classes[(k + 1) % 3] if i == 0 else c
            if folder != c:
                flipped[f"{folder}/{c}_{i}.png"] = c
            _pattern_image(root / folder / f"{c}_{i}.png", kind[c], 100 * kind[c] + i)
    return flipped


def test_02_finds_flipped_labels_and_exclude_train_leaves_only_training_ones_out(tmp_path, study_home):
    flipped = _flipped_dataset(tmp_path / "colours")
    out = tmp_path / "02.ipynb"
    papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / "02_data.ipynb"), str(out),
                               kernel_name=pipeline._kernel_name(), cwd=str(tmp_path), progress_bar=False,
                               parameters={"dataset": str(tmp_path / "colours"), "run_id": "flips",
                                           "device": "cpu", "label_issues": "exclude_train"})
    run = study_home / "runs" / "flips"
    issues = pd.read_csv(run / "label_issues.csv")
    top = issues.head(len(flipped))
    assert set(top["path"]) == set(flipped)
    assert all(flipped[p] == s for p, s in zip(top["path"], top["suggested_label"]))
    split = pd.read_csv(run / "split.csv").set_index("path")["split"]
    report = json.loads((run / "data_report.json").read_text())["label_issues"]
    excluded = {e["path"] for e in report["excluded"]}
    assert excluded == {p for p in issues["path"] if split[p] == "train"} and excluded
    assert {e["split"] for e in report["excluded"]} == {"train"}
    assert "cleanlab" in report["method"] and report["per_class"]["checks"]["images"] == 30
    frame, _ = data.load_split(run)
    assert not set(frame[frame["split"] == "train"]["path"]) & excluded
    assert set(frame[frame["split"] != "train"]["path"]) == {p for p in split.index if split[p] != "train"}
    assert (run / "figures" / "label_issues.png").stat().st_size > 0
    text = json.dumps([o.get("text", "") for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
                       for o in c.outputs])
    assert f"left out of training: {len(excluded)} (label_issues=exclude_train)" in text
    from helpers.reporting import report as reporting, texts
    words = texts.strings("ru")["report"]
    written = reporting.render("flips", "ru")
    assert f"### {words['labels_title']}" in written and "(label_issues.png)" in written  # the report's gallery
    assert words["labels_excluded"].format(n=len(excluded)) in written


def test_a_bad_label_issues_value_is_one_sentence():
    from helpers.params.schema import ParameterError, check
    with pytest.raises(ParameterError, match=r"label_issues='drop': use report, exclude_train\."):
        check("label_issues", "drop")
