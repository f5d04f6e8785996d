"""2-D convolution through im2col and one GEMM per group.

Section 3.5 of Krizhevsky, Sutskever and Hinton (2012), "ImageNet
Classification with Deep Convolutional Neural Networks", splits conv2, conv4
and conv5 into two groups (one per GPU); ``groups`` reproduces that.
"""

from __future__ import annotations

from ..backend import get_array_module
from ..kernels.im2col import col2im, conv_output_size, im2col
from . import init
from ._utils import check_array, check_grad, check_matches_params, pair
from .module import Module, Parameter


class Conv2d(Module):
    r"""Cross-correlation with torch's arguments, weight layout and output size.

    Notation: see :mod:`npalexnet.kernels.im2col` (N, C, H, W, KH, KW, SH, SW,
    PH, PW, OH, OW, L = OH*OW); G = groups, OC = out_channels,
    Cg = C / G, OCg = OC / G.

    Shapes:
        weight: (OC, Cg, KH, KW); bias: (OC,)
        input x: (N, C, H, W) -> output y: (N, OC, OH, OW)

    Forward, per group g (``col_g`` the g-th block of Cg*KH*KW rows of im2col(x)):

    .. math:: Y_g = W_g \, \mathrm{col}_g + b_g, \qquad
              W_g: (OCg, Cg KH KW),\ \mathrm{col}_g: (Cg KH KW, N L)

    Backward, with upstream ``dY_g`` of shape (OCg, N L):

    .. math:: \partial W_g = dY_g\, \mathrm{col}_g^\top, \quad
              \partial b = \textstyle\sum_{n, oy, ox} dY, \quad
              \partial \mathrm{col}_g = W_g^\top dY_g, \quad
              \partial x = \mathrm{col2im}(\partial \mathrm{col})

    Output arrays are logical (N, OC, OH, OW) views of (OC, N, OH, OW)
    memory: that is the layout the GEMM writes, and the next im2col reads it
    without a transpose copy.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must both be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size and stride must be >= 1 and padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        bound = init.torch_default_bound(fan_in)
        self.weight = Parameter(init.uniform((out_channels, in_channels // groups, kh, kw), bound))
        self.register_parameter("bias", Parameter(init.uniform((out_channels,), bound)) if bias else None)
        self._cache = None

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def output_shape(self, input_shape):
        """(N, OC, OH, OW) for an input of shape (N, C, H, W)."""
        n, _, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (n, self.out_channels, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw))

    def forward(self, x):
        check_array(self, x, 4, "(N, C, H, W)", self.in_channels)
        check_matches_params(self, x, self.weight)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if x.shape[2] + 2 * ph < kh or x.shape[3] + 2 * pw < kw:
            raise ValueError(f"{self!r}: input of spatial size {tuple(x.shape[2:])} (padding "
                             f"{self.padding}) is smaller than the kernel {self.kernel_size}")
        out_shape = self.output_shape(x.shape)
        n, oc, oh, ow = out_shape
        g = self.groups
        col = im2col(x, self.kernel_size, self.stride, self.padding)   # (C*KH*KW, N*L)
        w2 = self.weight.data.reshape(g, oc // g, -1)                    # (G, OCg, Cg*KH*KW)
        if g == 1:
            y = w2[0] @ col                                                # (OC, N*L)
        else:
            y = w2 @ col.reshape(g, -1, col.shape[1])                      # (G, OCg, N*L)
        y = y.reshape(oc, n, oh, ow)
        if self.bias is not None:
            y += self.bias.data.reshape(oc, 1, 1, 1)
        self._cache = (col, x.shape, out_shape)
        return y.transpose(1, 0, 2, 3)

    def backward(self, grad_out):
        col, x_shape, out_shape = self._need_cache(self._cache)
        check_grad(self, grad_out, out_shape)
        self._cache = None
        xp = get_array_module(grad_out)
        n, oc, oh, ow = out_shape
        g = self.groups
        # (OC, N*L): free when grad_out arrives in the (OC, N, OH, OW) memory layout.
        dy = xp.ascontiguousarray(grad_out.transpose(1, 0, 2, 3)).reshape(oc, n * oh * ow)
        w2 = self.weight.data.reshape(g, oc // g, -1)
        if self.bias is not None:
            self.bias.accumulate_grad(dy.sum(axis=1))
        if g == 1:
            self.weight.accumulate_grad((dy @ col.T).reshape(self.weight.shape))
            dcol = w2[0].T @ dy
        else:
            dy_g = dy.reshape(g, oc // g, -1)
            col_g = col.reshape(g, -1, col.shape[1])
            self.weight.accumulate_grad((dy_g @ col_g.transpose(0, 2, 1)).reshape(self.weight.shape))
            dcol = (w2.transpose(0, 2, 1) @ dy_g).reshape(col.shape)
        return col2im(dcol, x_shape, self.kernel_size, self.stride, self.padding)


