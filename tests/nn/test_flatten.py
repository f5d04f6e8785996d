"""Flatten against torch, whatever the memory layout."""

import numpy
import pytest
import torch

from npalexnet import nn
from npalexnet.gradcheck.torch_compare import check_against_torch


@pytest.mark.parametrize("start, end", [(1, -1), (0, -1), (1, 2), (2, 3)])
def test_flatten_matches_torch(start, end, xp):
    x = numpy.random.default_rng(0).standard_normal((2, 3, 4, 5))
    check_against_torch(nn.Flatten(start, end), torch.nn.Flatten(start, end), x, xp=xp)


def test_flatten_of_transposed_memory_uses_logical_order():
    x = numpy.arange(24.0).reshape(3, 2, 2, 2).transpose(1, 0, 2, 3)   # NCHW view of CNHW memory
    y = nn.Flatten()(x)
    numpy.testing.assert_array_equal(y, numpy.ascontiguousarray(x).reshape(2, -1))
