"""Decode and check one image file: hashes, size, EXIF orientation, decompression bombs, conversion to RGB."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from helpers.utils.progress import bar as progress_bar

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
ORIENTATION = 0x0112  # the EXIF tag that says how the camera was held


@dataclass
class Checked:
    """Outcome of decoding one file."""

    path: str
    sha256: str = ""
    phash: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    error: str = ""


def is_image_name(name: str) -> bool:
    """True for a file name with an image suffix, in any case (.JPG, .Png)."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def upright(img: Image.Image) -> Image.Image:
    """The image as the camera meant it: EXIF orientation applied (a no-op for most files)."""
    try:
        turned = img.getexif().get(ORIENTATION, 1) not in (0, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a good image unusable
        return img
    return ImageOps.exif_transpose(img) if turned else img


def to_rgb(img: Image.Image) -> Image.Image:
    """Upright 8-bit RGB from any PIL mode (CMYK, P, RGBA, I;16, L, …), the same way everywhere."""
    img = upright(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / max(top, 255.0))).astype("uint8"), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


def _bomb(width: int, height: int) -> str:
    """The skip reason of an image whose pixel count could exhaust memory when decoded."""
    return (f"decompression bomb ({width}x{height} = {width * height:,} pixels, above the limit of "
            f"{Image.MAX_IMAGE_PIXELS:,}); resize it or remove it")


def check_image(path: Path) -> Checked:
    """Hash and fully decode one file; say why it is unusable, if it is."""
    out = Checked(path=str(path))
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        out.error = f"unreadable: {exc.strerror}"
        return out
    if not data:
        out.error = "zero-byte file"
        return out
    out.sha256 = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:  # checked before decoding a byte
                out.error = _bomb(w, h)
                return out
            out.mode = img.mode
            img.load()
            rgb = to_rgb(img)
            out.width, out.height = rgb.size
            out.phash = str(imagehash.phash(rgb))
    except Image.DecompressionBombError as exc:
        out.error = f"decompression bomb ({str(exc).split('.')[0]}); resize it or remove it"
    except UnidentifiedImageError:
        out.error = "not an image"
    except (OSError, SyntaxError, ValueError) as exc:
        out.error = f"corrupt or truncated image ({str(exc).splitlines()[0][:80]})"
    return out


def check_images(files: Iterable[Path], workers: int | None = None, progress: bool = False) -> list[Checked]:
    """Check many files in parallel threads (PIL and hashlib release the GIL)."""
    files = list(files)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(check_image, files, chunksize=32)
        if progress:
            results = progress_bar(results, total=len(files), desc="check images", unit="images")
        return list(results)
