"""The CPU implementations of the seams: numba kernels, OpenBLAS's operand order, recycled memory.

Each class computes its layer's function (the reference in :mod:`npalexnet.nn`)
for NumPy float arrays, faster: the numba kernels of :mod:`.numba_kernels`
make one pass where the array code makes several, the large arrays come from
:mod:`.memory` (no page faults per step when the buffer pool is on), and the
outputs are (N, C, ...) views of (C, N, ...) memory, the layout a
convolution's GEMM writes and the next layer reads without a copy.
"""

from __future__ import annotations

import numpy

from . import memory, numba_kernels
from .im2col_conv import Im2colConv
from .seam import Implementation, Probe, on_cpu_float, register


def _numba_applies(x, settings) -> bool:
    return settings.numba and numba_kernels.AVAILABLE and on_cpu_float(x)


def _cn_contiguous(x) -> bool:
    """x is a (N, C, ...) view of C-contiguous (C, N, ...) memory (a probe is taken to be)."""
    return isinstance(x, Probe) or (x.ndim >= 2 and x.swapaxes(0, 1).flags.c_contiguous)


def _numba_unfold(x, layer, out_hw, out):
    numba_kernels.im2col(x, layer.kernel_size, layer.stride, layer.padding, out_hw, out=out)


def _numba_fold(dcol, x_shape, layer, out_hw):
    return numba_kernels.col2im(dcol, x_shape, layer.kernel_size, layer.stride, layer.padding, out_hw,
                                out=memory.empty_cn(x_shape, dcol.dtype, dcol))


#: Conv2d as im2col + GEMM with the numba im2col/col2im (:mod:`.im2col_conv`).
NUMBA_IM2COL_CONV = Im2colConv("im2col + GEMM, numba im2col", _numba_applies, _numba_unfold, _numba_fold)


class NumbaMaxPool(Implementation):
    """Max-pooling in one compiled pass (the array code makes KH*KW), the winners' gradients routed
    back in one more."""

    seam, name = "max_pool2d", "numba"

    def applies(self, layer, x, settings) -> bool:
        return _numba_applies(x, settings)

    def forward(self, layer, x):
        n, c, oh, ow = layer.output_shape(x.shape)
        out, argmax = numba_kernels.maxpool_forward(
            x, layer.kernel_size, layer.stride, layer.padding, (oh, ow), layer.index_dtype(),
            out=memory.empty((c, n, oh, ow), x.dtype, x), argmax=memory.empty((c, n, oh, ow), layer.index_dtype(), x))
        return out.transpose(1, 0, 2, 3), (argmax, x.shape)

    def backward(self, layer, state, grad_out, input_grad):
        argmax, x_shape = state
        return numba_kernels.maxpool_backward(grad_out, argmax, x_shape, layer.kernel_size, layer.stride,
                                              layer.padding, out=memory.empty_cn(x_shape, grad_out.dtype, grad_out))


class NumbaLRN(Implementation):
    """LRN in blocks of columns that stay in cache while the channel window is summed; keeps x only."""

    seam, name = "lrn", "numba"

    def applies(self, layer, x, settings) -> bool:
        return _numba_applies(x, settings) and x.ndim == 4 and _cn_contiguous(x)

    def forward(self, layer, x):
        return numba_kernels.lrn_forward(x, layer.size, layer.alpha, layer.beta, layer.k), x

    def backward(self, layer, state, grad_out, input_grad):
        return numba_kernels.lrn_backward(grad_out, state, layer.size, layer.alpha, layer.beta, layer.k)


class NumbaReLU(Implementation):
    """The mask and the output in one pass, into recycled memory of the input's layout."""

    seam, name = "relu", "numba"

    def applies(self, layer, x, settings) -> bool:
        if not _numba_applies(x, settings):
            return False
        return isinstance(x, Probe) or x.flags.c_contiguous or _cn_contiguous(x)

    def forward(self, layer, x):
        y, mask = memory.empty_like(x), memory.empty_like(x, bool)
        if not numba_kernels.relu_forward(x, y, mask):   # strides that differ only on axes of size 1
            numpy.greater(x, 0, out=mask)
            numpy.multiply(x, mask, out=y)
        return y, mask

    def backward(self, layer, state, grad_out, input_grad):
        return numpy.multiply(grad_out, state, out=memory.empty_like(state, grad_out.dtype))


class TransposedLinear(Implementation):
    """The same products as Linear, in the operand order OpenBLAS runs fastest at AlexNet's shapes:
    y^T = W x^T into recycled (OUT, N) memory (y is an (N, OUT) view of it; ReLU and dropout keep that
    layout, so the next layer's x^T is contiguous), and dY made C-contiguous before dY W."""

    seam, name = "linear", "y^T = W x^T"

    def applies(self, layer, x, settings) -> bool:
        return on_cpu_float(x)

    def forward(self, layer, x):
        yt = memory.empty((layer.out_features, x.shape[0]), x.dtype, x)      # (OUT, N)
        numpy.matmul(layer.weight.data, x.T, out=yt)
        if layer.bias is not None:
            yt += layer.bias.data[:, None]
        return yt.T, x

    def backward(self, layer, state, grad_out, input_grad):
        x = state
        dw = memory.empty(layer.weight.shape, grad_out.dtype, grad_out)
        numpy.matmul(grad_out.T, x, out=dw)
        layer.weight.accumulate_grad(dw)
        if layer.bias is not None:
            layer.bias.accumulate_grad(grad_out.sum(axis=0))
        return numpy.ascontiguousarray(grad_out) @ layer.weight.data


class NumbaSGD(Implementation):
    """torch.optim.SGD's update in one fused pass per parameter (the array code makes five), with
    the same sequence of float operations per element. Used by :class:`npalexnet.optim.SGD`."""

    seam, name = "sgd", "numba"

    def applies(self, optimizer, p, settings) -> bool:
        grad = p.grad
        return (_numba_applies(p.data, settings) and grad is not None and not isinstance(grad, Probe)
                and type(grad) is numpy.ndarray and grad.dtype == p.data.dtype
                and p.data.flags.c_contiguous and grad.flags.c_contiguous)

    def update(self, p, state, group) -> None:
        mu = group["momentum"]
        first = mu != 0 and state.get("momentum_buffer") is None
        if first:
            state["momentum_buffer"] = numpy.empty_like(p.data)
        buf = state["momentum_buffer"] if mu else p.data   # unused when momentum is 0
        numba_kernels.sgd_update(p.data, p.grad, buf, group["lr"], mu, group["weight_decay"], group["dampening"],
                                 group["nesterov"], first)


for _implementation in (NUMBA_IM2COL_CONV, NumbaMaxPool(), NumbaLRN(), NumbaReLU(), TransposedLinear(), NumbaSGD()):
    register(_implementation)
