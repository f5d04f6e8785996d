"""ReLU against torch."""

import numpy
import pytest
import torch

from npalexnet import nn
from npalexnet.gradcheck.torch_compare import check_against_torch


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_relu_matches_torch_including_exact_zeros(dtype, xp):
    x = numpy.random.default_rng(0).standard_normal((2, 3, 4, 5))
    x[0, 0, 0, :3] = 0.0            # torch's relu gradient at exactly 0 is 0
    check_against_torch(nn.ReLU(), torch.nn.ReLU(), x, xp=xp, dtype=dtype)
