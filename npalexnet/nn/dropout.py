"""Inverted dropout (Section 4.2 of the 2012 paper)."""

from __future__ import annotations

from .. import random_streams
from ..backend import get_array_module
from .module import Module


class Dropout(Module):
    r"""Zero each element with probability ``p`` in training, scale the rest by ``1/(1-p)``.

    Shapes: any; output has the input's shape.

    Forward (training): :math:`y = x \cdot m / (1-p)` with
    :math:`m \sim \mathrm{Bernoulli}(1-p)`; evaluation: :math:`y = x`.
    The paper multiplies by 0.5 at test time instead; scaling at training
    time ("inverted") gives the same expectation and an identity at test time.

    Backward reuses the forward mask: :math:`\partial x = dY \cdot m / (1-p)`.

    The mask (:meth:`draw_mask`) comes from the library's counter-based random
    numbers (:mod:`npalexnet.random_streams`): inside ``sample_keys`` (a
    training step) row ``i`` is a hash of (seed, epoch, global index of
    sample ``i``, call number), so it does not depend on how a batch is split
    across ranks; outside, from the library stream (``npalexnet.manual_seed``),
    or from ``seed`` when given, so a gradient check can replay it. The mask of
    the last forward stays readable as ``mask`` until the backward pass.

    Fast path (seam ``"dropout"``): the CUDA kernels multiply by the mask and
    the scale in one pass.
    """

    seam = "dropout"
    saved_for_backward = ("mask",)

    def __init__(self, p: float = 0.5, inplace: bool = False, seed: int | None = None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be between 0 and 1, got {p}")
        self.p = float(p)
        self.inplace = inplace   # accepted for torch compatibility; never changes the input
        self.seed = seed
        self.mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        self.mask = self.draw_mask(x)
        return x * self.mask * self.scale(x)

    def backprop(self, grad_out):
        if self.mask is None:   # evaluation, or p = 0: the identity
            return grad_out
        return grad_out * self.mask * self.scale(grad_out)

    def scale(self, a):
        """1 / (1 - p) in ``a``'s dtype (0 when p = 1: everything is dropped)."""
        return a.dtype.type(0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p))

    def draw_mask(self, x):
        """The boolean keep-mask for ``x`` (True with probability 1 - p), see the class docstring:
        uniform numbers ``u`` of x's shape from this call's row keys, and ``u >= p``."""
        dtype = x.dtype if x.dtype.itemsize >= 4 else "float32"
        u = random_streams.uniform_from_keys(self.mask_keys(x), x.shape[1:], dtype)
        return u >= self.p

    def mask_keys(self, x, xp=None):
        """The (N,) uint64 row keys of this call's mask (on ``xp``, default x's module). Each call takes
        the next keys: of the batch's samples inside ``sample_keys``, else of the library stream (or of
        ``seed``, the same each call)."""
        xp = get_array_module(x) if xp is None else xp
        rows = x.shape[0]
        if self.seed is not None:
            return random_streams.row_keys(self.seed, 0, xp.arange(rows), random_streams.LIBRARY_STREAM, xp)
        keys = random_streams.active()
        if keys is not None:
            return keys.next_row_keys(rows, xp)
        return random_streams.next_library_keys(rows, xp)

    def torch_equivalent(self):
        return ("Dropout", (self.p,), {})

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return f"p={self.p}"
