"""The architecture catalogue: every name `arch` accepts, its family, library, native input size, normalisation
and published ImageNet top-1. Pure data, so the schema can check `arch` without importing torch or the models."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EFFNET_PYTORCH_TABLE = "efficientnet-pytorch README (ImageNet top-1)"


@dataclass(frozen=True)
class ArchSpec:
    """What we know about one architecture before building it."""

    name: str
    family: str
    library: str
    native_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    head: str  # attribute that holds the classifier
    imagenet_top1: float | None = None
    top1_source: str = ""


_B_SIZES = {0: 224, 1: 240, 2: 260, 3: 300, 4: 380, 5: 456, 6: 528, 7: 600}
_B_TOP1 = {0: 76.3, 1: 78.8, 2: 79.8, 3: 81.1, 4: 82.6, 5: 83.3, 6: 84.0, 7: 84.4}

ARCHS: dict[str, ArchSpec] = {
    "efficientnet-lite0": ArchSpec("efficientnet-lite0", "EfficientNet", "efficientnet-pytorch", 224,
                                   (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "_fc", 75.1,
                                   "TensorFlow TPU EfficientNet-Lite README (ImageNet top-1)"),
    **{f"efficientnet-b{i}": ArchSpec(f"efficientnet-b{i}", "EfficientNet", "efficientnet-pytorch",
                                      _B_SIZES[i], IMAGENET_MEAN, IMAGENET_STD, "_fc", _B_TOP1[i],
                                      EFFNET_PYTORCH_TABLE) for i in range(8)},
    "resnet50": ArchSpec("resnet50", "ResNet-50", "torchvision", 224, IMAGENET_MEAN, IMAGENET_STD, "fc"),
    "mobilenet_v3_large": ArchSpec("mobilenet_v3_large", "MobileNetV3", "torchvision", 224,
                                   IMAGENET_MEAN, IMAGENET_STD, "classifier"),
    "mobilenet_v3_small": ArchSpec("mobilenet_v3_small", "MobileNetV3", "torchvision", 224,
                                   IMAGENET_MEAN, IMAGENET_STD, "classifier"),
}


def arch_spec(arch: str) -> ArchSpec:
    """Return the spec of `arch`, or an error listing the known architectures."""
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} is not known; choose one of: {', '.join(ARCHS)}.")
    return ARCHS[arch]
