"""Fully connected layer (AlexNet's fc6, fc7, fc8)."""

from __future__ import annotations

from . import init
from ._utils import check_array, check_matches_params
from .module import Module, Parameter


class Linear(Module):
    r"""``y = x W^T + b`` with torch's weight layout.

    Shapes:
        weight: (OUT, IN); bias: (OUT,)
        input x: (N, IN) -> output y: (N, OUT)

    Backward, with upstream ``dY`` (N, OUT):

    .. math:: \partial x = dY\,W, \qquad \partial W = dY^\top x, \qquad
              \partial b = \textstyle\sum_n dY_n

    Fast path (seam ``"linear"``): on the CPU the same products in the operand
    order OpenBLAS runs fastest (:math:`y^\top = W x^\top`), into recycled memory.
    """

    seam = "linear"
    saved_for_backward = ("x",)

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = init.torch_default_bound(in_features)
        self.weight = Parameter(init.uniform((out_features, in_features), bound))
        self.register_parameter("bias", Parameter(init.uniform((out_features,), bound)) if bias else None)
        self.x = None

    def forward(self, x):
        self.x = x
        y = x @ self.weight.data.T
        return y if self.bias is None else y + self.bias.data

    def backprop(self, grad_out):
        self.weight.accumulate_grad(grad_out.T @ self.x)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_out.sum(axis=0))
        return grad_out @ self.weight.data

    def check_input(self, x):
        check_array(self, x, 2, "(N, in_features)", self.in_features)
        check_matches_params(self, x, self.weight)

    def output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_features,)

    def multiply_adds(self, input_shape) -> int:
        n = 1
        for d in input_shape[:-1]:
            n *= d
        return n * self.out_features * self.in_features

    def torch_equivalent(self):
        return ("Linear", (self.in_features, self.out_features), {"bias": self.bias is not None})

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
