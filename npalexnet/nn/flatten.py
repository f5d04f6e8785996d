"""Flatten: (N, C, H, W) -> (N, C*H*W), between the conv and FC stacks."""

from __future__ import annotations

from .module import Module


class Flatten(Module):
    """Collapse dims ``start_dim..end_dim`` into one (torch's defaults: 1..-1).

    Backward reshapes the gradient to the input's shape. The flattened order
    is C-order over the logical (N, C, H, W) shape, as torch's, whatever the
    memory layout of the input.
    """

    saved_for_backward = ("x_shape",)

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim
        self.x_shape = None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
        self.x_shape = x.shape
        return x.reshape(self.output_shape(x.shape))

    def backprop(self, grad_out):
        return grad_out.reshape(self.x_shape)

    def check_input(self, x):
        nd = x.ndim
        if self.start_dim % nd > self.end_dim % nd:
            raise ValueError(f"{self!r}: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for a {nd}-D input")

    def output_shape(self, input_shape):
        """The output shape for an input of ``input_shape``."""
        nd = len(input_shape)
        start, end = self.start_dim % nd, self.end_dim % nd
        size = 1
        for d in input_shape[start:end + 1]:
            size *= d
        return tuple(input_shape[:start]) + (size,) + tuple(input_shape[end + 1:])

    def torch_equivalent(self):
        return ("Flatten", (self.start_dim, self.end_dim), {})
