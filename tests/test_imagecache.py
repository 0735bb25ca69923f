"""helpers.imagecache: resized once per content and size, then read from the cache."""

import numpy as np
import torch

from helpers.data import imagecache

from .conftest import make_image


def test_cache_built_once_and_keyed_by_content(tmp_path):
    files = [str(make_image(tmp_path / f"{i}.png", i, size=(40, 20))) for i in range(3)]
    shas = ["a", "b", "c"]
    arr = imagecache.build_cache(files, shas, 16, tmp_path / "cache")
    assert arr.shape == (3, 3, 16, 16) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr[1], imagecache.load_resized(files[1], 16))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again = imagecache.build_cache(["/gone"] * 3, shas, 16, tmp_path / "cache")  # no decode: from the cache
    np.testing.assert_array_equal(again, arr)
    imagecache.build_cache(files, shas, 24, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_non_square_is_center_cropped(tmp_path):
    path = make_image(tmp_path / "wide.png", 0, size=(60, 20))
    assert imagecache.load_resized(path, 10).shape == (3, 10, 10)


def _split(tmp_path, n=4, size=(40, 30)):
    import pandas as pd
    files = [str(make_image(tmp_path / "img" / f"{i}.png", i, size=size, shade=i % 2)) for i in range(n)]
    return pd.DataFrame({"file": files, "label": ["a", "b"] * (n // 2), "split": "train",
                         "sha256": [f"sha{i}" for i in range(n)]})


def test_decoding_on_the_fly_gives_the_cached_pixels(tmp_path):
    frame = _split(tmp_path)
    cached, labels = imagecache.split_arrays(frame, ["a", "b"], "train", 16, cache="on", cache_root=tmp_path / "c")
    decoded, same = imagecache.split_arrays(frame, ["a", "b"], "train", 16, cache="off", cache_root=tmp_path / "c")
    assert isinstance(cached, np.ndarray) and isinstance(decoded, imagecache.DecodedImages)
    assert labels == same == [0, 1, 0, 1] and decoded.shape == cached.shape
    np.testing.assert_array_equal(decoded[2], cached[2])
    np.testing.assert_array_equal(decoded[1:3], cached[1:3])
    batches = list(imagecache.batches(decoded, 3, torch.device("cpu"), workers=1))
    assert [len(b) for b in batches] == [3, 1]
    np.testing.assert_array_equal(torch.cat(batches).numpy(), cached)


def test_budget_decides_the_path_and_evicts_the_least_recently_used(tmp_path):
    import os
    frame = _split(tmp_path)
    root = tmp_path / "c"
    one = imagecache.cache_bytes(4, 16)
    images, _ = imagecache.split_arrays(frame, ["a", "b"], "train", 16, cache="auto", cache_gb=one / 1e9 / 2,
                                        cache_root=root)
    assert isinstance(images, imagecache.DecodedImages) and not list(root.glob("*.npy"))  # beyond the budget
    old = root / "16px-4-olderrun0000000000.npy"
    root.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"\0" * one)
    os.utime(old, (1, 1))  # long unused
    images, _ = imagecache.split_arrays(frame, ["a", "b"], "train", 16, cache="auto", cache_gb=1.5 * one / 1e9,
                                        cache_root=root)
    assert isinstance(images, np.ndarray) and not old.exists()  # made room by evicting the older cache
    # a cache in use by this process is never evicted for another one
    other = frame.assign(sha256=[f"x{i}" for i in range(4)])
    images2, _ = imagecache.split_arrays(other, ["a", "b"], "train", 16, cache="auto", cache_gb=1.5 * one / 1e9,
                                         cache_root=root)
    assert isinstance(images2, imagecache.DecodedImages) and len(list(root.glob("*.npy"))) == 1


def test_cache_on_without_the_disk_space_is_one_sentence(tmp_path, monkeypatch):
    import shutil

    import pytest
    frame = _split(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 10))
    with pytest.raises(imagecache.ImageCacheError, match=r"the 16px cache of 4 images needs .* cache=off"):
        imagecache.split_arrays(frame, ["a", "b"], "train", 16, cache="on", cache_root=tmp_path / "c")
    assert not list((tmp_path / "c").glob("*.npy*"))


def test_a_cycle_trains_from_images_decoded_by_persistent_workers(tmp_path):
    import pandas as pd

    from helpers.training.config import TrainConfig
    from helpers.training.cycle import run_cycle
    frame = _split(tmp_path, n=8, size=(24, 24))
    x, y = imagecache.split_arrays(frame, ["a", "b"], "train", 32, cache="off")
    cfg = TrainConfig(arch="mobilenet_v3_small", classes=["a", "b"], image_size=32, batch_size=4, epochs=2,
                            head_epochs=1, weights="none", workers=1)
    row = run_cycle(cfg, tmp_path / "run", x, y, x, y, torch.device("cpu"), progress=False)
    assert row["epochs"] == 2
    assert pd.read_csv(tmp_path / "run" / "history.csv")["stage"].tolist() == ["head", "full", "full"]
    opts = imagecache.loader_options(2, torch.device("cuda"))
    assert opts == {"num_workers": 2, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 4}
    assert imagecache.loader_options(0, torch.device("cpu")) == {"num_workers": 0, "pin_memory": False}


def test_the_training_loader_reads_whole_batches_with_the_flips_of_the_image_by_image_path(tmp_path):
    from torchvision.transforms import v2

    from helpers.training.batches import train_loader
    from helpers.training.config import TrainConfig
    frame = _split(tmp_path, n=10, size=(24, 16))
    cached, labels = imagecache.split_arrays(frame, ["a", "b"], "train", 12, cache="on", cache_root=tmp_path / "c")
    decoded, _ = imagecache.split_arrays(frame, ["a", "b"], "train", 12, cache="off")
    cfg = TrainConfig(arch="mobilenet_v3_small", classes=["a", "b"], image_size=12, batch_size=4, augment="flip",
                      weights="none", workers=0)
    for images in (cached, decoded):
        loader = train_loader(cfg, images, labels, torch.device("cpu"), torch.Generator().manual_seed(1), 7)
        loader.sampler.set_epoch(2)
        order = list(loader.sampler)
        torch.manual_seed(5)
        got = list(loader)
        assert [len(y) for _, y in got] == [4, 4, 2]
        torch.manual_seed(5)
        flip = v2.RandomHorizontalFlip()  # what each image drew before batches were read whole
        expected = torch.stack([flip(torch.from_numpy(np.array(cached[i]))) for i in order])
        assert torch.equal(torch.cat([x for x, _ in got]), expected)
        assert torch.cat([y for _, y in got]).tolist() == [labels[i] for i in order]
        assert not torch.equal(expected, torch.from_numpy(cached[order]))  # some images were mirrored


def test_cached_images_still_collate_image_by_image_in_a_plain_loader(tmp_path):
    frame = _split(tmp_path, n=4)
    cached, labels = imagecache.split_arrays(frame, ["a", "b"], "train", 8, cache="on", cache_root=tmp_path / "c")
    x, y = next(iter(torch.utils.data.DataLoader(imagecache.CachedImages(cached, labels), batch_size=4)))
    assert torch.equal(x, torch.from_numpy(cached)) and y.tolist() == labels
