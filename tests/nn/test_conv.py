"""Conv2d against torch.nn.Conv2d: outputs, input and parameter gradients."""

import numpy
import pytest
import torch

from npalexnet import nn
from npalexnet.gradcheck.torch_compare import check_against_torch

CASES = [
    # (in, out, kernel, stride, padding, groups, bias, input H, W)
    (3, 4, 3, 1, 0, 1, True, 7, 7),
    (3, 5, (3, 2), (2, 1), (1, 0), 1, True, 8, 9),          # non-square kernel, stride and padding
    (4, 6, 5, 2, 2, 2, True, 11, 10),                        # groups=2, stride < kernel
    (2, 3, 1, 1, 0, 1, False, 5, 4),                         # 1x1 kernel, no bias
    (3, 8, 11, 4, 2, 1, True, 31, 31),                       # AlexNet's conv1 shape, small input
    (4, 4, 2, 3, 0, 4, True, 8, 8),                          # stride > kernel (skipped pixels), depthwise
    (2, 2, 3, 2, 0, 1, True, 3, 3),                          # input equal to the kernel
]


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[2]}k{c[3]}s{c[4]}p{c[5]}g")
def test_conv2d_matches_torch(case, dtype, xp):
    cin, cout, k, s, p, g, bias, h, w = case
    module = nn.Conv2d(cin, cout, k, stride=s, padding=p, groups=g, bias=bias)
    ref = torch.nn.Conv2d(cin, cout, k, stride=s, padding=p, groups=g, bias=bias)
    x = numpy.random.default_rng(3).standard_normal((2, cin, h, w))
    check_against_torch(module, ref, x, xp=xp, dtype=dtype)


def test_conv2d_accumulates_parameter_gradients():
    conv = nn.Conv2d(2, 3, 3).astype("float64")
    x = numpy.random.default_rng(0).standard_normal((2, 2, 5, 5))
    g = numpy.random.default_rng(1).standard_normal((2, 3, 3, 3))
    conv(x)
    conv.backward(g)
    first = conv.weight.grad.copy()
    conv(x)
    conv.backward(g)
    numpy.testing.assert_allclose(conv.weight.grad, 2 * first, rtol=1e-12)


def test_conv2d_does_not_modify_upstream_gradient():
    conv = nn.Conv2d(2, 3, 3, padding=1).astype("float64")
    x = numpy.random.default_rng(0).standard_normal((2, 2, 5, 5))
    g = numpy.random.default_rng(1).standard_normal((2, 3, 5, 5))
    g_before = g.copy()
    conv(x)
    conv.backward(g)
    numpy.testing.assert_array_equal(g, g_before)


def test_conv2d_torch_init_bounds():
    conv = nn.Conv2d(6, 8, 3, groups=2)
    bound = 1 / numpy.sqrt(3 * 9)
    assert conv.weight.shape == (8, 3, 3, 3)
    assert numpy.abs(conv.weight.data).max() <= bound
    assert numpy.abs(conv.bias.data).max() <= bound
    assert conv.weight.dtype == numpy.float32


@pytest.mark.parametrize("bad_shape, message", [
    ((2, 3, 8), "4-D input"),
    ((2, 4, 8, 8), "expected 3 channels"),
    ((2, 3, 2, 8), "smaller than the kernel"),
])
def test_conv2d_rejects_bad_input(bad_shape, message):
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=message) as info:
        conv(numpy.zeros(bad_shape, dtype=numpy.float32))
    assert "Conv2d" in str(info.value)


def test_conv2d_rejects_dtype_mismatch_and_bad_groups():
    with pytest.raises(TypeError, match="dtype"):
        nn.Conv2d(3, 4, 3)(numpy.zeros((1, 3, 5, 5), dtype=numpy.float64))
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)


def test_conv2d_backward_errors():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(RuntimeError, match="before forward"):
        conv.backward(numpy.zeros((1, 4, 3, 3), dtype=numpy.float32))
    conv(numpy.zeros((1, 3, 5, 5), dtype=numpy.float32))
    with pytest.raises(ValueError, match=r"expected a gradient of shape \(1, 4, 3, 3\)"):
        conv.backward(numpy.zeros((1, 4, 4, 4), dtype=numpy.float32))
