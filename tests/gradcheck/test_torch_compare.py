"""npalexnet.gradcheck.torch_compare: the one comparison with PyTorch and its one tolerance table.

It must pass right layers (outputs, input and every parameter gradient, losses with targets, dropout
replayed by a twin), catch wrong ones in every array it compares, and hold a bias gradient whose terms
cancel to the bound of a sum, which passes rounding noise and nothing more.
"""

import numpy
import pytest
import torch

from npalexnet import config, nn
from npalexnet.gradcheck import relative_error, tie_free, unit_roundoff
from npalexnet.gradcheck.torch_compare import (
    TOLERANCES,
    ComparisonError,
    check_against_torch,
    compare,
    sum_bound,
    tolerances,
)
from npalexnet.gradcheck.torch_twin import to_torch


def test_the_table_is_the_documented_multiples_of_the_unit_roundoff():
    assert TOLERANCES == {numpy.float64: (1e-10, 1e-10), numpy.float32: (1e-5, 5e-5)}
    assert tolerances("float32") == tolerances(numpy.float32) == tolerances(numpy.dtype("float32")) == (1e-5, 5e-5)
    u32, u64 = unit_roundoff(numpy.float32), unit_roundoff(numpy.float64)
    assert 160 < 1e-5 / u32 < 180 and 830 < 5e-5 / u32 < 850 and 1e5 < 1e-10 / u64 < 1e7
    with pytest.raises(ValueError, match="no tolerance for float16"):
        tolerances(numpy.float16)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_a_right_layer_passes_with_every_array_measured(dtype, xp):
    comparison = check_against_torch(nn.Linear(6, 3), torch.nn.Linear(6, 3), tie_free((4, 6)), xp=xp, dtype=dtype)
    assert list(comparison.errors) == ["output", "input", "weight", "bias"]
    assert comparison.passed and comparison.dtype == numpy.dtype(dtype).name
    assert comparison.tolerances == dict(zip(comparison.errors, (tolerances(dtype)[0],) + 3 * (tolerances(dtype)[1],)))


class ScaledInputGradient(nn.Linear):
    def backward(self, grad_out, input_grad=True):
        return super().backward(grad_out, input_grad) * 1.001


class ScaledWeightGradient(nn.Linear):
    def backprop(self, grad_out):
        dx = super().backprop(grad_out)
        self.weight.grad = self.weight.grad * 1.001
        return dx


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("wrong, array", [(ScaledInputGradient, "input"), (ScaledWeightGradient, "weight")])
def test_a_wrong_gradient_is_caught(wrong, array, dtype):
    x = tie_free((4, 6))
    with config.reference():
        with pytest.raises(ComparisonError, match=f"{array} 5.00e-04 >"):
            check_against_torch(wrong(6, 3), torch.nn.Linear(6, 3), x, dtype=dtype)
        comparison = check_against_torch(wrong(6, 3), torch.nn.Linear(6, 3), x, dtype=dtype, check=False)
    assert list(comparison.failures) == [array] and not comparison.passed
    assert comparison.worst[0] == array


def test_a_wrong_output_is_caught():
    class Shifted(nn.ReLU):
        def forward(self, x):
            return super().forward(x) + 1e-3

    comparison = check_against_torch(Shifted(), torch.nn.ReLU(), tie_free((3, 4)), check=False)
    assert list(comparison.failures) == ["output"]


def test_a_loss_with_targets_and_a_twin_with_dropout():
    targets = numpy.array([0, 3, 1, 4])
    for smoothing in (0.0, 0.1):
        comparison = check_against_torch(nn.CrossEntropyLoss(label_smoothing=smoothing),
                                         torch.nn.CrossEntropyLoss(label_smoothing=smoothing),
                                         tie_free((4, 5)), targets=targets)
        assert list(comparison.errors) == ["output", "input"]
    layer = nn.Dropout(0.5)
    comparison = check_against_torch(layer, to_torch(layer), tie_free((4, 6)))    # the twin replays the mask
    assert comparison.errors == {"output": 0.0, "input": 0.0}


def test_dtype_and_parameter_mismatches_are_refused():
    with pytest.raises(ComparisonError, match="parameters"):
        check_against_torch(nn.Linear(6, 3, bias=False), torch.nn.Linear(6, 3), tie_free((4, 6)))


def test_sum_bound_is_the_bound_of_a_sum():
    ours = numpy.array([[1.0, -2.0], [3.0, 4.0], [-5.0, 0.5]])
    theirs = ours + numpy.array([[1e-7, 0.0], [0.0, -2e-7], [0.0, 0.0]])
    bound = sum_bound(ours, theirs, numpy.float32)
    g = 2 * 2.0 ** -24 / (1 - 2 * 2.0 ** -24)                  # gamma_{n-1}, n = 3 terms per channel
    expected = [1e-7 + g * (18 + 1e-7), 2e-7 + g * (13 - 2e-7)]
    numpy.testing.assert_allclose(bound, expected, rtol=1e-8)     # (1 + 1e-7) - 1 is 1e-7 to ~1e-9


def _conv_before_batchnorm(conv=nn.Conv2d):
    net = nn.Sequential(conv(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4))
    return net, twin, numpy.random.default_rng(0).standard_normal((4, 3, 6, 6))


def test_a_bias_whose_terms_cancel_passes_within_the_sum_bound():
    # Before a BatchNorm in training mode the exact bias gradient is 0: each library returns rounding noise.
    net, twin, x = _conv_before_batchnorm()
    comparison = check_against_torch(net, twin, x, dtype=numpy.float32)
    assert comparison.passed and comparison.within_sum_bound == {"0.bias"}
    assert comparison.errors["0.bias"] > 0.1    # noise against noise: no relative tolerance could pass it


def test_a_wrong_cancelling_bias_is_not_hidden_by_the_sum_bound():
    class FirstImageDropped(nn.Conv2d):
        """A real mistake in a cancelling sum: the bias gradient leaves out the first image's terms."""

        def backprop(self, grad_out, input_grad=True):
            dx = super().backprop(grad_out, input_grad)
            self.bias.grad = self.bias.grad - grad_out[0].sum(axis=(1, 2))
            return dx

    net, twin, x = _conv_before_batchnorm(FirstImageDropped)
    with config.reference():
        comparison = check_against_torch(net, twin, x, dtype=numpy.float32, check=False)
    assert "0.bias" in comparison.failures and "0.bias" not in comparison.within_sum_bound


def test_compare_takes_recorded_arrays_and_torch_tensors():
    a = numpy.linspace(1, 2, 10, dtype=numpy.float32)
    result = compare({"y": (a, torch.from_numpy(a.copy()))}, {"g": (a, torch.from_numpy(a * (1 + 1e-3)))},
                     numpy.float32, subject="recorded")
    assert result.errors["y"] == 0.0 and result.errors["g"] == pytest.approx(relative_error(a, a * (1 + 1e-3)))
    assert list(result.failures) == ["g"]
    with pytest.raises(ComparisonError, match="recorded: errors above the float32 tolerances: g"):
        result.raise_if_failed()
