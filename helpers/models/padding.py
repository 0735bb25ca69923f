"""efficientnet-pytorch's TensorFlow-style 'same' padding, folded into the convolution where it is symmetric.

The library pads the input of each such convolution with a separate `F.pad` (a copy of the whole feature map),
then convolves without padding. Where that padding is the same on both sides — every stride-1 convolution with
an odd kernel, most of the network — the convolution's own zero padding gives the same numbers without the
copy, and, with gradients, a backward over the unpadded map: oneDNN's weight gradient of a depthwise 5x5
convolution over a 3x3 map padded to 7x7 was the costliest call of 03's network stage on the CPU
(`python benchmarks/bench_padding.py` prints both paths).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from efficientnet_pytorch.utils import Conv2dDynamicSamePadding, Conv2dStaticSamePadding
from torch import nn

from helpers.models import depthwise


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total 'same' padding along one side length (TensorFlow's rule, as efficientnet-pytorch computes it)."""
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def _same_amounts(conv: nn.Conv2d, x: torch.Tensor) -> tuple[int, int, int, int]:
    """The 'same' padding (left, right, top, bottom) the library applies to `x` before this convolution."""
    static = getattr(conv, "static_padding", None)
    if static is not None:  # Conv2dStaticSamePadding: amounts fixed at build time
        return (0, 0, 0, 0) if isinstance(static, nn.Identity) else tuple(static.padding)
    # Conv2dDynamicSamePadding: amounts from the input's size
    ph = _same_pad(x.shape[-2], conv.weight.shape[-2], conv.stride[0], conv.dilation[0])
    pw = _same_pad(x.shape[-1], conv.weight.shape[-1], conv.stride[1], conv.dilation[1])
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def _forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """One convolution with its 'same' padding: inside the convolution where it is symmetric, as the library's
    F.pad before it where it is lopsided.

    Either way the convolution is depthwise.conv2d: F.conv2d but for the CPU weight gradient of small-map
    depthwise kernels above 3x3 (helpers/models/depthwise.py).
    """
    left, right, top, bottom = _same_amounts(conv, x)
    if top == bottom and left == right:
        pad = (top, left)
    else:  # the library's own F.pad, then the convolution without padding
        x, pad = F.pad(x, [left, right, top, bottom]), conv.padding
    return depthwise.conv2d(x, conv.weight, conv.bias, conv.stride, pad, conv.dilation, conv.groups)


class DynamicSamePadConv2d(Conv2dDynamicSamePadding):
    """Conv2dDynamicSamePadding with symmetric padding folded into the convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _forward(self, x)


class StaticSamePadConv2d(Conv2dStaticSamePadding):
    """Conv2dStaticSamePadding with symmetric padding folded into the convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _forward(self, x)


_FOLDED = {Conv2dDynamicSamePadding: DynamicSamePadConv2d, Conv2dStaticSamePadding: StaticSamePadConv2d}


def fold_same_padding(model: nn.Module) -> nn.Module:
    """Give every 'same'-padding convolution of an efficientnet-pytorch model the folded forward (in place)."""
    for module in model.modules():
        if type(module) in _FOLDED:
            module.__class__ = _FOLDED[type(module)]
    return model


def library_padding(model: nn.Module) -> nn.Module:
    """The model with efficientnet-pytorch's own convolution classes back (its F.pad path), in place."""
    back = {v: k for k, v in _FOLDED.items()}
    for module in model.modules():
        if type(module) in back:
            module.__class__ = back[type(module)]
    return model
