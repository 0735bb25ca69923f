"""helpers.models.depthwise: the fast depthwise weight gradient equals autograd's, and is taken only where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers.models import depthwise
from helpers.models.zoo import build_model
from helpers.training import frozen
from helpers.training.optim import set_bn_eval


def _grads(conv, x, w, b, stride, padding):
    """Output and the gradients of x, w and b of a depthwise convolution by `conv` for a fixed output gradient."""
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    b = b.detach().requires_grad_() if b is not None else None
    out = conv(x, w, b, stride, padding, 1, x.shape[1])
    torch.manual_seed(1)
    out.backward(torch.randn_like(out))
    return out.detach(), x.grad, w.grad, None if b is None else b.grad


@pytest.mark.parametrize("channels, h, w, kernel, stride, padding, bias, channels_last", [
    (24, 3, 3, (5, 5), 1, 2, False, True),    # Lite0's last 5x5 stage at 80 px
    (16, 5, 5, (5, 5), 2, 2, False, True),    # its stride-2 block
    (8, 5, 3, (5, 5), 1, 2, True, False),     # a map that is not square, NCHW, with a bias
    (8, 4, 4, (7, 7), 1, 3, False, True),     # a 7x7 kernel
    (8, 5, 5, (3, 5), 1, (1, 2), False, True),  # a kernel that is not square
    (8, 6, 6, (5, 5), 2, 0, False, True),     # no padding (the library's own pad ran before)
])
def test_the_fast_weight_gradient_equals_autograds(channels, h, w, kernel, stride, padding, bias, channels_last):
    torch.manual_seed(0)
    x = torch.randn(4, channels, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, 1, *kernel, requires_grad=True)
    b = torch.randn(channels) if bias else None
    assert depthwise.applies(x, weight, stride, padding, 1, channels)  # the fast way is what runs below
    ours = _grads(depthwise.conv2d, x, weight, b, stride, padding)
    plain = _grads(F.conv2d, x, weight, b, stride, padding)
    for name, a, e in zip(("output", "input gradient", "weight gradient", "bias gradient"), ours, plain):
        if e is not None:
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=name)


def test_onednns_own_way_is_kept_where_the_fast_way_does_not_apply():
    x = torch.randn(2, 8, 3, 3)
    w5 = torch.randn(8, 1, 5, 5, requires_grad=True)
    assert depthwise.applies(x, w5, 1, 2, 1, 8)
    assert not depthwise.applies(x, torch.randn(8, 1, 3, 3, requires_grad=True), 1, 1, 1, 8)  # oneDNN's own 3x3
    assert not depthwise.applies(torch.randn(2, 8, 14, 14), w5, 1, 2, 1, 8)  # a 14x14 output map
    assert not depthwise.applies(x, w5.detach(), 1, 2, 1, 8)  # a frozen weight has no gradient to take
    assert not depthwise.applies(x, torch.randn(8, 2, 5, 5, requires_grad=True), 1, 2, 1, 4)  # grouped, not depthwise
    assert not depthwise.applies(x, w5, 1, 4, 2, 8)  # dilated
    with torch.no_grad():
        assert not depthwise.applies(x, w5, 1, 2, 1, 8)
    with depthwise.fast_weight_grad(False):
        assert not depthwise.applies(x, w5, 1, 2, 1, 8)
    assert depthwise.applies(x, w5, 1, 2, 1, 8)  # back on after the block


def _graph_names(fn, seen=None) -> set[str]:
    """Names of every node of an autograd graph."""
    seen = set() if seen is None else seen
    if fn is not None and fn not in seen:
        seen.add(fn)
        for nxt, _ in fn.next_functions:
            _graph_names(nxt, seen)
    return {type(f).__name__ for f in seen}


def test_lite0s_network_stage_trains_on_the_same_gradients_either_way():
    torch.manual_seed(0)
    model = build_model("efficientnet-lite0", 5, "none").to(memory_format=torch.channels_last)
    k = frozen.early_units(model, "efficientnet-lite0", 80, 8)
    frozen.freeze(model, "efficientnet-lite0", k)
    rest = frozen.Rest(model, "efficientnet-lite0", k)
    rest.train()
    set_bn_eval(model)
    h = torch.randn(6, 40, 10, 10).contiguous(memory_format=torch.channels_last)  # the cached early output at 80 px
    grads = {}
    for on in (True, False):
        with depthwise.fast_weight_grad(on):
            torch.manual_seed(2)  # the same dropout draw
            loss = rest(h).logsumexp(1).sum()
            names = _graph_names(loss.grad_fn)
            assert any("FastWeightGrad" in n for n in names) == on
            model.zero_grad(set_to_none=True)
            loss.backward()
            grads[on] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys() and grads[True]
    for name, g in grads[True].items():
        torch.testing.assert_close(g, grads[False][name], rtol=1e-4, atol=1e-6, msg=name)
