"""Initialisation formulas: PyTorch's default bound and He et al.'s standard deviation."""

import math

import numpy
import pytest

import npalexnet
from npalexnet.nn import init


def test_torch_default_bound_is_one_over_sqrt_fan_in():
    assert init.torch_default_bound(576) == pytest.approx(1 / 24)
    assert init.torch_default_bound(0) == 0.0


def test_he_std_is_gain_over_sqrt_fan_in():
    assert init.he_std(576) == pytest.approx(math.sqrt(2) / 24)
    assert init.he_std(4096, gain=1.0) == pytest.approx(1 / 64)
    assert init.he_std(0) == 0.0
    # PyTorch's default (uniform, bound 1/sqrt(fan_in), std bound/sqrt(3)) is sqrt(6) times smaller.
    assert init.he_std(100) / (init.torch_default_bound(100) / math.sqrt(3)) == pytest.approx(math.sqrt(6))


def test_normal_draws_follow_the_library_seed():
    npalexnet.manual_seed(3)
    a = init.normal((200, 300), 0.5)
    npalexnet.manual_seed(3)
    b = init.normal((200, 300), 0.5)
    numpy.testing.assert_array_equal(a, b)
    assert a.dtype == numpy.float32 and abs(float(a.std()) - 0.5) < 0.01 and abs(float(a.mean())) < 0.01
