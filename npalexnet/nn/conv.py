"""2-D convolution through im2col and one GEMM per group.

Section 3.5 of Krizhevsky, Sutskever and Hinton (2012), "ImageNet
Classification with Deep Convolutional Neural Networks", splits conv2, conv4
and conv5 into two groups (one per GPU); ``groups`` reproduces that.
"""

from __future__ import annotations

import os

import numpy

from ..backend import get_array_module
from ..kernels import winograd
from ..kernels.im2col import col2im, conv_output_size, im2col
from ..kernels import workspace
from ..kernels.workspace import Workspace
from . import init
from ._utils import check_array, check_grad, check_matches_params, pair
from .module import Module, Parameter

#: How a Conv2d computes: see :meth:`Conv2d.resolved_algorithm`.
ALGORITHMS = ("auto", "im2col", "winograd")
ENV_VAR = "NPALEXNET_CONV"


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

    Algorithms (``algorithm``; :meth:`resolved_algorithm`): ``"im2col"``
    above, readable and general; ``"winograd"`` for 3x3 and 5x5 stride-1
    kernels (:mod:`npalexnet.kernels.winograd`: F(2x2, 3x3), F(4x4, 3x3),
    F(2x2, 5x5) or F(3x3, 5x5), see :meth:`winograd_spec`), the same function
    with 2.25x to 4.6x fewer multiply-adds; ``"auto"`` (default) picks
    F(2x2, 3x3) for 3x3 and F(3x3, 5x5) for 5x5 stride-1 layers on the CPU.
    All are tested against torch and each other.

    Buffers: the im2col matrix (or Winograd's transformed tiles) lives in the
    layer's workspace and is reused every step; its memory also receives the
    gradient with respect to it in backward, once the weight gradient has
    consumed it.
    """

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
        self.algorithm = algorithm
        self.winograd_tile: int | None = None   # m of F(m x m, r x r); None: winograd.choose_spec
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        bound = init.torch_default_bound(fan_in)
        self.weight = Parameter(init.uniform((out_channels, in_channels // groups, kh, kw), bound))
        self.register_parameter("bias", Parameter(init.uniform((out_channels,), bound)) if bias else None)
        self._cache = None
        self._workspace = Workspace()

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

    def _on_apply(self) -> None:
        self._workspace.clear()
        self._cache = None

    def output_shape(self, input_shape):
        """(N, OC, OH, OW) for an input of shape (N, C, H, W)."""
        n, _, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (n, self.out_channels, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw))

    def resolved_algorithm(self, x) -> str:
        """``"im2col"`` or ``"winograd"`` for input ``x``.

        ``"auto"`` takes ``NPALEXNET_CONV`` (``im2col``/``winograd``) when set,
        else Winograd for 3x3 and 5x5 stride-1 kernels on the CPU (the tile:
        :meth:`winograd_spec`) and im2col otherwise (CuPy: im2col, until
        Winograd has been timed on a GPU).
        Asking for ``"winograd"`` where it does not apply raises.
        """
        applies = winograd.applies(self.kernel_size, self.stride)
        choice = self.algorithm
        if choice == "auto":
            env = os.environ.get(ENV_VAR, "").strip().lower()
            if env not in ("", "auto", "im2col", "winograd"):
                raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: expected im2col, winograd or auto")
            if env in ("im2col", "winograd"):
                choice = env if applies else "im2col"
            else:
                choice = "winograd" if applies and get_array_module(x) is numpy else "im2col"
        if choice == "winograd" and not applies:
            raise ValueError(f"{self!r}: algorithm 'winograd' needs a 3x3 or 5x5 kernel with stride 1")
        return choice

    def winograd_spec(self) -> winograd.Spec:
        """The Winograd tile: ``winograd_tile`` (m of F(m x m, r x r)) when set, else
        :func:`npalexnet.kernels.winograd.choose_spec` (F(2x2, 3x3) or F(3x3, 5x5))."""
        r = self.kernel_size[0]
        if self.winograd_tile is not None:
            spec = winograd.SPECS.get((self.winograd_tile, r))
            if spec is None:
                raise ValueError(f"{self!r}: no Winograd tile F({self.winograd_tile}, {r}); "
                                 f"available: {sorted(m for m, k in winograd.SPECS if k == r)}")
            return spec
        return winograd.choose_spec(self.kernel_size)

    def forward(self, x):
        check_array(self, x, 4, "(N, C, H, W)", self.in_channels)
        check_matches_params(self, x, self.weight)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if x.shape[2] + 2 * ph < kh or x.shape[3] + 2 * pw < kw:
            raise ValueError(f"{self!r}: input of spatial size {tuple(x.shape[2:])} (padding "
                             f"{self.padding}) is smaller than the kernel {self.kernel_size}")
        self._cache = None   # a forward replaces the previous one's buffers
        bias = None if self.bias is None else self.bias.data
        if self.resolved_algorithm(x) == "winograd":
            spec = self.winograd_spec()
            y, cache = winograd.conv_forward(x, self.weight.data, bias, self.padding, self.groups,
                                             self._workspace, spec=spec)
            self._cache = self._keep(("winograd", cache, y.shape))
            return y
        out_shape = self.output_shape(x.shape)
        n, oc, oh, ow = out_shape
        g = self.groups
        xp = get_array_module(x)
        rows = self.in_channels * kh * kw
        # The layer's own buffer (kept for backward, then reused as dcol): no fresh 28 MB per step.
        col = im2col(x, self.kernel_size, self.stride, self.padding,
                     out=self._workspace.get("col", (rows, n * oh * ow), x.dtype, x))   # (C*KH*KW, N*L)
        w2 = self.weight.data.reshape(g, oc // g, -1)                    # (G, OCg, Cg*KH*KW)
        y = workspace.empty((oc, n, oh, ow), x.dtype, x)                 # pooled: see kernels.workspace
        if g == 1:
            xp.matmul(w2[0], col, out=y.reshape(oc, -1))                   # (OC, N*L)
        else:
            xp.matmul(w2, col.reshape(g, -1, col.shape[1]), out=y.reshape(g, oc // g, -1))   # (G, OCg, N*L)
        if bias is not None:
            y += bias.reshape(oc, 1, 1, 1)
        self._cache = self._keep(("im2col", (col, x.shape), out_shape))
        return y.transpose(1, 0, 2, 3)

    def backward(self, grad_out, input_grad: bool = True):
        """dx (N, C, H, W), accumulating dw and db; with ``input_grad=False``
        (the first layer, whose input is data) dx is skipped and None returned."""
        algorithm, cache, out_shape = self._need_cache(self._cache)
        check_grad(self, grad_out, out_shape)
        self._cache = None
        if algorithm == "winograd":
            return winograd.conv_backward(grad_out, cache, self.weight, self.bias, self.padding, self.groups,
                                          input_grad=input_grad)
        col, x_shape = cache
        xp = get_array_module(grad_out)
        n, oc, oh, ow = out_shape
        g = self.groups
        # (OC, N*L): free when grad_out arrives in the (OC, N, OH, OW) memory layout.
        dy = xp.ascontiguousarray(grad_out.transpose(1, 0, 2, 3)).reshape(oc, n * oh * ow)
        w2 = self.weight.data.reshape(g, oc // g, -1)
        if self.bias is not None:
            self.bias.accumulate_grad(dy.sum(axis=1))
        if g == 1:
            self.weight.accumulate_matmul(dy, col.T)
        else:
            col_g = col.reshape(g, -1, col.shape[1])
            self.weight.accumulate_matmul(dy.reshape(g, oc // g, -1), col_g.transpose(0, 2, 1))
        if not input_grad:
            return None
        # col has given its last use (dw): dcol overwrites it.
        dcol = col
        if g == 1:
            xp.matmul(w2[0].T, dy, out=dcol)
        else:
            xp.matmul(w2.transpose(0, 2, 1), dy.reshape(g, oc // g, -1), out=dcol.reshape(g, -1, col.shape[1]))
        return col2im(dcol, x_shape, self.kernel_size, self.stride, self.padding,
                      out=workspace.empty_cn(x_shape, dcol.dtype, dcol))
