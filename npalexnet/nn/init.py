"""Weight initialisation: PyTorch's defaults, the 2012 paper's scheme and He et al.'s.

Initial weights are drawn on the host from the library stream of
:mod:`npalexnet.random_streams` (``npalexnet.manual_seed``; one seed gives the
same net on every device) and cast to the module's dtype.
"""

from __future__ import annotations

import math

import numpy

from .. import random_streams


def uniform(shape, bound: float, dtype=numpy.float32):
    """U(-bound, bound), as torch's ``nn.init.uniform_``."""
    return (bound * (2.0 * random_streams.library_uniform(shape) - 1.0)).astype(dtype)


def normal(shape, std: float, mean: float = 0.0, dtype=numpy.float32):
    """N(mean, std^2), as torch's ``nn.init.normal_``."""
    return (mean + std * random_streams.library_normal(shape)).astype(dtype)


def torch_default_bound(fan_in: int) -> float:
    """The bound of torch's default init for Conv2d and Linear.

    ``kaiming_uniform_(w, a=sqrt(5))`` gives gain ``sqrt(2 / (1 + 5))`` and
    bound ``gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)``; the bias uses the
    same bound.
    """
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def he_std(fan_in: int, gain: float = math.sqrt(2.0)) -> float:
    """The standard deviation of He et al. (2015)'s init, ``gain / sqrt(fan_in)``.

    With ``gain = sqrt(2)`` a layer followed by a ReLU keeps the second moment
    of its pre-activations from layer to layer: ``Var[y_l] = fan_in * Var[w] *
    E[x^2]`` and a ReLU halves the second moment of a symmetric input, so
    ``Var[w] = 2 / fan_in`` makes ``Var[y_l] = Var[y_{l-1}]`` (their Eq. 10).
    ``gain = 1`` suits a layer not followed by a ReLU (the logits). PyTorch's
    default is ``1 / sqrt(3 fan_in)`` (uniform with bound ``1 / sqrt(fan_in)``),
    ``sqrt(6)`` times smaller: each ReLU layer shrinks the signal by that factor.
    """
    return gain / math.sqrt(fan_in) if fan_in > 0 else 0.0
