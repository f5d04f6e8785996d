"""Weight initialisation: PyTorch's defaults and the 2012 paper's scheme.

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
