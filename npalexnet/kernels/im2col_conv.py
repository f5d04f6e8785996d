"""Conv2d as im2col + one GEMM per group, with the unfolding done by a kernel: numba on the CPU, CUDA on a GPU.

The arithmetic is the layer's own (:class:`npalexnet.nn.Conv2d`); what differs
from it is the machinery: the im2col matrix is written by a compiled kernel
into recycled memory (:mod:`.memory`), the output lands in (OC, N, OH, OW)
memory (what the GEMM writes; the next im2col reads it without a copy), and
the im2col matrix is reused as the gradient with respect to it once the
weight gradient has consumed it.
"""

from __future__ import annotations

from ..backend import get_array_module
from . import memory
from .seam import Implementation


class Im2colConv(Implementation):
    """An im2col convolution whose unfolding and folding are ``unfold``/``fold``:

    * ``unfold(x, layer, out_hw, out)``: im2col of x (N, C, H, W) into ``out`` (C*KH*KW, N*OH*OW);
    * ``fold(dcol, x_shape, layer, out_hw)``: col2im, an (N, C, H, W) view of (C, N, H, W) memory.
    """

    seam = "conv2d"

    def __init__(self, name: str, applies, unfold, fold, devices=("cpu",)):
        self.name, self._applies, self._unfold, self._fold = name, applies, unfold, fold
        self.devices = devices

    def applies(self, layer, x, settings) -> bool:
        return self._applies(x, settings)

    def forward(self, layer, x):
        xp = get_array_module(x)
        n, oc, oh, ow = layer.output_shape(x.shape)
        g = layer.groups
        kh, kw = layer.kernel_size
        col = memory.empty((layer.in_channels * kh * kw, n * oh * ow), x.dtype, x)
        self._unfold(x, layer, (oh, ow), col)
        w = layer.weight.data.reshape(g, oc // g, -1)
        y = memory.empty((oc, n, oh, ow), x.dtype, x)
        xp.matmul(w, col.reshape(g, -1, col.shape[1]), out=y.reshape(g, oc // g, -1))
        if layer.bias is not None:
            y += layer.bias.data.reshape(oc, 1, 1, 1)
        return y.transpose(1, 0, 2, 3), (col, x.shape)

    def backward(self, layer, state, grad_out, input_grad):
        xp = get_array_module(grad_out)
        col, x_shape = state
        n, oc, oh, ow = grad_out.shape
        g = layer.groups
        # (OC, N*L): free when grad_out arrives in the (OC, N, OH, OW) memory layout.
        dy = xp.ascontiguousarray(grad_out.transpose(1, 0, 2, 3)).reshape(g, oc // g, n * oh * ow)
        if layer.bias is not None:
            layer.bias.accumulate_grad(dy.reshape(oc, -1).sum(axis=1))
        col_g = col.reshape(g, -1, col.shape[1])
        dw = memory.empty(layer.weight.shape, grad_out.dtype, grad_out)
        for i in range(g):   # one 2-D product per group: a batched one would copy col_g[i].T
            xp.matmul(dy[i], col_g[i].T, out=dw.reshape(g, oc // g, -1)[i])
        layer.weight.accumulate_grad(dw)
        if not input_grad:
            return None
        w = layer.weight.data.reshape(g, oc // g, -1)
        for i in range(g):   # col has given its last use (dw): the gradient with respect to it overwrites it
            xp.matmul(w[i].T, dy[i], out=col_g[i])
        return self._fold(col, x_shape, layer, (oh, ow))
