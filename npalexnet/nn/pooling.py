"""Max-pooling (Section 3.4 of the 2012 paper: overlapping 3x3 windows, stride 2) and adaptive average pooling."""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from ._utils import check_array, check_window_fits, pair
from .im2col import output_shape
from .module import Module


class MaxPool2d(Module):
    r"""Max over each KH x KW window, torch's output-size rule (rounds down).

    Notation: see :mod:`npalexnet.nn.im2col`.

    Shapes: input x: (N, C, H, W) -> output y: (N, C, OH, OW).

    Forward: :math:`y[n,c,i,j] = \max_{ky,kx} x_{pad}[n, c, i S_H + ky, j S_W + kx]`,
    padding with :math:`-\infty`. The index k = ky*KW + kx of the winning
    offset is kept (``argmax``, (C, N, OH, OW)); ties go to the *first*
    maximum in row-major window order and a NaN always wins (the last NaN of
    the window), as in torch.

    Backward routes each upstream gradient to its window's winner:
    :math:`\partial x[p] = \sum_{(i,j):\ \mathrm{argmax}(i,j) = p} dY[i,j]`.
    With overlapping windows (stride < kernel) a pixel can win several
    windows and receives the *sum* of their gradients.

    Written as a loop over the KH*KW kernel offsets with strided slices,
    forward and backward. Fast paths (seam ``"max_pool2d"``): numba kernels
    on the CPU, CUDA kernels on a GPU.
    """

    seam = "max_pool2d"
    saved_for_backward = ("argmax", "x_shape")

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride if stride is not None else kernel_size, "stride")
        self.padding = pair(padding, "padding")
        kh, kw = self.kernel_size
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(f"MaxPool2d: kernel_size and stride must be >= 1, got "
                             f"{self.kernel_size}, {self.stride}")
        if self.padding[0] > kh // 2 or self.padding[1] > kw // 2 or min(self.padding) < 0:
            raise ValueError(f"MaxPool2d: padding {self.padding} must be between 0 and half the "
                             f"kernel size {self.kernel_size}")
        self.argmax = self.x_shape = None

    def forward(self, x):
        xp = get_array_module(x)
        n, c, h, w = self.x_shape = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        _, _, oh, ow = self.output_shape(x.shape)
        x_pad = xp.full((c, n, h + 2 * ph, w + 2 * pw), -xp.inf, dtype=x.dtype)     # (C, N, ...) order
        x_pad[:, :, ph:ph + h, pw:pw + w] = x.transpose(1, 0, 2, 3)
        y = xp.full((c, n, oh, ow), -xp.inf, dtype=x.dtype)
        self.argmax = xp.zeros((c, n, oh, ow), dtype=self.index_dtype())
        for k, (ky, kx) in enumerate(numpy.ndindex(kh, kw)):
            window = x_pad[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
            wins = (window > y) | xp.isnan(window)   # strict: an equal later value loses, a NaN wins
            xp.copyto(y, window, where=wins)
            xp.copyto(self.argmax, k, where=wins)
        return y.transpose(1, 0, 2, 3)

    def backprop(self, grad_out):
        xp = get_array_module(grad_out)
        n, c, h, w = self.x_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = self.argmax.shape[2:]
        dy = grad_out.transpose(1, 0, 2, 3)
        dx_pad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=grad_out.dtype)
        for k, (ky, kx) in enumerate(numpy.ndindex(kh, kw)):
            dx_pad[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw] += dy * (self.argmax == k)
        return dx_pad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)

    def index_dtype(self):
        """The dtype of ``argmax``: uint8 for windows of up to 255 offsets."""
        kh, kw = self.kernel_size
        return numpy.dtype(numpy.uint8 if kh * kw <= 255 else numpy.int32)

    def check_input(self, x):
        check_array(self, x, 4, "(N, C, H, W)")
        check_window_fits(self, x, self.kernel_size, self.padding)

    def output_shape(self, input_shape):
        return output_shape(input_shape, input_shape[1], self.kernel_size, self.stride, self.padding)

    def torch_equivalent(self):
        return ("MaxPool2d", (self.kernel_size, self.stride, self.padding), {})

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    r"""Average pooling to a fixed output size, with torch's window rule.

    Output cell ``i`` of ``OH`` averages input rows
    ``floor(i*H/OH) <= h < ceil((i+1)*H/OH)`` (windows may overlap or differ
    in size when H is not a multiple of OH); columns likewise.

    The pooling is separable, so it is written as two small averaging
    matrices ``A_h`` (OH, H) and ``A_w`` (OW, W):

    .. math:: y[n,c] = A_h\, x[n,c]\, A_w^\top, \qquad
              \partial x[n,c] = A_h^\top\, dY[n,c]\, A_w

    Shapes: (N, C, H, W) -> (N, C, OH, OW). ``output_size`` is an int, a
    pair, or a pair with ``None`` meaning "keep the input size".
    """

    saved_for_backward = ("x_shape",)

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, (tuple, list)):
            if len(output_size) != 2:
                raise ValueError(f"AdaptiveAvgPool2d: output_size must be an int or a pair, got {output_size!r}")
            self.output_size = tuple(None if s is None else int(s) for s in output_size)
        else:
            self.output_size = (int(output_size), int(output_size))
        if any(s is not None and s < 1 for s in self.output_size):
            raise ValueError(f"AdaptiveAvgPool2d: output_size must be positive, got {output_size!r}")
        self.x_shape = None

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def _target(self, h, w):
        oh, ow = self.output_size
        return (h if oh is None else oh), (w if ow is None else ow)

    def output_shape(self, input_shape):
        n, c, h, w = input_shape
        return (n, c) + self._target(h, w)

    @staticmethod
    def averaging_matrix(xp, size: int, out_size: int, dtype):
        """(out_size, size) matrix whose row i averages torch's window i."""
        i = xp.arange(out_size)
        start = (i * size) // out_size
        end = -((-(i + 1) * size) // out_size)       # ceil((i+1)*size/out_size)
        pos = xp.arange(size)
        inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
        return (inside / (end - start)[:, None]).astype(dtype)

    def forward(self, x):
        xp = get_array_module(x)
        h, w = x.shape[2:]
        oh, ow = self._target(h, w)
        self.x_shape = x.shape
        if (oh, ow) == (h, w):
            return x   # every window is one pixel: the identity (torchvision alexnet at 224)
        a_h = self.averaging_matrix(xp, h, oh, x.dtype)
        a_w = self.averaging_matrix(xp, w, ow, x.dtype)
        return a_h @ (x @ a_w.T)

    def backprop(self, grad_out):
        h, w = self.x_shape[2:]
        oh, ow = self._target(h, w)
        if (oh, ow) == (h, w):
            return grad_out
        xp = get_array_module(grad_out)
        a_h = self.averaging_matrix(xp, h, oh, grad_out.dtype)
        a_w = self.averaging_matrix(xp, w, ow, grad_out.dtype)
        return a_h.T @ (grad_out @ a_w)

    def check_input(self, x):
        check_array(self, x, 4, "(N, C, H, W)")

    def torch_equivalent(self):
        return ("AdaptiveAvgPool2d", (self.output_size,), {})
