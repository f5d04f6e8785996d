"""Gradient clipping by the global norm against torch.nn.utils.clip_grad_norm_."""

import numpy
import pytest
import torch

from npalexnet import nn, optim


def _twins(scale, dtype=numpy.float64, seed=0):
    rng = numpy.random.default_rng(seed)
    grads = [scale * rng.standard_normal(shape).astype(dtype) for shape in ((4, 3), (5,), (2, 2, 3))]
    ours = [nn.Parameter(numpy.zeros(g.shape, dtype)) for g in grads] + [nn.Parameter(numpy.ones(2, dtype))]
    theirs = [torch.zeros(g.shape, dtype=getattr(torch, numpy.dtype(dtype).name), requires_grad=True)
              for g in grads] + [torch.ones(2, requires_grad=True)]
    for p, tp, g in zip(ours, theirs, grads):
        p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
    return ours, theirs   # the last parameter has no gradient: it is left out of the norm, as torch does


@pytest.mark.parametrize("scale, max_norm", [(10.0, 1.0), (0.01, 1.0), (1.0, 2.5)])
@pytest.mark.parametrize("dtype, tolerance", [(numpy.float64, 1e-14), (numpy.float32, 1e-6)])
def test_clip_grad_norm_matches_torch(scale, max_norm, dtype, tolerance):
    ours, theirs = _twins(scale, dtype)
    norm = optim.clip_grad_norm(ours, max_norm)
    torch_norm = float(torch.nn.utils.clip_grad_norm_(theirs, max_norm))
    assert norm == pytest.approx(torch_norm, rel=tolerance)
    for p, tp in zip(ours[:3], theirs[:3]):
        assert p.grad.dtype == dtype
        numpy.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=tolerance, atol=0)
    clipped = optim.grad_norm(ours)
    assert clipped == pytest.approx(min(norm, max_norm), rel=1e-5)   # the direction kept, the length bounded


def test_a_gradient_below_the_bound_is_left_bit_for_bit():
    ours, _ = _twins(0.01)
    before = [p.grad.copy() for p in ours[:3]]
    optim.clip_grad_norm(ours, 100.0)
    for p, b in zip(ours, before):
        numpy.testing.assert_array_equal(p.grad, b)


def test_bad_bounds_and_non_finite_norms():
    ours, _ = _twins(1.0)
    with pytest.raises(ValueError, match="max_norm must be > 0, got 0"):
        optim.clip_grad_norm(ours, 0.0)
    ours[0].grad[0, 0] = numpy.inf
    before = [p.grad.copy() for p in ours[:3]]
    assert optim.clip_grad_norm(ours, 1.0) == numpy.inf
    for p, b in zip(ours, before):
        numpy.testing.assert_array_equal(p.grad, b)
    assert optim.grad_norm([nn.Parameter(numpy.zeros(3))]) == 0.0   # no gradient at all
