"""Inverted dropout (Section 4.2 of the 2012 paper)."""

from __future__ import annotations

from .. import backend, random_streams
from ..backend import get_array_module
from ..kernels.cuda_dispatch import kernels_for
from ._utils import check_grad
from .module import Module


class Dropout(Module):
    r"""Zero each element with probability ``p`` in training, scale the rest by ``1/(1-p)``.

    Shapes: any; output has the input's shape.

    Forward (training): :math:`y = x \cdot m / (1-p)` with
    :math:`m \sim \mathrm{Bernoulli}(1-p)`; evaluation: :math:`y = x`.
    The paper multiplies by 0.5 at test time instead; scaling at training
    time ("inverted") gives the same expectation and an identity at test time.

    Backward reuses the forward mask: :math:`\partial x = dY \cdot m / (1-p)`.

    The mask comes from the library generator (``npalexnet.manual_seed``),
    or from ``seed`` when given, so a gradient check can replay it. Inside
    :func:`npalexnet.random_streams.sample_keys` (and without ``seed``) row
    ``i`` of the mask is a hash of (seed, epoch, global index of sample ``i``,
    call number), so it does not depend on how a batch is split across ranks.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, seed: int | None = None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be between 0 and 1, got {p}")
        self.p = float(p)
        self.inplace = inplace   # accepted for torch compatibility; never changes the input
        self.seed = seed
        self._cache = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._cache = self._keep(("identity", x.shape))
            return x
        xp = get_array_module(x)
        if self.p == 1.0:
            mask = xp.zeros(x.shape, dtype=bool)
        else:
            dtype = x.dtype if x.dtype.itemsize >= 4 else "float32"
            keys = random_streams.active() if self.seed is None else None
            if keys is not None:   # rank-independent: row i keyed by its sample's global index
                mask = keys.uniform(x.shape, dtype, xp) >= self.p
            else:
                gen = xp.random.default_rng(self.seed) if self.seed is not None else backend.rng(xp)
                mask = gen.random(x.shape, dtype=dtype) >= self.p
        self._cache = self._keep((mask, x.shape))
        return self._apply_mask(x, mask)

    def _apply_mask(self, a, mask):
        if self.p == 1.0:
            return a * mask
        cuda = kernels_for(a)   # CuPy arrays with the CUDA kernels switched on (off by default)
        if cuda is not None:
            return cuda.mask_scale(a, mask, 1.0 / (1.0 - self.p))   # one pass instead of two
        return a * mask * a.dtype.type(1.0 / (1.0 - self.p))

    def backward(self, grad_out):
        mask, shape = self._need_cache(self._cache)
        check_grad(self, grad_out, shape)
        self._cache = None
        if isinstance(mask, str):
            return grad_out
        return self._apply_mask(grad_out, mask)
