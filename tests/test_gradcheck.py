"""Finite-difference checks of every layer in float64, without torch.

Also proves the checker itself catches a wrong gradient.
"""

import numpy
import pytest

from npalexnet import gradcheck, nn
from npalexnet.models import alexnet


def tie_free(shape, seed=0):
    rng = numpy.random.default_rng(seed)
    return (rng.permutation(int(numpy.prod(shape))).reshape(shape) / numpy.prod(shape) - 0.5) * 4


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
    errors = gradcheck.check_module(module, x)
    assert errors and max(errors.values()) < 1e-7, errors


def test_cross_entropy_gradient_matches_finite_differences():
    rng = numpy.random.default_rng(0)
    logits = rng.standard_normal((4, 5))
    targets = rng.integers(0, 5, 4)
    crit = nn.CrossEntropyLoss(label_smoothing=0.2)
    crit(logits, targets)
    analytic = crit.backward()
    numeric = gradcheck.numerical_gradient(lambda: crit(logits, targets), logits)
    assert gradcheck.relative_error(analytic, numeric) < 1e-8


def test_whole_model_along_random_directions():
    model = alexnet("cifar", width=0.125).astype("float64")   # dropout on, replayed by seed
    x = numpy.random.default_rng(0).standard_normal((2, 3, 32, 32))
    errors = gradcheck.check_module(model, x, max_elements=0, directions=2)
    # Along a random direction through thousands of ReLUs and max-pools a few
    # units cross their kink within h, so whole-net errors sit near 1e-6
    # instead of 1e-9; a wrong gradient gives 1e-2 or more.
    assert max(errors.values()) < 1e-5, {k: v for k, v in errors.items() if v >= 1e-5}


def test_checker_catches_a_wrong_gradient():
    class WrongReLU(nn.ReLU):
        def backward(self, grad_out):
            return super().backward(grad_out) * 1.01        # 1% off

    errors = gradcheck.check_module(WrongReLU(), tie_free((3, 4)))
    assert errors["input"] > 1e-3


def test_relative_error_definition_and_float32_refusal():
    assert gradcheck.relative_error(numpy.array([1.0, 2.0]), numpy.array([1.0, 2.0])) == 0.0
    assert gradcheck.relative_error(numpy.array([1.0]), numpy.array([3.0])) == pytest.approx(0.5)
    with pytest.raises(TypeError, match="float64"):
        gradcheck.check_module(nn.ReLU(), numpy.ones((2, 2), dtype=numpy.float32))
    with pytest.raises(ValueError, match="shapes differ"):
        gradcheck.relative_error(numpy.ones(2), numpy.ones(3))
