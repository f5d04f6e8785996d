"""Linear, ReLU and Flatten against torch."""

import numpy
import pytest
import torch

from npalexnet import nn
from tests.conftest import check_against_torch


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(dtype, bias, xp):
    x = numpy.random.default_rng(0).standard_normal((5, 7))
    check_against_torch(nn.Linear(7, 3, bias=bias), torch.nn.Linear(7, 3, bias=bias), x, xp=xp, dtype=dtype)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_relu_matches_torch_including_exact_zeros(dtype, xp):
    x = numpy.random.default_rng(0).standard_normal((2, 3, 4, 5))
    x[0, 0, 0, :3] = 0.0            # torch's relu gradient at exactly 0 is 0
    check_against_torch(nn.ReLU(), torch.nn.ReLU(), x, xp=xp, dtype=dtype)


@pytest.mark.parametrize("start, end", [(1, -1), (0, -1), (1, 2), (2, 3)])
def test_flatten_matches_torch(start, end, xp):
    x = numpy.random.default_rng(0).standard_normal((2, 3, 4, 5))
    check_against_torch(nn.Flatten(start, end), torch.nn.Flatten(start, end), x, xp=xp)


def test_flatten_of_transposed_memory_uses_logical_order():
    x = numpy.arange(24.0).reshape(3, 2, 2, 2).transpose(1, 0, 2, 3)   # NCHW view of CNHW memory
    y = nn.Flatten()(x)
    numpy.testing.assert_array_equal(y, numpy.ascontiguousarray(x).reshape(2, -1))


def test_linear_rejects_bad_input():
    lin = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="expected 4 channels"):
        lin(numpy.zeros((3, 5), dtype=numpy.float32))
    with pytest.raises(ValueError, match="2-D input"):
        lin(numpy.zeros((3, 4, 1), dtype=numpy.float32))
    with pytest.raises(TypeError, match="NumPy or CuPy array"):
        lin([[1.0, 2.0, 3.0, 4.0]])
