"""no_grad(): forward passes that keep nothing for backward, with the same outputs."""

import numpy
import pytest

import npalexnet
from npalexnet import nn
from npalexnet.models import alexnet


def test_no_grad_outputs_equal_and_nothing_is_cached():
    model = alexnet("cifar").astype("float64")
    model.eval()
    x = numpy.random.default_rng(0).standard_normal((3, 3, 32, 32))
    expected = numpy.array(model(x))
    with npalexnet.no_grad():
        assert not nn.is_grad_enabled()
        y = model(x)
    assert nn.is_grad_enabled()
    numpy.testing.assert_array_equal(y, expected)
    for name, module in model.named_modules():
        for attr in module.saved_for_backward:
            assert getattr(module, attr) is None, f"{name}.{attr} kept under no_grad"
    assert any(m.saved_for_backward for m in model.modules())


def test_backward_after_no_grad_forward_says_why():
    conv = nn.Conv2d(2, 3, 3)
    x = numpy.ones((1, 2, 5, 5), dtype=numpy.float32)
    with nn.no_grad():
        y = conv(x)
    with pytest.raises(nn.BackwardBeforeForwardError, match="no_grad"):
        conv.backward(numpy.ones_like(y))


def test_no_grad_restores_the_mode_on_error_and_nests():
    with pytest.raises(RuntimeError):
        with nn.no_grad():
            with nn.no_grad():
                assert not nn.is_grad_enabled()
            assert not nn.is_grad_enabled()
            raise RuntimeError("boom")
    assert nn.is_grad_enabled()


def test_relu_under_no_grad_is_max_with_zero():
    relu = nn.ReLU()
    x = numpy.array([[-1.0, 0.0, 2.5, numpy.nan]], dtype=numpy.float32)
    with nn.no_grad():
        y = relu(x)
    numpy.testing.assert_array_equal(y, relu(x))
    assert numpy.isnan(y[0, 3])
