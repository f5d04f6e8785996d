"""Flatten: (N, C, H, W) -> (N, C*H*W), between the conv and FC stacks."""

from __future__ import annotations

from ._utils import check_grad
from .module import Module


class Flatten(Module):
    """Collapse dims ``start_dim..end_dim`` into one (torch's defaults: 1..-1).

    Backward reshapes the gradient to the input's shape. The flattened order
    is C-order over the logical (N, C, H, W) shape, as torch's, whatever the
    memory layout of the input.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim
        self._shape = None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
        nd = x.ndim
        start, end = self.start_dim % nd, self.end_dim % nd
        if start > end:
            raise ValueError(f"{self!r}: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for a {nd}-D input")
        self._shape = self._keep(x.shape)
        return x.reshape(self.forward_shape(x.shape))

    def backward(self, grad_out):
        shape = self._need_cache(self._shape)
        expected = self.forward_shape(shape)
        check_grad(self, grad_out, expected)
        self._shape = None
        return grad_out.reshape(shape)

    def forward_shape(self, shape):
        """The output shape for an input of ``shape``."""
        nd = len(shape)
        start, end = self.start_dim % nd, self.end_dim % nd
        size = 1
        for d in shape[start:end + 1]:
            size *= d
        return tuple(shape[:start]) + (size,) + tuple(shape[end + 1:])
