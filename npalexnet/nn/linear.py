"""Fully connected layer (AlexNet's fc6, fc7, fc8)."""

from __future__ import annotations

from ..backend import get_array_module
from ..kernels import workspace
from . import init
from ._utils import check_array, check_grad, check_matches_params
from .module import Module, Parameter


class Linear(Module):
    r"""``y = x W^T + b`` with torch's weight layout.

    Shapes:
        weight: (OUT, IN); bias: (OUT,)
        input x: (N, IN) -> output y: (N, OUT)

    Backward, with upstream ``dY`` (N, OUT):

    .. math:: \partial x = dY\,W, \qquad \partial W = dY^\top x, \qquad
              \partial b = \textstyle\sum_n dY_n

    Layout: the forward product is computed as :math:`y^\top = W x^\top`, so
    ``y`` is an (N, OUT) view of (OUT, N) memory (ReLU and dropout keep that
    layout, and the next layer's :math:`x^\top` is then contiguous). Same
    arithmetic, but OpenBLAS runs this operand order much faster at AlexNet's
    shapes (measured, 2 threads: fc6 at batch 32, 35 -> 23 ms; the CIFAR net's
    4096 x 4096 layer at batch 128, 51 -> 28 ms).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = init.torch_default_bound(in_features)
        self.weight = Parameter(init.uniform((out_features, in_features), bound))
        self.register_parameter("bias", Parameter(init.uniform((out_features,), bound)) if bias else None)
        self._cache = None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def forward(self, x):
        check_array(self, x, 2, "(N, in_features)", self.in_features)
        check_matches_params(self, x, self.weight)
        xp = get_array_module(x)
        yt = workspace.empty((self.out_features, x.shape[0]), x.dtype, x)   # (OUT, N), pooled
        xp.matmul(self.weight.data, x.T, out=yt)
        if self.bias is not None:
            yt += self.bias.data[:, None]
        self._cache = self._keep(x)
        return yt.T

    def backward(self, grad_out):
        x = self._need_cache(self._cache)
        check_grad(self, grad_out, (x.shape[0], self.out_features))
        self._cache = None
        self.weight.accumulate_matmul(grad_out.T, x)   # into recycled storage: fc7's is 64 MB
        if self.bias is not None:
            self.bias.accumulate_grad(grad_out.sum(axis=0))
        # dY in C order: dY W then runs as fast as it can (fc6 at batch 32: 27 -> 22 ms); the copy is small.
        return get_array_module(grad_out).ascontiguousarray(grad_out) @ self.weight.data
