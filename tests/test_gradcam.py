"""helpers.gradcam: heatmaps of the right shape that follow the evidence."""

import numpy as np
import pytest
import torch

from helpers import gradcam
from helpers.models import build_model


@pytest.mark.parametrize("arch", ["efficientnet-lite0", "mobilenet_v3_small", "resnet50"])
def test_heatmaps_have_image_shape_and_unit_range(arch):
    model = build_model(arch, 3, "none")
    cams = gradcam.grad_cam(model, arch, torch.randn(2, 3, 64, 64))
    assert cams.shape == (2, 64, 64)
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6


def test_heatmap_points_at_the_evidence():
    # A pretrained cat detector looks at the cat: the heatmap's mass sits in the image, not its border.
    from skimage import data as skdata
    from torchvision.transforms.functional import normalize, resize, to_tensor
    model = build_model("efficientnet-lite0", 1000, "imagenet")
    x = normalize(resize(to_tensor(skdata.chelsea()), [224, 224], antialias=True), [0.5] * 3, [0.5] * 3)[None]
    cam = gradcam.grad_cam(model, "efficientnet-lite0", x)[0]
    centre = cam[40:184, 40:184].mean()
    border = np.concatenate([cam[:20].ravel(), cam[-20:].ravel()]).mean()
    assert centre > border
