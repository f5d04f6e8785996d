"""2-D convolution through im2col and one matrix product per group.

Section 3.5 of Krizhevsky, Sutskever and Hinton (2012), "ImageNet
Classification with Deep Convolutional Neural Networks", splits conv2, conv4
and conv5 into two groups (one per GPU); ``groups`` reproduces that.
"""

from __future__ import annotations

from ..backend import get_array_module
from . import init
from ._utils import check_array, check_matches_params, check_window_fits, pair
from .im2col import col2im, im2col, output_shape
from .module import Module, Parameter

#: The values of ``Conv2d(algorithm=...)``.
ALGORITHMS = ("auto", "im2col", "winograd")


class Conv2d(Module):
    r"""Cross-correlation with torch's arguments, weight layout and output size.

    Notation: see :mod:`npalexnet.nn.im2col` (N, C, H, W, KH, KW, SH, SW,
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

    Fast paths (seam ``"conv2d"``, :mod:`npalexnet.kernels`): Winograd's
    algorithm for 3x3 and 5x5 stride-1 kernels (the same function with 2.25x
    to 4.6x fewer multiply-adds; ``algorithm`` and ``winograd_tile`` choose),
    and im2col with numba or CUDA kernels.
    """

    seam = "conv2d"
    saved_for_backward = ("col", "x_shape")
    skips_input_grad = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 groups: int = 1, bias: bool = True, algorithm: str = "auto"):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must both be divisible by groups ({groups})")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"Conv2d: algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size and stride must be >= 1 and padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        self.algorithm = algorithm      # "auto": the setting `conv` decides (npalexnet.config)
        self.winograd_tile = None       # m of Winograd's F(m x m, r x r); None: the default tile
        kh, kw = self.kernel_size
        bound = init.torch_default_bound(in_channels // groups * kh * kw)
        self.weight = Parameter(init.uniform((out_channels, in_channels // groups, kh, kw), bound))
        self.register_parameter("bias", Parameter(init.uniform((out_channels,), bound)) if bias else None)
        self.col = self.x_shape = None

    def forward(self, x):
        self.x_shape = x.shape
        self.col = im2col(x, self.kernel_size, self.stride, self.padding)          # (C*KH*KW, N*L)
        n, oc, oh, ow = self.output_shape(x.shape)
        g, xp = self.groups, get_array_module(x)
        w = self.weight.data.reshape(g, oc // g, -1)                                 # (G, OCg, Cg*KH*KW)
        col = self.col.reshape(g, -1, n * oh * ow)                                   # (G, Cg*KH*KW, N*L)
        y = xp.concatenate([w[i] @ col[i] for i in range(g)])                        # (OC, N*L)
        if self.bias is not None:
            y += self.bias.data[:, None]
        return y.reshape(oc, n, oh, ow).transpose(1, 0, 2, 3)                        # (N, OC, OH, OW)

    def backprop(self, grad_out, input_grad=True):
        n, oc, oh, ow = grad_out.shape
        g = self.groups
        dy = grad_out.transpose(1, 0, 2, 3).reshape(g, oc // g, n * oh * ow)         # (G, OCg, N*L)
        w = self.weight.data.reshape(g, oc // g, -1)
        col = self.col.reshape(g, -1, n * oh * ow)
        xp = get_array_module(grad_out)
        self.weight.accumulate_grad(xp.stack([dy[i] @ col[i].T for i in range(g)]).reshape(self.weight.shape))
        if self.bias is not None:
            self.bias.accumulate_grad(dy.sum(axis=2).reshape(oc))
        if not input_grad:   # the first layer: its input is data, nobody needs dx
            return None
        dcol = xp.concatenate([w[i].T @ dy[i] for i in range(g)])                    # (C*KH*KW, N*L)
        return col2im(dcol, self.x_shape, self.kernel_size, self.stride, self.padding)

    def check_input(self, x):
        check_array(self, x, 4, "(N, C, H, W)", self.in_channels)
        check_matches_params(self, x, self.weight)
        check_window_fits(self, x, self.kernel_size, self.padding)

    def output_shape(self, input_shape):
        """(N, OC, OH, OW) for an input of shape (N, C, H, W)."""
        return output_shape(input_shape, self.out_channels, self.kernel_size, self.stride, self.padding)

    def multiply_adds(self, input_shape) -> int:
        n, oc, oh, ow = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        return n * oc * oh * ow * (self.in_channels // self.groups) * kh * kw

    def torch_equivalent(self):
        return ("Conv2d", (self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding),
                {"groups": self.groups, "bias": self.bias is not None})

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.algorithm != "auto":
            s += f", algorithm={self.algorithm!r}"
        return s
