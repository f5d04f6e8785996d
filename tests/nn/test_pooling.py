"""MaxPool2d and AdaptiveAvgPool2d against torch."""

import numpy
import pytest
import torch

import npalexnet

from npalexnet import nn
from npalexnet.gradcheck.torch_compare import check_against_torch


def tie_free(shape, seed=0):
    """A permutation of distinct values: max-pool gradients are then unambiguous."""
    rng = numpy.random.default_rng(seed)
    return rng.permutation(numpy.prod(shape)).reshape(shape) / numpy.prod(shape) - 0.5


MAXPOOL_CASES = [
    (3, 2, 0, 13, 13),        # AlexNet's overlapping 3/2 pooling
    (2, 2, 0, 8, 9),          # non-overlapping, odd width rounds down
    ((3, 2), (1, 2), 1, 7, 6),  # non-square, padding
    (3, 3, 1, 10, 10),
    (3, 1, 1, 5, 5),          # stride 1: every pixel in up to 9 windows
    (2, 3, 0, 7, 7),          # stride > kernel: pixels in no window
]


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=str)
def test_maxpool_matches_torch(case, dtype, xp):
    k, s, p, h, w = case
    x = tie_free((2, 3, h, w))
    check_against_torch(nn.MaxPool2d(k, s, p), torch.nn.MaxPool2d(k, s, p), x, xp=xp, dtype=dtype)


def test_maxpool_ties_go_to_first_maximum_like_torch(xp):
    x = numpy.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[0, 0, 2, 1] = 1.0   # three equal maxima in overlapping windows
    check_against_torch(nn.MaxPool2d(3, 1), torch.nn.MaxPool2d(3, 1), x, xp=xp)
    constant = numpy.ones((1, 2, 5, 5))
    check_against_torch(nn.MaxPool2d(3, 2), torch.nn.MaxPool2d(3, 2), constant, xp=xp)


def test_maxpool_default_stride_is_kernel():
    assert nn.MaxPool2d(3).stride == (3, 3)


def test_maxpool_overlapping_gradients_accumulate():
    # The single maximum in the centre wins all four overlapping windows.
    x = numpy.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    pool = nn.MaxPool2d(3, 2)
    pool(x)
    dx = pool.backward(numpy.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert dx[0, 0, 2, 2] == 10.0
    assert dx.sum() == 10.0


def test_maxpool_rejects_bad_input_and_arguments():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        nn.MaxPool2d(3, 2)(numpy.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="4-D input"):
        nn.MaxPool2d(3, 2)(numpy.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="padding"):
        nn.MaxPool2d(2, 2, padding=2)


ADAPTIVE_CASES = [((6, 6), 13, 13), ((6, 6), 6, 6), ((3, 2), 7, 5), ((4, 4), 8, 8), ((5, 3), 3, 7),
                  ((None, 2), 5, 6), (1, 4, 3)]


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
def test_adaptive_avgpool_matches_torch(case, dtype, xp):
    size, h, w = case
    x = numpy.random.default_rng(0).standard_normal((2, 3, h, w))
    check_against_torch(nn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size), x, xp=xp, dtype=dtype)


@pytest.mark.parametrize("numba_on", [True, False])
def test_maxpool_propagates_nan_as_torch(numba_on):
    """A NaN anywhere in a window wins it (torch's rule), and its gradient goes to that NaN."""
    with npalexnet.config.using(numba=numba_on):
        _maxpool_propagates_nan_as_torch()


def _maxpool_propagates_nan_as_torch():
    x = numpy.arange(2 * 3 * 6 * 6, dtype=numpy.float64).reshape(2, 3, 6, 6) % 7
    x[0, 0, 1, 1] = x[1, 2, 4, 5] = x[1, 2, 5, 4] = numpy.nan
    pool = nn.MaxPool2d(3, 2, padding=1)
    y = pool(x)
    g = numpy.random.default_rng(0).standard_normal(y.shape)
    dx = pool.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, 3, 2, padding=1)
    ty.backward(torch.tensor(g))
    numpy.testing.assert_array_equal(y, ty.detach().numpy())
    numpy.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-14)
