"""helpers.models.padding: the folded 'same' padding gives efficientnet-pytorch's numbers, with and without gradients."""

from __future__ import annotations

import pytest
import torch
from efficientnet_pytorch.utils import Conv2dDynamicSamePadding, Conv2dStaticSamePadding

from helpers.models.padding import library_padding
from helpers.models.zoo import build_model


def _library_twin(model: torch.nn.Module, arch: str) -> torch.nn.Module:
    """The same weights in efficientnet-pytorch's own convolution classes (its F.pad path)."""
    twin = build_model(arch, 5, "none")
    twin.load_state_dict(model.state_dict())
    return library_padding(twin)


@pytest.mark.parametrize("arch, size", [("efficientnet-lite0", 80), ("efficientnet-lite0", 97),
                                        ("efficientnet-b0", 64)])
def test_folded_padding_gives_the_librarys_outputs_and_gradients(arch, size):
    torch.manual_seed(0)
    model = build_model(arch, 5, "none").eval()
    twin = _library_twin(model, arch).eval()
    assert all(type(m) not in (Conv2dDynamicSamePadding, Conv2dStaticSamePadding) for m in model.modules())
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x), rtol=1e-5, atol=1e-5)
    a, b = model(x).square().sum(), twin(x).square().sum()
    a.backward()
    b.backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)  # training folds it too


def test_a_lopsided_padding_keeps_the_librarys_pad():
    conv = build_model("efficientnet-lite0", 5, "none")._conv_stem  # 3x3, stride 2: 80 px pads 0 left, 1 right
    x = torch.randn(1, 3, 80, 80)
    with torch.no_grad():
        out = conv(x)
        expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [0, 1, 0, 1]), conv.weight, conv.bias, 2)
    assert out.shape == (1, 32, 40, 40)
    torch.testing.assert_close(out, expected)
