"""helpers.imagecache: resized once per content and size, then read from the cache."""

import numpy as np

from helpers import imagecache

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
