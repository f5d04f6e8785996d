"""Linear against torch."""

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


def test_linear_rejects_bad_input():
    lin = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="expected 4 channels"):
        lin(numpy.zeros((3, 5), dtype=numpy.float32))
    with pytest.raises(ValueError, match="2-D input"):
        lin(numpy.zeros((3, 4, 1), dtype=numpy.float32))
    with pytest.raises(TypeError, match="NumPy or CuPy array"):
        lin([[1.0, 2.0, 3.0, 4.0]])
