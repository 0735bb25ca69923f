"""Depthwise convolutions whose weight gradient on the CPU runs as a depthwise forward, where oneDNN's is slow.

oneDNN's depthwise kernel for the weight gradient (`jit_dw`) handles 3x3 kernels only: a depthwise 5x5 falls to its
general grouped-convolution kernel, which treats every one-channel group as a block of 16 (`ONEDNN_VERBOSE=1`
prints `jit:avx512_core,backward_weights` there, `jit_dw` for 3x3). On EfficientNet's last stages at 80 px (5x5
kernels over maps of 3x3 and 5x5, the costliest calls of 03's network stage) that call took 1.5-7 ms. The same
gradient is a correlation of each image's input channel with its output gradient, summed over the images: one
depthwise forward over N x C channels whose kernels are the gradient maps, which oneDNN runs with its fast
forward kernel for any size (`brdgmm_dw`): 0.5-2.2 ms. The forward and the input gradient keep oneDNN's own
kernels. On output maps larger than `MAX_OUTPUT_MAP` positions (at 224 px, say) neither way wins on every shape,
so those keep oneDNN's; `python benchmarks/bench_depthwise.py` prints both ways per shape and the training step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

# Output maps of at most 25 positions (the correlation's kernel, at most 5x5): 1.2-6.5x faster at 240-1 152
# channels on 2 cores (AVX-512); on larger maps each way wins on some shapes (the benchmark's table).
MAX_OUTPUT_MAP = 25
ONEDNN_DEPTHWISE_KERNEL = (3, 3)  # the one kernel size oneDNN's own depthwise weight gradient handles

_enabled = True


@contextlib.contextmanager
def fast_weight_grad(enabled: bool) -> Iterator[None]:
    """Within the block, small-map depthwise weight gradients take this module's way (True) or oneDNN's (False)."""
    global _enabled
    before, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = before


def applies(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups: int) -> bool:
    """Whether this convolution's weight gradient takes the fast way: CPU, depthwise, not 3x3, a small output map."""
    if not _enabled or torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return False  # exported and compiled graphs keep the plain convolution
    if not (torch.is_grad_enabled() and weight.requires_grad and x.device.type == "cpu" and x.dim() == 4
            and x.dtype == torch.float32 and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    if isinstance(padding, str) or _pair(dilation) != (1, 1):
        return False
    kernel = tuple(weight.shape[-2:])
    if not (groups == x.shape[1] == weight.shape[0] and weight.shape[1] == 1 and kernel != ONEDNN_DEPTHWISE_KERNEL):
        return False
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    oh, ow = (x.shape[-2] + 2 * ph - kernel[0]) // sh + 1, (x.shape[-1] + 2 * pw - kernel[1]) // sw + 1
    return 0 < oh * ow <= MAX_OUTPUT_MAP


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
           groups: int) -> torch.Tensor:
    """F.conv2d, with the weight gradient of small-map depthwise convolutions on the CPU taken the fast way."""
    if not applies(x, weight, stride, padding, dilation, groups):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    out = _FastWeightGrad.apply(x, weight, _pair(stride), _pair(padding))
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def weight_grad(grad: torch.Tensor, x: torch.Tensor, kernel: tuple[int, int], stride, padding) -> torch.Tensor:
    """The depthwise weight gradient (C, 1, kh, kw) from the output's `grad` and the input `x`, as one forward.

    Entry (c, i, j) is the sum over images n and output positions (y, x) of grad[n, c, y, x] times the padded input
    at (s*y + i, s*x + j): for each (n, c) pair a correlation of its input map with its gradient map (dilated by the
    stride), which is a depthwise forward with N*C channels whose kernels are the gradient maps; summed over n.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, _pair(stride), _pair(padding)
    n, channels, h, w = x.shape
    oh, ow = grad.shape[-2:]
    pairs = x.permute(2, 3, 0, 1).reshape(1, h, w, n * channels).permute(0, 3, 1, 2)  # channels last
    kernels = grad.reshape(n * channels, 1, oh, ow)
    corr = F.conv2d(pairs, kernels, None, 1, (ph, pw), (sh, sw), n * channels)
    return corr[..., :kh, :kw].reshape(n, channels, kh, kw).sum(0).unsqueeze(1).contiguous(
        memory_format=torch.channels_last)


class _FastWeightGrad(torch.autograd.Function):
    """A depthwise convolution: oneDNN's forward and input gradient, the weight gradient from weight_grad."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride, padding) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0], weight.shape[0],
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad(grad, x, tuple(weight.shape[-2:]), ctx.stride, ctx.padding)
        return grad_x, grad_w, None, None


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)
