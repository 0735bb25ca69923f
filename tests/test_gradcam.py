"""helpers.gradcam: heatmaps of the image's shape, at a stated layer, that move with the object."""

import numpy as np
import pytest
import torch

from helpers.evaluation import gradcam
from helpers.models.zoo import build_model


@pytest.fixture(scope="module")
def lite0():
    """Lite0 with its ImageNet weights (installed with the requirements, no network)."""
    return build_model("efficientnet-lite0", 1000, "imagenet").eval()


def _scene(side: str, size: int = 224) -> torch.Tensor:
    """A grey canvas with a photo of a cat in its left or right half, normalised as Lite0 expects."""
    from skimage import data as skdata
    from torchvision.transforms.functional import normalize, resize, to_tensor
    cat = resize(to_tensor(skdata.chelsea()), [size // 2, size // 2], antialias=True)
    canvas = torch.full((3, size, size), 0.5)
    top, left = size // 4, 0 if side == "left" else size // 2
    canvas[:, top:top + size // 2, left:left + size // 2] = cat
    return normalize(canvas, [0.5] * 3, [0.5] * 3)


def _centre_x(cam: np.ndarray) -> float:
    """The heatmap's centre of mass across the image, from -1 (left edge) to +1 (right edge)."""
    xs = (np.arange(cam.shape[1]) + 0.5) / cam.shape[1] * 2 - 1
    return float((cam.sum(0) * xs).sum() / cam.sum())


@pytest.mark.parametrize("arch", ["efficientnet-lite0", "mobilenet_v3_small", "resnet50"])
def test_heatmaps_have_image_shape_unit_peak_and_leave_the_model_as_it_was(arch):
    torch.manual_seed(0)  # the new head's initialisation decides which class is "predicted" on noise
    # Lite0's ImageNet weights ship offline, so its maps come from the pretrained features Grad-CAM is used on.
    model = build_model(arch, 3, "imagenet" if arch == "efficientnet-lite0" else "none").train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cams = gradcam.grad_cam(model, arch, x)
    assert cams.shape == (2, 64, 64) and cams.dtype == np.float32 and np.isfinite(cams).all()
    peaks, spread = cams.reshape(2, -1).max(1), cams.reshape(2, -1).std(1)
    # Each map is scaled to its own peak; on an untrained network and noise a class can have no positive evidence
    # anywhere, and then its map is zero everywhere (Grad-CAM's ReLU), never a constant above zero.
    assert cams.min() >= 0 and all(np.isclose(p, 1.0) and s > 0.01 or p == 0 for p, s in zip(peaks, spread))
    assert np.isclose(peaks, 1.0).any()
    assert model.training  # train mode restored
    assert not any(m._forward_hooks for m in model.modules())  # no hook left behind


@pytest.mark.parametrize(("arch", "size", "name", "grid"), [
    ("efficientnet-lite0", 80, "_blocks.10", (5, 5)), ("efficientnet-lite0", 224, "_blocks.10", (14, 14)),
    ("efficientnet-b0", 224, "_blocks.10", (14, 14)), ("resnet50", 80, "layer3", (5, 5)),
    ("mobilenet_v3_small", 224, "features.8", (14, 14)), ("mobilenet_v3_large", 80, "features.12", (5, 5))])
def test_heatmaps_are_taken_at_the_end_of_the_stride_16_stage(arch, size, name, grid):
    model = build_model(arch, 3, "none")
    assert gradcam.target_layer(model, arch, size)[::2] == (name, grid)
    names = [n for n, _ in gradcam.blocks(model, arch)]
    after = gradcam.stage_grids(model, arch, size)[names[names.index(name) + 1]]
    assert after[0] < grid[0]  # the next block downsamples: this is the finest map of the deepest stage
    assert gradcam.describe(model, arch, size) == (f"layer {name} (end of the stride-16 stage, "
                                                   f"{grid[0]}×{grid[1]} cells) at the {size} px network input")


def test_heatmap_moves_with_the_object(lite0):
    # The same cat on the left, then on the right of a grey canvas: the map's mass follows it.
    cams = gradcam.grad_cam(lite0, "efficientnet-lite0", torch.stack([_scene("left"), _scene("right")]))
    left, right = cams
    assert _centre_x(left) < -0.25 and _centre_x(right) > 0.25
    assert np.unravel_index(left.argmax(), left.shape)[1] < 112 <= np.unravel_index(right.argmax(), right.shape)[1]
    for cam in cams:  # the cat's rows, not the empty canvas above and below it, hold most of the mass
        assert cam[56:168].sum() > 0.7 * cam.sum()


@pytest.mark.integration
def test_heatmap_is_for_the_class_asked(lite0):
    x = _scene("left")[None]
    predicted, = gradcam.grad_cam(lite0, "efficientnet-lite0", x)
    assert lite0(x).argmax(1).item() == 285  # Egyptian cat
    cat, = gradcam.grad_cam(lite0, "efficientnet-lite0", x, classes=[285])
    clock, = gradcam.grad_cam(lite0, "efficientnet-lite0", x, classes=[409])  # analog clock
    assert np.allclose(cat, predicted, atol=1e-5) and not np.allclose(clock, predicted, atol=0.05)
