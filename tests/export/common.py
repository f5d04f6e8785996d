"""Helpers of the export tests: models with BatchNorm statistics that matter, images, logits, the tolerance."""

from __future__ import annotations

import numpy

from npalexnet import nn

#: float32 rounding, on the scale-free error max|a-b| / max(|a|+|b|) (tests/conftest.py's float32 forward tolerance)
TOLERANCE = 1e-5


def randomise_batchnorm(model, seed=1):
    """Running statistics and affine parameters away from their initial 0/1, so eval BatchNorm matters."""
    rng = numpy.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean = rng.normal(0, 0.1, c).astype(numpy.float32)
            m.running_var = rng.uniform(0.5, 2.0, c).astype(numpy.float32)
            m.weight.data = rng.uniform(0.5, 1.5, c).astype(numpy.float32)
            m.bias.data = rng.normal(0, 0.1, c).astype(numpy.float32)
    return model


def images(shape, n=3, seed=0):
    """(n, *shape) standard normal float32 (normalised images)."""
    return numpy.random.default_rng(seed).standard_normal((n,) + tuple(shape)).astype(numpy.float32)


def logits(model, x):
    """npalexnet's logits in evaluation mode, as a host array."""
    model.eval()
    with nn.no_grad():
        return numpy.asarray(model(x))


def relative_error(a, b):
    return numpy.abs(a - b).max() / max(numpy.abs(a).max() + numpy.abs(b).max(), 1e-30)
