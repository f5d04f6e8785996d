"""ReLU, the non-saturating non-linearity of Section 3.1 of the 2012 paper."""

from __future__ import annotations

from ..backend import get_array_module
from ..kernels import numba_kernels, workspace
from ..kernels.cuda_dispatch import kernels_for
from . import grad_mode
from ._utils import check_grad
from .module import Module


class ReLU(Module):
    r"""``y = max(x, 0)`` element-wise.

    Shapes: any; output has the input's shape, dtype and memory layout.

    Backward: :math:`\partial x = dY \cdot [x > 0]` (the gradient at exactly 0
    is 0, as in torch). Only the boolean mask is kept (1 byte per element).
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace   # accepted for torch compatibility; never changes the input
        self._mask = None

    def _on_apply(self) -> None:
        self._mask = None

    def forward(self, x):
        if not grad_mode.is_grad_enabled():   # no mask to keep: one pass
            self._mask = None
            xp = get_array_module(x)
            return xp.maximum(x, x.dtype.type(0), out=workspace.empty_like(x))
        cuda = kernels_for(x)   # CuPy arrays with the CUDA kernels switched on (off by default)
        if cuda is not None:
            y, self._mask = cuda.relu_forward(x)   # one pass instead of two
            return y
        y, mask = workspace.empty_like(x), workspace.empty_like(x, bool)
        # numba: one pass instead of two (paper net relu1: 10.7 -> 5.4 ms)
        if not (numba_kernels.use_for(x) and numba_kernels.relu_forward(x, y, mask)):
            xp = get_array_module(x)
            xp.greater(x, 0, out=mask)
            xp.multiply(x, mask, out=y)
        self._mask = mask
        return y

    def backward(self, grad_out):
        mask = self._need_cache(self._mask)
        check_grad(self, grad_out, mask.shape)
        self._mask = None
        xp = get_array_module(grad_out)
        return xp.multiply(grad_out, mask, out=workspace.empty_like(mask, grad_out.dtype))
