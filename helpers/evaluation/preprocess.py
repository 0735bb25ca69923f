"""The model's own preprocessing, derived from a checkpoint's saved config and written beside every export.

Nothing here is typed in twice: the input size and classes come from the checkpoint's TrainConfig, the
normalisation from the arch's pretrained weights (models.ARCHS), and the resize is imagecache.load_resized,
the very function that built the training cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.data.imagecache import CACHE_VERSION, load_resized
from helpers.models.zoo import arch_spec

SPEC_VERSION = 1
RESIZE_TEXT = ("decode with PIL, convert to 8-bit RGB (grayscale, palette, CMYK and 16-bit images the same way as "
               "in training), resize the shorter side to image_size (bilinear, reducing_gap=3.0), center-crop "
               "image_size x image_size")


def spec_from_config(config: dict) -> dict:
    """The preprocessing record of a trained model: input size, resize, channel order, mean/std, classes."""
    arch = arch_spec(config["arch"])
    size = int(config["image_size"])
    return {
        "version": SPEC_VERSION,
        "arch": arch.name,
        "classes": list(config["classes"]),
        "image_size": size,
        "resize": RESIZE_TEXT,
        "resize_recipe": f"imagecache-{CACHE_VERSION}",
        "input": {"name": "image", "dtype": "uint8", "layout": "NCHW", "channels": "RGB",
                  "shape": ["batch", 3, size, size], "range": [0, 255]},
        # The bundle's network divides by these itself; they are here for anyone feeding floats elsewhere.
        "normalization": {"mean": list(arch.mean), "std": list(arch.std), "scale": "x / 255",
                          "inside_network": True},
        "output": {"name": "probs", "dtype": "float32", "meaning": "softmax probabilities, one per class, "
                                                                   "in the order of `classes`"},
    }


def load_images(files: list[str | Path], spec: dict) -> np.ndarray:
    """Decode and resize files exactly as the training cache did: an (n, 3, size, size) uint8 array."""
    size = int(spec["image_size"])
    out = np.zeros((len(files), 3, size, size), dtype=np.uint8)
    for i, f in enumerate(files):
        out[i] = load_resized(f, size)
    return out
