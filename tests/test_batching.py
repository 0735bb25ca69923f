"""helpers.models.batching: on the CPU, passes without gradients take batches whose largest activation fits the cache."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from helpers.models import batching
from helpers.models.inference import Normalizer, predict_proba


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_the_largest_activation_is_the_widest_layers_output():
    assert batching.activation_bytes(_net(), 10) == 8 * 10 * 10 * 4  # the first conv's (and its ReLU's) output


def test_cpu_batches_shrink_with_the_image_and_never_pass_the_request(monkeypatch):
    monkeypatch.setattr(batching, "last_level_cache", lambda: 1 << 20)
    net, cpu = _net(), torch.device("cpu")
    small, large = batching.inference_batch(net, 16, 64, cpu), batching.inference_batch(net, 64, 64, cpu)
    assert small == 32 and large == 2  # 0.4 MiB over 8 KiB and 128 KiB a picture, rounded down to a power of two
    assert batching.inference_batch(net, 16, 8, cpu) == 8
    assert batching.inference_batch(net, 1024, 64, cpu) == 1
    assert batching.inference_batch(net, 1024, 64, torch.device("cuda")) == 64  # accelerators: as asked


def test_predictions_do_not_depend_on_the_batch(monkeypatch):
    net, cpu = _net(), torch.device("cpu")
    norm = Normalizer((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    images = np.random.default_rng(0).integers(0, 256, (37, 3, 24, 24), dtype=np.uint8)
    monkeypatch.setattr(batching, "last_level_cache", lambda: 1 << 30)
    whole = predict_proba(net, norm, images, cpu, batch_size=64)
    monkeypatch.setattr(batching, "last_level_cache", lambda: 1 << 16)  # one image a batch
    np.testing.assert_allclose(predict_proba(net, norm, images, cpu, batch_size=64), whole, rtol=1e-5, atol=1e-6)
    assert whole.shape == (37, 2)
