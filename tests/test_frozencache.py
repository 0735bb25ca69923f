"""helpers.training.frozencache: 02's feature pass leaves the frozen layers' output that 03 trains on, with the
network's own numbers; a changed image or weight, or a damaged entry, is computed again; the folder keeps a budget."""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from helpers.data import dataset as data
from helpers.data import imagecache
from helpers.evaluation import labels
from helpers.models.inference import extract_features, normalizer_for
from helpers.models.zoo import build_model
from helpers.training import frozen, frozencache
from helpers.training.config import TrainConfig
from helpers.training.cycle import open_cycle, run_stage

CPU = torch.device("cpu")
ARCH = "efficientnet-lite0"


def test_02s_features_are_the_networks_and_03_trains_on_the_output_they_leave(make_dataset, tmp_path, capsys):
    frame, report = data.prepare_split(make_dataset(per_class=12, size=(20, 20)), seed=1)
    feats, used, _ = labels.features_for(frame, report["root"], ARCH, 32, CPU)
    net = build_model(ARCH, 1000, "imagenet").to(memory_format=torch.channels_last)
    files = [f"{report['root']}/{p}" for p in frame["path"]]
    whole = extract_features(net, ARCH, normalizer_for(ARCH), imagecache.DecodedImages(files, 32), CPU)
    assert used == ARCH and np.allclose(feats, whole.numpy(), atol=1e-4)  # one pass of the network, split by split

    frame["file"] = files
    classes = report["classes"]
    (train, y), (val, y_val) = (imagecache.split_arrays(frame, classes, s, 32) for s in ("train", "val"))
    cfg = TrainConfig(arch=ARCH, classes=classes, image_size=32, batch_size=8, epochs=1, head_epochs=1, seed=1)
    c = open_cycle(cfg, tmp_path / "run", y, y_val, CPU)
    run_stage(c, "head", train, y, val, y_val)
    said = capsys.readouterr().out
    assert f"{len(train) + len(val)} of them kept from before" in said, said  # the mirrors alone were computed
    k = frozen.early_units(c.model, ARCH, 32, cfg.freeze_stride)
    fresh = frozen.early_features(c.model, ARCH, k, normalizer_for(ARCH), train, CPU)
    assert torch.allclose(c.early.train, fresh, atol=1e-5)
    rows = (frame["split"] == "train").to_numpy()
    assert np.allclose(c.feats[0].numpy(), whole.numpy()[rows], atol=1e-4)  # the head's inputs: the same features


def _entry(tmp_path):
    model = build_model(ARCH, 3, "imagenet")
    images = np.random.default_rng(0).integers(0, 255, (6, 3, 32, 32), dtype=np.uint8)
    k = frozen.early_units(model, ARCH, 32, 8)
    early = frozen.early_features(model, ARCH, k, normalizer_for(ARCH), images, CPU)
    pooled = frozen.pooled_features(frozen.Rest(model, ARCH, k), early, CPU)
    path = frozencache.save(model, ARCH, k, images, CPU, early, pooled=pooled, root=tmp_path)
    return model, images, k, early, path


def test_a_changed_image_or_weight_or_a_damaged_entry_is_computed_again(tmp_path):
    model, images, k, early, path = _entry(tmp_path)
    kept, pooled = frozencache.load(model, ARCH, k, images, CPU, root=tmp_path)
    assert torch.equal(kept, early) and pooled is not None
    assert frozencache.load(model, ARCH, k, images, CPU, flip=True, root=tmp_path) is None  # the mirrors: another
    changed = images.copy()
    changed[2, 0, 5, 5] ^= 1
    assert frozencache.load(model, ARCH, k, changed, CPU, root=tmp_path) is None
    assert frozencache.load(model, ARCH, k + 1, images, CPU, root=tmp_path) is None  # another freeze_stride
    with torch.no_grad():
        model._blocks[-1]._project_conv.weight.add_(0.01)  # a trained late block (a continued cycle)
    kept, pooled = frozencache.load(model, ARCH, k, images, CPU, root=tmp_path)
    assert torch.equal(kept, early) and pooled is None  # the early output holds, the pooled features do not
    with torch.no_grad():
        model._conv_stem.weight.add_(0.01)  # the frozen units themselves changed
    assert frozencache.load(model, ARCH, k, images, CPU, root=tmp_path) is None
    path.write_bytes(path.read_bytes()[:100])  # truncated
    model, *_ = _entry(tmp_path / "other")
    assert frozencache.load(model, ARCH, k, images, CPU, root=tmp_path) is None


def test_the_least_recently_used_entries_go_beyond_the_budget(tmp_path, monkeypatch):
    model, images, k, early, _ = _entry(tmp_path / "unused")
    first, second = (frozencache.save(model, ARCH, k, images ^ i, CPU, early, root=tmp_path) for i in (1, 2))
    monkeypatch.setattr(frozencache, "MAX_BYTES", int(first.stat().st_size * 2.5))
    now = time.time()
    for age, path in ((20, first), (10, second)):  # written a while ago, the first before the second
        os.utime(path, (now - age, now - age))
    assert frozencache.load(model, ARCH, k, images ^ 1, CPU, root=tmp_path)  # the first is used again: now the newer
    third = frozencache.save(model, ARCH, k, images ^ 3, CPU, early, root=tmp_path)
    assert first.exists() and third.exists() and not second.exists()


def test_without_room_for_the_image_caches_02_still_gets_the_networks_features(make_dataset, small_disk, monkeypatch):
    from .conftest import fill_disk
    frame, report = data.prepare_split(make_dataset(per_class=12, size=(20, 20)), seed=1)
    home = small_disk("4m") / "home"
    monkeypatch.setenv("STUDY_HOME", str(home))
    (home / "data" / "cache").mkdir(parents=True)
    fill_disk(home, leave=300_000)  # the feature shard fits (184 kB), the training split's 80 px cache does not
    feats, used, _ = labels.features_for(frame, report["root"], ARCH, 80, CPU)
    files = [f"{report['root']}/{p}" for p in frame["path"]]
    net = build_model(ARCH, 1000, "imagenet").to(memory_format=torch.channels_last)
    whole = extract_features(net, ARCH, normalizer_for(ARCH), imagecache.DecodedImages(files, 80), CPU)
    assert np.allclose(feats, whole.numpy(), atol=1e-4)
    assert not list((home / "data" / "cache").glob("80px-*.npy")) and not (home / "data" / "cache" / "frozen").exists()
