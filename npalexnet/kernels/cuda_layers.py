"""The GPU implementations of the seams: the hand-written CUDA kernels of :mod:`.cuda_kernels`.

They apply to CuPy float32/float64 arrays when the ``cuda_kernels`` setting
is on (:mod:`npalexnet.config`; the default; ``NPALEXNET_CUDA_KERNELS=0``
switches them off, and CuPy then runs the layers' own array code). They are
on because a real GPU held them to that code (every gpu-marked test with the
setting on and off) and they paid there (benchmarks/RESULTS.md, GPU section,
measured with ``bash benchmarks/gpu_all.sh``). Their CUDA source is also
compiled as C++ and run on the CPU by the tests
(tests/kernels/cuda_emulator.py), which is how their index arithmetic is
checked on machines without a GPU.
"""

from __future__ import annotations

import numpy

from . import cuda_kernels
from .im2col_conv import Im2colConv
from .seam import Implementation, Probe, on_gpu, register


def _on_gpu_float(x) -> bool:
    """A CuPy float32/float64 array (or such a probe). The tests replace this to run the kernels on
    the CPU emulator with NumPy arrays."""
    return on_gpu(x) and x.dtype.char in "fd"


class _CudaImplementation(Implementation):
    name = "CUDA kernels"
    devices = ("cuda",)

    def applies(self, layer, x, settings) -> bool:
        return _cuda_applies(x, settings)


def _cuda_applies(x, settings) -> bool:
    return settings.cuda_kernels and _on_gpu_float(x)


def _cuda_unfold(x, layer, out_hw, out):
    cuda_kernels.im2col(x, layer.kernel_size, layer.stride, layer.padding, out=out)   # straight into the workspace


def _cuda_fold(dcol, x_shape, layer, out_hw):
    return cuda_kernels.col2im(dcol, x_shape, layer.kernel_size, layer.stride, layer.padding)


#: Conv2d as im2col + GEMM (cuBLAS) with the CUDA im2col and gather col2im (:mod:`.im2col_conv`).
CUDA_IM2COL_CONV = Im2colConv("im2col + GEMM, CUDA im2col", _cuda_applies, _cuda_unfold, _cuda_fold,
                              devices=("cuda",))


class CudaMaxPool(_CudaImplementation):
    seam = "max_pool2d"

    def forward(self, layer, x):
        out, argmax = cuda_kernels.maxpool2d_forward(x, layer.kernel_size, layer.stride, layer.padding)
        return out.transpose(1, 0, 2, 3), (argmax, x.shape)

    def backward(self, layer, state, grad_out, input_grad):
        argmax, x_shape = state
        return cuda_kernels.maxpool2d_backward(grad_out, argmax, x_shape, layer.kernel_size, layer.stride,
                                               layer.padding)


class CudaLRN(_CudaImplementation):
    seam = "lrn"

    def applies(self, layer, x, settings) -> bool:
        return super().applies(layer, x, settings) and x.ndim == 4

    def forward(self, layer, x):
        y, scale, scale_pow = cuda_kernels.lrn_forward(x, layer.size, layer.alpha, layer.beta, layer.k)
        return y, (x, scale, scale_pow)

    def backward(self, layer, state, grad_out, input_grad):
        x, scale, scale_pow = state
        if grad_out.dtype != x.dtype:   # the kernel takes its scalar type from the gradient
            raise TypeError(f"{layer!r}.backward: gradient dtype {grad_out.dtype}, the forward ran in {x.dtype}")
        return cuda_kernels.lrn_backward(grad_out, x, scale, scale_pow, layer.size, layer.alpha, layer.beta)


class CudaReLU(_CudaImplementation):
    seam = "relu"

    def forward(self, layer, x):
        return cuda_kernels.relu_forward(x)   # (y, mask) in one pass

    def backward(self, layer, state, grad_out, input_grad):
        # grad_out * mask, in grad_out's memory layout (a CuPy product would come back C-ordered)
        return cuda_kernels.mask_scale(grad_out, state, 1.0)


class CudaDropout(_CudaImplementation):
    """The mask the layer draws (:meth:`npalexnet.nn.Dropout.draw_mask`), applied with its scale in one pass;
    on a C-contiguous input the mask itself is drawn in that pass, from the same row keys (the row keys
    on the host, one copy to the device: the array code's draw is some twenty launches)."""

    seam = "dropout"

    def applies(self, layer, x, settings) -> bool:
        return super().applies(layer, x, settings) and layer.training and 0.0 < layer.p < 1.0

    def forward(self, layer, x):
        scale = layer.scale(x)
        if x.flags.c_contiguous:   # the mask drawn in the kernel, from the row keys of the layer's draw
            y, mask = cuda_kernels.dropout_forward(x, layer.mask_keys(x, numpy), layer.p, scale)
        else:
            mask = layer.draw_mask(x)
            y = cuda_kernels.mask_scale(x, mask, scale)
        layer.mask = mask   # readable until the backward pass, as the reference keeps it
        return y, mask

    def backward(self, layer, state, grad_out, input_grad):
        return cuda_kernels.mask_scale(grad_out, state, layer.scale(grad_out))


class CudaSGD(Implementation):
    """torch.optim.SGD's update in one kernel per parameter (the array code launches five or more:
    on a GPU each is a launch the host waits to queue), with the reference's float operations per
    element in its order. Used by :class:`npalexnet.optim.SGD`."""

    seam, name, devices = "sgd", "CUDA kernels", ("cuda",)

    def applies(self, optimizer, p, settings) -> bool:
        grad = p.grad
        return (_cuda_applies(p.data, settings) and grad is not None and not isinstance(grad, Probe)
                and type(grad) is type(p.data) and grad.dtype == p.data.dtype and grad.shape == p.data.shape)

    def update(self, p, state, group) -> None:
        mu = group["momentum"]
        first = mu != 0 and state.get("momentum_buffer") is None
        if first:
            state["momentum_buffer"] = p.data.copy()   # overwritten by the kernel: the decayed gradient
        cuda_kernels.sgd_update(p.data, p.grad, state.get("momentum_buffer"), group["lr"], mu,
                                group["weight_decay"], group["dampening"], group["nesterov"], first)


for _implementation in (CUDA_IM2COL_CONV, CudaMaxPool(), CudaLRN(), CudaReLU(), CudaDropout(), CudaSGD()):
    register(_implementation)
