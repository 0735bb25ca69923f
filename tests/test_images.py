"""helpers.images: every file decoded and hashed, EXIF orientation applied, bombs and broken files named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers.data import images


def test_image_modes_convert_to_rgb(tmp_path):
    arr = np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 100
    cases = {"cmyk": Image.new("CMYK", (20, 20), (0, 255, 0, 0)), "p": Image.new("P", (20, 20), 3),
             "rgba": Image.new("RGBA", (20, 20), (10, 20, 30, 0)), "l": Image.new("L", (20, 20), 128),
             "i16": Image.fromarray(arr)}
    for name, img in cases.items():
        path = tmp_path / f"{name}.{'jpg' if name == 'cmyk' else 'png'}"
        img.save(path)
        checked = images.check_image(path)
        assert checked.error == "", name
        with Image.open(path) as im:
            assert images.to_rgb(im).mode == "RGB"


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = 255  # left half white: after a 90° turn the white half is on top or bottom
    exif = Image.Exif()
    exif[images.ORIENTATION] = 6  # the camera was held upright: rotate 90° clockwise to view
    path = tmp_path / "phone.jpg"
    Image.fromarray(arr).save(path, exif=exif.tobytes())
    checked = images.check_image(path)
    assert (checked.width, checked.height) == (20, 40)
    with Image.open(path) as im:
        up = np.asarray(images.to_rgb(im))
    assert up.shape == (40, 20, 3) and up[:15].mean() > 200 and up[25:].mean() < 50


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_skipped_and_named(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("L", (60, 60)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 3 600 pixels: above the limit, below twice it
    assert images.check_image(path).error.startswith("decompression bomb (60x60 = 3,600 pixels, above the limit")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # above twice the limit: PIL refuses to open it
    assert images.check_image(path).error.startswith("decompression bomb (")


def test_broken_files_say_why(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    Image.new("RGB", (30, 30), (200, 10, 10)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    found = {c.path.rsplit("/", 1)[-1]: c for c in images.check_images(sorted(tmp_path.iterdir()), workers=2)}
    assert found["empty.jpg"].error == "zero-byte file"
    assert found["notes.jpg"].error == "not an image"
    assert found["cut.png"].error.startswith("corrupt or truncated image")
    assert found["ok.png"].error == "" and len(found["ok.png"].sha256) == 64 and len(found["ok.png"].phash) == 16
    assert images.is_image_name("IMG 1.JPG") and images.is_image_name("a.Png") and not images.is_image_name("a.csv")
