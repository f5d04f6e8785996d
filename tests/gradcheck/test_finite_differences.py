"""npalexnet.gradcheck.finite_differences: every layer in float64 without torch, and the checker itself.

The checker must catch a wrong gradient (element-wise and along directions, input and
parameters), see through kinks without hiding a wrong gradient, and leave every array as it found it.
"""

import numpy
import pytest

from npalexnet import config, nn
from npalexnet.gradcheck import (
    STEP,
    TOLERANCE,
    TOLERANCE_NETWORK,
    along_directions,
    central_difference,
    check_module,
    gamma,
    numerical_gradient,
    relative_error,
    shifted,
    tie_free,
    unit_roundoff,
)
from npalexnet.models import alexnet

LAYERS = [
    ("conv", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 6, 5)),
    ("conv_groups_nonsquare", lambda: nn.Conv2d(4, 4, (3, 2), stride=(1, 2), groups=2), (2, 4, 5, 6)),
    ("linear", lambda: nn.Linear(6, 3), (4, 6)),
    ("relu", lambda: nn.ReLU(), (3, 7)),
    ("maxpool_overlap", lambda: nn.MaxPool2d(3, 2), (2, 2, 7, 7)),
    ("maxpool_padding", lambda: nn.MaxPool2d(3, 2, padding=1), (1, 2, 6, 6)),
    ("lrn", lambda: nn.LocalResponseNorm(5, alpha=0.1, beta=0.75, k=2.0), (2, 7, 3, 3)),
    ("lrn_even_narrow", lambda: nn.LocalResponseNorm(4, alpha=0.2), (2, 3, 2, 2)),
    ("dropout", lambda: nn.Dropout(0.3), (4, 6)),
    ("flatten", lambda: nn.Flatten(), (2, 3, 2, 2)),
    ("batchnorm_train", lambda: nn.BatchNorm2d(3), (3, 3, 2, 3)),
    ("batchnorm_eval", lambda: nn.BatchNorm2d(3).eval(), (3, 3, 2, 3)),
    ("adaptive_avgpool", lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 2, 7, 5)),
]


@pytest.mark.parametrize("name, make, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_gradients_match_finite_differences(name, make, shape):
    module = make().astype("float64")
    # Tie-free inputs keep max-pool and ReLU away from their kinks.
    x = tie_free(shape)
    errors = check_module(module, x)
    assert set(errors) == {"input"} | {n for n, _ in module.named_parameters()}
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_gradient_matches_finite_differences(smoothing):
    rng = numpy.random.default_rng(0)
    logits = rng.standard_normal((4, 5))
    targets = rng.integers(0, 5, 4)
    crit = nn.CrossEntropyLoss(label_smoothing=smoothing)
    errors = check_module(crit, logits, targets=targets)       # a random scalar upstream gradient
    assert list(errors) == ["input"] and errors["input"] < 1e-8
    crit(logits, targets)
    analytic = crit.backward()                                  # before the differences run more forwards
    numeric = numerical_gradient(lambda: crit(logits, targets), logits)
    assert relative_error(analytic, numeric) < 1e-8


def test_whole_model_along_directions():
    model = alexnet("cifar", width=0.125).astype("float64")   # dropout on, replayed by seed
    x = numpy.random.default_rng(0).standard_normal((2, 3, 32, 32))
    errors = check_module(model, x, max_elements=0, directions=2, tolerance=TOLERANCE_NETWORK)
    assert max(errors.values()) < TOLERANCE_NETWORK, {k: v for k, v in errors.items() if v >= TOLERANCE_NETWORK}


class WrongReLU(nn.ReLU):
    def backward(self, grad_out, input_grad=True):
        return super().backward(grad_out, input_grad) * 1.01        # 1% off


class WrongWeightLinear(nn.Linear):
    """The input gradient is right; the weight gradient is 0.1% off (reference path only)."""

    def backprop(self, *args):
        dx = super().backprop(*args)
        self.weight.grad = self.weight.grad * 1.001
        return dx


@pytest.mark.parametrize("max_elements", [400, 0], ids=["element-wise", "directions"])
def test_checker_catches_a_wrong_input_gradient(max_elements):
    errors = check_module(WrongReLU(), tie_free((3, 4)), max_elements=max_elements)
    assert errors["input"] > 1e-3


@pytest.mark.parametrize("max_elements", [400, 0], ids=["element-wise", "directions"])
def test_checker_catches_a_wrong_parameter_gradient(max_elements):
    with config.reference():
        errors = check_module(WrongWeightLinear(6, 3).astype("float64"), tie_free((4, 6)),
                              max_elements=max_elements)
    assert errors["input"] < TOLERANCE and errors["bias"] < TOLERANCE
    assert errors["weight"] > 1e-4


def test_checks_leave_the_arrays_as_they_were():
    module = nn.Linear(6, 3).astype("float64")
    x = tie_free((4, 6))
    before = x.copy(), module.weight.data.copy()
    check_module(module, x, max_elements=10)     # bias (3) element-wise, weight and input along directions
    numpy.testing.assert_array_equal(x, before[0])
    numpy.testing.assert_array_equal(module.weight.data, before[1])

    def failing():
        raise RuntimeError("boom")

    evaluate = shifted(failing, x)
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(numpy.ones(x.shape))
    numpy.testing.assert_array_equal(x, before[0])


def test_numerical_gradient_of_a_known_function():
    w = numpy.random.default_rng(1).standard_normal((3, 4))
    x = tie_free((3, 4))
    numeric = numerical_gradient(lambda: numpy.sum(numpy.sin(x) * w), x)
    assert relative_error(numeric, numpy.cos(x) * w) < 1e-9
    assert central_difference(lambda d: float(numpy.sum((x + d) ** 2)), numpy.ones(x.shape)) == \
        pytest.approx(float(numpy.sum(2 * x)), rel=1e-9)


def test_along_directions_redraws_a_segment_across_a_kink_but_reports_a_wrong_gradient():
    # f(x) = sum |x|: x[0] sits 0.3 h from its kink, so most directions cross it within h.
    x = numpy.array([0.3 * STEP, 1.0, -2.0])
    f = shifted(lambda: numpy.sum(numpy.abs(x)), x)
    right = numpy.sign(x)
    crossed = along_directions(f, right, numpy.random.default_rng(0), directions=3, retries=0)
    assert crossed.error > 1e-2                   # without a redraw the kink reads as an error
    redrawn = along_directions(f, right, numpy.random.default_rng(0), directions=3, retries=20)
    assert redrawn.redrawn >= 1 and redrawn.error < TOLERANCE
    wrong = along_directions(f, right * 1.01, numpy.random.default_rng(0), directions=3, retries=20)
    assert wrong.error > 1e-3                     # a smooth disagreement is never redrawn away


def test_along_directions_leaves_masked_entries_still():
    x = numpy.array([1.0, 2.0, 3.0])
    moved = []

    def evaluate(delta):
        moved.append(delta.copy())
        return float(numpy.sum((x + delta) ** 2))

    live = numpy.array([True, False, True])
    wrong_in_the_middle = numpy.array([2.0, 999.0, 6.0])     # 2x, except the masked entry
    result = along_directions(evaluate, wrong_in_the_middle, numpy.random.default_rng(0), live=live, directions=2)
    assert result.error < TOLERANCE               # the wrong middle entry is never looked at
    assert all(d[1] == 0 for d in moved)
    with pytest.raises(ValueError, match="every entry is masked"):
        along_directions(evaluate, x, numpy.random.default_rng(0), live=numpy.zeros(3, dtype=bool))


def test_relative_error_definition_and_float32_refusal():
    assert relative_error(numpy.array([1.0, 2.0]), numpy.array([1.0, 2.0])) == 0.0
    assert relative_error(numpy.array([1.0]), numpy.array([3.0])) == pytest.approx(0.5)
    with pytest.raises(TypeError, match="float64"):
        check_module(nn.ReLU(), numpy.ones((2, 2), dtype=numpy.float32))
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(numpy.ones(2), numpy.ones(3))


def test_unit_roundoff_and_gamma():
    assert unit_roundoff(numpy.float32) == 2.0 ** -24 and unit_roundoff("float64") == 2.0 ** -53
    u = 2.0 ** -24
    assert gamma(10, numpy.float32) == pytest.approx(10 * u / (1 - 10 * u), rel=1e-15)
    with pytest.raises(ValueError, match="no bound"):
        gamma(2 ** 24, numpy.float32)


@pytest.mark.parametrize("shape", [(3, 4, 5), (3, 7), (1,)])
def test_tie_free_has_no_ties_and_no_zeros(shape):
    x = tie_free(shape, seed=2)
    gaps = numpy.diff(numpy.sort(x.ravel()))
    assert numpy.all(gaps >= 4 / x.size * (1 - 1e-12)) and numpy.all(numpy.abs(x) < 2)
    assert numpy.all(x != 0)
