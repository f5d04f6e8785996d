"""ReLU against torch."""

import numpy
import pytest
import torch

from npalexnet import nn
from tests.conftest import check_against_torch


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_relu_matches_torch_including_exact_zeros(dtype, xp):
    x = numpy.random.default_rng(0).standard_normal((2, 3, 4, 5))
    x[0, 0, 0, :3] = 0.0            # torch's relu gradient at exactly 0 is 0
    check_against_torch(nn.ReLU(), torch.nn.ReLU(), x, xp=xp, dtype=dtype)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_relu_numba_pass_equals_the_array_code_on_every_layout(dtype, monkeypatch):
    from npalexnet.kernels import numba_kernels
    from tests.kernels.test_numba_kernels import layouts

    rng = numpy.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    x[0, 0, 0, :2] = 0.0
    x[1, 2, 3, 4] = numpy.nan              # NaN stays NaN, with a zero gradient (as torch)
    g = rng.standard_normal(x.shape).astype(dtype)
    results = {}
    for setting in ("1", "0"):
        monkeypatch.setenv(numba_kernels.ENV_VAR, setting)
        for i, view in enumerate(layouts(x)):
            relu = nn.ReLU()
            y = relu(view)
            results[setting, i] = (y.copy(), relu.backward(g).copy(), y.strides == view.strides)
    for i in range(3):
        fast, slow = results["1", i], results["0", i]
        numpy.testing.assert_array_equal(fast[0], slow[0])
        numpy.testing.assert_array_equal(fast[1], slow[1])
        assert fast[2] == slow[2], "the output keeps the input's layout"
