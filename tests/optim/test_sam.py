"""SharpnessPerturbation: the move to w + rho g / ||g|| and back."""

import numpy
import pytest

from npalexnet import nn, optim


def _params(rng, grads=True):
    params = [nn.Parameter(rng.standard_normal(shape)) for shape in ((3, 4), (4,), (2, 2, 3))]
    for p in params:
        p.grad = rng.standard_normal(p.shape) if grads else None
    return params


def test_ascend_climbs_rho_along_the_whole_gradient_and_restore_puts_back_every_bit():
    rng = numpy.random.default_rng(0)
    params = _params(rng)
    params[1].grad = None                                   # a parameter without a gradient stays put
    before = [p.data.copy() for p in params]
    g = numpy.concatenate([params[0].grad.ravel(), params[2].grad.ravel()])
    perturbation = optim.SharpnessPerturbation(params, 0.05)
    assert perturbation.ascend() == pytest.approx(numpy.linalg.norm(g), rel=1e-12)
    for i in (0, 2):
        numpy.testing.assert_allclose(params[i].data, before[i] + 0.05 * params[i].grad / numpy.linalg.norm(g),
                                      rtol=1e-14)
    numpy.testing.assert_array_equal(params[1].data, before[1])
    step = numpy.concatenate([(params[i].data - before[i]).ravel() for i in (0, 2)])
    assert numpy.linalg.norm(step) == pytest.approx(0.05, rel=1e-12)   # the ball's surface
    with pytest.raises(RuntimeError, match="already perturbed"):
        perturbation.ascend()
    perturbation.restore()
    for p, b in zip(params, before):
        numpy.testing.assert_array_equal(p.data, b)
    perturbation.restore()                                   # nothing perturbed: nothing to do


def test_a_zero_gradient_moves_nothing_and_the_radius_must_be_positive():
    rng = numpy.random.default_rng(1)
    params = _params(rng)
    for p in params:
        p.grad = numpy.zeros(p.shape)
    before = [p.data.copy() for p in params]
    perturbation = optim.SharpnessPerturbation(params, 0.1)
    assert perturbation.ascend() == 0.0
    for p, b in zip(params, before):
        numpy.testing.assert_array_equal(p.data, b)
    for radius in (0.0, -0.1):
        with pytest.raises(ValueError, match="radius must be > 0"):
            optim.SharpnessPerturbation(params, radius)


def test_float32_weights_move_in_float32():
    rng = numpy.random.default_rng(2)
    p = nn.Parameter(rng.standard_normal(8).astype(numpy.float32))
    p.grad = rng.standard_normal(8).astype(numpy.float32)
    optim.SharpnessPerturbation([p], 0.5).ascend()
    assert p.data.dtype == numpy.float32
