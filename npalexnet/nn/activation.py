"""ReLU, the non-saturating non-linearity of Section 3.1 of the 2012 paper."""

from __future__ import annotations

from .module import Module


class ReLU(Module):
    r"""``y = max(x, 0)`` element-wise.

    Shapes: any; output has the input's shape and dtype.

    Backward: :math:`\partial x = dY \cdot [x > 0]` (the gradient at exactly 0
    is 0, as in torch). Only the boolean mask is kept (1 byte per element).
    A NaN input stays NaN (``x * mask``), as in torch.

    Fast paths (seam ``"relu"``): one numba pass on the CPU, one CUDA kernel
    on a GPU, each computing the mask and the output together.
    """

    seam = "relu"
    saved_for_backward = ("mask",)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace   # accepted for torch compatibility; never changes the input
        self.mask = None

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backprop(self, grad_out):
        return grad_out * self.mask

    def torch_equivalent(self):
        return ("ReLU", (), {})

    def output_shape(self, input_shape):
        return tuple(input_shape)
