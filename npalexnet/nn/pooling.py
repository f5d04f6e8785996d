"""Max-pooling (Section 3.4 of the 2012 paper: overlapping 3x3 windows, stride 2)."""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from ..kernels import numba_kernels
from ..kernels.cuda_dispatch import kernels_for
from ..kernels.im2col import conv_output_size
from ..kernels import workspace
from ..kernels.workspace import Workspace
from ._utils import check_array, check_grad, pair
from .module import Module


class MaxPool2d(Module):
    r"""Max over each KH x KW window, torch's output-size rule (rounds down).

    Notation: see :mod:`npalexnet.kernels.im2col`.

    Shapes: input x: (N, C, H, W) -> output y: (N, C, OH, OW).

    Forward: :math:`y[n,c,i,j] = \max_{ky,kx} x_{pad}[n, c, i S_H + ky, j S_W + kx]`,
    padding with :math:`-\infty`. The index of the winning offset is kept;
    ties go to the *first* maximum in row-major window order and a NaN
    always wins (the last NaN of the window), as in torch.

    Backward routes each upstream gradient to its window's winner:
    :math:`\partial x[p] = \sum_{(i,j):\ \mathrm{argmax}(i,j) = p} dY[i,j]`.
    With overlapping windows (stride < kernel) a pixel can win several
    windows and receives the *sum* of their gradients.

    Implementation: a loop over the KH*KW kernel offsets with strided
    slices, forward and backward (no scatter).
    """

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
        self._cache = None
        self._workspace = Workspace()   # argmax, kept from forward to backward

    def _on_apply(self) -> None:
        self._workspace.clear()
        self._cache = None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def output_shape(self, input_shape):
        n, c, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (n, c, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw))

    def forward(self, x):
        check_array(self, x, 4, "(N, C, H, W)")
        xp = get_array_module(x)
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise ValueError(f"{self!r}: input of spatial size {(h, w)} is smaller than the "
                             f"kernel {self.kernel_size}")
        _, _, oh, ow = self.output_shape(x.shape)
        cuda = kernels_for(x)   # CuPy arrays with the CUDA kernels switched on (off by default)
        if cuda is not None:
            out, argmax = cuda.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)
            self._cache = self._keep((argmax, x.shape))
            return out.transpose(1, 0, 2, 3)
        index_dtype = numpy.uint8 if kh * kw <= 255 else numpy.int32
        if numba_kernels.use_for(x):   # one compiled pass instead of KH*KW array passes
            ws = self._workspace
            out, argmax = numba_kernels.maxpool_forward(
                x, self.kernel_size, self.stride, self.padding, (oh, ow), index_dtype,
                out=workspace.empty((c, n, oh, ow), x.dtype, x),
                argmax=ws.get("argmax", (c, n, oh, ow), index_dtype, x))
            self._cache = self._keep((argmax, x.shape))
            return out.transpose(1, 0, 2, 3)
        # Work in (C, N, H, W) order: the memory layout conv and ReLU produce.
        x_cn = x.transpose(1, 0, 2, 3)
        if ph or pw:
            x_pad = xp.full((c, n, h + 2 * ph, w + 2 * pw), -xp.inf, dtype=x.dtype)
            x_pad[:, :, ph:ph + h, pw:pw + w] = x_cn
        else:
            x_pad = x_cn
        out = argmax = None
        for k, (ky, kx) in enumerate(numpy.ndindex(kh, kw)):
            window = x_pad[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
            if out is None:
                out = window.copy()
                argmax = xp.zeros(out.shape, dtype=index_dtype)
            else:
                # strict: an equal later value does not win; a NaN does (torch propagates NaN)
                better = (window > out) | xp.isnan(window)
                out = xp.where(better, window, out)
                argmax[better] = k
        self._cache = self._keep((argmax, x.shape))
        return out.transpose(1, 0, 2, 3)

    def backward(self, grad_out):
        argmax, x_shape = self._need_cache(self._cache)
        check_grad(self, grad_out, self.output_shape(x_shape))
        self._cache = None
        cuda = kernels_for(grad_out)
        if cuda is not None:
            return cuda.maxpool2d_backward(grad_out, argmax, x_shape, self.kernel_size, self.stride,
                                           self.padding)
        if numba_kernels.use_for(grad_out):
            return numba_kernels.maxpool_backward(grad_out, argmax, x_shape, self.kernel_size, self.stride,
                                                  self.padding,
                                                  out=workspace.empty_cn(x_shape, grad_out.dtype, grad_out))
        xp = get_array_module(grad_out)
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = argmax.shape[2:]
        dy = grad_out.transpose(1, 0, 2, 3)
        dx_pad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=grad_out.dtype)
        for k, (ky, kx) in enumerate(numpy.ndindex(kh, kw)):
            dx_pad[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw] += dy * (argmax == k)
        return dx_pad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)


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
        self._cache = None

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
        check_array(self, x, 4, "(N, C, H, W)")
        xp = get_array_module(x)
        h, w = x.shape[2:]
        oh, ow = self._target(h, w)
        self._cache = self._keep(x.shape)
        if (oh, ow) == (h, w):
            return x   # every window is one pixel: the identity (torchvision alexnet at 224)
        a_h = self.averaging_matrix(xp, h, oh, x.dtype)
        a_w = self.averaging_matrix(xp, w, ow, x.dtype)
        return a_h @ (x @ a_w.T)

    def backward(self, grad_out):
        x_shape = self._need_cache(self._cache)
        check_grad(self, grad_out, self.output_shape(x_shape))
        self._cache = None
        h, w = x_shape[2:]
        oh, ow = self._target(h, w)
        if (oh, ow) == (h, w):
            return grad_out
        xp = get_array_module(grad_out)
        a_h = self.averaging_matrix(xp, h, oh, grad_out.dtype)
        a_w = self.averaging_matrix(xp, w, ow, grad_out.dtype)
        return a_h.T @ (grad_out @ a_w)
